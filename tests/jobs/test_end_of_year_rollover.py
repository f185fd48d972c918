"""end-of-year-rollover: every rule (promote, retain, graduate the top grade, middle-school
top grade promoted in place and flagged, transfers and inactive not rolled, sessions switch,
interventions close "end of year"), the exact dry run, re-run changes nothing, a crash
resumes, bad input exits 2 writing nothing, the two-person admin approval that schedules a
one-off django-q2 run, jobs run, flat query counts."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from interventions.models import Intervention
from scheduling.models import JobRun, RolloverRequest
from skillcore.models import AccessLog
from students import rollover
from students.models import AcademicSession, Role, Student
from tests import factories as f

NOW = dt.datetime(2027, 6, 25, 16, 0, tzinfo=dt.UTC)
ARGS = ["--to", "2027-2028", "--start", "2027-08-30", "--end", "2028-06-16"]


@pytest.fixture
def year(district, school, other_school):
    other_school.lowest_grade, other_school.highest_grade = 6, 8
    other_school.save()
    closing = f.AcademicSessionFactory(district=district, name="2026-2027", start_date=dt.date(2026, 8, 31),
                                       end_date=dt.date(2027, 6, 18), is_current=True)
    f.AcademicSessionFactory(district=district, name="2025-2026", start_date=dt.date(2025, 8, 31),
                             end_date=dt.date(2026, 6, 18), is_current=False)
    S = f.StudentFactory
    w = {
        "closing": closing,
        "s9": S(school=school, grade_level=9),
        "s12": S(school=school, grade_level=12),
        "s12_retained": S(school=school, grade_level=12, retain_next_year=True),
        "s10_retained": S(school=school, grade_level=10, retain_next_year=True),
        "m8": S(school=other_school, grade_level=8),
        "m7": S(school=other_school, grade_level=7),
        "transferred": S(school=school, grade_level=9, transferred_on=dt.date(2027, 3, 1)),
        "inactive": S(school=school, grade_level=9, is_active=False),
        "elsewhere": S(grade_level=9),
    }
    w["int_active"] = f.InterventionFactory(student=w["s9"], opened_at=NOW - dt.timedelta(days=30))
    w["int_closed"] = f.InterventionFactory(student=w["m7"], type="academic", status="closed", opened_at=NOW - dt.timedelta(days=90),
                                            closed_at=NOW - dt.timedelta(days=60), closed_reason="improved")
    w["int_elsewhere"] = f.InterventionFactory(student=w["elsewhere"], opened_at=NOW - dt.timedelta(days=30))
    return w


def grades():
    return dict(Student.objects.values_list("id", "grade_level"))


def approve(district, *, to="2027-2028", start=dt.date(2027, 8, 30), end=dt.date(2028, 6, 16)) -> RolloverRequest:
    """What the command now needs before it runs: a request one system admin filed and a
    second approved (the admin's two-person rule)."""
    asker = f.UserFactory(is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])
    approver = f.UserFactory(is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])
    with time_machine.travel(NOW, tick=False):
        target = rollover.validate(district_id=district.id, to_name=to, start=start, end=end)
        req = rollover.request_create(target=target, requested_by=asker, run_at=NOW, now=NOW)
        return rollover.request_approve(request=req, approver=approver)


def rollover_cmd(district, *extra, args=ARGS):
    out = io.StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("rollover", "--district", str(district.id), *args, *extra, stdout=out)
    return out.getvalue()


def test_rollover_applies_every_rule(district, year):
    approve(district)
    result = json.loads(rollover_cmd(district).strip().splitlines()[-1])
    g = {k: Student.objects.get(pk=v.pk) for k, v in year.items() if isinstance(v, Student)}
    assert g["s9"].grade_level == 10 and g["s9"].is_active
    assert (g["s12"].graduated_on, g["s12"].is_active, g["s12"].exit_date) == (dt.date(2027, 6, 18), False, dt.date(2027, 6, 18))
    assert g["s12"].archived_at == NOW and g["s12"].grade_level == 12
    assert g["s12_retained"].grade_level == 12 and g["s12_retained"].is_active and not g["s12_retained"].retain_next_year
    assert g["s10_retained"].grade_level == 10 and not g["s10_retained"].retain_next_year
    assert g["m8"].grade_level == 9 and g["m7"].grade_level == 8  # the middle school's top grade promoted in place
    assert g["transferred"].grade_level == 9 and g["inactive"].grade_level == 9 and g["elsewhere"].grade_level == 9
    new = AcademicSession.objects.get(district=district, name="2027-2028")
    assert new.is_current and (new.start_date, new.end_date) == (dt.date(2027, 8, 30), dt.date(2028, 6, 16))
    assert not AcademicSession.objects.get(pk=year["closing"].pk).is_current
    ia = Intervention.objects.get(pk=year["int_active"].pk)
    assert (ia.status, ia.closed_reason, ia.closed_at) == ("closed", "end of year", NOW)
    assert Intervention.objects.get(pk=year["int_closed"].pk).closed_reason == "improved"
    assert Intervention.objects.get(pk=year["int_elsewhere"].pk).status == "active"
    assert result == {**result, "graduated": 1, "promoted": 3, "retained": 2, "feeder_transfer": 1, "interventions_closed": 1,
                      "closing_active_students": 6}
    req = RolloverRequest.objects.get()
    assert req.counts["feeder_transfer_student_ids"] == [year["m8"].pk]
    assert req.snapshot["schools"][str(year["s9"].school_id)]["grades"] == {"9": 1, "10": 1, "12": 2}
    assert req.steps_done == list(rollover.STEPS) and req.status == "done"


