"""Alerting: incidents, who hears about them, and the delivery outbox with retries.

Who is told what
----------------
==============================  ==========================  =====================================
event                           critical job                normal job
==============================  ==========================  =====================================
failed for good (last attempt)  PagerDuty trigger           Slack warning
timed out for good              PagerDuty trigger           Slack warning
slot missed / skipped (overlap) PagerDuty trigger           Slack warning
run longer than expected x F    Slack warning               Slack warning
succeeded with warnings         Slack warning               Slack warning
scheduler not running           PagerDuty trigger (one incident for the whole system)
next success of the job         PagerDuty resolve / Slack "resolved" for what it triggered
==============================  ==========================  =====================================

Without PAGERDUTY_ROUTING_KEY critical alerts go to Slack; with neither channel they are
only recorded (Incident rows, metrics) and logged. Role routing adds an email: IEP job
failures to the district's special-education coordinators, archival failures to the
district's IT contact (District.it_contact_email). ALERTS_SLACK_RUN_EVENTS lists jobs whose
every start and completion is posted to Slack.

Exactly one alert per incident
------------------------------
``incident_open`` inserts an Incident; the unique partial index (one open incident per
kind, job and district) turns a second open (a retry, the next check, a second qcluster)
into "seen again": occurrences + 1, no delivery. The engine calls the failure hook only
after the last attempt, so retries never page.

Delivery
--------
Opening an incident writes AlertDelivery rows in the same transaction (the outbox). After
commit they are sent once right away; a failure (endpoint down, HTTP 5xx/429) is retried
with backoff by ``deliver_due``, which every scheduler pass and ``manage.py alerts watch``
run. Claim, lease, settle-only-if-still-mine and backoff are the outbox protocol of
skillcore/outbox.py (``OUTBOX`` below); each channel is sent by its transport class
(``SlackTransport``, ``PagerDutyTransport``, ``EmailTransport``). Nothing here can fail a job: the hooks in scheduling/alerts.py run in a savepoint and
swallow errors, and sending happens after the job's transaction committed.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from scheduling import registry
from scheduling.models import AlertDelivery, Incident, JobRun, JobSchedule, RunHold
from scheduling.monitoring import counters
from scheduling.summaries import one_line as summary_one_line
from scheduling.templatetags.times_and_durations import duration_text, local_text, utc_text
from skillcore.outbox import Outbox
from students.models import District, Role

logger = logging.getLogger("scheduling.monitoring.alerts")

Kind = Incident.Kind
Severity = Incident.Severity
Channel = AlertDelivery.Channel
Action = AlertDelivery.Action
DStatus = AlertDelivery.Status

SCHEDULER = "scheduler"  # Incident.job of the system-wide scheduler-down incident
# Who else hears about a job's failure, by role: IEP jobs -> the district's special-education
# coordinators; archival -> the district's IT contact.
ROLE_ROUTES = {"iep-review-reminders": Role.SPED_COORDINATOR.value, "data-archival": "it-contact"}
LEASE = dt.timedelta(minutes=5)  # a "sending" row older than this lost its sender: send again
BACKOFF_BASE = dt.timedelta(seconds=15)
BACKOFF_CAP = dt.timedelta(minutes=15)
CLAIM_CHUNK = 10
WATCH_DELIVERY_BUDGET = 10.0  # seconds of sending per watch pass (plus one HTTP timeout at most)
PD_SEVERITY = {Severity.CRITICAL: "critical", Severity.WARNING: "warning"}
# The sender has no name column: its claim is its ``claimed_at`` instant. No jitter: a down
# channel's rows are retried together on purpose (see deliver_due).
OUTBOX = Outbox(
    model=AlertDelivery, waiting=(DStatus.PENDING,), due_field="next_attempt_at", lease=LEASE,
    backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP, max_attempts=lambda: settings.ALERTS_MAX_ATTEMPTS,
)


def dedup_key(job: str, district_id: int | None) -> str:
    """PagerDuty's dedup_key: one per job and district, so a failure, a timeout and a missed
    slot of one schedule land on the same PagerDuty alert, and its next success resolves it."""
    if job == SCHEDULER:
        return "skillcore/scheduler"
    return f"skillcore/{job}/{district_id if district_id is not None else 'global'}"


def severity_for(kind: str, job: registry.Job | None) -> str:
    if kind == Kind.SCHEDULER_DOWN:
        return Severity.CRITICAL
    if kind in (Kind.LONG_RUNNING, Kind.DID_NOTHING):
        return Severity.WARNING
    if kind == Kind.HELD_UNDECIDED:  # held 24 h with nobody deciding: wake someone
        return Severity.CRITICAL
    return Severity.CRITICAL if job is not None and job.critical else Severity.WARNING


def _title(slug: str) -> str:
    job = registry.find(slug)
    return job.title if job is not None else slug


def _where(district: District | None) -> str:
    return district.name if district is not None else "all districts (global job)"


def _when(instant: dt.datetime, district: District | None) -> str:
    """An instant as the people told read it: the district's local time with its offset (a
    global job's: SCHEDULING_GLOBAL_TIME_ZONE), UTC in parentheses for whoever reads logs."""
    zone = JobSchedule.zone_name_for(district.time_zone if district is not None else None)
    return f"{local_text(instant, zone)} ({utc_text(instant)})"


