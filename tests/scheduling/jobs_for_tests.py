"""Jobs used only by the scheduling tests. In-process tests register them through the
``test_jobs`` fixture; a qcluster started by a test imports this module through
SCHEDULING_EXTRA_JOB_MODULES."""
from __future__ import annotations

import datetime as dt
import os
import time

from django.db import connection, transaction

from scheduling.registry import Job

CALLS: list[tuple[str, dt.datetime, int | None]] = []
FAIL_TIMES: dict[str, int] = {}
OUTPUT_TABLE = "sched_test_output"


def record(ctx) -> dict:
    CALLS.append((ctx.run.job, ctx.scheduled_for, ctx.district.pk if ctx.district else None))
    ctx.logger.info("ran for slot %s", ctx.scheduled_for.isoformat())
    return {"slots": 1}


def flaky(ctx) -> dict:
    """Fails the first FAIL_TIMES[job] attempts, then succeeds."""
    CALLS.append((ctx.run.job, ctx.scheduled_for, ctx.run.attempt))
    if ctx.run.attempt <= FAIL_TIMES.get(ctx.run.job, 0):
        raise RuntimeError(f"boom on attempt {ctx.run.attempt}")
    return {"attempt": ctx.run.attempt}


def batches(ctx) -> dict:
    """Writes items 1..N to OUTPUT_TABLE in batches; each batch and its checkpoint commit
    together, so a crash leaves both or neither and a retry resumes after the last batch.
    A duplicate output would violate the table's primary key."""
    total = int(os.environ.get("SCHED_TEST_ITEMS", "20"))
    size = int(os.environ.get("SCHED_TEST_BATCH", "2"))
    pause = float(os.environ.get("SCHED_TEST_PAUSE", "0"))
    start = int(ctx.checkpoint.get("next", 1))
    resumed_from = start
    ctx.logger.info("starting at item %s of %s", start, total)
    written = 0
    while start <= total:
        end = min(start + size - 1, total)
        with transaction.atomic():
            with connection.cursor() as cursor:
                for item in range(start, end + 1):
                    cursor.execute(f"INSERT INTO {OUTPUT_TABLE} (item, run_id) VALUES (%s, %s)", [item, ctx.run.pk])
            ctx.save_checkpoint({"next": end + 1})
        written += end - start + 1
        ctx.progress(end, total)
        start = end + 1
        if pause:
            time.sleep(pause)
    return {"written": written, "resumed_from": resumed_from}


def slow(ctx) -> dict:
    time.sleep(5)
    return {"slept": 5}


JOBS = [
    Job(slug="t-slow", title="Test slow", default_cron=None, why="test", entry=slow, timeout=1, max_attempts=1),
    Job(slug="t-nobody", title="Test without a body", default_cron="0 6 * * *", why="test", entry=None),
    Job(slug="t-daily", title="Test daily", default_cron="0 2 * * *", why="test", entry=record,
        catch_up_window=dt.timedelta(hours=3), timeout=30),
    Job(slug="t-monthly", title="Test monthly", default_cron="0 1 1 * *", why="test", entry=record, timeout=30),
    Job(slug="t-global", title="Test global", default_cron="0 4 * * *", why="test", scope="global", entry=record, timeout=30),
    Job(slug="t-flaky", title="Test flaky", default_cron="0 5 * * *", why="test", entry=flaky, max_attempts=3,
        backoff_base=10, backoff_cap=25, timeout=30, critical=True),
    Job(slug="t-batches", title="Test batches", default_cron=None, why="test", entry=batches,
        timeout=int(os.environ.get("SCHED_TEST_TIMEOUT", "30")), max_attempts=3, backoff_base=1),
]
