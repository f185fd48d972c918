"""Batch firing: the engine's due slots fired in chunks, beside django-q2's per-row loop.

django-q2 1.11.1's scheduler fires one due row at a time (a task insert and a schedule
update each), all inside one transaction that locks every due row: at 02:00 New York,
thousands of districts' slots fall due at once, a second qcluster's scheduler waits on the
first one's locks instead of sharing, and no worker sees a task until the whole pass
commits. Here the engine's own rows (CRON rows named "skillcore:...") are fired in chunks;
django-q2's Schedule rows stay what staff see and django-q2 stays the queue.

``fire_due()`` repeats, one transaction per chunk:

1. Claim up to ``chunk`` due rows in one statement, oldest first, ``FOR UPDATE SKIP
   LOCKED``: a row another scheduler is firing is skipped, not waited for, so several
   qclusters' schedulers share one burst. (SQLite has no row locks: the clause is dropped;
   its single scheduler is the demo's.)
2. Compute each row's next run exactly as the ``Schedule.calculate_next_run`` wrapper does
   (scheduling/scheduler.py), once per (cron, zone) in the chunk: every row of a burst
   shares a handful of those.
3. Build each row's task as django-q2's ``async_task`` builds it (the same package, the
   slot as ``scheduled_for``) and insert them all at once: one INSERT into the ORM
   broker's table (in this transaction), one RPUSH to Redis, or one enqueue each for any
   other broker.
4. Advance the rows' next runs (and their last task id) in one UPDATE, then commit: the
   chunk's tasks are visible to the workers while the next chunk is being claimed.

Exactly-once per slot does not rest on this: a task delivered twice (Redis accepted the
push but the commit failed; a redelivery) still claims its slot once through the unique
(job, district, slot) run row (services.claim_slot). Rows this misses (due between its
last chunk and django-q2's pass, a bad row) are fired by django-q2's own loop, which runs
after it, through the same next-run computation.
"""
from __future__ import annotations

import ast
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import router, transaction
from django.db.models import Q
from django.utils import timezone

from scheduling import cron

logger = logging.getLogger(__name__)

PREFIX = "skillcore:"
CHUNK = 500  # rows per transaction: big enough to amortize the statements, small enough
# that the first workers start within a fraction of a second of the burst.


@dataclass
class FireReport:
    """What one ``fire_due`` call did: slots fired, chunks committed, and its duration."""

    fired: int = 0
    chunks: int = 0
    seconds: float = 0.0
    per_chunk: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Row:
    """A claimed Schedule row, read as a tuple: 3,000 model instances cost more than the
    statements that read and write them (profiled)."""

    pk: int
    name: str
    func: str
    kwargs: str
    cron: str
    next_run: dt.datetime
    repeats: int
    cluster: str | None
    intended_date_kwarg: str | None
    task: str | None


def _due_rows(now: dt.datetime, chunk: int) -> list[_Row]:
    """Step 1's statement: the engine's due CRON rows this cluster may fire, oldest first.

    The cluster filter is django-q2's own: a row without a cluster belongs to the default
    cluster, a named one to the cluster of that name."""
    from django_q.conf import Conf
    from django_q.models import Schedule

    mine = Q(cluster=Conf.CLUSTER_NAME)
    if Conf.CLUSTER_NAME == Conf.PREFIX:
        mine |= Q(cluster__isnull=True)
    return [
        _Row(*values) for values in
        Schedule.objects.select_for_update(skip_locked=True)
        .filter(mine, name__startswith=PREFIX, schedule_type=Schedule.CRON, next_run__lt=now)
        .exclude(repeats=0)
        .order_by("next_run", "id")
        .values_list("id", "name", "func", "kwargs", "cron", "next_run", "repeats", "cluster", "intended_date_kwarg",
                     "task")[:chunk]
    ]


def _kwargs(s) -> dict | None:
    """The row's kwargs as the dict the engine wrote (services._q_kwargs), or None when
    they are not a literal dict (hand-edited): parsed once per row for both uses."""
    try:
        kwargs = ast.literal_eval(s.kwargs or "{}")
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return kwargs if isinstance(kwargs, dict) else None


def _next_runs(rows, parsed: dict[int, dict | None], now: dt.datetime) -> dict[int, dt.datetime]:
    """Step 2: each row's next run, the first slot of its cron in its zone after now (the
    rows are due, so max(slot, now) is now; services.q_row_zone's rule for the zone). A row
    whose cron or zone cannot be evaluated is pushed an hour ahead and logged, as the
    wrapper does: it must never stall the chunk."""
    memo: dict[tuple[str, str | None], dt.datetime] = {}
    out = {}
    for s in rows:
        kwargs = parsed[s.pk]
        key = (s.cron, kwargs.get("tz", "UTC") if kwargs is not None else None)
        if key not in memo:
            try:
                memo[key] = cron.next_slot(s.cron, key[1], now)
            except Exception:
                logger.exception("schedule %s: cannot compute the next run of %r; retrying in an hour", s.name, s.cron)
                memo[key] = now + dt.timedelta(hours=1)
        out[s.pk] = memo[key]
    return out


