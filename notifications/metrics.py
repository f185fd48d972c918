"""The notification outbox as /metrics reports it: delivered and failed-for-good counters per
channel (kept at write time, notifications/counters.py) and the notifications still waiting.

Added to the engine's collector from ``NotificationsConfig.ready()``
(``scheduling.monitoring.metrics.add_outbox_source``): the engine counts the outbox without
importing notifications.
"""
from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from notifications.models import Channel, Notification, NotificationCounter, Status
from scheduling.monitoring.metrics import OutboxSource


def _families() -> dict:
    return {
        "notif_sent": CounterMetricFamily("notifications_sent", "Notifications delivered, by channel.", labels=["channel"]),
        "notif_failed": CounterMetricFamily(
            "notifications_failed", "Notifications that failed for good, by channel.", labels=["channel"]),
        "notif_waiting": GaugeMetricFamily(
            "notifications_waiting", "Notifications pending, deferred or sending, by channel.", labels=["channel"]),
    }


def _add(fam: dict, channel: str, *, sent: int, failed: int, waiting: int) -> None:
    fam["notif_sent"].add_metric([channel], sent)
    fam["notif_failed"].add_metric([channel], failed)
    fam["notif_waiting"].add_metric([channel], waiting)


NOTIFICATIONS = OutboxSource(
    name="notification",
    channels=tuple(Channel.values),
    counters=lambda: NotificationCounter.objects.all(),
    # notification_status_idx finds these whatever the size of the sent history.
    waiting=lambda: Notification.objects.filter(status__in=[Status.PENDING, Status.DEFERRED, Status.SENDING]),
    families=_families,
    add=_add,
)
