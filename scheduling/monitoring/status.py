"""Read-only views of the system's health and of each job's alert state: /health, the
scheduled-jobs dashboard's system-status card and alert column, and ``alerts status``.

Every selector here is a fixed number of queries whatever the number of schedules.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone

from scheduling import registry, selectors
from scheduling.models import Incident, JobRun, JobSchedule

SEVERITY_RANK = {Incident.Severity.CRITICAL: 2, Incident.Severity.WARNING: 1}


@dataclass(frozen=True)
class SystemStatus:
    """The dashboard's system-status card and /health's body."""

    now: dt.datetime
    last_heartbeat: dt.datetime | None
    heartbeat_age_seconds: int | None
    scheduler_ok: bool  # a heartbeat within the overdue grace (or nothing scheduled at all)
    overdue: int  # live schedules overdue by more than the grace
    overdue_examples: list[str]
    running: int
    long_running: int  # running longer than expected duration x ALERTS_LONG_RUNNING_FACTOR
    failing: int  # open failure/timeout incidents: failed for good, no success since
    open_critical: int
    open_warning: int

    @property
    def healthy(self) -> bool:
        return self.scheduler_ok and self.overdue == 0


def system_status(*, now: dt.datetime | None = None) -> SystemStatus:
    """Scheduler heartbeat, overdue schedules, failing and running jobs, open incidents
    (four queries; a fifth counts the overdue schedules when there are more than five)."""
    now = now or timezone.now()
    grace = settings.SCHEDULING_OVERDUE_GRACE
    beat = selectors.last_scheduler_heartbeat()
    age = int((now - beat).total_seconds()) if beat else None
    overdue_qs = selectors.overdue_schedules(now)
    examples = [
        f"{s.job} @ {s.district.name if s.district_id else 'global'} due {s.q_schedule.next_run:%Y-%m-%d %H:%M}Z"
        for s in overdue_qs[:5]
    ]
    overdue = len(examples) if len(examples) < 5 else overdue_qs.order_by().count()
    factor = settings.ALERTS_LONG_RUNNING_FACTOR
    running = list(JobRun.objects.filter(status=JobRun.Status.RUNNING).values_list("job", "started_at"))
    long_running = 0
    for slug, started in running:
        job = registry.find(slug)
        if job is not None and started is not None and now - started > job.expected_duration * factor:
            long_running += 1
    counts = {
        (r["kind"], r["severity"]): r["n"]
        for r in Incident.objects.filter(resolved_at__isnull=True).order_by().values("kind", "severity").annotate(n=Count("id"))
    }
    if beat is not None:
        scheduler_ok = age <= grace
    else:  # never beaten: fine only while nothing is scheduled (a fresh install)
        scheduler_ok = not JobSchedule.objects.filter(removed_at__isnull=True, paused=False, q_schedule__isnull=False).exists()
    return SystemStatus(
        now=now, last_heartbeat=beat, heartbeat_age_seconds=age, scheduler_ok=scheduler_ok,
        overdue=overdue, overdue_examples=examples, running=len(running), long_running=long_running,
        failing=sum(n for (kind, _), n in counts.items() if kind in (Incident.Kind.FAILURE, Incident.Kind.TIMEOUT)),
        open_critical=sum(n for (_, sev), n in counts.items() if sev == Incident.Severity.CRITICAL),
        open_warning=sum(n for (_, sev), n in counts.items() if sev == Incident.Severity.WARNING),
    )


@dataclass
class JobAlertState:
    """The open incidents of one job in one district, for the dashboard's alert column."""

    job: str
    district_id: int | None
    severity: str  # the worst open: "critical" or "warning"
    kinds: list[str] = field(default_factory=list)
    since: dt.datetime | None = None  # the oldest open incident's start
    summary: str = ""  # the newest open incident's summary
    incident_ids: list[int] = field(default_factory=list)
    occurrences: int = 0


def job_alert_states() -> dict[tuple[str, int | None], JobAlertState]:
    """Open incidents grouped by (job slug, district id or None), one query. A schedule with
    no entry is "ok". The scheduler-down incident is under ("scheduler", None)."""
    states: dict[tuple[str, int | None], JobAlertState] = {}
    for incident in open_incidents().order_by("opened_at", "id"):
        key = (incident.job, incident.district_id)
        state = states.get(key)
        if state is None:
            state = states[key] = JobAlertState(job=incident.job, district_id=incident.district_id,
                                                severity=incident.severity, since=incident.opened_at)
        if SEVERITY_RANK[incident.severity] > SEVERITY_RANK[state.severity]:
            state.severity = incident.severity
        state.kinds.append(incident.kind)
        state.summary = incident.summary
        state.incident_ids.append(incident.pk)
        state.occurrences += incident.occurrences
    return states


def open_incidents() -> QuerySet[Incident]:
    return Incident.objects.filter(resolved_at__isnull=True).select_related("district", "run")


def recent_incidents(*, job_slug: str | None = None, district_id: int | None = None, limit: int = 50) -> QuerySet[Incident]:
    """Open and resolved incidents, newest first (a job's alert history)."""
    qs = Incident.objects.select_related("district")
    if job_slug is not None:
        qs = qs.filter(job=job_slug, district_id=district_id)
    return qs.order_by("-opened_at", "-id")[:limit]
