"""Exactly-once effects, for every registered job, on a seeded district.

For each job of ``scheduling.registry.all_jobs()`` (a job added later is covered without
an edit here; ``SETUP`` only adds the data a job needs to have work to do):

1. Clean run of slot S through the real runner: it succeeds and, for a job not listed in
   ``WRITES_NOTHING``, writes something to the effect tables (snapshots.effect_tables: every
   table but the run bookkeeping).
2. S again as a manual re-run (``jobs run --as-of S``) an hour later, then as an engine
   retry of the first run two hours later: the effect tables are identical, ids included.
3. The next slot after S: no message is sent twice (same recipient, channel, template and
   content), no student has two open interventions of one type.
4. Fault injection: for k = 1..K (K = the commit points the clean run went through, see
   tests/support/faults.py) attempt 1 fails right after commit point k; the engine's retry
   (``services.after_failure`` made it, ``runner.execute`` runs it, from the checkpoint)
   succeeds, and the effect tables equal the clean run's (new rows' ids canonicalised, see
   snapshots.canonical).

Each scenario runs in a savepoint rolled back at its end, so every scenario starts from the
same seeded district; the clock stands still at S + 2 minutes for the clean and faulted runs
(rows stamped "now" compare equal), the re-runs happen later on purpose.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable

import pytest
import time_machine
from django.db import transaction

from scheduling import cron, registry, runner
from scheduling.models import JobRun
from skillcore.seed import seed_district
from students import rollover
from tests import factories as f
from tests.guarantees import snapshots as snap
from tests.jobs.slot_runs import run_slot
from tests.support.faults import InjectedFault, commit_points

pytestmark = pytest.mark.django_db

AS_OF = dt.date(2026, 11, 20)  # a Friday in the seeded session: attendance, grades, work due
STUDENTS = 60  # 1-3 schools: every job has rows to work on, the file stays fast
ZONE = "America/New_York"
CLEAN_AT = dt.timedelta(minutes=2)


@dataclasses.dataclass
class World:
    district: object
    slot: dt.datetime | None = None  # None: the job's next cron slot after AS_OF's midnight
    monkeypatch: pytest.MonkeyPatch | None = None


def local(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=cron.zone(ZONE))


# -- per-job setup: what a job needs beyond the seeded district to have work to do ----------
def _archival_data(world: World) -> None:
    """Rows past every archival cutoff (as of 2026-12-01): grades and attendance 8 years old,
    a closed intervention with its task 4 years old, old chat messages, old sent outbox rows."""
    from notifications.models import Message, Notification

    student = f.StudentFactory(school=world.district.schools.first(), enrollment_date=dt.date(2017, 8, 1),
                               birth_date=dt.date(2008, 1, 1))
    section = f.SectionFactory(school=student.school, session=world.district.sessions.get(is_current=True))
    old = local(dt.date(2018, 10, 1), 10)
    for i in range(3):
        f.GradeFactory(student=student, assignment=f.AssignmentFactory(section=section), posted_at=old + dt.timedelta(days=i))
        f.AttendanceRecordFactory(student=student, date=dt.date(2018, 10, 1 + i), status="absent-excused")
    closed = f.InterventionFactory(student=student, status="closed", opened_at=local(dt.date(2021, 1, 4)),
                                   closed_at=local(dt.date(2022, 1, 4)), closed_reason="improved")
    counselor = f.StaffFactory(roles=["counselor"], schools=[student.school])
    f.CounselorTaskFactory(student=student, intervention=closed, counselor=counselor, created_at=local(dt.date(2021, 1, 5)))
    guardian = f.GuardianLinkFactory(student=student).guardian
    Message.objects.create(sender=counselor, recipient=guardian, student=student, body="Old note", sent_at=local(dt.date(2023, 5, 1)))
    for i in range(2):
        sent = local(dt.date(2026, 6, 1 + i))
        Notification.objects.create(recipient=guardian, channel="email", category="grade-digest", template="t",
                                    dedupe_key=f"harness-old-{i}", status="sent", send_after=sent, sent_at=sent,
                                    district=world.district)


def _emergency_group(world: World) -> None:
    from students.models import StaffProfile

    staff = [p.user for p in StaffProfile.objects.filter(schools__district=world.district).order_by("pk")[:3]]
    world.district.emergency_test_group.set(staff)


def _approved_rollover(world: World) -> None:
    admins = [f.UserFactory(username=f"harness-admin-{i}", is_staff=True, is_superuser=True, roles=["system-admin"])
              for i in range(2)]
    target = rollover.validate(district_id=world.district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                               end=dt.date(2028, 6, 16))
    run_at = local(dt.date(2027, 6, 25), 18)
    with time_machine.travel(run_at - dt.timedelta(days=3), tick=False):
        req = rollover.request_create(target=target, requested_by=admins[0], run_at=run_at, now=run_at - dt.timedelta(days=3))
        rollover.request_approve(request=req, approver=admins[1])
    world.slot = run_at


def _inactive_users(world: World) -> None:
    """A teacher gone quiet three years ago and a student who transferred out in 2023."""
    from students.models import StaffProfile, Student

    teacher = StaffProfile.objects.filter(schools__district=world.district, user__groups__name="teacher").order_by("pk").first()
    type(teacher.user).objects.filter(pk=teacher.user_id).update(last_login=local(dt.date(2023, 9, 1)))
    senior = Student.objects.filter(school__district=world.district).order_by("-grade_level", "pk").values("pk")[:1]
    Student.objects.filter(pk=senior).update(
        enrollment_date=dt.date(2020, 8, 31), transferred_on=dt.date(2023, 6, 1), exit_date=dt.date(2023, 6, 1), is_active=False)


def _old_events(world: World) -> None:
    from skillcore.models import EventBusEntry, StoredEvent

    for i in range(3):
        EventBusEntry.objects.create(stream="harness:old", event_type="harness.old", payload={"i": i},
                                     published_at=local(dt.date(2026, 9, 1 + i)))
        StoredEvent.objects.create(event_type="harness.old", payload={"i": i}, occurred_at=local(dt.date(2018, 1, 1 + i)))


def _health_inputs(world: World) -> None:
    from scheduling.models import RequestMetric

    f.UserFactory(username="harness-it", is_staff=True, is_superuser=True, roles=["system-admin"])
    for hour in (local(dt.date(2026, 11, 3), 9), local(dt.date(2025, 6, 1), 9)):  # one in the month, one past 400 days
        RequestMetric.objects.create(endpoint="admin:index", hour=hour.astimezone(dt.UTC), requests=10, errors=1,
                                     total_ms=500.0, max_ms=90.0)


def _small_batches(world: World) -> None:
    """Batches of 25 students, so the run has several commit points to fail after."""
    world.monkeypatch.setattr("scheduling.jobs.performance_trends.BATCH", 25)


SETUP: dict[str, Callable[[World], None]] = {
    "data-archival": _archival_data,
    "emergency-notification-test": _emergency_group,
    "end-of-year-rollover": _approved_rollover,
    "inactive-user-cleanup": _inactive_users,
    "performance-trends": _small_batches,
    "stream-cleanup": _old_events,
    "system-health-summary": _health_inputs,
}
# The evening slot of missing-assignment-alerts sends the most kinds of reminder.
SLOT_HOUR = {"missing-assignment-alerts": 19}
# Jobs whose next slot sends the same message again by design (the check of step 3 does not
# apply to them), and why.
RESENT_BY_DESIGN: dict[str, str] = {
    "emergency-notification-test": "one drill a quarter: the next quarter's test message is a new drill",
}
# Jobs that legitimately write nothing on this seed, and why (none today: each has SETUP or
# seeded rows to work on). A job listed here still goes through every scenario.
WRITES_NOTHING: dict[str, str] = {}


@pytest.fixture(autouse=True)
def archive_storage(settings, tmp_path):
    """Archive files (data-archival) go to the test's own directory, never MEDIA_ROOT."""
    settings.STORAGES = {**settings.STORAGES, "archive": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "archive"), "allow_overwrite": True}}}


