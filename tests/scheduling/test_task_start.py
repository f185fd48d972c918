"""What a fired task costs the engine before its job does any work: the slot's claim, the
run row, its start, the trail, the counters and the settle (scheduling/tasks.py, runner.py).
A ceiling, so a change that adds a statement per task is seen: a burst of 3,000 slots pays
it 3,000 times."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling import services, tasks
from scheduling.models import JobRun, JobRunCounter, JobSchedule
from tests.scheduling import jobs_for_tests

NY = ZoneInfo("America/New_York")
SLOT = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)

# The statements of one on-time slot of a job whose body runs no query, in a district where
# the job ran before (every night but the first), each a round trip (in the worker
# BEGIN/COMMIT where this test's transaction shows SAVEPOINT/RELEASE):
# - the claim, which also starts the run (services.claim_slot with ``start``): BEGIN, lock
#   the schedule with its district and read the overlap check in the same statement, INSERT
#   the run already running (ON CONFLICT DO NOTHING RETURNING id: the claim), record the
#   slot and the last run, COMMIT = 5;
# - the settle (runner._record_outcome): BEGIN, the outcome, the counter's one INSERT ...
#   ON CONFLICT DO UPDATE (the same one on the first run of a job in a district as on any
#   other: the jobs' query-count tests compare a first run with a later one), whether an
#   incident is open for the success to resolve, COMMIT = 5. No blast-radius count: the run
#   asked to hold no message; no savepoint: no incident is open.
# 10, of which 6 without transaction control.
# 11 while the counter was an INSERT ... DO NOTHING and an UPDATE; 20 before the overlap
# check was read with the lock, the INSERT lost its savepoint, the guard stopped counting a
# run that staged nothing and the incident check lost its two savepoints; 28 before the run
# was inserted started and the settle stopped reading the row back.
TASK_START_QUERIES = 10
TRANSACTION_CONTROL = 4  # BEGIN and COMMIT of the claim and of the settle


@pytest.mark.django_db
def test_a_fired_task_costs_a_fixed_number_of_statements(only_test_jobs, new_york, django_assert_max_num_queries):
    with time_machine.travel(dt.datetime(2026, 12, 1, 1, 0, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(dt.datetime(2026, 12, 1, 2, 0, 20, tzinfo=NY))
        with django_assert_max_num_queries(TASK_START_QUERIES):
            result = tasks.fire(job="t-daily", district=new_york.pk, tz="America/New_York", scheduled_for=SLOT.isoformat())
    run = JobRun.objects.get(job="t-daily")
    assert result == {"claimed": True, "run": run.pk, "status": "succeeded"}
    assert (run.slot, run.status, run.trigger, run.district_id) == (SLOT, "succeeded", "schedule", new_york.pk)
    assert run.started_at is not None and run.worker and run.deadline is not None
    # What the start wrote without reading the row back: the schedule's last run and slot.
    schedule = JobSchedule.objects.get(job="t-daily", district=new_york)
    assert (schedule.last_run_id, schedule.last_slot) == (run.pk, SLOT)
    assert jobs_for_tests.CALLS == [("t-daily", SLOT, new_york.pk)]


@pytest.mark.django_db
def test_a_task_of_a_job_that_ran_before_costs_ten_statements_six_without_begin_and_commit(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2026, 12, 1, 1, 0, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(dt.datetime(2026, 12, 1, 2, 0, 20, tzinfo=NY))
        tasks.fire(job="t-daily", district=new_york.pk, tz="America/New_York", scheduled_for=SLOT.isoformat())
        traveller.move_to(dt.datetime(2026, 12, 2, 2, 0, 20, tzinfo=NY))
        nxt = SLOT + dt.timedelta(days=1)
        with CaptureQueriesContext(connection) as captured:
            result = tasks.fire(job="t-daily", district=new_york.pk, tz="America/New_York", scheduled_for=nxt.isoformat())
    statements = [q["sql"] for q in captured.captured_queries]
    control = [sql for sql in statements if sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert len(statements) <= TASK_START_QUERIES, "\n".join(statements)
    assert len(control) == TRANSACTION_CONTROL and len(statements) - len(control) <= TASK_START_QUERIES - TRANSACTION_CONTROL
    assert result["status"] == "succeeded"
    run = JobRun.objects.get(pk=result["run"])
    assert (run.slot, run.outbound) == (nxt, {"families": 0, "staff": 0})
    counter = JobRunCounter.objects.get(job="t-daily", district=new_york)
    assert (counter.executions, counter.failures) == (2, 0)


@pytest.mark.django_db
def test_a_failed_run_is_read_back_for_its_retry(only_test_jobs, new_york):
    """A failure re-reads the row (its retry resumes from the checkpoint the job committed)."""
    jobs_for_tests.FAIL_TIMES["t-flaky"] = 1
    with time_machine.travel(dt.datetime(2026, 12, 1, 4, 0, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(dt.datetime(2026, 12, 1, 5, 0, 20, tzinfo=NY))
        slot = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
        result = tasks.fire(job="t-flaky", district=new_york.pk, tz="America/New_York", scheduled_for=slot.isoformat())
    assert result["status"] == "failed"
    retry = JobRun.objects.get(job="t-flaky", trigger="retry")
    assert (retry.status, retry.attempt, retry.slot) == ("queued", 2, slot)
