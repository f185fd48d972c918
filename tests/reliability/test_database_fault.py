"""PostgreSQL goes away under a running job (a real qcluster on PostgreSQL).

What the tests do to the database: terminate every backend connection of the TEST
database (pg_terminate_backend, the same thing a restart does to each session) while the
job is between batches; and, for a longer outage, also refuse new connections to the TEST
database for several seconds (ALTER DATABASE ... ALLOW_CONNECTIONS false, restored before
the test ends). Neither restarts the server nor touches any other database, which other
test runs share. The clusters run with production's database settings (pool on).

The run must end as a clean failure with its cause, written by its own worker on a fresh
connection as soon as the database is back (the job's timeout here is production-like, ten
minutes, so the lost-run reaper cannot be what ends it), its retry must follow the job's
backoff, resume from the last committed checkpoint and finish with no duplicate output.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import connection
from django.utils import timezone

from scheduling import services
from scheduling.models import JobRun
from tests import factories as f
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import postgres_only, test_jobs  # noqa: F401
from tests.support.qcluster import cluster_env, qcluster, wait

TOTAL = 30


PRODUCTION_LIKE_TIMEOUT = "600"  # the run's deadline is ten minutes away: only its worker can end it


def terminate_test_database_backends() -> int:
    with connection.cursor() as c:
        c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return c.fetchone()[0]


def allow_connections(allow: bool) -> None:
    """Open or close the TEST database (only it) to new connections; the test's own session
    stays. PostgreSQL refuses this from a session of the database itself, so it is said
    from the server's maintenance database."""
    import psycopg

    db = connection.settings_dict
    name = db["NAME"]
    assert name.startswith("test_"), name  # never anything but pytest-django's database
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
                         dbname="postgres", autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allow else "false"}')


def _start_batches(tmp_path, name: str):
    table = jobs_for_tests.OUTPUT_TABLE
    with connection.cursor() as c:
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (item integer PRIMARY KEY, run_id bigint)")
    district = f.DistrictFactory(name=name)
    env = cluster_env(
        Q_RETRY="700", SCHEDULING_EXTRA_JOB_MODULES="tests.scheduling.jobs_for_tests",
        SCHED_TEST_TIMEOUT=PRODUCTION_LIKE_TIMEOUT, SCHED_TEST_ITEMS=str(TOTAL), SCHED_TEST_BATCH="2",
        SCHED_TEST_PAUSE="0.3", SKILLCORE_TEST_SCHEDULER_TICK="2",
    )
    return district, env


def _assert_failed_with_cause_then_retried(run, retry, job, output, *, observed):
    run.refresh_from_db()
    assert run.status == "failed", output[-3000:]
    # The job's own error, naming the lost connection, not the reaper's "worker lost".
    assert run.error.startswith(("OperationalError", "InterfaceError")), run.error
    assert (retry.trigger, retry.attempt, retry.status) == ("retry", 2, "succeeded"), (retry.error, output[-3000:])
    # The job's backoff: attempt 2 is due base x 2^0 x jitter (0.5-1.0) after the failure
    # was recorded, which the test saw at ``observed`` (polling every 0.2 s).
    waited = (retry.enqueued_at - observed).total_seconds()
    assert 0.5 * job.backoff_base - 0.3 <= waited <= job.backoff_base, waited
    assert retry.started_at >= retry.enqueued_at


def _assert_resumed_without_duplicates(retry) -> int:
    table = jobs_for_tests.OUTPUT_TABLE
    resumed = retry.result["resumed_from"]
    assert resumed >= 7
    with connection.cursor() as c:
        c.execute(f"SELECT count(*), count(DISTINCT item), min(item), max(item) FROM {table}")
        assert c.fetchone() == (TOTAL, TOTAL, 1, TOTAL)
        c.execute(f"SELECT count(*) FROM {table} WHERE run_id = %s", [retry.pk])
        assert c.fetchone()[0] == retry.result["written"] == TOTAL - resumed + 1
        c.execute(f"DROP TABLE {table}")
    return resumed


