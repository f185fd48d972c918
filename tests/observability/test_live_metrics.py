"""Metrics across processes: jobs run in a REAL ``manage.py qcluster`` subprocess on the
PostgreSQL test database; /metrics is scraped over HTTP from a LIVE server (pytest-django's
live_server, a WSGI server in a thread of this process) and parsed with
prometheus_client's parser. The numbers agree because both read the database."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from scheduling import services
from scheduling.models import JobRun, SchedulerHeartbeat
from tests.observability.conftest import received
from tests.support.qcluster import clock_env

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "live-test-token"


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: a qcluster process shares the test database")


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def scrape(base_url: str, token: str | None = TOKEN) -> dict:
    request = urllib.request.Request(f"{base_url}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


@pytest.fixture
def an_afternoon():
    """The test, and its cluster (clock_env), run at 11:00 in New York: hours from the obs
    jobs' slots (06:00-09:00). At the real clock, a minute before one of them, the cluster's
    first scheduler pass fired that job beside the test's own runs (a third obs-ok run)."""
    with time_machine.travel(dt.datetime(2026, 3, 3, 16, 0, tzinfo=dt.UTC), tick=True):
        yield


@pytest.mark.django_db(transaction=True)
def test_metrics_from_a_live_server_agree_with_runs_in_a_real_qcluster(
    an_afternoon,
    only_obs_jobs, postgres_only, lakeside, live_server, endpoints, settings, tmp_path,
):
    endpoints.expect_request("/v2/enqueue", method="POST").respond_with_json({"status": "success"}, status=202)
    settings.METRICS_TOKEN = TOKEN
    services.sync_schedules()  # obs jobs only: next slots are hours away, nothing fires by itself
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skillcore.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "Q_WORKERS": "2",
        "SCHEDULING_EXTRA_JOB_MODULES": "tests.observability.jobs_for_tests",
        "PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY",
        "PAGERDUTY_EVENTS_URL": endpoints.url_for("/v2/enqueue"),
        "OBS_SLOW_SECONDS": "8",
        "SKILLCORE_TEST_SCHEDULER_TICK": "2",
        "LOG_LEVEL": "WARNING",
        **clock_env(),
    }
    env.pop("REDIS_URL", None)  # the ORM broker on the test database
    log = (tmp_path / "qcluster.log").open("w")
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # 1. Real runs in the cluster: two successes, a critical failure, a slow one.
        ok = [services.run_now(job_slug="obs-ok", district=lakeside, acting_user=None) for _ in range(2)]
        fail = services.run_now(job_slug="obs-fail", district=lakeside, acting_user=None)
        slow = services.run_now(job_slug="obs-slow", district=lakeside, acting_user=None)
        _wait(lambda: JobRun.objects.filter(pk=slow.pk, status="running").exists(), 40, "the slow run to start")

        # 2. Scraped while the slow run is still going: the web process sees the worker's run.
        during = scrape(live_server.url)
        assert during[("scheduled_job_running", (("job", "obs-slow"),))] == 1

        ids = [r.pk for r in (*ok, fail, slow)]
        _wait(lambda: not JobRun.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists(), 40,
              "every run to finish")
        # The sentinel's first scheduler pass (at start: the test tick): heartbeat and alert watch.
        _wait(lambda: SchedulerHeartbeat.objects.exists(), 40, "the cluster's first scheduler pass")
    finally:
        os.killpg(cluster.pid, signal.SIGKILL)
        cluster.wait(10)
        log.close()
    output = (tmp_path / "qcluster.log").read_text()
    statuses = dict(JobRun.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert [statuses[r.pk] for r in ok] == ["succeeded", "succeeded"], output[-3000:]
    assert statuses[fail.pk] == "failed" and statuses[slow.pk] == "succeeded", output[-3000:]

    # 3. After the runs: parse /metrics from the live server.
    m = scrape(live_server.url)
    job = lambda slug: (("job", slug),)  # noqa: E731
    assert m[("scheduled_job_executions_total", job("obs-ok"))] == 2
    assert m[("scheduled_job_executions_total", job("obs-fail"))] == 1
    assert m[("scheduled_job_failures_total", job("obs-fail"))] == 1
    assert m[("scheduled_job_failures_total", job("obs-ok"))] == 0
    assert m[("scheduled_job_running", job("obs-slow"))] == 0
    assert m[("scheduled_job_duration_seconds_count", job("obs-slow"))] == 1
    assert m[("scheduled_job_duration_seconds_bucket", (("job", "obs-slow"), ("le", "5.0")))] == 0
    assert m[("scheduled_job_duration_seconds_bucket", (("job", "obs-slow"), ("le", "15.0")))] == 1
    assert m[("scheduled_job_duration_seconds_sum", job("obs-slow"))] >= 8
    last = JobRun.objects.filter(job="obs-ok", status="succeeded").order_by("-started_at").first()
    d = str(lakeside.pk)
    assert m[("scheduled_job_last_success_timestamp_seconds", (("district", d), ("job", "obs-ok")))] == pytest.approx(
        last.finished_at.timestamp())
    assert 0 < m[("scheduled_job_next_execution_seconds", (("district", d), ("job", "obs-ok")))] <= 86400 + 3600
    assert m[("scheduled_job_queue_depth", (("broker", "orm"),))] == 0
    assert m[("scheduled_job_scheduler_last_heartbeat_timestamp_seconds", ())] > 0  # the cluster's scheduler beat
    assert m[("scheduled_job_open_incidents", (("kind", "failure"), ("severity", "critical")))] == 1
    # The worker paged PagerDuty itself, once, and the outbox row says so.
    [event] = received(endpoints, "/v2/enqueue")
    assert event["dedup_key"] == f"skillcore/obs-fail/{lakeside.pk}" and event["payload"]["class"] == "failure"
    assert m[("scheduled_job_alert_deliveries_total", (("channel", "pagerduty"), ("outcome", "sent")))] == 1
    # django-prometheus's request metrics are on the same page.
    assert any(name.startswith("django_http_requests_total_by_method") for name, _ in m)

    # 4. Without the token: denied.
    with pytest.raises(urllib.error.HTTPError) as denied:
        scrape(live_server.url, token=None)
    assert denied.value.code == 401
