"""The student page as staff meet it: the overview at the top (as far as each role may see),
people by name, grades the school teaches, and every read of it on the FERPA trail."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from interventions.models import Intervention
from skillcore.models import AccessLog
from students.models import AttendanceStatus, GuardianLink, Role
from tests import factories as f

pytestmark = pytest.mark.django_db

# Friday 16 October 2026, 15:00 in New York (EDT): the page's "today".
NOW = dt.datetime(2026, 10, 16, 19, 0, tzinfo=dt.UTC)


COLUMBUS_DAY = dt.date(2026, 10, 12)  # a Monday without school


def school_days(first: dt.date, count: int) -> list[dt.date]:
    days, day = [], first
    while len(days) < count:
        if day.weekday() < 5 and day != COLUMBUS_DAY:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


DAYS = school_days(dt.date(2026, 9, 1), 33)  # the 33rd is Friday 16 October


@pytest.fixture
def record(district, school):
    """A student with a session of school days, absences of every kind, interventions, an IEP,
    grades in two teachers' sections and a guardian with a generated username."""
    assert DAYS[-1] == NOW.date()
    session = f.AcademicSessionFactory(district=district, name="2026-2027")
    for day in DAYS:
        f.CalendarDayFactory(school=school, date=day)
    f.CalendarDayFactory(school=school, date=COLUMBUS_DAY, is_instructional=False, note="Columbus Day")
    emma = f.StaffFactory(username="demo-counselor", first_name="Emma", last_name="Allen", roles=[Role.COUNSELOR],
                          schools=[school])
    student = f.StudentFactory(school=school, local_id="100428", first_name="Ana", last_name="Reyes", grade_level=10,
                               enrollment_date=dt.date(2026, 8, 31), birth_date=dt.date(2011, 3, 1), counselor=emma)
    absent = {
        DAYS[2]: (AttendanceStatus.ABSENT_EXCUSED, "1.00"),
        DAYS[5]: (AttendanceStatus.PRESENT, "0.50"),  # at most half the day: absent
        DAYS[8]: (AttendanceStatus.TARDY, "0.90"),  # tardy: present
        DAYS[30]: (AttendanceStatus.ABSENT_UNEXCUSED, "1.00"),
        DAYS[31]: (AttendanceStatus.ABSENT_UNEXCUSED, "1.00"),
        DAYS[32]: (AttendanceStatus.OUT_OF_SCHOOL_SUSPENSION, "0.00"),
        COLUMBUS_DAY: (AttendanceStatus.ABSENT_UNEXCUSED, "0.00"),  # no school that day: not counted
    }
    for day, (status, fraction) in absent.items():
        f.AttendanceRecordFactory(student=student, date=day, status=status, fraction_present=Decimal(fraction))
    f.InterventionFactory(student=student, type=Intervention.Type.ATTENDANCE, tier=2, owner=emma,
                          reason="Absent 3 school days in a row", opened_at=dt.datetime(2026, 10, 1, 13, tzinfo=dt.UTC))
    f.InterventionFactory(student=student, type=Intervention.Type.ACADEMIC, status=Intervention.Status.CLOSED,
                          closed_at=dt.datetime(2026, 9, 20, tzinfo=dt.UTC), reason="Closed one")
    case_manager = f.StaffFactory(first_name="Jordan", last_name="Park", roles=[Role.CASE_MANAGER], schools=[school])
    f.IEPFactory(student=student, case_manager=case_manager, last_annual_review=dt.date(2026, 2, 1))
    teacher = f.StaffFactory(username="teacher", roles=[Role.TEACHER], schools=[school])
    mine = f.SectionFactory(school=school, session=session, course_name="Biology", teacher=teacher)
    theirs = f.SectionFactory(school=school, session=session, course_name="Algebra II")
    for section in (mine, theirs):
        f.SectionEnrollmentFactory(student=student, section=section)
    for n in range(3):
        f.GradeFactory(student=student, assignment=f.AssignmentFactory(section=mine, title=f"Lab {n}"),
                       score=Decimal("45"), posted_at=dt.datetime(2026, 10, 1 + n, 16, tzinfo=dt.UTC))
    for n in range(3):
        f.GradeFactory(student=student, assignment=f.AssignmentFactory(section=theirs, title=f"Quiz {n}"),
                       score=Decimal("92.5"), posted_at=dt.datetime(2026, 10, 10 + n, 16, tzinfo=dt.UTC))
    guardian = f.UserFactory(username="demo-unified-school-district.guardian.h01.12.1", first_name="Maria",
                             last_name="Lopez", roles=[Role.GUARDIAN])
    f.GuardianLinkFactory(student=student, guardian=guardian, relationship=GuardianLink.Relationship.MOTHER,
                          preferred_language="es")
    return {"student": student, "teacher": teacher, "emma": emma}


