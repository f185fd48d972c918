"""The synthetic district generator: deterministic, realistic, and it refuses bad input
without writing anything."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.test.utils import CaptureQueriesContext

from iep.models import IEP, IEPService, Section504Plan, ServiceLog
from notifications.models import NotificationPreference
from skillcore import seed as seed_module
from skillcore.seed import district_digest
from students.models import (
    ABSENT_STATUSES,
    AcademicSession,
    AttendanceRecord,
    CalendarDay,
    DeviceToken,
    District,
    Grade,
    GuardianLink,
    Role,
    School,
    Section,
    StaffProfile,
    Student,
    Submission,
)
from tests import factories as f

User = get_user_model()
AS_OF = "2026-11-20"
REPO = Path(__file__).resolve().parents[2]


def seed(*args: str, **kwargs) -> str:
    out, err = StringIO(), StringIO()
    call_command("seed_district", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue()


def digest_of(students: int, seed_value: int, as_of: str = "2026-10-09") -> str:
    """Seed inside a savepoint that is rolled back, so each run starts from the same empty database."""
    with transaction.atomic():
        seed("--students", str(students), "--seed", str(seed_value), "--as-of", as_of, "--name", "Determinism")
        digest = district_digest(District.objects.get(name="Determinism"))
        transaction.set_rollback(True)
    return digest


def row_total() -> int:
    models = [District, School, CalendarDay, AcademicSession, User, StaffProfile, Student, GuardianLink, Section,
              AttendanceRecord, Submission, Grade, IEP, Section504Plan, NotificationPreference, DeviceToken]
    return sum(m.objects.count() for m in models)


# --- determinism -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_same_seed_gives_the_same_rows_and_another_seed_does_not():
    first = digest_of(60, 5)
    assert District.objects.count() == 0  # rolled back: the second run starts from scratch
    assert digest_of(60, 5) == first
    assert digest_of(60, 6) != first


@pytest.mark.django_db
def test_query_count_does_not_grow_with_students():
    # Set-based: three times the students in the same three schools costs a few more bulk
    # batches (SQLite caps a statement at 999 parameters), far from one statement a student.
    counts = []
    for n in (120, 360):
        with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
            seed("--students", str(n), "--seed", "3", "--as-of", "2026-09-30", "--name", "Queries")
            transaction.set_rollback(True)
        counts.append(len(ctx.captured_queries))
    assert counts[1] - counts[0] < (360 - 120) / 10


# --- realism -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeded_district(django_db_setup, django_db_blocker):
    """One 300-student district for all the realism tests of this module: seeded once inside
    a transaction that is rolled back after the module (each test runs in a savepoint)."""
    with django_db_blocker.unblock(), transaction.atomic():
        output = seed("--students", "300", "--seed", "11", "--timezone", "America/Chicago", "--as-of", AS_OF,
                      "--name", "Realism ISD")
        assert "students.AttendanceRecord" in output and "in " in output
        yield District.objects.get(name="Realism ISD")
        transaction.set_rollback(True)


@pytest.fixture
def district(seeded_district, db):
    return seeded_district


def test_district_shape_follows_the_plan(district):
    assert district.time_zone == "America/Chicago" and district.state == "IL"
    session = district.sessions.get(is_current=True)
    assert (session.start_date, session.end_date, session.name) == (dt.date(2026, 9, 8), dt.date(2027, 6, 17), "2026-2027")
    bands = sorted(School.objects.filter(district=district).values_list("lowest_grade", "highest_grade"))
    assert bands == [(0, 5), (6, 8), (9, 12)]
    assert Student.objects.filter(school__district=district).count() == 300
    # Grades fit the school's band.
    assert not Student.objects.filter(Q(grade_level__lt=F("school__lowest_grade")) | Q(grade_level__gt=F("school__highest_grade"))).exists()


def test_calendar_has_about_180_instructional_days_and_holidays_as_rows(district):
    for school in School.objects.filter(district=district):
        days = CalendarDay.objects.filter(school=school)
        assert 178 <= days.filter(is_instructional=True).count() <= 180
        assert not days.filter(date__week_day__in=[1, 7]).exists()  # weekends have no rows
        notes = set(days.filter(is_instructional=False).values_list("note", flat=True))
        assert {"Thanksgiving break", "Winter break", "Spring break", "Martin Luther King Jr. Day"} <= notes
        assert days.get(date=dt.date(2026, 11, 26)).is_instructional is False


def test_chronic_absence_share_and_statuses_are_realistic(district):
    students = Student.objects.filter(school__district=district).annotate(
        days=Count("attendance_records"),
        absent=Count("attendance_records", filter=Q(attendance_records__status__in=ABSENT_STATUSES)
                     | Q(attendance_records__fraction_present__lt=Decimal("0.5"))),
    )
    eligible = [s for s in students if s.days >= district.min_enrolled_days]
    chronic = [s for s in eligible if s.absent >= Decimal("0.1") * s.days]
    assert len(eligible) > 250
    assert 0.08 <= len(chronic) / len(eligible) <= 0.18
    statuses = Counter(AttendanceRecord.objects.filter(student__school__district=district).values_list("status", flat=True))
    assert set(statuses) == {"present", "absent-excused", "absent-unexcused", "tardy", "oss", "iss"}
    assert statuses["present"] / sum(statuses.values()) > 0.8
    # Some partial days under half present (they count as absent whatever the status).
    assert AttendanceRecord.objects.filter(fraction_present__lt=Decimal("0.5"), status__in=["present", "tardy"]).exists()


def test_attendance_only_on_enrolled_instructional_days_up_to_as_of(district):
    records = AttendanceRecord.objects.filter(student__school__district=district)
    assert records.count() > 300 * 40
    assert not records.filter(Q(date__lt=F("student__enrollment_date")) | Q(date__gt=F("student__exit_date"))).exists()
    assert not records.exclude(
        Exists(CalendarDay.objects.filter(school=OuterRef("student__school"), date=OuterRef("date"), is_instructional=True))
    ).exists()
    assert records.order_by("-date").first().date <= dt.date(2026, 11, 20)
    # Every enrolled instructional day has its record (one per student per day).
    active = Student.objects.filter(school__district=district, exit_date__isnull=True, enrollment_date__lte=dt.date(2026, 9, 8)).first()
    taught = CalendarDay.objects.filter(school=active.school, is_instructional=True, date__lte=dt.date(2026, 11, 20)).count()
    assert active.attendance_records.count() == taught


def test_sections_grades_and_coursework(district):
    secondary = Student.objects.filter(school__district=district, grade_level__gte=6).annotate(n=Count("section_enrollments"))
    assert {s.n for s in secondary} <= {5, 6, 7}
    assert Counter(s.n for s in secondary).most_common(1)[0][0] == 6
    elementary = Student.objects.filter(school__district=district, grade_level__lte=5).annotate(n=Count("section_enrollments"))
    assert {s.n for s in elementary} == {1}
    # 2-4 assignments a section a week (fewer only in short weeks), published up to a week ahead.
    section = Section.objects.filter(school__district=district, period="P1").first()
    per_week = Counter(a.due_date.isocalendar()[1] for a in section.assignments.all())
    assert max(per_week.values()) <= 4 and sorted(per_week.values())[len(per_week) // 2] >= 2
    assert not section.assignments.filter(status="published", due_date__gt=dt.date(2026, 11, 27)).exists()
    # Grades are posted after the work was due and never after as_of.
    grades = Grade.objects.filter(student__school__district=district)
    assert grades.count() > 1000
    assert not grades.filter(posted_at__date__lte=F("assignment__due_date")).exists()
    assert not grades.filter(posted_at__gt=dt.datetime(2026, 11, 21, 6, tzinfo=dt.UTC)).exists()
    assert not grades.filter(score__gt=F("assignment__max_score")).exists()
    assert Submission.objects.filter(is_exempt=True, submitted_at__isnull=True).exists()


def test_special_education_people_and_families(district):
    students = Student.objects.filter(school__district=district)
    ieps = IEP.objects.filter(student__school__district=district, status="active")
    assert 0.10 <= ieps.count() / 300 <= 0.20
    assert ieps.filter(next_review_due__lt=dt.date(2026, 11, 20)).count() < ieps.count() / 4
    assert len({i.next_review_due.month for i in ieps}) >= 10  # reviews fall due across the year
    assert all(i.next_review_due == i.last_annual_review + dt.timedelta(days=365) for i in ieps)
    assert IEPService.objects.filter(iep__in=ieps).exists() and ServiceLog.objects.filter(student__in=students).exists()
    assert all(i.team.filter(role="case-manager").exists() for i in ieps[:10])
    plan = Section504Plan.objects.filter(student__in=students).first()
    assert plan and plan.accommodations.exists() and plan.accommodations.first().implementers.exists()
    # Staff are users in their role groups with a profile; every student has a counselor.
    for role in (Role.PRINCIPAL, Role.COUNSELOR, Role.TEACHER, Role.CASE_MANAGER, Role.SPED_COORDINATOR, Role.DISTRICT_ADMIN):
        staff = User.objects.filter(groups__name=role, staff_profile__district=district)
        assert staff.exists(), role
    assert User.objects.filter(groups__name=Role.PRINCIPAL, staff_profile__district=district).count() == 3
    assert not students.filter(counselor__isnull=True).exists()
    assert not students.exclude(counselor__groups__name=Role.COUNSELOR).exists()
    # Families: 1-2 guardians each, both languages, a few revoked, preferences of every frequency.
    per_student = Counter(students.annotate(n=Count("guardian_links")).values_list("n", flat=True))
    assert set(per_student) <= {1, 2} and per_student[2] > per_student[1]
    links = GuardianLink.objects.filter(student__in=students)
    assert set(links.values_list("preferred_language", flat=True)) == {"en", "es"}
    assert links.filter(access_revoked=True).exists()
    assert links.filter(is_dependent_claim=True).exists()
    frequencies = set(NotificationPreference.objects.filter(user__guardian_links__student__in=students).values_list("frequency", flat=True))
    assert frequencies == {"immediately", "daily", "weekly", "never"}
    assert DeviceToken.objects.filter(user__guardian_links__student__in=students).exists()


def test_birth_dates_fit_the_grade(district):
    on = dt.date(2026, 9, 1)
    for s in Student.objects.filter(school__district=district):
        assert s.age_on(on) in (s.grade_level + 5, s.grade_level + 6), (s.grade_level, s.birth_date)
    seniors = Student.objects.filter(school__district=district, grade_level=12)
    assert any(s.age_on(dt.date(2026, 11, 20)) >= 18 for s in seniors)


@pytest.mark.django_db
def test_as_of_defaults_to_today_in_the_district_zone():
    # 03:00 UTC on 15 October is still the 14th in Los Angeles.
    with time_machine.travel(dt.datetime(2026, 10, 15, 3, 0, tzinfo=dt.UTC), tick=False):
        seed("--students", "30", "--seed", "2", "--timezone", "America/Los_Angeles", "--name", "Today")
    last = AttendanceRecord.objects.filter(student__school__district__name="Today").order_by("-date").first()
    assert last.date == dt.date(2026, 10, 14)


# --- bad input: exit 2, one line, nothing written ---------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (["--students", "0"], "--students must be from 1"),
    (["--students", "-5"], "--students must be from 1"),
    (["--students", "many"], "--students must be a whole number"),
    (["--students", "10", "--timezone", "Mars/Olympus_Mons"], "is not an IANA time zone"),
    (["--students", "10", "--as-of", "2026-13-01"], "--as-of must be a date as YYYY-MM-DD"),
    (["--students", "10", "--as-of", "yesterday"], "--as-of must be a date as YYYY-MM-DD"),
    (["--students", "10", "--seed", "x"], "--seed must be a whole number"),
])
def test_bad_input_exits_2_and_writes_nothing(args, message):
    before = row_total()
    with pytest.raises(CommandError) as error:
        seed(*args)
    assert error.value.returncode == 2
    assert message in str(error.value) and "\n" not in str(error.value)
    assert row_total() == before


@pytest.mark.django_db
def test_an_existing_district_name_is_refused():
    f.DistrictFactory(name="Taken Unified")
    before = row_total()
    with pytest.raises(CommandError, match="already exists") as error:
        seed("--students", "10", "--name", "Taken Unified", "--as-of", AS_OF)
    assert error.value.returncode == 2
    assert row_total() == before


@pytest.mark.django_db
def test_a_failure_midway_leaves_nothing(monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(seed_module._Seeder, "seed_incidents", explode)
    before = row_total()
    with pytest.raises(RuntimeError):
        seed("--students", "20", "--as-of", AS_OF, "--name", "Half")
    assert row_total() == before
    assert not District.objects.filter(name="Half").exists()


def test_from_the_shell_bad_input_is_one_line_and_status_2():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "skillcore.settings_test"}
    result = subprocess.run([sys.executable, "manage.py", "seed_district", "--students", "-3"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["CommandError: --students must be from 1 to 1,000,000, not -3."]
