"""The event bus: services publish domain events ("intervention.opened", "notification.sent",
...) for whoever follows them (analytics, integrations, the admin's activity views).

Backends, chosen by settings:
- REDIS_URL set: Redis Streams, one stream per event type named
  ``EVENT_STREAM_PREFIX + event_type`` (default ``skillcore:events:intervention.opened``),
  written with XADD after the publisher's transaction commits (an event never announces a
  write that was rolled back). Redis assigns the entry ids, whose first part is the
  publication time in milliseconds: that is what XTRIM MINID trims by.
- otherwise: the ``EventBusEntry`` table, written in the publisher's transaction.

Either way the bus is transient: the stream-cleanup job trims entries older than
EVENT_STREAM_RETENTION_DAYS (30). Events published with ``durable=True`` are also appended
to the ``StoredEvent`` table in the publisher's transaction and kept 7 years
(EVENT_STORE_RETENTION_DAYS): the same job then deletes them (``store_purge``).

Payloads carry ids, codes and counts, never names, grades or attendance details: the bus
and its consumers are outside the FERPA access trail.

Publishing is batched: ``publish_many`` writes a whole batch with one INSERT per table or
one pipelined round trip to Redis, so callers publish once per batch, not once per row.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from skillcore.models import EventBusEntry, StoredEvent

logger = logging.getLogger(__name__)

EVENT_STORE_RETENTION_DAYS = 7 * 365 + 2  # 7 years, leap days included
TRIM_BATCH = 10_000
_EVENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def stream_name(event_type: str) -> str:
    return f"{settings.EVENT_STREAM_PREFIX}{event_type}"


@functools.cache
def _client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def redis_client():
    """The bus's Redis client, or None when the bus is the table."""
    return _client(settings.REDIS_URL) if settings.REDIS_URL else None


def publish(event_type: str, payload: dict, *, durable: bool = False, occurred_at: dt.datetime | None = None) -> None:
    """Publish one event. Prefer ``publish_many`` for a batch."""
    publish_many(event_type, [payload], durable=durable, occurred_at=occurred_at)


def publish_many(
    event_type: str, payloads: Iterable[dict], *, durable: bool = False, occurred_at: dt.datetime | None = None,
) -> int:
    """Publish a batch of events of one type; returns how many.

    1. Durable events go to the event store in the caller's transaction (one INSERT).
    2. The bus: one INSERT into EventBusEntry, or, with Redis, one pipelined XADD per event
       sent when the caller's transaction commits (at once outside a transaction). A Redis
       failure is logged, not raised: the write it announces has already committed.
    """
    if not _EVENT_TYPE.match(event_type or ""):
        raise ValueError(f"event type must be 1-100 lowercase letters, digits, '.', '_' or '-', not {event_type!r}")
    payloads = list(payloads)
    if not payloads:
        return 0
    now = timezone.now()
    occurred_at = occurred_at or now
    encoded = [json.loads(json.dumps(p, cls=DjangoJSONEncoder)) for p in payloads]  # dates etc. -> JSON once
    if durable:
        StoredEvent.objects.bulk_create(
            [StoredEvent(event_type=event_type, payload=p, occurred_at=occurred_at) for p in encoded], batch_size=5000
        )
    stream = stream_name(event_type)
    if settings.REDIS_URL:
        fields = [
            {"payload": json.dumps(p, separators=(",", ":")), "occurred_at": occurred_at.isoformat()} for p in encoded
        ]
        transaction.on_commit(functools.partial(_xadd, settings.REDIS_URL, stream, fields))
    else:
        EventBusEntry.objects.bulk_create(
            [EventBusEntry(stream=stream, event_type=event_type, payload=p, published_at=now) for p in encoded],
            batch_size=5000,
        )
    return len(payloads)


def _xadd(url: str, stream: str, fields: list[dict]) -> None:
    try:
        pipe = _client(url).pipeline(transaction=False)
        for f in fields:
            pipe.xadd(stream, f)
        pipe.execute()
    except Exception:  # the bus is best effort; durable events are in the store already
        logger.exception("event bus: could not publish %s event(s) to %s", len(fields), stream)


# -- trimming (the stream-cleanup job) ------------------------------------------------------------

@dataclass
class TrimReport:
    backend: str
    cutoff: dt.datetime
    streams: int = 0
    trimmed: int = 0
    by_stream: dict[str, int] = field(default_factory=dict)
    memory_freed_bytes: int | None = None  # Redis: sum over streams of MEMORY USAGE before - after
    used_memory_before: int | None = None  # Redis: INFO memory used_memory, whole server
    used_memory_after: int | None = None

    def as_dict(self) -> dict:
        out = {
            "backend": self.backend, "cutoff": self.cutoff.isoformat(), "streams": self.streams,
            "events_trimmed": self.trimmed, "trimmed_by_stream": {k: v for k, v in self.by_stream.items() if v},
        }
        if self.backend == "redis":
            out |= {"memory_freed_bytes": self.memory_freed_bytes, "used_memory_before": self.used_memory_before,
                    "used_memory_after": self.used_memory_after}
        return out