def _link(path: str) -> str | None:
    base = (settings.ALERTS_BASE_URL or "").rstrip("/")
    return f"{base}{path}" if base else None


def _run_link(run_id: int | None) -> str | None:
    # The dashboard's run page: the summary in the job's words, the log in the district's time.
    return _link(reverse("admin:scheduled_jobs_run", args=[run_id])) if run_id else None


# -- opening and resolving incidents ---------------------------------------------------------
@transaction.atomic
def incident_open(
    *, kind: str, job_slug: str, district: District | None, summary: str, details: dict | None = None,
    run: JobRun | None = None, now: dt.datetime | None = None,
) -> Incident | None:
    """Open an incident and queue its alerts, or record that the open one was seen again.

    Returns the new Incident, or None when one was already open (no new alert).
    Steps:
    1. An open incident of this kind, job and district: bump occurrences, done.
    2. Insert (in a savepoint): a concurrent opener that committed first makes this an
       IntegrityError, handled as 1.
    3. Queue its deliveries (PagerDuty or Slack by severity, role-routed email) and send
       them after commit.
    """
    now = now or timezone.now()
    district_id = district.pk if district is not None else None
    open_qs = Incident.objects.filter(kind=kind, job=job_slug, district_id=district_id, resolved_at__isnull=True)
    if open_qs.update(last_seen_at=now, occurrences=F("occurrences") + 1):
        return None
    job = registry.find(job_slug)
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                kind=kind, severity=severity_for(kind, job), job=job_slug, district=district,
                run=run, dedup_key=dedup_key(job_slug, district_id), summary=summary[:1024],
                details=details or {}, opened_at=now, last_seen_at=now,
            )
    except IntegrityError:
        open_qs.update(last_seen_at=now, occurrences=F("occurrences") + 1)
        return None
    (logger.error if incident.severity == Severity.CRITICAL else logger.warning)(
        "alert %s (%s): %s", incident.kind, incident.severity, incident.summary)
    rows = _trigger_deliveries(incident, now)
    if kind in (Kind.FAILURE, Kind.TIMEOUT):
        rows += _role_deliveries(incident, now)
    _queue(rows)
    return incident


def _open_incidents(*, job_slug: str, district_id: int | None, kinds):
    """The open incidents of these kinds for a job and district (resolving reads these)."""
    return Incident.objects.filter(job=job_slug, district_id=district_id, resolved_at__isnull=True, kind__in=list(kinds))


