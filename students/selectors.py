"""Set-based reads over the student record."""
from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass

from students.models import AcademicSession, CalendarDay, District


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
