"""Notification and alert-delivery counters on /metrics: kept when a delivery settles (alert
deliveries here; notifications in tests/notifications/test_counters.py), so the scrape's
query count and values do not depend on the outbox history, and archiving sent
notifications or resending failed ones never lowers a counter."""
from __future__ import annotations

import datetime as dt
import importlib

from django.apps import apps
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest

from notifications import counters as notification_counters
from notifications.models import Notification, NotificationCounter
from notifications.services import notifications_resend
from scheduling.models import AlertDelivery, AlertDeliveryCounter
from scheduling.monitoring import alerting, metrics
from tests import factories as f
from tests.observability.conftest import received
from tests.observability.test_alerting import SLACK, accept, closed_port_url
from tests.observability.test_metrics import samples


def scrape(django_assert_num_queries) -> dict:
    registry = CollectorRegistry()
    registry.register(metrics.JobMetricsCollector())
    with django_assert_num_queries(metrics.QUERIES_ORM_BROKER):
        text = generate_latest(registry).decode()
    return {k: v for k, v in samples(text).items() if k[0] != "scheduled_job_metrics_scrape_seconds"}


def delivery_samples(m: dict) -> dict:
    return {k: v for k, v in m.items() if k[0].startswith(("notifications_", "scheduled_job_alert_deliveries"))}


def alert_counts(channel: str) -> tuple[int, int]:
    row = AlertDeliveryCounter.objects.filter(channel=channel).first()
    return (row.sent, row.failed) if row else (0, 0)


def deliveries(channel: str, n: int, now) -> list[AlertDelivery]:
    return AlertDelivery.objects.bulk_create([
        AlertDelivery(channel=channel, action="message", payload={"text": f"{channel} {i}"}, next_attempt_at=now, created_at=now)
        for i in range(n)
    ])


def outbox(user, n: int, *, channel="email", status="sent", prefix="n") -> None:
    """Outbox rows in ``status``, counted as the drainer counts them when it settles them."""
    now = timezone.now()
    Notification.objects.bulk_create([
        Notification(recipient=user, channel=channel, category="system", template="t", dedupe_key=f"{prefix}{i}",
                     status=status, send_after=now, sent_at=now if status == "sent" else None)
        for i in range(n)
    ])
    for _ in range(n):
        notification_counters.notification_settled(channel=channel, status=status)


# -- alert deliveries -------------------------------------------------------------------------
def test_alert_deliveries_count_each_outcome_once_and_retries_not_at_all(lakeside, endpoints, settings):
    accept(endpoints)
    now = timezone.now()
    deliveries("slack", 2, now)
    settings.PAGERDUTY_ROUTING_KEY = ""  # PagerDuty fails at once (permanent)
    deliveries("pagerduty", 1, now)
    report = alerting.deliver_due(now=now)
    assert (report.sent, report.failed) == (2, 1)
    assert (alert_counts("slack"), alert_counts("pagerduty")) == ((2, 0), (0, 1))
    assert alerting.deliver_due(now=now + dt.timedelta(hours=1)).sent == 0
    assert alert_counts("slack") == (2, 0)

    # Slack unreachable: a retry back to pending is not an outcome; the send after it is.
    good_url, settings.SLACK_WEBHOOK_URL = settings.SLACK_WEBHOOK_URL, closed_port_url(SLACK)
    [late] = deliveries("slack", 1, now)
    assert alerting.deliver_due(now=now).retrying == 1
    assert alert_counts("slack") == (2, 0)
    settings.SLACK_WEBHOOK_URL = good_url
    late.refresh_from_db()
    assert alerting.deliver_due(now=late.next_attempt_at).sent == 1
    assert alert_counts("slack") == (3, 0)
    assert len(received(endpoints, SLACK)) == 3


def test_a_settle_that_finds_the_row_no_longer_sending_counts_nothing(lakeside):
    now = timezone.now()
    [d] = deliveries("slack", 1, now)
    [claimed] = alerting._claim(now=now, limit=1, ids=None)
    # Its lease ran out and another sender re-claimed and settled it meanwhile.
    AlertDelivery.objects.filter(pk=d.pk).update(status="sent")
    alerting._settle(claimed, "sent", sent_at=now, last_error="")
    alerting._settle(claimed, "failed", last_error="late")
    assert AlertDelivery.objects.get().status == "sent"
    assert alert_counts("slack") == (0, 0)