def test_rerun_changes_nothing(district, year):
    approve(district)
    rollover_cmd(district)
    before = (grades(), list(AcademicSession.objects.values_list("id", "is_current")),
              list(Intervention.objects.values_list("id", "status", "closed_at")))
    out = rollover_cmd(district)
    assert "already done; nothing changed" in out
    assert (grades(), list(AcademicSession.objects.values_list("id", "is_current")),
            list(Intervention.objects.values_list("id", "status", "closed_at"))) == before


def test_dry_run_prints_the_exact_counts_and_writes_nothing(district, year):
    before = grades()
    out = rollover_cmd(district, "--dry-run")
    assert "graduated 1, promoted 3, retained 2, feeder_transfer 1, not_rolled 2, interventions_closed 1" in out
    assert "nothing written" in out
    assert grades() == before and not RolloverRequest.objects.exists()
    assert not AcademicSession.objects.filter(name="2027-2028").exists()
    assert Intervention.objects.get(pk=year["int_active"].pk).status == "active"


def test_a_crash_mid_way_resumes_at_the_first_unfinished_step(district, year, monkeypatch):
    real = rollover.interventions_close_all

    def down(**kwargs):
        raise RuntimeError("database connection lost")

    monkeypatch.setattr(rollover, "interventions_close_all", down)
    approve(district)
    with pytest.raises(CommandError) as exc:
        rollover_cmd(district)
    assert exc.value.returncode == 1 and "run the same command again" in str(exc.value)
    req = RolloverRequest.objects.get()
    assert req.status == "failed" and req.steps_done == list(rollover.STEPS[:-1])
    assert Student.objects.get(pk=year["s9"].pk).grade_level == 10
    monkeypatch.setattr(rollover, "interventions_close_all", real)
    result = json.loads(rollover_cmd(district).strip().splitlines()[-1])
    assert result["steps_run"] == ["close-interventions"]
    assert Student.objects.get(pk=year["s9"].pk).grade_level == 10  # promoted once, not twice
    assert Intervention.objects.get(pk=year["int_active"].pk).closed_reason == "end of year"


