"""School calendars beside the happy path: a district with several schools whose calendars
disagree (the reason, a day one school teaches, one school's calendar missing), a district
whose local date is not UTC's, ``jobs next`` across the DST changes, the skipped metric when
a slot is claimed twice, and another district's calendar that must not matter.

Slots are decided through ``services.claim_slot`` (what the fire task calls at the slot's
time); the scheduler loop itself is covered by test_school_calendar.py."""
from __future__ import annotations

import datetime as dt
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from scheduling import calendar_policy, registry, services
from scheduling.models import AlertDelivery, CalendarSkipCounter, Incident, JobRun, JobSchedule
from students.models import CalendarDay
from tests import factories as f

pytestmark = pytest.mark.django_db

JOB = "attendance-interventions"  # school days, 30 18 * * *
NY = ZoneInfo("America/New_York")


def weekdays(first: dt.date, last: dt.date):
    day = first
    while day <= last:
        if day.weekday() < 5:
            yield day
        day += dt.timedelta(days=1)


def calendar(school, first: dt.date, last: dt.date, closures: dict[dt.date, str] | None = None):
    """Weekday rows from ``first`` to ``last``: school days, but ``closures`` (date -> note)."""
    closures = closures or {}
    CalendarDay.objects.bulk_create([
        CalendarDay(school=school, date=d, is_instructional=d not in closures, note=closures.get(d, ""))
        for d in weekdays(first, last)
    ])


def district_with(n_schools: int, *, zone: str = "America/New_York", name: str = "Hudson Valley"):
    district = f.DistrictFactory(name=name, time_zone=zone)
    f.AcademicSessionFactory(district=district)
    return district, [f.SchoolFactory(district=district) for _ in range(n_schools)]


def claim(district, local: dt.datetime, *, late: dt.timedelta = dt.timedelta(seconds=5)) -> JobRun:
    """Fire the 18:30 slot of ``local``'s day at its time and return its run row."""
    slot = local.astimezone(dt.UTC)
    with time_machine.travel(slot + late, tick=False):
        services.sync_schedules()
        services.claim_slot(job_slug=JOB, district_id=district.pk, slot=slot)
    return JobRun.objects.get(job=JOB, district=district, slot=slot)


@pytest.fixture
def attendance_only(monkeypatch):
    job = registry.get(JOB)
    monkeypatch.setattr(registry, "all_jobs", lambda: [job])
    return job


def test_the_most_common_closure_note_of_several_schools_is_the_reason(attendance_only):
    district, (a, b, c) = district_with(3)
    day = dt.date(2026, 12, 9)  # a Wednesday
    for school, note in ((a, "Snow day"), (b, "Snow day"), (c, "Professional development")):
        calendar(school, dt.date(2026, 12, 7), dt.date(2026, 12, 11), {day: note})

    run = claim(district, dt.datetime(2026, 12, 9, 18, 30, tzinfo=NY))

    assert run.status == "skipped" and run.note == "skipped: Snow day (school calendar; the job runs on school days)"
    assert CalendarSkipCounter.objects.get(job=JOB, reason="Snow day").skipped == 1
    assert not CalendarSkipCounter.objects.filter(reason="Professional development").exists()


def test_a_day_only_one_school_is_in_session_runs_for_that_school(attendance_only):
    district, (a, b) = district_with(2)
    day = dt.date(2026, 12, 9)
    calendar(a, dt.date(2026, 12, 7), dt.date(2026, 12, 11), {day: "Snow day"})
    calendar(b, dt.date(2026, 12, 7), dt.date(2026, 12, 11))

    run = claim(district, dt.datetime(2026, 12, 9, 18, 30, tzinfo=NY))

    assert run.status == "queued" and not CalendarSkipCounter.objects.exists()
    assert calendar_policy.calendar_skips(attendance_only, district_id=district.pk, zone_name=district.time_zone,
                                          slots=[run.slot]) == {}


