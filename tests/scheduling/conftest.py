"""Scheduling test fixtures: test jobs, a queue drainer standing in for a worker, and the
real django-q2 scheduler pass."""
from __future__ import annotations

import pydoc

import pytest
from django.db import connection

from scheduling import registry
from tests import factories as f
from tests.scheduling import jobs_for_tests


@pytest.fixture
def test_jobs():
    """Register the test jobs for one test (and only them beside the 13 real ones)."""
    for job in jobs_for_tests.JOBS:
        registry.register(job)
    jobs_for_tests.CALLS.clear()
    jobs_for_tests.FAIL_TIMES.clear()
    yield {j.slug: j for j in jobs_for_tests.JOBS}
    for job in jobs_for_tests.JOBS:
        registry.unregister(job.slug)
    jobs_for_tests.CALLS.clear()


@pytest.fixture
def only_test_jobs(test_jobs, monkeypatch):
    """Hide the 13 real jobs so sync creates only the test jobs' schedules."""
    monkeypatch.setattr(registry, "all_jobs", lambda: sorted(test_jobs.values(), key=lambda j: j.slug))
    return test_jobs


def drain_queue() -> int:
    """Execute every task waiting in the ORM broker's queue, as a worker would."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    done = 0
    while True:
        rows = list(OrmQ.objects.order_by("id")[:50])
        if not rows:
            return done
        for row in rows:
            task = SignedPackage.loads(row.payload)
            OrmQ.objects.filter(pk=row.pk).delete()
            func = task["func"] if callable(task["func"]) else pydoc.locate(task["func"])
            func(*task["args"], **task["kwargs"])
            done += 1


def scheduler_pass() -> None:
    """One real firing pass (the engine's batch firing, then django-q2's own loop: what the
    sentinel runs after its bookkeeping, scheduling.scheduler.fire), then the worker side."""
    from django_q.brokers import get_broker

    from scheduling.scheduler import fire

    fire(get_broker())
    drain_queue()


@pytest.fixture
def new_york(db):
    return f.DistrictFactory(name="Hudson Valley", time_zone="America/New_York")


@pytest.fixture
def adelaide(db):
    return f.DistrictFactory(name="Adelaide Hills", time_zone="Australia/Adelaide")


@pytest.fixture
def kolkata(db):
    return f.DistrictFactory(name="Kolkata International", time_zone="Asia/Kolkata")


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (row locks across connections, a qcluster process)")


@pytest.fixture(autouse=True)
def keep_test_transaction(request, monkeypatch):
    """django-q2's pass starts with close_old_connections(), which closes a connection in
    a transaction: that would end pytest-django's per-test transaction. Tests that use the
    real database transactions (transaction=True, and the qcluster test) keep it."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return
    import django_q.scheduler

    monkeypatch.setattr(django_q.scheduler, "close_old_django_connections", lambda: None)
