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

Each is one statement (skillcore.counters.add: INSERT ... ON CONFLICT DO UPDATE SET
c = c + EXCLUDED.c), so concurrent workers and retries of different runs of the same job and
district never lose an increment: the database adds on the locked row, no value is read
into Python and written back. The same one statement for the first run of a job and
district (it inserts the row) as for any other (it adds), so a run's statements do not
depend on which it is (the jobs' query-count tests compare a first run with a later one).
"""
from __future__ import annotations

import datetime as dt

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


def run_finished(*, job: str, district_id: int | None, status: str, duration_seconds: float | None,
                 finished_at: dt.datetime | None) -> None:
    """Count one run that has just entered ``status`` (call it only when your write won)."""
    increments: dict = {}
    latest: dict = {}
    if status in (S.SUCCEEDED, S.WARNING, S.FAILED, S.TIMED_OUT):
        increments["executions"] = 1
        if status in (S.FAILED, S.TIMED_OUT):
            increments["failures"] = 1
        if status == S.TIMED_OUT:
            increments["timeouts"] = 1
        if duration_seconds is not None:
            increments["timed"] = 1
            increments["duration_sum"] = float(duration_seconds)
            for bound in DURATION_BUCKETS:
                if duration_seconds <= bound:
                    increments[bucket_field(bound)] = 1
        if status == S.SUCCEEDED and finished_at is not None:
            # The greater of the stored and this one: a late writer never moves it back.
            latest["last_success"] = finished_at
    elif status == S.MISSED:
        increments["missed"] = 1
    elif status == S.SKIPPED:
        increments["skipped"] = 1
    skillcore_counters.add(JobRunCounter, key={"job": job, "district": district_id}, increments=increments, latest=latest)


def slots_decided(*, job: str, district_id: int | None, missed: int = 0, skipped: int = 0) -> None:
    """Count slots just recorded as missed or skipped (the rows this claim inserted)."""
    skillcore_counters.add(JobRunCounter, key={"job": job, "district": district_id},
                           increments={"missed": missed, "skipped": skipped})


def calendar_skipped(*, job: str, reasons: dict[str, int]) -> None:
    """Count slots the school calendar skipped (rows this claim inserted), per reason."""
    for reason, n in sorted(reasons.items()):  # sorted: concurrent claims lock rows in one order
        skillcore_counters.add(CalendarSkipCounter, key={"job": job, "reason": reason}, increments={"skipped": n})


def alert_delivery_settled(*, channel: str, status: str) -> None:
    """Count one alert delivery that has just entered ``status`` (sent or failed), from
    alerting.deliver_due in the transaction of its conditional ``UPDATE ... WHERE
    status='sending'`` (only when it matched). Retries back to pending and staff resends
    (failed -> pending) are not outcomes; pending and sending are a live gauge (index
    alertdelivery_due_idx)."""
    if status in (AlertDelivery.Status.SENT, AlertDelivery.Status.FAILED):
        skillcore_counters.add(AlertDeliveryCounter, key={"channel": channel}, increments={status: 1})
