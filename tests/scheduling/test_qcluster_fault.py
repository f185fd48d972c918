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
