"""The wrapper every run goes through, from a qcluster worker or from ``jobs run``.

``execute(run_id)`` steps:
1. Claim the run: one conditional UPDATE queued -> running (a redelivered task finds the
   run no longer queued and stops, unless that run's worker is gone: then it is recovered
   and its retry runs here, from the checkpoint).
2. Build the JobContext and call ``job.entry(ctx)`` inside the FERPA access trail.
3. Record the outcome: succeeded with the returned counts, or failed / timed out with the
   error and traceback; then either a retry one-off schedule (backoff with jitter) or,
   after the last attempt, the alert hook.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import socket
import time
import traceback as tb
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from scheduling import blast_radius, registry, services
from scheduling.models import JobRun, JobSchedule
from scheduling.monitoring import alerts, counters
from skillcore import held_messages
from skillcore.access import access_trail, current_trail

logger = logging.getLogger(__name__)

LOG_LINES = 500
_current_task_id: str | None = None  # set by the pre_execute receiver (scheduling/signals.py)


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


class _RunLogHandler(logging.Handler):
    def __init__(self, lines: collections.deque):
        super().__init__(level=logging.DEBUG)
        self.lines = lines
        # Each line's time in UTC, marked so ("2026-12-06T07:01:10Z"), whatever the worker's
        # clock zone: the run page shows it in the district's time (scheduling/summaries.py).
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        self.setFormatter(formatter)

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line must never fail a job
            self.handleError(record)


class JobContext:
    """What a job's entry point receives. See scheduling/jobs/__init__.py for the contract."""

    def __init__(self, *, run: JobRun, job: registry.Job, progress_interval: float = 1.0):
        self.run = run
        self.job = job
        self.scheduled_for = run.slot
        self.district = run.district
        self.checkpoint: dict = dict(run.checkpoint or {})
        self._lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        # A Logger that is not registered with logging's manager (no leak per run) but
        # propagates to "scheduling.jobs" so lines still reach the console/log shipper.
        self.logger = logging.Logger(f"scheduling.jobs.{job.slug}", level=logging.INFO)
        self.logger.parent = logging.getLogger("scheduling.jobs")
        self.logger.addHandler(_RunLogHandler(self._lines))
        self._progress_interval = progress_interval
        self._last_write = 0.0
        self._done: int | None = None
        self._total: int | None = None
        self.proposal: dict | None = None  # set by over_blast_radius: writes held as proposals
        self.warnings: list[str] = []

    @property
    def log_text(self) -> str:
        return "\n".join(self._lines)

    def progress(self, done: int, total: int | None = None) -> None:
        """Record progress; written at most once per ``progress_interval`` seconds."""
        self._done, self._total = done, total
        now = time.monotonic()
        if now - self._last_write >= self._progress_interval:
            self._last_write = now
            self._write(progress_done=done, progress_total=total, log=self.log_text)

    def warn(self, reason: str) -> None:
        """The run did not do what it is for (an empty emergency test group, no current
        session): it still ends without error, but as "succeeded with warnings", the reason in
        its note, and it is alerted on (scheduling/monitoring/alerting.py)."""
        self.warnings.append(reason)
        self.logger.warning("%s", reason)

    def over_blast_radius(self) -> str | None:
        """For a job whose other writes are irreversible in practice: call it inside the
        transaction of those writes, after enqueueing their messages. A reason: the run's
        messages so far would be held by the blast-radius guard; roll the writes back (they
        become the held run's proposals, made by the slot's approved retry if a system
        admin releases them). None: go on. (scheduling.blast_radius.propose_check)"""
        self.proposal = blast_radius.propose_check(run=self.run)
        return self.proposal["reason"] if self.proposal else None

    def save_checkpoint(self, checkpoint: dict) -> None:
        """Store where a retry should resume. Call it inside the same transaction as the
        batch's outputs, so a crash leaves either both or neither.

        The reads the access trail collected so far are written in the same transaction
        (the batch's writes already carry theirs): after a crash, every batch a retry
        resumes after is on the trail. No savepoint (``savepoint=False``): inside the
        batch's transaction this adds no statement; called alone it opens its own."""
        self.checkpoint = dict(checkpoint)
        with transaction.atomic(savepoint=False):
            self._write(checkpoint=self.checkpoint, progress_done=self._done, progress_total=self._total)
            trail = current_trail()
            if trail is not None:
                trail.flush()

    def _write(self, **fields: Any) -> None:
        JobRun.objects.filter(pk=self.run.pk).update(**fields)


def _deadline(job: registry.Job, start):
    return start + timezone.timedelta(seconds=job.timeout + settings.SCHEDULING_LOST_GRACE)