def test_a_snow_day_at_one_school_then_the_other_skips_only_when_both_are_closed(attendance_only):
    district, (a, b) = district_with(2)
    calendar(a, dt.date(2026, 12, 7), dt.date(2026, 12, 11))
    calendar(b, dt.date(2026, 12, 7), dt.date(2026, 12, 11))
    CalendarDay.objects.filter(school=a, date=dt.date(2026, 12, 9)).update(is_instructional=False, note="Snow day")
    evening = dt.datetime(2026, 12, 9, 18, 30, tzinfo=NY)
    assert calendar_policy.calendar_skips(attendance_only, district_id=district.pk, zone_name="America/New_York",
                                          slots=[evening]) == {}
    # The second school closes at noon: the evening slot is skipped, with no resync.
    CalendarDay.objects.filter(school=b, date=dt.date(2026, 12, 9)).update(is_instructional=False, note="Snow day")

    assert claim(district, evening).status == "skipped"


def test_the_district_local_date_decides_not_utcs(attendance_only):
    """18:30 on a Friday in Los Angeles is 02:30 on Saturday in UTC: a school day. 18:30 on
    Sunday is Monday in UTC: a weekend."""
    district, (a,) = district_with(1, zone="America/Los_Angeles")
    calendar(a, dt.date(2026, 12, 7), dt.date(2026, 12, 18))
    la = ZoneInfo("America/Los_Angeles")

    friday = claim(district, dt.datetime(2026, 12, 11, 18, 30, tzinfo=la))
    sunday = claim(district, dt.datetime(2026, 12, 13, 18, 30, tzinfo=la))

    assert friday.slot.weekday() == 5 and friday.status == "queued"
    assert sunday.slot.weekday() == 0 and sunday.status == "skipped" and sunday.note.startswith("skipped: Weekend")


@pytest.mark.parametrize(("after", "expected"), [
    # Spring forward (Sunday 14 March 2027): the offset changes, the weekend is still skipped.
    ("2027-03-12T12:00", [
        "2027-03-12T18:30:00-05:00",
        "2027-03-13T18:30:00-05:00 — skipped: Weekend",
        "2027-03-14T18:30:00-04:00 — skipped: Weekend",
        "2027-03-15T18:30:00-04:00",
        "2027-03-16T18:30:00-04:00 — skipped: Snow day",
    ]),
    # Fall back (Sunday 1 November 2026).
    ("2026-10-30T12:00", [
        "2026-10-30T18:30:00-04:00",
        "2026-10-31T18:30:00-04:00 — skipped: Weekend",
        "2026-11-01T18:30:00-05:00 — skipped: Weekend",
        "2026-11-02T18:30:00-05:00",
        "2026-11-03T18:30:00-05:00 — skipped: Election Day",
    ]),
])
def test_jobs_next_marks_the_skips_across_a_dst_change(attendance_only, after, expected):
    district, (a,) = district_with(1)
    calendar(a, dt.date(2026, 9, 1), dt.date(2027, 6, 18),
             {dt.date(2027, 3, 16): "Snow day", dt.date(2026, 11, 3): "Election Day"})
    out = StringIO()
    call_command("jobs", "next", JOB, "--district", str(district.pk), "--after", after, "--count", "5", stdout=out)
    assert out.getvalue().splitlines() == expected


def test_jobs_next_with_a_late_evening_cron_reads_the_local_date(attendance_only):
    """23:30 in New York is the next day in UTC: Friday's slot runs, Sunday's is skipped."""
    district, (a,) = district_with(1)
    calendar(a, dt.date(2026, 12, 7), dt.date(2026, 12, 18))
    out = StringIO()
    call_command("jobs", "next", JOB, "--district", str(district.pk), "--after", "2026-12-11T12:00",
                 "--cron", "30 23 * * *", "--count", "3", stdout=out)
    assert out.getvalue().splitlines() == [
        "2026-12-11T23:30:00-05:00",
        "2026-12-12T23:30:00-05:00 — skipped: Weekend",
        "2026-12-13T23:30:00-05:00 — skipped: Weekend",
    ]


def test_a_slot_claimed_twice_is_recorded_and_counted_once(attendance_only):
    """Two fire tasks for the same Christmas slot (a redelivery, two clusters): one row, one count."""
    district, (a,) = district_with(1)
    calendar(a, dt.date(2026, 12, 14), dt.date(2027, 1, 8), {
        d: "Winter break" for d in weekdays(dt.date(2026, 12, 21), dt.date(2027, 1, 1))})
    christmas = dt.datetime(2026, 12, 25, 18, 30, tzinfo=NY)
    claim(district, christmas)
    run = claim(district, christmas, late=dt.timedelta(seconds=40))

    assert run.status == "skipped" and JobRun.objects.filter(job=JOB).count() == 1
    assert CalendarSkipCounter.objects.get(job=JOB, reason="Winter break").skipped == 1
    assert not Incident.objects.exists() and not AlertDelivery.objects.exists()


