"""A stopped scheduler is noticed from outside: overdue schedules open exactly one
scheduler-down incident across repeated checks (``alerts watch``), ``jobs check`` fails,
/health says 503; the scheduler coming back resolves it and records the missed slots."""
from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from scheduling import periodic_tasks, services
from scheduling.models import Incident, JobRun, JobSchedule
from scheduling.monitoring import alerting
from tests.observability.conftest import received
from tests.scheduling.conftest import drain_queue

PD = "/v2/enqueue"
START = dt.datetime(2026, 10, 5, 14, tzinfo=dt.UTC)  # 10:00 in New York


@pytest.fixture(autouse=True)
def keep_test_transaction(monkeypatch):
    # django-q2's pass closes "old" connections, which would end the test's transaction.
    import django_q.scheduler

    monkeypatch.setattr(django_q.scheduler, "close_old_django_connections", lambda: None)


def test_a_stopped_scheduler_pages_once_across_repeated_checks_and_resolves_when_it_is_back(
    only_obs_jobs, lakeside, endpoints, client, django_capture_on_commit_callbacks,
):
    endpoints.expect_request(PD, method="POST").respond_with_json({"status": "success"}, status=202)
    services.sync_schedules(now=START)
    services.record_heartbeat(name="host:1", now=START)
    first_due = JobSchedule.objects.filter(job="obs-ok").get().q_schedule.next_run  # 2026-10-06 10:00Z

    # 1. No scheduler runs; an outside cron runs `alerts watch` every minute for 20 minutes.
    for minute in range(20):
        with time_machine.travel(first_due + dt.timedelta(minutes=1 + minute), tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                out = StringIO()
                call_command("alerts", "watch", stdout=out)
    assert "scheduler DOWN" in out.getvalue()
    events = received(endpoints, PD)
    assert len(events) == 1, events
    [event] = events
    assert event["event_action"] == "trigger" and event["dedup_key"] == "skillcore/scheduler"
    assert event["payload"]["severity"] == "critical" and event["payload"]["class"] == "scheduler-down"
    assert event["payload"]["summary"].startswith("Scheduler not running: 1 schedule(s) overdue, last heartbeat 2026-10-05T14:00:00")
    assert event["payload"]["custom_details"]["examples"] == ["obs-ok @ Lakeside Unified due 2026-10-06 10:00Z"]
    incident = Incident.objects.get(kind="scheduler-down")
    # Within the grace (5 min) nothing is overdue yet: 15 of the 20 checks saw it.
    assert incident.occurrences == 15 and incident.resolved_at is None

    # 2. The liveness probe and /health say so too.
    with time_machine.travel(first_due + dt.timedelta(minutes=21), tick=False):
        with pytest.raises(SystemExit) as exit_info:
            call_command("jobs", "check", stdout=StringIO())
        assert exit_info.value.code == 1
        body = client.get("/health").json()
        assert body["status"] == "unhealthy" and body["overdue_schedules"]["count"] == 1

    # 3. A qcluster comes back 25 minutes late: its scheduler pass (the real django-q2 loop
    #    through the engine's wrapper) fires the slot, the worker runs it as a catch-up,
    #    and the watch after the pass resolves the scheduler-down incident.
    from django_q.brokers import get_broker

    from scheduling.scheduler import scheduler_pass

    with time_machine.travel(first_due + dt.timedelta(minutes=25), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            scheduler_pass(get_broker())
            drain_queue()
            alerting.watch()
    run = JobRun.objects.get(job="obs-ok")
    assert (run.trigger, run.status) == ("catch-up", "succeeded")
    incident.refresh_from_db()
    assert incident.resolved_at is not None
    assert received(endpoints, PD)[-1] == {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": "skillcore/scheduler"}
    with time_machine.travel(first_due + dt.timedelta(minutes=26), tick=False):
        periodic_tasks.sync()  # the outbox drain's rows, as `jobs sync` makes them (here, after the outage)
        call_command("jobs", "check", stdout=StringIO())  # exits 0: no SystemExit
        assert client.get("/health").status_code == 200


def test_jobs_check_is_quiet_while_the_scheduler_keeps_up(only_obs_jobs, lakeside):
    services.sync_schedules(now=START)
    periodic_tasks.sync(now=START)
    with time_machine.travel(START + dt.timedelta(minutes=1), tick=False):
        out = StringIO()
        call_command("jobs", "check", stdout=out)
        assert out.getvalue().startswith("ok: no schedule overdue")
        report = alerting.watch()
    assert report.scheduler_down is False and not Incident.objects.exists()
