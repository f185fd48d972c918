"""What monitoring keeps: incidents and the outbox of alert deliveries, the counters the
/metrics scrape reads, and per-endpoint request metrics.

An Incident is "something is wrong with this job in this district" (a failure, a timeout,
a missed slot, a long run, the scheduler being down). At most one is open per (kind, job,
district): the unique partial index is what makes it *one alert per incident*, not one per
retry or per check. Opening one writes its AlertDelivery rows in the same transaction;
delivery happens after commit, outside the job's transaction, with retries.

Counters (JobRunCounter, AlertDeliveryCounter) are kept when a state changes
(scheduling/monitoring/counters.py): one row per (job, district), so the scrape reads a few
thousand rows instead of grouping the whole history, and pruning old runs never lowers a
counter (Prometheus counters must be monotonic).
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q


class Incident(models.Model):
    class Kind(models.TextChoices):
        FAILURE = "failure", "Failed"
        TIMEOUT = "timeout", "Timed out"
        MISSED = "missed", "Missed slot"
        SKIPPED = "skipped", "Skipped slot"
        LONG_RUNNING = "long-running", "Running long"
        SCHEDULER_DOWN = "scheduler-down", "Scheduler not running"
        # A run that ended "succeeded with warnings": it did not do what it is for.
        DID_NOTHING = "did-nothing", "Did nothing it was meant to"
        HELD = "held", "Run held (blast radius)"
        HELD_UNDECIDED = "held-24h", "Held run undecided for 24 h"

    class Severity(models.TextChoices):
        CRITICAL = "critical", "Critical (PagerDuty)"
        WARNING = "warning", "Warning (Slack)"

    # Kinds a later success of the same job and district resolves.
    RESOLVED_BY_SUCCESS = (Kind.FAILURE, Kind.TIMEOUT, Kind.MISSED, Kind.SKIPPED, Kind.DID_NOTHING)
    # A run that ran to its end, even with warnings, resolves these (it was not a failure).
    RESOLVED_BY_ANY_RUN = (Kind.FAILURE, Kind.TIMEOUT, Kind.MISSED, Kind.SKIPPED)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    job = models.CharField(max_length=100, help_text='The job\'s slug ("scheduler" for the scheduler itself).')
    district = models.ForeignKey(
        "students.District", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    run = models.ForeignKey(
        "scheduling.JobRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="incidents",
        help_text="The run that opened it, if any.",
    )
    dedup_key = models.CharField(max_length=255, help_text="PagerDuty's dedup_key: one per job and district.")
    summary = models.CharField(max_length=1024)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(help_text="Last time the condition was seen again (no new alert).")
    occurrences = models.PositiveIntegerField(default=1)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "job", "district"], condition=Q(resolved_at__isnull=True, district__isnull=False),
                name="incident_one_open_per_district",
            ),
            # NULLs are distinct in a unique index: global jobs (and the scheduler) need their own.
            models.UniqueConstraint(
                fields=["kind", "job"], condition=Q(resolved_at__isnull=True, district__isnull=True),
                name="incident_one_open_global",
            ),
        ]
        indexes = [
            # A success resolves the open incidents of its job and district: few rows, found fast.
            models.Index(fields=["job", "district"], condition=Q(resolved_at__isnull=True), name="incident_open_idx"),
        ]

    def __str__(self) -> str:
        state = "resolved" if self.resolved_at else "open"
        return f"{self.kind} {self.job} @ {self.district_id or 'global'} ({state})"


class AlertDelivery(models.Model):
    """One message to one alert channel: the outbox the sender drains with retries.

    Secrets (routing key, webhook URL) are not stored: they are read from settings at send
    time, so rotating them needs no data change.
    """

    class Channel(models.TextChoices):
        PAGERDUTY = "pagerduty", "PagerDuty"
        SLACK = "slack", "Slack"
        EMAIL = "email", "Email"

    class Action(models.TextChoices):
        TRIGGER = "trigger", "Trigger"
        RESOLVE = "resolve", "Resolve"
        MESSAGE = "message", "Message"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    incident = models.ForeignKey(Incident, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    action = models.CharField(max_length=8, choices=Action.choices)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "alert deliveries"
        ordering = ["-id"]
        indexes = [
            # The sender's claim: pending (or stale sending) rows whose time has come.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status__in=["pending", "sending"]), name="alertdelivery_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.channel} {self.action} ({self.status})"


# Seconds. Jobs range from a few seconds (stream cleanup) to an hour (archival, rollover).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


def bucket_field(bound: float) -> str:
    """The counter column of one histogram bucket: ``le_60`` counts durations <= 60 s."""
    return f"le_{int(bound)}"


class JobRunCounter(models.Model):
    """Runs of one job in one district (district NULL: a global job) since the beginning,
    by outcome; the duration histogram's buckets are cumulative, as Prometheus wants them."""

    job = models.CharField(max_length=100)
    district = models.ForeignKey("students.District", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    executions = models.PositiveBigIntegerField(default=0, help_text="Succeeded, failed or timed out.")
    failures = models.PositiveBigIntegerField(default=0, help_text="Failed or timed out (every attempt).")
    timeouts = models.PositiveBigIntegerField(default=0)
    missed = models.PositiveBigIntegerField(default=0)
    skipped = models.PositiveBigIntegerField(default=0)
    timed = models.PositiveBigIntegerField(default=0, help_text="Executed runs with a recorded duration (+Inf bucket).")
    duration_sum = models.FloatField(default=0.0)
    le_1 = models.PositiveBigIntegerField(default=0)
    le_5 = models.PositiveBigIntegerField(default=0)
    le_15 = models.PositiveBigIntegerField(default=0)
    le_30 = models.PositiveBigIntegerField(default=0)
    le_60 = models.PositiveBigIntegerField(default=0)
    le_120 = models.PositiveBigIntegerField(default=0)
    le_300 = models.PositiveBigIntegerField(default=0)
    le_600 = models.PositiveBigIntegerField(default=0)
    le_1800 = models.PositiveBigIntegerField(default=0)
    le_3600 = models.PositiveBigIntegerField(default=0)
    le_7200 = models.PositiveBigIntegerField(default=0)
    last_success = models.DateTimeField(null=True, blank=True, help_text="When the latest successful run finished.")

    class Meta:
        constraints = [
            # The upsert's conflict target; NULLs are distinct in a unique index, so global
            # jobs get their own constraint (as JobSchedule).
            models.UniqueConstraint(fields=["job", "district"], condition=Q(district__isnull=False),
                                    name="jobruncounter_one_per_district"),
            models.UniqueConstraint(fields=["job"], condition=Q(district__isnull=True), name="jobruncounter_one_global"),
        ]

    def __str__(self) -> str:
        return f"{self.job} @ {self.district_id or 'global'}: {self.executions} executed"


class AlertDeliveryCounter(models.Model):
    """Alert deliveries (scheduling.AlertDelivery) per channel by outcome since the
    beginning: ``scheduled_job_alert_deliveries_total{channel,outcome}``. Kept when a
    delivery settles (scheduling/counters.py), so a resend of a failed delivery does not
    lower ``failed`` and the scrape does not group the whole outbox."""

    channel = models.CharField(max_length=10, unique=True)
    sent = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0, help_text="Given up (permanent error or attempts exhausted).")

    def __str__(self) -> str:
        return f"{self.channel}: {self.sent} sent, {self.failed} failed"


