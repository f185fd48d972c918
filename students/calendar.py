"""Which schools of a district are in session on a date: the school calendar's rule, read by
the engine (a "school days" job's slot runs or is skipped) and by the jobs that act per school.

The rule (docs/scheduling.md, "School calendars"):
1. A school's calendar covers the dates from its first CalendarDay row to its last. Inside
   that span the rows list the school days (``is_instructional``) and the closures (a
   holiday, a break, a snow day, with their note); a date with no row is no school day
   either (the seeded calendars have no weekend rows, and the summer between two entered
   years has none).
2. A date outside the span (next year's calendar not entered yet) is not covered: the
   school behaves as if there were no calendar at all, so it acts (runs). The dashboard
   warns about such dates in the coming weeks, naming the schools
   (``first_uncovered_dates``): one school without next year's calendar makes its
   district act every day.
3. A district acts on a date when at least one of its schools is in session or not
   covered; a district without schools acts (nothing to decide from).

Read at run time, never cached: a snow day entered at 07:00 applies to the 18:30 slot, and
a day turned back to instructional runs again, without a resync.

Two queries for any number of schools and dates.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from django.db.models import Max, Min

from students.models import CalendarDay, School

WEEKEND_REASON = "Weekend"
NO_SCHOOL_REASON = "Not a school day"


@dataclass(frozen=True)
class Span:
    first: dt.date
    last: dt.date

    def covers(self, day: dt.date) -> bool:
        return self.first <= day <= self.last


@dataclass
class DistrictCalendar:
    """The calendars of one district's schools, read for the dates between ``first`` and
    ``last``. Asking about a date outside that range raises (it was not read)."""

    first: dt.date
    last: dt.date
    spans: dict[int, Span | None]  # school id -> its covered span (None: no rows at all)
    rows: dict[tuple[int, dt.date], tuple[bool, str]] = field(default_factory=dict)

    def _check(self, day: dt.date) -> None:
        if not (self.first <= day <= self.last):
            raise ValueError(f"{day} is outside the dates read ({self.first} to {self.last})")

    def covered(self, school_id: int, day: dt.date) -> bool:
        span = self.spans.get(school_id)
        return span is not None and span.covers(day)

    def in_session(self, school_id: int, day: dt.date) -> bool:
        """A covered school day: a row that is instructional."""
        row = self.rows.get((school_id, day))
        return row is not None and row[0]

    def acting_schools(self, day: dt.date) -> set[int]:
        """The schools that act on ``day``: in session, or whose calendar does not cover it."""
        self._check(day)
        return {sid for sid in self.spans if not self.covered(sid, day) or self.in_session(sid, day)}

    def closed_reason(self, day: dt.date) -> str | None:
        """None when the district acts on ``day`` (rule 3); otherwise why not: the most
        common note of the schools' rows that day ("Winter break", "Snow day"), else
        "Weekend" or "Not a school day" for a date without rows."""
        if not self.spans or self.acting_schools(day):
            return None
        notes = Counter(note for (sid, d), (_, note) in self.rows.items() if d == day and note)
        if notes:
            # Most common first; a tie goes to the alphabetically first note (stable output).
            return min(notes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return WEEKEND_REASON if day.weekday() >= 5 else NO_SCHOOL_REASON

    def uncovered_dates(self) -> list[dt.date]:
        """The dates read on which no school's calendar says anything (rule 2): the district
        runs as if it had no calendar. Schools without any calendar row count as uncovered."""
        days = [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]
        return [d for d in days if self.spans and not any(self.covered(sid, d) for sid in self.spans)]


def district_calendar(*, district_id: int, first: dt.date, last: dt.date) -> DistrictCalendar:
    """The district's school calendars for the dates ``first`` to ``last`` (two queries:
    each school's covered span, then the rows of those dates)."""
    spans = {
        sid: Span(lo, hi) if lo is not None else None
        for sid, lo, hi in School.objects.filter(district_id=district_id).order_by()
        .values("id").annotate(lo=Min("calendar_days__date"), hi=Max("calendar_days__date"))
        .values_list("id", "lo", "hi")
    }
    calendar = DistrictCalendar(first=first, last=last, spans=spans)
    if spans:
        for sid, day, instructional, note in CalendarDay.objects.filter(
            school__district_id=district_id, date__gte=first, date__lte=last,
        ).order_by().values_list("school_id", "date", "is_instructional", "note"):
            calendar.rows[(sid, day)] = (instructional, note)
    return calendar


def schools_in_session(*, district_id: int, day: dt.date) -> set[int]:
    """The district's schools that act on ``day`` (in session, or not covered): what a
    per-school job works on for a slot of that local date."""
    return district_calendar(district_id=district_id, first=day, last=day).acting_schools(day)


@dataclass(frozen=True)
class Uncovered:
    first_date: dt.date  # the first date of the horizon some school's calendar does not cover
    schools: list[str]  # the schools not covered on that date, by name
    every_school: bool  # none of the district's schools is covered that date


def first_uncovered_dates(*, today_by_district: dict[int, dt.date], days: int) -> dict[int, Uncovered]:
    """For each district given (id -> its local today), the first date in the next ``days``
    days that one of its schools' calendars does not cover, with those schools (rule 2: such
    a school acts every day, so its district's "school days" jobs run every day their cron
    names, weekends and breaks included, even when the other schools' calendars say
    closed). A school without any calendar row is never covered. Districts covered all
    along, and districts without schools, are left out. One query whatever the number of
    districts."""
    spans: dict[int, list[tuple[str, Span | None]]] = {}
    for district_id, name, lo, hi in (
        School.objects.filter(district_id__in=list(today_by_district)).order_by("name", "id")
        .values("id", "district_id", "name").annotate(lo=Min("calendar_days__date"), hi=Max("calendar_days__date"))
        .values_list("district_id", "name", "lo", "hi")
    ):
        spans.setdefault(district_id, []).append((name, Span(lo, hi) if lo is not None else None))
    out = {}
    for district_id, schools in spans.items():
        today = today_by_district[district_id]
        for offset in range(days):
            day = today + dt.timedelta(days=offset)
            missing = [name for name, span in schools if span is None or not span.covers(day)]
            if missing:
                out[district_id] = Uncovered(day, missing, len(missing) == len(schools))
                break
    return out