@pytest.mark.parametrize("args, message", [
    (["--district", "999999", *ARGS], "unknown district 999999"),
    (["--to", "2025-2026", "--start", "2027-08-30", "--end", "2028-06-16"], "already has a session named '2025-2026'"),
    (["--to", "2027-2028", "--start", "2027-06-01", "--end", "2028-06-16"], "overlaps session '2026-2027'"),
    (["--to", "2027-2028", "--start", "2028-06-16", "--end", "2027-08-30"], "is not after the start date"),
    (["--to", "2027-2028", "--start", "2027-13-01", "--end", "2028-06-16"], "--start '2027-13-01' is not a date"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(district, year, args, message):
    before = (grades(), AcademicSession.objects.count())
    if "--district" not in args:
        args = ["--district", str(district.id), *args]
    with pytest.raises(CommandError) as exc:
        call_command("rollover", *args)
    assert exc.value.returncode == 2 and message in str(exc.value) and "\n" not in str(exc.value)
    assert (grades(), AcademicSession.objects.count()) == before and not RolloverRequest.objects.exists()


def _statements(district, school, n):
    for _ in range(n):
        f.StudentFactory(school=school, grade_level=9)
        f.StudentFactory(school=school, grade_level=12)
    f.AcademicSessionFactory(district=district, name="2026-2027", is_current=True)
    approve(district)
    with CaptureQueriesContext(connection) as ctx:
        rollover_cmd(district)
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_query_count_is_flat_in_the_number_of_students():
    small = _statements(*(lambda d: (d, f.SchoolFactory(district=d)))(f.DistrictFactory()), 2)
    large = _statements(*(lambda d: (d, f.SchoolFactory(district=d)))(f.DistrictFactory()), 15)
    assert small == large


# -- the admin: two system admins, a one-off schedule --------------------------------------------
@pytest.fixture
def second_admin(db):
    return f.UserFactory(username="sysadmin2", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])


def test_admin_request_needs_a_second_admin_and_schedules_a_one_off_run(client, district, year, system_admin, second_admin):
    client.force_login(system_admin)
    url = "/admin/scheduling/rolloverrequest/"
    bad = client.post(url + "add/", {"district": district.id, "to_name": "2027-2028", "start_date": "2027-08-30",
                                     "end_date": "2027-08-01", "run_at_0": "2027-06-30", "run_at_1": "18:00"})
    assert bad.status_code == 200 and "end_date" in bad.context["adminform"].form.errors
    ok = client.post(url + "add/", {"district": district.id, "to_name": "2027-2028", "start_date": "2027-08-30",
                                    "end_date": "2028-06-16", "run_at_0": "2027-06-30", "run_at_1": "18:00"})
    assert ok.status_code == 302, ok.content[:2000]
    req = RolloverRequest.objects.get()
    assert req.requested_by == system_admin and req.status == "pending"
    # The one who asked cannot approve.
    client.post(url, {"action": "approve_and_schedule", "_selected_action": [req.pk]})
    req.refresh_from_db()
    assert req.status == "pending" and not Schedule.objects.filter(name__startswith="skillcore:rollover:").exists()
    # A second system admin approves: a one-off schedule at run_at.
    with time_machine.travel(NOW, tick=False):
        client.force_login(second_admin)  # a session opened now, so it has not expired at NOW
        client.post(url, {"action": "approve_and_schedule", "_selected_action": [req.pk]})
    req.refresh_from_db()
    assert req.status == "scheduled" and req.approved_by == second_admin
    q = Schedule.objects.get(name=f"skillcore:rollover:{req.pk}")
    assert q.schedule_type == Schedule.ONCE and q.next_run == req.run_at == dt.datetime(2027, 6, 30, 18, tzinfo=dt.UTC)
    assert q.func == rollover.RUN_FUNC
    # The schedule fires: the task runs the job through the runner.
    with time_machine.travel(req.run_at + dt.timedelta(seconds=20), tick=False):
        run = rollover.run_approved(**eval(q.kwargs))  # noqa: S307 - the schedule's own repr
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert run.result["promoted"] == 3 and Student.objects.get(pk=year["s9"].pk).grade_level == 10
    req.refresh_from_db()
    assert req.status == "done" and req.job_run_id == run.pk
    # A redelivered task runs nothing; a later run of the job finds no request left.
    with time_machine.travel(req.run_at + dt.timedelta(hours=1), tick=False):
        assert rollover.run_approved(request_id=req.pk) is None
        from scheduling.runner import run_sync
        assert run_sync(job_slug="end-of-year-rollover", district=district).result == {"requests": 0}


def test_non_admins_cannot_open_rollover_requests(client, district_admin):
    client.force_login(district_admin)
    assert client.get("/admin/scheduling/rolloverrequest/add/").status_code == 403


def test_jobs_run_command_runs_the_approved_request(district, year, system_admin, second_admin):
    with time_machine.travel(NOW, tick=False):
        target = rollover.validate(district_id=district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                                   end=dt.date(2028, 6, 16))
        req = rollover.request_create(target=target, requested_by=system_admin, run_at=NOW, now=NOW)
        rollover.request_approve(request=req, approver=second_admin)
        call_command("jobs", "run", "end-of-year-rollover", "--district", str(district.id), "--as-of", NOW.isoformat(),
                     stdout=io.StringIO())
    run = JobRun.objects.get(job="end-of-year-rollover")
    assert run.status == JobRun.Status.SUCCEEDED and run.result["graduated"] == 1
    assert RolloverRequest.objects.get().status == "done"


# -- approval cannot be bypassed from the shell -------------------------------------------------
def world_state():
    """Everything a rollover (or a refusal) could write."""
    return (grades(), list(AcademicSession.objects.order_by("id").values_list("id", "name", "is_current")),
            list(Intervention.objects.order_by("id").values_list("id", "status", "closed_at")),
            list(RolloverRequest.objects.order_by("id").values_list("id", "status", "steps_done", "approved_by", "error")),
            AccessLog.objects.count(), JobRun.objects.count())


def test_command_files_a_request_and_rolls_nothing_over_until_a_second_admin_approves(district, year):
    before = world_state()
    out = rollover_cmd(district)
    req = RolloverRequest.objects.get()
    assert (req.status, req.approved_by, req.requested_by, req.steps_done) == ("pending", None, None, [])
    assert f"filed rollover request {req.pk}" in out and "a system admin must approve it" in out
    assert world_state()[:3] == before[:3]  # no student, session or intervention touched


def test_command_refuses_a_pending_request_exit_2_one_line_nothing_written(district, year, system_admin):
    with time_machine.travel(NOW, tick=False):
        target = rollover.validate(district_id=district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                                   end=dt.date(2028, 6, 16))
        req = rollover.request_create(target=target, requested_by=system_admin, run_at=NOW, now=NOW)
    assert req.approved_by is None
    before = world_state()
    with pytest.raises(CommandError) as exc:
        rollover_cmd(district)
    message = str(exc.value)
    assert exc.value.returncode == 2 and "\n" not in message
    assert f"rollover request {req.pk}" in message and "waiting for approval" in message and "asked by sysadmin" in message
    assert world_state() == before
    # The dry run needs no approval, and still writes nothing but its trail rows.
    out = rollover_cmd(district, "--dry-run")
    assert "graduated 1, promoted 3" in out and "nothing written" in out
    assert world_state()[:4] == before[:4]


def test_command_refuses_a_cancelled_request(district, year):
    req = approve(district)
    RolloverRequest.objects.filter(pk=req.pk).update(status=RolloverRequest.Status.CANCELLED)
    before = world_state()
    with pytest.raises(CommandError) as exc:
        rollover_cmd(district)
    assert exc.value.returncode == 2 and "was cancelled" in str(exc.value)
    assert world_state() == before


def test_the_service_itself_refuses_an_unapproved_request(district, year, system_admin):
    # Whatever calls it (a new command, a shell session), execute() checks the approval in the
    # same UPDATE that marks the request running.
    with time_machine.travel(NOW, tick=False):
        target = rollover.validate(district_id=district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                                   end=dt.date(2028, 6, 16))
        req = rollover.request_create(target=target, requested_by=system_admin, run_at=NOW, now=NOW)
    before = world_state()
    with pytest.raises(rollover.NotApproved):
        rollover.execute(request=req, now=NOW)
    assert world_state() == before


def test_command_runs_an_approved_request(district, year):
    req = approve(district)
    result = json.loads(rollover_cmd(district).strip().splitlines()[-1])
    assert result["request"] == req.pk and result["graduated"] == 1 and result["promoted"] == 3
    req.refresh_from_db()
    assert req.status == "done" and req.steps_done == list(rollover.STEPS)
    # Its one-off schedule fires later and finds nothing left to do.
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        run = rollover.run_approved(request_id=req.pk)
    assert run.status == JobRun.Status.SUCCEEDED and run.result == {"requests": 0}
    assert Student.objects.get(pk=year["s9"].pk).grade_level == 10  # promoted once


# -- the admin form: a missing field is a form error, never a 500 --------------------------------
ADD = {"district": "", "to_name": "2027-2028", "start_date": "2027-08-30", "end_date": "2028-06-16",
       "run_at_0": "2027-06-30", "run_at_1": "18:00"}


@pytest.mark.parametrize("missing", ["district", "to_name", "start_date", "end_date"])
def test_admin_add_with_a_missing_field_is_a_form_error(client, district, year, system_admin, missing):
    client.force_login(system_admin)
    data = {**ADD, "district": district.id, missing: ""}
    before = world_state()
    response = client.post("/admin/scheduling/rolloverrequest/add/", data)
    assert response.status_code == 200
    assert missing in response.context["adminform"].form.errors
    assert world_state() == before


def test_admin_post_to_a_filed_request_is_a_form_error_not_a_500(client, district, year, system_admin):
    with time_machine.travel(NOW, tick=False):
        target = rollover.validate(district_id=district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                                   end=dt.date(2028, 6, 16))
        req = rollover.request_create(target=target, requested_by=system_admin, run_at=NOW, now=NOW)
    client.force_login(system_admin)
    before = world_state()
    # What the tester posted: the change page's form without a district (every field is read-only there).
    for data in ({}, {"to_name": "2099-2100"}, {**ADD, "district": district.id}):
        response = client.post(f"/admin/scheduling/rolloverrequest/{req.pk}/change/", data)
        assert response.status_code == 200
        form = response.context["adminform"].form
        assert "cannot be changed" in " ".join(form.non_field_errors())
        assert b"cannot be changed" in response.content
    assert world_state() == before
