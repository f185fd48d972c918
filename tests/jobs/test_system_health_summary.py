"""system-health-summary: the middleware records requests durably per endpoint and hour;
the monthly report (availability, endpoints, jobs, slow queries, event bus, providers) is
stored once per month and e-mailed to superusers only; idempotency; flat query counts; CLI."""
from __future__ import annotations

import datetime as dt
import io

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Category, Notification, Status
from scheduling.models import JobRun, Report, RequestMetric
from scheduling.monitoring import request_metrics
from skillcore.models import EventBusEntry
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import run_slot
from tests.notifications.conftest import twilio  # noqa: F401 - a Twilio-compatible API on localhost

SLUG = "system-health-summary"
SLOT = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
UTC = dt.UTC


def run_health(*, trigger=JobRun.Trigger.SCHEDULE):
    with time_machine.travel(SLOT + dt.timedelta(seconds=20), tick=False):
        run = run_slot(SLUG, None, SLOT, trigger=trigger)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def test_middleware_records_requests_per_endpoint_and_hour(client, settings, db):
    settings.REQUEST_METRICS_FLUSH_SECONDS = 0  # flush at every request
    request_metrics.discard()
    with time_machine.travel(dt.datetime(2026, 10, 5, 14, 30, tzinfo=UTC), tick=False):
        for _ in range(3):
            client.get("/health/db")
        client.get("/no-such-page")
    rows = {r.endpoint: r for r in RequestMetric.objects.all()}
    assert rows["health-db"].requests == 3 and rows["health-db"].hour == dt.datetime(2026, 10, 5, 14, tzinfo=UTC)
    assert rows["health-db"].errors == 0 and rows["health-db"].max_ms >= rows["health-db"].total_ms / 3
    assert rows["unmatched"].client_errors == 1
    assert len(rows) == 2  # routes, not raw paths: the table stays bounded


def test_middleware_buffers_between_flushes(client, settings, db):
    settings.REQUEST_METRICS_FLUSH_SECONDS = 3600
    request_metrics.discard()
    client.get("/health/db")
    assert not RequestMetric.objects.exists()  # still in the process's buffer
    assert request_metrics.flush() == 1
    assert RequestMetric.objects.get().requests == 1


@pytest.fixture
def month(db, system_admin):
    oct_ = dt.datetime(2026, 10, 1, tzinfo=UTC)
    metrics = [RequestMetric(endpoint="health", hour=oct_ + dt.timedelta(hours=h), requests=60, total_ms=60 * 12.0, max_ms=40)
               for h in range(744)]
    # One bad hour on the admin: 10 of 20 requests failed.
    metrics.append(RequestMetric(endpoint="admin:index", hour=oct_ + dt.timedelta(hours=5), requests=20, errors=10,
                                 client_errors=1, total_ms=20 * 300.0, max_ms=2500))
    metrics.append(RequestMetric(endpoint="health", hour=oct_ - dt.timedelta(hours=1), requests=999))  # September
    metrics.append(RequestMetric(endpoint="health", hour=SLOT - dt.timedelta(days=500), requests=1))  # pruned
    RequestMetric.objects.bulk_create(metrics)
    d = f.DistrictFactory()
    S = JobRun.Status
    for i, (status, secs) in enumerate([(S.SUCCEEDED, 10), (S.SUCCEEDED, 30), (S.FAILED, 5), (S.MISSED, None)]):
        JobRun.objects.create(job="attendance-interventions", district=d, slot=oct_ + dt.timedelta(days=i + 1),
                              status=status, duration_seconds=secs, enqueued_at=oct_)
    guardian = f.UserFactory()
    with time_machine.travel(oct_ + dt.timedelta(days=3), tick=False):
        for i, (channel, status) in enumerate([("email", Status.SENT)] * 8 + [("email", Status.FAILED)] * 2
                                              + [("push", Status.SENT)] * 3 + [("push", Status.FAILED)]):
            Notification.objects.create(recipient=guardian, channel=channel, category="grade-digest", template="t",
                                        dedupe_key=f"k{i}", status=status, send_after=oct_)
    EventBusEntry.objects.create(stream="skillcore:events:intervention.opened", event_type="intervention.opened",
                                 payload={}, published_at=oct_)
    staff = f.StaffFactory(roles=[Role.DISTRICT_ADMIN], schools=[f.SchoolFactory(district=d)])
    return {"admin": system_admin, "staff": staff}