def page(client, user, student) -> str:
    client.force_login(user)
    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("admin:students_student_change", args=[student.pk]))
    assert response.status_code == 200
    return response.content.decode()


def overview_of(html: str) -> str:
    start = html.index('id="student-overview"')
    return html[start: html.index("</form>", start)]


def test_principal_sees_the_whole_overview(client, principal, record):
    html = page(client, principal, record["student"])
    top = overview_of(html)
    # 33 school days enrolled, 5 absent (excused, half a day, two unexcused, a suspension); the
    # tardy day and the absence on a day without school do not count: 28 / 33.
    assert "This session (2026-2027)" in top
    assert "84.8% present" in top and "over 33 school days" in top
    # The last 30 school days leave out the excused day: 4 absent, 26 / 30.
    assert "86.7% present" in top and "(4 absent of 30)" in top
    assert "5 this session" in top and "(1 excused)" in top
    assert "absent 3 school days in a row" in top
    assert "Attendance, Tier 2" in top and "since Oct 1, 2026, owner Emma Allen" in top
    assert "Closed one" not in top
    assert "IEP: Active" in top and "next annual review due Feb 1, 2027" in top and "case manager Jordan Park" in top
    # Five most recent grades, newest first, with the course.
    assert top.count("<li>Oct") == 5
    assert top.index("Quiz 2") < top.index("Quiz 0") < top.index("Lab 2")
    assert "Lab 0" not in top
    assert "Algebra II: Quiz 2 — 92.5 / 100 (92%)" in top
    # Guardians by name with the relationship; the generated login nowhere on the page.
    assert "Maria Lopez" in top and "Mother" in top and "Spanish" in top
    assert "guardian.h01" not in html


def test_system_admin_sees_every_part(client, system_admin, record):
    top = overview_of(page(client, system_admin, record["student"]))
    for part in ("attendance", "interventions", "plans", "grades", "guardians"):
        assert f'id="overview-{part}"' in top
    assert "84.8% present" in top and "IEP: Active" in top and "Quiz 2" in top and "Lab 2" in top


def test_counselor_sees_no_iep_and_teacher_only_own_sections_grades(client, counselor, record):
    top = overview_of(page(client, counselor, record["student"]))
    assert "84.8% present" in top and "Attendance, Tier 2" in top
    assert "IEP: Active" not in top and "Jordan Park" not in top  # counselors do not view IEPs
    assert "No IEP or 504 plan." in top  # their 504 part: none

    teacher_top = overview_of(page(client, record["teacher"], record["student"]))
    assert "Lab 2" in teacher_top and "Quiz" not in teacher_top  # another teacher's section
    assert "Active interventions" not in teacher_top  # a teacher's role does not view interventions
    assert "IEP: Active" not in teacher_top  # not on the IEP's team
    assert "84.8% present" in teacher_top


def test_case_manager_sees_the_iep_part_but_no_attendance(client, case_manager, record):
    from iep.models import IEP

    IEP.objects.update(case_manager=case_manager)
    top = overview_of(page(client, case_manager, record["student"]))
    assert "IEP: Active" in top
    assert 'id="overview-attendance"' not in top and 'id="overview-grades"' not in top


