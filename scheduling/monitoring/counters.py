"""Writes of the run counters /metrics reports (JobRunCounter, one row per job and district).

Every transition of a run into an outcome the metrics count goes through here, in the same
transaction as the run's own UPDATE or INSERT:
- runner._execute_claimed: running -> succeeded / failed / timed out (``run_finished``);
- services._mark_lost: running -> failed, a worker lost (``run_finished``);
- services.claim_slot: slots recorded as missed or skipped (``slots_decided``), and those
  the school calendar skipped by reason (``calendar_skipped``).
Alert deliveries have their own counter (AlertDeliveryCounter, ``alert_delivery_settled``).
Queued and running are gauges, counted live at scrape time (index jobrun_status_deadline).

Each caller counts only a transition it won: a conditional UPDATE that matched the row, or
an INSERT that did not conflict. A run row updated twice (the reaper marked it lost, then
its worker came back and wrote the real outcome) is counted once, by the first writer.

The UPDATE adds with F() (``executions = executions + 1``), so concurrent workers and
retries of different runs of the same job and district never lose an increment: the
database serializes the row, no value is read into Python and written back. Cost: two
statements per finished run (or per claim that recorded missed/skipped slots), the same two
for the first run of a job and district as for any other.
"""
from __future__ import annotations

import datetime as dt

from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest

from scheduling.models import (
    DURATION_BUCKETS,
    AlertDelivery,
    AlertDeliveryCounter,
    CalendarSkipCounter,
    JobRun,
    JobRunCounter,
    bucket_field,
)
from skillcore import counters as skillcore_counters

S = JobRun.Status


def _bump(*, job: str, district_id: int | None, changes: dict) -> None:
    """Upsert in two statements, always the same two, so a run's statements do not depend on
    whether it is the first of its job and district (the jobs' query-count tests compare a
    first run with a later one; an UPDATE-first variant saved one statement per run but cost
    three on the first): 1. insert the zero row, ON CONFLICT DO NOTHING (a concurrent first
    insert waits for the other's commit, then does nothing); 2. the UPDATE that adds.

    Not skillcore.counters.add (one INSERT ... ON CONFLICT DO UPDATE, used for the alert
    counters below): this key is (job, district) with district NULL for global jobs, held
    by two partial unique indexes that ON CONFLICT cannot name as one target, and
    last_success is a GREATEST, not a sum."""
    JobRunCounter.objects.bulk_create([JobRunCounter(job=job, district_id=district_id)], ignore_conflicts=True)
    JobRunCounter.objects.filter(job=job, district_id=district_id).update(**changes)


def _plus(field: str, n: int = 1):
    return F(field) + n


def run_finished(*, job: str, district_id: int | None, status: str, duration_seconds: float | None,
                 finished_at: dt.datetime | None) -> None:
    """Count one run that has just entered ``status`` (call it only when your write won)."""
    changes: dict = {}
    if status in (S.SUCCEEDED, S.WARNING, S.FAILED, S.TIMED_OUT):
        changes["executions"] = _plus("executions")
        if status in (S.FAILED, S.TIMED_OUT):
            changes["failures"] = _plus("failures")
        if status == S.TIMED_OUT:
            changes["timeouts"] = _plus("timeouts")
        if duration_seconds is not None:
            changes["timed"] = _plus("timed")
            changes["duration_sum"] = F("duration_sum") + float(duration_seconds)
            for bound in DURATION_BUCKETS:
                if duration_seconds <= bound:
                    changes[bucket_field(bound)] = _plus(bucket_field(bound))
        if status == S.SUCCEEDED and finished_at is not None:
            # GREATEST ignores NULL on PostgreSQL but returns NULL on SQLite: Coalesce covers
            # the first success. A late writer never moves last_success backwards.
            changes["last_success"] = Coalesce(Greatest(F("last_success"), Value(finished_at)), Value(finished_at))
    elif status == S.MISSED:
        changes["missed"] = _plus("missed")
    elif status == S.SKIPPED:
        changes["skipped"] = _plus("skipped")
    if changes:
        _bump(job=job, district_id=district_id, changes=changes)


def slots_decided(*, job: str, district_id: int | None, missed: int = 0, skipped: int = 0) -> None:
    """Count slots just recorded as missed or skipped (the rows this claim inserted)."""
    changes = {}
    if missed:
        changes["missed"] = _plus("missed", missed)
    if skipped:
        changes["skipped"] = _plus("skipped", skipped)
    if changes:
        _bump(job=job, district_id=district_id, changes=changes)


def calendar_skipped(*, job: str, reasons: dict[str, int]) -> None:
    """Count slots the school calendar skipped (rows this claim inserted), per reason. The
    key is two columns, so the same two statements as ``_bump`` rather than counters.add."""
    for reason, n in sorted(reasons.items()):  # sorted: concurrent claims lock rows in one order
        CalendarSkipCounter.objects.bulk_create([CalendarSkipCounter(job=job, reason=reason)], ignore_conflicts=True)
        CalendarSkipCounter.objects.filter(job=job, reason=reason).update(skipped=F("skipped") + n)


def alert_delivery_settled(*, channel: str, status: str) -> None:
    """Count one alert delivery that has just entered ``status`` (sent or failed), from
    alerting.deliver_due in the transaction of its conditional ``UPDATE ... WHERE
    status='sending'`` (only when it matched). Retries back to pending and staff resends
    (failed -> pending) are not outcomes; pending and sending are a live gauge (index
    alertdelivery_due_idx)."""
    if status in (AlertDelivery.Status.SENT, AlertDelivery.Status.FAILED):
        skillcore_counters.add(AlertDeliveryCounter, key="channel", value=channel, increments={status: 1})