@transaction.atomic
def incidents_resolve(
    *, job_slug: str, district_id: int | None, kinds, resolution: str, now: dt.datetime | None = None,
) -> int:
    """Resolve the open incidents of these kinds for a job and district, and tell each
    channel that was told about them (PagerDuty resolve, Slack message). One query when
    nothing is open, which is the common case on every successful run."""
    now = now or timezone.now()
    incidents = list(_open_incidents(job_slug=job_slug, district_id=district_id, kinds=kinds).select_for_update())
    if not incidents:
        return 0
    Incident.objects.filter(pk__in=[i.pk for i in incidents], resolved_at__isnull=True).update(
        resolved_at=now, resolution=resolution[:300]
    )
    told = set(
        AlertDelivery.objects.filter(incident__in=incidents, action=Action.TRIGGER)
        .exclude(channel=Channel.EMAIL).values_list("incident_id", "channel")
    )
    rows, resolved_keys = [], set()
    for incident in incidents:
        if (incident.pk, Channel.PAGERDUTY) in told and incident.dedup_key not in resolved_keys:
            # One resolve per dedup key: several kinds of one schedule share the PagerDuty alert.
            resolved_keys.add(incident.dedup_key)
            rows.append(_row(incident, Channel.PAGERDUTY, Action.RESOLVE, {"dedup_key": incident.dedup_key}, now))
        if (incident.pk, Channel.SLACK) in told:
            rows.append(_row(incident, Channel.SLACK, Action.RESOLVE, _slack_body(
                f":white_check_mark: Resolved: {incident.summary} ({resolution})", incident.run_id), now))
    _queue(rows)
    logger.info("resolved %s incident(s) of %s/%s: %s", len(incidents), job_slug, district_id or "global", resolution)
    return len(incidents)


# -- what the engine's hooks call (through scheduling/alerts.py) -----------------------------
def on_job_failed(run: JobRun, *, now: dt.datetime | None = None) -> Incident | None:
    """A run failed for good (its last attempt failed, timed out or lost its worker)."""
    kind = Kind.TIMEOUT if run.status == JobRun.Status.TIMED_OUT else Kind.FAILURE
    first_line = (run.error or "").strip().splitlines()[:1]
    reason = first_line[0][:300] if first_line else run.status
    verb = "timed out" if kind == Kind.TIMEOUT else "failed"
    summary = f"{_title(run.job)} {verb} for {_where(run.district)} (run #{run.pk}, attempt {run.attempt}): {reason}"
    return incident_open(
        kind=kind, job_slug=run.job, district=run.district, run=run, summary=summary, now=now,
        details={
            "run": run.pk, "attempt": run.attempt, "status": run.status, "slot": run.slot.isoformat(),
            "trigger": run.trigger, "error": reason, "worker": run.worker,
        },
    )


def on_slots_not_run(*, job_slug: str, district: District | None, slots: list[dt.datetime], status: str,
                     note: str, now: dt.datetime | None = None) -> Incident | None:
    """The engine recorded slots as missed (the scheduler was not running) or skipped
    (overlap). Skips of a paused schedule are intended and never alert."""
    if not slots:
        return None
    kind = Kind.MISSED if status == JobRun.Status.MISSED else Kind.SKIPPED
    verb = "missed" if kind == Kind.MISSED else "skipped"
    count = (f"{len(slots)} slots, {_when(slots[0], district)} to {_when(slots[-1], district)}" if len(slots) > 1
             else f"the slot of {_when(slots[-1], district)}")
    summary = f"{_title(job_slug)} {verb} {count} for {_where(district)}: {note}"
    return incident_open(
        kind=kind, job_slug=job_slug, district=district, summary=summary, now=now,
        details={"slots": [s.isoformat() for s in slots[-20:]], "note": note[:300]},
    )


def on_run_held(run: JobRun, hold, *, now: dt.datetime | None = None) -> Incident | None:
    """The blast-radius guard held a run: a Slack warning, PagerDuty for a critical job."""
    total = sum(hold.counts.values())
    summary = (f"{_title(run.job)} held {total} message(s) for {_where(run.district)} (run #{run.pk}): {hold.reason}. "
               "Nothing was sent; a system admin releases or discards them on the dashboard.")
    return incident_open(
        kind=Kind.HELD, job_slug=run.job, district=run.district, run=run, summary=summary, now=now,
        details={"run": run.pk, "counts": hold.counts, "baseline": hold.baseline, "limits": hold.limits,
                 "reason": hold.reason},
    )


