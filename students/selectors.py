"""Set-based reads over the student record."""
from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Greatest

from students.models import (
    AcademicSession,
    Assignment,
    CalendarDay,
    District,
    Grade,
    GuardianLink,
    SectionEnrollment,
    Submission,
)


def current_session(district: District) -> AcademicSession | None:
    return AcademicSession.objects.filter(district=district, is_current=True).first()


@dataclass(frozen=True)
class SchoolCalendar:
    """A school's instructional days in a range, sorted, for O(log n) range counts."""

    days: tuple[dt.date, ...]

    def count_between(self, first: dt.date, last: dt.date) -> int:
        """Instructional days d with first <= d <= last."""
        if last < first:
            return 0
        return bisect.bisect_right(self.days, last) - bisect.bisect_left(self.days, first)

    def window_start(self, as_of: dt.date, size: int) -> dt.date | None:
        """The first of the last ``size`` instructional days on or before ``as_of``."""
        end = bisect.bisect_right(self.days, as_of)
        if end == 0:
            return None
        return self.days[max(end - size, 0)]

    def index(self, day: dt.date) -> int:
        return bisect.bisect_left(self.days, day)


def instructional_calendars(*, school_ids, first: dt.date, last: dt.date) -> dict[int, SchoolCalendar]:
    """Every school's instructional days between two dates, in one query.

    A district's calendar is small (schools x ~180 days), so it is read whole and the
    per-student range counts are done in memory rather than joined per student.
    """
    days: dict[int, list[dt.date]] = {sid: [] for sid in school_ids}
    rows = (
        CalendarDay.objects.filter(school_id__in=school_ids, is_instructional=True, date__gte=first, date__lte=last)
        .order_by("school_id", "date")
        .values_list("school_id", "date")
    )
    for school_id, day in rows:
        days[school_id].append(day)
    return {sid: SchoolCalendar(tuple(d)) for sid, d in days.items()}


# --- coursework: grades posted and assignments due (grade-posting-digest, missing-assignment-alerts)

def _graded_between(*, district: District, after: dt.datetime, until: dt.datetime):
    return Grade.objects.filter(
        posted_at__gt=after, posted_at__lte=until, student__school__district=district, student__is_active=True,
    )


def students_graded_between(*, district: District, after: dt.datetime, until: dt.datetime):
    """The district's active students with a grade posted in (after, until], as a QuerySet
    of ids: counted (``.count()``) or used as a subquery, never loaded into memory."""
    return _graded_between(district=district, after=after, until=until).order_by().values("student_id").distinct()


def grades_posted_between(*, district: District, after: dt.datetime, until: dt.datetime):
    """Grades posted in (after, until] for the district's active students, one statement
    streamed in chunks (an iterator), ordered by student, with what a digest line prints
    (class, assignment, score and maximum) and ``muted``: whether the student muted that
    class (an EXISTS on their enrollment, so no separate lookup per batch of students)."""
    muted = SectionEnrollment.objects.filter(
        student_id=OuterRef("student_id"), section_id=OuterRef("assignment__section_id"), notifications_muted=True,
    )
    return (
        _graded_between(district=district, after=after, until=until)
        .annotate(muted=Exists(muted))
        .order_by("student_id", "assignment__section__course_name", "posted_at", "id")
        .values(
            "id", "student_id", "student__user_id", "student__first_name", "score", "posted_at",
            "assignment_id", "assignment__title", "assignment__max_score", "assignment__section_id",
            "assignment__section__course_name", "muted",
        )
        .iterator(chunk_size=10_000)
    )


def guardians_of(*, student_ids) -> list[tuple[int, int]]:
    """(student id, guardian user id) for every link, revoked ones included: the outbox's
    enqueue decides revocation and age 18 and records why a message was not sent.
    ``student_ids`` may be a QuerySet of ids (a subquery: one statement, no id list)."""
    if not isinstance(student_ids, QuerySet):
        student_ids = list(student_ids)
    return list(GuardianLink.objects.filter(student_id__in=student_ids).values_list("student_id", "guardian_id"))


