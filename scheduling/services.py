"""Every write of the scheduling engine: sync, the slot claim, run now, pause, resume,
retry, cron edits, delete/restore, failure handling, the reaper and the heartbeat.

Staff actions take ``acting_user=`` (None from the command line, with ``actor_label``)
and write their ScheduleChange audit row in the same transaction (one write path per
state change). Bad input raises ScheduleError with a one-line message; nothing is written.
"""
from __future__ import annotations

import ast
import collections
import datetime as dt
import functools
import logging
import random
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Min
from django.db.models.constants import OnConflict
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django_q.models import Schedule

from scheduling import calendar_policy, cron, registry
from scheduling.models import JobRun, JobSchedule, ScheduleChange, SchedulerHeartbeat, schedule_name
from scheduling.monitoring import alerts, counters
from scheduling.templatetags.times_and_durations import duration_text
from students.models import District

logger = logging.getLogger(__name__)

FIRE_FUNC = "scheduling.tasks.fire"
EXECUTE_FUNC = "scheduling.tasks.execute_run"


class ScheduleError(ValueError):
    """Bad input for a scheduling action; the message is one line for the user."""


class QueueUnavailable(ScheduleError):
    """The run was saved (queued) but the task queue refused it (Redis down): the one-line
    message says so, and the scheduler's sweeper sends it once the queue is back."""

    def __init__(self, message: str, *, run: JobRun):
        super().__init__(message)
        self.run = run


# -- helpers ---------------------------------------------------------------------------------
def _q_kwargs(job: registry.Job, district_id: int | None, tz: str) -> str:
    # The zone travels in the q Schedule row so computing its next_run needs no query
    # (see scheduling/scheduler.py); q_options gives the worker the job's own timeout.
    return repr({"job": job.slug, "district": district_id, "tz": tz, "q_options": {"timeout": job.timeout}})


def q_row_zone(q_row: Schedule) -> str | None:
    """The copy of ``JobSchedule.zone_name`` that the schedule's django-q row carries in its
    kwargs (written by ``_q_kwargs``). The scheduler computes a row's next run from it
    without a query; sync compares it to tell a zone change. "UTC" when the row names no
    zone (django-q2's own); None when the kwargs are not a literal dict (the scheduler then
    logs the row and pushes it an hour ahead)."""
    try:
        return ast.literal_eval(q_row.kwargs or "{}").get("tz", "UTC")
    except (ValueError, TypeError, SyntaxError, AttributeError, MemoryError, RecursionError):
        return None


def _snapshot(schedule: JobSchedule) -> dict:
    q = schedule.q_schedule
    return {
        "cron": schedule.cron,
        "cron_customized": schedule.cron_customized,
        "paused": schedule.paused,
        "pause_note": schedule.pause_note,
        "removed": schedule.removed_at is not None,
        "next_run": q.next_run.isoformat() if q is not None and q.next_run else None,
    }


def _audit(schedule: JobSchedule, action: str, *, acting_user, actor_label: str, before: dict, after: dict, now) -> ScheduleChange:
    label = acting_user.get_username() if acting_user is not None else actor_label
    return ScheduleChange.objects.create(
        schedule=schedule, action=action, acting_user=acting_user, actor_label=label[:150], at=now,
        before=before, after=after,
    )


def _locked(schedule: JobSchedule) -> JobSchedule:
    return JobSchedule.objects.select_for_update(of=("self",)).select_related("district", "q_schedule").get(pk=schedule.pk)


def _new_q_schedule(schedule: JobSchedule, job: registry.Job, tz: str, now, *, next_run=None) -> Schedule:
    return Schedule(
        name=schedule_name(job.slug, schedule.district_id),
        func=FIRE_FUNC,
        kwargs=_q_kwargs(job, schedule.district_id, tz),
        schedule_type=Schedule.CRON,
        cron=schedule.cron,
        repeats=0 if schedule.paused else -1,
        next_run=next_run or cron.next_slot(schedule.cron, tz, now),
        intended_date_kwarg="scheduled_for",
    )


def _ensure_q(schedule: JobSchedule, job: registry.Job, now) -> None:
    """Create or refresh the q Schedule row to match the JobSchedule (cron, zone, pause)."""
    tz = schedule.zone_name
    if not schedule.cron:
        if schedule.q_schedule_id:
            Schedule.objects.filter(pk=schedule.q_schedule_id).delete()
            schedule.q_schedule = None
            schedule.save(update_fields=["q_schedule", "updated_at"])
        return
    q = schedule.q_schedule
    if q is None:
        # A leftover row with the stable name (e.g. its link was lost): reuse, never duplicate.
        q = Schedule.objects.filter(name=schedule_name(job.slug, schedule.district_id)).first()
    fresh = _new_q_schedule(schedule, job, tz, now)
    if q is None:
        Schedule.objects.bulk_create([fresh])  # bulk_create: Schedule.save() would recompute next_run
        q = Schedule.objects.get(name=fresh.name)
    else:
        Schedule.objects.filter(pk=q.pk).update(
            func=fresh.func, kwargs=fresh.kwargs, schedule_type=fresh.schedule_type, cron=fresh.cron,
            repeats=fresh.repeats, next_run=fresh.next_run, intended_date_kwarg=fresh.intended_date_kwarg,
        )
        q.refresh_from_db()
    schedule.q_schedule = q
    schedule.save(update_fields=["q_schedule", "updated_at"])


