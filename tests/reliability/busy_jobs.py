"""A job that keeps its database connection busy for REL_BUSY_SECONDS (a short query every
few milliseconds), for the pool-on kill test: run in a worker forked from the sentinel, it
spans the sentinel's scheduler passes, so a session shared across the fork would be used by
both processes at once. A qcluster started by a test imports this module through
SCHEDULING_EXTRA_JOB_MODULES."""
from __future__ import annotations

import os
import time

from django.db import connection

from scheduling.registry import Job


def busy(ctx) -> dict:
    seconds = float(os.environ.get("REL_BUSY_SECONDS", "35"))
    end = time.monotonic() + seconds
    queries = 0
    while time.monotonic() < end:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM scheduling_jobrun WHERE district_id = %s", [ctx.district.pk])
            cursor.fetchone()
        queries += 1
        time.sleep(0.005)
    return {"queries": queries}


JOBS = [
    Job(slug="rel-busy", title="Reliability busy", default_cron=None, why="test", entry=busy, timeout=120, max_attempts=1),
]
