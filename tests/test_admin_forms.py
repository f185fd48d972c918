"""Admin forms refuse bad values with a field error (200, the form again), never a 500, and write nothing."""
from __future__ import annotations

import pytest
from django.urls import reverse

from iep.models import IEP, Section504Plan, ServiceLog
from interventions.models import Intervention
from notifications.models import NotificationPreference
from students.models import Assignment, AttendanceRecord, District, Student
from tests import factories as f

pytestmark = pytest.mark.django_db


def add_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")


def post_add(client, model, data: dict):
    """POST an add form, with empty management forms for the page's inlines."""
    url = add_url(model)
    page = client.get(url)
    assert page.status_code == 200
    payload = dict(data)
    for inline in page.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        payload.setdefault(f"{prefix}-TOTAL_FORMS", "0")
        payload.setdefault(f"{prefix}-INITIAL_FORMS", "0")
    return client.post(url, payload)


def errors(response) -> dict:
    assert response.status_code == 200, "expected the form back with errors"
    return response.context["adminform"].form.errors


DISTRICT = {
    "name": "Riverside", "state": "CA", "time_zone": "America/Los_Angeles", "it_contact_email": "",
    "chronic_absence_threshold": "0.100", "min_enrolled_days": "10", "iep_reminder_offsets": "90, 60, 30, 14, 7, 0",
    "meeting_notice_lead_days": "10", "notify_window_start": "07:00", "notify_window_end": "21:00",
}


@pytest.mark.parametrize(
    "field, value",
    [
        ("time_zone", "Mars/Olympus_Mons"),
        ("time_zone", "EST5EDT "),
        ("chronic_absence_threshold", "1.5"),
        ("chronic_absence_threshold", "0"),
        ("chronic_absence_threshold", "-0.1"),
        ("chronic_absence_threshold", "ten percent"),
        ("iep_reminder_offsets", "90, sixty, 30"),
        ("iep_reminder_offsets", "90, 90, 30"),
        ("iep_reminder_offsets", "400"),
        ("iep_reminder_offsets", "-7"),
        ("iep_reminder_offsets", ""),
        ("min_enrolled_days", "0"),
        ("notify_window_end", "06:00"),
        ("notify_window_start", "25:00"),
    ],
)
def test_district_form_rejects_bad_settings(client, system_admin, field, value):
    client.force_login(system_admin)
    response = post_add(client, District, {**DISTRICT, field: value})
    assert field in errors(response)
    assert not District.objects.filter(name="Riverside").exists()


def test_district_form_accepts_good_settings_and_stores_offsets_as_a_list(client, system_admin):
    client.force_login(system_admin)
    response = post_add(client, District, {**DISTRICT, "iep_reminder_offsets": "120, 60 30"})
    assert response.status_code == 302
    assert District.objects.get(name="Riverside").iep_reminder_offsets == [120, 60, 30]


def test_district_admin_cannot_create_districts(client, district_admin):
    client.force_login(district_admin)
    assert client.get(add_url(District)).status_code == 403


def test_attendance_outside_enrollment_is_a_date_error(client, teacher, school):
    student = f.StudentFactory(school=school, enrollment_date="2026-09-10", exit_date="2027-01-15")
    f.SectionEnrollmentFactory(section=f.SectionFactory(school=school, teacher=teacher), student=student)
    client.force_login(teacher)  # teachers take attendance
    for day in ("2026-09-01", "2027-02-01"):
        response = post_add(client, AttendanceRecord, {"student": student.pk, "date": day, "status": "present", "fraction_present": "1"})
        assert "date" in errors(response)
    response = post_add(client, AttendanceRecord, {"student": student.pk, "date": "2026-09-15", "status": "present", "fraction_present": "1.5"})
    assert "fraction_present" in errors(response)
    response = post_add(client, AttendanceRecord, {"student": student.pk, "date": "2026-09-15", "status": "skipped", "fraction_present": "1"})
    assert "status" in errors(response)
    assert not AttendanceRecord.objects.exists()
    response = post_add(client, AttendanceRecord, {"student": student.pk, "date": "2026-09-15", "status": "present", "fraction_present": "1"})
    assert response.status_code == 302
    # The same day twice is an error on the form, not an IntegrityError.
    response = post_add(client, AttendanceRecord, {"student": student.pk, "date": "2026-09-15", "status": "tardy", "fraction_present": "1"})
    assert errors(response)
    assert AttendanceRecord.objects.count() == 1


@pytest.mark.parametrize("score", ["0", "-5", "0.00", "abc"])
def test_assignment_max_score_must_be_positive(client, teacher, school, score):
    section = f.SectionFactory(school=school, teacher=teacher)
    client.force_login(teacher)
    response = post_add(client, Assignment, {
        "section": section.pk, "title": "Quiz", "status": "published", "due_date": "2026-10-01", "max_score": score,
    })
    assert "max_score" in errors(response)
    assert not Assignment.objects.exists()


