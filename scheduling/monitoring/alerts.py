"""Alert hooks of the scheduling engine: the engine calls these; delivery (PagerDuty, Slack,
email) is scheduling/alerting.py's.

Each hook logs, then runs the alerting service in a savepoint and swallows any error: an
alert that cannot be recorded must never fail, roll back or retry the job that raised it
(the engine calls some hooks inside the transaction that records the run's outcome).
"""
from __future__ import annotations

import logging

from django.db import transaction

logger = logging.getLogger("scheduling.monitoring.alerts")


def _safely(what: str, func, *args, **kwargs) -> None:
    try:
        with transaction.atomic():  # a savepoint inside the engine's transaction
            func(*args, **kwargs)
    except Exception:
        logger.exception("alerting: %s could not be recorded (the job is not affected)", what)


def job_failed(run) -> None:
    """A run failed for good: its last attempt failed, timed out or lost its worker."""
    from scheduling.monitoring import alerting

    logger.error(
        "job %s for %s failed for good: run #%s attempt %s %s: %s",
        run.job, run.district_id or "global", run.pk, run.attempt, run.status, (run.error or "").splitlines()[:1],
    )
    _safely(f"failure of run #{run.pk}", alerting.on_job_failed, run)


def slots_not_run(*, job_slug: str, district, slots, status: str, note: str) -> None:
    """Slots were recorded as missed (scheduler not running) or skipped (overlap)."""
    from scheduling.monitoring import alerting

    if not slots:
        return
    logger.warning("job %s for %s: %s slot(s) %s: %s", job_slug, getattr(district, "pk", None) or "global",
                   len(slots), status, note)
    _safely(f"{status} slots of {job_slug}", alerting.on_slots_not_run, job_slug=job_slug, district=district,
            slots=list(slots), status=status, note=note)


def run_started(run) -> None:
    from scheduling.monitoring import alerting

    if not alerting._posts_run_events(run.job):
        return  # nothing to post: no savepoint (or transaction) around nothing, at every start
    _safely(f"start of run #{run.pk}", alerting.on_run_started, run)


def run_finished(run) -> None:
    """Any end of a run: a success resolves its job's incidents.

    Asked first, outside a savepoint, whether there is anything to do (one read): the
    common end, nothing open and nothing to post, costs that read alone, where the
    savepoints around the locking read cost four statements more. The read is a plain
    SELECT like the outcome's own statements, in their transaction (its failure is the
    settle's, retried as theirs); the work, when there is some, is in the savepoint as
    before, and it re-reads what is open with the lock."""
    from scheduling.monitoring import alerting

    if not alerting.run_finished_has_work(run):
        return
    _safely(f"end of run #{run.pk}", alerting.on_run_finished, run)


def run_held(run, hold) -> None:
    """The blast-radius guard held a run's messages (Slack warning; PagerDuty for a critical job)."""
    from scheduling.monitoring import alerting

    logger.warning("job %s for %s: run #%s held: %s", run.job, run.district_id or "global", run.pk, hold.reason)
    _safely(f"hold of run #{run.pk}", alerting.on_run_held, run, hold)


def hold_undecided(run, hold, *, now=None) -> None:
    """A held run was left undecided for 24 hours: the alert escalates (PagerDuty)."""
    from scheduling.monitoring import alerting

    logger.error("job %s for %s: run #%s held and undecided since %s", run.job, run.district_id or "global", run.pk,
                 hold.held_at)
    _safely(f"undecided hold of run #{run.pk}", alerting.on_hold_undecided, run, hold, now=now)


def holds_decided(*, job_slug: str, district_id, resolution: str) -> None:
    """No hold of this job and district is left undecided: resolve their alerts."""
    from scheduling.monitoring import alerting

    _safely(f"decided holds of {job_slug}", alerting.incidents_resolve, job_slug=job_slug, district_id=district_id,
            kinds=[alerting.Kind.HELD, alerting.Kind.HELD_UNDECIDED], resolution=resolution)
