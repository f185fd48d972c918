"""The school calendar's rule (students/calendar.py): rows list school days and closures, a
date without a row inside a school's covered span is no school day, a date outside every
span runs as before, a district acts when any school does."""
from __future__ import annotations

import datetime as dt

import pytest

from students.calendar import NO_SCHOOL_REASON, WEEKEND_REASON, Uncovered, district_calendar, first_uncovered_dates
from students.models import CalendarDay
from tests import factories as f

pytestmark = pytest.mark.django_db
MON = dt.date(2026, 12, 14)


def day(n: int) -> dt.date:
    return MON + dt.timedelta(days=n)


def rows(school, spec: dict[int, str | None]) -> None:
    """{day offset: None (a school day) or the closure's note ("" for a closure without one)}."""
    CalendarDay.objects.bulk_create([
        CalendarDay(school=school, date=day(n), is_instructional=note is None, note=note or "")
        for n, note in spec.items()
    ])


@pytest.fixture
def two_schools(district):
    return f.SchoolFactory(district=district), f.SchoolFactory(district=district)


def test_a_closure_gives_its_note_and_a_weekend_without_rows_is_no_school_day(district, two_schools):
    a, b = two_schools
    for s in (a, b):
        rows(s, {0: None, 1: "Snow day", 4: None, 7: "Winter break", 8: "", 9: None})
    cal = district_calendar(district_id=district.id, first=day(0), last=day(9))
    assert cal.closed_reason(day(0)) is None
    assert cal.closed_reason(day(1)) == "Snow day"
    assert cal.closed_reason(day(5)) == WEEKEND_REASON  # Saturday, no row, inside the span
    assert cal.closed_reason(day(2)) == NO_SCHOOL_REASON  # a weekday without a row
    assert cal.closed_reason(day(7)) == "Winter break"
    assert cal.closed_reason(day(8)) == NO_SCHOOL_REASON  # a closure without a note


def test_the_district_acts_when_any_school_is_in_session_and_the_most_common_note_wins(district, two_schools):
    a, b = two_schools
    c = f.SchoolFactory(district=district)
    rows(a, {0: None, 1: None, 2: "Snow day", 9: None})
    rows(b, {0: None, 1: "Professional development", 2: "Winter break", 9: None})
    rows(c, {0: None, 1: None, 2: "Winter break", 9: None})
    cal = district_calendar(district_id=district.id, first=day(0), last=day(9))
    assert cal.acting_schools(day(1)) == {a.id, c.id} and cal.closed_reason(day(1)) is None
    assert cal.acting_schools(day(2)) == set()
    assert cal.closed_reason(day(2)) == "Winter break"


def test_a_date_outside_every_calendar_runs_and_is_reported_uncovered(district, two_schools):
    a, b = two_schools
    rows(a, {0: None, 4: None})
    rows(b, {0: None, 2: None})  # b's calendar ends on day 2
    cal = district_calendar(district_id=district.id, first=day(0), last=day(8))
    assert cal.acting_schools(day(3)) == {b.id}  # a: no row inside its span; b: not covered
    assert cal.closed_reason(day(3)) is None
    assert cal.uncovered_dates() == [day(5), day(6), day(7), day(8)]
    # Reported from the first date one school is not covered (it acts every day from then on).
    assert first_uncovered_dates(today_by_district={district.id: day(0)}, days=21) == {
        district.id: Uncovered(day(3), [b.name], every_school=False)}
    assert first_uncovered_dates(today_by_district={district.id: day(5)}, days=21) == {
        district.id: Uncovered(day(5), sorted([a.name, b.name]), every_school=True)}
    assert first_uncovered_dates(today_by_district={district.id: day(0)}, days=3) == {}


def test_a_school_without_any_calendar_row_always_acts(district, two_schools):
    a, b = two_schools
    rows(a, {0: "Winter break", 1: "Winter break"})
    cal = district_calendar(district_id=district.id, first=day(0), last=day(1))
    assert cal.acting_schools(day(0)) == {b.id} and cal.closed_reason(day(0)) is None
    assert first_uncovered_dates(today_by_district={district.id: day(0)}, days=21) == {
        district.id: Uncovered(day(0), [b.name], every_school=False)}


def test_a_district_without_schools_acts_and_is_never_reported(district):
    cal = district_calendar(district_id=district.id, first=day(0), last=day(0))
    assert cal.closed_reason(day(0)) is None and cal.uncovered_dates() == []
    assert first_uncovered_dates(today_by_district={district.id: day(0)}, days=21) == {}


def test_reading_a_districts_calendar_is_two_queries_whatever_its_size(district, two_schools, django_assert_num_queries):
    for s in two_schools:
        rows(s, {n: None for n in range(0, 60)})
    with django_assert_num_queries(2):
        district_calendar(district_id=district.id, first=day(0), last=day(59)).closed_reason(day(3))


def test_asking_about_a_date_that_was_not_read_is_an_error(district, two_schools):
    cal = district_calendar(district_id=district.id, first=day(0), last=day(1))
    with pytest.raises(ValueError, match="outside the dates read"):
        cal.acting_schools(day(2))