def on_hold_undecided(run: JobRun, hold, *, now: dt.datetime | None = None) -> Incident | None:
    """A hold left undecided for 24 hours: a PagerDuty alert (critical whatever the job)."""
    summary = (f"{_title(run.job)} for {_where(run.district)}: run #{run.pk} has held {sum(hold.counts.values())} "
               f"message(s) since {_when(hold.held_at, run.district)} with no decision; they are not sent until a "
               "system admin releases them")
    return incident_open(
        kind=Kind.HELD_UNDECIDED, job_slug=run.job, district=run.district, run=run, summary=summary, now=now,
        details={"run": run.pk, "held_at": hold.held_at.isoformat(), "counts": hold.counts},
    )


# A hold left this long without a system admin's decision escalates its alert.
HOLD_ESCALATE_AFTER = dt.timedelta(hours=24)


def escalate_undecided_holds(*, now: dt.datetime | None = None) -> int:
    """Holds of the blast-radius guard undecided for ``HOLD_ESCALATE_AFTER``: escalate the
    alert (PagerDuty), once each. Nothing is sent: only a person releases held messages
    (scheduling/blast_radius.py). Returns how many were escalated."""
    now = now or timezone.now()
    with transaction.atomic():
        # Claimed under row locks: every scheduler pass and `alerts watch` call this, often
        # at the same moment; SKIP LOCKED leaves the holds another pass is escalating to it,
        # and it marks them escalated before its lock goes, so each escalates once.
        due = list(RunHold.objects.filter(decision="", escalated_at__isnull=True, held_at__lte=now - HOLD_ESCALATE_AFTER)
                   .select_for_update(of=("self",), skip_locked=True)
                   .select_related("run", "run__district").order_by("held_at")[:100])
        for hold in due:
            on_hold_undecided(hold.run, hold, now=now)
        if due:
            RunHold.objects.filter(pk__in=[h.pk for h in due]).update(escalated_at=now)
    return len(due)


def on_run_started(run: JobRun, *, now: dt.datetime | None = None) -> None:
    if _posts_run_events(run.job):
        _queue([_row(None, Channel.SLACK, Action.MESSAGE, _slack_body(
            f":arrow_forward: {_title(run.job)} started for {_where(run.district)} "
            f"(run #{run.pk}, slot {_when(run.slot, run.district)}, {run.trigger})", run.pk), now or timezone.now())])


def on_run_finished(run: JobRun, *, now: dt.datetime | None = None) -> None:
    """A run ended: a success resolves its job's open incidents; any end closes its
    long-running warning; jobs listed in ALERTS_SLACK_RUN_EVENTS post the outcome."""
    now = now or timezone.now()
    incidents_resolve(
        job_slug=run.job, district_id=run.district_id, kinds=_resolved_by(run), now=now,
        resolution=f"run #{run.pk} {run.get_status_display().lower()} after {run.duration_seconds or 0:.0f} s",
    )
    if run.status == JobRun.Status.WARNING:
        incident_open(
            kind=Kind.DID_NOTHING, job_slug=run.job, district=run.district, run=run, now=now,
            summary=f"{_title(run.job)} succeeded with warnings for {_where(run.district)} (run #{run.pk}): {run.note}",
            details={"run": run.pk, "slot": run.slot.isoformat(), "trigger": run.trigger, "note": run.note},
        )
    if _posts_run_events(run.job):
        icon = {JobRun.Status.SUCCEEDED: ":white_check_mark:", JobRun.Status.WARNING: ":warning:"}.get(run.status, ":x:")
        counts = summary_one_line(registry.find(run.job), run.result, zone=run.zone_name)  # the job's own words
        _queue([_row(None, Channel.SLACK, Action.MESSAGE, _slack_body(
            f"{icon} {_title(run.job)} {run.get_status_display().lower()} for {_where(run.district)} (run #{run.pk}, "
            f"{run.duration_seconds or 0:.1f} s){': ' + counts if counts else ''}", run.pk), now)])