# -- sync ------------------------------------------------------------------------------------
# The q row's columns sync keeps in line with the JobSchedule (and reads to compare).
_SYNCED_Q_FIELDS = ("cron", "kwargs", "repeats", "next_run", "func", "intended_date_kwarg", "schedule_type")


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@transaction.atomic
def sync_schedules(*, now: dt.datetime | None = None) -> SyncReport:
    """Upsert one JobSchedule + q Schedule per job and district (per job for global jobs).

    Idempotent and set-based (a fixed number of queries whatever the number of districts,
    plus one INSERT per 1,000 new rows): 10,000 districts in seconds.
    Never deletes run history, never brings back a schedule staff deleted, and never
    overwrites a cron staff changed (cron_customized) or a pause.
    Steps:
    1. Load jobs, districts and existing schedules with their q rows (only the columns
       compared), and the engine's q rows no schedule links to (normally none).
    2. Create the missing q Schedule rows, then the missing JobSchedule rows already linked
       to them (bulk_create sets primary keys on PostgreSQL and SQLite >= 3.35): no UPDATE
       per row afterwards. A first run is computed once per (cron, zone), not per row.
    3. For existing rows: reseed a non-customized cron from code, refresh the q row's
       zone/timeout/cron, and recompute next_run only when cron or zone changed.
    """
    now = now or timezone.now()
    report = SyncReport()
    jobs = registry.all_jobs()
    districts = list(District.objects.only("id", "time_zone"))
    # Read as tuples: building 110,000 JobSchedule, District and Schedule instances to find
    # them unchanged took 10 s of the 16 s a re-sync of 10,000 districts took (profiled).
    existing = {
        (row[1], row[2]): row
        for row in JobSchedule.objects.values_list(
            "id", "job", "district_id", "cron", "cron_customized", "paused", "removed_at", "q_schedule_id",
            "district__time_zone", "q_schedule__cron", "q_schedule__kwargs", "q_schedule__repeats",
        )
    }
    q_by_name = {
        q.name: q for q in Schedule.objects.filter(name__startswith="skillcore:").exclude(schedule_type=Schedule.ONCE)
        .exclude(pk__in=JobSchedule.objects.filter(q_schedule__isnull=False).values("q_schedule_id"))
    }

    # 2. new schedules
    first_runs: dict[tuple[str, str], dt.datetime] = {}

    def first_run(expr: str, tz: str) -> dt.datetime:
        if (expr, tz) not in first_runs:
            first_runs[expr, tz] = cron.next_slot(expr, tz, now)
        return first_runs[expr, tz]

    new: list[JobSchedule] = []
    fresh_q: list[Schedule] = []
    for job in jobs:
        targets = [None] if job.is_global else districts
        for district in targets:
            key = (job.slug, district.id if district else None)
            if key in existing:
                continue
            # The job's cron at the district's minute of its spread window (registry.Job.cron_for).
            s = JobSchedule(job=job.slug, district=district, cron=job.cron_for(key[1]))
            new.append(s)
            if not s.cron:
                continue
            q = q_by_name.get(schedule_name(*key))  # a leftover row with the stable name: reuse it
            if q is None:
                q = _new_q_schedule(s, job, s.zone_name, now, next_run=first_run(s.cron, s.zone_name))
                fresh_q.append(q)
            s.q_schedule = q
    if new:
        Schedule.objects.bulk_create(fresh_q, batch_size=1000)
        # Assigned before the q rows had keys; bulk_create copies each key into q_schedule_id.
        JobSchedule.objects.bulk_create(new, batch_size=1000)
        report.created = len(new)

    # 3. existing schedules: the rows already in line are told apart on the tuples; only
    # the others (none on a re-sync; all of a job's after its code cron changed) are
    # loaded as instances, 1,000 per query, and brought in line.
    known = {j.slug: j for j in jobs}
    stale = []
    for (slug, district_id), (pk, _, _, cron_expr, customized, paused, removed_at, q_id, district_zone,
                               q_cron, q_kwargs, q_repeats) in existing.items():
        job = known.get(slug)
        if job is None or removed_at is not None:
            continue
        in_line = (
            (customized or cron_expr == job.cron_for(district_id))
            and (q_id is not None and cron_expr and q_cron == cron_expr and q_repeats == (0 if paused else -1)
                 and q_kwargs == _q_kwargs(job, district_id, JobSchedule.zone_name_for(district_zone if district_id else None))
                 or not cron_expr and q_id is None and schedule_name(slug, district_id) not in q_by_name)
        )
        if in_line:
            report.unchanged += 1
        else:
            stale.append(pk)
    changed_s, changed_q = [], []
    for start in range(0, len(stale), 1000):
        for s in JobSchedule.objects.select_related("q_schedule", "district").filter(pk__in=stale[start:start + 1000]):
            _sync_existing(s, known[s.job], q_by_name, now, report, changed_s, changed_q)
    if changed_q:
        Schedule.objects.bulk_update(changed_q, list(_SYNCED_Q_FIELDS), batch_size=1000)
    if changed_s:
        JobSchedule.objects.bulk_update(changed_s, ["cron", "q_schedule"], batch_size=1000)
    return report