def claim(run_id: int) -> JobRun | None:
    """Step 1: queued -> running, or recover a run whose worker is gone. Returns the run
    to execute here, or None when there is nothing to do (a duplicate delivery)."""
    now = timezone.now()
    run = JobRun.objects.select_related("district").get(pk=run_id)
    job = registry.get(run.job)
    claimed = JobRun.objects.filter(pk=run_id, status=JobRun.Status.QUEUED).update(
        status=JobRun.Status.RUNNING, started_at=now, deadline=_deadline(job, now),
        worker=worker_label(), task_id=_current_task_id or run.task_id,
    )
    if claimed:
        run.refresh_from_db()
        JobSchedule.objects.filter(job=run.job, district_id=run.district_id).update(last_run=run)
        alerts.run_started(run)
        return run
    run.refresh_from_db()
    if run.status == JobRun.Status.RUNNING and run.deadline and run.deadline < now:
        # The broker redelivered the task of a worker that died (SIGKILL, OOM, host
        # loss): the run never reached a result. Recover it and run its retry here.
        retry = services.recover_lost_run(run=run, now=now, enqueue=False)
        if retry is not None:
            return claim(retry.pk)
    logger.info("run %s is %s: nothing to do for this delivery", run.pk, run.status)
    return None


def started_fields(job_slug: str, now) -> dict | None:
    """A run's columns once this worker has started it (what ``claim`` writes), for a
    caller that inserts the run already started: the fire task's slot claim
    (services.claim_slot's ``start``). None for a job no longer registered."""
    job = registry.find(job_slug)
    if job is None:
        return None
    return dict(status=JobRun.Status.RUNNING, started_at=now, deadline=_deadline(job, now),
                worker=worker_label(), task_id=_current_task_id or "")


def execute(run_id: int, *, enforce_timeout: bool = False, auto_retry: bool = True,
            started: JobRun | None = None) -> JobRun | None:
    """Run a queued JobRun to its end. Returns the finished run (None: nothing to do).

    ``started``: the run its caller inserted already started by this worker (the fire
    task: the slot's claim writes ``started_fields``), executed without a claim of its own:
    a task's start costs two statements fewer, 3,000 times in a burst."""
    if started is not None:
        alerts.run_started(started)
        return _execute_claimed(started, enforce_timeout=enforce_timeout, auto_retry=auto_retry)
    # A delivery that finds the database restarting still claims its run once it is back:
    # a claim that failed would leave the run queued with its task already spent.
    run = _with_fresh_connection(lambda: claim(run_id), patience=OUTCOME_MIN_PATIENCE)
    if run is None:
        return None
    return _execute_claimed(run, enforce_timeout=enforce_timeout, auto_retry=auto_retry)


def _execute_claimed(run: JobRun, *, enforce_timeout: bool, auto_retry: bool) -> JobRun:
    from django_q.exceptions import TimeoutException
    from django_q.timeout import TimeoutHandler

    job = registry.get(run.job)
    ctx = JobContext(run=run, job=job)
    started = time.monotonic()
    status, result, error, trace = JobRun.Status.SUCCEEDED, {}, "", ""
    staged = None  # the run's staging record, once it is on
    try:
        if job.entry is None:
            raise NotImplementedError(f"job {job.slug} has no body yet")
        # The run's messages are held until it is judged (scheduling/blast_radius.py).
        with access_trail(job_run_id=run.id, purpose=f"scheduled job {job.slug}"), held_messages.staging(run.id) as staged:
            # Inside a qcluster worker django-q2 already enforces the timeout; ``jobs run``
            # enforces it here with the same SIGALRM handler.
            if enforce_timeout:
                with TimeoutHandler(job.timeout):
                    result = job.entry(ctx)
            else:
                result = job.entry(ctx)
        if not isinstance(result, dict):
            raise TypeError(f"job {job.slug} returned {type(result).__name__}, not a dict of counts")
    except TimeoutException as exc:
        status, error, trace = JobRun.Status.TIMED_OUT, str(exc), tb.format_exc()
        ctx.logger.error("timed out after %s s", job.timeout)
    except Exception as exc:  # the job's failure is recorded, never lost
        status, error, trace = JobRun.Status.FAILED, f"{type(exc).__name__}: {exc}", tb.format_exc()
        ctx.logger.error("failed: %s", error)
    finally:
        duration = time.monotonic() - started
    outcome = dict(
        status=status, finished_at=timezone.now(), duration_seconds=round(duration, 3),
        result=result if status == JobRun.Status.SUCCEEDED else {}, error=error[:10000], traceback=trace[-20000:],
        log=ctx.log_text, progress_done=ctx._done if ctx._done is not None else run.progress_done,
        progress_total=ctx._total if ctx._total is not None else run.progress_total,
    )
    if status == JobRun.Status.SUCCEEDED and ctx.warnings:  # kept its result; said why in the note
        outcome.update(status=JobRun.Status.WARNING, note="; ".join(ctx.warnings)[:300])
    left = (run.deadline - timezone.now()).total_seconds() if run.deadline else 0
    # No staging (the job had no body, the trail could not start): nothing can be held, but
    # the guard counts as before (None: not known).
    asked = staged.asked if staged is not None else None
    _with_fresh_connection(lambda: _record_outcome(run, job, outcome, auto_retry=auto_retry, proposal=ctx.proposal,
                                                   staged=asked),
                           patience=max(left, OUTCOME_MIN_PATIENCE))
    return run


