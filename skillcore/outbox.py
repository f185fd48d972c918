"""The outbox protocol: rows written in the transaction that decided them, sent later by
whichever worker claims them.

Two outboxes follow it: the family notifications (``notifications.Notification``, drained by
notifications/delivery.py) and the alert deliveries (``scheduling.AlertDelivery``, sent by
scheduling/monitoring/alerting.py). ``backoff`` is also the delay of the engine's job retries
(``scheduling.registry.Job.backoff``).

The steps
---------
1. **Claim** (``Outbox.claim``), in one transaction: ``SELECT id ... WHERE (status IN
   <waiting> AND <due> <= now) OR (status = 'sending' AND claimed_at < now - lease) ORDER BY
   <due>, id LIMIT n FOR UPDATE SKIP LOCKED``, then ``UPDATE ... SET status = 'sending',
   claimed_at = now, <owner> = me, attempts = attempts + 1 WHERE id IN (...) AND <same
   condition>``. On PostgreSQL a second claimant skips the locked rows and takes the next
   ones; on SQLite the transaction takes the database write lock at BEGIN (IMMEDIATE), so
   claimants serialize. Either way a row is held by one claimant at a time.
2. **Send** outside any transaction: no row lock is held over a network call.
3. **Settle only if still mine** (``Outbox.settle``): ``UPDATE ... WHERE id = ? AND status =
   'sending' AND <owner> = me``. A claimant whose lease ran out, and whose row another
   claimant took (or already settled), changes nothing; a final outcome is counted in the
   same transaction, only when that UPDATE matched, so each outcome is counted once.
4. **Retry with backoff** (``Outbox.release``): back to waiting, due ``backoff(attempts)``
   later, claim forgotten; **give up** once ``attempts`` reached the outbox's maximum
   (``Outbox.exhausted``).

Attempts are counted at the claim, not at the outcome: a row whose send kills its worker is
re-claimed after the lease with one more attempt, so it cannot loop forever
(``Outbox.over_budget``). A worker that dies between send and settle leaves its row
"sending" and the next claimant after the lease sends it again: delivery is at-least-once.

Who "me" is: the owner column. The notification drainer writes its worker name to
``claimed_by``; an alert sender, which has no name column, is the claim's own ``claimed_at``
instant (a re-claim writes a newer one).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.db.models import F, Q

SENDING = "sending"
# 2**40 x any base is far past any cap; stops the doubling before a float or timedelta overflows.
_MAX_EXPONENT = 40


def backoff(attempt: int, *, base: dt.timedelta, cap: dt.timedelta, jitter: float = 1.0) -> dt.timedelta:
    """The delay after the ``attempt``-th failure: base x 2^(attempt-1), at most ``cap``,
    times ``jitter``.

    ``jitter`` is a factor the caller draws, e.g. in [0.5, 1.0] ("equal jitter"), so many
    retries failing together (a database blip across districts) do not come back in the same
    second; 1.0 is no jitter. Computed in float seconds, as ``Job.backoff`` always was.
    """
    exponent = min(max(attempt - 1, 0), _MAX_EXPONENT)
    seconds = min(cap.total_seconds(), base.total_seconds() * 2**exponent)
    return dt.timedelta(seconds=seconds * jitter)


@dataclass(frozen=True)
class Outbox:
    """One outbox table and its protocol parameters (see the module docstring).

    ``model`` needs the columns ``status``, ``attempts`` and ``claimed_at``, the due column
    ``due_field`` and, if it is not ``claimed_at``, the owner column ``owner_field``.
    ``max_attempts`` may be a callable, read at each use (a setting).
    """

    model: type[models.Model]
    waiting: tuple[str, ...]  # statuses claimable once due
    due_field: str  # when a waiting row is due
    lease: dt.timedelta  # a "sending" row older than this lost its sender
    backoff_base: dt.timedelta
    backoff_cap: dt.timedelta
    max_attempts: int | Callable[[], int]
    owner_field: str = "claimed_at"

    # -- the rules --------------------------------------------------------------------------
    def claimable(self, now: dt.datetime, lease: dt.timedelta | None = None) -> Q:
        """Due waiting rows, and rows whose claim is older than the lease."""
        lease = self.lease if lease is None else lease
        return Q(status__in=self.waiting, **{f"{self.due_field}__lte": now}) | Q(
            status=SENDING, claimed_at__lt=now - lease
        )

    def backoff(self, attempts: int) -> dt.timedelta:
        """The delay after the ``attempts``-th failed attempt (no jitter: see the callers)."""
        return backoff(attempts, base=self.backoff_base, cap=self.backoff_cap)

    @property
    def attempt_limit(self) -> int:
        return self.max_attempts() if callable(self.max_attempts) else self.max_attempts

    def exhausted(self, attempts: int) -> bool:
        """No retry after this attempt: it was the last one allowed."""
        return attempts >= self.attempt_limit

    def over_budget(self, attempts: int) -> bool:
        """Claimed more often than allowed: its earlier claimants died mid-send."""
        return attempts > self.attempt_limit

    def mine(self, pk: Any, owner: Any) -> models.QuerySet:
        """The row, only while it is still "sending" under this owner's claim."""
        return self.model._default_manager.filter(pk=pk, status=SENDING, **{self.owner_field: owner})

    # -- the steps --------------------------------------------------------------------------
    @transaction.atomic
    def claim(self, *, now: dt.datetime, limit: int, owner: Any = None, lease: dt.timedelta | None = None,
              among: Q | None = None) -> list:
        """Claim up to ``limit`` due rows (only rows matching ``among`` if given) for
        ``owner`` (ignored when the owner is the claim instant); returns their ids, due
        first."""
        condition = self.claimable(now, lease)
        rows = self.model._default_manager.select_for_update(skip_locked=True).filter(condition)
        if among is not None:
            rows = rows.filter(among)
        ids = list(rows.order_by(self.due_field, "id").values_list("id", flat=True)[:limit])
        if not ids:
            return []
        claim = {"status": SENDING, "claimed_at": now, "attempts": F("attempts") + 1}
        if self.owner_field != "claimed_at":
            claim[self.owner_field] = owner
        self.model._default_manager.filter(condition, id__in=ids).update(**claim)
        return ids

    def settle(self, pk: Any, *, owner: Any, status: str, counted: Callable[[str], None] | None = None,
               **fields) -> bool:
        """Write an outcome, only if the row is still this owner's claim; ``counted(status)``
        runs in the same transaction, only when it was (a metrics counter). Returns whether
        the row was still ours."""
        with transaction.atomic():
            matched = bool(self.mine(pk, owner).update(status=status, **fields))
            if matched and counted is not None:
                counted(status)
        return matched

    def release(self, pk: Any, *, owner: Any, due_at: dt.datetime, untried: bool = False, **fields) -> bool:
        """Put a claimed row back to wait until ``due_at`` (a retry), only if still ours.
        ``untried``: it was not sent at all, so the claim's attempt is given back. One
        statement, so no transaction of its own."""
        if untried:
            fields["attempts"] = F("attempts") - 1
        return bool(self.mine(pk, owner).update(status=self.waiting[0], **{self.due_field: due_at}, **fields))