class CalendarSkipCounter(models.Model):
    """Slots of "school days" jobs the school calendar skipped, per job and the calendar's
    reason, since the beginning: ``scheduled_job_skipped_total{job,reason}``. Kept when the
    slot's row is inserted (scheduling/monitoring/counters.py), so archiving run history
    never lowers it. The reasons are the calendar's notes ("Winter break", "Snow day"): a
    district has a handful, so the label stays small."""

    job = models.CharField(max_length=100)
    reason = models.CharField(max_length=120)
    skipped = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "reason"], name="calendarskipcounter_one_per_reason")]

    def __str__(self) -> str:
        return f"{self.job} / {self.reason}: {self.skipped} skipped"


class RequestMetric(models.Model):
    """Requests served, per endpoint (the URL route, never the raw path) and UTC hour.

    django-prometheus keeps its counters in process memory (lost at every restart, one set
    per worker), so the monthly health summary reads this table instead. The middleware
    (skillcore-wide, scheduling.request_metrics) adds to the hour's row; the health job
    deletes rows older than 400 days, so the table holds at most endpoints x 9,600 rows.
    """

    endpoint = models.CharField(max_length=200, help_text="The URL route (e.g. admin:index or health), or 'unmatched'.")
    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0, help_text="Responses with status 500 or higher.")
    client_errors = models.PositiveBigIntegerField(default=0, help_text="Responses 400-499.")
    total_ms = models.FloatField(default=0)
    max_ms = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "hour"], name="request_metric_one_per_hour")]
        indexes = [models.Index(fields=["hour"], name="request_metric_hour_idx")]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.hour:%Y-%m-%d %H}:00 {self.requests} requests"


