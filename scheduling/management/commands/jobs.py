"""``manage.py jobs``: list, sync, run, pause, resume, history, next, check.

District IT scripts and liveness probes rely on these names, flags, outputs and exit
codes: bad input exits 2 with one line and writes nothing; ``run`` exits 1 when the run
did not succeed; ``check`` exits 1 when a schedule is overdue, a critical job's last run
failed or a periodic task (the outbox drain) is missing, paused or out of date.
"""
from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from scheduling import calendar_policy, cron, periodic_tasks, registry, runner, selectors, services
from scheduling.models import JobRun, JobSchedule
from scheduling.summaries import figures as summary_figures
from scheduling.templatetags.times_and_durations import duration_text, local_text
from skillcore.cli import one_line_errors, table
from students.models import District
from students.zones import zone_problem


def _bad(message: str) -> CommandError:
    return CommandError(message, returncode=2)


# argparse prints the usage and exits 2 on its own; we want the same exit status with
# one line, like every other bad input of this command.
_one_line_errors = one_line_errors


class Command(BaseCommand):
    help = "Scheduled jobs: list, sync, run, pause, resume, history, next, check."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        _one_line_errors(parser)
        return parser

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

        def verb(name, help_text):
            p = sub.add_parser(name, help=help_text)
            _one_line_errors(p)
            return p

        p = verb("list", "every schedule with its next run and last status")
        p.add_argument("--json", action="store_true")
        verb("sync", "create or update the schedules from the job registry (idempotent)")
        p = verb("run", "run a job now, here, and print its summary")
        p.add_argument("name")
        p.add_argument("--district", type=int)
        p.add_argument("--as-of", dest="as_of", help="the slot to run for (ISO-8601; local time without an offset)")
        p.add_argument("--json", action="store_true")
        p = verb("pause", "pause a job (one district, or every district) with a note")
        p.add_argument("name")
        p.add_argument("--district", type=int)
        p.add_argument("--note", required=True)
        p = verb("resume", "resume a paused job from its next slot (never a stale one)")
        p.add_argument("name")
        p.add_argument("--district", type=int)
        p = verb("history", "recent runs of a job")
        p.add_argument("name")
        p.add_argument("--district", type=int)
        p.add_argument("--limit", type=int, default=20)
        p.add_argument("--json", action="store_true")
        p = verb("next", "the next run times, one ISO-8601 time per line in the district's zone "
                         "(then ' — skipped: <reason>' where the school calendar skips it)")
        p.add_argument("name")
        p.add_argument("--district", type=int)
        p.add_argument("--after", help="ISO-8601; local time without an offset (default: now)")
        p.add_argument("--count", type=int, default=5)
        p.add_argument("--cron", help="preview this cron instead of the schedule's")
        p.add_argument("--tz", help="preview in this IANA zone instead of the district's")
        verb("check", "exit 1 if a schedule is overdue, a critical job's last run failed or a periodic task is missing or paused")

    def handle(self, *args, verb, **options):
        return getattr(self, f"do_{verb}")(**options)

    # -- argument resolution ---------------------------------------------------------------
    def _job(self, name: str) -> registry.Job:
        try:
            return registry.get(name)
        except registry.UnknownJob as exc:
            raise _bad(str(exc)) from None

    def _district(self, district_id: int | None) -> District | None:
        if district_id is None:
            return None
        district = District.objects.filter(pk=district_id).first()
        if district is None:
            raise _bad(f"unknown district {district_id}")
        return district

    def _schedules(self, job: registry.Job, district: District | None) -> list[JobSchedule]:
        if job.is_global and district is not None:
            raise _bad(f"job {job.slug} is global: do not give --district")
        qs = JobSchedule.objects.filter(job=job.slug, removed_at__isnull=True).select_related("district", "q_schedule")
        if district is not None:
            qs = qs.filter(district=district)
        found = list(qs)
        if not found:
            raise _bad(f"no schedule for {job.slug}{f' in district {district.pk}' if district else ''} (run `jobs sync`)")
        return found

    @staticmethod
    def _zone(district: District | None) -> str:
        # The zone a schedule of this district runs in (JobSchedule.zone_name's rule).
        return JobSchedule.zone_name_for(district.time_zone if district is not None else None)

    # -- verbs -----------------------------------------------------------------------------
    def do_list(self, *, json: bool = False, **_):
        rows = selectors.dashboard_rows()
        if json:
            self.stdout.write(_dumps([_row_dict(r) for r in rows]))
            return
        # District ids are shown because every other verb takes --district ID.
        lines = table(
            ["JOB", "DISTRICT ID", "DISTRICT", "CRON", "TIME ZONE", "NEXT RUN (district time)", "STATE", "LAST RUN"],
            [[r.job_slug, r.district_id if r.district_id is not None else "-", r.district_name or "global (all districts)",
              r.cron or "ad hoc", r.time_zone, local_text(r.next_run_utc, r.time_zone) or "-",
              "paused" if r.paused else ("overdue" if r.overdue else "active"), _status_text(r.last_status)]
             for r in rows],
            right={1},
        )
        self.stdout.write("\n".join(lines) if rows else "no schedules yet (run `jobs sync`)")

    def do_sync(self, **_):
        # One transaction: a malformed periodic-task declaration leaves the job schedules
        # unwritten too (bad input writes nothing).
        try:
            with transaction.atomic():
                report = services.sync_schedules()
                periodic = periodic_tasks.sync()
        except periodic_tasks.PeriodicTaskError as exc:
            raise _bad(str(exc)) from None
        self.stdout.write(f"created {report.created}, updated {report.updated}, unchanged {report.unchanged}")
        self.stdout.write(str(periodic))

    def do_run(self, *, name, district, as_of, json: bool = False, **_):
        job = self._job(name)
        district = self._district(district)
        slot = None
        if as_of:
            try:
                slot = cron.parse_instant(as_of, self._zone(district))
            except cron.BadCron as exc:
                raise _bad(str(exc)) from None
        try:
            run = runner.run_sync(job_slug=job.slug, district=district, as_of=slot)
        except services.ScheduleError as exc:
            raise _bad(str(exc)) from None
        if run is None:
            raise CommandError("the run was claimed elsewhere", returncode=1)
        if json:
            self.stdout.write(_dumps(_run_dict(run)))
        else:
            self.stdout.write(
                f"run #{run.pk} {job.slug} {run.district.name if run.district_id else 'global'} "
                f"{_status_text(run.status)}{f' ({run.note})' if run.status == JobRun.Status.WARNING else ''} "
                f"in {duration_text(run.duration_seconds)}{':' if run.result else ': ' + run.error}"
            )
            # The summary in the job's words, one figure a line (--json keeps the keys).
            for fig in summary_figures(job, run.result, zone=run.zone_name):
                self.stdout.write(f"  {fig.label}: {fig.value}")
        # Succeeded with warnings is not a failure: the job ran to its end (its alert is raised).
        if run.status not in (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING):
            sys.exit(1)

    def do_pause(self, *, name, district, note, **_):
        job = self._job(name)
        district = self._district(district)
        if not (note or "").strip():
            raise _bad("a pause needs a note saying why (--note TEXT)")
        if "\x00" in note:  # PostgreSQL cannot store it; the dashboard's form refuses it too
            raise _bad("the note cannot contain NUL characters")
        targets = [s for s in self._schedules(job, district) if not s.paused]
        if not targets:
            raise _bad(f"{job.slug} is already paused{f' in district {district.pk}' if district else ''}")
        for s in targets:
            services.pause_schedule(schedule=s, acting_user=None, note=note)
        self.stdout.write(f"paused {len(targets)} schedule(s) of {job.slug}")

    def do_resume(self, *, name, district, **_):
        job = self._job(name)
        district = self._district(district)
        targets = [s for s in self._schedules(job, district) if s.paused]
        if not targets:
            raise _bad(f"{job.slug} is not paused{f' in district {district.pk}' if district else ''}")
        for s in targets:
            services.resume_schedule(schedule=s, acting_user=None)
        self.stdout.write(f"resumed {len(targets)} schedule(s) of {job.slug}")

    def do_history(self, *, name, district, limit, json: bool = False, **_):
        job = self._job(name)
        district = self._district(district)
        if limit < 1 or limit > 10000:
            raise _bad("--limit must be between 1 and 10000")
        runs = list(selectors.run_history(job_slug=job.slug, district_id=district.pk if district else None, limit=limit))
        if json:
            self.stdout.write(_dumps([_run_dict(r) for r in runs]))
            return
        if not runs:
            self.stdout.write(f"no runs of {job.slug} yet")
            return
        for line in table(
            ["RUN", "SLOT (district time)", "TRIGGER", "STATUS", "ATTEMPT", "DURATION", "DISTRICT", "NOTE"],
            [[f"#{r.pk}", local_text(r.slot, r.zone_name), r.get_trigger_display().lower(), _status_text(r.status),
              r.attempt, duration_text(r.duration_seconds) or "-", r.district.name if r.district_id else "global",
              r.note or (r.error.splitlines()[0] if r.error else "")] for r in runs],
            right={4, 5},
        ):
            self.stdout.write(line)

    def do_next(self, *, name, district, after, count, cron: str | None = None, tz: str | None = None, **_):
        from scheduling import cron as cronlib

        job = self._job(name)
        district = self._district(district)
        if job.is_global and district is not None:
            raise _bad(f"job {job.slug} is global: do not give --district")
        if not job.is_global and district is None and not tz:
            raise _bad(f"job {job.slug} runs per district: give --district ID (its zone decides the times)")
        if count < 1 or count > 1000:
            raise _bad("--count must be between 1 and 1000")
        if tz is not None and zone_problem(tz):  # the districts' rule: no "localtime" or "Factory"
            raise _bad(f"--tz {zone_problem(tz)}")
        zone = tz or self._zone(district)
        expr = cron
        if expr is None:
            schedule = JobSchedule.objects.filter(job=job.slug, district=district, removed_at__isnull=True).first()
            expr = schedule.cron if schedule is not None else job.cron_for(district.pk if district else None)
        if not expr:
            raise _bad(f"job {job.slug} has no cron: it runs only on demand")
        try:
            tzinfo = cronlib.zone(zone)
            start = cronlib.parse_instant(after, zone) if after else timezone.now()
            slots = cronlib.next_slots(expr, zone, start, count)
        except cronlib.BadCron as exc:
            raise _bad(str(exc)) from None
        # The school calendar's verdict, the same function the slot claim applies: a
        # skipped slot keeps its ISO time first, so scripts reading the first word still work.
        skips = calendar_policy.calendar_skips(job, district_id=district.pk if district else None, zone_name=zone,
                                               slots=slots)
        for slot in slots:
            mark = f" — skipped: {skips[slot]}" if slot in skips else ""
            self.stdout.write(slot.astimezone(tzinfo).isoformat() + mark)

    def do_check(self, **_):
        now = timezone.now()
        problems = []
        for s in selectors.overdue_schedules(now):
            problems.append(
                f"overdue: {s.job} {s.district.name if s.district_id else 'global'} was due "
                f"{local_text(s.q_schedule.next_run, s.zone_name)} (is a qcluster running?)"
            )
        for s in selectors.failing_critical_schedules(now):
            problems.append(f"failed: critical job {s.job_slug} {s.district_name or 'global'} last run #{s.last_run_id} {s.last_status}")
        problems += periodic_tasks.problems()  # the outbox drain and digests: not jobs, no overdue row
        beat = selectors.last_scheduler_heartbeat()
        beat_text = beat.isoformat() if beat else "never"
        if problems:
            for line in problems:
                self.stdout.write(line)
            self.stdout.write(f"last scheduler heartbeat: {beat_text}")
            sys.exit(1)
        self.stdout.write(f"ok: no schedule overdue, no critical job failing, periodic tasks in place; "
                          f"last scheduler heartbeat: {beat_text}")


