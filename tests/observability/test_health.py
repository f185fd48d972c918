"""/health and /health/db, and the dashboard's status selectors."""
from __future__ import annotations

import datetime as dt

import time_machine
from django.db import connection
from django.utils import timezone

from scheduling import periodic_tasks, services
from scheduling.models import Incident, JobRun
from scheduling.monitoring import alerting, status

START = dt.datetime(2026, 10, 5, 14, tzinfo=dt.UTC)  # 10:00 in New York


def test_health_is_ok_with_a_fresh_heartbeat_and_nothing_overdue(only_obs_jobs, lakeside, client):
    services.sync_schedules(now=START)
    periodic_tasks.sync(now=START)  # as `jobs sync` does
    services.record_heartbeat(name="worker-1:42", now=START)
    with time_machine.travel(START + dt.timedelta(seconds=40), tick=False):
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True and body["database"]["latency_ms"] >= 0
    assert body["scheduler"] == {"ok": True, "last_heartbeat": "2026-10-05T14:00:00+00:00", "heartbeat_age_seconds": 40}
    assert body["overdue_schedules"] == {"count": 0, "examples": []}
    assert body["periodic_tasks"] == {"ok": True, "problems": []}
    assert response["Cache-Control"].startswith("max-age=0")


def test_health_is_503_when_the_heartbeat_is_stale_or_missing(only_obs_jobs, lakeside, client):
    services.sync_schedules(now=START)
    assert client.get("/health").json()["scheduler"]["last_heartbeat"] is None  # never beaten, schedules exist
    with time_machine.travel(START, tick=False):
        assert client.get("/health").status_code == 503
    services.record_heartbeat(name="worker-1:42", now=START)
    with time_machine.travel(START + dt.timedelta(minutes=6), tick=False):  # grace is 5 min
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["scheduler"]["ok"] is False


def test_health_lists_overdue_schedules(only_obs_jobs, lakeside, client):
    services.sync_schedules(now=START)
    due = lakeside.job_schedules.get(job="obs-ok").q_schedule.next_run
    with time_machine.travel(due + dt.timedelta(minutes=10), tick=False):
        services.record_heartbeat(name="stuck:1")  # a scheduler that beats but does not fire
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["overdue_schedules"] == {
        "count": 1, "examples": ["obs-ok @ Lakeside Unified due 2026-10-06 10:00Z"],
    }


def test_health_is_503_when_the_database_is_unreachable(client, monkeypatch, db):
    def refuse(*args, **kwargs):
        raise OSError("connection refused")

    with monkeypatch.context() as patched:  # undone before the test database's teardown
        patched.setattr(connection, "cursor", refuse)
        response = client.get("/health")
        db_only = client.get("/health/db")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "database": {"ok": False, "error": "OSError: connection refused"}}
    assert db_only.status_code == 503


def test_health_db_ignores_the_scheduler(only_obs_jobs, lakeside, client):
    services.sync_schedules(now=START - dt.timedelta(days=3))  # everything overdue
    assert client.get("/health").status_code == 503
    response = client.get("/health/db")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_system_status_and_alert_states_for_the_dashboard(only_obs_jobs, lakeside, django_assert_num_queries):
    now = timezone.now()
    services.record_heartbeat(name="w:1", now=now - dt.timedelta(seconds=10))
    JobRun.objects.create(job="obs-slow", district=lakeside, trigger="manual", slot=now, status="running",
                          started_at=now - dt.timedelta(seconds=30))
    JobRun.objects.create(job="obs-ok", district=lakeside, trigger="manual", slot=now, status="running", started_at=now)
    alerting.incident_open(kind="failure", job_slug="obs-fail", district=lakeside, summary="Obs fail failed", now=now)
    alerting.incident_open(kind="missed", job_slug="obs-fail", district=lakeside, summary="Obs fail missed 2 slots",
                           now=now + dt.timedelta(seconds=1))
    alerting.incident_open(kind="failure", job_slug="obs-warn", district=lakeside, summary="Obs warn failed", now=now)

    with django_assert_num_queries(4):  # heartbeat, overdue, running, incidents (+1 count past 5 overdue)
        s = status.system_status(now=now)
    assert (s.scheduler_ok, s.heartbeat_age_seconds, s.overdue, s.running, s.long_running) == (True, 10, 0, 2, 1)
    assert (s.failing, s.open_critical, s.open_warning) == (2, 2, 1)
    assert s.healthy

    with django_assert_num_queries(1):
        states = status.job_alert_states()
    fail = states[("obs-fail", lakeside.pk)]
    assert fail.severity == "critical" and fail.kinds == ["failure", "missed"]
    assert fail.summary == "Obs fail missed 2 slots" and fail.since == now
    assert states[("obs-warn", lakeside.pk)].severity == "warning"
    assert ("obs-ok", lakeside.pk) not in states
    Incident.objects.update(resolved_at=now)
    assert status.job_alert_states() == {}
