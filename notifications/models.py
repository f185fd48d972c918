"""Who wants to hear what, how often, on which channel."""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Category(models.TextChoices):
    ATTENDANCE_INTERVENTION = "attendance-intervention", "Attendance intervention"
    IEP_REMINDER = "iep-reminder", "IEP reminder"
    GRADE_DIGEST = "grade-digest", "Grade digest"
    ASSIGNMENT_REMINDER = "assignment-reminder", "Assignment reminder"
    PERFORMANCE_ALERT = "performance-alert", "Performance alert"
    REPORT = "report", "Report"
    EMERGENCY = "emergency", "Emergency"
    EMERGENCY_TEST = "emergency-test", "Emergency test"
    SYSTEM = "system", "System"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    PUSH = "push", "Push"


class Frequency(models.TextChoices):
    IMMEDIATELY = "immediately", "Immediately"
    DAILY = "daily", "Daily digest"
    WEEKLY = "weekly", "Weekly digest"
    NEVER = "never", "Never"


class NotificationPreference(models.Model):
    """One row per person, category and channel; no row means the category's default."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences")
    category = models.CharField(max_length=30, choices=Category.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    frequency = models.CharField(max_length=12, choices=Frequency.choices, default=Frequency.IMMEDIATELY)
    low_grade_threshold = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Grade digest only: also alert at once when a grade falls below this percentage.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "category", "channel"], name="notification_preference_unique"),
            models.CheckConstraint(
                condition=Q(low_grade_threshold__isnull=True) | Q(low_grade_threshold__gte=0, low_grade_threshold__lte=100),
                name="preference_threshold_percentage",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.category} by {self.channel} {self.frequency}"