def _status_text(status: str | None) -> str:
    """A run status in words ("succeeded with warnings", "timed out"); "-" for none yet."""
    return JobRun.Status(status).label.lower() if status in JobRun.Status.values else (status or "-")


def _dumps(value) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _row_dict(r: selectors.DashboardRow) -> dict:
    return {
        "job": r.job_slug, "district": r.district_id, "district_name": r.district_name,
        "cron": r.cron, "cron_text": r.cron_text, "cron_customized": r.cron_customized, "time_zone": r.time_zone,
        "next_run": r.next_run_local.isoformat() if r.next_run_local else None,
        "next_run_utc": r.next_run_utc.isoformat() if r.next_run_utc else None,
        "paused": r.paused, "pause_note": r.pause_note, "overdue": r.overdue,
        "last_run": r.last_run_id, "last_status": r.last_status, "avg_duration": r.avg_duration,
        "runs_30d": r.runs_30d, "success_rate": r.success_rate,
    }


def _run_dict(r: JobRun) -> dict:
    return {
        "id": r.pk, "job": r.job, "district": r.district_id, "trigger": r.trigger, "slot": r.slot.isoformat(),
        "status": r.status, "attempt": r.attempt, "retry_of": r.retry_of_id,
        "started": r.started_at.isoformat() if r.started_at else None,
        "finished": r.finished_at.isoformat() if r.finished_at else None,
        "duration": r.duration_seconds, "result": r.result, "error": r.error, "note": r.note,
        "progress": [r.progress_done, r.progress_total], "task_id": r.task_id,
    }