def _resolved_by(run: JobRun) -> list[str]:
    """The kinds of incident the end of ``run`` resolves (``on_run_finished``)."""
    kinds = [Kind.LONG_RUNNING]
    if run.status == JobRun.Status.SUCCEEDED:
        kinds += list(Incident.RESOLVED_BY_SUCCESS)
    elif run.status == JobRun.Status.WARNING:
        kinds += list(Incident.RESOLVED_BY_ANY_RUN)
    return kinds


def run_finished_has_work(run: JobRun) -> bool:
    """Whether ``on_run_finished`` would write anything for ``run``: an incident to open (a
    run with warnings), an event to post, or an open incident its end resolves (one read,
    ``_open_incidents``, as ``incidents_resolve`` reads them, on the open incidents' index). Most runs end
    with none: the hook then costs this read, without its savepoints."""
    if run.status == JobRun.Status.WARNING or _posts_run_events(run.job):
        return True
    return _open_incidents(job_slug=run.job, district_id=run.district_id, kinds=_resolved_by(run)).exists()


def _posts_run_events(slug: str) -> bool:
    wanted = settings.ALERTS_SLACK_RUN_EVENTS
    return bool(settings.SLACK_WEBHOOK_URL) and ("*" in wanted or slug in wanted)


# -- the watch: what must be checked while nothing happens -----------------------------------
@dataclass
class WatchReport:
    long_running_opened: int = 0
    long_running_closed: int = 0
    scheduler_down: bool = False
    overdue: int = 0
    holds_escalated: int = 0
    delivered: DeliveryReport = field(default_factory=lambda: DeliveryReport())


def watch(*, now: dt.datetime | None = None, deliver: bool = True) -> WatchReport:
    """One watch pass: runs going long, the scheduler being down, and due deliveries.

    Called by every scheduler pass (after django-q2's pass, so slots it just fired are not
    overdue) and by ``manage.py alerts watch`` from outside the cluster (cron, a Kubernetes
    CronJob): when every qcluster is down, only an outside watcher can tell. A fixed
    number of queries when nothing changes (running runs, open incidents, overdue).
    """
    from scheduling import selectors

    now = now or timezone.now()
    report = WatchReport()
    factor = settings.ALERTS_LONG_RUNNING_FACTOR
    running = list(selectors.running_runs())
    open_long = {
        (i.job, i.district_id): i.pk
        for i in Incident.objects.filter(kind=Kind.LONG_RUNNING, resolved_at__isnull=True)
    }
    running_keys = set()
    for run in running:
        running_keys.add((run.job, run.district_id))
        job = registry.find(run.job)
        if job is None or run.started_at is None or (run.job, run.district_id) in open_long:
            continue
        limit = job.expected_duration * factor
        elapsed = now - run.started_at
        if elapsed > limit:
            opened = incident_open(
                kind=Kind.LONG_RUNNING, job_slug=run.job, district=run.district, run=run, now=now,
                summary=(
                    f"{job.title} for {_where(run.district)} has been running {duration_text(elapsed, whole=True)} "
                    f"(expected {duration_text(job.expected_duration, whole=True)}; run #{run.pk}, progress "
                    f"{run.progress_done if run.progress_done is not None else '?'}/{run.progress_total or '?'})"
                ),
                details={"run": run.pk, "started_at": run.started_at.isoformat(), "elapsed_seconds": int(elapsed.total_seconds()),
                         "expected_seconds": int(job.expected_duration.total_seconds()), "factor": factor},
            )
            report.long_running_opened += opened is not None
    for (slug, district_id), _pk in open_long.items():
        if (slug, district_id) not in running_keys:
            report.long_running_closed += incidents_resolve(
                job_slug=slug, district_id=district_id, kinds=[Kind.LONG_RUNNING], now=now, resolution="the run ended",
            )

    overdue = list(selectors.overdue_schedules(now)[:6])
    report.overdue = len(overdue)
    if overdue:
        total = selectors.overdue_schedules(now).count() if len(overdue) > 5 else len(overdue)
        report.overdue = total
        beat = selectors.last_scheduler_heartbeat()
        examples = [f"{s.job} @ {s.district.name if s.district_id else 'global'} due {s.q_schedule.next_run:%Y-%m-%d %H:%M}Z"
                    for s in overdue[:5]]
        incident_open(
            kind=Kind.SCHEDULER_DOWN, job_slug=SCHEDULER, district=None, now=now,
            summary=(f"Scheduler not running: {total} schedule(s) overdue, last heartbeat "
                     f"{beat.isoformat() if beat else 'never'}; missed slots are being recorded"),
            details={"overdue": total, "examples": examples, "last_heartbeat": beat.isoformat() if beat else None},
        )
        report.scheduler_down = True
    else:
        incidents_resolve(job_slug=SCHEDULER, district_id=None, kinds=[Kind.SCHEDULER_DOWN], now=now,
                          resolution="no schedule is overdue any more")
    report.holds_escalated = escalate_undecided_holds(now=now)
    if deliver:
        report.delivered = deliver_due(now=now, budget_seconds=WATCH_DELIVERY_BUDGET)
    return report


