"""inactive-user-cleanup: 2-year and 1-year boundaries per rule, superusers untouched, nothing
deleted, an audit row per change, dry run writes nothing, idempotency, query counts, CLI."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling.models import JobRun, UserLifecycleChange
from skillcore.models import AccessLog
from students.inactive_users import years_before
from students.models import Role, StaffProfile, Student
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

User = get_user_model()
SLUG = "inactive-user-cleanup"
SUNDAY = dt.date(2026, 11, 29)
TWO_YEARS = dt.date(2024, 11, 29)
ONE_YEAR = dt.date(2025, 11, 29)


def at(district, day: dt.date, hour=12):
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=district.zone)


def run_on(district, day=SUNDAY, *, again=False) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, 2)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL if again else JobRun.Trigger.SCHEDULE)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


@pytest.fixture
def people(district, school):
    d = district
    p = {
        # Teachers: exactly 2 years (on the boundary date) is 2+ years; a day less is not.
        "teacher_old": f.StaffFactory(username="t_old", roles=[Role.TEACHER], schools=[school], last_login=at(d, TWO_YEARS, 23)),
        "teacher_recent": f.StaffFactory(username="t_recent", roles=[Role.TEACHER], schools=[school],
                                         last_login=at(d, TWO_YEARS + dt.timedelta(days=1), 0)),
        # Never logged in: the join date counts.
        "teacher_never": f.StaffFactory(username="t_never", roles=[Role.TEACHER], schools=[school], last_login=None,
                                        date_joined=at(d, dt.date(2023, 1, 9))),
        # A teacher who is also a counselor is "other staff": flagged, not deactivated.
        "teacher_counselor": f.StaffFactory(username="t_couns", roles=[Role.TEACHER, Role.COUNSELOR], schools=[school],
                                            last_login=at(d, dt.date(2020, 1, 1))),
        # Superusers and system admins are never touched.
        "superuser": f.StaffFactory(username="root", roles=[Role.TEACHER], schools=[school], is_superuser=True,
                                    last_login=at(d, dt.date(2019, 1, 1))),
        "sysadmin": f.StaffFactory(username="sys", roles=[Role.SYSTEM_ADMIN, Role.PRINCIPAL], schools=[school],
                                   last_login=at(d, dt.date(2019, 1, 1))),
        # Other staff: 1-year boundary.
        "principal_old": f.StaffFactory(username="p_old", roles=[Role.PRINCIPAL], schools=[school], last_login=at(d, ONE_YEAR, 8)),
        "principal_recent": f.StaffFactory(username="p_recent", roles=[Role.PRINCIPAL], schools=[school],
                                           last_login=at(d, ONE_YEAR + dt.timedelta(days=1), 8)),
    }
    # Students: graduated exactly 2 years ago (archived), transferred 2 years minus a day (kept).
    grad_user = f.UserFactory(username="grad_login", roles=[Role.STUDENT])
    p["graduate"] = f.StudentFactory(school=school, graduated_on=TWO_YEARS, exit_date=TWO_YEARS, is_active=False,
                                     enrollment_date=dt.date(2020, 9, 1), user=grad_user)
    p["grad_user"] = grad_user
    p["transfer_recent"] = f.StudentFactory(school=school, transferred_on=TWO_YEARS + dt.timedelta(days=1),
                                            exit_date=TWO_YEARS + dt.timedelta(days=1), enrollment_date=dt.date(2020, 9, 1))
    p["current"] = f.StudentFactory(school=school)
    # Guardians: all children gone 2+ years -> deactivated; one child still enrolled -> kept.
    p["guardian_gone"] = f.GuardianLinkFactory(student=p["graduate"]).guardian
    p["guardian_mixed"] = f.GuardianLinkFactory(student=p["graduate"]).guardian
    f.GuardianLinkFactory(guardian=p["guardian_mixed"], student=p["current"])
    p["guardian_recent"] = f.GuardianLinkFactory(student=p["transfer_recent"]).guardian
    # Someone in another district is out of scope whatever their dates.
    elsewhere = f.SchoolFactory(district=f.DistrictFactory(name="Elsewhere"))
    p["far_teacher"] = f.StaffFactory(username="far", roles=[Role.TEACHER], schools=[elsewhere], last_login=at(d, dt.date(2019, 1, 1)))
    return p


def active(user) -> bool:
    return User.objects.get(pk=user.pk).is_active


@pytest.mark.django_db
def test_rules_and_boundaries(district, people):
    run = run_on(district)
    p = people
    assert not active(p["teacher_old"]) and not active(p["teacher_never"])
    assert active(p["teacher_recent"])
    assert active(p["teacher_counselor"]) and StaffProfile.objects.get(user=p["teacher_counselor"]).flagged_for_review_at
    assert active(p["superuser"]) and active(p["sysadmin"])
    assert StaffProfile.objects.get(user=p["sysadmin"]).flagged_for_review_at is None
    assert StaffProfile.objects.get(user=p["principal_old"]).flagged_for_review_at == local_slot(district, 2026, 11, 29, 2)
    assert active(p["principal_old"])  # flagged, not deactivated
    assert StaffProfile.objects.get(user=p["principal_recent"]).flagged_for_review_at is None
    graduate = Student.objects.get(pk=p["graduate"].pk)
    assert graduate.archived_at is not None and not graduate.is_active and not active(p["grad_user"])
    assert Student.objects.get(pk=p["transfer_recent"].pk).archived_at is None
    assert not active(p["guardian_gone"]) and active(p["guardian_mixed"]) and active(p["guardian_recent"])
    assert active(p["far_teacher"])
    assert run.result == {
        "as_of": "2026-11-29", "changes": 7, "teachers_deactivated": 2, "students_archived": 1,
        "student_accounts_deactivated": 1, "guardians_deactivated": 1, "staff_flagged": 2,
    }
    # Nothing deleted; one audit row per change with before and after.
    assert User.objects.filter(pk=p["teacher_old"].pk).exists() and Student.objects.filter(pk=graduate.pk).exists()
    audit = {(c.rule, c.user_id, c.student_id): c for c in UserLifecycleChange.objects.all()}
    assert len(audit) == 7
    row = audit[("teacher-inactive-2y", p["teacher_old"].pk, None)]
    assert row.before["is_active"] is True and row.after == {"is_active": False} and row.job_run_id == run.pk
    archived = audit[("student-left-2y", None, graduate.pk)]
    assert archived.after["is_active"] is False and archived.after["archived_at"]
    # The student rows were written inside the access trail.
    assert AccessLog.objects.filter(job_run_id=run.pk, model="students.Student", operation="update").exists()


def test_years_before_on_29_february():
    assert years_before(dt.date(2028, 2, 29), 2) == dt.date(2026, 2, 28)
    assert years_before(dt.date(2026, 11, 29), 2) == dt.date(2024, 11, 29)


@pytest.mark.django_db
def test_same_slot_twice_changes_and_audits_nothing_more(district, people):
    run_on(district)
    snapshot = (
        list(User.objects.order_by("pk").values_list("pk", "is_active")),
        list(StaffProfile.objects.order_by("pk").values_list("pk", "flagged_for_review_at")),
        list(Student.objects.order_by("pk").values_list("pk", "archived_at", "is_active")),
        UserLifecycleChange.objects.count(),
    )
    again = run_on(district, again=True)
    assert again.result["changes"] == 0
    assert snapshot == (
        list(User.objects.order_by("pk").values_list("pk", "is_active")),
        list(StaffProfile.objects.order_by("pk").values_list("pk", "flagged_for_review_at")),
        list(Student.objects.order_by("pk").values_list("pk", "archived_at", "is_active")),
        UserLifecycleChange.objects.count(),
    )


@pytest.mark.django_db
def test_dry_run_lists_and_writes_nothing(district, people):
    users = list(User.objects.order_by("pk").values_list("pk", "is_active"))
    out = io.StringIO()
    call_command("inactive_users", "--district", str(district.pk), "--as-of", "2026-11-29", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "would deactivate: teacher t_old [teacher-inactive-2y]" in text
    assert "would flag: staff p_old [staff-inactive-1y]" in text
    assert "would archive: student" in text and "t_recent" not in text and "root" not in text
    assert text.strip().endswith("nothing written")
    assert "7 changes" in text
    assert list(User.objects.order_by("pk").values_list("pk", "is_active")) == users
    assert not UserLifecycleChange.objects.exists() and not JobRun.objects.exists()
    assert not Student.objects.filter(archived_at__isnull=False).exists()
    assert not StaffProfile.objects.filter(flagged_for_review_at__isnull=False).exists()
    # Reading student records is still recorded (FERPA): the trail names the dry run.
    assert AccessLog.objects.filter(actor_label="manage.py inactive_users --dry-run").exists()


@pytest.mark.django_db
def test_command_without_dry_run_runs_the_job(district, people):
    out = io.StringIO()
    with time_machine.travel(at(district, SUNDAY, 9), tick=False):
        call_command("inactive_users", "--district", str(district.pk), "--as-of", "2026-11-29", stdout=out)
    assert json.loads(out.getvalue())["changes"] == 7
    assert JobRun.objects.get(job=SLUG).trigger == "manual"


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (["--district", "999999", "--dry-run"], "unknown district 999999"),
    (["--as-of", "yesterday", "--dry-run"], "is not a date"),
])
def test_command_bad_input_exits_2_and_writes_nothing(district, people, args, message):
    if "--district" not in args:
        args = ["--district", str(district.pk), *args]
    with pytest.raises(CommandError) as err:
        call_command("inactive_users", *args)
    assert err.value.returncode == 2 and message in str(err.value)
    assert not UserLifecycleChange.objects.exists() and not AccessLog.objects.exists()


@pytest.mark.django_db
def test_query_count_is_flat(district, school):
    def add(n):
        for _ in range(n):
            f.StaffFactory(roles=[Role.TEACHER], schools=[school], last_login=at(district, dt.date(2020, 1, 1)))
            s = f.StudentFactory(school=school, graduated_on=dt.date(2021, 6, 20), exit_date=dt.date(2021, 6, 20),
                                 enrollment_date=dt.date(2017, 9, 1), user=f.UserFactory(roles=[Role.STUDENT]))
            f.GuardianLinkFactory(student=s)
            f.StaffFactory(roles=[Role.COUNSELOR], schools=[school], last_login=at(district, dt.date(2024, 1, 1)))

    def queries(again):
        with CaptureQueriesContext(connection) as ctx:
            run = run_on(district, again=again)
        return len(ctx.captured_queries), run.result["changes"]

    add(2)
    small, changes = queries(False)
    assert changes == 10
    add(8)
    large, changes = queries(True)
    assert changes == 40 and large == small


@pytest.mark.django_db
def test_jobs_run_command(district, people):
    out = io.StringIO()
    with time_machine.travel(at(district, SUNDAY, 9), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.pk), "--as-of", "2026-11-29T02:00", "--json", stdout=out)
    assert json.loads(out.getvalue())["status"] == "succeeded"
    assert not active(people["teacher_old"])


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_change_and_audit_each_person_once(district, people):
    """PostgreSQL: two connections apply the cleanup at the same moment (a manual run
    during the scheduled one): every change is made and audited exactly once."""
    import threading

    from students.inactive_users import inactive_users_apply

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (row locks across connections)")
    barrier, results, errors = threading.Barrier(2), [], []

    def one_run(label):
        try:
            barrier.wait()
            results.append(len(inactive_users_apply(
                district=district, as_of=SUNDAY, at=local_slot(district, 2026, 11, 29, 2), job_run_id=None, actor_label=label,
            )))
        except Exception as exc:  # reported below, with the thread's result
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_run, args=(f"run {i}",)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert sorted(results) == [0, 7]
    assert UserLifecycleChange.objects.count() == 7
    assert UserLifecycleChange.objects.values("rule", "user_id", "student_id").distinct().count() == 7
