"""What a fired task costs the engine before its job does any work: the slot's claim, the
run row, its start, the trail, the counters and the settle (scheduling/tasks.py, runner.py).
A ceiling, so a change that adds a statement per task is seen: a burst of 3,000 slots pays
it 3,000 times."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from scheduling import services, tasks
from scheduling.models import JobRun, JobSchedule
from tests.scheduling import jobs_for_tests

NY = ZoneInfo("America/New_York")
SLOT = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)

# The statements of one on-time slot of a job whose body runs no query, each a round trip
# (in the worker BEGIN/COMMIT where this test's transaction shows SAVEPOINT/RELEASE):
# - the claim, which also starts the run (services.claim_slot with ``start``): BEGIN, lock
#   the schedule with its district, overlap check, SAVEPOINT, INSERT the run already
#   running, RELEASE, record the slot and the last run, COMMIT = 8;
# - the settle (runner._record_outcome): BEGIN, the blast-radius guard's two counts, the
#   outcome, the counter's INSERT and UPDATE, the incidents a success resolves (a SELECT in
#   two savepoints: 5), COMMIT = 12.
# 28 before the run was inserted started and the settle stopped reading the row back.
TASK_START_QUERIES = 20


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
