"""Districts, schools, people and the student record.

The rules that must hold whatever code writes the rows (one attendance record a day, a
maximum score above zero, one current session per district) live in the database as
constraints, not only in forms.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from students.zones import zone_problem


def validate_time_zone(value: str) -> None:
    """A district's zone: a real place's IANA zone (students.zones says which and why)."""
    problem = zone_problem(value)
    if problem:
        raise ValidationError(problem[0].upper() + problem[1:] + ".")


def default_iep_offsets() -> list[int]:
    return [90, 60, 30, 14, 7, 0]


def validate_iep_offsets(value) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Give at least one reminder offset, e.g. [90, 60, 30, 14, 7, 0].")
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 365 for v in value):
        raise ValidationError("Each reminder offset is a whole number of days from 0 to 365.")
    if len(set(value)) != len(value):
        raise ValidationError("Reminder offsets must not repeat.")


class Role(models.TextChoices):
    """Roles are Django groups with these names (see students.roles)."""

    SYSTEM_ADMIN = "system-admin", "System admin"
    DISTRICT_ADMIN = "district-admin", "District admin"
    PRINCIPAL = "principal", "Principal"
    COUNSELOR = "counselor", "Counselor"
    SPED_COORDINATOR = "sped-coordinator", "Special-education coordinator"
    CASE_MANAGER = "case-manager", "Case manager"
    TEACHER = "teacher", "Teacher"
    GUARDIAN = "guardian", "Guardian"
    STUDENT = "student", "Student"


class District(models.Model):
    name = models.CharField(max_length=200, unique=True)
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone], default="America/New_York")
    state = models.CharField(max_length=2, help_text="Two-letter state code, e.g. NY.")
    # Settings the jobs read. Defaults follow docs/decisions/domain-rules.md.
    chronic_absence_threshold = models.DecimalField(
        max_digits=4, decimal_places=3, default=Decimal("0.100"),
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("0.99"))],
        help_text="Absence rate at or above which a student is chronically absent (0.100 = 10%).",
    )
    min_enrolled_days = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(180)],
        help_text="Enrolled instructional days needed before the session rate can flag a student.",
    )
    # Quiet hours: non-emergency messages to families go out only inside this local window.
    notify_window_start = models.TimeField(default=dt.time(7, 0), help_text="Family messages may go out from this local time...")
    notify_window_end = models.TimeField(default=dt.time(21, 0), help_text="...until this local time; later ones wait.")
    iep_reminder_offsets = models.JSONField("IEP reminder offsets", default=default_iep_offsets, validators=[validate_iep_offsets])
    meeting_notice_lead_days = models.PositiveSmallIntegerField(
        default=10, validators=[MaxValueValidator(60)],
        help_text="Days before an IEP meeting by which guardians must have been notified.",
    )
    it_contact_email = models.EmailField(blank=True)
    emergency_test_group = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="emergency_test_districts",
        help_text="The only people who receive the quarterly emergency-notification test.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(chronic_absence_threshold__gt=0) & Q(chronic_absence_threshold__lt=1),
                name="district_threshold_between_0_and_1",
            ),
            models.CheckConstraint(condition=Q(min_enrolled_days__gte=1), name="district_min_enrolled_days_positive"),
            models.CheckConstraint(condition=Q(notify_window_start__lt=F("notify_window_end")), name="district_notify_window_ordered"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def clean(self) -> None:
        # Quiet hours are one window inside a local day. The database refuses the rest too
        # (district_notify_window_ordered); this names the field to fix.
        start, end = self.notify_window_start, self.notify_window_end
        if start and end and start >= end:
            raise ValidationError({"notify_window_end": "The end of the messaging window must be after its start."})


class School(models.Model):
    district = models.ForeignKey(District, on_delete=models.PROTECT, related_name="schools")
    name = models.CharField(max_length=200)
    code = models.CharField(max_length=20, help_text="State school code.")
    lowest_grade = models.SmallIntegerField(default=0, help_text="0 = kindergarten.")
    highest_grade = models.SmallIntegerField(default=12)
    feeds_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="fed_by",
        help_text="The school of this district its students go to after its highest grade (an elementary "
                  "school's middle school): the end-of-year rollover enrols them there.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["district", "code"], name="school_code_unique_in_district"),
            models.CheckConstraint(condition=Q(lowest_grade__lte=F("highest_grade")), name="school_grade_span_ordered"),
            models.CheckConstraint(condition=Q(lowest_grade__gte=-1, highest_grade__lte=12), name="school_grades_in_range"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.lowest_grade is not None and self.highest_grade is not None and self.lowest_grade > self.highest_grade:
            raise ValidationError({"highest_grade": "The highest grade is below the lowest grade."})
        if self.feeds_into_id is not None:
            self._clean_feeds_into()

    def _clean_feeds_into(self) -> None:
        # The rollover moves a school's top grade into this school as grade highest + 1,
        # so that grade must be taught there; a cycle is impossible since each hop goes up.
        feeder = self.feeds_into
        if self.pk is not None and feeder.pk == self.pk:
            raise ValidationError({"feeds_into": "A school cannot feed into itself."})
        if feeder.district_id != self.district_id:
            raise ValidationError({"feeds_into": f"{feeder} is in another district."})
        if self.highest_grade is None:
            return
        if self.highest_grade >= 12:
            raise ValidationError({"feeds_into": "A school that ends at grade 12 graduates its students; it feeds no school."})
        nxt = self.highest_grade + 1
        if not (feeder.lowest_grade <= nxt <= feeder.highest_grade):
            raise ValidationError({"feeds_into": f"{feeder} teaches grades {feeder.lowest_grade} to {feeder.highest_grade}, "
                                                 f"not grade {nxt} (the grade after this school's highest)."})


class AcademicSession(models.Model):
    district = models.ForeignKey(District, on_delete=models.PROTECT, related_name="sessions")
    name = models.CharField(max_length=60, help_text="e.g. 2026-2027")
    start_date = models.DateField()
    end_date = models.DateField()
    is_current = models.BooleanField(default=False)

    class Meta:
        ordering = ["-start_date"]
        constraints = [
            models.UniqueConstraint(fields=["district", "name"], name="session_name_unique_in_district"),
            models.UniqueConstraint(fields=["district"], condition=Q(is_current=True), name="one_current_session_per_district"),
            models.CheckConstraint(condition=Q(end_date__gt=F("start_date")), name="session_ends_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.district.name} {self.name}" if self.district_id else self.name


class CalendarDay(models.Model):
    """A school's calendar: each row is a day, instructional or not (holiday, snow day)."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="calendar_days")
    date = models.DateField()
    is_instructional = models.BooleanField(default=True)
    note = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["school", "date"]
        constraints = [models.UniqueConstraint(fields=["school", "date"], name="calendar_day_unique")]
        # The attendance job counts instructional days per school over a date range.
        indexes = [models.Index(fields=["school", "date"], condition=Q(is_instructional=True), name="calendar_instructional_idx")]

    def __str__(self) -> str:
        return f"{self.date} {'instructional' if self.is_instructional else self.note or 'no school'}"


