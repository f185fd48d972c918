"""The outbox drains on its own: after ``manage.py jobs sync`` (what every deploy runs), a
real ``manage.py qcluster`` delivers a queued email to a real SMTP server, and no one calls
the drain (settings.SCHEDULING_PERIODIC_TASKS, scheduling/periodic_tasks.py)."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from notifications.mail import message_id_for
from notifications.models import Notification, Status
from notifications.services import NotificationRequest, notifications_enqueue
from tests.support.qcluster import cluster_env, qcluster, wait


@pytest.mark.django_db(transaction=True)
def test_a_pending_email_is_delivered_by_a_qcluster_after_jobs_sync(counselor, smtp_server, pg_only, tmp_path):
    counselor.email = "counselor@example.org"
    counselor.save(update_fields=["email"])
    # A staff member's message: no quiet hours, so it is due now whatever the clock says.
    notifications_enqueue([NotificationRequest(
        recipient_id=counselor.pk, category="system", channel="email", template="system",
        context={"headline": "Outbox check", "message": "Sent by the scheduled drain"},
        dedupe_key="outbox-schedule-1")])
    assert Notification.objects.get(dedupe_key="outbox-schedule-1").status == Status.PENDING
    call_command("jobs", "sync", stdout=StringIO())

    env = cluster_env(
        TEST_QCLUSTER_EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp_server.port), EMAIL_TIMEOUT="5",
        SKILLCORE_TEST_SCHEDULER_TICK="2",
    )
    with qcluster(env, tmp_path / "qcluster.log"):
        # The first scheduler pass (at start: the test tick) fires the drain row, due now.
        sent = wait(lambda: Notification.objects.filter(dedupe_key="outbox-schedule-1", status=Status.SENT).first(),
                    90, "the queued email to be sent")
    log = (tmp_path / "qcluster.log").read_text()
    delivered = [m for m in smtp_server.messages if m["Message-ID"] == message_id_for("outbox-schedule-1")]
    assert len(delivered) == 1, log[-3000:]
    assert (delivered[0]["To"], delivered[0]["Subject"]) == ("counselor@example.org", "Outbox check")
    assert (sent.attempts, sent.provider_message_id) == (1, message_id_for("outbox-schedule-1"))
