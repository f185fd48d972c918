"""IEPs (IDEA) and Section 504 plans.

An IEP's annual review is due "not less than annually" (34 CFR 300.324(b)(1)): the due
date is the last review plus 365 days, not the same calendar date (leap years). A
reevaluation is due at least once every 3 years (34 CFR 300.303(b)(2)): the last evaluation
plus 3 calendar years, a 29 February evaluation falling due on 28 February.
"""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from students.models import Student

ANNUAL_REVIEW_DAYS = 365
REEVALUATION_YEARS = 3


def reevaluation_due_after(evaluated: dt.date) -> dt.date:
    """``evaluated`` + 3 years; 29 February goes to 28 February (never later than allowed)."""
    try:
        return evaluated.replace(year=evaluated.year + REEVALUATION_YEARS)
    except ValueError:
        return evaluated.replace(year=evaluated.year + REEVALUATION_YEARS, day=28)


class IEP(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        CLOSED = "closed", "Closed (exited special education)"

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="ieps")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    eligibility_date = models.DateField()
    disability_category = models.CharField(max_length=80, blank=True)
    last_annual_review = models.DateField()
    next_review_due = models.DateField(editable=False, help_text="Last annual review + 365 days.")
    last_reevaluation = models.DateField(
        null=True, blank=True, help_text="Date of the last (re)evaluation; empty means the initial one (eligibility date)."
    )
    reevaluation_due = models.DateField(
        null=True, editable=False, help_text="Last evaluation (or eligibility date) + 3 years (34 CFR 300.303)."
    )
    case_manager = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="iep_caseload"
    )
    last_reminder_sent_at = models.DateTimeField(null=True, blank=True)
    last_reminder_offset = models.SmallIntegerField(null=True, blank=True, help_text="Days before due of the latest reminder sent.")
    reminders_sent_count = models.PositiveIntegerField(default=0)
    # The reevaluation runs the same ladder on its own due date, so it keeps its own bookkeeping.
    last_reevaluation_reminder_sent_at = models.DateTimeField(null=True, blank=True)
    last_reevaluation_reminder_offset = models.SmallIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "IEP"
        verbose_name_plural = "IEPs"
        ordering = ["next_review_due"]
        constraints = [
            models.UniqueConstraint(fields=["student"], condition=Q(status="active"), name="one_active_iep_per_student"),
            models.CheckConstraint(condition=Q(last_annual_review__gte=F("eligibility_date")), name="iep_review_after_eligibility"),
        ]
        # The reminder job reads active IEPs by each due date (annual review, reevaluation) every day.
        indexes = [
            models.Index(fields=["next_review_due"], condition=Q(status="active"), name="iep_active_due_idx"),
            models.Index(fields=["reevaluation_due"], condition=Q(status="active"), name="iep_active_reeval_due_idx"),
        ]

    def __str__(self) -> str:
        return f"IEP for {self.student}" if self.student_id else "IEP"

    def clean(self) -> None:
        errors = {}
        # Also the iep_review_after_eligibility constraint; this names the field.
        if self.eligibility_date and self.last_annual_review and self.last_annual_review < self.eligibility_date:
            errors["last_annual_review"] = "The annual review cannot precede the eligibility date."
        # The reevaluation's due date follows from this one: a date before the first evaluation
        # or still to come would move a legal deadline (34 CFR 300.303) on a typing error.
        evaluated = self.last_reevaluation
        if evaluated and self.eligibility_date and evaluated < self.eligibility_date:
            errors["last_reevaluation"] = "A reevaluation cannot precede the eligibility date."
        elif evaluated and evaluated > self.local_today():
            errors["last_reevaluation"] = "Record a reevaluation once it has taken place (the date is in the future)."
        if errors:
            raise ValidationError(errors)

    def local_today(self) -> dt.date:
        """Today in the student's district (the server's date for an IEP without a student yet)."""
        now = timezone.now()
        if self.student_id:
            return now.astimezone(self.student.school.district.zone).date()
        return timezone.localdate(now)

    def save(self, *args, **kwargs):
        # Derived, never typed: the legal due date follows from the last review.
        self.next_review_due = self.last_annual_review + dt.timedelta(days=ANNUAL_REVIEW_DAYS)
        evaluated = self.last_reevaluation or self.eligibility_date
        self.reevaluation_due = reevaluation_due_after(evaluated) if evaluated else None
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"last_annual_review", "last_reevaluation", "eligibility_date"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "next_review_due", "reevaluation_due"}
        super().save(*args, **kwargs)


