"""FERPA: staff views of student records in admin are on the access trail; the trail's admin is read-only."""
from __future__ import annotations

import pytest
from django.urls import reverse

from skillcore.models import AccessLog
from tests import factories as f

pytestmark = pytest.mark.django_db


def views(actor, model: str, purpose: str):
    return AccessLog.objects.filter(actor=actor, model=model, operation="view", purpose=purpose)


def test_changelist_logs_the_students_shown(client, counselor, school, other_school):
    shown = [f.StudentFactory(school=school) for _ in range(3)]
    f.StudentFactory(school=other_school)
    client.force_login(counselor)
    assert client.get(reverse("admin:students_student_changelist")).status_code == 200
    (row,) = views(counselor, "students.Student", "admin: changelist students.student")
    assert row.student_ids == sorted(s.pk for s in shown)
    assert (row.row_count, row.student_count, row.actor_label) == (3, 3, "counselor")
    # The automatic trail saw the same rows being read, and no other student.
    read = AccessLog.objects.get(actor=counselor, model="students.Student", operation="read")
    assert read.purpose == "admin: changelist students.student"
    assert set(read.student_ids) == {s.pk for s in shown}


def test_change_view_logs_the_one_student(client, counselor, school):
    student = f.StudentFactory(school=school)
    f.GuardianLinkFactory(student=student)
    client.force_login(counselor)
    assert client.get(reverse("admin:students_student_change", args=[student.pk])).status_code == 200
    (row,) = views(counselor, "students.Student", "admin: change students.student")
    assert row.student_ids == [student.pk]
    # The inline's guardian links were read on the same page and logged as such.
    links = AccessLog.objects.get(actor=counselor, model="students.GuardianLink", operation="read")
    assert links.student_ids == [student.pk]


def test_view_of_a_record_without_a_student_column_names_the_student(client, system_admin):
    # IEP team rows hold no student id; the explicit view row still says whose IEP it was.
    member = f.IEPTeamMemberFactory()
    client.force_login(system_admin)
    assert client.get(reverse("admin:iep_iepteammember_change", args=[member.pk])).status_code == 200
    (row,) = views(system_admin, "iep.IEPTeamMember", "admin: change iep.iepteammember")
    assert row.student_ids == [member.iep.student_id]


def test_attendance_changelist_logs_each_student_once(client, counselor, school):
    a, b = f.StudentFactory(school=school), f.StudentFactory(school=school)
    for day in (1, 2, 3):
        f.AttendanceRecordFactory(student=a, date=f"2026-09-0{day}")
    f.AttendanceRecordFactory(student=b)
    client.force_login(counselor)
    client.get(reverse("admin:students_attendancerecord_changelist"))
    (row,) = views(counselor, "students.AttendanceRecord", "admin: changelist students.attendancerecord")
    assert (row.row_count, row.student_ids) == (4, sorted([a.pk, b.pk]))


def test_refused_view_logs_no_student(client, other_counselor, school):
    student = f.StudentFactory(school=school)
    client.force_login(other_counselor)
    assert client.get(reverse("admin:students_student_change", args=[student.pk])).status_code == 404
    assert not AccessLog.objects.filter(operation="view").exists()
    assert not any(student.pk in r.student_ids for r in AccessLog.objects.all())


