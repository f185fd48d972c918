"""Two drainers at once, and a drainer killed between send and status update (PostgreSQL)."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections import Counter

from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone

from notifications.delivery import LEASE, drain, drain_batch
from notifications.mail import message_id_for
from notifications.models import Notification, NotificationCounter, Status
from notifications.services import NotificationRequest, notifications_enqueue


def _enqueue(user, n):
    notifications_enqueue(
        NotificationRequest(recipient_id=user.pk, category="system", channel="email", template="system",
                            context={"headline": f"Notice {i}", "message": "Hello"}, dedupe_key=f"c:{i}")
        for i in range(n)
    )


def test_two_drainers_never_send_a_message_twice(transactional_db, pg_only, counselor, smtp_server):
    _enqueue(counselor, 120)
    smtp_server.delay = 0.002  # a little provider latency so the drainers interleave
    barrier = threading.Barrier(2)
    totals = {}

    def run(name):
        try:
            barrier.wait()
            totals[name] = drain(batch_size=10, worker=name)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(f"drainer-{i}",)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    ids = smtp_server.message_ids()
    assert len(ids) == 120 and len(set(ids)) == 120  # every message once
    assert totals["drainer-1"].sent + totals["drainer-2"].sent == 120
    assert totals["drainer-1"].sent > 0 and totals["drainer-2"].sent > 0  # both did work
    assert Counter(Notification.objects.values_list("status", "attempts")) == {(Status.SENT, 1): 120}
    by_worker = Counter(Notification.objects.values_list("claimed_by", flat=True))
    assert set(by_worker) == {"drainer-1", "drainer-2"}
    # Both drainers added to the one email counter row: no increment lost, none doubled.
    assert NotificationCounter.objects.values_list("channel", "sent", "failed").get() == ("email", 120, 0)


def test_a_drainer_killed_between_send_and_status_update(transactional_db, pg_only, counselor, smtp_server):
    """The protocol's guarantee: at-least-once. The message whose send outcome was lost is
    sent again after the lease, with the same Message-ID; the rest of the batch is sent once."""
    _enqueue(counselor, 5)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skillcore.settings", "SECRET_KEY": "kill-test", "DATABASE_POOL": "false",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_server.port), "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "notifications", "drain", "--batch-size", "10"],
        cwd=django_settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    # The SMTP server has the first message; the worker is killed before it hears "250".
    smtp_server.on_data = lambda msg: os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    smtp_server.on_data = None
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]

    assert len(smtp_server.messages) == 1
    first_id = smtp_server.messages[0]["Message-ID"]
    rows = list(Notification.objects.order_by("id"))
    assert {(r.status, r.attempts) for r in rows} == {(Status.SENDING, 1)}  # claimed, outcome unknown
    dead_worker = rows[0].claimed_by

    # Within the lease nobody touches them (the worker might only be slow).
    assert drain_batch(worker="rescuer").claimed == 0
    # After the lease they are re-claimed and sent.
    summary = drain_batch(worker="rescuer", now=timezone.now() + LEASE + dt.timedelta(seconds=1))
    assert (summary.claimed, summary.sent) == (5, 5)

    ids = Counter(smtp_server.message_ids())
    assert ids[first_id] == 2  # the lost-outcome message went twice, with one Message-ID
    assert sorted(ids.values()) == [1, 1, 1, 1, 2]
    assert set(ids) == {message_id_for(f"c:{i}") for i in range(5)}
    assert {(r.status, r.attempts, r.claimed_by) for r in Notification.objects.all()} == {(Status.SENT, 2, "rescuer")}
    assert dead_worker != "rescuer"
    # Six sends, five messages: the killed worker never settled its row, so only the
    # rescuer's winning UPDATEs counted.
    assert NotificationCounter.objects.values_list("sent", "failed").get() == (5, 0)


def test_a_late_worker_cannot_overwrite_a_reclaimed_row(counselor, smtp_server):
    _enqueue(counselor, 1)
    from notifications.delivery import claim_batch

    now = timezone.now()
    [nid] = claim_batch(worker="slow", limit=5, now=now)
    [again] = claim_batch(worker="fast", limit=5, now=now + LEASE + dt.timedelta(seconds=1))
    assert again == nid
    # The slow worker finally reports: its conditional update matches nothing.
    assert Notification.objects.filter(id=nid, status=Status.SENDING, claimed_by="slow").update(status=Status.FAILED) == 0
    assert Notification.objects.get().claimed_by == "fast"


def test_a_message_that_keeps_killing_its_worker_gives_up(counselor, smtp_server):
    from notifications.delivery import MAX_ATTEMPTS, claim_batch

    _enqueue(counselor, 1)
    now = timezone.now()
    for i in range(MAX_ATTEMPTS):
        claim_batch(worker=f"w{i}", limit=1, now=now + i * (LEASE + dt.timedelta(seconds=1)))
    summary = drain_batch(now=now + MAX_ATTEMPTS * (LEASE + dt.timedelta(seconds=1)))
    n = Notification.objects.get()
    assert summary.failed == 1 and n.status == Status.FAILED and "outcome of the last unknown" in n.status_reason
    assert smtp_server.messages == []