class StaffProfile(models.Model):
    """Where a staff member works: role-scoped admin reads this."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_profile")
    district = models.ForeignKey(District, on_delete=models.PROTECT, related_name="staff")
    schools = models.ManyToManyField(School, blank=True, related_name="staff")
    title = models.CharField(max_length=120, blank=True)
    flagged_for_review_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.district})"

    @staticmethod
    def validate_schools(*, district: District | None, schools) -> None:
        """A staff member works only at schools of their district. Many-to-many choices are
        saved after the row, so clean() cannot see them: the form calls this with its choices."""
        if district and schools and any(s.district_id != district.pk for s in schools):
            raise ValidationError({"schools": "Every school must belong to the staff member's district."})


# FERPA 99.5: at 18 the rights over the education record pass from the parents to the student.
AGE_OF_RIGHTS_TRANSFER = 18


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Whole years from ``birth_date`` to ``day`` (a 29 February birthday counts from 1 March
    in other years)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


# Grade levels: pre-K (-1), kindergarten (0) to 12 (also the student_grade_in_range constraint).
GRADE_MIN, GRADE_MAX = -1, 12


class Student(models.Model):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="students")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="student_record"
    )
    local_id = models.CharField("student number", max_length=32, help_text="The district's student number.")
    first_name = models.CharField(max_length=80)
    last_name = models.CharField(max_length=80)
    grade_level = models.SmallIntegerField(
        help_text="0 = kindergarten, -1 = pre-K.", validators=[MinValueValidator(GRADE_MIN), MaxValueValidator(GRADE_MAX)],
    )
    birth_date = models.DateField()
    enrollment_date = models.DateField()
    exit_date = models.DateField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    graduated_on = models.DateField(null=True, blank=True)
    transferred_on = models.DateField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    retain_next_year = models.BooleanField(
        default=False, help_text="Retained: the end-of-year rollover keeps this grade (and clears the flag)."
    )
    counselor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="counselees"
    )
    directory_opt_out = models.BooleanField(default=False, help_text="FERPA 99.37: leave out of directory exports.")
    consents_to_guardian_access = models.BooleanField(
        default=False, help_text="Once 18, the student agrees that guardians keep receiving notices."
    )

    class Meta:
        ordering = ["last_name", "first_name"]
        constraints = [
            models.UniqueConstraint(fields=["school", "local_id"], name="student_local_id_unique_in_school"),
            models.CheckConstraint(condition=Q(grade_level__gte=-1, grade_level__lte=12), name="student_grade_in_range"),
            models.CheckConstraint(
                condition=Q(exit_date__isnull=True) | Q(exit_date__gte=F("enrollment_date")),
                name="student_exit_after_entry",
            ),
            models.CheckConstraint(condition=Q(birth_date__lt=F("enrollment_date")), name="student_born_before_enrolling"),
        ]
        indexes = [
            models.Index(fields=["school", "is_active"], name="student_school_active_idx"),
            models.Index(fields=["counselor"], name="student_counselor_idx"),
            models.Index(fields=["last_name", "first_name"], name="student_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.last_name}, {self.first_name}"

    def clean(self) -> None:
        errors = {}
        if self.exit_date and self.enrollment_date and self.exit_date < self.enrollment_date:
            errors["exit_date"] = "The exit date is before the enrollment date."
        elif self.birth_date and self.enrollment_date and self.birth_date >= self.enrollment_date:
            errors["birth_date"] = "The birth date must be before the enrollment date."
        grade = self.grade_level
        # A grade outside pre-K..12 is the field validators' error; the school's span is checked on real grades.
        if self.school_id and grade is not None and GRADE_MIN <= grade <= GRADE_MAX:
            school = self.school
            if not (school.lowest_grade <= grade <= school.highest_grade):
                errors["grade_level"] = f"{school} teaches grades {school.lowest_grade} to {school.highest_grade}."
        if errors:
            raise ValidationError(errors)

    def age_on(self, day: dt.date) -> int:
        return age_on(self.birth_date, day)


class GuardianLink(models.Model):
    class Relationship(models.TextChoices):
        MOTHER = "mother", "Mother"
        FATHER = "father", "Father"
        PARENT = "parent", "Parent"
        GRANDPARENT = "grandparent", "Grandparent"
        GUARDIAN = "guardian", "Legal guardian"
        FOSTER = "foster", "Foster parent"
        OTHER = "other", "Other"

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        SPANISH = "es", "Spanish"

    guardian = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="guardian_links")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="guardian_links")
    relationship = models.CharField(max_length=20, choices=Relationship.choices, default=Relationship.PARENT)
    is_custodial = models.BooleanField(default=True)
    access_revoked = models.BooleanField(default=False, help_text="A court order revoked this guardian's rights (FERPA 99.4).")
    access_revoked_note = models.CharField(max_length=200, blank=True)
    is_dependent_claim = models.BooleanField(
        default=False, help_text="The student is this guardian's tax dependent (FERPA 99.31(a)(8)): notices continue at 18."
    )
    preferred_language = models.CharField(max_length=5, choices=Language.choices, default=Language.ENGLISH)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["guardian", "student"], name="guardian_link_unique")]
        indexes = [models.Index(fields=["student"], name="guardian_link_student_idx")]

    def __str__(self) -> str:
        # By name, as staff know the guardian; a family account's username is a generated login.
        who = self.guardian.get_full_name() or self.guardian.get_username()
        return f"{who} → {self.student} ({self.get_relationship_display()})"

    # Why a guardian may not be told about the student (the notification's status reason).
    REVOKED = "guardian-access-revoked"
    ADULT_NO_CONSENT = "student-18-no-consent"

    def notice_bar_on(self, day: dt.date) -> str | None:
        """Why this guardian may not be told about the student on ``day`` (the student's
        district's local date), or None when they may."""
        student = self.student
        return self.notice_bar(
            access_revoked=self.access_revoked, is_dependent_claim=self.is_dependent_claim,
            birth_date=student.birth_date, student_consents=student.consents_to_guardian_access, day=day,
        )

    def may_be_told_on(self, day: dt.date) -> bool:
        return self.notice_bar_on(day) is None

    @classmethod
    def notice_bar(cls, *, access_revoked: bool, is_dependent_claim: bool, birth_date: dt.date,
                   student_consents: bool, day: dt.date) -> str | None:
        """The rule on its facts, for callers that read them for thousands of links in one
        query (notifications' enqueue) rather than as model instances:

        1. a court order revoked this guardian's rights (FERPA 99.4): never;
        2. the student is 18 on ``day``: only if the student consents, or the guardian
           claims the student as a tax dependent (FERPA 99.31(a)(8));
        3. otherwise: yes.
        """
        if access_revoked:
            return cls.REVOKED
        if age_on(birth_date, day) >= AGE_OF_RIGHTS_TRANSFER and not student_consents and not is_dependent_claim:
            return cls.ADULT_NO_CONSENT
        return None


class DeviceToken(models.Model):
    class Platform(models.TextChoices):
        IOS = "ios", "iOS"
        ANDROID = "android", "Android"
        WEB = "web", "Web"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="device_tokens")
    token = models.CharField(max_length=4096)
    platform = models.CharField(max_length=10, choices=Platform.choices)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token"], name="device_token_unique")]
        indexes = [models.Index(fields=["user"], condition=Q(is_active=True), name="device_token_active_idx")]

    def __str__(self) -> str:
        return f"{self.user} {self.platform}"


