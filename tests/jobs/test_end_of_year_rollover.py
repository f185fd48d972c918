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
from scheduling.models import Incident, JobRun, RolloverRequest
from skillcore.models import AccessLog
from students import rollover
from students.models import AcademicSession, Role, School, Student
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


def dry_run_counts(out: str) -> dict[str, int]:
    """The dry run's table read back: each labelled row, aligned, with its count on the right."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("WHAT A RUN NOW WOULD DO"))
    width = len(lines[header])
    counts = {}
    for key, label in rollover.COUNT_LABELS.items():
        row = next((line for line in lines[header + 1:] if line.startswith(label + "  ")), None)
        if row is not None:
            assert len(row) == width  # aligned: every count ends under the header's last column
            counts[key] = int(row[len(label):].strip().replace(",", ""))
    return counts


def test_dry_run_prints_the_exact_counts_and_writes_nothing(district, year):
    before = grades()
    out = rollover_cmd(district, "--dry-run")
    assert dry_run_counts(out) == {"active_students": 6, "graduated": 1, "promoted": 3, "retained": 2,
                                   "moved_to_feeder": 0, "feeder_transfer": 1, "not_rolled": 2, "interventions_closed": 1}
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
    # A line break typed into the id is quoted, so the error stays one line (found by the
    # property test in tests/reliability/test_bad_input.py).
    (["--district", "\n0", *ARGS], "unknown district '\\n0'"),
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
def test_a_rollover_time_the_district_clocks_skip_is_refused_with_a_form_error(client, district, year, system_admin):
    """02:30 on 2027-03-14 does not exist in New York (the clocks jump from 02:00 to 03:00)."""
    client.force_login(system_admin)
    response = client.post("/admin/scheduling/rolloverrequest/add/", {
        "district": district.id, "to_name": "2027-2028", "start_date": "2027-08-30", "end_date": "2028-06-16",
        "run_at_0": "2027-03-14", "run_at_1": "02:30"})
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["run_at"]
    assert "2027-03-14 02:30 does not exist in America/New_York" in error, error
    assert not RolloverRequest.objects.exists()


def _file_request(district, asker, *, run_at=NOW):
    """A rollover of ``district`` to 2027-2028 filed by ``asker`` (pending), at NOW."""
    target = rollover.validate(district_id=district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                               end=dt.date(2028, 6, 16))
    return rollover.request_create(target=target, requested_by=asker, run_at=run_at, now=NOW)


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
        approved = client.post(url, {"action": "approve_and_schedule", "_selected_action": [req.pk]}, follow=True)
    req.refresh_from_db()
    assert req.status == "scheduled" and req.approved_by == second_admin
    # "18:00" was typed for a New York district: 18:00 New York (EDT), said so in its time.
    q = Schedule.objects.get(name=f"skillcore:rollover:{req.pk}")
    assert q.schedule_type == Schedule.ONCE and q.next_run == req.run_at == dt.datetime(2027, 6, 30, 22, tzinfo=dt.UTC)
    said = [m.message for m in approved.context["messages"]]  # the earlier posts' messages first
    assert said[-1] == f"{district}: rollover to 2027-2028 scheduled for Wed 2027-06-30 18:00 EDT (UTC\u221204:00).", said
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
        req = _file_request(district, system_admin)
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
        req = _file_request(district, system_admin)
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
    assert dry_run_counts(out)["graduated"] == 1 and dry_run_counts(out)["promoted"] == 3 and "nothing written" in out
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
        req = _file_request(district, system_admin)
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
        req = _file_request(district, system_admin)
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


# -- feeder schools: the top grade moves to the school it feeds ----------------------------------
@pytest.fixture
def feeders(district):
    """Elementary (K-5) -> middle (6-8) -> high (9-12), and a middle school that names no feeder."""
    high = f.SchoolFactory(district=district, name="Lakeside High", lowest_grade=9, highest_grade=12)
    middle = f.SchoolFactory(district=district, name="Hillcrest Middle", lowest_grade=6, highest_grade=8, feeds_into=high)
    elementary = f.SchoolFactory(district=district, name="Maple Elementary", lowest_grade=0, highest_grade=5,
                                 feeds_into=middle)
    westside = f.SchoolFactory(district=district, name="Westside Middle", lowest_grade=6, highest_grade=8)
    closing = f.AcademicSessionFactory(district=district, name="2026-2027", start_date=dt.date(2026, 8, 31),
                                       end_date=dt.date(2027, 6, 18), is_current=True)
    elem_counselor = f.StaffFactory(roles=[Role.COUNSELOR], schools=[elementary])
    both_counselor = f.StaffFactory(roles=[Role.COUNSELOR], schools=[elementary, middle])
    S = f.StudentFactory
    return {
        "closing": closing, "high": high, "middle": middle, "elementary": elementary, "westside": westside,
        "elem_counselor": elem_counselor, "both_counselor": both_counselor,
        "e5": S(school=elementary, grade_level=5, counselor=elem_counselor),
        "e5_both": S(school=elementary, grade_level=5, counselor=both_counselor),
        "e5_retained": S(school=elementary, grade_level=5, retain_next_year=True, counselor=elem_counselor),
        "e5_transferred": S(school=elementary, grade_level=5, transferred_on=dt.date(2027, 3, 1)),
        "e5_inactive": S(school=elementary, grade_level=5, is_active=False),
        "e4": S(school=elementary, grade_level=4, counselor=elem_counselor),
        "m8": S(school=middle, grade_level=8),
        "m7": S(school=middle, grade_level=7),
        "w8": S(school=westside, grade_level=8),
        "h12": S(school=high, grade_level=12),
    }


def placed():
    return {pk: (school, grade) for pk, school, grade in Student.objects.values_list("id", "school_id", "grade_level")}


def test_the_top_grade_is_enrolled_in_the_school_it_feeds_in_the_next_grade(district, feeders):
    w = feeders
    approve(district)
    result = json.loads(rollover_cmd(district).strip().splitlines()[-1])
    now = {k: Student.objects.get(pk=v.pk) for k, v in w.items() if isinstance(v, Student)}
    assert (now["e5"].school, now["e5"].grade_level) == (w["middle"], 6)  # 5th grader: 6th at the middle school
    assert (now["e5_both"].school, now["e5_both"].grade_level) == (w["middle"], 6)
    assert (now["m8"].school, now["m8"].grade_level) == (w["high"], 9)  # and the 8th grader: 9th at the high school
    assert (now["e4"].school, now["e4"].grade_level) == (w["elementary"], 5)
    assert (now["m7"].school, now["m7"].grade_level) == (w["middle"], 8)
    # Same rules as before for the retained (stays, in grade 5, at the elementary), transfers and inactive.
    assert (now["e5_retained"].school, now["e5_retained"].grade_level, now["e5_retained"].retain_next_year) == (
        w["elementary"], 5, False)
    for k in ("e5_transferred", "e5_inactive"):
        assert (now[k].school, now[k].grade_level) == (w["elementary"], 5)
    # No feeder: promoted in place and listed, as before.
    assert (now["w8"].school, now["w8"].grade_level) == (w["westside"], 9)
    assert now["h12"].graduated_on == dt.date(2027, 6, 18)
    # The elementary counselor does not follow the student; one on the middle school's staff does.
    assert now["e5"].counselor is None and now["e5_both"].counselor == w["both_counselor"]
    assert now["e4"].counselor == w["elem_counselor"] and now["e5_retained"].counselor == w["elem_counselor"]
    req = RolloverRequest.objects.get()
    assert req.counts["moved_to_feeder_student_ids"] == sorted([w["e5"].pk, w["e5_both"].pk, w["m8"].pk])
    assert req.counts["feeder_transfer_student_ids"] == [w["w8"].pk]
    assert result == {**result, "moved_to_feeder": 3, "feeder_transfer": 1, "promoted": 6, "retained": 1, "graduated": 1,
                      "no_feeder_schools": [{"school_id": w["westside"].pk, "school": "Westside Middle", "highest_grade": 8,
                                             "feeds_into": None, "students": 1}]}


def test_dry_run_lists_the_schools_without_a_usable_feeder(district, feeders):
    before = placed()
    out = rollover_cmd(district, "--dry-run")
    assert dry_run_counts(out)["moved_to_feeder"] == 3 and dry_run_counts(out)["feeder_transfer"] == 1
    assert "nothing written" in out
    assert (f"school Westside Middle (id {feeders['westside'].pk}, highest grade 8) names no feeder school: "
            "1 student(s) would be promoted in place and listed for transfer") in out
    assert "Maple Elementary" not in out and "Hillcrest Middle" not in out  # they have a feeder that takes them
    assert placed() == before and not RolloverRequest.objects.exists()
    # A feeder that does not teach the next grade (set around School.clean()) is no feeder either.
    School.objects.filter(pk=feeders["middle"].pk).update(lowest_grade=7)
    out = rollover_cmd(district, "--dry-run")
    assert dry_run_counts(out)["moved_to_feeder"] == 1 and dry_run_counts(out)["feeder_transfer"] == 3
    assert "school Maple Elementary" in out and "feeds into Hillcrest Middle, which cannot take them" in out
    assert "2 student(s) would be promoted in place" in out


def test_dry_run_counts_equal_the_real_runs(district, feeders):
    f.StudentFactory(school=feeders["middle"], grade_level=8, local_id="clash-1")
    f.StudentFactory(school=feeders["high"], grade_level=10, local_id="clash-1")  # this student number is taken there
    with time_machine.travel(NOW, tick=False):
        target = rollover.validate(district_id=district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                                   end=dt.date(2028, 6, 16))
        planned = rollover.plan(target)
    approve(district)
    with time_machine.travel(NOW, tick=False):
        result = rollover.execute(request=RolloverRequest.objects.get(), now=NOW)
    keys = ("graduated", "promoted", "retained", "feeder_transfer", "moved_to_feeder", "interventions_closed",
            "no_feeder_schools")
    assert {k: planned[k] for k in keys} == {k: result[k] for k in keys}
    assert planned["moved_to_feeder"] == 3 and planned["feeder_transfer"] == 2
    assert planned["active_students"] == result["closing_active_students"]
    # The clash stays at the middle school (grade 9), listed, instead of failing the step.
    assert Student.objects.get(school=feeders["middle"], local_id="clash-1").grade_level == 9


def test_feeder_rerun_and_redelivery_change_nothing(district, feeders):
    req = approve(district)
    rollover_cmd(district)
    before = (placed(), list(Student.objects.order_by("id").values_list("id", "counselor_id")),
              RolloverRequest.objects.get().counts)
    assert "already done; nothing changed" in rollover_cmd(district)
    with time_machine.travel(NOW + dt.timedelta(minutes=5), tick=False):
        assert rollover.run_approved(request_id=req.pk).result == {"requests": 0}
    assert (placed(), list(Student.objects.order_by("id").values_list("id", "counselor_id")),
            RolloverRequest.objects.get().counts) == before
    assert Student.objects.get(pk=feeders["e5"].pk).grade_level == 6  # moved and promoted once


@pytest.mark.django_db
def test_feeder_moves_keep_the_query_count_flat():
    def statements(n):
        d = f.DistrictFactory()
        middle = f.SchoolFactory(district=d, lowest_grade=6, highest_grade=8)
        elementary = f.SchoolFactory(district=d, lowest_grade=0, highest_grade=5, feeds_into=middle)
        counselor = f.StaffFactory(roles=[Role.COUNSELOR], schools=[elementary])
        for _ in range(n):
            f.StudentFactory(school=elementary, grade_level=5, counselor=counselor)
            f.StudentFactory(school=middle, grade_level=8)
        f.AcademicSessionFactory(district=d, name="2026-2027", is_current=True)
        approve(d)
        with CaptureQueriesContext(connection) as ctx:
            rollover_cmd(d)
        assert Student.objects.filter(school=middle, grade_level=6).count() == n
        return len(ctx.captured_queries)

    assert statements(2) == statements(15)



@pytest.mark.django_db
@pytest.mark.parametrize("change, error", [
    (lambda w: {"feeds_into": w["elementary"]}, "cannot feed into itself"),
    (lambda w: {"feeds_into": f.SchoolFactory(lowest_grade=6, highest_grade=8)}, "is in another district"),
    (lambda w: {"feeds_into": w["high"]}, "not grade 6"),  # elementary -> high skips grade 6
    (lambda w: {"highest_grade": 12, "feeds_into": w["middle"]}, "graduates its students"),
])
def test_a_feeder_is_in_the_district_and_teaches_the_next_grade(district, feeders, change, error):
    from django.core.exceptions import ValidationError

    school = School.objects.get(pk=feeders["elementary"].pk)
    for k, v in change(feeders).items():
        setattr(school, k, v)
    with pytest.raises(ValidationError) as exc:
        school.full_clean()
    assert error in " ".join(exc.value.message_dict["feeds_into"])
    # A feeder whose span covers the next grade (6-12 secondary) is fine; so is none.
    school = School.objects.get(pk=feeders["elementary"].pk)
    school.feeds_into = f.SchoolFactory(district=district, code="S612", lowest_grade=5, highest_grade=12)
    school.full_clean()
    school.feeds_into = None
    school.full_clean()


def test_district_admin_sets_the_feeder_in_the_admin(client, district, feeders):
    admin_user = f.StaffFactory(username="feeder_admin", roles=[Role.DISTRICT_ADMIN], schools=[feeders["westside"]])
    client.force_login(admin_user)
    url = f"/admin/students/school/{feeders['westside'].pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    choices = {c for c, _ in page.context["adminform"].form.fields["feeds_into"].choices if c}
    other = f.SchoolFactory(lowest_grade=9, highest_grade=12)  # another district's high school
    assert feeders["high"].pk in {int(str(c)) for c in choices} and other.pk not in {int(str(c)) for c in choices}
    w = feeders["westside"]
    data = {"district": district.pk, "name": w.name, "code": w.code, "lowest_grade": 6, "highest_grade": 8}
    bad = client.post(url, {**data, "feeds_into": feeders["middle"].pk})  # a middle school does not teach 9
    assert bad.status_code == 200 and "feeds_into" in bad.context["adminform"].form.errors
    ok = client.post(url, {**data, "feeds_into": feeders["high"].pk})
    assert ok.status_code == 302, ok.content[:2000]
    assert School.objects.get(pk=w.pk).feeds_into == feeders["high"]
    assert "names no feeder" not in rollover_cmd(district, "--dry-run")


def test_a_seeded_district_rolls_every_student_into_a_grade_their_school_teaches(db):
    from django.db.models import F, Q

    from skillcore.seed import seed_district

    d = seed_district(name="Feeders", students=120, seed=7, time_zone="America/New_York", as_of=dt.date(2026, 10, 9)).district
    schools = {s.lowest_grade: s for s in School.objects.filter(district=d)}
    assert schools[0].feeds_into == schools[6] and schools[6].feeds_into == schools[9] and schools[9].feeds_into is None
    req = approve(d)
    with time_machine.travel(NOW, tick=False):
        planned = rollover.plan(rollover.validate(district_id=d.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                                                  end=dt.date(2028, 6, 16), existing=req))
        result = rollover.execute(request=req, now=NOW)
    assert planned["moved_to_feeder"] == result["moved_to_feeder"] > 0 and result["feeder_transfer"] == 0
    assert planned["no_feeder_schools"] == result["no_feeder_schools"] == []
    rolled = Student.objects.filter(school__district=d, is_active=True, transferred_on__isnull=True)
    assert rolled.exists() and not rolled.filter(
        Q(grade_level__lt=F("school__lowest_grade")) | Q(grade_level__gt=F("school__highest_grade"))).exists()


def test_its_scheduled_run_after_the_request_was_rolled_over_by_hand_succeeds_without_a_warning(
        district, year, system_admin, second_admin):
    """The job has no cron: its only scheduled run is an approved request's one-off schedule
    (a cancel deletes it). Finding no approved request then means that request was already
    rolled over by hand (``jobs run`` before its time): nothing was left to do, so the run
    succeeds, with no "succeeded with warnings" alert (see docs/jobs.md)."""
    run_at = NOW + dt.timedelta(days=5)
    with time_machine.travel(NOW, tick=False):
        req = _file_request(district, system_admin, run_at=run_at)
        rollover.request_approve(request=req, approver=second_admin)
        call_command("jobs", "run", "end-of-year-rollover", "--district", str(district.id), "--as-of", NOW.isoformat(),
                     stdout=io.StringIO())
    assert RolloverRequest.objects.get().status == "done"
    q = Schedule.objects.get(name=f"skillcore:rollover:{req.pk}")
    with time_machine.travel(run_at + dt.timedelta(seconds=20), tick=False):
        run = rollover.run_approved(**eval(q.kwargs))  # noqa: S307 - the schedule's own repr
    assert (run.trigger, run.status, run.result) == (JobRun.Trigger.SCHEDULE, JobRun.Status.SUCCEEDED, {"requests": 0})
    assert not Incident.objects.filter(job="end-of-year-rollover").exists()
    assert Student.objects.get(pk=year["s9"].pk).grade_level == 10  # rolled over once, by hand
