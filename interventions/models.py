"""Multi-tiered supports: an intervention per student and type, and the counselor's tasks."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from students.models import Student


class Intervention(models.Model):
    class Type(models.TextChoices):
        ATTENDANCE = "attendance", "Attendance"
        ACADEMIC = "academic", "Academic"
        BEHAVIOR = "behavior", "Behavior"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"
        # Replaced by a higher-tier intervention, which links back through escalated_from.
        ESCALATED = "escalated", "Escalated"

    class Tier(models.IntegerChoices):  # also the intervention_tier_1_to_3 constraint
        TIER_1 = 1, "Tier 1"
        TIER_2 = 2, "Tier 2"
        TIER_3 = 3, "Tier 3"

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="interventions")
    type = models.CharField(max_length=12, choices=Type.choices)
    tier = models.PositiveSmallIntegerField(default=1, choices=Tier.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    reason = models.CharField(max_length=300)
    recommended_strategies = models.JSONField(default=list, blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_reason = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="interventions_owned"
    )
    escalated_from = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="escalated_to"
    )
    opened_by_run_id = models.BigIntegerField(null=True, blank=True, help_text="The job run that opened it, if any.")
    # Set and cleared by attendance-interventions only, never closes anything: the counselor decides.
    ready_to_review_since = models.DateField(
        null=True, blank=True,
        help_text="Attendance: the first local day the student's last 30 instructional days were under the "
                  "district threshold with no 3 absent days in a row (cleared when the student slips again).",
    )

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Never a second active intervention of one type for a student, whatever writes it.
            models.UniqueConstraint(
                fields=["student", "type"], condition=Q(status="active"), name="one_active_intervention_per_type"
            ),
            models.CheckConstraint(condition=Q(tier__gte=1, tier__lte=3), name="intervention_tier_1_to_3"),
            models.CheckConstraint(condition=Q(type__in=["attendance", "academic", "behavior"]), name="intervention_type_valid"),
            models.CheckConstraint(
                condition=Q(status="active", closed_at__isnull=True) | (~Q(status="active") & Q(closed_at__isnull=False)),
                name="intervention_closed_iff_not_active",
            ),
        ]
        indexes = [models.Index(fields=["type", "status"], name="intervention_type_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_type_display()} tier {self.tier} for {self.student}"

    def clean(self) -> None:
        # The database insists: closed iff not active (intervention_closed_iff_not_active).
        # Say which field is wrong instead.
        errors: dict[str, list[str]] = {}
        status, opened_at, closed_at = self.status, self.opened_at, self.closed_at
        if status == self.Status.ACTIVE and closed_at:
            errors.setdefault("closed_at", []).append("An active intervention has no closing time; clear it or change the status.")
        elif status and status != self.Status.ACTIVE and not closed_at:
            errors.setdefault("closed_at", []).append("Give the time the intervention was closed or escalated.")
        if opened_at and closed_at and closed_at < opened_at:
            errors.setdefault("closed_at", []).append("The intervention cannot close before it opened.")
        if self.escalated_from_id and self.student_id and self.escalated_from.student_id != self.student_id:
            errors["escalated_from"] = ["The escalated intervention belongs to another student."]
        if errors:
            raise ValidationError(errors)


class CounselorTask(models.Model):
    """What lands on a counselor's list: a priority student or a proposed parent conference."""

    class Kind(models.TextChoices):
        PRIORITY = "priority", "Priority student"
        PARENT_CONFERENCE = "parent-conference", "Parent conference"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"
        DISMISSED = "dismissed", "Dismissed"

    counselor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="counselor_tasks")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="counselor_tasks")
    intervention = models.ForeignKey(Intervention, on_delete=models.CASCADE, null=True, blank=True, related_name="tasks")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    note = models.CharField(max_length=300, blank=True)
    due_date = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["status", "due_date"]
        constraints = [
            models.UniqueConstraint(
                fields=["counselor", "student", "kind", "intervention"], name="counselor_task_unique_per_intervention"
            ),
        ]


class Trend(models.TextChoices):
    UP = "up", "Up"
    DOWN = "down", "Down"
    STABLE = "stable", "Stable"


class StudentAnalytics(models.Model):
    """One student's week against the week before, written by performance-trends.

    Weeks are the seven local days ending on the run's local date (Monday to Sunday for
    the Sunday run). Percentages are 0-100; a figure with no data in a week (no grades, no
    assignments due, no instructional days) is NULL and so is its trend — never NaN.
    UP / DOWN / STABLE: a change of more than 5 points either way, else stable.
    """

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="weekly_analytics")
    week_start = models.DateField(help_text="First local day of the week (this week).")
    week_end = models.DateField(help_text="Last local day of the week.")
    grade_pct = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True, help_text="Mean of score / max score, in %.")
    grade_pct_prev = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    grade_count = models.PositiveIntegerField(default=0)
    grade_trend = models.CharField(max_length=6, choices=Trend.choices, null=True, blank=True)
    attendance_pct = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    attendance_pct_prev = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    attendance_trend = models.CharField(max_length=6, choices=Trend.choices, null=True, blank=True)
    completion_pct = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True, help_text="Submitted / due this week, in %.")
    completion_pct_prev = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    completion_trend = models.CharField(max_length=6, choices=Trend.choices, null=True, blank=True)
    incidents = models.PositiveIntegerField(default=0)
    incidents_prev = models.PositiveIntegerField(default=0)
    incidents_trend = models.CharField(max_length=6, choices=Trend.choices, null=True, blank=True)
    intervention_effects = models.JSONField(
        default=list, blank=True,
        help_text="Per intervention: attendance % in the instructional days before and after it opened.",
    )
    alerted = models.BooleanField(default=False, help_text="A drop of more than 10 points alerted the counselor.")
    computed_at = models.DateTimeField()
    job_run_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "student weekly analytics"
        verbose_name_plural = "student weekly analytics"
        ordering = ["-week_start", "student_id"]
        constraints = [
            models.UniqueConstraint(fields=["student", "week_start"], name="student_analytics_one_per_week"),
            models.CheckConstraint(condition=Q(week_end__gte=models.F("week_start")), name="student_analytics_week_ordered"),
        ]
        indexes = [models.Index(fields=["week_start", "grade_trend"], name="student_analytics_week_idx")]

    def __str__(self) -> str:
        return f"{self.student_id} week of {self.week_start}"
