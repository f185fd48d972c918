"""The slot claim's two statements that replaced four (scheduling/services.py): the INSERT
that is the claim (ON CONFLICT DO NOTHING RETURNING id) and the overlap check read with the
schedule's lock, which must still see a run started by a claim it waited for."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection, transaction

from scheduling import runner, services
from scheduling.models import JobRun, JobRunCounter, JobSchedule

SLOT = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.UTC)  # 02:00 in New York, t-daily's slot
GLOBAL_SLOT = dt.datetime(2026, 12, 1, 4, 0, tzinfo=dt.UTC)  # t-global's slot (UTC)


@pytest.mark.django_db
@pytest.mark.parametrize(("job", "slot", "per_district"), [("t-daily", SLOT, True), ("t-global", GLOBAL_SLOT, False)])
def test_a_claim_that_loses_the_slot_returns_none_and_writes_nothing(only_test_jobs, new_york, job, slot, per_district):
    """Another cluster's claim of the slot committed after this one's lock was granted (the
    row is not running, so the overlap check lets this claim through): the INSERT conflicts
    on the unique (job, district, slot) and writes nothing, and the enclosing transaction
    goes on (no error to roll back, where a plain INSERT needed a savepoint)."""
    services.sync_schedules(now=SLOT - dt.timedelta(hours=6))
    district = new_york if per_district else None
    theirs = JobRun.objects.create(job=job, district=district, trigger="schedule", slot=slot, status="succeeded")
    now = slot + dt.timedelta(seconds=20)
    with transaction.atomic():
        assert services.claim_slot(job_slug=job, district_id=district and district.pk, slot=slot, now=now,
                                   start=runner.started_fields(job, now)) is None
        assert JobRun.objects.filter(job=job).count() == 1  # the transaction is still usable
    assert list(JobRun.objects.filter(job=job).values_list("pk", flat=True)) == [theirs.pk]
    schedule = JobSchedule.objects.get(job=job, district=district)
    assert (schedule.last_slot, schedule.last_run_id) == (None, None)
    assert not JobRunCounter.objects.filter(job=job).exists()


@pytest.mark.django_db
def test_the_winning_claim_returns_the_inserted_row(only_test_jobs, new_york):
    services.sync_schedules(now=SLOT - dt.timedelta(hours=6))
    now = SLOT + dt.timedelta(seconds=20)
    run = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=SLOT, now=now,
                              start=runner.started_fields("t-daily", now))
    assert run.pk is not None and run.district == new_york
    stored = JobRun.objects.get(pk=run.pk)
    assert (stored.slot, stored.status, stored.started_at, stored.worker) == (SLOT, "running", now, run.worker)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: SQLite has one writer")
@pytest.mark.django_db(transaction=True)
def test_a_claim_that_waited_for_the_lock_sees_the_run_the_holder_started(only_test_jobs, new_york):
    """A claim of the previous slot holds the schedule's lock and starts its run; this claim,
    of the next slot, waits for the lock. Its overlap check must see that run (its statement's
    snapshot predates the commit): the slot is skipped, as when the check was its own query."""
    services.sync_schedules(now=SLOT - dt.timedelta(hours=6))
    schedule = JobSchedule.objects.get(job="t-daily", district=new_york)
    nxt = SLOT + dt.timedelta(days=1)
    locked, release = threading.Event(), threading.Event()

    def holder():
        try:
            with transaction.atomic():
                JobSchedule.objects.select_for_update().get(pk=schedule.pk)
                run = JobRun.objects.create(job="t-daily", district=new_york, trigger="schedule", slot=SLOT,
                                            status="running", started_at=SLOT, enqueued_at=SLOT,
                                            deadline=nxt + dt.timedelta(hours=1))
                JobSchedule.objects.filter(pk=schedule.pk).update(last_slot=SLOT, last_run=run)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()  # commits while the claim below waits
    now = nxt + dt.timedelta(seconds=20)
    claimed = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=nxt, now=now,
                                  start=runner.started_fields("t-daily", now))
    thread.join(10)
    assert claimed is None
    skipped = JobRun.objects.get(job="t-daily", slot=nxt)
    running = JobRun.objects.get(job="t-daily", slot=SLOT)
    assert skipped.status == "skipped" and f"run #{running.pk}" in skipped.note and "still running" in skipped.note


# -- The overlap check written as SQL (a4dbe4b): global jobs and other districts -----------------


def _running_run(job, district, slot):
    run = JobRun.objects.create(job=job, district=district, trigger="schedule", slot=slot, status="running",
                                started_at=slot, enqueued_at=slot, deadline=slot + dt.timedelta(days=2))
    JobSchedule.objects.filter(job=job, district=district).update(last_slot=slot, last_run=run)
    return run


@pytest.mark.django_db
def test_a_global_job_still_running_skips_its_next_slot(only_test_jobs, new_york):
    """district NULL: the check reads district_id IS NULL (= NULL would never match)."""
    services.sync_schedules(now=GLOBAL_SLOT - dt.timedelta(hours=6))
    running = _running_run("t-global", None, GLOBAL_SLOT)
    nxt = GLOBAL_SLOT + dt.timedelta(days=1)
    now = nxt + dt.timedelta(seconds=20)
    assert services.claim_slot(job_slug="t-global", district_id=None, slot=nxt, now=now,
                               start=runner.started_fields("t-global", now)) is None
    skipped = JobRun.objects.get(job="t-global", slot=nxt)
    assert (skipped.status, skipped.district_id) == ("skipped", None)
    assert f"run #{running.pk}" in skipped.note and "still running" in skipped.note
    assert JobRunCounter.objects.get(job="t-global", district=None).skipped == 1


@pytest.mark.django_db
def test_a_run_still_running_in_another_district_or_of_another_job_does_not_skip_this_one(only_test_jobs, new_york,
                                                                                           adelaide):
    services.sync_schedules(now=SLOT - dt.timedelta(hours=6))
    _running_run("t-daily", adelaide, SLOT)
    _running_run("t-global", None, GLOBAL_SLOT)
    JobRun.objects.create(job="t-daily", district=None, trigger="manual", slot=SLOT, status="running",
                          started_at=SLOT, enqueued_at=SLOT)  # a district-less run of the district job
    ours = JobRun.objects.create(job="t-daily", district=new_york, trigger="schedule", slot=SLOT,
                                 status="succeeded", started_at=SLOT, finished_at=SLOT + dt.timedelta(minutes=1))
    JobSchedule.objects.filter(job="t-daily", district=new_york).update(last_slot=SLOT, last_run=ours)
    nxt = SLOT + dt.timedelta(days=1)
    now = nxt + dt.timedelta(seconds=20)
    run = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=nxt, now=now,
                              start=runner.started_fields("t-daily", now))
    assert run is not None
    assert JobRun.objects.get(pk=run.pk).status == "running"
    assert not JobRun.objects.filter(status="skipped").exists()
    assert not JobRunCounter.objects.filter(skipped__gt=0).exists()
