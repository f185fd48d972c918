"""Set-based reads for the dashboard, the CLI, ``jobs check`` and (later) /health and metrics.

Each selector is a fixed number of queries whatever the number of schedules: figures per
schedule come from grouped aggregates on JobRun merged in Python, never a query per row.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Avg, Count, Q, QuerySet
from django.utils import timezone

from scheduling import cron, registry
from scheduling.models import JobRun, JobSchedule, SchedulerHeartbeat

# Runs that ran the job's body to an end: their durations and success rate are shown. A run
# that succeeded with warnings counts as a success in the rate (it did not fail).
EXECUTED = (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING, JobRun.Status.FAILED, JobRun.Status.TIMED_OUT)
SUCCEEDED = (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING)


def next_run_local(row: JobSchedule) -> dt.datetime | None:
    """The schedule's next run in its district's zone (None: paused or ad hoc)."""
    if row.paused or not row.q_schedule_id or row.q_schedule is None or row.q_schedule.next_run is None:
        return None
    return row.q_schedule.next_run.astimezone(row.zone)


@dataclass(frozen=True)
class DashboardRow:
    """One schedule as the dashboard, ``jobs list`` and ``jobs check`` show it."""

    schedule_id: int
    job_slug: str
    job: registry.Job | None  # None: a schedule whose job left the registry
    district_id: int | None
    district_name: str | None
    time_zone: str
    cron: str
    cron_customized: bool
    cron_text: str
    paused: bool
    pause_note: str
    paused_by_name: str | None
    paused_at: dt.datetime | None
    next_run_utc: dt.datetime | None  # None: paused or ad hoc
    next_run_local: dt.datetime | None
    last_run_id: int | None
    last_status: str | None
    last_started: dt.datetime | None
    last_finished: dt.datetime | None
    avg_duration: float | None  # seconds, executed runs of the last 30 days
    runs_30d: int
    success_rate: float | None  # None: no executed run in 30 days
    overdue: bool
    last_note: str = ""  # why the last run was skipped, retried or succeeded with warnings


_ROW_FIELDS = (
    "id", "job", "district_id", "district__name", "district__time_zone", "cron", "cron_customized",
    "paused", "pause_note", "paused_by__username", "paused_at", "q_schedule__next_run", "q_schedule__repeats",
    "last_run_id", "last_run__status", "last_run__started_at", "last_run__finished_at", "last_run__note",
)


def dashboard_rows(*, now: dt.datetime | None = None, job_slugs: list[str] | None = None,
                   district_id: int | None = None) -> list[DashboardRow]:
    """One DashboardRow per live schedule, ordered by job then district name (2 queries).
    ``district_id``: only that district's schedules (a district admin's read-only view).

    Plain values, not model instances: building 6,500 x 4 model objects took seconds.
    """
    now = now or timezone.now()
    since = now - dt.timedelta(days=30)
    cutoff = now - dt.timedelta(seconds=settings.SCHEDULING_OVERDUE_GRACE)
    jobs = {j.slug: j for j in registry.all_jobs()}
    qs = JobSchedule.objects.filter(removed_at__isnull=True)
    runs = JobRun.objects.filter(started_at__gte=since, status__in=EXECUTED)
    if job_slugs is not None:
        qs, runs = qs.filter(job__in=job_slugs), runs.filter(job__in=job_slugs)
    if district_id is not None:
        qs, runs = qs.filter(district_id=district_id), runs.filter(district_id=district_id)
    figures = {
        (r["job"], r["district_id"]): r
        for r in runs.values("job", "district_id")
        .annotate(runs=Count("id"), succeeded=Count("id", filter=Q(status__in=SUCCEEDED)), avg=Avg("duration_seconds"))
        .order_by()
    }
    out = []
    for (pk, slug, district_id, district_name, district_zone, expr, customized, paused, note, paused_by, paused_at,
         next_run, repeats, last_id, last_status, last_started, last_finished, last_note) in (
        qs.order_by("job", "district__name").values_list(*_ROW_FIELDS)
    ):
        zone_name = JobSchedule.zone_name_for(district_zone if district_id else None)
        live_next = next_run if (next_run is not None and not paused and repeats != 0) else None
        local = live_next.astimezone(cron.zone(zone_name)) if live_next is not None else None
        fig = figures.get((slug, district_id))
        runs_30d = fig["runs"] if fig else 0
        out.append(DashboardRow(
            schedule_id=pk, job_slug=slug, job=jobs.get(slug), district_id=district_id, district_name=district_name,
            time_zone=zone_name, cron=expr, cron_customized=customized,
            cron_text=cron.describe(expr) if expr else "ad hoc (run on demand)",
            paused=paused, pause_note=note, paused_by_name=paused_by, paused_at=paused_at,
            next_run_utc=live_next, next_run_local=local,
            last_run_id=last_id, last_status=last_status, last_started=last_started, last_finished=last_finished,
            avg_duration=fig["avg"] if fig else None, runs_30d=runs_30d,
            success_rate=round(fig["succeeded"] / runs_30d, 3) if runs_30d else None,
            overdue=bool(live_next is not None and live_next < cutoff), last_note=last_note or "",
        ))
    return out


def overdue_schedules(now: dt.datetime | None = None) -> QuerySet[JobSchedule]:
    """Live, unpaused schedules whose next run is more than the grace in the past: no
    scheduler has fired them, so no scheduler is running (one query)."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.SCHEDULING_OVERDUE_GRACE)
    return (
        JobSchedule.objects.filter(
            removed_at__isnull=True, paused=False, q_schedule__isnull=False,
            q_schedule__next_run__lt=cutoff,
        )
        .exclude(q_schedule__repeats=0)
        .select_related("district", "q_schedule")
        .order_by("q_schedule__next_run")
    )