def test_resending_a_failed_alert_delivery_never_lowers_the_failed_counter(lakeside, endpoints, settings):
    accept(endpoints)
    settings.PAGERDUTY_ROUTING_KEY = ""
    now = timezone.now()
    [d] = deliveries("pagerduty", 1, now)
    alerting.deliver_due(now=now)
    assert alert_counts("pagerduty") == (0, 1)
    alerting.deliveries_resend(ids=[d.pk], now=now)
    assert alert_counts("pagerduty") == (0, 1)
    settings.PAGERDUTY_ROUTING_KEY = "R0UT1NGKEY"
    alerting.deliver_due(now=now)
    assert alert_counts("pagerduty") == (1, 1)


# -- the scrape ---------------------------------------------------------------------------------
def test_scrape_cost_and_values_do_not_depend_on_the_outbox_history(lakeside, endpoints, settings,
                                                                   django_assert_num_queries):
    """Same number of queries at 5 and 2,000+ outbox rows; after archival-style deletion of
    every sent notification and alert delivery, and a resend of the failed notifications,
    every counter reads exactly as before (the waiting gauges follow the resend)."""
    accept(endpoints)
    user = f.UserFactory()
    outbox(user, 2, prefix="s")
    outbox(user, 1, status="failed", prefix="f")
    outbox(user, 1, channel="push", status="pending", prefix="p")
    small = scrape(django_assert_num_queries)
    assert small[("notifications_sent_total", (("channel", "email"),))] == 2
    assert small[("notifications_failed_total", (("channel", "email"),))] == 1
    assert small[("notifications_waiting", (("channel", "push"),))] == 1
    assert small[("scheduled_job_alert_deliveries_total", (("channel", "slack"), ("outcome", "sent")))] == 0
    assert small[("scheduled_job_alert_deliveries_waiting", (("channel", "email"),))] == 0

    outbox(user, 2000, prefix="big")
    outbox(user, 50, channel="push", status="failed", prefix="pf")
    now = timezone.now()
    deliveries("slack", 30, now)
    alerting.deliver_due(now=now)
    deliveries("pagerduty", 2, now + dt.timedelta(hours=1))  # not due yet: waiting
    large = scrape(django_assert_num_queries)
    assert large[("notifications_sent_total", (("channel", "email"),))] == 2002
    assert large[("notifications_failed_total", (("channel", "push"),))] == 50
    assert large[("scheduled_job_alert_deliveries_total", (("channel", "slack"), ("outcome", "sent")))] == 30
    assert large[("scheduled_job_alert_deliveries_waiting", (("channel", "pagerduty"),))] == 2

    Notification.objects.filter(status="sent").delete()
    AlertDelivery.objects.filter(status="sent").delete()
    pruned = scrape(django_assert_num_queries)
    assert pruned == large

    notifications_resend(notification_ids=Notification.objects.filter(status="failed").values_list("id", flat=True))
    resent = scrape(django_assert_num_queries)
    assert resent[("notifications_failed_total", (("channel", "email"),))] == 1
    assert resent[("notifications_failed_total", (("channel", "push"),))] == 50
    assert resent[("notifications_waiting", (("channel", "push"),))] == 51
    assert {k: v for k, v in resent.items() if "waiting" not in k[0]} == {
        k: v for k, v in large.items() if "waiting" not in k[0]}


def test_every_channel_has_its_series_before_its_first_outcome(db):
    registry = CollectorRegistry()
    registry.register(metrics.JobMetricsCollector())
    m = samples(generate_latest(registry).decode())
    for channel in ("email", "push"):
        for name in ("notifications_sent_total", "notifications_failed_total", "notifications_waiting"):
            assert m[(name, (("channel", channel),))] == 0
    for channel in ("pagerduty", "slack", "email"):
        assert m[("scheduled_job_alert_deliveries_waiting", (("channel", channel),))] == 0
        for outcome in ("sent", "failed"):
            assert m[("scheduled_job_alert_deliveries_total", (("channel", channel), ("outcome", outcome)))] == 0


def test_the_migration_backfills_the_alert_delivery_counters(lakeside):
    now = timezone.now()
    for channel, statuses in (("slack", ["sent", "sent", "failed", "pending", "sending"]), ("pagerduty", ["sent"]),
                              ("email", ["pending"])):
        AlertDelivery.objects.bulk_create([
            AlertDelivery(channel=channel, action="message", payload={}, status=s, next_attempt_at=now, created_at=now)
            for s in statuses
        ])
    importlib.import_module("scheduling.migrations.0007_alert_delivery_counters").backfill(apps, None)
    assert dict(AlertDeliveryCounter.objects.values_list("channel", "sent")) == {"slack": 2, "pagerduty": 1}
    assert dict(AlertDeliveryCounter.objects.values_list("channel", "failed")) == {"slack": 1, "pagerduty": 0}
    assert not NotificationCounter.objects.exists()
