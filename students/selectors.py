"""Set-based reads over the student record."""
from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Q

from students.models import (
    AcademicSession, Assignment, CalendarDay, District, Grade, GuardianLink, SectionEnrollment, Submission,
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

def students_graded_between(*, district: District, after: dt.datetime, until: dt.datetime) -> list[int]:
    """Ids of the district's active students with a grade posted in (after, until], one query."""
    return list(
        Grade.objects.filter(
            posted_at__gt=after, posted_at__lte=until, student__school__district=district, student__is_active=True,
        ).order_by("student_id").values_list("student_id", flat=True).distinct()
    )


def grades_posted_between(*, district: District, after: dt.datetime, until: dt.datetime, student_ids=None):
    """Grades posted in (after, until] for the district's active students (or these ones),
    one query, with what a digest line prints: class, assignment, score and maximum."""
    qs = Grade.objects.filter(
        posted_at__gt=after, posted_at__lte=until, student__school__district=district, student__is_active=True,
    )
    if student_ids is not None:
        qs = qs.filter(student_id__in=list(student_ids))
    return qs.order_by("student_id", "assignment__section__course_name", "posted_at", "id").values(
        "id", "student_id", "student__user_id", "student__first_name", "score", "posted_at",
        "assignment_id", "assignment__title", "assignment__max_score", "assignment__section_id",
        "assignment__section__course_name",
    )


def muted_sections(*, student_ids) -> set[tuple[int, int]]:
    """(student id, section id) of the classes each student muted, one query."""
    return set(
        SectionEnrollment.objects.filter(student_id__in=list(student_ids), notifications_muted=True)
        .values_list("student_id", "section_id")
    )


def guardians_of(*, student_ids) -> list[tuple[int, int]]:
    """(student id, guardian user id) for every link, revoked ones included: the outbox's
    enqueue decides revocation and age 18 and records why a message was not sent."""
    return list(GuardianLink.objects.filter(student_id__in=list(student_ids)).values_list("student_id", "guardian_id"))


def assignments_due_on(*, district: District, dates) -> list[dict]:
    """Published assignments with a maximum score above zero due on one of ``dates``."""
    return list(
        Assignment.objects.filter(
            section__school__district=district, status=Assignment.Status.PUBLISHED, max_score__gt=0,
            due_date__in=list(dates),
        ).order_by("due_date", "id").values("id", "title", "due_date", "is_major", "section_id", "section__course_name")
    )


def missing_work(*, assignment_ids, day: dt.date) -> list[tuple[int, int, int | None]]:
    """(assignment id, student id, student's user id) for every active student enrolled in
    the assignment's section on ``day`` (started, not ended) with no submission and no
    exemption for it. One query: an anti-join (NOT EXISTS) on submissions, so only the
    missing pairs come back, not every submission of the work."""
    done = Submission.objects.filter(assignment_id=OuterRef("assignment_id"), student_id=OuterRef("student_id")).filter(
        Q(submitted_at__isnull=False) | Q(is_exempt=True)
    )
    # One filter() call: every condition is on the same enrollment-assignment join row.
    return list(
        SectionEnrollment.objects.filter(
            Q(end_date__isnull=True) | Q(end_date__gte=day),
            section__assignments__id__in=list(assignment_ids), start_date__lte=day, student__is_active=True,
        )
        .annotate(assignment_id=F("section__assignments__id"), done=Exists(done))
        .filter(done=False)
        .order_by("assignment_id", "student_id")
        .values_list("assignment_id", "student_id", "student__user_id")
    )