def min_stream_id(cutoff: dt.datetime) -> str:
    """The smallest Redis stream id at or after ``cutoff``: ids are ``<milliseconds>-<seq>``."""
    ms = int(cutoff.timestamp() * 1000)
    return f"{ms}-0"


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def trim(*, cutoff: dt.datetime, batch_size: int = TRIM_BATCH,
         progress: Callable[[int, int | None], None] | None = None) -> TrimReport:
    """Remove bus entries published before ``cutoff`` (the event store is not touched)."""
    if settings.REDIS_URL:
        return _trim_redis(redis_client(), cutoff=cutoff, batch_size=batch_size, progress=progress)
    return _trim_table(cutoff=cutoff, batch_size=batch_size, progress=progress)


def _trim_redis(client, *, cutoff, batch_size, progress) -> TrimReport:
    """1. SCAN for every stream under the prefix. 2. Per stream: MEMORY USAGE, then XTRIM
    MINID in bounded steps, then MEMORY USAGE again. 3. INFO memory around the whole pass.

    ``XTRIM ~ LIMIT`` removes whole macro nodes, at most ``batch_size`` entries a call, so
    Redis is never blocked by one huge trim; the final exact ``XTRIM =`` removes what is
    left of the oldest node (at most one node's entries, stream-node-max-entries)."""
    report = TrimReport(backend="redis", cutoff=cutoff, memory_freed_bytes=0)
    min_id = min_stream_id(cutoff)
    match = _glob_escape(settings.EVENT_STREAM_PREFIX) + "*"
    keys = sorted({k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=match, count=1000, _type="STREAM")})
    report.streams = len(keys)
    report.used_memory_before = int(client.info("memory")["used_memory"])
    for done, key in enumerate(keys, start=1):
        before = client.memory_usage(key) or 0
        removed = 0
        while True:
            n = client.xtrim(key, minid=min_id, approximate=True, limit=batch_size)
            removed += n
            if n == 0:
                break
        removed += client.xtrim(key, minid=min_id, approximate=False)
        after = client.memory_usage(key) or 0
        report.by_stream[key] = removed
        report.trimmed += removed
        report.memory_freed_bytes += max(before - after, 0)
        if progress:
            progress(done, len(keys))
    report.used_memory_after = int(client.info("memory")["used_memory"])
    return report


def _trim_table(*, cutoff, batch_size, progress) -> TrimReport:
    """1. Count what is due per stream (one GROUP BY). 2. Delete the oldest ``batch_size``
    rows at a time, each batch its own short transaction, until none is older than the cutoff."""
    report = TrimReport(backend="table", cutoff=cutoff)
    report.streams = EventBusEntry.objects.values("stream").distinct().count()
    old = EventBusEntry.objects.filter(published_at__lt=cutoff)
    from django.db.models import Count

    report.by_stream = dict(old.values_list("stream").annotate(n=Count("id")).order_by("stream"))
    total = sum(report.by_stream.values())
    done = 0
    while True:
        batch = old.order_by("id").values("id")[:batch_size]
        # No cascades or signals on EventBusEntry: Django issues one DELETE ... WHERE id IN (SELECT ... LIMIT n).
        deleted, _ = EventBusEntry.objects.filter(id__in=batch).delete()
        done += deleted
        if progress:
            progress(done, total)
        if deleted < batch_size:
            break
    report.trimmed = done
    return report


def store_purge(*, cutoff: dt.datetime, batch_size: int = TRIM_BATCH,
                progress: Callable[[int, int | None], None] | None = None) -> int:
    """Delete durable events that occurred before ``cutoff`` (the event store's 7 years are
    over); returns how many. Steps:
    1. The id range of what is due: one MIN/MAX through index storedevent_occurred_idx.
    2. One DELETE per ``batch_size`` ids of that range (``id`` between bounds AND
       ``occurred_at`` before the cutoff), each its own short transaction: no long lock, no
       per-row statement, and a crash leaves a shorter range for the next run.
    Events are appended roughly in time order, so the due ids form one dense range and the
    daily run deletes about one day of events.
    """
    bounds = StoredEvent.objects.filter(occurred_at__lt=cutoff).aggregate(lo=Min("id"), hi=Max("id"))
    if bounds["lo"] is None:
        return 0
    lo, hi, done = bounds["lo"], bounds["hi"], 0
    for start in range(lo, hi + 1, batch_size):
        # No cascades or signals on StoredEvent: one DELETE ... WHERE id >= a AND id < b AND occurred_at < c.
        deleted, _ = StoredEvent.objects.filter(id__gte=start, id__lt=start + batch_size, occurred_at__lt=cutoff).delete()
        done += deleted
        if progress:
            progress(min(start + batch_size, hi + 1) - lo, hi + 1 - lo)
    return done