def test_monthly_report_figures_and_email_to_superusers_only(month, settings):
    settings.REDIS_URL = ""  # the table-backed bus in this test
    run = run_health()
    report = Report.objects.get(kind="system-health")
    assert (report.period_start, report.period_end, report.district_id) == (dt.date(2026, 10, 1), dt.date(2026, 10, 31), None)
    s = report.evidence["summary"]
    assert s["requests"] == 744 * 60 + 20 and s["server_errors"] == 10
    assert s["availability"] == round(100 * 743 / 744, 2)  # the admin's bad hour
    assert s["job_runs"] == 4 and s["job_failures"] == 1 and s["missed"] == 1
    assert s["email_error_rate"] == 20.0 and s["push_error_rate"] == 25.0
    expected = "not available (SQLite)"
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            c.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
            expected = "enabled" if c.fetchone() else "not enabled"
    assert s["slow_queries"] == expected and f"pg_stat_statements: {expected}" in report.html
    assert "admin:index" in report.html and "attendance-interventions" in report.html
    assert "endpoint,admin:index,20,10,50.0,300.0,2500.0" in report.csv
    mails = Notification.objects.filter(category=Category.REPORT)
    assert list(mails.values_list("recipient_id", flat=True)) == [month["admin"].id]  # superusers only
    assert run.result["emails_queued"] == 1 and run.result["metric_rows_pruned"] == 1
    assert s["event_bus_entries"] == 1 and "skillcore:events:intervention.opened" in report.html


@pytest.mark.parametrize("account_status", ["active", "suspended"])
def test_sms_figures_and_twilios_account_status(month, settings, twilio, account_status):
    settings.REDIS_URL = ""
    twilio.account_status = account_status
    guardian = f.UserFactory()
    oct_ = dt.datetime(2026, 10, 1, tzinfo=UTC)
    with time_machine.travel(oct_ + dt.timedelta(days=4), tick=False):
        for i, status in enumerate([Status.SENT] * 3 + [Status.FAILED]):
            Notification.objects.create(recipient=guardian, channel="sms", category="emergency", template="emergency",
                                        dedupe_key=f"sms{i}", status=status, send_after=oct_)
    run_health()
    report = Report.objects.get(kind="system-health")
    s = report.evidence["summary"]
    assert s["sms_error_rate"] == 25.0 and s["twilio_status"] == account_status
    assert report.evidence["notifications"]["sms"] == 4
    assert "channel,sms,4,1,25.0" in report.csv
    cell = f'<td class="warn">{account_status}</td>' if account_status != "active" else f"<td>{account_status}</td>"
    assert "Twilio" in report.html and cell in report.html


def test_twilio_not_configured_or_unreachable_is_reported_not_raised(month, settings):
    settings.REDIS_URL = ""
    run_health()
    assert Report.objects.get(kind="system-health").evidence["summary"]["twilio_status"] == "not configured"
    Report.objects.all().delete()
    JobRun.objects.all().delete()
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM_NUMBER = "AC" + "1" * 32, "t", "+15005550006"
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    run_health()
    assert Report.objects.get(kind="system-health").evidence["summary"]["twilio_status"].startswith(
        "unreachable: Twilio unreachable or timed out")


def test_event_bus_on_redis_reports_stream_lengths(month, settings):
    import uuid

    import redis

    prefix = f"skillcore-test-{uuid.uuid4().hex[:8]}:"
    settings.REDIS_URL, settings.EVENT_STREAM_PREFIX = "redis://127.0.0.1:6379/15", prefix
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis must run on 127.0.0.1:6379 for this test (CI starts it)")
    try:
        for _ in range(3):
            client.xadd(prefix + "notification.sent", {"p": "{}"})
        client.xadd(prefix + "intervention.opened", {"p": "{}"})
        run = run_health()
        assert run.result["event_bus_entries"] == 4
        assert f"{prefix}notification.sent" in Report.objects.get(kind="system-health").html
    finally:
        client.delete(prefix + "notification.sent", prefix + "intervention.opened")


def test_rerun_replaces_the_report_and_sends_nothing_new(month, settings):
    settings.REDIS_URL = ""
    first = run_health()
    again = run_health(trigger=JobRun.Trigger.MANUAL)
    assert Report.objects.filter(kind="system-health").count() == 1
    assert again.result["report_id"] == first.result["report_id"] and again.result["emails_queued"] == 0
    assert Notification.objects.filter(category=Category.REPORT).count() == 1


def _queries(n):
    RequestMetric.objects.bulk_create([RequestMetric(endpoint=f"e{i}:{n}", hour=dt.datetime(2026, 10, 2, i % 24, tzinfo=UTC),
                                                     requests=3) for i in range(n)])
    for i in range(n):
        JobRun.objects.create(job=f"job-{n}-{i}", slot=dt.datetime(2026, 10, 3, tzinfo=UTC) + dt.timedelta(minutes=i),
                              status=JobRun.Status.SUCCEEDED, duration_seconds=1, enqueued_at=SLOT)
    Report.objects.all().delete()
    with CaptureQueriesContext(connection) as ctx:
        run_health(trigger=JobRun.Trigger.MANUAL)
    JobRun.objects.filter(job=SLUG).delete()
    return len(ctx.captured_queries)


def test_query_count_does_not_grow_with_endpoints_or_jobs(db, system_admin, settings):
    settings.REDIS_URL = ""
    assert _queries(2) == _queries(12)


def test_jobs_run_command(month, settings):
    settings.REDIS_URL = ""
    call_command("jobs", "run", SLUG, "--as-of", SLOT.isoformat(), stdout=io.StringIO())
    assert JobRun.objects.get(job=SLUG).status == JobRun.Status.SUCCEEDED
    assert Report.objects.filter(kind="system-health", period_start=dt.date(2026, 10, 1)).exists()
