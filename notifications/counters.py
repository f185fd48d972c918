"""Writes of the notification counters /metrics reports (NotificationCounter, one row per
channel): ``notifications_sent_total`` and ``notifications_failed_total``.

Every transition the metrics count goes through here, in the same transaction as the
status write, and only when that write won:
- delivery._settle: sending -> sent, sending -> failed (the ``UPDATE ... WHERE
  status='sending' AND claimed_by=<worker>`` matched its row). A worker whose lease
  expired matches nothing and counts nothing; a worker killed between send and settle
  counts nothing, and the drainer that re-claims the row counts its outcome once.
- services._enqueue_chunk: rows inserted as failed (bad input such as an unknown
  category), counted from the rows the INSERT actually wrote (a concurrent enqueue of
  the same dedupe key writes and counts it, not both).
Suppressed rows (a family rule said no) are decisions, not delivery failures: not counted,
as they never were. Retries (sending -> pending) and resends (failed -> pending) are not
outcomes; the row's next outcome is counted when it happens. Pending, deferred and sending
are a gauge, counted live at scrape time (index notification_status_idx).
"""
from __future__ import annotations

from collections.abc import Mapping

from notifications.models import NotificationCounter, Status
from skillcore import counters


def notification_settled(*, channel: str, status: str) -> None:
    """Count one notification that has just entered ``status`` (sent or failed)."""
    if status == Status.SENT:
        counters.add(NotificationCounter, key={"channel": channel}, increments={"sent": 1})
    elif status == Status.FAILED:
        counters.add(NotificationCounter, key={"channel": channel}, increments={"failed": 1})


def failed_at_enqueue(by_channel: Mapping[str, int]) -> None:
    """Count rows an enqueue inserted as failed, per channel (one statement per channel)."""
    for channel, n in sorted(by_channel.items()):
        counters.add(NotificationCounter, key={"channel": channel}, increments={"failed": n})
