"""The outbox protocol (skillcore/outbox.py) both outboxes follow: the backoff shared with the
engine's job retries, and "settle only if still mine" for the alert sender, whose claim is
its claimed_at instant (the notification drainer's, by worker name, is in
tests/notifications/test_counters.py and test_concurrency.py)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from notifications import delivery
from scheduling import registry
from scheduling.models import AlertDelivery, AlertDeliveryCounter
from scheduling.monitoring import alerting
from skillcore.outbox import backoff

MINUTE = dt.timedelta(minutes=1)


def test_backoff_doubles_from_the_base_stops_at_the_cap_and_scales_by_the_jitter():
    delays = [backoff(a, base=MINUTE, cap=dt.timedelta(minutes=5)) for a in (0, 1, 2, 3, 4, 5)]
    assert delays == [MINUTE, MINUTE, 2 * MINUTE, 4 * MINUTE, 5 * MINUTE, 5 * MINUTE]
    assert backoff(3, base=MINUTE, cap=dt.timedelta(hours=1), jitter=0.5) == 2 * MINUTE
    # A runaway attempt count is the cap, not an overflow.
    assert backoff(10_000, base=MINUTE, cap=dt.timedelta(hours=6)) == dt.timedelta(hours=6)


def test_the_outboxes_and_the_engine_retries_use_the_one_backoff():
    job = registry.Job(slug="x", title="X", default_cron=None, why="test", backoff_base=10, backoff_cap=25)
    for attempt in (1, 2, 3, 4):
        assert delivery.backoff(attempt) == backoff(attempt, base=MINUTE, cap=dt.timedelta(hours=6))
        assert alerting.backoff(attempt) == backoff(attempt, base=dt.timedelta(seconds=15), cap=dt.timedelta(minutes=15))
        assert job.backoff(attempt, jitter=0.75) == backoff(
            attempt, base=dt.timedelta(seconds=10), cap=dt.timedelta(seconds=25), jitter=0.75)


@pytest.mark.django_db
def test_an_alert_sender_whose_lease_ran_out_cannot_settle_the_row_another_sender_claimed():
    now = timezone.now()
    AlertDelivery.objects.create(channel="slack", action="message", payload={"text": "t"}, next_attempt_at=now, created_at=now)
    [slow] = alerting._claim(now=now, limit=1, ids=None)
    # The slow sender overran its lease: a second sender claims the row again.
    [fast] = alerting._claim(now=now + alerting.LEASE + dt.timedelta(seconds=1), limit=1, ids=None)
    assert (slow.pk, slow.attempts, fast.attempts) == (fast.pk, 1, 2)

    alerting._settle(slow, AlertDelivery.Status.FAILED, last_error="late")
    row = AlertDelivery.objects.get()
    assert (row.status, row.claimed_at, row.last_error) == ("sending", fast.claimed_at, "")
    assert not AlertDeliveryCounter.objects.exists()

    alerting._settle(fast, AlertDelivery.Status.SENT, sent_at=timezone.now(), last_error="")
    assert AlertDelivery.objects.get().status == "sent"
    assert list(AlertDeliveryCounter.objects.values_list("channel", "sent", "failed")) == [("slack", 1, 0)]
