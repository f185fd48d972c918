"""The settle judges a run without counting its held messages when its staging was never
asked to hold one (scheduling/blast_radius.py ``judge``'s ``staged``). The guard's verdict
must be the one counting gave: cases the change could have got wrong. The real runner and
outbox; the district's limit is a cap of 2 messages, so 3 are over it."""
from __future__ import annotations

import contextvars
import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection, transaction

from notifications.models import Category, Notification, Status
from notifications.services import NotificationRequest, notifications_enqueue
from scheduling import registry, runner, services
from scheduling.models import BlastRadiusLimit, JobRun, RunHold
from scheduling.registry import Job
from skillcore import held_messages
from tests import factories as f

pytestmark = pytest.mark.django_db
SLOT = dt.datetime(2026, 10, 6, 13, 0, tzinfo=dt.UTC)  # 09:00 in New York: inside the family window
FAMILIES: list[tuple] = []  # (guardian, student) pairs the jobs below write to


def enqueue(run_id: int, district_id: int, prefix: str) -> None:
    notifications_enqueue([NotificationRequest(
        recipient_id=g.pk, category=Category.ATTENDANCE_INTERVENTION, channel="email",
        template="attendance-intervention", context={}, dedupe_key=f"{prefix}:{g.pk}", student_id=s.pk)
        for g, s in FAMILIES], job_run_id=run_id, district_id=district_id)


def quiet(ctx) -> dict:
    return {}


def rolled_back(ctx) -> dict:
    """Writes its messages inside a block it then rolls back (a validation that failed)."""
    try:
        with transaction.atomic():
            enqueue(ctx.run.pk, ctx.district.pk, f"rolled-back-{ctx.run.pk}")
            raise ValueError("the import did not validate")
    except ValueError:
        pass
    return {"written": 0}


def _enqueue_and_close(run_id: int, district_id: int, prefix: str) -> None:
    try:
        enqueue(run_id, district_id, prefix)
    finally:
        connection.close()  # the thread's own connection


def from_a_thread(ctx) -> dict:
    """Writes its messages from a thread started with a copy of the job's context (its own
    connection: the rows are committed before the settle reads them)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run,
                              args=(_enqueue_and_close, ctx.run.pk, ctx.district.pk, f"thread-{ctx.run.pk}"))
    thread.start()
    thread.join(30)
    return {"written": len(FAMILIES)}


JOBS = [Job(slug=f"blast-fleet-{entry.__name__.replace('_', '-')}", title=entry.__name__, default_cron=None, why="test",
            entry=entry, max_attempts=3, timeout=60) for entry in (quiet, rolled_back, from_a_thread)]
QUIET, ROLLED_BACK, FROM_A_THREAD = (j.slug for j in JOBS)


@pytest.fixture(autouse=True)
def jobs_and_families(district, school):
    for job in JOBS:
        registry.register(job)
    guardians = [f.UserFactory(email=f"g{i}@example.org") for i in range(3)]
    students = [f.StudentFactory(school=school) for _ in guardians]
    for g, s in zip(guardians, students, strict=True):
        f.GuardianLinkFactory(guardian=g, student=s)
    FAMILIES[:] = list(zip(guardians, students, strict=True))
    BlastRadiusLimit.objects.create(district=district, job="", multiplier=5, floor=1, cap=2)
    yield
    FAMILIES.clear()
    for job in JOBS:
        registry.unregister(job.slug)


def run(slug, district) -> JobRun:
    queued = JobRun.objects.create(job=slug, district=district, trigger="manual", slot=SLOT, status="queued",
                                   enqueued_at=SLOT)
    with time_machine.travel(SLOT, tick=False):
        runner.execute(queued.pk)
    queued.refresh_from_db()
    return queued


def test_a_retry_that_stages_nothing_still_holds_what_its_lost_attempt_staged_over_the_limit(district):
    first = JobRun.objects.create(job=QUIET, district=district, trigger="schedule", slot=SLOT, status="running",
                                  started_at=SLOT, deadline=SLOT + dt.timedelta(minutes=5), enqueued_at=SLOT)
    with held_messages.staging(first.pk):  # its worker wrote 3 messages held, then died
        enqueue(first.pk, district.pk, "lost")
    later = SLOT + dt.timedelta(minutes=10)
    with time_machine.travel(later, tick=False):
        retry = services.recover_lost_run(run=first, now=later, enqueue=False)
        runner.execute(retry.pk)
    retry.refresh_from_db()
    assert (retry.status, retry.outbound) == (JobRun.Status.HELD, {"families": 3, "staff": 0})
    assert RunHold.objects.get(run=retry).counts == {"families": 3, "staff": 0}
    assert set(Notification.objects.values_list("job_run_id", "status")) == {(retry.pk, Status.HELD)}


def test_messages_written_in_a_rolled_back_block_leave_nothing_to_hold(district):
    done = run(ROLLED_BACK, district)
    assert (done.status, done.outbound) == (JobRun.Status.SUCCEEDED, {"families": 0, "staff": 0})
    assert not Notification.objects.exists()
    assert not RunHold.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a second connection writing while the test's runs: SQLite locks")
@pytest.mark.django_db(transaction=True)
def test_messages_written_from_the_jobs_own_thread_are_counted_and_held(district):
    done = run(FROM_A_THREAD, district)
    assert (done.status, done.outbound) == (JobRun.Status.HELD, {"families": 3, "staff": 0})
    assert set(Notification.objects.values_list("job_run_id", "status")) == {(done.pk, Status.HELD)}

