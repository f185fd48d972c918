"""Role-scoped admin: each role sees its own rows, never another school's or another team's."""
from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from iep.models import IEP
from students import scoping
from students.models import Role, Student
from tests import factories as f

pytestmark = pytest.mark.django_db


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def shown(response) -> set[int]:
    return {o.pk for o in response.context["cl"].result_list}


@pytest.fixture
def pupils(school, other_school):
    return {
        "mine": f.StudentFactory(school=school, last_name="Mine"),
        "theirs": f.StudentFactory(school=other_school, last_name="Theirs"),
        "elsewhere": f.StudentFactory(last_name="OtherDistrict"),  # a school of another district
    }


def test_counselor_sees_only_students_of_own_school(client, counselor, pupils):
    client.force_login(counselor)
    response = client.get(changelist(Student))
    assert response.status_code == 200
    assert shown(response) == {pupils["mine"].pk}
    assert client.get(change(pupils["mine"])).status_code == 200


def test_counselor_gets_404_for_another_schools_student_and_never_the_name(client, counselor, pupils):
    client.force_login(counselor)
    for key in ("theirs", "elsewhere"):
        response = client.get(change(pupils[key]))
        assert response.status_code == 404
        assert pupils[key].last_name.encode() not in response.content
    # Nor through history or delete.
    theirs = pupils["theirs"]
    assert client.get(reverse("admin:students_student_history", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("admin:students_student_delete", args=[theirs.pk]), {"post": "yes"}).status_code in (403, 404)
    assert Student.objects.filter(pk=theirs.pk).exists()


def test_counselor_sees_the_records_of_own_students_only(client, counselor, pupils):
    mine = f.AttendanceRecordFactory(student=pupils["mine"])
    theirs = f.AttendanceRecordFactory(student=pupils["theirs"])
    tier = f.InterventionFactory(student=pupils["mine"])
    f.InterventionFactory(student=pupils["theirs"])
    client.force_login(counselor)
    assert shown(client.get(reverse("admin:students_attendancerecord_changelist"))) == {mine.pk}
    assert shown(client.get(reverse("admin:interventions_intervention_changelist"))) == {tier.pk}
    assert client.get(change(theirs)).status_code == 404


def test_other_schools_counselor_is_refused_my_student(client, other_counselor, pupils):
    client.force_login(other_counselor)
    assert client.get(change(pupils["mine"])).status_code == 404
    assert shown(client.get(changelist(Student))) == {pupils["theirs"].pk}


def test_school_filter_lists_only_schools_in_scope(client, counselor, pupils, other_school):
    client.force_login(counselor)
    response = client.get(changelist(Student))
    assert other_school.name.encode() not in response.content


def test_counselor_cannot_pick_another_schools_student_in_a_form(client, counselor, pupils):
    client.force_login(counselor)
    # Counselors may add interventions; the student field only accepts their own students.
    data = {
        "student": pupils["theirs"].pk, "type": "academic", "tier": "1", "status": "active",
        "reason": "Falling grades", "recommended_strategies": "[]",
        "opened_at_0": "2026-10-01", "opened_at_1": "09:00:00",
    }
    response = client.post(reverse("admin:interventions_intervention_add"), data)
    assert response.status_code == 200
    assert "student" in response.context["adminform"].form.errors
    assert not pupils["theirs"].interventions.exists()
    data["student"] = pupils["mine"].pk
    response = client.post(reverse("admin:interventions_intervention_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert pupils["mine"].interventions.count() == 1


def test_student_autocomplete_is_scoped(client, counselor, pupils):
    client.force_login(counselor)
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "interventions", "model_name": "intervention", "field_name": "student", "term": ""},
    )
    assert response.status_code == 200
    assert {int(r["id"]) for r in response.json()["results"]} == {pupils["mine"].pk}


def test_counselor_choices_list_only_counselors_of_the_district(client, district_admin, counselor, other_counselor):
    outsider = f.StaffFactory(username="far_counselor", roles=[Role.COUNSELOR])  # another district
    client.force_login(district_admin)
    form = client.get(reverse("admin:students_student_add")).context["adminform"].form
    choices = set(form.fields["counselor"].queryset.values_list("pk", flat=True))
    assert choices == {counselor.pk, other_counselor.pk}
    assert outsider.pk not in choices


def test_district_admin_sees_the_whole_district_and_nothing_else(client, district_admin, pupils):
    client.force_login(district_admin)
    assert shown(client.get(changelist(Student))) == {pupils["mine"].pk, pupils["theirs"].pk}
    assert client.get(change(pupils["elsewhere"])).status_code == 404


def test_system_admin_sees_everything(client, system_admin, pupils):
    client.force_login(system_admin)
    assert shown(client.get(changelist(Student))) == {p.pk for p in pupils.values()}


def test_teacher_sees_students_of_own_sections(client, teacher, school, pupils):
    section = f.SectionFactory(school=school, teacher=teacher)
    taught = f.SectionEnrollmentFactory(section=section, student=f.StudentFactory(school=school)).student
    client.force_login(teacher)
    assert shown(client.get(changelist(Student))) == {taught.pk}
    assert client.get(change(pupils["mine"])).status_code == 404


def test_teacher_sees_iep_only_when_on_the_team(client, teacher, school):
    section = f.SectionFactory(school=school, teacher=teacher)
    on_team = f.IEPFactory(student=f.SectionEnrollmentFactory(section=section).student)
    not_on_team = f.IEPFactory(student=f.SectionEnrollmentFactory(section=section).student)
    f.IEPTeamMemberFactory(iep=on_team, user=teacher)
    client.force_login(teacher)
    response = client.get(changelist(IEP))
    assert shown(response) == {on_team.pk}
    assert client.get(change(on_team)).status_code == 200
    # Teaching the student is not enough to see the IEP.
    assert client.get(change(not_on_team)).status_code == 404
    team = client.get(reverse("admin:iep_iepteammember_changelist"))
    assert {m.iep_id for m in team.context["cl"].result_list} == {on_team.pk}


def test_case_manager_sees_managed_and_team_ieps(client, case_manager, school):
    managed = f.IEPFactory(student=f.StudentFactory(school=school), case_manager=case_manager)
    team = f.IEPFactory(student=f.StudentFactory(school=school))
    f.IEPTeamMemberFactory(iep=team, user=case_manager, role="case-manager")
    other = f.IEPFactory(student=f.StudentFactory(school=school))
    client.force_login(case_manager)
    assert shown(client.get(changelist(IEP))) == {managed.pk, team.pk}
    assert client.get(change(other)).status_code == 404
    # ...and those students, not the school's others.
    assert shown(client.get(changelist(Student))) == {managed.student_id, team.student_id}


def test_sped_coordinator_sees_district_ieps_and_504_plans(client, sped_coordinator, school, other_school):
    here = f.IEPFactory(student=f.StudentFactory(school=other_school))
    away = f.IEPFactory()
    plan = f.Section504PlanFactory(student=f.StudentFactory(school=school))
    f.Section504PlanFactory()
    client.force_login(sped_coordinator)
    assert shown(client.get(changelist(IEP))) == {here.pk}
    assert client.get(change(away)).status_code == 404
    assert shown(client.get(reverse("admin:iep_section504plan_changelist"))) == {plan.pk}


def test_counselor_has_no_iep_pages(client, counselor, school):
    iep = f.IEPFactory(student=f.StudentFactory(school=school))
    client.force_login(counselor)
    assert client.get(changelist(IEP)).status_code == 403
    assert client.get(change(iep)).status_code in (403, 404)


@pytest.mark.parametrize("role", [Role.GUARDIAN, Role.STUDENT])
def test_guardian_or_student_with_is_staff_gets_no_admin(client, pupils, role):
    person = f.UserFactory(is_staff=True, roles=[role])
    f.GuardianLinkFactory(guardian=person, student=pupils["mine"])
    client.force_login(person)
    # The site itself refuses them: every admin page sends them to the login page.
    for url in (reverse("admin:index"), changelist(Student), change(pupils["mine"]), reverse("admin:skillcore_accesslog_changelist")):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url
    login = client.get(reverse("admin:login"))
    assert b"not authorized" in login.content
    assert pupils["mine"].last_name.encode() not in login.content


def test_family_account_gets_nothing_even_with_permissions(pupils):
    # A misconfigured guardian given model permissions still has an empty scope.
    from django.contrib.auth.models import Permission

    person = f.UserFactory(is_staff=True, roles=[Role.GUARDIAN])
    person.user_permissions.add(Permission.objects.get(codename="view_student"))
    assert not scoping.is_staff_member(person)
    assert not scoping.scoped(person, Student).exists()


def test_guardian_without_is_staff_is_sent_to_login(client, pupils):
    person = f.UserFactory(roles=[Role.GUARDIAN])
    client.force_login(person)
    response = client.get(changelist(Student))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_staff_without_profile_sees_nothing(client, pupils):
    drifter = f.UserFactory(is_staff=True, roles=[Role.COUNSELOR])
    client.force_login(drifter)
    assert client.get(changelist(Student)).status_code == 302
    assert not scoping.scoped(drifter, Student).exists()


def test_student_autocomplete_is_on_the_access_trail(client, counselor, pupils):
    from skillcore.models import AccessLog

    client.force_login(counselor)
    client.get(reverse("admin:autocomplete"), {"app_label": "interventions", "model_name": "intervention", "field_name": "student", "term": "Mi"})
    row = AccessLog.objects.get(actor=counselor, purpose="admin: autocomplete", model="students.Student", operation="read")
    assert row.student_ids == [pupils["mine"].pk]


def test_teacher_who_is_also_a_parent_sees_own_class_not_own_child(client, teacher, school, other_school):
    child = f.StudentFactory(school=other_school)
    f.GuardianLinkFactory(guardian=teacher, student=child)
    client.force_login(teacher)
    assert client.get(change(child)).status_code == 404


def test_principal_edits_own_school_only(client, principal, pupils):
    client.force_login(principal)
    theirs = pupils["theirs"]
    response = client.post(change(theirs), {"last_name": "Hacked"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.last_name == "Theirs"


def test_teacher_sees_grades_of_own_sections_not_colleagues(client, teacher, school):
    mine = f.SectionFactory(school=school, teacher=teacher)
    colleagues = f.SectionFactory(school=school, session=mine.session, teacher=f.StaffFactory(roles=[Role.TEACHER], schools=[school]))
    student = f.SectionEnrollmentFactory(section=mine).student
    f.SectionEnrollmentFactory(section=colleagues, student=student)
    own = f.GradeFactory(assignment=f.AssignmentFactory(section=mine), student=student)
    other = f.GradeFactory(assignment=f.AssignmentFactory(section=colleagues), student=student)
    client.force_login(teacher)
    assert shown(client.get(reverse("admin:students_grade_changelist"))) == {own.pk}
    assert client.get(change(other)).status_code == 404
    assert shown(client.get(reverse("admin:students_sectionenrollment_changelist"))) == {mine.enrollments.get().pk}


def test_related_services_provider_on_the_team_sees_that_student(client, teacher, other_school):
    # On the IEP team without teaching the student (e.g. a speech therapist with a teacher role).
    iep = f.IEPFactory(student=f.StudentFactory(school=other_school))
    f.IEPTeamMemberFactory(iep=iep, user=teacher, role="related-services")
    client.force_login(teacher)
    assert client.get(change(iep.student)).status_code == 200
    assert client.get(change(iep)).status_code == 200


def test_district_admin_sees_the_trail_of_own_district_staff(client, district_admin, counselor):
    from skillcore.models import AccessLog

    mine = f.AccessLogFactory(actor=counselor)
    f.AccessLogFactory(actor=f.StaffFactory(roles=[Role.COUNSELOR]))  # another district
    client.force_login(district_admin)
    rows = client.get(reverse("admin:skillcore_accesslog_changelist")).context["cl"].result_list
    assert {r.pk for r in rows} == {mine.pk} | set(
        AccessLog.objects.filter(actor=district_admin).values_list("pk", flat=True)
    )


def test_counselor_sees_weekly_analytics_of_own_students_only(client, counselor, pupils):
    import datetime as dt

    from django.utils import timezone

    from interventions.models import StudentAnalytics

    week = {"week_start": dt.date(2026, 9, 7), "week_end": dt.date(2026, 9, 13), "computed_at": timezone.now()}
    mine = StudentAnalytics.objects.create(student=pupils["mine"], **week)
    StudentAnalytics.objects.create(student=pupils["theirs"], **week)
    client.force_login(counselor)
    assert shown(client.get(reverse("admin:interventions_studentanalytics_changelist"))) == {mine.pk}


def test_teacher_on_the_iep_team_of_a_student_they_teach_sees_each_row_once(client, teacher, school, pupils):
    # Taught, managed and on the team: three routes to one student (one UNION ALL subquery).
    section = f.SectionFactory(school=school, teacher=teacher)
    student = f.SectionEnrollmentFactory(section=section, student=f.StudentFactory(school=school)).student
    iep = f.IEPFactory(student=student, case_manager=teacher)
    f.IEPTeamMemberFactory(iep=iep, user=teacher)
    days = [f.AttendanceRecordFactory(student=student, date=dt.date(2026, 9, 1) + dt.timedelta(days=n)) for n in range(3)]
    f.AttendanceRecordFactory(student=pupils["mine"])  # the school's, not taught
    client.force_login(teacher)
    assert shown(client.get(changelist(Student))) == {student.pk}
    response = client.get(reverse("admin:students_attendancerecord_changelist"))
    assert sorted(r.pk for r in response.context["cl"].result_list) == sorted(d.pk for d in days)
    assert response.context["cl"].result_count == 3