def _sync_existing(s: JobSchedule, job: registry.Job, q_by_name: dict, now, report: SyncReport,
                   changed_s: list, changed_q: list) -> None:
    """Sync's step 3 for one schedule found out of line: reseed a non-customized cron from
    code, create, drop or refresh its q row (next_run recomputed only when the cron or the
    zone changed). Collects the rows to write in ``changed_s`` and ``changed_q``."""
    slug = s.job
    dirty = False
    if not s.cron_customized and s.cron != job.cron_for(s.district_id):
        s.cron = job.cron_for(s.district_id)
        dirty = True
    tz = s.zone_name
    q = s.q_schedule or q_by_name.get(schedule_name(slug, s.district_id))
    if s.cron and q is None:
        _ensure_q(s, job, now)
        report.updated += 1
        return
    if q is not None and not s.cron:
        s.q_schedule = None
        Schedule.objects.filter(pk=q.pk).delete()
        changed_s.append(s)
        report.updated += 1
        return
    if q is not None:
        kwargs = _q_kwargs(job, s.district_id, tz)
        repeats = 0 if s.paused else -1
        if q.cron != s.cron or q.kwargs != kwargs or q.repeats != repeats or s.q_schedule_id != q.pk:
            if q.cron != s.cron or q_row_zone(q) != tz:
                q.next_run = cron.next_slot(s.cron, tz, now)
            q.cron, q.kwargs, q.repeats = s.cron, kwargs, repeats
            q.func, q.intended_date_kwarg, q.schedule_type = FIRE_FUNC, "scheduled_for", Schedule.CRON
            changed_q.append(q)
            s.q_schedule = q
            dirty = True
    if dirty:
        changed_s.append(s)
        report.updated += 1
    else:
        report.unchanged += 1


# -- the slot claim (called by the fire task in a worker) -------------------------------------
def _slot_row(job: str, district_id, slot, status, note: str, trigger=JobRun.Trigger.SCHEDULE, now=None) -> JobRun:
    return JobRun(
        job=job, district_id=district_id, trigger=trigger, slot=slot, status=status, note=note[:300],
        enqueued_at=now, finished_at=now if status in JobRun.FINISHED else None,
    )


def _record_slots(rows: list[JobRun], *, calendar_reasons: dict[dt.datetime, str] | None = None) -> list[JobRun]:
    """Insert slot rows decided as missed or skipped (all of one job and district) and count
    the ones this claim recorded. The caller holds the schedule's row lock, so claims of this
    job and district are serialized: the slots found already recorded here are exactly those
    another claim decided, and are not counted twice (the INSERT still ignores conflicts).
    ``calendar_reasons``: the slots the school calendar skipped, counted by reason too."""
    if not rows:
        return []
    first = rows[0]
    taken = set(
        JobRun.objects.filter(job=first.job, district_id=first.district_id, trigger__in=JobRun.SLOT_TRIGGERS,
                              slot__in=[r.slot for r in rows]).values_list("slot", flat=True)
    )
    new = [r for r in rows if r.slot not in taken]
    if new:
        JobRun.objects.bulk_create(new, ignore_conflicts=True)
        counters.slots_decided(
            job=first.job, district_id=first.district_id,
            missed=sum(r.status == JobRun.Status.MISSED for r in new),
            skipped=sum(r.status == JobRun.Status.SKIPPED for r in new),
        )
        if calendar_reasons:
            counters.calendar_skipped(job=first.job, reasons=dict(collections.Counter(
                calendar_reasons[r.slot] for r in new if r.slot in calendar_reasons)))
    return new


# Not known from the lock's statement: the overlap check is a query of its own, after the lock.
_UNKNOWN = object()


def _running(job_slug: str, district_id: int | None):
    """The overlap check: the latest run of this job and district still running."""
    return JobRun.objects.filter(job=job_slug, district_id=district_id, status=JobRun.Status.RUNNING).order_by("-started_at")


@functools.cache
def _lock_reads(without_district: bool) -> tuple[str, str]:
    """The two subqueries ``_lock_schedule`` reads with the lock, written once: the overlap
    check (``_running``: the latest run of the job and district still running) and the
    schedule's last run as the statement's snapshot sees it. Written out rather than as
    ORM Subquery expressions, which Django compiled again on every task (about 1 ms of the
    task's Python, a tenth of its time); the same SQL on PostgreSQL and SQLite."""
    qn = connection.ops.quote_name
    runs, schedules = qn(JobRun._meta.db_table), qn(JobSchedule._meta.db_table)
    district = "IS NULL" if without_district else "= %s"
    running = (f"SELECT r.{qn('id')} FROM {runs} r WHERE r.{qn('job')} = %s AND r.{qn('district_id')} {district} "
               f"AND r.{qn('status')} = %s ORDER BY r.{qn('started_at')} DESC LIMIT 1")
    seen = f"SELECT s.{qn('last_run_id')} FROM {schedules} s WHERE s.{qn('id')} = {schedules}.{qn('id')}"
    return f"({running})", f"({seen})"


def _running_params(job_slug: str, district_id: int | None) -> list:
    return [job_slug, JobRun.Status.RUNNING] if district_id is None else [job_slug, district_id, JobRun.Status.RUNNING]


def _lock_schedule(job_slug: str, district_id: int | None) -> tuple[JobSchedule | None, object]:
    """Lock the active JobSchedule row (with its district) and read, in the same statement,
    the overlap check: (schedule, the id of the latest running run or None), or
    (schedule, ``_UNKNOWN``) when that read cannot be trusted and the caller must query.

    Why it can be trusted: the statement's snapshot is taken when it starts, and the check
    must see every run started before the lock was granted (a concurrent claim of another
    slot of this schedule that committed while this one waited for the lock). So:
    - the first attempt does not wait (SKIP LOCKED): a row another claim holds is not
      returned, and the lock is taken again, waiting, with the check a query of its own
      after it (as every claim did before; only contended claims pay it);
    - a claim that committed between the snapshot and the lock changed the row's last run
      (every claim that starts a run records it, as does the runner's claim of a queued
      run): the locked row is the latest version (PostgreSQL rechecks it), the subquery
      reads the snapshot's, and a difference means the check is queried again.
    On SQLite, where FOR UPDATE is not written (the database's one writer serializes
    claims), the snapshot is the transaction's and both reads agree."""
    active = JobSchedule.objects.select_related("district").filter(
        job=job_slug, district_id=district_id, removed_at__isnull=True)
    running, seen = _lock_reads(district_id is None)
    schedule = (
        active.select_for_update(of=("self",), skip_locked=True)
        .annotate(running_id=RawSQL(running, _running_params(job_slug, district_id)), seen_last_run=RawSQL(seen, ()))
        .first()
    )
    if schedule is not None and schedule.seen_last_run == schedule.last_run_id:
        return schedule, schedule.running_id
    if schedule is None:
        schedule = active.select_for_update(of=("self",)).first()
    return schedule, _UNKNOWN


