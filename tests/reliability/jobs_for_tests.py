"""A job for the reliability tests, registered in-process by the test and in a qcluster
started by a test through SCHEDULING_EXTRA_JOB_MODULES. Each execution writes one row
(district, slot, process): a slot run twice shows up as two rows (no unique key here on
purpose: the engine's claim is what must prevent it)."""
from __future__ import annotations

import datetime as dt
import os

from django.db import connection

from scheduling.registry import Job

OUTPUT_TABLE = "rel_slot_executions"


def record_execution(ctx) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {OUTPUT_TABLE} (district_id, slot, pid) VALUES (%s, %s, %s)",
                       [ctx.district.pk, ctx.scheduled_for, os.getpid()])
    return {"executions": 1}


JOBS = [
    Job(slug="rel-daily", title="Reliability daily", default_cron="0 2 * * *", why="test", entry=record_execution,
        catch_up_window=dt.timedelta(hours=3), timeout=30),
]
