"""No N+1 changelists: the query count of every changelist is the same for 1 row and for 30."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests import factories as f

pytestmark = pytest.mark.django_db


def _attendance(n):
    student = f.StudentFactory()
    return f.AttendanceRecordFactory(student=student, date=dt.date(2026, 9, 1) + dt.timedelta(days=n))


def _team_member(n):
    return f.IEPTeamMemberFactory()


def _accommodation(n):
    acc = f.AccommodationFactory()
    acc.implementers.add(f.UserFactory())
    return acc


def _analytics(n):
    from interventions.models import StudentAnalytics

    return StudentAnalytics.objects.create(student=f.StudentFactory(), week_start=dt.date(2026, 9, 7), week_end=dt.date(2026, 9, 13), computed_at=timezone.now())


# model label -> how to make the n-th row (each row brings its own student, school, district...,
# so a per-row query for any related object would show up).
MAKERS = {
    "students.district": lambda n: f.DistrictFactory(),
    "students.school": lambda n: f.SchoolFactory(),
    "students.academicsession": lambda n: f.AcademicSessionFactory(),
    "students.calendarday": lambda n: f.CalendarDayFactory(),
    "students.staffprofile": lambda n: f.StaffFactory(schools=[f.SchoolFactory()]).staff_profile,
    "students.student": lambda n: f.StudentFactory(counselor=f.UserFactory()),
    "students.guardianlink": lambda n: f.GuardianLinkFactory(),
    "students.devicetoken": lambda n: f.DeviceTokenFactory(),
    "students.section": lambda n: f.SectionFactory(teacher=f.UserFactory()),
    "students.sectionenrollment": lambda n: f.SectionEnrollmentFactory(),
    "students.assignment": lambda n: f.AssignmentFactory(),
    "students.submission": lambda n: f.SubmissionFactory(),
    "students.grade": lambda n: f.GradeFactory(),
    "students.attendancerecord": _attendance,
    "students.behaviorincident": lambda n: f.BehaviorIncidentFactory(reported_by=f.UserFactory()),
    "interventions.intervention": lambda n: f.InterventionFactory(owner=f.UserFactory()),
    "interventions.counselortask": lambda n: f.CounselorTaskFactory(),
    "interventions.studentanalytics": _analytics,
    "iep.iep": lambda n: f.IEPFactory(),
    "iep.iepteammember": _team_member,
    "iep.iepmeeting": lambda n: f.IEPMeetingFactory(),
    "iep.iepservice": lambda n: f.IEPServiceFactory(provider=f.UserFactory()),
    "iep.servicelog": lambda n: f.ServiceLogFactory(provider=f.UserFactory()),
    "iep.section504plan": lambda n: f.Section504PlanFactory(coordinator=f.UserFactory()),
    "iep.accommodation": _accommodation,
    "notifications.notificationpreference": lambda n: f.NotificationPreferenceFactory(),
    "skillcore.accesslog": lambda n: f.AccessLogFactory(actor=f.UserFactory()),
}


def test_every_registered_model_of_ours_has_a_maker():
    ours = {"students", "interventions", "iep", "skillcore"}
    registered = {m._meta.label_lower for m in admin.site._registry if m._meta.app_label in ours}
    assert registered <= set(MAKERS)
    assert set(MAKERS) - {"notifications.notificationpreference"} <= registered


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("label", sorted(MAKERS))
def test_changelist_query_count_is_flat(client, system_admin, label):
    make = MAKERS[label]
    app, model = label.split(".")
    url = reverse(f"admin:{app}_{model}_changelist")
    client.force_login(system_admin)
    make(0)
    one = _count(client, url)
    for n in range(1, 30):
        make(n)
    thirty = _count(client, url)
    assert thirty == one, f"{label}: {one} queries for 1 row, {thirty} for 30"


def test_scoped_student_changelist_is_flat_and_small(client, counselor, school, django_assert_max_num_queries):
    f.StudentFactory(school=school, counselor=counselor)
    client.force_login(counselor)
    url = reverse("admin:students_student_changelist")
    one = _count(client, url)
    f.StudentFactory.create_batch(29, school=school, counselor=counselor)
    with django_assert_max_num_queries(one):
        response = client.get(url)
    assert len(response.context["cl"].result_list) == 30
    # Session, user, groups, permissions, profile, schools, the rows, counts, filter choices,
    # and the two trail inserts: a fixed budget whatever the page size.
    assert one <= 16


def test_scoped_iep_changelist_for_a_teacher_is_flat(client, teacher, school):
    def iep_on_team():
        iep = f.IEPFactory(student=f.StudentFactory(school=school))
        f.IEPTeamMemberFactory(iep=iep, user=teacher)
        return iep

    iep_on_team()
    client.force_login(teacher)
    url = reverse("admin:iep_iep_changelist")
    one = _count(client, url)
    for _ in range(29):
        iep_on_team()
    assert _count(client, url) == one


def test_big_tables_count_at_most_the_cap(client, system_admin, monkeypatch):
    from skillcore.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    for n in range(3):
        _attendance(n)
    client.force_login(system_admin)
    response = client.get(reverse("admin:students_attendancerecord_changelist"))
    assert response.context["cl"].result_count == 2
    assert len(response.context["cl"].result_list) == 3  # the page itself is not capped


def test_school_filter_filters_and_offers_only_schools_in_scope(client, counselor, school, other_school):
    here = f.AttendanceRecordFactory(student=f.StudentFactory(school=school))
    f.AttendanceRecordFactory(student=f.StudentFactory(school=other_school))
    client.force_login(counselor)
    url = reverse("admin:students_attendancerecord_changelist")
    response = client.get(url, {"school": school.pk})
    assert [r.pk for r in response.context["cl"].result_list] == [here.pk]
    (school_filter,) = [s for s in response.context["cl"].filter_specs if s.title == "school"]
    assert [c for c, _ in school_filter.lookup_choices] == [str(school.pk)]
    # Asking for another school's rows by URL shows nothing, not their rows.
    response = client.get(url, {"school": other_school.pk})
    assert list(response.context["cl"].result_list) == []


@pytest.mark.parametrize("label", sorted(MAKERS))
def test_every_change_and_add_page_renders(client, system_admin, label):
    obj = MAKERS[label](0)
    app, model = label.split(".")
    client.force_login(system_admin)
    assert client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk])).status_code == 200
    add = client.get(reverse(f"admin:{app}_{model}_add"))
    assert add.status_code == (403 if label in {"skillcore.accesslog", "interventions.studentanalytics"} else 200)


def test_change_pages_with_inlines_do_not_query_per_row(client, system_admin):
    iep, student = f.IEPFactory(), f.StudentFactory()
    client.force_login(system_admin)
    iep_url = reverse("admin:iep_iep_change", args=[iep.pk])
    student_url = reverse("admin:students_student_change", args=[student.pk])

    def grow(n):
        while iep.team.count() < n:
            f.IEPTeamMemberFactory(iep=iep)
            f.IEPServiceFactory(iep=iep, provider=f.UserFactory())
        while student.guardian_links.count() < n:
            f.GuardianLinkFactory(student=student)

    grow(1)
    _count(client, iep_url), _count(client, student_url)  # warm the content-type cache
    one = (_count(client, iep_url), _count(client, student_url))
    grow(8)
    assert (_count(client, iep_url), _count(client, student_url)) == one


def test_counselor_filter_offers_the_counselors_of_ones_schools_and_filters(client, principal, counselor, other_counselor, school):
    mine = f.StudentFactory(school=school, counselor=counselor)
    f.StudentFactory(school=school, counselor=None)
    client.force_login(principal)
    url = reverse("admin:students_student_changelist")
    response = client.get(url)
    (spec,) = [s for s in response.context["cl"].filter_specs if s.title == "counselor"]
    # The other school's counselor is not offered to a principal of this school.
    assert [c for c, _ in spec.lookup_choices] == [str(counselor.pk)]
    response = client.get(url, {"counselor__id__exact": counselor.pk})
    assert [s.pk for s in response.context["cl"].result_list] == [mine.pk]


def test_counselor_filter_for_a_district_admin_lists_the_district_and_reads_no_student(
    client, district_admin, counselor, other_counselor
):
    client.force_login(district_admin)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("admin:students_student_changelist"))
    (spec,) = [s for s in response.context["cl"].filter_specs if s.title == "counselor"]
    assert sorted(int(c) for c, _ in spec.lookup_choices) == sorted([counselor.pk, other_counselor.pk])
    # Neither filter scans the students for its choices (no DISTINCT over the scope).
    assert not [q for q in ctx.captured_queries if "DISTINCT" in q["sql"] and "students_student" in q["sql"]]


def test_grade_filter_offers_the_schools_grades_and_filters(client, counselor, school):
    ninth = f.StudentFactory(school=school, grade_level=9)
    f.StudentFactory(school=school, grade_level=10)
    client.force_login(counselor)
    url = reverse("admin:students_student_changelist")
    response = client.get(url, {"grade_level": "9"})
    assert [s.pk for s in response.context["cl"].result_list] == [ninth.pk]
    (spec,) = [s for s in response.context["cl"].filter_specs if s.title == "grade level"]
    # The grades the counselor's school teaches (6 to 12), read from the school, not the students.
    assert [c for c, _ in spec.lookup_choices] == [str(g) for g in range(school.lowest_grade, school.highest_grade + 1)]
    # A malformed value filters nothing rather than failing.
    assert client.get(url, {"grade_level": "ninth"}).status_code == 200


def test_scoped_changelists_show_50_rows_a_page(client, counselor, school):
    f.StudentFactory.create_batch(51, school=school)
    client.force_login(counselor)
    cl = client.get(reverse("admin:students_student_changelist")).context["cl"]
    assert (len(cl.result_list), cl.result_count) == (50, 51)


@pytest.mark.parametrize("inline_limit", [5_000, 1])  # ids written into the query / the join (too many students)
def test_attendance_pages_show_the_scope_newest_first_whichever_way_it_is_stated(
    client, principal, school, other_school, monkeypatch, inline_limit
):
    from students.admin import AttendanceRecordAdmin

    monkeypatch.setattr(AttendanceRecordAdmin, "inline_student_ids", inline_limit)
    monkeypatch.setattr(AttendanceRecordAdmin, "list_per_page", 3)
    mine = [f.StudentFactory(school=school) for _ in range(2)]
    rows = [f.AttendanceRecordFactory(student=s, date=dt.date(2026, 9, 1) + dt.timedelta(days=n)) for n in range(4) for s in mine]
    f.AttendanceRecordFactory(student=f.StudentFactory(school=other_school), date=dt.date(2026, 9, 30))
    expected = [r.pk for r in sorted(rows, key=lambda r: (r.date, r.pk), reverse=True)]
    client.force_login(principal)
    url = reverse("admin:students_attendancerecord_changelist")
    pages = [client.get(url, {"p": p}).context["cl"] for p in (1, 2, 3)]
    assert [r.pk for cl in pages for r in cl.result_list] == expected
    assert pages[0].result_count == 8
    # Each row arrives with its student and school (the ids-first page keeps the joins).
    with CaptureQueriesContext(connection) as ctx:
        [str(r.student.school) for r in pages[0].result_list]
    assert len(ctx.captured_queries) == 0