@pytest.fixture
def sequences():
    saved = snap.sequences_save()
    yield
    snap.sequences_restore(saved)


@contextlib.contextmanager
def scenario():
    """A savepoint rolled back at the end: every scenario starts from the same district."""
    with transaction.atomic():
        try:
            snap.sequences_reset()
            yield
        finally:
            transaction.set_rollback(True)


def slot_of(job: registry.Job, world: World) -> dt.datetime:
    if world.slot is not None:
        return world.slot
    if job.default_cron is None:
        return local(AS_OF, 12)
    tz = "UTC" if job.is_global else ZONE
    after = local(AS_OF, SLOT_HOUR.get(job.slug, 0)) - dt.timedelta(minutes=1)
    return cron.next_slot(job.default_cron, tz, after)


def next_slot_of(job: registry.Job, slot: dt.datetime) -> dt.datetime:
    if job.default_cron is None:
        return slot + dt.timedelta(days=1)
    return cron.next_slot(job.default_cron, "UTC" if job.is_global else ZONE, slot)


def run(job, world, slot, *, at, **kw) -> JobRun:
    with time_machine.travel(at, tick=False):
        return run_slot(job.slug, None if job.is_global else world.district, slot, **kw)


def assert_same(expected: dict, actual: dict, what: str) -> None:
    diff = snap.differences(expected, actual)
    assert not diff, f"{what} changed the effect tables:\n" + "\n".join(diff)


