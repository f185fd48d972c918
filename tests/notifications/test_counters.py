"""The notification counters /metrics reads (NotificationCounter): each transition into sent
or failed counted once, by the write that won it, in its transaction; never lowered by a
resend or by deleting history."""
from __future__ import annotations

import datetime as dt
import importlib

import pytest
import time_machine
from django.apps import apps

from notifications import services
from notifications.delivery import LEASE, MAX_ATTEMPTS, DrainSummary, _settle, backoff, claim_batch, drain_batch
from notifications.mail import Outcome
from notifications.models import Notification, NotificationCounter, Status
from notifications.services import NotificationRequest, notifications_enqueue, notifications_resend
from tests import factories as f

NOON = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _noon():
    with time_machine.travel(NOON, tick=False):
        yield


def counts(channel="email") -> tuple[int, int]:
    """(sent, failed) of a channel; (0, 0) before its first outcome."""
    row = NotificationCounter.objects.filter(channel=channel).first()
    return (row.sent, row.failed) if row else (0, 0)


def request(user, key, *, category="system", channel="email"):
    return NotificationRequest(recipient_id=user.pk, category=category, channel=channel, template="system",
                               context={"headline": "Hi", "message": "Test"}, dedupe_key=key)


def test_sent_and_failed_are_counted_once_per_message_by_the_drainer(counselor, smtp_server):
    refused = f.StaffFactory(email="gone@example.org")
    smtp_server.refuse[refused.email] = "550 5.1.1 no such user"
    notifications_enqueue([request(counselor, "a"), request(counselor, "b"), request(refused, "c")])
    assert counts() == (0, 0)  # pending is not an outcome

    summary = drain_batch(worker="w1")

    assert (summary.sent, summary.failed) == (2, 1)
    assert counts() == (2, 1)
    assert drain_batch(worker="w2").claimed == 0
    assert counts() == (2, 1)
    assert counts("push") == (0, 0)


def test_retries_count_nothing_until_the_last_attempt_fails(counselor, smtp_server):
    smtp_server.refuse[counselor.email] = "451 4.7.1 greylisted"
    notifications_enqueue([request(counselor, "k")])
    now = NOON
    for attempt in range(1, MAX_ATTEMPTS + 1):
        drain_batch(now=now)
        assert counts() == ((0, 0) if attempt < MAX_ATTEMPTS else (0, 1))
        now += backoff(attempt)
    assert Notification.objects.get().status == Status.FAILED


def test_a_settle_that_loses_to_a_newer_claim_counts_nothing(counselor, smtp_server):
    """The slow worker's lease expired and another drainer re-claimed the row: the slow
    worker's conditional UPDATE matches nothing, so it counts nothing; the winner counts."""
    notifications_enqueue([request(counselor, "k")])
    [nid] = claim_batch(worker="slow", limit=5, now=NOON)
    slow_view = Notification.objects.get(pk=nid)
    claim_batch(worker="fast", limit=5, now=NOON + LEASE + dt.timedelta(seconds=1))

    _settle(slow_view, Outcome("sent", provider_message_id="<late>"), worker="slow", now=NOON, summary=DrainSummary())
    _settle(slow_view, Outcome("fail", reason="late failure"), worker="slow", now=NOON, summary=DrainSummary())
    assert Notification.objects.get().status == Status.SENDING and counts() == (0, 0)

    fast_view = Notification.objects.get(pk=nid)
    _settle(fast_view, Outcome("sent", provider_message_id="<m>"), worker="fast", now=NOON, summary=DrainSummary())
    _settle(fast_view, Outcome("sent", provider_message_id="<m>"), worker="fast", now=NOON, summary=DrainSummary())
    assert Notification.objects.get().status == Status.SENT and counts() == (1, 0)


