"""Two qclusters share one Redis broker (their own Redis database number) and the
PostgreSQL database, over a simulated week of slots: every slot is run exactly once.

Each qcluster's scheduler passes only every ~30 s (django-q2's guard loop), too slow for a
week of firings in a test. So each "day" the test sets every schedule's q Schedule next_run
into the past (a slot of its own) and runs TWO scheduler passes concurrently from this
process (two threads, two database connections) against the same Redis broker, while the
two clusters' own schedulers keep passing on their 30 s cadence. The tasks those passes
create are consumed by the two clusters' workers (2 each). What must hold: django-q2's row
lock lets one pass fire a row, the engine's (job, district, slot) claim lets one delivery
run it, and nothing is lost: one JobRun and one execution per district and day.
"""
from __future__ import annotations

import datetime as dt
import threading

import pytest
import redis
import time_machine
from django.db import connection
from django.utils import timezone

from scheduling import registry, services
from scheduling.models import JobRun, JobSchedule
from tests import factories as f
from tests.reliability import jobs_for_tests
from tests.scheduling.conftest import postgres_only  # noqa: F401
from tests.support.qcluster import cluster_env, qcluster, wait

REDIS_URL = "redis://127.0.0.1:6379/7"  # this test's own database number
DISTRICTS = 6
DAYS = 7


@pytest.fixture(autouse=True)
def _hours_from_any_slot():
    """The test, and the clusters it starts (tests/support/qcluster.py), run from an instant
    hours from rel-daily's 02:00 in every district's zone (02:00Z London, 07:00Z New York,
    10:00Z Los Angeles, 13:00Z Auckland, 15:30Z Adelaide, 20:30Z Kolkata in March). At the
    real clock a slot falling due mid-test was fired by a cluster's own pass, one run more."""
    with time_machine.travel(dt.datetime(2026, 3, 3, 4, 30, tzinfo=dt.UTC), tick=True):
        yield


@pytest.fixture
def rel_jobs(monkeypatch):
    for job in jobs_for_tests.JOBS:
        registry.register(job)
    monkeypatch.setattr(registry, "all_jobs", lambda: list(jobs_for_tests.JOBS))
    yield
    for job in jobs_for_tests.JOBS:
        registry.unregister(job.slug)


@pytest.fixture
def redis_broker(monkeypatch):
    """django-q2's Redis broker on REDIS_URL for the passes run in this process."""
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf

    client = redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}")
    client.flushdb()
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    monkeypatch.setattr(Conf, "ORM", None)
    yield Redis(list_key=Conf.PREFIX)
    client.flushdb()


def _pass(broker, errors: list):
    from django.db import connections
    from django_q.scheduler import scheduler

    try:
        scheduler(broker)
    except Exception as exc:  # reported by the test, never swallowed
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_two_clusters_on_one_redis_broker_run_each_slot_of_a_week_once(rel_jobs, postgres_only, redis_broker, tmp_path):  # noqa: F811
    table = jobs_for_tests.OUTPUT_TABLE
    with connection.cursor() as c:
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (district_id bigint, slot timestamptz, pid integer)")
    districts = [f.DistrictFactory(name=f"Twin {i}", time_zone=tz)
                 for i, tz in enumerate(["America/New_York", "Australia/Adelaide", "Asia/Kolkata",
                                         "Europe/London", "America/Los_Angeles", "Pacific/Auckland"][:DISTRICTS])]
    services.sync_schedules()
    q_ids = list(JobSchedule.objects.filter(job="rel-daily").values_list("q_schedule_id", flat=True))
    assert len(q_ids) == DISTRICTS
    env = cluster_env(REDIS_URL=REDIS_URL, Q_WORKERS="2", SCHEDULING_EXTRA_JOB_MODULES="tests.reliability.jobs_for_tests")
    from django_q.models import Schedule, Task
    from django_q.tasks import async_task

    errors: list = []
    with qcluster(env, tmp_path / "a.log"), qcluster(env, tmp_path / "b.log"):
        start = timezone.now().replace(microsecond=0)
        for day in range(DAYS):
            # This "day"'s slot: overdue, distinct from the other days' and on time (well
            # within SCHEDULING_OVERDUE_GRACE), so it runs as a scheduled run.
            slot = start - dt.timedelta(seconds=10 * (DAYS - day))
            Schedule.objects.filter(pk__in=q_ids).update(next_run=slot)
            threads = [threading.Thread(target=_pass, args=(redis_broker, errors)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            # And a redelivery of one district's slot, as a broker would after a lost ack.
            async_task("scheduling.tasks.fire", job="rel-daily", district=districts[day % DISTRICTS].pk,
                       tz=districts[day % DISTRICTS].time_zone, scheduled_for=slot.isoformat(), broker=redis_broker)
            want = DISTRICTS * (day + 1)
            try:
                wait(lambda want=want: JobRun.objects.filter(job="rel-daily", status="succeeded").count() >= want, 40, f"day {day + 1}'s runs")
            except AssertionError:
                print("runs", JobRun.objects.filter(job="rel-daily").count(), "errors", errors, "queue",
                      redis.from_url(REDIS_URL).llen("django_q:skillcore:q"), "threads alive", [t.is_alive() for t in threads],
                      list(Schedule.objects.filter(pk__in=q_ids).values_list("next_run", "task")), "slot", slot)
                print(list(Task.objects.order_by("-stopped").values_list("kwargs", "result", "success")[:8]))
                raise
            wait(lambda: Schedule.objects.filter(pk__in=q_ids, next_run__lt=timezone.now()).count() == 0, 10, "re-armed schedules")
        wait(lambda: Task.objects.filter(func="scheduling.tasks.fire").count() >= DISTRICTS * DAYS + DAYS, 30,
             "every delivery's result")
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert not errors, errors
    runs = list(JobRun.objects.filter(job="rel-daily"))
    assert len(runs) == DISTRICTS * DAYS, logs[-3000:]
    assert {r.status for r in runs} == {"succeeded"}
    assert len({(r.district_id, r.slot) for r in runs}) == DISTRICTS * DAYS
    with connection.cursor() as c:
        c.execute(f"SELECT count(*), count(DISTINCT (district_id, slot)), count(DISTINCT pid) FROM {table}")
        executions, distinct_slots, processes = c.fetchone()
        c.execute(f"DROP TABLE {table}")
    assert executions == distinct_slots == DISTRICTS * DAYS  # each slot executed once, none lost
    assert processes >= 2  # the work was shared between the clusters' workers
    fired = [t.result for t in Task.objects.filter(func="scheduling.tasks.fire")]
    assert sum(1 for r in fired if r["claimed"]) == DISTRICTS * DAYS
    assert sum(1 for r in fired if not r["claimed"]) >= DAYS  # the redeliveries found their slot taken
    workers = {r.worker.rsplit(":", 1)[1] for r in runs}
    assert len(workers) == processes
    print(f"{executions} slots over {DAYS} days x {DISTRICTS} districts, run by {processes} worker processes")
