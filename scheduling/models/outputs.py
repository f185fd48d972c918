"""What jobs record for people to read or act on: stored reports (compliance, analytics,
health, emergency tests), the inactive-user audit, the two-person rollover request and the
record of each real emergency broadcast.

They are the scheduling app's models (their admin pages and permissions are
``scheduling.*``); the logic that writes them lives with the data it changes
(students.rollover, students.inactive_users, notifications.emergency, scheduling.reports).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Report(models.Model):
    """A stored report a job produced (weekly analytics, compliance audit, system health).

    One row per (kind, district, school, period start): a re-run of the same period
    replaces the content in place (same id, so links sent by email keep working).
    ``content_hash`` is the SHA-256 of the HTML and every CSV, so the same inputs give the
    same hash; ``evidence`` records what the report was computed from (input counts, the
    time window) — the run evidence a district keeps with its compliance reports
    (docs/decisions/report-evidence.md).
    """

    class Kind(models.TextChoices):
        WEEKLY_ANALYTICS = "weekly-analytics", "Weekly analytics"
        COMPLIANCE_AUDIT = "compliance-audit", "Compliance audit"
        SYSTEM_HEALTH = "system-health", "System health"
        EMERGENCY_TEST = "emergency-test", "Emergency notification test"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    district = models.ForeignKey(
        "students.District", on_delete=models.PROTECT, null=True, blank=True, related_name="reports",
        help_text="Empty for a global report.",
    )
    school = models.ForeignKey(
        "students.School", on_delete=models.PROTECT, null=True, blank=True, related_name="reports",
        help_text="Empty for a district-wide report.",
    )
    period_start = models.DateField()
    period_end = models.DateField()
    title = models.CharField(max_length=200)
    html = models.TextField(help_text="The printable report (a full HTML document).")
    csv = models.TextField(blank=True, help_text="The report's figures as CSV.")
    extra_csv = models.JSONField(
        default=dict, blank=True, help_text="Further CSV files by file name (e.g. state exports)."
    )
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the HTML and every CSV.")
    evidence = models.JSONField(default=dict, blank=True, help_text="Input counts and the time window.")
    job_run_id = models.BigIntegerField(null=True, blank=True, help_text="The run that last wrote it.")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-period_start", "kind", "district_id", "school_id"]
        constraints = [
            # NULLs are distinct in a unique index, so one constraint per shape (as JobSchedule).
            models.UniqueConstraint(
                fields=["kind", "district", "school", "period_start"], condition=Q(school__isnull=False),
                name="report_one_per_school_period",
            ),
            models.UniqueConstraint(
                fields=["kind", "district", "period_start"], condition=Q(school__isnull=True, district__isnull=False),
                name="report_one_per_district_period",
            ),
            models.UniqueConstraint(
                fields=["kind", "period_start"], condition=Q(school__isnull=True, district__isnull=True),
                name="report_one_global_per_period",
            ),
            models.CheckConstraint(condition=Q(period_end__gte=F("period_start")), name="report_period_ordered"),
        ]

    def __str__(self) -> str:
        return self.title


class UserLifecycleChange(models.Model):
    """The audit row of every change inactive-user-cleanup makes: who, which rule, before
    and after. Nothing is deleted; each deactivation, archive or review flag has one row."""

    class Action(models.TextChoices):
        DEACTIVATE = "deactivate", "Deactivated"
        ARCHIVE = "archive", "Archived (student)"
        FLAG = "flag", "Flagged for review"

    at = models.DateTimeField(db_index=True)
    district = models.ForeignKey("students.District", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="lifecycle_changes"
    )
    student = models.ForeignKey(
        "students.Student", on_delete=models.PROTECT, null=True, blank=True, related_name="lifecycle_changes"
    )
    action = models.CharField(max_length=12, choices=Action.choices)
    rule = models.CharField(max_length=60, help_text="The rule that applied, e.g. teacher-inactive-2y.")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    job_run_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=150)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d} {self.action} {self.user_id or ''}{self.student_id or ''} ({self.rule})"


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
