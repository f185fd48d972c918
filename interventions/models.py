"""Multi-tiered supports: an intervention per student and type, and the counselor's tasks."""
from __future__ import annotations

from django.conf import settings
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

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="interventions")
    type = models.CharField(max_length=12, choices=Type.choices)
    tier = models.PositiveSmallIntegerField(default=1)
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