def test_another_districts_calendar_does_not_matter(attendance_only):
    district, (a,) = district_with(1)
    other, (b,) = district_with(1, name="Other")
    calendar(a, dt.date(2026, 12, 7), dt.date(2026, 12, 11))
    calendar(b, dt.date(2026, 12, 7), dt.date(2026, 12, 11), {dt.date(2026, 12, 9): "Snow day"})

    assert claim(district, dt.datetime(2026, 12, 9, 18, 30, tzinfo=NY)).status == "queued"
    assert claim(other, dt.datetime(2026, 12, 9, 18, 30, tzinfo=NY)).status == "skipped"


def test_one_school_without_next_years_calendar_is_named_on_the_dashboard(attendance_only, client, system_admin):
    """Several schools, one of them without next year's calendar: on its dates the district
    runs every day (that school acts), so the dashboard says its calendar is missing."""
    district, (a, b) = district_with(2)
    calendar(a, dt.date(2026, 12, 1), dt.date(2027, 6, 18))
    calendar(b, dt.date(2026, 12, 1), dt.date(2026, 12, 18))  # b's calendar stops at the break
    b.name = "Lakeside Middle"
    b.save()

    with time_machine.travel(dt.datetime(2026, 12, 14, 12, 0, tzinfo=NY), tick=False):
        services.sync_schedules()
        client.force_login(system_admin)
        page = client.get("/admin/scheduled-jobs/").content.decode()
        found = calendar_policy.missing_calendars(now=dt.datetime(2026, 12, 14, 12, 0, tzinfo=NY))

    # Saturday 19 December 2026: b's calendar does not cover it, so the district acts.
    assert calendar_policy.calendar_skips(
        attendance_only, district_id=district.pk, zone_name="America/New_York",
        slots=[dt.datetime(2026, 12, 19, 18, 30, tzinfo=NY)]) == {}
    assert [(m.district_id, m.first_date, m.schools, m.every_school) for m in found] == [
        (district.pk, dt.date(2026, 12, 19), ["Lakeside Middle"], False)]
    assert "School calendar missing" in page
    assert "Hudson Valley: no school calendar from Sat 2026-12-19 (Lakeside Middle)" in page


def test_a_school_with_no_calendar_at_all_is_named_on_the_dashboard(attendance_only):
    district, (a, b) = district_with(2)
    calendar(a, dt.date(2026, 12, 1), dt.date(2027, 6, 18))
    b.name = "Northside Annex"
    b.save()
    with time_machine.travel(dt.datetime(2026, 12, 14, 12, 0, tzinfo=NY), tick=False):
        services.sync_schedules()
    found = calendar_policy.missing_calendars(now=dt.datetime(2026, 12, 14, 12, 0, tzinfo=NY))
    assert [(m.first_date, m.schools) for m in found] == [(dt.date(2026, 12, 14), ["Northside Annex"])]
    # Saturday 19 December: a's calendar says no school (no row), b has none and acts.
    assert calendar_policy.calendar_skips(
        attendance_only, district_id=district.pk, zone_name="America/New_York",
        slots=[dt.datetime(2026, 12, 19, 18, 30, tzinfo=NY)]) == {}


def test_a_saturday_school_day_runs_and_a_paused_slot_is_not_a_calendar_skip(attendance_only):
    """A weekend row marked instructional (Saturday school) is a school day; a paused
    schedule's slot on a closed day is skipped as paused, not counted as the calendar's."""
    district, (a,) = district_with(1)
    calendar(a, dt.date(2026, 12, 7), dt.date(2026, 12, 18), {dt.date(2026, 12, 16): "Snow day"})
    CalendarDay.objects.create(school=a, date=dt.date(2026, 12, 12), is_instructional=True, note="Saturday school")

    assert claim(district, dt.datetime(2026, 12, 12, 18, 30, tzinfo=NY)).status == "queued"
    JobSchedule.objects.filter(job=JOB, district=district).update(paused=True, pause_note="maintenance")
    paused = claim(district, dt.datetime(2026, 12, 16, 18, 30, tzinfo=NY))
    assert paused.status == "skipped" and paused.note == "paused: maintenance"
    assert not CalendarSkipCounter.objects.exists()
