"""``manage.py jobs``: every verb, its output and exit codes; bad input exits 2 with one
line and writes nothing."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django_q.models import Schedule

from scheduling import services
from scheduling.models import JobRun, JobSchedule, ScheduleChange
from tests.scheduling import jobs_for_tests

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
pytestmark = pytest.mark.django_db


def jobs(*args) -> str:
    out = StringIO()
    call_command("jobs", *args, stdout=out)
    return out.getvalue()


def refused(*args) -> str:
    with pytest.raises(CommandError) as info:
        jobs(*args)
    assert info.value.returncode == 2
    message = str(info.value)
    assert "\n" not in message
    return message


def state() -> tuple:
    return (
        JobRun.objects.count(), ScheduleChange.objects.count(), Schedule.objects.count(),
        sorted(JobSchedule.objects.values_list("paused", "cron")),
    )


def test_sync_then_list(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2026, 12, 1, 12, tzinfo=UTC), tick=False):
        assert jobs("sync") == "created 7, updated 0, unchanged 0\nperiodic tasks: created 3, updated 0, unchanged 0, removed 0\n"
        assert jobs("sync") == "created 0, updated 0, unchanged 7\nperiodic tasks: created 0, updated 0, unchanged 3, removed 0\n"
        lines = jobs("list").splitlines()
        rows = json.loads(jobs("list", "--json"))
    # A header, then one line per schedule: the district's id (what --district takes), its full
    # name and the next run in the district's time with its offset.
    assert len(lines) == 8 and lines[0].split()[:4] == ["JOB", "DISTRICT", "ID", "DISTRICT"]
    line = next(ln for ln in lines if ln.startswith("t-daily "))
    assert f" {new_york.pk}  {new_york.name} " in line
    assert "Wed 2026-12-02 02:00 EST (UTC−05:00)" in line and line.endswith("active  -")
    daily = next(r for r in rows if r["job"] == "t-daily")
    assert daily["next_run"] == "2026-12-02T02:00:00-05:00" and daily["next_run_utc"] == "2026-12-02T07:00:00+00:00"
    assert daily["cron_text"] == "At 02:00 every day" and daily["time_zone"] == "America/New_York"
    batches = next(r for r in rows if r["job"] == "t-batches")
    assert batches["cron"] == "" and batches["next_run"] is None


def test_next_prints_iso_times_in_the_district_zone_across_dst(only_test_jobs, new_york, adelaide):
    jobs("sync")
    out = jobs("next", "t-monthly", "--district", str(new_york.pk), "--after", "2026-10-15", "--count", "3")
    assert out.splitlines() == ["2026-11-01T01:00:00-04:00", "2026-12-01T01:00:00-05:00", "2027-01-01T01:00:00-05:00"]
    out = jobs("next", "t-daily", "--district", str(new_york.pk), "--after", "2027-03-13T12:00", "--count", "2")
    assert out.splitlines() == ["2027-03-14T03:00:00-04:00", "2027-03-15T02:00:00-04:00"]
    out = jobs("next", "t-daily", "--district", str(adelaide.pk), "--after", "2026-10-03T12:00+09:30", "--count", "2")
    assert out.splitlines() == ["2026-10-04T03:00:00+10:30", "2026-10-05T02:00:00+10:30"]
    out = jobs("next", "emergency-notification-test", "--district", str(new_york.pk), "--after", "2026-12-01", "--count", "2")
    assert out.splitlines() == ["2027-01-04T10:00:00-05:00", "2027-04-05T10:00:00-04:00"]
    out = jobs("next", "t-global", "--after", "2026-12-01T00:00Z", "--count", "1")
    assert out.splitlines() == ["2026-12-01T04:00:00+00:00"]
    out = jobs("next", "t-daily", "--tz", "Asia/Kolkata", "--cron", "30 6 * * 1-5", "--after", "2026-12-04T12:00", "--count", "1")
    assert out.splitlines() == ["2026-12-07T06:30:00+05:30"]


def test_run_executes_here_records_a_manual_run_and_prints_the_summary(only_test_jobs, new_york):
    out = jobs("run", "t-daily", "--district", str(new_york.pk), "--as-of", "2026-12-01T02:00")
    run = JobRun.objects.get()
    assert (run.trigger, run.status, run.slot) == ("manual", "succeeded", dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    assert out.startswith(f"run #{run.pk} t-daily Hudson Valley succeeded in ")
    assert out.rstrip().endswith(":\n  Slots: 1")  # the summary in words, one figure a line
    data = json.loads(jobs("run", "t-global", "--json"))
    assert data["status"] == "succeeded" and data["result"] == {"slots": 1} and data["trigger"] == "manual"


def test_run_exits_1_when_the_job_fails_and_does_not_auto_retry(only_test_jobs, new_york):
    jobs_for_tests.FAIL_TIMES["t-flaky"] = 9
    with pytest.raises(SystemExit) as info:
        jobs("run", "t-flaky", "--district", str(new_york.pk))
    assert info.value.code == 1
    assert JobRun.objects.get().status == "failed"
    assert not Schedule.objects.filter(name__startswith="skillcore:retry:").exists()


def test_pause_resume_and_history(only_test_jobs, new_york, adelaide):
    jobs("sync")
    assert jobs("pause", "t-daily", "--note", "district closed for the holidays") == "paused 2 schedule(s) of t-daily\n"
    assert refused("pause", "t-daily", "--district", str(new_york.pk), "--note", "again") == f"t-daily is already paused in district {new_york.pk}"
    assert jobs("resume", "t-daily", "--district", str(adelaide.pk)) == "resumed 1 schedule(s) of t-daily\n"
    assert JobSchedule.objects.get(job="t-daily", district=new_york).paused
    assert not JobSchedule.objects.get(job="t-daily", district=adelaide).paused
    assert ScheduleChange.objects.filter(action="pause", actor_label="command line").count() == 2
    jobs("run", "t-daily", "--district", str(new_york.pk), "--as-of", "2026-12-01T02:00")
    lines = jobs("history", "t-daily", "--district", str(new_york.pk)).splitlines()
    # The RUN column is as wide as the longest run id (ids differ between databases and runs).
    assert len(lines) == 2 and lines[0].split()[:4] == ["RUN", "SLOT", "(district", "time)"]
    assert "manual" in lines[1] and "succeeded" in lines[1]
    assert "Tue 2026-12-01 02:00 EST (UTC−05:00)" in lines[1]  # local with its offset, no microseconds
    data = json.loads(jobs("history", "t-daily", "--limit", "5", "--json"))
    assert [d["status"] for d in data] == ["succeeded"]


def test_check_exits_1_when_a_schedule_is_overdue_or_a_critical_job_failed(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2026, 12, 1, 0, 0, tzinfo=NY), tick=False) as traveller:
        jobs("sync")
        services.record_heartbeat(name="host:1")
        assert jobs("check").startswith("ok: no schedule overdue")
        traveller.move_to(dt.datetime(2026, 12, 1, 2, 10, tzinfo=NY))  # 02:00 not fired: no scheduler
        out = StringIO()
        with pytest.raises(SystemExit) as info:
            call_command("jobs", "check", stdout=out)
        assert info.value.code == 1
        assert "overdue: t-daily Hudson Valley was due Tue 2026-12-01 02:00 EST (UTC−05:00)" in out.getvalue()
        assert "last scheduler heartbeat: 2026-12-01T05:00:00+00:00" in out.getvalue()
    # A critical job whose last run failed also fails the check.
    JobSchedule.objects.update(paused=True)
    Schedule.objects.update(repeats=0)
    jobs_for_tests.FAIL_TIMES["t-flaky"] = 9
    with pytest.raises(SystemExit):
        jobs("run", "t-flaky", "--district", str(new_york.pk))
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("jobs", "check", stdout=out)
    assert "failed: critical job t-flaky Hudson Valley" in out.getvalue()


@pytest.mark.parametrize("args, message", [
    (("run", "no-such-job"), "unknown job 'no-such-job'"),
    (("run", "t-daily", "--district", "999999"), "unknown district 999999"),
    (("run", "t-daily"), "runs per district: give --district ID"),
    (("run", "t-global", "--district", "{ny}"), "is global"),
    (("run", "t-nobody", "--district", "{ny}"), "job t-nobody has no body yet"),
    (("run", "t-daily", "--district", "{ny}", "--as-of", "yesterday"), "'yesterday' is not an ISO-8601 date"),
    (("pause", "t-daily", "--note", "   "), "a pause needs a note"),
    (("pause", "t-daily", "--district", "{ny}"), "the following arguments are required: --note"),
    (("resume", "t-daily"), "t-daily is not paused"),
    (("history", "t-daily", "--limit", "0"), "--limit must be between 1 and 10000"),
    (("history", "t-daily", "--district", "abc"), "argument --district: invalid int value: 'abc'"),
    (("next", "t-daily", "--district", "{ny}", "--after", "31/12/2026"), "is not an ISO-8601"),
    (("next", "t-daily", "--district", "{ny}", "--count", "0"), "--count must be between 1 and 1000"),
    (("next", "t-daily", "--district", "{ny}", "--cron", "61 * * * *"), "is not a valid cron expression"),
    (("next", "t-daily", "--district", "{ny}", "--cron", "0 2 * *"), "it needs 5 fields"),
    (("next", "t-daily", "--tz", "Mars/Olympus"), "'Mars/Olympus' is not an IANA time zone"),
    (("next", "t-daily"), "runs per district: give --district ID"),
    (("next", "t-batches", "--district", "{ny}"), "has no cron: it runs only on demand"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(only_test_jobs, new_york, args, message):
    jobs("sync")
    before = state()
    args = [a.format(ny=new_york.pk) for a in args]
    assert message in refused(*args)
    assert state() == before


def test_bad_district_zone_in_the_database_is_a_one_line_error(only_test_jobs, new_york):
    jobs("sync")
    type(new_york).objects.filter(pk=new_york.pk).update(time_zone="Mars/Olympus")
    assert "'Mars/Olympus' is not an IANA time zone" in refused("next", "t-daily", "--district", str(new_york.pk))


def test_command_line_prints_one_line_and_exits_2(only_test_jobs):
    # Through a real process: argparse's own errors are one line too.
    env_ok = subprocess.run(
        [sys.executable, "manage.py", "jobs", "next", "t-daily", "--count", "x"],
        capture_output=True, text=True, env={"DJANGO_SETTINGS_MODULE": "skillcore.settings_test", "PATH": "/usr/bin:/bin",
                                              "DATABASE_URL": "sqlite:///:memory:"},
    )
    assert env_ok.returncode == 2
    assert env_ok.stderr.strip().splitlines() == ["CommandError: argument --count: invalid int value: 'x'"]