class Section(models.Model):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="sections")
    session = models.ForeignKey(AcademicSession, on_delete=models.PROTECT, related_name="sections")
    teacher = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="sections_taught"
    )
    course_name = models.CharField(max_length=120)
    period = models.CharField(max_length=10, blank=True)

    class Meta:
        ordering = ["course_name", "period"]

    def __str__(self) -> str:
        return f"{self.course_name} ({self.period})" if self.period else self.course_name


class SectionEnrollment(models.Model):
    section = models.ForeignKey(Section, on_delete=models.CASCADE, related_name="enrollments")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="section_enrollments")
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True)
    notifications_muted = models.BooleanField(default=False, help_text="The student muted this class's notices.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["section", "student"], name="section_enrollment_unique"),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=F("start_date")), name="section_enrollment_ordered"
            ),
        ]
        indexes = [models.Index(fields=["student"], name="section_enrollment_student_idx")]


class Assignment(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"

    section = models.ForeignKey(Section, on_delete=models.CASCADE, related_name="assignments")
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    due_date = models.DateField()
    max_score = models.DecimalField(max_digits=7, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))])
    is_major = models.BooleanField(default=False)

    class Meta:
        ordering = ["due_date"]
        constraints = [
            models.CheckConstraint(condition=Q(max_score__gt=0), name="assignment_max_score_positive"),
            models.CheckConstraint(condition=Q(status__in=["draft", "published"]), name="assignment_status_valid"),
        ]
        # Reminder jobs select published assignments by due date.
        indexes = [models.Index(fields=["due_date"], condition=Q(status="published"), name="assignment_published_due_idx")]

    def __str__(self) -> str:
        return self.title


