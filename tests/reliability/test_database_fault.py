"""PostgreSQL goes away under a running job (a real qcluster on PostgreSQL).

What the test does to the database: it terminates every backend connection of the TEST
database (pg_terminate_backend, the same thing a restart does to each session) while the
job is between batches. It does not restart the server, which other test runs share.
The run must end as a clean failure (its error recorded, not stuck "running"), and its
retry must resume from the last committed checkpoint and finish with no duplicate output.
"""
from __future__ import annotations

import pytest
from django.db import connection

from scheduling import services
from scheduling.models import JobRun
from tests import factories as f
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import postgres_only, test_jobs  # noqa: F401
from tests.support.qcluster import cluster_env, qcluster, wait

TOTAL = 30


def terminate_test_database_backends() -> int:
    with connection.cursor() as c:
        c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return c.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_database_connections_killed_mid_job_fail_the_run_cleanly_and_the_retry_completes(
    test_jobs, postgres_only, tmp_path,  # noqa: F811
):
    table = jobs_for_tests.OUTPUT_TABLE
    with connection.cursor() as c:
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (item integer PRIMARY KEY, run_id bigint)")
    district = f.DistrictFactory(name="Outage Valley")
    env = cluster_env(
        Q_RETRY="20", SCHEDULING_LOST_GRACE="2", SCHEDULING_EXTRA_JOB_MODULES="tests.scheduling.jobs_for_tests",
        SCHED_TEST_TIMEOUT="20", SCHED_TEST_ITEMS=str(TOTAL), SCHED_TEST_BATCH="2", SCHED_TEST_PAUSE="0.3",
    )
    log_path = tmp_path / "qcluster.log"
    with qcluster(env, log_path):
        run = services.run_now(job_slug="t-batches", district=district, acting_user=None)
        wait(lambda: JobRun.objects.filter(pk=run.pk, status="running", checkpoint__next__gte=7).exists(), 40, "the first batches")
        killed = terminate_test_database_backends()
        retry = wait(lambda: JobRun.objects.filter(retry_of=run.pk, status__in=["succeeded", "failed"]).first(),
                     60, "the retry to finish")
    output = log_path.read_text()
    run.refresh_from_db()
    assert killed >= 1
    assert run.status == "failed", output[-3000:]
    assert run.error, "the failure is recorded with its cause"
    assert retry.status == "succeeded", (retry.error, output[-3000:])
    resumed = retry.result["resumed_from"]
    assert resumed >= 7
    with connection.cursor() as c:
        c.execute(f"SELECT count(*), count(DISTINCT item), min(item), max(item) FROM {table}")
        assert c.fetchone() == (TOTAL, TOTAL, 1, TOTAL)
        c.execute(f"SELECT count(*) FROM {table} WHERE run_id = %s", [retry.pk])
        assert c.fetchone()[0] == retry.result["written"] == TOTAL - resumed + 1
        c.execute(f"DROP TABLE {table}")
    print(f"run #{run.pk}: {run.error!r}; retry #{retry.pk} resumed from {resumed}")
