"""Run a job for a slot through the real runner (JobRun row, claim, access trail, summary),
the way a qcluster worker executes what the scheduler claimed."""
from __future__ import annotations

import datetime as dt

from scheduling import runner
from scheduling.models import JobRun


def local_slot(district, year, month, day, hour=0, minute=0) -> dt.datetime:
    """An aware datetime for a wall-clock time in the district's zone."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=district.zone)


def run_slot(slug: str, district, slot: dt.datetime, *, trigger: str = JobRun.Trigger.SCHEDULE,
             retry_of: JobRun | None = None) -> JobRun:
    """Insert the run row for ``slot`` (what claim_slot does) and execute it (what the worker
    does). ``trigger=retry`` with ``retry_of`` makes the next attempt of that run."""
    attempt = 1
    if retry_of is not None:
        attempt = JobRun.objects.filter(retry_of=retry_of).count() + 2
    run = JobRun.objects.create(
        job=slug, district=district, trigger=trigger, slot=slot, status=JobRun.Status.QUEUED,
        enqueued_at=slot, retry_of=retry_of, attempt=attempt,
    )
    done = runner.execute(run.pk)
    assert done is not None
    return done


def statements(captured: list[dict]) -> int:
    """How many statements a run issued, counting a bulk insert split into batches as one.

    Django splits a bulk_create into several INSERTs on SQLite (999 parameters per
    statement), which grows with the rows written, not with per-row queries; PostgreSQL
    writes the outbox with one statement. Adjacent INSERTs into the same table count once.
    """
    count, last = 0, None
    for q in captured:
        sql = q["sql"]
        head = sql.split("(", 1)[0] if sql.startswith("INSERT") else None
        if head is not None and head == last:
            continue
        last = head
        count += 1
    return count