class Submission(models.Model):
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="submissions")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="submissions")
    submitted_at = models.DateTimeField(null=True, blank=True)
    is_exempt = models.BooleanField(default=False, help_text="Excused from this assignment: no reminders.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["assignment", "student"], name="submission_unique"),
            models.CheckConstraint(
                condition=Q(submitted_at__isnull=False) | Q(is_exempt=True), name="submission_submitted_or_exempt"
            ),
        ]
        indexes = [models.Index(fields=["student"], name="submission_student_idx")]

    def clean(self) -> None:
        # The database insists too (submission_submitted_or_exempt); this names the field.
        if not self.submitted_at and not self.is_exempt:
            raise ValidationError({"submitted_at": "Give the submission time, or mark the student exempt."})


class Grade(models.Model):
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="grades")
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="grades")
    score = models.DecimalField(max_digits=7, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    posted_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["assignment", "student"], name="grade_unique"),
            models.CheckConstraint(condition=Q(score__gte=0), name="grade_score_not_negative"),
        ]
        indexes = [models.Index(fields=["student", "posted_at"], name="grade_student_posted_idx")]

    def clean(self) -> None:
        if self.assignment_id and self.student_id and not SectionEnrollment.objects.filter(
            section_id=self.assignment.section_id, student_id=self.student_id,
        ).exists():
            raise ValidationError({"student": "This student is not enrolled in the assignment's section."})