# -- building deliveries ---------------------------------------------------------------------
def _row(incident: Incident | None, channel: str, action: str, payload: dict, now: dt.datetime) -> AlertDelivery:
    return AlertDelivery(incident=incident, channel=channel, action=action, payload=payload, next_attempt_at=now, created_at=now)


def _slack_body(text: str, run_id: int | None = None) -> dict:
    link = _run_link(run_id)
    return {"text": f"{text}\n<{link}|Open the run>" if link else text}


def _trigger_deliveries(incident: Incident, now) -> list[AlertDelivery]:
    rows = []
    pagerduty = bool(settings.PAGERDUTY_ROUTING_KEY)
    if incident.severity == Severity.CRITICAL and pagerduty:
        rows.append(_row(incident, Channel.PAGERDUTY, Action.TRIGGER, _pagerduty_trigger(incident), now))
    elif settings.SLACK_WEBHOOK_URL:
        icon = ":rotating_light:" if incident.severity == Severity.CRITICAL else ":warning:"
        rows.append(_row(incident, Channel.SLACK, Action.TRIGGER, _slack_body(f"{icon} {incident.summary}", incident.run_id), now))
    return rows


def _pagerduty_trigger(incident: Incident) -> dict:
    district = incident.district
    body = {
        "event_action": "trigger",
        "dedup_key": incident.dedup_key,
        "client": "SkillCore",
        "payload": {
            "summary": incident.summary[:1024],
            "source": f"skillcore@{socket.gethostname()}",
            "severity": PD_SEVERITY[incident.severity],
            "timestamp": incident.opened_at.isoformat(),
            "component": incident.job,
            "group": district.name if district is not None else "global",
            "class": incident.kind,
            "custom_details": {**incident.details, "district_id": incident.district_id, "incident": incident.pk},
        },
    }
    link = _run_link(incident.run_id)
    if link:
        body["links"] = [{"href": link, "text": f"Run #{incident.run_id}"}]
    return body


def _role_deliveries(incident: Incident, now) -> list[AlertDelivery]:
    """Email the people a failed job concerns by role (one query, none for other jobs)."""
    route = ROLE_ROUTES.get(incident.job)
    district = incident.district
    if route is None or district is None:
        return []
    if route == "it-contact":
        to = [district.it_contact_email] if district.it_contact_email else []
    else:
        to = sorted(set(
            get_user_model().objects.filter(
                groups__name=route, is_active=True, staff_profile__district=district,
            ).exclude(email="").values_list("email", flat=True)
        ))
    if not to:
        logger.warning("no %s address for %s: the %s alert goes to the other channels only", route, district, incident.job)
        return []
    link = _run_link(incident.run_id)
    body = (
        f"{incident.summary}\n\n"
        f"SkillCore's district IT team has been alerted as well. The job is retried from the admin "
        f"(Scheduled jobs) once the cause is fixed; no student data is included in this message.\n"
        + (f"\nRun: {link}\n" if link else "")
    )
    return [_row(incident, Channel.EMAIL, Action.TRIGGER, {
        "to": to, "subject": f"[SkillCore] {_title(incident.job)} {incident.get_kind_display().lower()} for {district.name}",
        "body": body,
    }, now)]


