"""The functions django-q2 calls in a worker; thin: they parse and call the engine."""
from __future__ import annotations

import datetime as dt

from django.utils import timezone

from scheduling import runner, services


def fire(*, job: str, district: int | None, tz: str, scheduled_for: str) -> dict:
    """A schedule's slot came due (``scheduled_for`` is the q Schedule's intended date,
    the slot in UTC). Claim it and, when this delivery wins, run it here."""
    slot = dt.datetime.fromisoformat(scheduled_for)
    now = timezone.now()
    # The run is inserted already started by this worker: it is not claimed a second time.
    try:
        run = services.claim_slot(job_slug=job, district_id=district, slot=slot, now=now,
                                  start=runner.started_fields(job, now))
    except services.QueueUnavailable:
        # A redelivery recovered its slot's lost run; the retry is committed, queued without
        # a task, and the scheduler pass's sweeper sends it once the queue is back.
        return {"claimed": False}
    if run is None:
        return {"claimed": False}
    done = runner.execute(run.pk, started=run)
    return {"claimed": True, "run": run.pk, "status": done.status if done else None}


def execute_run(run_id: int) -> dict:
    """Run a queued run (run now, retries); a redelivery after a lost worker resumes it."""
    done = runner.execute(run_id)
    return {"run": run_id, "status": done.status if done else None}