def _insert_unless_claimed(run: JobRun) -> bool:
    """INSERT the run row ... ON CONFLICT DO NOTHING RETURNING id, one statement (PostgreSQL;
    SQLite writes INSERT OR IGNORE ... RETURNING, from 3.35). False: another claim holds the
    slot (the unique (job, district, slot) constraints are the claim) and nothing was
    written. Where a savepoint around a plain INSERT cost three statements, and the
    IntegrityError of the loser. Through ``QuerySet._insert``, the call ``Model.save`` and
    ``bulk_create`` make: ``bulk_create(ignore_conflicts=True)`` does not return the id."""
    opts = JobRun._meta
    fields = [f for f in opts.concrete_fields if not f.primary_key and not f.generated]
    rows = JobRun.objects._insert([run], fields=fields, returning_fields=opts.db_returning_fields,
                                  on_conflict=OnConflict.IGNORE)
    if not rows or rows[0] is None:
        return False
    for field, value in zip(opts.db_returning_fields, rows[0], strict=True):
        setattr(run, field.attname, value)
    run._state.adding, run._state.db = False, JobRun.objects.db
    return True


@transaction.atomic
def claim_slot(*, job_slug: str, district_id: int | None, slot: dt.datetime, now: dt.datetime | None = None,
               start: dict | None = None) -> JobRun | None:
    """Decide what happens to a slot the scheduler fired, and claim it.

    Returns the queued JobRun to execute now, or None (skipped, missed, paused, or another
    scheduler/cluster already claimed the slot). ``start``: the claiming worker runs the
    slot itself (the fire task; runner.started_fields): the run row is inserted already
    started with these columns, and the schedule's last run is recorded with its last slot,
    so the runner does not claim it again (two statements fewer per task). Steps:
    1. Lock the JobSchedule row: claims of one schedule are serialized.
    2. A job without a body yet, or paused (a task enqueued just before the pause):
       record the slot as skipped.
    3. Slots of the cron after the fired one and up to now (an outage): those the job's
       calendar policy skips (a "school days" job on a holiday, read from the school
       calendar now: calendar_policy.calendar_skips) are recorded as skipped with the
       calendar's reason, never alerted; when that includes the latest, nothing runs. Of
       the others, all but the latest are recorded as missed.
    4. The latest slot: on time (within the overdue grace) runs as a scheduled run; late
       but within the job's catch-up window runs as a catch-up; beyond it, missed.
    5. Overlap (policy skip): the previous run of this job and district still running
       means this slot is recorded as skipped, with the reason.
    6. Insert the run row: the unique (job, district, slot) makes this the claim
       (``_insert_unless_claimed``: the loser of a race writes nothing and gets None).

    Statements when the slot runs on time: the lock (which also reads the overlap check,
    ``_lock_schedule``), the INSERT and the schedule's UPDATE, in one transaction.
    """
    now = now or timezone.now()
    job = registry.find(job_slug)
    if job is None:
        logger.error("slot %s fired for unknown job %s: ignored", slot, job_slug)
        return None
    schedule, running_id = _lock_schedule(job_slug, district_id)
    if schedule is None or not schedule.cron:
        logger.warning("slot %s of %s/%s has no active schedule: ignored", slot, job_slug, district_id)
        return None
    tz = schedule.zone_name
    rows: list[JobRun] = []
    if not job.has_body:
        # Registered for sync/list/next before its issue lands: the slot is recorded, not
        # run (no failure, no retries, no alert).
        rows.append(_slot_row(job_slug, district_id, slot, JobRun.Status.SKIPPED, f"job {job_slug} has no body yet", now=now))
        _record_slots(rows)
        return None
    if schedule.paused:
        rows.append(_slot_row(job_slug, district_id, slot, JobRun.Status.SKIPPED, f"paused: {schedule.pause_note}", now=now))
        _record_slots(rows)
        return None
    later = cron.slots_between(schedule.cron, tz, after=slot, until=now)
    due = [slot, *later]
    latest = due[-1]
    # The school calendar, read now rather than at sync: a snow day entered this morning
    # skips tonight's slot; a day turned back to instructional runs. A slot it skips is
    # recorded with the calendar's reason, never missed and never alerted.
    closed = calendar_policy.calendar_skips(job, district_id=district_id, zone_name=tz, slots=due)
    if closed:
        _record_slots([_slot_row(job_slug, district_id, s, JobRun.Status.SKIPPED, calendar_policy.skip_note(reason), now=now)
                       for s, reason in closed.items()], calendar_reasons=closed)
    if latest in closed:
        lost = [_slot_row(
            job_slug, district_id, s, JobRun.Status.MISSED,
            f"missed: the scheduler was not running; the latest slot ({latest:%Y-%m-%d %H:%M}Z) is not a school day", now=now,
        ) for s in due[:-1] if s not in closed]
        if _record_slots(lost):
            alerts.slots_not_run(job_slug=job_slug, district=schedule.district, slots=[r.slot for r in lost],
                                 status=JobRun.Status.MISSED, note=lost[0].note)
        JobSchedule.objects.filter(pk=schedule.pk).update(last_slot=latest)
        return None
    for missed in (s for s in due[:-1] if s not in closed):
        rows.append(_slot_row(
            job_slug, district_id, missed, JobRun.Status.MISSED,
            f"missed: the scheduler was not running; only the latest slot ({latest:%Y-%m-%d %H:%M}Z) is considered", now=now,
        ))
    lateness = now - latest
    trigger = JobRun.Trigger.SCHEDULE
    if lateness > dt.timedelta(seconds=settings.SCHEDULING_OVERDUE_GRACE):
        if lateness > job.catch_up_window:
            rows.append(_slot_row(
                job_slug, district_id, latest, JobRun.Status.MISSED,
                f"missed: {duration_text(lateness)} late, beyond the catch-up window of {duration_text(job.catch_up_window)}", now=now,
            ))
            # Alerted only for the slots this claim recorded: a second delivery of a slot
            # that already has its run (or its missed row) finds nothing new to say.
            if new := _record_slots(rows):
                alerts.slots_not_run(job_slug=job_slug, district=schedule.district, slots=[r.slot for r in new],
                                     status=JobRun.Status.MISSED, note=new[-1].note)
            JobSchedule.objects.filter(pk=schedule.pk).update(last_slot=latest)
            return None
        trigger = JobRun.Trigger.CATCH_UP
    if rows and (new := _record_slots(rows)):
        alerts.slots_not_run(job_slug=job_slug, district=schedule.district, slots=[r.slot for r in new],
                             status=JobRun.Status.MISSED, note=new[0].note)

    if running_id is _UNKNOWN:
        running = _running(job_slug, district_id).first()
    else:  # read with the lock: None, or the run to look at (rare: fetched now)
        running = JobRun.objects.filter(pk=running_id).first() if running_id is not None else None
    if running is not None and running.slot == latest:
        # This slot's own run: the fire task was delivered again (a commit lost after the
        # push, or the broker's redelivery once its worker died). Not an overlap: nothing
        # is skipped or alerted. Past its deadline its worker is gone, and it is recovered
        # as the reaper would (failed, its retry from the checkpoint sent to the cluster):
        # "superseded" by its own slot, it would end failed with no retry and the slot undone.
        # (The retry is sent once this claim commits: a queue that refuses it raises
        # QueueUnavailable from the commit, the retry saved queued for the sweeper.)
        if running.deadline and running.deadline < now:
            recover_lost_run(run=running, now=now, enqueue=True)
        return None
    if running is not None and running.deadline and running.deadline < now:
        _mark_lost(running, now, note=f"worker lost; superseded by slot {latest:%Y-%m-%d %H:%M}Z")
        running = None
    if running is not None:
        if _record_slots([_slot_row(
            job_slug, district_id, latest, JobRun.Status.SKIPPED,
            f"skipped: run #{running.pk} (slot {running.slot:%Y-%m-%d %H:%M}Z) is still running; overlap policy: skip",
            trigger=trigger, now=now,
        )]):
            alerts.slots_not_run(job_slug=job_slug, district=schedule.district, slots=[latest], status=JobRun.Status.SKIPPED,
                                 note=f"run #{running.pk} is still running (overlap policy: skip)")
        return None
    run = JobRun(  # with the district read with the lock: the runner needs it
        job=job_slug, district=schedule.district, trigger=trigger, slot=latest, enqueued_at=now,
        note="catch-up after an outage" if trigger == JobRun.Trigger.CATCH_UP else "",
        **(start or {"status": JobRun.Status.QUEUED}),
    )
    if not _insert_unless_claimed(run):
        logger.info("slot %s of %s/%s already claimed", latest, job_slug, district_id)
        return None
    JobSchedule.objects.filter(pk=schedule.pk).update(last_slot=latest, **({"last_run": run} if start else {}))
    return run


