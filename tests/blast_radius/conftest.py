"""The blast-radius guard's fixtures: a district whose attendance import marked every
student absent, a run history to compare with, and the localhost SMTP server."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from scheduling.models import BlastRadiusLimit, JobRun
from students.models import AttendanceRecord, CalendarDay
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot
from tests.notifications.conftest import smtp_server  # noqa: F401  (the localhost SMTP server fixture)

SLUG = "attendance-interventions"
START = dt.date(2026, 9, 1)  # a Tuesday
STUDENTS = 30


def school_days(school, count):
    days, day = [], START
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    CalendarDay.objects.bulk_create([CalendarDay(school=school, date=d, is_instructional=True) for d in days])
    return days


def seed_history(district, *, job=SLUG, staff=2, families=0, runs=3):
    """``runs`` successful runs of ``job`` before the test's slot, each having sent
    ``staff`` and ``families`` messages: the baseline the guard compares with."""
    base = dt.datetime(2026, 9, 1, 22, 30, tzinfo=dt.UTC)
    JobRun.objects.bulk_create([
        JobRun(job=job, district=district, trigger=JobRun.Trigger.SCHEDULE, slot=base + dt.timedelta(days=i),
               status=JobRun.Status.SUCCEEDED, started_at=base + dt.timedelta(days=i),
               finished_at=base + dt.timedelta(days=i, seconds=30), outbound={"families": families, "staff": staff})
        for i in range(runs)
    ])


@pytest.fixture
def limits(district):
    """The district's limit for attendance-interventions with a floor of 10 messages (the
    default 200 would need hundreds of students per test)."""
    return BlastRadiusLimit.objects.create(district=district, job=SLUG, multiplier=5, floor=10, cap=10_000)


@pytest.fixture
def all_absent(district, school, counselor):
    """20 school days; on the last three every one of the school's 30 students is absent
    (the bad import). Each would get an intervention and its counselor an email."""
    f.AcademicSessionFactory(district=district, start_date=START, end_date=dt.date(2027, 6, 18))
    days = school_days(school, 20)
    students = [f.StudentFactory(school=school, counselor=counselor, enrollment_date=START) for _ in range(STUDENTS)]
    bad = set(days[-3:])
    AttendanceRecord.objects.bulk_create([
        AttendanceRecord(student=s, date=d, status="absent-unexcused" if d in bad else "present",
                         fraction_present=Decimal("0") if d in bad else Decimal("1"))
        for s in students for d in days
    ])
    return {"days": days, "students": students}


def run_attendance(district, day: dt.date, **kw) -> JobRun:
    """The 18:30 slot of a local day, through the real runner."""
    slot = local_slot(district, day.year, day.month, day.day, 18, 30)
    with time_machine.travel(slot + dt.timedelta(minutes=2), tick=False):
        return run_slot(SLUG, district, slot, **kw)