class IEPTeamMember(models.Model):
    class TeamRole(models.TextChoices):
        CASE_MANAGER = "case-manager", "Case manager"
        SPECIAL_EDUCATION_TEACHER = "sped-teacher", "Special-education teacher"
        GENERAL_EDUCATION_TEACHER = "gen-teacher", "General-education teacher"
        RELATED_SERVICES = "related-services", "Related-services provider"
        ADMINISTRATOR = "administrator", "District representative"
        PSYCHOLOGIST = "psychologist", "School psychologist"

    iep = models.ForeignKey(IEP, on_delete=models.CASCADE, related_name="team", verbose_name="IEP")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="iep_memberships")
    role = models.CharField(max_length=20, choices=TeamRole.choices)

    class Meta:
        verbose_name = "IEP team member"
        constraints = [models.UniqueConstraint(fields=["iep", "user"], name="iep_team_member_unique")]
        indexes = [models.Index(fields=["user"], name="iep_team_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()})"


class IEPMeeting(models.Model):
    class Purpose(models.TextChoices):
        ANNUAL_REVIEW = "annual-review", "Annual review"
        REEVALUATION = "reevaluation", "Reevaluation"
        AMENDMENT = "amendment", "Amendment"

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        SCHEDULED = "scheduled", "Scheduled"
        HELD = "held", "Held"
        CANCELLED = "cancelled", "Cancelled"

    iep = models.ForeignKey(IEP, on_delete=models.CASCADE, related_name="meetings", verbose_name="IEP")
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.ANNUAL_REVIEW)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROPOSED)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    location = models.CharField(max_length=200, blank=True, help_text="Where the meeting takes place (told to the family).")
    # Recorded by the reminder job on the day it sends the notice (34 CFR 300.322(b)): never typed.
    guardian_notice_sent_on = models.DateField(null=True, blank=True, editable=False)
    # The meeting time that notice announced. A meeting moved after its notice (scheduled_for
    # no longer equal) must be noticed again with the new date: the family's copy of the old
    # date is no notice of the new one.
    guardian_notice_for = models.DateTimeField(null=True, blank=True, editable=False)
    # ... and the place it announced: a meeting moved to another room is noticed again too.
    guardian_notice_location = models.CharField(max_length=200, blank=True, editable=False)
    notice_flagged_late = models.BooleanField(default=False)

    class Meta:
        verbose_name = "IEP meeting"
        ordering = ["scheduled_for"]
        constraints = [
            models.UniqueConstraint(
                fields=["iep", "purpose"], condition=Q(status__in=["proposed", "scheduled"]), name="one_open_meeting_per_purpose"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} meeting ({self.get_status_display().lower()})"

    @staticmethod
    def notice_outstanding() -> Q:
        """Meetings the family has not been told of at their current time and place: never
        noticed, or moved since (34 CFR 300.322(b): the notice states the time and place)."""
        return (Q(guardian_notice_sent_on__isnull=True) | Q(guardian_notice_for__isnull=True)
                | Q(guardian_notice_for__lt=F("scheduled_for")) | Q(guardian_notice_for__gt=F("scheduled_for"))
                | ~Q(guardian_notice_location=F("location")))

    def has_minutes(self) -> bool:
        return self.pk is not None and IEPMeetingMinutes.objects.filter(meeting_id=self.pk).exists()

    def clean(self) -> None:
        if self.status in (self.Status.SCHEDULED, self.Status.HELD) and not self.scheduled_for:
            raise ValidationError({"scheduled_for": "A scheduled meeting needs a date and time."})
        # A meeting is recorded as held only with its minutes. The admin sets
        # ``minutes_checked_by_form`` because its minutes inline is validated (and saved)
        # after this form: the inline formset makes the same check on what was submitted.
        # Checked when a meeting becomes held: a row held before minutes existed stays editable.
        becoming_held = self.status == self.Status.HELD and getattr(self, "_loaded_status", None) != self.Status.HELD
        if becoming_held and not getattr(self, "minutes_checked_by_form", False) and not self.has_minutes():
            raise ValidationError({"status": "A meeting is recorded as held only with its minutes."})

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")
        return instance


class IEPMeetingMinutes(models.Model):
    """What was decided at a held meeting and who was there (one record per meeting).

    ``attendees`` is a list of {"name": ..., "role": ...}: the people present, team or not
    (a parent, an interpreter, the student)."""

    meeting = models.OneToOneField(IEPMeeting, on_delete=models.CASCADE, related_name="minutes")
    attendees = models.JSONField(default=list, help_text='A list of {"name": ..., "role": ...}.')
    decisions = models.TextField()
    next_steps = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="iep_minutes_written")
    written_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "meeting minutes"
        verbose_name_plural = "meeting minutes"

    def __str__(self) -> str:
        return f"Minutes of {self.meeting}" if self.meeting_id else "Minutes"

    def clean(self) -> None:
        attendees = self.attendees
        if not isinstance(attendees, list) or not attendees or not all(
            isinstance(a, dict) and str(a.get("name", "")).strip() and str(a.get("role", "")).strip() for a in attendees
        ):
            raise ValidationError({"attendees": 'List who attended, each as {"name": ..., "role": ...}.'})
        if not (self.decisions or "").strip():
            raise ValidationError({"decisions": "Minutes record the decisions taken."})


