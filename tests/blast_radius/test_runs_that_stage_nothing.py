"""The settle judges a run without counting its held messages when the run's staging was
never asked to hold one (scheduling/blast_radius.py ``judge``'s ``staged``), except a retry,
which answers for what its slot's earlier attempts left held. The real runner and outbox."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from notifications.models import Category, Notification, Status
from notifications.services import NotificationRequest, notifications_enqueue
from scheduling import registry, runner, services
from scheduling.models import JobRun
from scheduling.registry import Job
from skillcore import held_messages
from tests import factories as f

pytestmark = pytest.mark.django_db
QUIET = "blast-quiet-retry"
SLOT = dt.datetime(2026, 10, 6, 13, 0, tzinfo=dt.UTC)  # 09:00 in New York: inside the family window


@pytest.fixture(autouse=True)
def quiet_job():
    # A body that sends nothing: its retry writes no message of its own.
    registry.register(Job(slug=QUIET, title="Quiet (test)", default_cron=None, why="test", entry=lambda ctx: {},
                          max_attempts=3, timeout=60))
    yield
    registry.unregister(QUIET)


def test_staging_records_whether_a_store_asked_to_hold():
    with held_messages.staging(7) as untouched:
        pass
    with held_messages.staging(8) as asked:
        assert held_messages.staging_run() == 8
    assert (untouched.asked, asked.asked, held_messages.staging_run()) == (False, True, None)


def test_a_retry_that_writes_nothing_still_takes_over_and_releases_its_lost_attempts_messages(district, school):
    guardians = [f.UserFactory(email=f"g{i}@example.org") for i in range(3)]
    students = [f.StudentFactory(school=school) for _ in guardians]
    for g, s in zip(guardians, students):
        f.GuardianLinkFactory(guardian=g, student=s)
    first = JobRun.objects.create(job=QUIET, district=district, trigger="schedule", slot=SLOT, status="running",
                                  started_at=SLOT, deadline=SLOT + dt.timedelta(minutes=5), enqueued_at=SLOT)
    # The first attempt's worker wrote its messages held, then died before its settle.
    with held_messages.staging(first.pk):
        notifications_enqueue([NotificationRequest(
            recipient_id=g.pk, category=Category.ATTENDANCE_INTERVENTION, channel="email",
            template="attendance-intervention", context={}, dedupe_key=f"quiet:{g.pk}", student_id=s.pk)
            for g, s in zip(guardians, students)], job_run_id=first.pk, district_id=district.pk)
    assert Notification.objects.filter(job_run_id=first.pk, status=Status.HELD).count() == 3

    later = SLOT + dt.timedelta(minutes=10)
    with time_machine.travel(later, tick=False):
        retry = services.recover_lost_run(run=first, now=later, enqueue=False)
        done = runner.execute(retry.pk)

    done.refresh_from_db()
    assert (done.status, done.outbound) == (JobRun.Status.SUCCEEDED, {"families": 3, "staff": 0})
    assert set(Notification.objects.values_list("job_run_id", "status")) == {(retry.pk, Status.PENDING)}


def test_a_run_that_writes_nothing_ends_with_zero_counts(district):
    run = JobRun.objects.create(job=QUIET, district=district, trigger="manual", slot=SLOT, status="queued", enqueued_at=SLOT)
    with time_machine.travel(SLOT, tick=False):
        done = runner.execute(run.pk)
    done.refresh_from_db()
    assert (done.status, done.outbound) == (JobRun.Status.SUCCEEDED, {"families": 0, "staff": 0})
