"""Jobs that keep their database connection busy, for the fault tests; a qcluster started by
a test imports this module through SCHEDULING_EXTRA_JOB_MODULES.

- rel-busy: a short query every few milliseconds for REL_BUSY_SECONDS. Run in a worker
  forked from the sentinel, it spans the sentinel's scheduler passes, so a session shared
  across the fork would be used by both processes at once.
- rel-reader: reads in autocommit, outside any transaction, for REL_READ_SECONDS on its
  first attempt (briefly on a retry). A connection lost under it is not dropped by a
  transaction's rollback (Django closes a connection only when a rollback fails), so the
  runner itself must replace it to record the failure."""
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


def reader(ctx) -> dict:
    seconds = float(os.environ.get("REL_READ_SECONDS", "60")) if ctx.run.attempt == 1 else 0.5
    end = time.monotonic() + seconds
    reads = 0
    while time.monotonic() < end:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM students_district")
            cursor.fetchone()
        reads += 1
        time.sleep(0.05)
    return {"reads": reads}


JOBS = [
    Job(slug="rel-reader", title="Reliability reader", default_cron=None, why="test", entry=reader, timeout=600,
        max_attempts=2, backoff_base=2),
    Job(slug="rel-busy", title="Reliability busy", default_cron=None, why="test", entry=busy, timeout=120, max_attempts=1),
]