class IEPService(models.Model):
    """A service the IEP requires, e.g. speech therapy 120 minutes a month."""

    iep = models.ForeignKey(IEP, on_delete=models.CASCADE, related_name="services", verbose_name="IEP")
    name = models.CharField(max_length=120)
    minutes_per_month = models.PositiveIntegerField()
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        verbose_name = "IEP service"
        constraints = [models.CheckConstraint(condition=Q(minutes_per_month__gt=0), name="iep_service_minutes_positive")]

    def __str__(self) -> str:
        return f"{self.name} ({self.minutes_per_month} min/month)"


class ServiceLog(models.Model):
    service = models.ForeignKey(IEPService, on_delete=models.CASCADE, related_name="logs")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="service_logs")
    delivered_on = models.DateField()
    minutes = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(480)],
        help_text="Minutes delivered in this session (at most 8 hours).",
    )
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(minutes__gt=0, minutes__lte=480), name="service_log_minutes_sane")]
        indexes = [models.Index(fields=["service", "delivered_on"], name="service_log_month_idx")]

    def clean(self) -> None:
        if self.service_id and self.student_id and self.service.iep.student_id != self.student_id:
            raise ValidationError({"student": "This service belongs to another student's IEP."})


class Section504Plan(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="plans_504")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    evaluation_date = models.DateField()
    start_date = models.DateField()
    next_review_due = models.DateField()
    coordinator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="plans_504_coordinated"
    )

    class Meta:
        verbose_name = "Section 504 plan"
        constraints = [
            models.UniqueConstraint(fields=["student"], condition=Q(status="active"), name="one_active_504_per_student"),
            models.CheckConstraint(condition=Q(start_date__gte=F("evaluation_date")), name="plan504_evaluated_before_start"),
            models.CheckConstraint(condition=Q(next_review_due__gt=F("start_date")), name="plan504_review_after_start"),
        ]

    def __str__(self) -> str:
        return f"504 plan for {self.student}" if self.student_id else "504 plan"

    def clean(self) -> None:
        # Also the plan504_* constraints; these name the field to fix, both at once.
        errors = {}
        evaluated, start, review = self.evaluation_date, self.start_date, self.next_review_due
        if evaluated and start and start < evaluated:
            errors["start_date"] = "A 504 plan starts after its evaluation (34 CFR 104.35)."
        if start and review and review <= start:
            errors["next_review_due"] = "The review is due after the plan starts."
        if errors:
            raise ValidationError(errors)


class Accommodation(models.Model):
    plan = models.ForeignKey(Section504Plan, on_delete=models.CASCADE, related_name="accommodations")
    description = models.CharField(max_length=200)
    implementers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="accommodations_implemented")

    def __str__(self) -> str:
        return self.description