def scenario_run_ids() -> set[int]:
    return set(JobRun.objects.filter(id__gte=snap.sequence_bases()["scheduling_jobrun"]).values_list("id", flat=True))


@pytest.mark.parametrize("job", [j for j in registry.all_jobs() if j.has_body], ids=lambda j: j.slug)
def test_every_slot_has_its_effect_exactly_once(job, sequences, monkeypatch):
    result = seed_district(name="Harness Unified", students=STUDENTS, seed=12, time_zone=ZONE, as_of=AS_OF)
    world = World(district=result.district, monkeypatch=monkeypatch)
    SETUP.get(job.slug, lambda w: None)(world)
    assert_exactly_once(job, world)


def assert_exactly_once(job: registry.Job, world: World) -> None:
    slot = slot_of(job, world)
    baseline = snap.snapshot()

    # 1-3. Clean run, re-run, engine retry, next slot.
    with scenario():
        with commit_points(job.slug, ignore_tables=snap.BOOKKEEPING) as points:
            first = run(job, world, slot, at=slot + CLEAN_AT)
        assert first.status == JobRun.Status.SUCCEEDED, first.error
        clean = snap.snapshot()
        if job.slug in WRITES_NOTHING:
            assert_same(baseline, clean, f"{job.slug} (listed as writing nothing)")
        else:
            assert snap.differences(baseline, clean), f"{job.slug} wrote nothing at {slot}: give it data in SETUP"
        clean_canonical = snap.canonical(clean, baseline, scenario_run_ids())

        again = run(job, world, slot, at=slot + dt.timedelta(hours=1), trigger=JobRun.Trigger.MANUAL)
        assert again.status == JobRun.Status.SUCCEEDED, again.error
        assert_same(clean, snap.snapshot(), f"a manual re-run of {job.slug} at {slot}")
        retry = run(job, world, slot, at=slot + dt.timedelta(hours=2), trigger=JobRun.Trigger.RETRY, retry_of=first)
        assert retry.status == JobRun.Status.SUCCEEDED, retry.error
        assert_same(clean, snap.snapshot(), f"an engine retry of {job.slug} at {slot}")

        following = next_slot_of(job, slot)
        later = run(job, world, following, at=following + CLEAN_AT)
        assert later.status == JobRun.Status.SUCCEEDED, later.error
        assert_next_slot_sends_nothing_twice(baseline, snap.snapshot(), messages=job.slug not in RESENT_BY_DESIGN)

    # 4. A fault after each commit point, then the engine's retry.
    assert points.count >= 1 or job.slug in WRITES_NOTHING, f"{job.slug}: no commit point seen"
    for k in range(1, points.count + 1):
        with scenario():
            with commit_points(job.slug, fail_at=k, ignore_tables=snap.BOOKKEEPING) as faulted:
                failed = run(job, world, slot, at=slot + CLEAN_AT)
            assert failed.status == JobRun.Status.FAILED and InjectedFault.__name__ in failed.error, (k, failed.error)
            retry = JobRun.objects.get(retry_of=failed, status=JobRun.Status.QUEUED)
            with time_machine.travel(slot + CLEAN_AT, tick=False):
                done = runner.execute(retry.pk)
            assert done.status == JobRun.Status.SUCCEEDED, (k, faulted.labels[k - 1], done.error)
            final = snap.canonical(snap.snapshot(), baseline, scenario_run_ids())
            diff = snap.differences(clean_canonical, final)
            assert not diff, (f"{job.slug}: a fault after commit point {k}/{points.count} ({points.labels[k - 1]}) "
                              f"then the retry differ from one clean run:\n" + "\n".join(diff))