def _queue(rows: list[AlertDelivery]) -> list[int]:
    """Insert deliveries and send them once the surrounding transaction commits."""
    if not rows:
        return []
    created = AlertDelivery.objects.bulk_create(rows)
    ids = [r.pk for r in created]
    transaction.on_commit(lambda: send_now(ids))
    return ids


def send_now(ids: list[int]) -> None:
    """First attempt right after commit; never raises (a job's worker calls it)."""
    try:
        deliver_due(ids=ids)
    except Exception:
        logger.exception("alert delivery of %s failed; deliver_due will retry", ids)


# -- sending ---------------------------------------------------------------------------------
class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def backoff(attempts: int) -> dt.timedelta:
    """15 s, 30 s, 1 min, 2 min ... after the n-th failed attempt, at most 15 minutes."""
    return OUTBOX.backoff(attempts)


def _claim(*, now: dt.datetime, limit: int, ids: list[int] | None) -> list[AlertDelivery]:
    """Claim due deliveries (only ``ids`` if given) and load the rows this claim holds."""
    picked = OUTBOX.claim(now=now, limit=limit, among=None if ids is None else Q(pk__in=ids))
    if not picked:
        return []
    return list(AlertDelivery.objects.filter(pk__in=picked, status=DStatus.SENDING, claimed_at=now).order_by("next_attempt_at", "id"))


def deliver_due(*, now: dt.datetime | None = None, limit: int = 100, ids: list[int] | None = None,
                budget_seconds: float | None = None) -> DeliveryReport:
    """Send due deliveries (all, or only ``ids``): claim, send outside any transaction,
    settle. Two senders never send one row at once (SKIP LOCKED claim; SQLite serializes);
    a sender that died mid-send leaves a "sending" row that is re-sent after the lease.

    Rows are claimed ten at a time and ``budget_seconds`` stops claiming more, so the
    scheduler pass (which runs in the qcluster's sentinel, next to worker supervision) is
    never held up for long by a slow endpoint. Once a channel fails with a retryable error
    in a pass, its other claimed rows are put back untried (no attempt spent): one
    unreachable Slack costs one timeout per pass, not one per message.
    """
    now = now or timezone.now()
    report = DeliveryReport()
    started = time.monotonic()
    down: dict[str, dt.datetime] = {}  # channel -> when its failed row is retried
    while report.sent + report.retrying + report.failed < limit:
        if budget_seconds is not None and time.monotonic() - started > budget_seconds:
            break
        batch = _claim(now=now, limit=min(CLAIM_CHUNK, limit - report.sent - report.retrying - report.failed), ids=ids)
        if not batch:
            break
        for delivery in batch:
            if delivery.channel in down:
                # Retried together with (and, by id, in order after) the row that failed.
                OUTBOX.release(delivery.pk, owner=delivery.claimed_at, due_at=down[delivery.channel], untried=True)
                report.retrying += 1
                continue
            try:
                _send(delivery)
            except SendError as exc:
                give_up = exc.permanent or OUTBOX.exhausted(delivery.attempts)
                retry_at = now + backoff(delivery.attempts)
                if not exc.permanent:
                    down[delivery.channel] = retry_at
                if give_up:
                    _settle(delivery, DStatus.FAILED, next_attempt_at=retry_at, last_error=str(exc)[:500])
                else:
                    OUTBOX.release(delivery.pk, owner=delivery.claimed_at, due_at=retry_at, last_error=str(exc)[:500])
                log = logger.error if give_up else logger.warning
                log("alert delivery #%s (%s %s) attempt %s failed%s: %s", delivery.pk, delivery.channel, delivery.action,
                    delivery.attempts, "; giving up" if give_up else "; will retry", exc)
                if give_up:
                    report.failed += 1
                else:
                    report.retrying += 1
                continue
            _settle(delivery, DStatus.SENT, sent_at=timezone.now(), last_error="")
            report.sent += 1
    return report


