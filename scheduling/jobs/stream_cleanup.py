"""Stream cleanup: 0 2 * * * (UTC, global).

Why then: 02:00 UTC is the quietest hour for all districts at once: no staff are connected, and it runs before the 03:00 analytics jobs read the tables it trims.

What it does:
1. Trims the event bus (skillcore/events.py) of entries published before
   ``slot - EVENT_STREAM_RETENTION_DAYS`` (30 by default): on Redis, XTRIM MINID over every
   stream found by SCAN under EVENT_STREAM_PREFIX, in bounded steps; without Redis, batched
   DELETEs on the EventBusEntry table.
2. Purges the event store (StoredEvent) of durable events that occurred before
   ``slot - EVENT_STORE_RETENTION_DAYS`` (7 years): DELETEs by id range, 10,000 ids each.
3. Prunes scheduler heartbeats (SchedulerHeartbeat, one row per scheduler process ever
   started) silent for 30 days, keeping the newest row.

Idempotency key: the slot. The cutoffs come from the slot, not the clock, so a retry or a
late run of the same slot trims to the same point, and a second run finds nothing to trim.

Student data read: none. Event payloads hold ids only, and neither the streams, the bus
table, the event store nor the heartbeats are student-record tables.

Summary: backend, cutoff, streams, events_trimmed (and per stream), and on Redis
memory_freed_bytes (the streams' MEMORY USAGE before minus after) with the server's
used_memory before and after the pass; store_cutoff, stored_events_purged,
heartbeat_cutoff, heartbeats_pruned.
"""
from datetime import timedelta

from django.conf import settings

from scheduling import services
from scheduling.registry import Job
from skillcore import events


def run(ctx) -> dict:
    cutoff = ctx.scheduled_for - timedelta(days=settings.EVENT_STREAM_RETENTION_DAYS)
    report = events.trim(cutoff=cutoff, progress=ctx.progress)
    ctx.logger.info("trimmed %s event(s) older than %s from %s stream(s) (%s)",
                    report.trimmed, cutoff.isoformat(), report.streams, report.backend)
    store_cutoff = ctx.scheduled_for - timedelta(days=events.EVENT_STORE_RETENTION_DAYS)
    purged = events.store_purge(cutoff=store_cutoff)
    beat_cutoff = ctx.scheduled_for - services.HEARTBEAT_RETENTION
    pruned = services.heartbeats_prune(before=beat_cutoff)
    ctx.logger.info("purged %s stored event(s) older than %s; pruned %s scheduler heartbeat(s) silent since %s",
                    purged, store_cutoff.isoformat(), pruned, beat_cutoff.isoformat())
    return report.as_dict() | {
        "store_cutoff": store_cutoff.isoformat(), "stored_events_purged": purged,
        "heartbeat_cutoff": beat_cutoff.isoformat(), "heartbeats_pruned": pruned,
    }


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "backend": "Event stream",
    "cutoff": "Trimmed events older than",
    "streams": "Streams",
    "events_trimmed": "Events trimmed",
    "trimmed_by_stream": "Trimmed, by stream",
    "store_cutoff": "Purged stored events older than",
    "stored_events_purged": "Stored events purged",
    "heartbeat_cutoff": "Pruned scheduler heartbeats silent since",
    "heartbeats_pruned": "Scheduler heartbeats pruned",
}


JOB = Job(
    slug='stream-cleanup',
    title='Stream cleanup',
    default_cron='0 2 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='global',
    critical=False,
    expected_duration=timedelta(minutes=10),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=4),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="events",
    entry=run,
)
