"""Messages a job run writes are held until the run ends: the switch the engine turns on
around a run, and the protocol of the stores that hold them (the blast-radius guard,
scheduling/blast_radius.py).

Why held until the end: the guard compares a run's outbound volume with its baseline, and
that volume is known only when the run is over. A message that a drainer could send while
the run is still writing would be out before the guard can stop a run that turns out to
message everyone. So, while ``staging(run_id)`` is on, every non-emergency message the run
enqueues is written as held (any channel: the hold is the outbox row's state, not a
property of a transport); at the run's end the guard either releases them to the normal
outbox or keeps them held for a system admin to release or discard.

The engine knows no domain app (docs/architecture.md): the notification outbox registers
its store here (``add_store``, from its AppConfig.ready) and the engine calls the stores.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterator
from typing import Protocol

AUDIENCES = ("families", "staff")

class Staging:
    """One run's staging: its id and whether anything asked to hold a message for it."""

    __slots__ = ("run_id", "asked")

    def __init__(self, run_id: int):
        self.run_id = run_id
        self.asked = False


# The record itself is the value (not a flag of its own): a job's thread started with a copy
# of the context marks the same record.
_staging: contextvars.ContextVar[Staging | None] = contextvars.ContextVar("held_messages_staging", default=None)


@contextlib.contextmanager
def staging(run_id: int) -> Iterator[Staging]:
    """While on, messages enqueued for ``run_id`` are written held (see the module docstring).
    Yields the record: ``asked`` False at the end means the run wrote no held message, so the
    engine's settle need not count them (the blast-radius guard, scheduling/blast_radius.py)."""
    record = Staging(run_id)
    token = _staging.set(record)
    try:
        yield record
    finally:
        _staging.reset(token)


def staging_run() -> int | None:
    """The run whose messages are being held right now, or None.

    A store asks this before writing, and holds a message only when it names the message's
    run; so asking is taken as "this run may have written held messages" (the staging's
    ``asked``). A store must not write a held row for a run without asking."""
    record = _staging.get()
    if record is None:
        return None
    record.asked = True
    return record.run_id


class HeldMessageStore(Protocol):
    """What a store of held messages does for the guard. Every method is set-based (a
    fixed number of queries whatever the number of messages)."""

    name: str

    def adopt(self, *, run_id: int, from_run_ids: list[int]) -> int:
        """Move the held messages of ``from_run_ids`` (earlier attempts of the same slot)
        to ``run_id``: a retry of a held run answers for them. Returns how many."""

    def counts(self, *, run_id: int) -> dict[str, int]:
        """Held messages of the run per audience (``AUDIENCES``)."""

    def breakdown(self, *, run_id: int) -> list[dict]:
        """[{"template", "school", "audience", "count"}] of the run's held messages."""

    def samples(self, *, run_id: int, limit: int) -> list[dict]:
        """Up to ``limit`` held messages: {"recipient", "audience", "channel", "template",
        "reason"} where reason is what the recipient would be told (the subject)."""

    def release(self, *, run_id: int, now: dt.datetime) -> int:
        """Hand the run's held messages to the normal outbox (quiet hours applied)."""

    def discard(self, *, run_id: int, now: dt.datetime, reason: str) -> int:
        """Make sure none of the run's held messages is ever sent."""


_stores: dict[str, HeldMessageStore] = {}


def add_store(store: HeldMessageStore) -> None:
    """Register a store (idempotent per name)."""
    _stores[store.name] = store


def stores() -> list[HeldMessageStore]:
    return list(_stores.values())