def test_teacher_cannot_add_an_assignment_to_another_teachers_section(client, teacher, school):
    section = f.SectionFactory(school=school, teacher=f.StaffFactory(roles=["teacher"], schools=[school]))
    client.force_login(teacher)
    response = post_add(client, Assignment, {
        "section": section.pk, "title": "Quiz", "status": "published", "due_date": "2026-10-01", "max_score": "10",
    })
    assert "section" in errors(response)
    assert not Assignment.objects.exists()


def test_student_form_errors(client, principal, school):
    client.force_login(principal)
    base = {
        "school": school.pk, "local_id": "S-1", "first_name": "Ana", "last_name": "Ruiz", "grade_level": "9",
        "birth_date": "2011-01-01", "enrollment_date": "2026-08-31", "is_active": "on",
    }
    # Principals have no add permission on students; a district admin does.
    assert client.get(add_url(Student)).status_code == 403
    client.force_login(f.StaffFactory(roles=["district-admin"], schools=[school]))
    for field, value in [("grade_level", "15"), ("grade_level", "3"), ("birth_date", "2027-01-01"), ("exit_date", "2026-01-01")]:
        response = post_add(client, Student, {**base, field: value})
        assert field in errors(response), (field, value)
    assert not Student.objects.exists()


def test_intervention_form_errors(client, counselor, school):
    student = f.StudentFactory(school=school)
    client.force_login(counselor)
    base = {
        "student": student.pk, "type": "attendance", "tier": "2", "status": "active", "reason": "Absent 12%",
        "recommended_strategies": "[]", "opened_at_0": "2026-10-01", "opened_at_1": "08:00",
    }
    for extra, field in [
        ({"tier": "5"}, "tier"),
        ({"status": "closed"}, "closed_at"),
        ({"closed_at_0": "2026-10-02", "closed_at_1": "08:00"}, "closed_at"),
        ({"status": "closed", "closed_at_0": "2026-09-01", "closed_at_1": "08:00"}, "closed_at"),
        ({"recommended_strategies": "{not json"}, "recommended_strategies"),
        ({"type": "sleep"}, "type"),
    ]:
        assert field in errors(post_add(client, Intervention, {**base, **extra})), extra
    assert not Intervention.objects.exists()
    assert post_add(client, Intervention, base).status_code == 302
    # A second active attendance intervention is refused by the form, not by an IntegrityError.
    assert errors(post_add(client, Intervention, base))
    assert Intervention.objects.count() == 1


def test_iep_and_504_form_errors(client, sped_coordinator, school):
    student = f.StudentFactory(school=school)
    client.force_login(sped_coordinator)
    response = post_add(client, IEP, {
        "student": student.pk, "status": "active", "eligibility_date": "2026-05-01", "last_annual_review": "2026-02-01",
    })
    assert "last_annual_review" in errors(response)
    assert not IEP.objects.exists()
    base = {"student": student.pk, "status": "active", "evaluation_date": "2026-01-10", "start_date": "2026-01-20", "next_review_due": "2027-01-20"}
    assert "start_date" in errors(post_add(client, Section504Plan, {**base, "start_date": "2026-01-01"}))
    assert "next_review_due" in errors(post_add(client, Section504Plan, {**base, "next_review_due": "2026-01-20"}))
    assert not Section504Plan.objects.exists()


def test_service_log_form_errors(client, system_admin):
    service = f.IEPServiceFactory()
    stranger = f.StudentFactory()
    client.force_login(system_admin)
    base = {"service": service.pk, "student": service.iep.student_id, "delivered_on": "2026-10-05", "minutes": "30"}
    assert "minutes" in errors(post_add(client, ServiceLog, {**base, "minutes": "0"}))
    assert "minutes" in errors(post_add(client, ServiceLog, {**base, "minutes": "600"}))
    assert "student" in errors(post_add(client, ServiceLog, {**base, "student": stranger.pk}))
    assert not ServiceLog.objects.exists()


def test_notification_preference_threshold(client, district_admin):
    client.force_login(district_admin)
    base = {"user": district_admin.pk, "category": "grade-digest", "channel": "email", "frequency": "daily"}
    assert "low_grade_threshold" in errors(post_add(client, NotificationPreference, {**base, "low_grade_threshold": "150"}))
    assert "low_grade_threshold" in errors(
        post_add(client, NotificationPreference, {**base, "category": "report", "low_grade_threshold": "60"})
    )
    assert "user" in errors(post_add(client, NotificationPreference, {**base, "user": f.UserFactory().pk}))
    assert not NotificationPreference.objects.exists()
    assert post_add(client, NotificationPreference, {**base, "low_grade_threshold": "65"}).status_code == 302