# -- running on demand ---------------------------------------------------------------------------
def _check_target(job: registry.Job, district: District | None) -> None:
    if job.is_global and district is not None:
        raise ScheduleError(f"job {job.slug} is global: do not give a district")
    if not job.is_global and district is None:
        raise ScheduleError(f"job {job.slug} runs per district: give --district ID")


def _schedule_for(job: registry.Job, district: District | None) -> JobSchedule | None:
    return JobSchedule.objects.filter(job=job.slug, district=district, removed_at__isnull=True).first()


def _send(run: JobRun, job: registry.Job) -> str:
    """Put the run's task on the queue now and record its id; raises QueueUnavailable."""
    from django_q.tasks import async_task

    try:
        task_id = async_task(EXECUTE_FUNC, run.pk, q_options={"timeout": job.timeout, "task_name": f"{job.slug}-run-{run.pk}"})
    except Exception as exc:  # the broker's own errors (redis.ConnectionError, ...): one message
        logger.warning("run %s: the task queue refused it: %s", run.pk, exc)
        raise QueueUnavailable(
            f"The task queue is unreachable ({type(exc).__name__}): run #{run.pk} is saved as queued "
            f"and will start automatically once the queue is back.", run=run,
        ) from exc
    JobRun.objects.filter(pk=run.pk, task_id="").update(task_id=task_id or "")
    return task_id


def _enqueue(run: JobRun, job: registry.Job) -> None:
    """Send the run to the cluster once the transaction commits (Redis is not transactional):
    the worker must find the row. When the queue refuses it, the committed run stays queued
    without a task id (the sweeper's mark) and the caller gets QueueUnavailable."""
    transaction.on_commit(lambda: _send(run, job))