def test_the_overview_is_on_the_access_trail(client, principal, record):
    student = record["student"]
    page(client, principal, student)
    reads = AccessLog.objects.filter(actor=principal, operation="read", purpose="admin: change students.student")
    by_model = {row.model: row.student_ids for row in reads}
    for model in ("students.AttendanceRecord", "interventions.Intervention", "iep.IEP", "students.Grade",
                  "students.GuardianLink"):
        assert by_model.get(model) == [student.pk], model
    (view,) = AccessLog.objects.filter(actor=principal, operation="view", model="students.Student")
    assert view.student_ids == [student.pk]


def test_the_overview_costs_the_same_queries_for_a_small_and_a_large_record(client, principal, record, school):
    small = f.StudentFactory(school=school)
    client.force_login(principal)
    counts = []
    for student in (small, record["student"]):
        url = reverse("admin:students_student_change", args=[student.pk])
        with time_machine.travel(NOW, tick=False):
            client.get(url)  # warm the session and the permission cache's first read
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url).status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert counts[1] <= 22  # 21 on both databases: the page's 12 and the overview's 9


def test_the_overview_reads_one_query_per_part(principal, record, django_assert_num_queries):
    from students.models import Student
    from students.overview import student_overview

    student = Student.objects.select_related("school__district").get(pk=record["student"].pk)
    from students.roles import staff_of

    # The role's permissions and workplace, read once per request by the page itself.
    principal.get_all_permissions()
    staff_of(principal)
    # session, calendar, absences, interventions, IEP, 504 plan, grades, guardians
    with django_assert_num_queries(8):
        overview = student_overview(user=principal, student=student, now=NOW)
    assert overview.attendance.absences == 5 and len(overview.grades) == 5 and len(overview.guardians) == 1


def test_streak_is_zero_without_an_absence_on_the_latest_school_day(client, principal, record):
    from students.models import AttendanceRecord

    AttendanceRecord.objects.filter(date=DAYS[-1]).delete()
    top = overview_of(page(client, principal, record["student"]))
    assert "none: no absence recorded on the latest school day (Oct 16)" in top


def test_no_current_session_says_so(client, principal, record):
    from students.models import AcademicSession

    AcademicSession.objects.update(is_current=False)
    top = overview_of(page(client, principal, record["student"]))
    assert "No current session is set for the district." in top


def test_counselor_by_name_in_list_filter_and_form(client, principal, record):
    client.force_login(principal)
    response = client.get(reverse("admin:students_student_changelist"))
    html = response.content.decode()
    assert "Emma Allen" in html and ">demo-counselor<" not in html
    form = page(client, principal, record["student"])
    assert ">Emma Allen</option>" in form and ">demo-counselor</option>" not in form


def test_grade_filter_offers_only_the_grades_taught(client, principal, district, school):
    elementary = f.SchoolFactory(district=district, lowest_grade=-1, highest_grade=5)
    school.lowest_grade, school.highest_grade = 9, 12
    school.save()
    client.force_login(principal)  # works at the high school only
    response = client.get(reverse("admin:students_student_changelist"))
    (grade_filter,) = [spec for spec in response.context["cl"].filter_specs if spec.title == "grade level"]
    assert [label for _, label in grade_filter.lookup_choices] == ["Grade 9", "Grade 10", "Grade 11", "Grade 12"]
    # A district admin sees both schools' grades; once a school is picked, that school's.
    admin_user = f.StaffFactory(roles=[Role.DISTRICT_ADMIN], schools=[school])
    client.force_login(admin_user)
    url = reverse("admin:students_student_changelist")
    spec = [s for s in client.get(url).context["cl"].filter_specs if s.title == "grade level"][0]
    assert [v for v, _ in spec.lookup_choices] == [str(g) for g in range(-1, 6)] + [str(g) for g in range(9, 13)]
    spec = [s for s in client.get(url, {"school": elementary.pk}).context["cl"].filter_specs if s.title == "grade level"][0]
    assert [label for _, label in spec.lookup_choices][:2] == ["Pre-K", "Kindergarten"]
    assert len(spec.lookup_choices) == 7