def last_scheduler_heartbeat() -> dt.datetime | None:
    """When any scheduler last ran a pass (None: never)."""
    return SchedulerHeartbeat.objects.order_by("-last_beat").values_list("last_beat", flat=True).first()


def failing_critical_schedules(now: dt.datetime | None = None) -> list[DashboardRow]:
    """Live schedules of critical jobs whose latest executed run failed or timed out (2 queries)."""
    critical = [j.slug for j in registry.all_jobs() if j.critical]
    return [
        r for r in dashboard_rows(now=now, job_slugs=critical)
        if r.last_status in (JobRun.Status.FAILED, JobRun.Status.TIMED_OUT)
    ]


def run_history(*, job_slug: str, district_id: int | None = None, limit: int = 20) -> QuerySet[JobRun]:
    """Runs of a job (one district, or all), newest slot first."""
    qs = JobRun.objects.filter(job=job_slug).select_related("district", "triggered_by")
    if district_id is not None:
        qs = qs.filter(district_id=district_id)
    return qs.order_by("-slot", "-attempt", "-id")[:limit]


def running_runs() -> QuerySet[JobRun]:
    return JobRun.objects.filter(status=JobRun.Status.RUNNING).select_related("district")


@dataclass(frozen=True)
class DurationPoint:
    run_id: int
    started: dt.datetime
    seconds: float
    status: str


def recent_durations(*, job_slug: str, district_id: int | None, limit: int = 30) -> list[DurationPoint]:
    """The latest executed runs' durations, oldest first: the run and schedule pages' chart."""
    qs = JobRun.objects.filter(job=job_slug, district_id=district_id, status__in=EXECUTED, duration_seconds__isnull=False)
    rows = qs.order_by("-started_at", "-id").values_list("id", "started_at", "duration_seconds", "status")[:limit]
    return [DurationPoint(*row) for row in reversed(rows)]


def last_delivered_slot(*, job_slug: str, district_id: int | None, before: dt.datetime) -> dt.datetime | None:
    """The latest slot before ``before`` whose run of this job and district delivered its
    output: it succeeded, or it committed a ``delivered_through`` checkpoint together with
    its output (a worker killed after that commit but before the success was recorded).

    Jobs that cover "everything since the previous run" (grade-posting-digest) start their
    window here, so a late or retried run neither skips nor repeats. Any trigger counts: a
    manual run covered its window too. Uses index jobrun_job_district_started's columns.
    """
    return (
        JobRun.objects.filter(job=job_slug, district_id=district_id, slot__lt=before)
        .filter(Q(status=JobRun.Status.SUCCEEDED) | Q(checkpoint__has_key="delivered_through"))
        .order_by("-slot").values_list("slot", flat=True).first()
    )


def previous_cron_slot(*, job_slug: str, district_id: int | None, tz_name: str, before: dt.datetime) -> dt.datetime | None:
    """The slot of the job's cron (the district's schedule, else the job's default) before
    ``before``, looking back at most 35 days; None for an ad-hoc job."""
    expr = (
        JobSchedule.objects.filter(job=job_slug, district_id=district_id, removed_at__isnull=True)
        .values_list("cron", flat=True).first()
    ) or registry.get(job_slug).cron_for(district_id)
    if not expr:
        return None
    slots = cron.slots_between(expr, tz_name, after=before - dt.timedelta(days=35), until=before - dt.timedelta(microseconds=1))
    return slots[-1] if slots else None