def _settle(delivery: AlertDelivery, status: str, **fields) -> None:
    """Write a claimed delivery's final outcome, and count it for /metrics in the same
    transaction, only if the row was still this claim's ("sending" since its claimed_at:
    a sender that overran its lease may find it re-claimed and settled by another)."""
    OUTBOX.settle(delivery.pk, owner=delivery.claimed_at, status=status, **fields,
                  counted=lambda settled: counters.alert_delivery_settled(channel=delivery.channel, status=settled))


class PagerDutyTransport:
    """PagerDuty's Events API v2: trigger and resolve by dedup key."""

    def send(self, delivery: AlertDelivery) -> None:
        key = settings.PAGERDUTY_ROUTING_KEY
        if not key:
            raise SendError("PAGERDUTY_ROUTING_KEY is not set", permanent=True)
        body = {**delivery.payload, "routing_key": key}
        if delivery.action == Action.RESOLVE:
            body["event_action"] = "resolve"
        post_json(settings.PAGERDUTY_EVENTS_URL, body)


class SlackTransport:
    """A Slack incoming webhook: the payload is the message."""

    def send(self, delivery: AlertDelivery) -> None:
        if not settings.SLACK_WEBHOOK_URL:
            raise SendError("SLACK_WEBHOOK_URL is not set", permanent=True)
        post_json(settings.SLACK_WEBHOOK_URL, delivery.payload)


class EmailTransport:
    """Role-routed email through Django's mail backend."""

    def send(self, delivery: AlertDelivery) -> None:
        p = delivery.payload
        try:
            send_mail(p["subject"], p["body"], None, p["to"], fail_silently=False)
        except Exception as exc:  # SMTP errors are many types; all are worth a retry
            raise SendError(f"{type(exc).__name__}: {exc}") from exc


TRANSPORTS = {Channel.PAGERDUTY: PagerDutyTransport(), Channel.SLACK: SlackTransport(), Channel.EMAIL: EmailTransport()}


def _send(delivery: AlertDelivery) -> None:
    transport = TRANSPORTS.get(delivery.channel)
    if transport is None:
        raise SendError(f"unknown channel {delivery.channel!r}", permanent=True)
    transport.send(delivery)


def post_json(url: str, body: dict) -> None:
    """POST JSON; 2xx is success. 4xx other than 408/429 is permanent (the payload or the
    key is wrong: retrying cannot help); 5xx, 408, 429 and network errors are retried."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "SkillCore-alerts/1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.ALERTS_HTTP_TIMEOUT) as response:
            response.read(2000)
    except urllib.error.HTTPError as exc:
        text = exc.read(300).decode(errors="replace")
        raise SendError(f"HTTP {exc.code} from {_host(url)}: {text}", permanent=400 <= exc.code < 500 and exc.code not in (408, 429)) from None
    except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout (TimeoutError is an OSError)
        raise SendError(f"{type(exc).__name__} posting to {_host(url)}: {getattr(exc, 'reason', exc)}") from None


def _host(url: str) -> str:
    """The URL without its path: a Slack webhook's path is its secret, and errors are
    logged and stored on the AlertDelivery row."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@transaction.atomic
def deliveries_resend(*, ids, now: dt.datetime | None = None) -> int:
    """Staff action: send failed deliveries again (after fixing a key or webhook), with a
    fresh attempt budget. Only failed rows move; returns how many."""
    now = now or timezone.now()
    return AlertDelivery.objects.filter(pk__in=list(ids), status=DStatus.FAILED).update(
        status=DStatus.PENDING, attempts=0, next_attempt_at=now, last_error="",
    )