def _record_outcome(run: JobRun, job: registry.Job, outcome: dict, *, auto_retry: bool,
                    proposal: dict | None = None, staged: bool | None = None) -> None:
    with transaction.atomic():
        # The blast-radius guard, in this transaction: the run's messages are released to
        # the outbox, or held with the run ending "held" (no retry: nothing failed), never
        # both and never lost. A failed run's messages are judged like any run's.
        # ``staged``: whether the job's staging was asked to hold a message; a run that was
        # not is judged without counting (blast_radius.judge).
        judgement = blast_radius.judge(run=run, now=outcome["finished_at"], proposal=proposal, staged=staged)
        outcome["outbound"] = judgement.counts
        if judgement.held:
            outcome["status"] = JobRun.Status.HELD
            outcome["note"] = f"held: {judgement.reason}"[:300]
        # Conditional on "running": only the write that ends the run counts it. When the
        # reaper already marked it lost (and counted a failure, and created its retry), the
        # real outcome is still recorded on the row, but counted and retried no second time.
        won = JobRun.objects.filter(pk=run.pk, status=JobRun.Status.RUNNING).update(**outcome)
        if not won:
            JobRun.objects.filter(pk=run.pk).update(**outcome)
        if won and outcome["status"] in (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING):
            # The row is what this worker started plus the outcome: not read back. A
            # failure is (its retry resumes from the checkpoint the job committed, which
            # only the row knows for sure), and so is a run the reaper had marked lost.
            for name, value in outcome.items():
                setattr(run, name, value)
        else:
            run.refresh_from_db()
        if won:
            counters.run_finished(job=run.job, district_id=run.district_id, status=run.status,
                                  duration_seconds=run.duration_seconds, finished_at=run.finished_at)
        if judgement.held:
            blast_radius.hold_record(run=run, judgement=judgement, now=outcome["finished_at"])
        if won and outcome["status"] in (JobRun.Status.FAILED, JobRun.Status.TIMED_OUT):
            services.after_failure(run=run, job=job, auto_retry=auto_retry)
        alerts.run_finished(run)  # a success resolves the job's open incidents


# Writing the outcome survives a database restart or outage: retried on a fresh connection,
# every OUTCOME_RETRY_DELAYS[i] seconds (then the last), until the run's deadline (past it
# the scheduler's reaper owns the run) but for at least OUTCOME_MIN_PATIENCE.
OUTCOME_RETRY_DELAYS = (0.5, 1, 2, 4, 5)
OUTCOME_MIN_PATIENCE = 120.0  # seconds


def _with_fresh_connection(write, *, patience: float):
    """Call ``write()``; on a connection-level error (the server restarted, the session was
    terminated, no connection can be made) drop the broken connection and try again with
    a bounded backoff. Without this a PostgreSQL restart mid-run left the run "running"
    until its deadline (the job's timeout, an hour by default): the job's own failure
    could not be recorded on the dead connection, nor its retry scheduled."""
    from django.db import InterfaceError, OperationalError, connection

    give_up = time.monotonic() + patience  # monotonic: a test's pinned clock cannot stall it
    for attempt in itertools.count():
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            # Inside an outer atomic block the connection cannot be replaced here.
            if connection.in_atomic_block or time.monotonic() >= give_up:
                raise
            delay = OUTCOME_RETRY_DELAYS[min(attempt, len(OUTCOME_RETRY_DELAYS) - 1)]
            logger.warning("writing the outcome failed (%s); retrying on a fresh connection in %s s", exc, delay)
            with contextlib.suppress(Exception):
                connection.close()  # a broken connection: the pool discards it
            time.sleep(delay)


def run_sync(*, job_slug: str, district, acting_user=None, as_of=None) -> JobRun:
    """``jobs run``: record a manual run and execute it here, through the same wrapper as a
    worker (the job's timeout enforced here; a failure is not retried automatically)."""
    run = services.record_manual_run(job_slug=job_slug, district=district, acting_user=acting_user, as_of=as_of)
    return execute(run.pk, enforce_timeout=True, auto_retry=False)
