"""Alert state of the scheduling engine (the observability issue): incidents and the outbox
of alert deliveries. Imported by scheduling/models.py so Django sees them as the
scheduling app's models.

An Incident is "something is wrong with this job in this district" (a failure, a timeout,
a missed slot, a long run, the scheduler being down). At most one is open per (kind, job,
district): the unique partial index is what makes it *one alert per incident*, not one per
retry or per check. Opening one writes its AlertDelivery rows in the same transaction;
delivery happens after commit, outside the job's transaction, with retries.
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

    class Severity(models.TextChoices):
        CRITICAL = "critical", "Critical (PagerDuty)"
        WARNING = "warning", "Warning (Slack)"

    # Kinds a later success of the same job and district resolves.
    RESOLVED_BY_SUCCESS = (Kind.FAILURE, Kind.TIMEOUT, Kind.MISSED, Kind.SKIPPED)

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
        ordering = ["-id"]
        indexes = [
            # The sender's claim: pending (or stale sending) rows whose time has come.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status__in=["pending", "sending"]), name="alertdelivery_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.channel} {self.action} ({self.status})"
