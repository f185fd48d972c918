"""A real ``manage.py qcluster`` on PostgreSQL: its worker is killed with SIGKILL in the
middle of a batched job; the run is recovered (broker redelivery or the scheduler's lost-run
reaper) and its retry resumes from the checkpoint without duplicating any output."""
from __future__ import annotations

import os
import signal

import pytest
from django.db import connection

from scheduling import services
from scheduling.models import JobRun
from tests import factories as f
from tests.scheduling import jobs_for_tests
from tests.support.qcluster import cluster_env, qcluster
from tests.support.qcluster import wait as _wait


@pytest.mark.django_db(transaction=True)
def test_sigkilled_worker_run_resumes_from_its_checkpoint_without_duplicates(test_jobs, postgres_only, tmp_path):
    table = jobs_for_tests.OUTPUT_TABLE
    with connection.cursor() as c:
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (item integer PRIMARY KEY, run_id bigint)")
    district = f.DistrictFactory(name="Fault Line")
    env = cluster_env(
        Q_RETRY="20",  # the ORM broker redelivers an un-acked task after 20 s
        SCHEDULING_LOST_GRACE="2", SCHEDULING_EXTRA_JOB_MODULES="tests.scheduling.jobs_for_tests",
        SCHED_TEST_TIMEOUT="8", SCHED_TEST_ITEMS="20", SCHED_TEST_BATCH="2", SCHED_TEST_PAUSE="0.4",
    )
    # On exit the whole process group (cluster, sentinel, workers) is killed at once
    # rather than waiting for a graceful shutdown (tests/support/qcluster.py).
    with qcluster(env, tmp_path / "qcluster.log"):
        run = services.run_now(job_slug="t-batches", district=district, acting_user=None)
        # 1. Wait until the worker has committed three batches (items 1-6), then kill it.
        killed_at = _wait(
            lambda: JobRun.objects.filter(pk=run.pk, status="running", checkpoint__next__gte=7).first(),
            30, "the first batches",
        )
        pid = int(killed_at.worker.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        with connection.cursor() as c:
            c.execute(f"SELECT count(*) FROM {table}")
            written_before_kill = c.fetchone()[0]
        # 2. The retry, from the checkpoint, finishes the job.
        retry = _wait(
            lambda: JobRun.objects.filter(retry_of=run.pk, status__in=["succeeded", "failed"]).first(),
            50, "the retry to finish",
        )
    run.refresh_from_db()
    output = (tmp_path / "qcluster.log").read_text()
    assert retry.status == "succeeded", output[-3000:]
    assert run.status == "failed" and run.error.startswith("worker lost")
    assert (retry.trigger, retry.attempt) == ("retry", 2)
    resumed = retry.result["resumed_from"]
    # Outputs and checkpoint commit together, so the retry starts right after the last
    # committed batch: nothing redone, nothing skipped.
    assert resumed >= 7 and resumed == written_before_kill + 1
    assert retry.result["written"] == 20 - resumed + 1
    with connection.cursor() as c:
        c.execute(f"SELECT count(*), count(DISTINCT item), min(item), max(item) FROM {table}")
        assert c.fetchone() == (20, 20, 1, 20)
        c.execute(f"SELECT count(*) FROM {table} WHERE run_id = %s", [retry.pk])
        assert c.fetchone()[0] == retry.result["written"]
        c.execute(f"DROP TABLE {table}")


# What a forked process using its parent's pooled connection prints (psycopg), and what
# the engine logs when a scheduler pass or its bookkeeping fails.
BROKEN_CONNECTION_SIGNS = ("lost synchronization", "insufficient data", "Could not create task from schedule",
                           "scheduler pre-pass failed", "alert watch failed", "PoolTimeout")


@pytest.fixture
def busy_job():
    from scheduling import registry
    from tests.reliability import busy_jobs

    job = next(j for j in busy_jobs.JOBS if j.slug == "rel-busy")
    registry.register(job)
    yield job
    registry.unregister(job.slug)


@pytest.mark.django_db(transaction=True)
def test_sigkilled_worker_with_the_production_pool_recovers_and_the_scheduler_keeps_passing(
    test_jobs, busy_job, postgres_only, tmp_path,
):
    """Production's database settings (Django's psycopg pool on, tests/support/qcluster.py):
    the sentinel has run a scheduler pass, so its pool holds an open session, when the worker
    is killed; the replacement worker, forked from the sentinel, recovers the run and then
    keeps its connection busy across the sentinel's next passes. A session shared across the
    fork would be used by both at once (skillcore/forked_db.py)."""
    from scheduling.models import SchedulerHeartbeat

    table = jobs_for_tests.OUTPUT_TABLE
    with connection.cursor() as c:
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (item integer PRIMARY KEY, run_id bigint)")
    district = f.DistrictFactory(name="Pool Side")
    env = cluster_env(
        Q_RETRY="20", SCHEDULING_LOST_GRACE="2",
        SCHEDULING_EXTRA_JOB_MODULES="tests.scheduling.jobs_for_tests,tests.reliability.busy_jobs",
        SCHED_TEST_TIMEOUT="8", SCHED_TEST_ITEMS="20", SCHED_TEST_BATCH="2", SCHED_TEST_PAUSE="0.4",
        REL_BUSY_SECONDS="10", SKILLCORE_TEST_SCHEDULER_TICK="2",
    )
    assert env["DATABASE_POOL"] == "true"
    log_path = tmp_path / "qcluster.log"
    with qcluster(env, log_path):
        # 1. The sentinel's first scheduler pass (at start: the test tick, tests/support/scheduler_tick.py) opens its pool.
        beat = _wait(lambda: SchedulerHeartbeat.objects.first(), 60, "the first scheduler pass")
        run = services.run_now(job_slug="t-batches", district=district, acting_user=None)
        killed_at = _wait(
            lambda: JobRun.objects.filter(pk=run.pk, status="running", checkpoint__next__gte=7).first(),
            30, "the first batches",
        )
        os.kill(int(killed_at.worker.rsplit(":", 1)[1]), signal.SIGKILL)
        # 2. The broker redelivers the task to the replacement worker: the run is recovered
        #    and its retry runs there, from the checkpoint.
        retry = _wait(
            lambda: JobRun.objects.filter(retry_of=run.pk, status__in=["succeeded", "failed"]).first(),
            60, "the retry to finish",
        )
        # 3. The same worker then keeps its connection busy for 10 s, across the sentinel's passes (every 2 s).
        passes_before = SchedulerHeartbeat.objects.get(pk=beat.pk).passes
        busy = services.run_now(job_slug="rel-busy", district=district, acting_user=None)
        busy = _wait(lambda: JobRun.objects.filter(pk=busy.pk, status__in=["succeeded", "failed"]).first(),
                     90, "the busy run")
        passes_during = SchedulerHeartbeat.objects.get(pk=beat.pk).passes - passes_before
    run.refresh_from_db()
    output = log_path.read_text()
    assert [sign for sign in BROKEN_CONNECTION_SIGNS if sign in output] == [], output[-4000:]
    assert run.status == "failed" and run.error.startswith("worker lost")
    assert retry.status == "succeeded", (retry.error, output[-3000:])
    assert (retry.trigger, retry.attempt) == ("retry", 2)
    assert retry.worker != killed_at.worker
    assert busy.status == "succeeded", (busy.error, output[-3000:])
    assert busy.worker == retry.worker  # the worker forked after the sentinel's pool opened
    assert passes_during >= 1  # the sentinel passed (heartbeat, reaper, schedules) meanwhile
    with connection.cursor() as c:
        c.execute(f"SELECT count(*), count(DISTINCT item) FROM {table}")
        assert c.fetchone() == (20, 20)
        c.execute(f"DROP TABLE {table}")