@transaction.atomic
def run_now(*, job_slug: str, district: District | None, acting_user, actor_label: str = "command line",
            as_of: dt.datetime | None = None, now: dt.datetime | None = None) -> JobRun:
    """Queue a manual run for the cluster (the dashboard's "run now"); records who asked."""
    now = now or timezone.now()
    job = registry.get(job_slug)
    _check_target(job, district)
    if not job.has_body:
        raise ScheduleError(f"job {job.slug} has no body yet")
    run = JobRun.objects.create(
        job=job.slug, district=district, trigger=JobRun.Trigger.MANUAL, slot=as_of or now,
        status=JobRun.Status.QUEUED, enqueued_at=now, triggered_by=acting_user,
    )
    schedule = _schedule_for(job, district)
    if schedule is not None:
        _audit(schedule, ScheduleChange.Action.RUN_NOW, acting_user=acting_user, actor_label=actor_label,
               before={}, after={"run": run.pk, "slot": run.slot.isoformat()}, now=now)
    _enqueue(run, job)
    return run


def record_manual_run(*, job_slug: str, district: District | None, acting_user=None,
                      as_of: dt.datetime | None = None) -> JobRun:
    """``jobs run``: record a manual run to execute in this process (``runner.run_sync``)."""
    job = registry.get(job_slug)
    _check_target(job, district)
    if not job.has_body:
        raise ScheduleError(f"job {job.slug} has no body yet")
    now = timezone.now()
    return JobRun.objects.create(
        job=job.slug, district=district, trigger=JobRun.Trigger.MANUAL, slot=as_of or now,
        status=JobRun.Status.QUEUED, enqueued_at=now, triggered_by=acting_user, note="run from the command line",
    )


# -- pause / resume / cron / delete ---------------------------------------------------------------
# The state a staff edit may change. Every edit saves all of it: the row is locked, so
# rewriting a value the edit left alone loses nothing, and one save path serves all five.
_EDITABLE = ["cron", "cron_customized", "paused", "pause_note", "paused_by", "paused_at", "removed_at",
             "q_schedule", "updated_at"]


def _audited_change(schedule: JobSchedule, action: str, change, *, q_row, acting_user, actor_label: str,
                    now: dt.datetime) -> JobSchedule:
    """One staff edit of a schedule, done the same way for all five (inside the service's
    transaction: select_for_update refuses to run outside one).

    1. Lock the row: edits of one schedule are serialized, so ``change`` checks the state it
       applies to, not one another edit is about to replace.
    2. Snapshot it (the audit row's ``before``).
    3. ``change(schedule)`` checks (a ScheduleError leaves everything unwritten) and sets the
       new state on the locked instance.
    4. ``q_row(schedule, now)`` brings django-q2's Schedule row in line; it runs before the
       save because dropping the row also unlinks it (``q_schedule``), which the save writes.
    5. Save, and write the ScheduleChange row with the before and after snapshots.
    """
    schedule = _locked(schedule)
    before = _snapshot(schedule)
    change(schedule)
    q_row(schedule, now)
    schedule.save(update_fields=_EDITABLE)
    _audit(schedule, action, acting_user=acting_user, actor_label=actor_label,
           before=before, after=_snapshot(schedule), now=now)
    return schedule


def _q_stop(schedule: JobSchedule, now: dt.datetime) -> None:
    """Paused: the q row stops firing (repeats=0) and keeps its next_run, which the
    audit row's snapshot records."""
    if schedule.q_schedule_id:
        Schedule.objects.filter(pk=schedule.q_schedule_id).update(repeats=0)
        schedule.q_schedule.refresh_from_db()


def _q_reseed(schedule: JobSchedule, now: dt.datetime) -> None:
    """Active again or a new cron: the q row matches the schedule and its next_run is the
    first slot after *now*, so a slot that passed meanwhile never fires."""
    if schedule.cron and schedule.removed_at is None:
        _ensure_q(schedule, registry.get(schedule.job), now)


def _q_drop(schedule: JobSchedule, now: dt.datetime) -> None:
    """Deleted: the q row goes (the JobSchedule and its runs stay, as history)."""
    if schedule.q_schedule_id:
        Schedule.objects.filter(pk=schedule.q_schedule_id).delete()
        schedule.q_schedule = None


@transaction.atomic
def pause_schedule(*, schedule: JobSchedule, acting_user, note: str, actor_label: str = "command line",
                   now: dt.datetime | None = None) -> JobSchedule:
    """Pause: the q Schedule stops firing (repeats=0); the note says why (required)."""
    now = now or timezone.now()
    note = (note or "").strip()
    if not note:
        raise ScheduleError("a pause needs a note saying why")

    def pause(s: JobSchedule) -> None:
        if s.removed_at:
            raise ScheduleError(f"schedule {s} was deleted")
        if s.paused:
            raise ScheduleError(f"schedule {s} is already paused")
        s.paused, s.pause_note, s.paused_by, s.paused_at = True, note, acting_user, now

    return _audited_change(schedule, ScheduleChange.Action.PAUSE, pause, q_row=_q_stop,
                           acting_user=acting_user, actor_label=actor_label, now=now)


@transaction.atomic
def resume_schedule(*, schedule: JobSchedule, acting_user, actor_label: str = "command line",
                    now: dt.datetime | None = None) -> JobSchedule:
    """Resume: next_run is the first slot after *now*, so a stale slot never fires."""
    now = now or timezone.now()

    def resume(s: JobSchedule) -> None:
        if not s.paused:
            raise ScheduleError(f"schedule {s} is not paused")
        s.paused, s.pause_note, s.paused_by, s.paused_at = False, "", None, None

    return _audited_change(schedule, ScheduleChange.Action.RESUME, resume, q_row=_q_reseed,
                           acting_user=acting_user, actor_label=actor_label, now=now)