def test_admin_edit_is_logged_as_an_update(client, principal, school):
    student = f.StudentFactory(school=school, last_name="Before")
    client.force_login(principal)
    url = reverse("admin:students_student_change", args=[student.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update({
        "last_name": "After", "birth_date": "2011-03-15", "enrollment_date": "2026-08-31", "school": school.pk,
        "guardian_links-TOTAL_FORMS": "0", "guardian_links-INITIAL_FORMS": "0",
    })
    data.pop("archived_at", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    student.refresh_from_db()
    assert student.last_name == "After"
    update = AccessLog.objects.get(actor=principal, model="students.Student", operation="update")
    assert update.student_ids == [student.pk]


def test_access_log_admin_is_read_only_even_for_superusers(client, system_admin):
    entry = f.AccessLogFactory(actor=system_admin, student_ids=[7, 12])
    client.force_login(system_admin)
    assert client.get(reverse("admin:skillcore_accesslog_changelist")).status_code == 200
    page = client.get(reverse("admin:skillcore_accesslog_change", args=[entry.pk]))
    assert page.status_code == 200
    assert not page.context["has_change_permission"] and not page.context["has_delete_permission"]
    assert client.get(reverse("admin:skillcore_accesslog_add")).status_code == 403
    assert client.post(reverse("admin:skillcore_accesslog_change", args=[entry.pk]), {"purpose": "rewritten"}).status_code == 403
    assert client.post(reverse("admin:skillcore_accesslog_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    response = client.post(
        reverse("admin:skillcore_accesslog_changelist"), {"action": "delete_selected", "_selected_action": [entry.pk]}
    )
    assert AccessLog.objects.filter(pk=entry.pk, purpose="test").exists()
    assert response.status_code in (200, 302, 403)


def test_access_log_filters_and_student_search(client, system_admin):
    hit = f.AccessLogFactory(actor=system_admin, student_ids=[7, 12], operation="view")
    f.AccessLogFactory(actor=system_admin, student_ids=[17, 120], operation="view")
    f.AccessLogFactory(actor=system_admin, student_ids=[12], operation="read", model="students.Grade")
    client.force_login(system_admin)
    url = reverse("admin:skillcore_accesslog_changelist")
    found = client.get(url, {"q": "student:12", "operation": "view"}).context["cl"].result_list
    assert [r.pk for r in found] == [hit.pk]
    by_model = client.get(url, {"model": "students.Grade"}).context["cl"].result_list
    assert [r.model for r in by_model] == ["students.Grade"]


def test_principal_sees_the_trail_of_own_schools_staff_only(client, principal, counselor, other_counselor):
    mine = f.AccessLogFactory(actor=counselor)
    f.AccessLogFactory(actor=other_counselor)
    f.AccessLogFactory(job_run_id=5, actor_label="job run 5")
    client.force_login(principal)
    rows = client.get(reverse("admin:skillcore_accesslog_changelist")).context["cl"].result_list
    assert [r.pk for r in rows] == [mine.pk]


def test_counselor_has_no_access_log(client, counselor):
    client.force_login(counselor)
    assert client.get(reverse("admin:skillcore_accesslog_changelist")).status_code == 403


# -- the trail read as English: names, purposes, local time, the district's student numbers -----


def test_the_trail_reads_as_english_in_the_districts_time(client, principal, counselor, school):
    import datetime as dt

    student = f.StudentFactory(school=school, local_id="100428")
    at = dt.datetime(2026, 11, 4, 18, 5, tzinfo=dt.UTC)  # 13:05 in New York (EST)
    f.AccessLogFactory(actor=counselor, at=at, model="students.GuardianLink", operation="view",
                       purpose="admin: change students.student", student_ids=[student.pk])
    client.force_login(principal)
    response = client.get(reverse("admin:skillcore_accesslog_changelist"))
    html = response.content.decode()
    assert "Guardian link" in html and ">students.GuardianLink<" not in html  # the filter links keep the key
    assert "Admin: student page" in html and "admin: change students.student" not in html
    assert "Wed 2026-11-04 13:05 EST (UTC\u221205:00)" in html
    assert [spec.title for spec in response.context["cl"].filter_specs] == ["operation", "record", "when"]
    assert 'title="2026-11-04 18:05Z"' in html  # UTC on hover
    assert "100428" in html
    # The one detail page reads the same way.
    row = AccessLog.objects.get(actor=counselor)
    detail = client.get(reverse("admin:skillcore_accesslog_change", args=[row.pk])).content.decode()
    assert "100428" in detail and "Admin: student page" in detail and "13:05 EST" in detail


def test_searching_a_student_number_finds_the_rows_that_touched_that_student(client, principal, counselor, school):
    student = f.StudentFactory(school=school, local_id="100428")
    other = f.StudentFactory(school=school, local_id="100429")
    hit = f.AccessLogFactory(actor=counselor, student_ids=[other.pk, student.pk], operation="view")
    f.AccessLogFactory(actor=counselor, student_ids=[other.pk], operation="view")
    f.AccessLogFactory(actor=counselor, student_ids=[student.pk + 100428], operation="view")  # an id, not the number
    client.force_login(principal)
    url = reverse("admin:skillcore_accesslog_changelist")
    found = client.get(url, {"q": "100428"}).context["cl"].result_list
    # The search itself read the student table, so the principal's own trail row is found too.
    assert [r.pk for r in found if r.actor_id == counselor.pk] == [hit.pk]
    assert {r.purpose for r in found if r.actor_id == principal.pk} == {"admin: changelist skillcore.accesslog"}
    # A username still searches as before.
    assert client.get(url, {"q": "tester"}).context["cl"].result_list


def test_a_student_of_another_school_shows_by_id_not_number(client, principal, counselor, other_school):
    elsewhere = f.StudentFactory(school=other_school, local_id="200001")
    f.AccessLogFactory(actor=counselor, student_ids=[elsewhere.pk], operation="view")
    client.force_login(principal)
    url = reverse("admin:skillcore_accesslog_changelist")
    html = client.get(url).content.decode()
    assert "200001" not in html and f"#{elsewhere.pk}" in html
    assert not client.get(url, {"q": "200001"}).context["cl"].result_list


def test_showing_student_numbers_is_on_the_trail_and_costs_one_query_per_page(
    client, principal, counselor, school, django_assert_max_num_queries
):
    students = [f.StudentFactory(school=school) for _ in range(30)]
    for s in students:
        f.AccessLogFactory(actor=counselor, student_ids=[s.pk], operation="view")
    client.force_login(principal)
    url = reverse("admin:skillcore_accesslog_changelist")
    client.get(url)  # warm the session
    with django_assert_max_num_queries(16) as ctx:
        html = client.get(url).content.decode()
    student_reads = [q for q in ctx.captured_queries if '"students_student"' in q["sql"] and "local_id" in q["sql"]]
    assert len(student_reads) == 1
    assert all(s.local_id in html for s in students)
    read = AccessLog.objects.filter(actor=principal, model="students.Student", operation="read").latest("id")
    assert read.purpose == "admin: changelist skillcore.accesslog"
    assert set(read.student_ids) == {s.pk for s in students}


@pytest.mark.parametrize(("purpose", "words"), [
    ("admin: change students.student", "Admin: student page"),
    ("admin: changelist students.guardianlink", "Admin: list of guardian links"),
    ("admin: add interventions.intervention", "Admin: add intervention"),
    ("admin: history iep.iepmeeting", "Admin: history of IEP meeting"),
    ("admin: autocomplete", "Admin: autocomplete"),
    ("scheduled job attendance-interventions", "Scheduled job: attendance-interventions"),
    ("end-of-year rollover", "End-of-year rollover"),
])
def test_purposes_in_words(purpose, words):
    assert AccessLog.purpose_text(purpose) == words


def test_record_names_in_words():
    assert AccessLog.model_text("students.GuardianLink") == "Guardian link"
    assert AccessLog.model_text("iep.IEPMeeting") == "IEP meeting"
    assert AccessLog.model_text("gone.Table") == "gone.Table"
