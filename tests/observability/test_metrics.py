"""The job metrics collector (values, histogram, constant queries) and /metrics access."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone
from django_q.models import OrmQ
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from notifications import counters as notification_counters
from notifications.models import Notification
from scheduling import services
from scheduling.models import Incident, JobRun, SchedulerHeartbeat
from scheduling.monitoring import counters, metrics
from tests import factories as f

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from Prometheus text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape_collector() -> dict:
    registry = CollectorRegistry()
    registry.register(metrics.JobMetricsCollector())
    return samples(generate_latest(registry).decode())


def _run(slug, district, status, seconds=None, **kw):
    """A run row in ``status``, counted as the runner and claim_slot count it when they write it."""
    now = timezone.now()
    finished = kw.pop("finished_at", now)
    finished = finished if status not in ("running", "queued") else None
    run = JobRun.objects.create(
        job=slug, district=district, trigger="manual", slot=kw.pop("slot", now), status=status,
        started_at=kw.pop("started_at", now), finished_at=finished, duration_seconds=seconds, **kw,
    )
    counters.run_finished(job=slug, district_id=district.pk if district else None, status=status,
                          duration_seconds=seconds, finished_at=run.finished_at)
    return run


def _notification(user, channel, status, key, **kw):
    """An outbox row in ``status``, counted as delivery counts it when it settles the row."""
    n = Notification.objects.create(recipient=user, channel=channel, category="system", template="t", dedupe_key=key,
                                    status=status, send_after=timezone.now(), **kw)
    notification_counters.notification_settled(channel=channel, status=status)
    return n


# A Tuesday, 11:00 in New York (EST), hours from the obs jobs' 06:00-09:00 slots and from a DST
# change. At the real clock the next slot asserted below was 25 h away for the hour after 06:00
# on the Saturday before the clocks fall back (89,929 s > 86,400 at 2027-11-06T10:00:30Z), and
# not in the future if the test ran across 06:00.
@time_machine.travel(dt.datetime(2026, 3, 3, 16, 0, tzinfo=dt.UTC), tick=True)
def test_the_collector_reads_runs_schedules_queue_and_notifications_from_the_database(only_obs_jobs, lakeside):
    now = timezone.now()
    services.sync_schedules(now=now)
    for seconds in (0.4, 3.0, 45.0):
        _run("obs-ok", lakeside, "succeeded", seconds)
    last_ok = _run("obs-ok", lakeside, "succeeded", 2.0, started_at=now + dt.timedelta(seconds=1),
                   finished_at=now + dt.timedelta(seconds=3))
    _run("obs-fail", lakeside, "failed", 1.5)
    _run("obs-fail", lakeside, "timed_out", 30.0)
    _run("obs-fail", lakeside, "missed", slot=now - dt.timedelta(days=1))
    _run("obs-warn", lakeside, "skipped")
    _run("obs-slow", lakeside, "running")
    OrmQ.objects.create(key="skillcore", payload="x", lock=now - dt.timedelta(seconds=5))
    SchedulerHeartbeat.objects.create(name="h:1", last_beat=now - dt.timedelta(seconds=20), passes=3)
    user = f.UserFactory()
    for i, (channel, status) in enumerate([("email", "sent"), ("email", "sent"), ("push", "sent"), ("email", "failed"),
                                           ("push", "pending")]):
        _notification(user, channel, status, f"k{i}")
    Incident.objects.create(kind="failure", severity="critical", job="obs-fail", district=lakeside, dedup_key="k",
                            summary="s", opened_at=now, last_seen_at=now)

    m = scrape_collector()
    job = lambda slug: (("job", slug),)  # noqa: E731
    assert m[("scheduled_job_executions_total", job("obs-ok"))] == 4
    assert m[("scheduled_job_executions_total", job("obs-fail"))] == 2
    assert m[("scheduled_job_failures_total", job("obs-fail"))] == 2
    assert m[("scheduled_job_failures_total", job("obs-ok"))] == 0
    assert m[("scheduled_job_timeouts_total", job("obs-fail"))] == 1
    assert m[("scheduled_job_missed_runs_total", job("obs-fail"))] == 1
    assert m[("scheduled_job_skipped_runs_total", job("obs-warn"))] == 1
    assert m[("scheduled_job_running", job("obs-slow"))] == 1
    assert m[("scheduled_job_executions_total", job("obs-flaky"))] == 0  # registered, never run: still a series
    # The histogram: cumulative buckets of recorded durations.
    bucket = lambda slug, le: m[("scheduled_job_duration_seconds_bucket", (("job", slug), ("le", le)))]  # noqa: E731
    assert [bucket("obs-ok", le) for le in ("1.0", "5.0", "15.0", "30.0", "60.0", "+Inf")] == [1, 3, 3, 3, 4, 4]
    assert m[("scheduled_job_duration_seconds_count", job("obs-ok"))] == 4
    assert m[("scheduled_job_duration_seconds_sum", job("obs-ok"))] == pytest.approx(50.4)
    assert bucket("obs-fail", "30.0") == 2
    # Per job and district: next slot in the future, last success = the latest success's end.
    d = str(lakeside.pk)
    assert 0 < m[("scheduled_job_next_execution_seconds", (("district", d), ("job", "obs-ok")))] <= 86400
    last_ok.refresh_from_db()
    assert m[("scheduled_job_last_success_timestamp_seconds", (("district", d), ("job", "obs-ok")))] == pytest.approx(
        last_ok.finished_at.timestamp())
    assert ("scheduled_job_last_success_timestamp_seconds", (("district", d), ("job", "obs-fail"))) not in m
    assert m[("scheduled_job_scheduler_last_heartbeat_timestamp_seconds", ())] == pytest.approx(
        (now - dt.timedelta(seconds=20)).timestamp())
    assert m[("scheduled_job_overdue_schedules", ())] == 0
    assert m[("scheduled_job_queue_depth", (("broker", "orm"),))] == 1
    assert m[("notifications_sent_total", (("channel", "email"),))] == 2
    assert m[("notifications_sent_total", (("channel", "push"),))] == 1
    assert m[("notifications_failed_total", (("channel", "email"),))] == 1
    assert m[("notifications_failed_total", (("channel", "push"),))] == 0
    assert m[("notifications_waiting", (("channel", "push"),))] == 1
    assert m[("scheduled_job_open_incidents", (("kind", "failure"), ("severity", "critical")))] == 1
    assert m[("scheduled_job_open_incidents", (("kind", "missed"), ("severity", "critical")))] == 0


def test_an_overdue_schedule_has_a_negative_next_execution(only_obs_jobs, lakeside):
    past = timezone.now() - dt.timedelta(days=2)
    services.sync_schedules(now=past)  # next runs computed two days ago: overdue now
    m = scrape_collector()
    assert m[("scheduled_job_next_execution_seconds", (("district", str(lakeside.pk)), ("job", "obs-ok")))] < -3600
    assert m[("scheduled_job_overdue_schedules", ())] == 4


@pytest.mark.parametrize("districts", [2, 25])
def test_a_scrape_is_a_constant_number_of_queries(only_obs_jobs, districts, django_assert_num_queries, db):
    now = timezone.now()
    for _i in range(districts):
        district = f.DistrictFactory()
        _run("obs-ok", district, "succeeded", 1.0)
        _run("obs-fail", district, "failed", 2.0)
    services.sync_schedules(now=now)
    registry = CollectorRegistry()
    registry.register(metrics.JobMetricsCollector())
    with django_assert_num_queries(metrics.QUERIES_ORM_BROKER):
        text = generate_latest(registry).decode()
    series = [k for k in samples(text) if k[0] == "scheduled_job_next_execution_seconds"]
    assert len(series) == 4 * districts


# -- /metrics over HTTP -------------------------------------------------------------------
def test_metrics_are_denied_by_default_in_production(client, settings, db):
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_metrics_need_the_bearer_token_when_one_is_set(client, settings, obs_jobs, db):
    settings.METRICS_TOKEN = "s3cret-token"
    settings.METRICS_ALLOWED_NETWORKS = []
    denied = client.get("/metrics")
    assert denied.status_code == 401 and denied["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-token").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200
    text = ok.content.decode()
    m = samples(text)
    assert ("scheduled_job_executions_total", (("job", "obs-ok"),)) in m
    assert "django_http_requests_total_by_method_total" in text  # django-prometheus's own metrics
    assert "django_db_execute_total" in text or "django_db_new_connections_total" in text


def test_metrics_from_allowed_networks(client, settings, db):
    settings.METRICS_TOKEN = "t"
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::5").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.9").status_code == 401  # a token is configured
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.9").status_code == 403


def test_the_demo_serves_metrics_to_localhost_only(client, settings, db):
    settings.DEBUG = True
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403


@pytest.mark.parametrize("name,value,message", [
    ("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8,not-a-net", "METRICS_ALLOWED_NETWORKS must be a comma-separated list of networks"),
    ("ALERTS_LONG_RUNNING_FACTOR", "fast", "ALERTS_LONG_RUNNING_FACTOR must be a number"),
    ("ALERTS_LONG_RUNNING_FACTOR", "0.5", "ALERTS_LONG_RUNNING_FACTOR must be at least 1.0"),
])
def test_a_bad_setting_stops_start_up_with_one_line(name, value, message):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "skillcore.settings", "SECRET_KEY": "x", name: value}
    done = subprocess.run([sys.executable, "-c", "import skillcore.settings"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"SkillCore: environment variable {message}"), done.stderr


def test_the_example_alert_rules_use_metric_names_that_exist(db):
    """docs/alert-rules.yml must not drift from the metric names (a renamed metric would make
    a rule silently never fire)."""
    import re

    text = (ROOT / "docs" / "alert-rules.yml").read_text()
    used = set(re.findall(r"\b((?:scheduled_job|notifications)_[a-z_]+)", text))
    exposed = set()
    for family in metrics.JobMetricsCollector().describe():
        exposed.add(family.name)
        exposed.update({f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"})
    assert used and used <= exposed, sorted(used - exposed)
    assert len(used) >= 10