@transaction.atomic
def edit_cron(*, schedule: JobSchedule, acting_user, cron_expr: str, actor_label: str = "command line",
              now: dt.datetime | None = None) -> JobSchedule:
    """Change a schedule's cron (validated); next_run is recomputed from now. Staff's cron
    is kept by later syncs (cron_customized)."""
    now = now or timezone.now()
    try:
        expr = cron.validate(cron_expr)
    except cron.BadCron as exc:
        raise ScheduleError(str(exc)) from None

    def set_cron(s: JobSchedule) -> None:
        if s.removed_at:
            raise ScheduleError(f"schedule {s} was deleted")
        s.cron, s.cron_customized = expr, True

    return _audited_change(schedule, ScheduleChange.Action.EDIT_CRON, set_cron, q_row=_q_reseed,
                           acting_user=acting_user, actor_label=actor_label, now=now)


@transaction.atomic
def delete_schedule(*, schedule: JobSchedule, acting_user, actor_label: str = "command line",
                    now: dt.datetime | None = None) -> JobSchedule:
    """Stop a schedule for good: its q row goes, the JobSchedule and all runs stay (history),
    and sync does not recreate it (``restore_schedule`` does)."""
    now = now or timezone.now()

    def delete(s: JobSchedule) -> None:
        if s.removed_at:
            raise ScheduleError(f"schedule {s} is already deleted")
        s.removed_at = now

    return _audited_change(schedule, ScheduleChange.Action.DELETE, delete, q_row=_q_drop,
                           acting_user=acting_user, actor_label=actor_label, now=now)


@transaction.atomic
def restore_schedule(*, schedule: JobSchedule, acting_user, actor_label: str = "command line",
                     now: dt.datetime | None = None) -> JobSchedule:
    """Undo a delete: the schedule fires again from its next slot after now."""
    now = now or timezone.now()

    def restore(s: JobSchedule) -> None:
        if s.removed_at is None:
            raise ScheduleError(f"schedule {s} is not deleted")
        s.removed_at = None

    return _audited_change(schedule, ScheduleChange.Action.RESTORE, restore, q_row=_q_reseed,
                           acting_user=acting_user, actor_label=actor_label, now=now)


# -- failures, retries, lost workers -----------------------------------------------------------
RETRYABLE = (JobRun.Status.FAILED, JobRun.Status.TIMED_OUT, JobRun.Status.HELD)


def _next_attempt(run: JobRun) -> int:
    first = run.retry_of_id or run.pk
    top = JobRun.objects.filter(retry_of_id=first).aggregate(m=Max("attempt"))["m"]
    return max(top or 1, run.attempt) + 1


def _create_retry(run: JobRun, *, when: dt.datetime, note: str, acting_user=None) -> JobRun:
    return JobRun.objects.create(
        job=run.job, district_id=run.district_id, trigger=JobRun.Trigger.RETRY, slot=run.slot,
        status=JobRun.Status.QUEUED, attempt=_next_attempt(run), retry_of_id=run.retry_of_id or run.pk,
        checkpoint=run.checkpoint, enqueued_at=when, note=note[:300], triggered_by=acting_user,
    )


def _schedule_retry(retry: JobRun, job: registry.Job, when: dt.datetime) -> Schedule:
    """A django-q2 one-off Schedule (visible in admin until it fires) that executes the retry."""
    q = Schedule.objects.create(
        name=_retry_schedule_name(retry.pk), func=EXECUTE_FUNC,
        kwargs=repr({"run_id": retry.pk, "q_options": {"timeout": job.timeout}}),
        schedule_type=Schedule.ONCE, repeats=-1, next_run=when,
    )
    return q


def after_failure(*, run: JobRun, job: registry.Job, auto_retry: bool = True, now: dt.datetime | None = None) -> JobRun | None:
    """A run failed or timed out: schedule the next attempt with exponential backoff and
    jitter, or (last attempt, or no auto retry) call the alert hook. Returns the retry."""
    now = now or timezone.now()
    if auto_retry and run.attempt < job.max_attempts:
        when = now + job.backoff(run.attempt, jitter=random.uniform(0.5, 1.0))
        retry = _create_retry(run, when=when, note=f"attempt {run.attempt + 1}/{job.max_attempts} after run #{run.pk} {run.status}")
        _schedule_retry(retry, job, when)
        return retry
    alerts.job_failed(run)
    return None


@transaction.atomic
def retry_run(*, run: JobRun, acting_user, actor_label: str = "command line", now: dt.datetime | None = None) -> JobRun:
    """Staff retry of a failed, timed-out or held run: a new attempt, from its checkpoint,
    now. A retry of a held run takes its held messages over and holds again (only a system
    admin's release sends them: scheduling/blast_radius.py)."""
    now = now or timezone.now()
    run = JobRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in RETRYABLE:
        raise ScheduleError(f"run #{run.pk} is {run.status}; only failed, timed-out or held runs can be retried")
    job = registry.get(run.job)
    if not job.has_body:
        raise ScheduleError(f"job {job.slug} has no body yet")
    retry = _create_retry(run, when=now, note=f"retried by {acting_user or actor_label}", acting_user=acting_user)
    schedule = _schedule_for(job, run.district)
    if schedule is not None:
        _audit(schedule, ScheduleChange.Action.RETRY, acting_user=acting_user, actor_label=actor_label,
               before={"run": run.pk, "status": run.status}, after={"run": retry.pk, "attempt": retry.attempt}, now=now)
    _enqueue(retry, job)
    return retry


def _mark_lost(run: JobRun, now, *, note: str) -> bool:
    won = JobRun.objects.filter(pk=run.pk, status=JobRun.Status.RUNNING).update(
        status=JobRun.Status.FAILED, finished_at=now, error="worker lost: no result before the deadline",
        note=note[:300],
    )
    if won:
        run.refresh_from_db()
        counters.run_finished(job=run.job, district_id=run.district_id, status=run.status,
                              duration_seconds=run.duration_seconds, finished_at=run.finished_at)
        if run.attempt >= registry.get(run.job).max_attempts:
            alerts.job_failed(run)
    return bool(won)