def _task(s, kwargs: dict | None) -> dict | None:
    """Step 3: the task django-q2's loop and ``async_task`` would build for this row
    (django_q/scheduler.py and django_q/tasks.py, 1.11.1), or None when its kwargs are not
    a literal dict (logged; the row still advances, as a bad row does in the wrapper)."""
    from django_q.conf import Conf
    from django_q.humanhash import uuid
    from django_q.signals import pre_enqueue

    if kwargs is None:
        logger.error("schedule %s: its kwargs are not a literal dict; slot %s not fired", s.name, s.next_run)
        return None
    kwargs = dict(kwargs)
    q_options = dict(kwargs.pop("q_options", {}) or {})
    if s.intended_date_kwarg:
        kwargs[s.intended_date_kwarg] = s.next_run.isoformat()
    human, task_id = uuid()
    task = {"id": task_id, "name": q_options.pop("task_name", None) or human, "func": s.func, "args": ()}
    q_options["cluster"] = s.cluster or q_options.get("cluster", q_options.pop("broker_name", None))
    q_options["group"] = q_options.get("group", s.name or s.pk)
    for key in ("hook", "group", "save", "sync", "cached", "ack_failure", "iter_count", "iter_cached", "chain",
                "cluster", "timeout"):
        if key in q_options:
            task[key] = q_options[key]
    if "cached" not in task and Conf.CACHED:
        task["cached"] = Conf.CACHED
    if "ack_failure" not in task and Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    task["kwargs"] = kwargs
    task["started"] = timezone.now()
    pre_enqueue.send(sender="django_q", task=task)
    return task


def _push(broker, packs: list[str], now: dt.datetime) -> None:
    """Step 3's insert: one statement (ORM broker, inside the chunk's transaction), one
    round trip (Redis), or the broker's own enqueue per task."""
    from django_q.brokers.orm import ORM
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf
    from django_q.models import OrmQ

    if isinstance(broker, ORM):
        key = broker.list_key or Conf.CLUSTER_NAME
        OrmQ.objects.using(Conf.ORM).bulk_create([OrmQ(key=key, payload=p, lock=now) for p in packs])
    elif isinstance(broker, Redis):
        broker.connection.rpush(broker.list_key, *packs)
    else:
        for p in packs:
            broker.enqueue(p)


def _fire_chunk(broker, chunk: int) -> int:
    """Steps 1-4 for one chunk, in one transaction; returns how many rows it claimed."""
    from django_q.models import Schedule
    from django_q.signing import SignedPackage

    now = timezone.now()
    with transaction.atomic(using=router.db_for_write(Schedule)):
        rows = _due_rows(now, chunk)
        if not rows:
            return 0
        parsed = {s.pk: _kwargs(s) for s in rows}
        nexts = _next_runs(rows, parsed, now)
        packs = []
        for s in rows:
            task = _task(s, parsed[s.pk])
            if task is not None:
                packs.append(SignedPackage.dumps(task))
                s.task = task["id"]
            s.next_run = nexts[s.pk]
            s.repeats = -1 if s.repeats < -1 else s.repeats - 1 if s.repeats > 0 else s.repeats
        if packs:
            _push(broker, packs, now)
        _advance(rows)
    return len(rows)


def _advance(rows) -> None:
    """Step 4's statement. On PostgreSQL one UPDATE joined to the new values passed as
    arrays: Django's bulk_update builds a CASE expression per row and field, which cost
    more Python time than the whole rest of the chunk (1.8 s per 500 rows, profiled).
    Elsewhere (SQLite, the single-scheduler demo) bulk_update, also one statement."""
    from django.db import connections
    from django_q.models import Schedule

    using = router.db_for_write(Schedule)
    connection = connections[using]
    if connection.vendor != "postgresql":
        Schedule.objects.using(using).bulk_update(
            [Schedule(pk=s.pk, next_run=s.next_run, task=s.task, repeats=s.repeats) for s in rows],
            ["next_run", "task", "repeats"], batch_size=len(rows),
        )
        return
    meta = Schedule._meta
    col = {f: meta.get_field(f).column for f in ("id", "next_run", "task", "repeats")}
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{meta.db_table}" AS s SET "{col["next_run"]}" = v.next_run, "{col["task"]}" = v.task, '
            f'"{col["repeats"]}" = v.repeats '
            "FROM unnest(%s::integer[], %s::timestamptz[], %s::varchar[], %s::integer[]) AS v(id, next_run, task, repeats) "
            f'WHERE s."{col["id"]}" = v.id',
            [[s.pk for s in rows], [s.next_run for s in rows], [s.task for s in rows], [s.repeats for s in rows]],
        )


def fire_due(*, broker=None, chunk: int = CHUNK, after_chunk: Callable[[FireReport], None] | None = None) -> FireReport:
    """Fire every due slot of the engine's schedules, ``chunk`` rows per transaction.

    ``after_chunk(report)`` is called after each chunk commits (benchmarks and tests watch
    the workers' side from it). With django-q2's ``sync`` option (tasks run in the
    enqueuing process) nothing is fired here: django-q2's own loop fires them one by one.
    """
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    report = FireReport()
    if Conf.SYNC:
        return report
    broker = broker or get_broker()
    started = time.perf_counter()
    while True:
        claimed = _fire_chunk(broker, chunk)
        if claimed:
            report.fired += claimed
            report.chunks += 1
            report.per_chunk.append(claimed)
            report.seconds = time.perf_counter() - started
            if after_chunk is not None:
                after_chunk(report)
        if claimed < chunk:
            break
    report.seconds = time.perf_counter() - started
    return report
