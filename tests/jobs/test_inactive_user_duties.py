"""inactive-user-cleanup and current duties: a teacher inactive 2+ years who still holds a
duty (a current-session section, an active student's counseling, an active IEP or 504 team,
an emergency test group, the last two system admins) is flagged for an admin with each duty
named, never deactivated; the same teacher without a current duty is deactivated."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from iep.models import IEP, Section504Plan
from scheduling.models import JobRun, UserLifecycleChange
from students.inactive_users import current_duties, inactive_users_plan
from students.models import Role, StaffProfile
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

User = get_user_model()
SLUG = "inactive-user-cleanup"
SUNDAY = dt.date(2026, 11, 29)
LONG_AGO = dt.datetime(2020, 1, 6, 12, tzinfo=dt.UTC)


def run_on(district, day=SUNDAY, *, again=False) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, 2)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL if again else JobRun.Trigger.SCHEDULE)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def teacher(school, username="t_duty"):
    return f.StaffFactory(username=username, roles=[Role.TEACHER], schools=[school], last_login=LONG_AGO)


def _section(school, user, *, current):
    session = f.AcademicSessionFactory(district=school.district, name="2026-2027" if current else "2025-2026",
                                       is_current=current)
    f.SectionFactory(school=school, session=session, teacher=user, course_name="Biology", period="2")


def _counselor(school, user, *, current):
    f.StudentFactory(school=school, counselor=user, is_active=current)
    f.StudentFactory(school=school, counselor=user, is_active=current)


def _case_manager(school, user, *, current):
    f.IEPFactory(student=f.StudentFactory(school=school), case_manager=user,
                 status=IEP.Status.ACTIVE if current else IEP.Status.CLOSED)


def _iep_member(school, user, *, current):
    iep = f.IEPFactory(student=f.StudentFactory(school=school), status=IEP.Status.ACTIVE if current else IEP.Status.EXPIRED)
    f.IEPTeamMemberFactory(iep=iep, user=user)


def _coordinator_504(school, user, *, current):
    f.Section504PlanFactory(student=f.StudentFactory(school=school), coordinator=user,
                            status=Section504Plan.Status.ACTIVE if current else Section504Plan.Status.CLOSED)


def _implementer_504(school, user, *, current):
    plan = f.Section504PlanFactory(student=f.StudentFactory(school=school),
                                   status=Section504Plan.Status.ACTIVE if current else Section504Plan.Status.CLOSED)
    # Two accommodations of one plan: one plan is named.
    for text in ("Extended time", "Preferential seating"):
        f.AccommodationFactory(plan=plan, description=text).implementers.add(user)


def _emergency_group(school, user, *, current):
    if current:
        school.district.emergency_test_group.add(user)


DUTIES = {
    "section": (_section, "teaches current-session sections: Biology (2, 2026-2027)"),
    "counselor": (_counselor, "counselor of 2 active students"),
    "case-manager": (_case_manager, "case manager of 1 active IEP"),
    "iep-team": (_iep_member, "member of 1 active IEP team"),
    "504-coordinator": (_coordinator_504, "coordinator of 1 active 504 plan"),
    "504-implementer": (_implementer_504, "implements accommodations of 1 active 504 plan"),
    "emergency-test-group": (_emergency_group, "in the emergency test group of Lakeside Unified"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(DUTIES))
def test_a_teacher_with_a_current_duty_is_flagged_with_it_not_deactivated(district, school, kind):
    give, named = DUTIES[kind]
    user = teacher(school)
    give(school, user, current=True)
    run = run_on(district)
    assert User.objects.get(pk=user.pk).is_active
    flagged_at = local_slot(district, 2026, 11, 29, 2)
    assert StaffProfile.objects.get(user=user).flagged_for_review_at == flagged_at
    row = UserLifecycleChange.objects.get(user=user)
    assert (row.action, row.rule) == ("flag", "teacher-inactive-2y-holds-duties")
    assert row.after["duties"] == [named] and dt.datetime.fromisoformat(row.after["flagged_for_review_at"]) == flagged_at
    assert row.before["is_active"] is True and row.before["flagged_for_review_at"] is None
    assert run.result["teachers_deactivated"] == 0 and run.result["staff_flagged"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(DUTIES))
def test_a_duty_that_is_no_longer_current_does_not_keep_the_account(district, school, kind):
    give, _ = DUTIES[kind]
    user = teacher(school)
    give(school, user, current=False)
    run = run_on(district)
    assert not User.objects.get(pk=user.pk).is_active
    assert UserLifecycleChange.objects.get(user=user).rule == "teacher-inactive-2y"
    assert run.result["teachers_deactivated"] == 1


@pytest.mark.django_db
def test_every_duty_is_named_and_the_flag_is_written_once(district, school):
    user = teacher(school)
    for give, _ in DUTIES.values():
        give(school, user, current=True)
    run_on(district)
    assert UserLifecycleChange.objects.get(user=user).after["duties"] == [named for _, named in DUTIES.values()]
    # Next week, still inactive and still holding the duties: nothing new.
    again = run_on(district, SUNDAY + dt.timedelta(days=7))
    assert again.result["changes"] == 0 and User.objects.get(pk=user.pk).is_active


@pytest.mark.django_db
def test_once_the_duty_is_reassigned_the_next_run_deactivates(district, school):
    user = teacher(school)
    _section(school, user, current=True)
    run_on(district)
    assert User.objects.get(pk=user.pk).is_active
    user.sections_taught.update(teacher=None)  # the admin gives the class to someone else
    run = run_on(district, SUNDAY + dt.timedelta(days=7))
    assert not User.objects.get(pk=user.pk).is_active and run.result["teachers_deactivated"] == 1
    assert list(UserLifecycleChange.objects.filter(user=user).order_by("at").values_list("action", "rule")) == [
        ("flag", "teacher-inactive-2y-holds-duties"), ("deactivate", "teacher-inactive-2y"),
    ]


@pytest.mark.django_db
def test_other_staff_flags_name_their_duties(district, school):
    counselor = f.StaffFactory(username="c_old", roles=[Role.COUNSELOR], schools=[school], last_login=LONG_AGO)
    _counselor(school, counselor, current=True)
    idle = f.StaffFactory(username="p_old", roles=[Role.PRINCIPAL], schools=[school], last_login=LONG_AGO)
    run_on(district)
    assert UserLifecycleChange.objects.get(user=counselor).after["duties"] == ["counselor of 2 active students"]
    assert "duties" not in UserLifecycleChange.objects.get(user=idle).after


@pytest.mark.django_db
def test_the_last_two_system_admins_hold_the_two_person_approval(district, school):
    # System admins (superusers: only they approve a rollover) are never deactivated; the
    # duty says why an admin must not remove one of the last two by hand either.
    admins = [f.StaffFactory(username=f"root{i}", roles=[Role.TEACHER], schools=[school], is_superuser=True,
                             last_login=LONG_AGO) for i in range(2)]
    named = "one of the last 2 system admins (two-person rollover approval)"
    assert current_duties(User.objects.filter(is_superuser=True)) == {a.pk: [named] for a in admins}
    run = run_on(district)
    assert all(User.objects.get(pk=a.pk).is_active for a in admins) and run.result["changes"] == 0
    # A third active system admin: none of the three is the last two any more.
    f.StaffFactory(username="root2", is_superuser=True)
    assert current_duties(User.objects.filter(is_superuser=True)) == {}
    # An inactive superuser does not count towards the two.
    User.objects.filter(username="root2").update(is_active=False)
    assert set(current_duties(User.objects.filter(is_superuser=True))) == {a.pk for a in admins}


@pytest.mark.django_db
def test_dry_run_names_the_duties(district, school):
    user = teacher(school)
    _section(school, user, current=True)
    [change] = inactive_users_plan(district=district, as_of=SUNDAY)
    assert change.rule == "teacher-inactive-2y-holds-duties" and "Biology" in change.label
    assert User.objects.get(pk=user.pk).is_active and not UserLifecycleChange.objects.exists()


@pytest.mark.django_db
def test_query_count_does_not_grow_with_duties(district, school):
    session = f.AcademicSessionFactory(district=district, name="2026-2027")

    def add(n):
        for _ in range(n):
            user = f.StaffFactory(roles=[Role.TEACHER], schools=[school], last_login=LONG_AGO)
            f.SectionFactory(school=school, session=session, teacher=user)
            f.IEPTeamMemberFactory(iep=f.IEPFactory(student=f.StudentFactory(school=school, counselor=user)), user=user)
            district.emergency_test_group.add(user)
            f.StaffFactory(roles=[Role.TEACHER], schools=[school], last_login=LONG_AGO)  # no duty: deactivated

    def queries(day):
        with CaptureQueriesContext(connection) as ctx:
            run = run_on(district, day)
        return len(ctx.captured_queries), run.result

    add(2)
    small, result = queries(SUNDAY)
    assert result["staff_flagged"] == 2 and result["teachers_deactivated"] == 2
    add(8)
    large, result = queries(SUNDAY + dt.timedelta(days=7))
    assert result["staff_flagged"] == 8 and result["teachers_deactivated"] == 8 and large == small


@pytest.mark.django_db
def test_the_admin_lists_the_duties_of_a_flag(district, school, client):
    user = teacher(school)
    _iep_member(school, user, current=True)
    run_on(district)
    client.force_login(f.StaffFactory(username="admin", is_superuser=True, is_staff=True))
    page = client.get("/admin/scheduling/userlifecyclechange/?rule=teacher-inactive-2y-holds-duties")
    assert page.status_code == 200 and "member of 1 active IEP team" in page.content.decode()