def guardian_ids_of(*, student_ids: QuerySet) -> QuerySet:
    """The guardian user ids of these students (a QuerySet of ids), as a subquery."""
    return GuardianLink.objects.filter(student_id__in=student_ids).values("guardian_id")


def _due_q(prefix: str, *, dates, major_only_dates) -> Q:
    """Published work with a maximum score above zero due on one of ``dates``; on
    ``major_only_dates`` (a subset) major assignments only. Positive conditions only, so
    that inside one filter() call every one of them is on the same assignment join row
    (a negated condition on a multi-valued relation becomes a subquery of its own)."""
    major_only_dates = set(major_only_dates)
    regular = [d for d in dates if d not in major_only_dates]
    return Q(**{f"{prefix}status": Assignment.Status.PUBLISHED, f"{prefix}max_score__gt": 0}) & (
        Q(**{f"{prefix}due_date__in": regular})
        | Q(**{f"{prefix}due_date__in": list(major_only_dates), f"{prefix}is_major": True})
    )


def assignments_due_count(*, district: District, dates, major_only_dates=(), school_ids=None) -> int:
    """How many of the district's assignments are due on ``dates`` (see ``_due_q``), of the
    schools ``school_ids`` only when given (those in session: students.calendar). One query."""
    found = Assignment.objects.filter(
        _due_q("", dates=dates, major_only_dates=major_only_dates), section__school__district=district,
    )
    if school_ids is not None:
        found = found.filter(section__school_id__in=list(school_ids))
    return found.count()


def missing_work_recipients(*, district: District, dates, major_only_dates=(), day: dt.date, school_ids=None):
    """The missing work of the district and who to tell, as one statement streamed in
    chunks (an iterator fetching 10,000 rows a round trip: memory stays bounded by a chunk, not
    by the district).

    One row per (assignment due on ``dates``, active student enrolled in its section on
    ``day`` (started, not ended) with no submission and no exemption for it, and due on or
    after the day the student joined the section and the district, guardian link):
    ``(assignment id, due date, title, section id, course name, student id, student's user
    id, guardian user id)``. The guardian links are a LEFT JOIN, so a student
    without a guardian still has one row (guardian None); revoked links are included (the
    outbox's enqueue applies revocation, age 18, preferences and muted classes, and records
    why a message was not sent). The submissions are an anti-join (NOT EXISTS), so only the
    missing pairs come back. Ordered by due date, assignment, student and guardian: a pair's
    rows are adjacent. ``school_ids``: only sections of these schools (those in session).
    """
    done = Submission.objects.filter(assignment_id=OuterRef("assignment_id"), student_id=OuterRef("student_id")).filter(
        Q(submitted_at__isnull=False) | Q(is_exempt=True)
    )
    # One filter() call: every condition is on the same enrollment-assignment join row.
    # Work due before the student was there is not theirs to have missed: the due date must
    # be on or after both the start of this section enrolment and the student's entry into
    # the district (a column comparison in the same statement, so the query count is unchanged).
    in_schools = Q(section__school_id__in=list(school_ids)) if school_ids is not None else Q()
    return (
        SectionEnrollment.objects.filter(
            in_schools,
            Q(end_date__isnull=True) | Q(end_date__gte=day),
            _due_q("section__assignments__", dates=dates, major_only_dates=major_only_dates),
            section__school__district=district, start_date__lte=day, student__is_active=True,
            section__assignments__due_date__gte=Greatest(F("start_date"), F("student__enrollment_date")),
        )
        .annotate(
            assignment_id=F("section__assignments__id"), due_date=F("section__assignments__due_date"),
            title=F("section__assignments__title"), done=Exists(done),
        )
        .filter(done=False)
        .order_by("due_date", "assignment_id", "student_id", "student__guardian_links__guardian_id")
        .values_list(
            "assignment_id", "due_date", "title", "section_id", "section__course_name",
            "student_id", "student__user_id", "student__guardian_links__guardian_id",
        )
        .iterator(chunk_size=10_000)
    )
