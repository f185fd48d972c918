"""Redis, the task queue, is down when staff press "Run now" or "Retry" (a real Redis client
pointed at a closed port, 127.0.0.1:6390), then comes back (the real Redis on 6379, this
test's own database number 11). The person gets a clear message, never a 500; the run is
saved as queued without a task id; the scheduler pass's sweeper sends it exactly once when
the queue is back, and a second delivery of the same task does nothing."""
from __future__ import annotations

import datetime as dt
import pydoc
import socket

import pytest
import redis
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from scheduling import scheduler, services, tasks
from scheduling.models import JobRun, JobSchedule
from tests import factories as f
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import only_test_jobs, test_jobs  # noqa: F401

REDIS_DOWN = "redis://127.0.0.1:6390/11"  # nothing listens there
REDIS_BACK = "redis://127.0.0.1:6379/11"  # this test's own database number


@pytest.fixture(autouse=True)
def _an_afternoon():
    """Each test starts at a fixed afternoon in New York (11:00 EST), hours from any test job's
    slot (01:00-05:00): passes up to 20 minutes on must fire only what the test queued, never a
    daily schedule that happened to fall due at the hour CI ran."""
    with time_machine.travel(dt.datetime(2026, 3, 3, 16, 0, tzinfo=dt.UTC), tick=True):
        yield


@pytest.fixture
def queue(monkeypatch):
    """django-q2's Redis broker, at an address the test moves: ``queue.point(url)``."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 6390)) != 0, "something listens on 6390: it cannot play a dead Redis"
    client = redis.from_url(REDIS_BACK)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not reachable at {REDIS_BACK}")
    client.flushdb()
    monkeypatch.setattr(Conf, "ORM", None)

    class Queue:
        @staticmethod
        def point(url: str) -> None:
            monkeypatch.setattr(Conf, "REDIS", url)

        @staticmethod
        def size() -> int:
            return get_broker().queue_size()

        @staticmethod
        def work() -> list:
            """Run every queued task, as a worker would; returns their results."""
            from django_q.signing import SignedPackage

            broker, done = get_broker(), []
            while (raw := client.lpop(broker.list_key)) is not None:
                task = SignedPackage.loads(raw.decode())
                func = task["func"] if callable(task["func"]) else pydoc.locate(task["func"])
                done.append(func(*task["args"], **task["kwargs"]))
            return done

    Queue.point(REDIS_DOWN)
    yield Queue
    client.flushdb()


@pytest.fixture
def setup(only_test_jobs, system_admin, client):  # noqa: F811
    district = f.DistrictFactory(name="Redisless")
    services.sync_schedules()
    client.force_login(system_admin)
    return district, JobSchedule.objects.get(job="t-daily", district=district), client


def _messages(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def _pass_later(seconds: float) -> None:
    """One real scheduler pass (heartbeat, reaper, sweeper, django-q2's pass) ``seconds`` on."""
    from django_q.brokers import get_broker

    with time_machine.travel(timezone.now() + dt.timedelta(seconds=seconds), tick=False):
        scheduler.scheduler_pass(get_broker())


@pytest.mark.django_db(transaction=True)
def test_run_now_with_redis_down_says_so_and_the_sweeper_sends_the_run_once_when_redis_is_back(setup, queue):
    district, schedule, client = setup
    response = client.post(reverse("admin:scheduled_jobs_run_now", args=[schedule.pk]))
    run = JobRun.objects.get(job="t-daily")
    assert response.status_code == 302 and response["Location"] == reverse("admin:scheduled_jobs_run", args=[run.pk])
    [(level, text)] = _messages(response)
    assert level == "warning" and "task queue is unreachable" in text and f"run #{run.pk}" in text, text
    assert (run.status, run.task_id, run.trigger) == ("queued", "", "manual")
    # Within the grace: left alone. Past it, Redis still down: nothing sent, nothing lost.
    assert services.enqueue_stranded_runs(now=timezone.now() + dt.timedelta(seconds=30)) == 0
    assert services.enqueue_stranded_runs(now=timezone.now() + dt.timedelta(seconds=90)) == 0
    run.refresh_from_db()
    assert run.task_id == ""
    # Redis is back: the next scheduler pass sends it, once.
    queue.point(REDIS_BACK)
    _pass_later(90)
    run.refresh_from_db()
    assert run.task_id and queue.size() == 1
    _pass_later(120)
    assert queue.size() == 1
    [result] = queue.work()
    run.refresh_from_db()
    assert result == {"run": run.pk, "status": "succeeded"} and run.status == "succeeded"
    # A duplicate delivery of the same task is harmless: the claim finds the run finished.
    assert tasks.execute_run(run.pk) == {"run": run.pk, "status": None}
    assert [c for c in jobs_for_tests.CALLS if c[0] == "t-daily"] == [("t-daily", run.slot, district.pk)]


@pytest.mark.django_db(transaction=True)
def test_retry_with_redis_down_says_so_and_the_retry_is_sent_when_redis_is_back(setup, queue):
    district, schedule, client = setup
    now = timezone.now()
    failed = JobRun.objects.create(job="t-daily", district=district, trigger="schedule", slot=now, status="failed",
                                   started_at=now, finished_at=now, error="boom")
    response = client.post(reverse("admin:scheduled_jobs_retry", args=[failed.pk]))
    retry = JobRun.objects.get(retry_of=failed)
    assert response.status_code == 302 and response["Location"] == reverse("admin:scheduled_jobs_run", args=[retry.pk])
    [(level, text)] = _messages(response)
    assert level == "warning" and "task queue is unreachable" in text, text
    assert (retry.status, retry.task_id, retry.attempt) == ("queued", "", 2)
    queue.point(REDIS_BACK)
    _pass_later(90)
    assert queue.size() == 1
    [result] = queue.work()
    assert result == {"run": retry.pk, "status": "succeeded"}


@pytest.mark.django_db(transaction=True)
def test_an_automatic_retry_waiting_for_its_schedule_is_sent_by_that_schedule_only(setup, queue, test_jobs):  # noqa: F811
    district, _, _ = setup
    now = timezone.now()
    failed = JobRun.objects.create(job="t-flaky", district=district, trigger="schedule", slot=now, status="failed",
                                   started_at=now, finished_at=now, error="boom")
    retry = services.after_failure(run=failed, job=test_jobs["t-flaky"], now=now)
    assert retry.task_id == "" and retry.enqueued_at > now
    # Due while Redis is down: django-q2's pass (one transaction) rolls back, the one-off
    # Schedule stays, and the sweeper leaves the run to it.
    from django_q.models import Schedule

    _pass_later(600)
    retry.refresh_from_db()
    assert (retry.status, retry.task_id) == ("queued", "")
    assert Schedule.objects.filter(name=f"skillcore:retry:{retry.pk}").exists()
    queue.point(REDIS_BACK)
    # Long past its due time and the grace (a scheduler was down): django-q2's pass fires
    # the one-off Schedule; the sweeper, before it, left the run to that Schedule.
    _pass_later(600)
    retry.refresh_from_db()
    assert queue.size() == 1 and retry.task_id  # the fired task's id, recorded as django-q2 deleted the row
    _pass_later(700)
    assert queue.size() == 1
    [result] = queue.work()
    assert result == {"run": retry.pk, "status": "succeeded"}