class AttendanceStatus(models.TextChoices):
    PRESENT = "present", "Present"
    ABSENT_EXCUSED = "absent-excused", "Absent (excused)"
    ABSENT_UNEXCUSED = "absent-unexcused", "Absent (unexcused)"
    TARDY = "tardy", "Tardy"
    OUT_OF_SCHOOL_SUSPENSION = "oss", "Out-of-school suspension"
    IN_SCHOOL_SUSPENSION = "iss", "In-school suspension"


# Statuses that count as an absent day for chronic absence (ED EDFacts FS195): in-school
# suspension and tardy do not. A day the student missed at least half of counts as absent
# too: fraction present <= 0.5 (CRDC: "absent ... at least 50 percent of the school day").
ABSENT_STATUSES = (
    AttendanceStatus.ABSENT_EXCUSED,
    AttendanceStatus.ABSENT_UNEXCUSED,
    AttendanceStatus.OUT_OF_SCHOOL_SUSPENSION,
)
ABSENT_FRACTION_MAX = Decimal("0.5")  # fraction_present <= this is an absent day


class AttendanceRecord(models.Model):
    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="attendance_records")
    date = models.DateField()
    status = models.CharField(max_length=20, choices=AttendanceStatus.choices)
    fraction_present = models.DecimalField(
        max_digits=3, decimal_places=2, default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["student", "date"], name="attendance_one_per_student_day"),
            models.CheckConstraint(
                condition=Q(fraction_present__gte=0) & Q(fraction_present__lte=1), name="attendance_fraction_0_to_1"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in AttendanceStatus]), name="attendance_status_valid"
            ),
        ]
        indexes = [
            # The admin lists newest days first (-date, -id): with the id in the index, PostgreSQL
            # reads rows in that order and stops at a page, instead of sorting whole days; with
            # the student in it (PostgreSQL only), a scoped page's ids come from the index alone.
            models.Index(fields=["date", "id"], include=["student"], name="attendance_date_id_idx"),
            # The chronic-absence job reads only absent days: a partial index over them is a
            # few percent of the table and turns its scan into an index-only range read.
            models.Index(
                fields=["student", "date"],
                condition=Q(status__in=["absent-excused", "absent-unexcused", "oss"]) | Q(fraction_present__lte=Decimal("0.5")),
                name="attendance_absent_idx",
            ),
        ]

    def clean(self) -> None:
        student = getattr(self, "student", None) if self.student_id else None
        if student and self.date:
            if self.date < student.enrollment_date or (student.exit_date and self.date > student.exit_date):
                raise ValidationError({"date": "This date is outside the student's enrollment."})

    @property
    def counts_as_absent(self) -> bool:
        return self.status in ABSENT_STATUSES or self.fraction_present <= ABSENT_FRACTION_MAX


class BehaviorIncident(models.Model):
    class Severity(models.IntegerChoices):
        MINOR = 1, "Minor"
        MODERATE = 2, "Moderate"
        MAJOR = 3, "Major"

    student = models.ForeignKey(Student, on_delete=models.CASCADE, related_name="behavior_incidents")
    occurred_at = models.DateTimeField()
    category = models.CharField(max_length=60)
    severity = models.PositiveSmallIntegerField(choices=Severity.choices, default=Severity.MINOR)
    description = models.TextField(blank=True)
    reported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [models.CheckConstraint(condition=Q(severity__in=[1, 2, 3]), name="incident_severity_valid")]
        indexes = [models.Index(fields=["student", "occurred_at"], name="incident_student_time_idx")]