def test_a_resend_never_lowers_failed_and_its_new_outcome_counts_again(counselor, smtp_server):
    smtp_server.refuse[counselor.email] = "550 5.1.1 no such user"
    notifications_enqueue([request(counselor, "k")])
    drain_batch()
    assert counts() == (0, 1)
    notifications_resend(notification_ids=Notification.objects.values_list("id", flat=True))
    assert Notification.objects.get().status == Status.PENDING
    assert counts() == (0, 1)  # the failure happened; putting the row back does not undo it
    del smtp_server.refuse[counselor.email]
    drain_batch()
    assert counts() == (1, 1)


def test_deleting_sent_history_leaves_the_counters(counselor, smtp_server):
    notifications_enqueue([request(counselor, f"k{i}") for i in range(3)])
    drain_batch()
    Notification.objects.filter(status=Status.SENT).delete()  # what data archival does after 90 days
    assert counts() == (3, 0)


def test_a_row_refused_at_enqueue_counts_as_failed_once(family):
    guardian = family["guardian"]
    summary = notifications_enqueue([request(guardian, "bad", category="gossip"), request(guardian, "ok"),
                                     request(guardian, "bad-push", category="gossip", channel="push")])
    assert summary.failed == 2
    assert (counts("email"), counts("push")) == ((0, 1), (0, 1))
    # The same slot re-run: duplicates, nothing new written, nothing counted.
    again = notifications_enqueue([request(guardian, "bad", category="gossip")])
    assert again.duplicates == 1 and counts("email") == (0, 1)
    # Suppressed rows are decisions, not failures (as the grouped count never had them).
    guardian.is_active = False
    guardian.save()
    notifications_enqueue([request(guardian, "inactive")])
    assert Notification.objects.get(dedupe_key="inactive").status == Status.SUPPRESSED
    assert counts("email") == (0, 1)


def test_a_failed_row_a_concurrent_enqueue_wrote_first_is_not_counted_twice(pg_only, family, monkeypatch):
    """PostgreSQL: step 1 saw no row, but another enqueue of the same key wrote (and counted)
    it before this INSERT, which ON CONFLICT skips: only the rows the INSERT returns count."""
    guardian = family["guardian"]
    original = services._insert_outbox

    def the_other_enqueue_wins(rows, **kw):
        Notification.objects.create(recipient=guardian, channel="email", category="gossip", template="system",
                                    dedupe_key="bad", status=Status.FAILED, send_after=NOON)
        return original(rows, **kw)

    monkeypatch.setattr(services, "_insert_outbox", the_other_enqueue_wins)
    notifications_enqueue([request(guardian, "bad", category="gossip")])
    assert Notification.objects.filter(dedupe_key="bad").count() == 1
    assert counts("email") == (0, 0)


def test_concurrent_first_outcomes_share_one_row_per_channel(counselor):
    from notifications import counters

    for status in (Status.SENT, Status.SENT, Status.FAILED, Status.PENDING, Status.SUPPRESSED):
        counters.notification_settled(channel="push", status=status)
    counters.failed_at_enqueue({"push": 3, "email": 0})
    assert NotificationCounter.objects.filter(channel="push").count() == 1
    assert counts("push") == (2, 4)
    assert not NotificationCounter.objects.filter(channel="email").exists()


def test_the_migration_backfills_the_counters_from_the_outbox(counselor):
    statuses = ["sent", "sent", "failed", "pending", "deferred", "sending", "suppressed"]
    for i, status in enumerate(statuses):
        for channel in ("email", "push"):
            Notification.objects.create(recipient=counselor, channel=channel, category="system", template="t",
                                        dedupe_key=f"{channel}{i}", status=status, send_after=NOON)
    Notification.objects.create(recipient=counselor, channel="push", category="system", template="t",
                                dedupe_key="extra", status="sent", send_after=NOON)
    importlib.import_module("notifications.migrations.0006_notification_counters").backfill(apps, None)
    assert (counts("email"), counts("push")) == ((2, 1), (3, 1))
