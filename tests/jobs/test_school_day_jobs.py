"""The school-days jobs act only for the schools in session on the slot's local date (or whose
calendar does not cover it): one school closed for a professional-development day while the
other teaches, through the real runner."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from interventions.models import Intervention
from notifications.models import Notification
from scheduling.models import JobRun
from students.calendar import schools_in_session
from students.models import AttendanceRecord, CalendarDay, Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

pytestmark = pytest.mark.django_db
START = dt.date(2026, 9, 1)  # a Tuesday
PD_DAY = "Professional development (no students)"


def school_days(count: int) -> list[dt.date]:
    days, day = [], START
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def calendars(schools, days, *, closed: dict) -> None:
    """Every school teaches on ``days`` except ``closed[school]`` (a date closed with PD_DAY)."""
    CalendarDay.objects.bulk_create([
        CalendarDay(school=s, date=d, is_instructional=d != closed.get(s), note=PD_DAY if d == closed.get(s) else "")
        for s in schools for d in days
    ])


def run_at(slug: str, district, day: dt.date, hour: int, minute: int = 0) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, hour, minute)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(slug, district, slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def test_missing_assignment_alerts_remind_only_students_of_schools_in_session(district, school, other_school):
    days = school_days(10)
    today = days[-1]
    calendars([school, other_school], days, closed={school: today})
    assert schools_in_session(district_id=district.id, day=today) == {other_school.id}
    session = f.AcademicSessionFactory(district=district, start_date=START, end_date=dt.date(2027, 6, 18))
    for s, name in ((school, "leo"), (other_school, "mia")):
        section = f.SectionFactory(school=s, session=session, course_name="Biology")
        user = f.UserFactory(username=name, roles=[Role.STUDENT])
        f.DeviceTokenFactory(user=user)
        student = f.StudentFactory(school=s, user=user, enrollment_date=START)
        f.SectionEnrollmentFactory(section=section, student=student, start_date=START)
        f.AssignmentFactory(section=section, due_date=today)

    run = run_at("missing-assignment-alerts", district, today, 7)

    assert run.result["assignments_checked"] == 1 and run.result["students_notified"] == 1
    assert set(Notification.objects.values_list("recipient__username", flat=True)) == {"mia"}


def test_attendance_interventions_open_only_for_students_of_schools_in_session(district, school, other_school, counselor):
    f.AcademicSessionFactory(district=district, start_date=START, end_date=dt.date(2027, 6, 18))
    days = school_days(20)
    # Closed at the first school on the slot's date; both taught every earlier day.
    calendars([school, other_school], days, closed={school: days[-1]})
    students = [f.StudentFactory(school=s, counselor=counselor, enrollment_date=START) for s in (school, other_school)]
    absent = set(days[10:13])  # 3 in a row: at risk at both schools
    AttendanceRecord.objects.bulk_create([
        AttendanceRecord(student=s, date=d, status="absent-unexcused" if d in absent else "present",
                         fraction_present=Decimal("0") if d in absent else Decimal("1"))
        for s in students for d in days[:-1]
    ])

    run = run_at("attendance-interventions", district, days[-1], 18, 30)

    assert (run.result["at_risk"], run.result["created"]) == (1, 1)
    assert list(Intervention.objects.values_list("student__school", flat=True)) == [other_school.id]