def assert_next_slot_sends_nothing_twice(baseline: dict, after: dict, *, messages: bool) -> None:
    """Over slot S and the next: no message twice, no second open intervention."""
    sent = snap.new_rows(baseline, after, "notifications_notification") if messages else []
    for row in sent:
        row["content"] = json.dumps(json.loads(row["context"]) if isinstance(row["context"], str) else row["context"],
                                    sort_keys=True)
    twice = snap.repeated(sent, ("recipient_id", "channel", "template", "student_id", "content"))
    assert not twice, f"sent twice over two slots: {twice[:3]}"
    items = snap.new_rows(baseline, after, "notifications_digestitem")
    assert not snap.repeated(items, ("recipient_id", "channel", "object_key", "event", "period_start"))
    interventions = [r for r in after["interventions_intervention"].values() if r["status"] == "active"]
    assert not snap.repeated(interventions, ("student_id", "type")), "two open interventions of one type"
    tasks = snap.new_rows(baseline, after, "interventions_counselortask")
    assert not snap.repeated(tasks, ("intervention_id", "kind")), "a counselor task twice"


# -- the harness can fail: two broken jobs it must catch ---------------------------------------
def _broken_rerun(ctx) -> dict:
    """Appends an event on every run: a re-run of the slot writes again."""
    from skillcore.models import StoredEvent

    StoredEvent.objects.create(event_type="harness.broken", payload={}, occurred_at=ctx.scheduled_for)
    return {}


def _broken_resume(ctx) -> dict:
    """Skips the whole slot when step 1's marker exists: idempotent on a re-run, but a retry
    after a failure between its two steps never does step 2."""
    from skillcore.models import StoredEvent

    if StoredEvent.objects.filter(event_type="harness.marker", occurred_at=ctx.scheduled_for).exists():
        return {}
    with transaction.atomic():
        StoredEvent.objects.create(event_type="harness.marker", payload={}, occurred_at=ctx.scheduled_for)
    with transaction.atomic():
        StoredEvent.objects.create(event_type="harness.effect", payload={}, occurred_at=ctx.scheduled_for)
    return {}


@pytest.mark.parametrize("entry, caught", [(_broken_rerun, "a manual re-run"), (_broken_resume, "commit point 1/2")])
def test_the_harness_catches_a_job_that_is_not_exactly_once(entry, caught, sequences):
    job = registry.register(registry.Job(slug="harness-broken", title="Broken on purpose", default_cron="0 5 * * *",
                                         why="test", scope="global", entry=entry))
    try:
        with pytest.raises(AssertionError, match=caught):
            assert_exactly_once(job, World(district=None))
    finally:
        registry.unregister(job.slug)