@pytest.fixture
def reader_job():
    from scheduling import registry
    from tests.reliability import busy_jobs

    job = next(j for j in busy_jobs.JOBS if j.slug == "rel-reader")
    registry.register(job)
    yield job
    registry.unregister(job.slug)


@pytest.mark.django_db(transaction=True)
def test_a_database_restart_under_a_job_fails_the_run_at_once_with_its_cause_and_the_retry_follows_the_backoff(
    reader_job, postgres_only, tmp_path,  # noqa: F811
):
    """The job is reading outside any transaction when its session is terminated: nothing
    drops the broken connection but the runner, which must still record the failure."""
    district = f.DistrictFactory(name="Restart Ridge")
    env = cluster_env(Q_RETRY="700", SCHEDULING_EXTRA_JOB_MODULES="tests.reliability.busy_jobs", REL_READ_SECONDS="60",
                      SKILLCORE_TEST_SCHEDULER_TICK="2")
    log_path = tmp_path / "qcluster.log"
    with qcluster(env, log_path):
        run = services.run_now(job_slug="rel-reader", district=district, acting_user=None)
        wait(lambda: JobRun.objects.filter(pk=run.pk, status="running").exists(), 40, "the run to start")
        time.sleep(1)
        killed = terminate_test_database_backends()
        started = time.monotonic()
        wait(lambda: JobRun.objects.filter(pk=run.pk, status="failed").exists(), 15, "the run's failure")
        ended_after, observed = time.monotonic() - started, timezone.now()
        retry = wait(lambda: JobRun.objects.filter(retry_of=run.pk, status__in=["succeeded", "failed"]).first(),
                     60, "the retry to finish")
    assert killed >= 1
    _assert_failed_with_cause_then_retried(run, retry, reader_job, log_path.read_text(), observed=observed)
    assert run.deadline - run.finished_at > dt.timedelta(minutes=9)  # long before the reaper could act
    print(f"run #{run.pk} failed {ended_after:.1f} s after the restart: {run.error!r}; retry #{retry.pk} {retry.status}")


@pytest.mark.django_db(transaction=True)
def test_a_longer_database_outage_mid_run_fails_the_run_as_soon_as_the_database_is_back(
    test_jobs, postgres_only, tmp_path,  # noqa: F811
):
    outage = 8.0
    district, env = _start_batches(tmp_path, "Outage Basin")
    log_path = tmp_path / "qcluster.log"
    with qcluster(env, log_path):
        run = services.run_now(job_slug="t-batches", district=district, acting_user=None)
        wait(lambda: JobRun.objects.filter(pk=run.pk, status="running", checkpoint__next__gte=7).exists(), 40, "the first batches")
        allow_connections(False)
        try:
            terminate_test_database_backends()
            time.sleep(outage)
            still_running = JobRun.objects.filter(pk=run.pk, status="running").exists()
        finally:
            allow_connections(True)
        back = time.monotonic()
        wait(lambda: JobRun.objects.filter(pk=run.pk, status="failed").exists(), 30, "the run's failure after the outage")
        ended_after, observed = time.monotonic() - back, timezone.now()
        retry = wait(lambda: JobRun.objects.filter(retry_of=run.pk, status__in=["succeeded", "failed"]).first(),
                     60, "the retry to finish")
    assert still_running  # nothing could be written while the database refused connections
    _assert_failed_with_cause_then_retried(run, retry, test_jobs["t-batches"], log_path.read_text(), observed=observed)
    resumed = _assert_resumed_without_duplicates(retry)
    print(f"run #{run.pk} failed {ended_after:.1f} s after an {outage:.0f} s outage ended; "
          f"retry #{retry.pk} resumed from {resumed}")


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
        SKILLCORE_TEST_SCHEDULER_TICK="2",
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
