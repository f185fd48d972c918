"""Models of the operational jobs (issue 6, jobs 5-8): the durable per-endpoint request
metrics the system-health summary reads, the two-person rollover request, and the record
of each real emergency broadcast."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


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


class RolloverRequest(models.Model):
    """An end-of-year rollover asked for by one system admin and approved by another.

    Approval creates a one-off django-q2 schedule at ``run_at``; the run executes the steps
    in order and records each finished step in ``steps_done`` in the same transaction as
    its writes, so a crashed run resumes at the first unfinished step. The command line
    (``manage.py rollover``) files a request with no requester (the operator at the shell)
    and runs it only once a system admin approved it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a second admin's approval"
        SCHEDULED = "scheduled", "Approved and scheduled"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed (retry resumes)"
        CANCELLED = "cancelled", "Cancelled"

    district = models.ForeignKey("students.District", on_delete=models.PROTECT, related_name="rollover_requests")
    to_name = models.CharField(max_length=60, help_text="Name of the new school year, e.g. 2027-2028.")
    start_date = models.DateField()
    end_date = models.DateField()
    run_at = models.DateTimeField(null=True, blank=True, help_text="When the approved rollover runs.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    q_schedule = models.OneToOneField("django_q.Schedule", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    closing_session = models.ForeignKey("students.AcademicSession", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    new_session = models.ForeignKey("students.AcademicSession", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    steps_done = models.JSONField(default=list, blank=True)
    snapshot = models.JSONField(default=dict, blank=True, help_text="The closing year: active students per school and grade.")
    counts = models.JSONField(default=dict, blank=True)
    job_run_id = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["district", "to_name"], name="rollover_one_per_district_year"),
            # Two-person rule: whoever asked cannot approve.
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | Q(requested_by__isnull=True) | ~Q(approved_by=F("requested_by")),
                name="rollover_approver_differs",
            ),
            models.CheckConstraint(condition=Q(end_date__gt=F("start_date")), name="rollover_dates_ordered"),
        ]

    def __str__(self) -> str:
        return f"Rollover of {self.district} to {self.to_name} ({self.status})"


class Scenario(models.TextChoices):
    SCHOOL_CLOSURE = "school-closure", "School closure"
    LOCKDOWN = "lockdown", "Lockdown"
    WEATHER_DELAY = "weather-delay", "Weather delay"
    BROADCAST = "broadcast", "System-wide broadcast"


class EmergencyBroadcast(models.Model):
    """A real emergency message to every family and staff member of a district (category
    emergency: ignores quiet hours and preferences). One row per broadcast; its id is in
    every outbox dedupe key, so re-submitting the same row sends nothing twice."""

    district = models.ForeignKey("students.District", on_delete=models.PROTECT, related_name="emergency_broadcasts")
    scenario = models.CharField(max_length=20, choices=Scenario.choices)
    message = models.TextField(max_length=1000)
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_scenario_display()} to {self.district} at {self.created_at:%Y-%m-%d %H:%M}"
