"""Jobs used only by the observability tests. In-process tests register them through the
``obs_jobs`` fixture; a qcluster started by a test imports this module through
SCHEDULING_EXTRA_JOB_MODULES (so behaviour is driven by environment variables there)."""
from __future__ import annotations

import datetime as dt
import os
import time

from scheduling.registry import Job

# In-process switch for obs-flaky: fails while True.
FAILING = {"obs-flaky": True}


def ok(ctx) -> dict:
    pause = float(os.environ.get("OBS_OK_PAUSE", "0"))
    if pause:
        time.sleep(pause)
    ctx.logger.info("ok for slot %s", ctx.scheduled_for.isoformat())
    return {"items": 3}


def boom(ctx) -> dict:
    raise RuntimeError("archive bucket unreachable")


def flaky(ctx) -> dict:
    if FAILING.get(ctx.run.job, False):
        raise RuntimeError(f"upstream down on attempt {ctx.run.attempt}")
    return {"items": 1}


def slow(ctx) -> dict:
    time.sleep(float(os.environ.get("OBS_SLOW_SECONDS", "0")))
    return {"items": 0}


JOBS = [
    Job(slug="obs-ok", title="Obs OK", default_cron="0 6 * * *", why="test", entry=ok, critical=True, timeout=30,
        max_attempts=2, backoff_base=1),
    Job(slug="obs-fail", title="Obs fail", default_cron="0 7 * * *", why="test", entry=boom, critical=True, timeout=30,
        max_attempts=1),
    Job(slug="obs-flaky", title="Obs flaky", default_cron="0 8 * * *", why="test", entry=flaky, critical=True, timeout=30,
        max_attempts=2, backoff_base=1),
    Job(slug="obs-warn", title="Obs warn", default_cron="0 9 * * *", why="test", entry=flaky, critical=False, timeout=30,
        max_attempts=1),
    Job(slug="obs-slow", title="Obs slow", default_cron=None, why="test", entry=slow, timeout=60, max_attempts=1,
        expected_duration=dt.timedelta(seconds=1)),
]