@transaction.atomic
def recover_lost_run(*, run: JobRun, now: dt.datetime, enqueue: bool) -> JobRun | None:
    """A running run past its deadline lost its worker (killed, OOM, host gone). Mark it
    failed and create its retry from the saved checkpoint (if attempts remain).

    The conditional UPDATE decides between a redelivered task and the reaper racing for
    the same run: only one recovers it. ``enqueue`` sends the retry to the cluster; the
    redelivered task instead executes it itself (it is already in a worker).
    """
    if not _mark_lost(run, now, note="worker lost; resuming from the checkpoint"):
        return None
    run.refresh_from_db()
    job = registry.get(run.job)
    if run.attempt >= job.max_attempts:
        return None
    retry = _create_retry(run, when=now, note=f"resume after lost worker of run #{run.pk}")
    if enqueue:
        _enqueue(retry, job)
    return retry


def reap_lost_runs(*, now: dt.datetime | None = None) -> int:
    """Find runs whose worker is gone (still running past the deadline) and recover them;
    the scheduler pass calls it, so lost runs are recovered with the Redis broker too
    (which never redelivers). One indexed query when nothing is lost."""
    now = now or timezone.now()
    count = 0
    for run in JobRun.objects.filter(status=JobRun.Status.RUNNING, deadline__lt=now):
        try:
            recovered = recover_lost_run(run=run, now=now, enqueue=True)
        except QueueUnavailable:
            recovered = True  # committed; its retry is queued without a task: the sweeper sends it
        if recovered is not None:
            count += 1
    return count


# A queued run without a task id this long after it was due lost its delivery: the queue
# refused it (Redis down at "run now", retry or recovery), or a worker died between a slot's
# claim and its start. The grace covers the moment between a commit and its on_commit send.
STRANDED_GRACE = dt.timedelta(seconds=60)
STRANDED_BATCH = 500


def enqueue_stranded_runs(*, now: dt.datetime | None = None) -> int:
    """Send every stranded queued run to the queue once (the scheduler pass calls it);
    returns how many were sent. Stops at the first refusal: the queue is still down.

    A run due through a one-off retry Schedule is not stranded while that row waits; once
    django-q2 fires it the run records the task id (``record_retry_task``). A delivery
    sent twice is harmless: the runner's claim is a conditional queued -> running UPDATE.
    Two indexed queries when nothing is stranded."""
    now = now or timezone.now()
    candidates = list(
        JobRun.objects.filter(status=JobRun.Status.QUEUED, task_id="", enqueued_at__lt=now - STRANDED_GRACE)
        .order_by("enqueued_at", "pk")[:STRANDED_BATCH]
    )
    if not candidates:
        return 0
    waiting = set(Schedule.objects.filter(name__in=[_retry_schedule_name(r.pk) for r in candidates])
                  .values_list("name", flat=True))
    sent = 0
    for run in candidates:
        if _retry_schedule_name(run.pk) in waiting:
            continue
        job = registry.find(run.job)
        if job is None:
            logger.error("stranded run %s: unknown job %s", run.pk, run.job)
            continue
        try:
            _send(run, job)
        except QueueUnavailable:
            break  # logged by _send; the next pass tries again
        logger.info("run %s had no task (queue refused it or its worker died): sent", run.pk)
        sent += 1
    return sent


def _retry_schedule_name(run_id: int) -> str:
    return f"skillcore:retry:{run_id}"


def record_retry_task(*, schedule: Schedule) -> None:
    """django-q2 just fired and deleted a retry's one-off Schedule (inside its pass's
    transaction, so only when the task was really enqueued): the run records the task id,
    which tells the sweeper it has a delivery."""
    name = schedule.name or ""
    prefix = _retry_schedule_name(0)[:-1]
    if schedule.task and name.startswith(prefix) and name[len(prefix):].isdigit():
        JobRun.objects.filter(pk=int(name[len(prefix):]), task_id="").update(task_id=schedule.task[:64])


def record_heartbeat(*, name: str, now: dt.datetime | None = None) -> None:
    """The scheduler is alive: touch this process's heartbeat row (one UPDATE normally)."""
    now = now or timezone.now()
    if not SchedulerHeartbeat.objects.filter(name=name).update(last_beat=now, passes=F("passes") + 1):
        SchedulerHeartbeat.objects.get_or_create(name=name, defaults={"last_beat": now, "passes": 1})


# A scheduler process (host:pid) that has not beaten for this long is gone: every restart
# makes a new row, so without pruning the table grows by one row per deploy, forever.
HEARTBEAT_RETENTION = dt.timedelta(days=30)
HEARTBEAT_PRUNE_BATCH = 1000


def heartbeats_prune(*, before: dt.datetime, batch_size: int = HEARTBEAT_PRUNE_BATCH) -> int:
    """Delete heartbeat rows of schedulers silent since before ``before``; returns how many.

    The newest row is always kept, so /health and the metrics still say when a scheduler
    last ran even after a month without one. Set-based, in id ranges of ``batch_size``
    (one DELETE each), as skillcore.events.store_purge.
    """
    newest = SchedulerHeartbeat.objects.order_by("-last_beat", "-id").values_list("id", flat=True).first()
    stale = SchedulerHeartbeat.objects.filter(last_beat__lt=before).exclude(id=newest)
    bounds = stale.aggregate(lo=Min("id"), hi=Max("id"))
    if bounds["lo"] is None:
        return 0
    done = 0
    for start in range(bounds["lo"], bounds["hi"] + 1, batch_size):
        deleted, _ = stale.filter(id__gte=start, id__lt=start + batch_size).delete()
        done += deleted
    return done
