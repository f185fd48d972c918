"""Draining the notification outbox: claim a batch, render, send, settle.

The claim, lease, settle-only-if-still-mine and retry steps are the outbox protocol of
skillcore/outbox.py (``OUTBOX`` below): rows are claimed with ``FOR UPDATE SKIP LOCKED`` by
worker name (``claimed_by``), rendered and sent outside any transaction, and settled with
``UPDATE ... WHERE status='sending' AND claimed_by=<worker>``; a final outcome (sent,
failed) is counted for /metrics in that UPDATE's transaction, only when it matched
(``_finish``). A retry of a family message is also held to the district's quiet hours.

A worker that dies between send and status update
--------------------------------------------------
The row stays 'sending'. After the lease (10 minutes by default, longer than any batch
takes) the next drainer re-claims it and sends it again: delivery is **at-least-once**,
and the attempt counter (incremented at claim) stops a message that kills its worker from
looping forever. We chose at-least-once over at-most-once because a missed emergency
or IEP-meeting notice is worse than a duplicate, and because both providers let us make
the duplicate harmless: email carries a Message-ID derived from the dedupe key (mailbox
providers collapse copies; SendGrid's custom_args carry the key for reconciliation), push
carries collapse ids/tags derived from it (a re-sent push replaces the first on the device).
Rows that were claimed but not yet sent when the worker died are simply sent once, late.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone

from notifications import counters, push, sms
from notifications.mail import Mailer, Outcome
from notifications.models import CLAIMABLE_STATUSES, Channel, Notification, RecipientProfile, Status
from notifications.rendering import RenderError, render_email, render_push, render_sms
from notifications.services import recipient_mark_email_bouncing
from skillcore import events
from skillcore.outbox import Outbox
from students.models import DeviceToken

logger = logging.getLogger(__name__)

LEASE = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 5
BACKOFF_BASE = dt.timedelta(minutes=1)
BACKOFF_CAP = dt.timedelta(hours=6)
# Retries are not jittered: a failed row's next attempt is already spread by its own
# send time, and tests pin the exact delays.
OUTBOX = Outbox(
    model=Notification, waiting=CLAIMABLE_STATUSES, due_field="send_after", lease=LEASE,
    backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP, max_attempts=MAX_ATTEMPTS, owner_field="claimed_by",
)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:100]


def backoff(attempts: int) -> dt.timedelta:
    """1, 2, 4, 8 ... minutes after the n-th failed attempt, at most 6 hours."""
    return OUTBOX.backoff(attempts)


def claim_batch(*, worker: str, limit: int, now: dt.datetime, lease: dt.timedelta = LEASE,
                channels: tuple[str, ...] | None = None) -> list[int]:
    """Claim up to ``limit`` due rows for ``worker`` (the outbox protocol's claim), only on
    ``channels`` if given."""
    return OUTBOX.claim(now=now, limit=limit, owner=worker, lease=lease,
                        among=Q(channel__in=channels) if channels else None)


@dataclass
class DrainSummary:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0  # held back at delivery: the recipient replied STOP since it was queued
    reasons: dict = field(default_factory=dict)

    def add(self, other: DrainSummary) -> None:
        self.claimed += other.claimed
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.suppressed += other.suppressed
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v

    def as_dict(self) -> dict:
        return {"claimed": self.claimed, "sent": self.sent, "retried": self.retried, "failed": self.failed,
                "suppressed": self.suppressed, "reasons": self.reasons}


def _settle(n: Notification, outcome: Outcome, *, worker: str, now: dt.datetime, summary: DrainSummary) -> None:
    """Write one outcome, only if this worker still holds the claim."""
    if outcome.kind == "sent":
        _finish(n, Status.SENT, worker=worker, sent_at=timezone.now(), provider_message_id=outcome.provider_message_id,
                status_reason="", error="")
        summary.sent += 1
        return
    if outcome.kind == "retry" and not OUTBOX.exhausted(n.attempts):
        send_after = n.earliest_send_at(now + backoff(n.attempts))
        OUTBOX.release(n.id, owner=worker, due_at=send_after, status_reason=f"retry {n.attempts}/{MAX_ATTEMPTS}: {outcome.reason}"[:200],
                       error=outcome.error or outcome.reason, claimed_at=None, claimed_by="")
        summary.retried += 1
        return
    reason = outcome.reason if outcome.kind == "fail" else f"gave up after {n.attempts} attempts: {outcome.reason}"
    _finish(n, Status.FAILED, worker=worker, status_reason=reason[:200], error=outcome.error or reason, claimed_at=None)
    summary.failed += 1
    summary.reasons[reason[:60]] = summary.reasons.get(reason[:60], 0) + 1


def _finish(n: Notification, status: str, *, worker: str, **fields) -> None:
    """Write a final outcome and count it (notifications/counters.py) in one transaction,
    only if this worker's conditional update matched: a worker whose lease expired, or a
    row another drainer already settled, changes and counts nothing."""
    OUTBOX.settle(n.id, owner=worker, status=status, **fields,
                  counted=lambda settled: counters.notification_settled(channel=n.channel, status=settled))


def _deliver_email(rows: list[Notification], *, worker, now, summary) -> None:
    mailer = Mailer()
    bounced: list[int] = []
    try:
        for n in rows:
            try:
                rendered = render_email(n)
            except RenderError as exc:
                _settle(n, Outcome("fail", reason=str(exc)[:200], error=str(exc)), worker=worker, now=now, summary=summary)
                continue
            outcome = mailer.send(n, rendered)
            if outcome.bounce:
                bounced.append(n.recipient_id)
            _settle(n, outcome, worker=worker, now=now, summary=summary)
    finally:
        mailer.close()
    if bounced:
        recipient_mark_email_bouncing(user_ids=bounced, reason="permanent delivery failure")


def _deliver_push(rows: list[Notification], *, worker, now, summary) -> None:
    tokens: dict[int, list[tuple[int, str]]] = {}
    for tid, uid, token in DeviceToken.objects.filter(
        user_id__in={n.recipient_id for n in rows}, is_active=True
    ).values_list("id", "user_id", "token"):
        tokens.setdefault(uid, []).append((tid, token))
    triples, owners, malformed = [], [], []
    for n in rows:
        try:
            rendered = render_push(n)
        except RenderError as exc:
            _settle(n, Outcome("fail", reason=str(exc)[:200], error=str(exc)), worker=worker, now=now, summary=summary)
            continue
        mine = tokens.get(n.recipient_id, [])
        good = [(tid, t) for tid, t in mine if push.token_is_wellformed(t)]
        malformed += [tid for tid, t in mine if not push.token_is_wellformed(t)]
        if not good:
            reason = "malformed device token" if mine else "no active device token"
            _settle(n, Outcome("fail", reason=reason), worker=worker, now=now, summary=summary)
            continue
        for tid, t in good:
            triples.append((n, rendered, t))
            owners.append((n, tid))
    results = push.send_batch(triples) if triples else []
    per_notification: dict[int, list] = {}
    dead_tokens = list(malformed)
    for (n, tid), result in zip(owners, results):
        per_notification.setdefault(n.id, []).append(result)
        if result.deactivate:
            dead_tokens.append(tid)
    if dead_tokens:
        # Invalid or unregistered tokens are switched off at once so later enqueues see the
        # recipient has no device (and skip push) instead of failing again.
        DeviceToken.objects.filter(id__in=dead_tokens).update(is_active=False)
    by_id = {n.id: n for n, _ in owners}
    for nid, token_results in per_notification.items():
        _settle(by_id[nid], push.settle(token_results), worker=worker, now=now, summary=summary)


def _deliver_sms(rows: list[Notification], *, worker, now, summary) -> None:
    """Texts through Twilio, one API call each. Who may be texted is decided again here
    (one read for the batch): a family that replied STOP after a message was queued (held
    by quiet hours, waiting for a retry) gets only emergencies, like at enqueue."""
    if not rows:
        return
    numbers = {
        uid: (number, consent_at, opted_out_at)
        for uid, number, consent_at, opted_out_at in RecipientProfile.objects.filter(
            user_id__in={n.recipient_id for n in rows}).values_list("user_id", "mobile_number", "sms_consent_at", "sms_opted_out_at")
    }
    sender = sms.Sender()
    for n in rows:
        number, consent_at, opted_out_at = numbers.get(n.recipient_id, ("", None, None))
        why = RecipientProfile.sms_allows(category=n.category, mobile_number=number, consent_at=consent_at, opted_out_at=opted_out_at)
        if why is not None:
            # Not a delivery failure: a family decision, recorded like enqueue's (not counted).
            OUTBOX.settle(n.id, owner=worker, status=Status.SUPPRESSED, status_reason=why, claimed_at=None)
            summary.suppressed += 1
            continue
        try:
            rendered = render_sms(n)
        except RenderError as exc:
            _settle(n, Outcome("fail", reason=str(exc)[:200], error=str(exc)), worker=worker, now=now, summary=summary)
            continue
        _settle(n, sender.send(to=number, body=rendered.sms_body), worker=worker, now=now, summary=summary)


def drain_batch(*, worker: str | None = None, batch_size: int = 100, now: dt.datetime | None = None,
                lease: dt.timedelta = LEASE, channels: tuple[str, ...] | None = None) -> DrainSummary:
    """Claim one batch (of ``channels`` only, if given: the demo sends its texts alone) and
    deliver it. Returns counts; ``claimed == 0`` means nothing was due."""
    worker = worker or worker_name()
    now = now or timezone.now()
    summary = DrainSummary()
    ids = claim_batch(worker=worker, limit=batch_size, now=now, lease=lease, channels=channels)
    summary.claimed = len(ids)
    if not ids:
        return summary
    rows = list(Notification.objects.filter(id__in=ids, claimed_by=worker).select_related("recipient", "district").order_by("id"))
    live = []
    for n in rows:
        if OUTBOX.over_budget(n.attempts):  # a re-claimed row whose worker kept dying
            _settle(n, Outcome("fail", reason=f"gave up after {n.attempts - 1} attempts (outcome of the last unknown: worker stopped)"),
                    worker=worker, now=now, summary=summary)
        else:
            live.append(n)
    _deliver_email([n for n in live if n.channel == Channel.EMAIL], worker=worker, now=now, summary=summary)
    _deliver_push([n for n in live if n.channel == Channel.PUSH], worker=worker, now=now, summary=summary)
    _deliver_sms([n for n in live if n.channel == Channel.SMS], worker=worker, now=now, summary=summary)
    events.publish_many("notification.sent", Notification.objects.filter(  # one read + one write a batch
        id__in=ids, claimed_by=worker, status=Status.SENT).values("id", "category", "channel", "recipient_id", "student_id"))
    logger.info("notifications drain %s: %s", worker, summary.as_dict())
    return summary


def drain(*, batch_size: int = 100, max_batches: int | None = None, worker: str | None = None) -> DrainSummary:
    """Drain batches until nothing is due (or ``max_batches``)."""
    worker = worker or worker_name()
    total = DrainSummary()
    batches = 0
    while max_batches is None or batches < max_batches:
        summary = drain_batch(worker=worker, batch_size=batch_size)
        total.add(summary)
        batches += 1
        if summary.claimed < batch_size:
            break
    return total
