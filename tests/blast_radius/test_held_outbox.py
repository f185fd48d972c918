"""What the guard holds, whichever job and channel: family messages and quiet hours on
release, digest lines, emergencies exempt, a failed run's messages, and the query count.

Test jobs (registered for the test) enqueue to guardians through the real outbox; the
runner is the real one; email goes to the localhost SMTP server."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from notifications import delivery, services
from notifications.models import Category, DigestItem, Frequency, Notification, NotificationPreference, Status
from notifications.services import NotificationRequest, notifications_enqueue
from scheduling import blast_radius, registry
from scheduling.models import BlastRadiusLimit, JobRun
from scheduling.registry import Job
from students.models import Role
from tests import factories as f
from tests.blast_radius.conftest import seed_history
from tests.jobs.slot_runs import local_slot, run_slot

pytestmark = pytest.mark.django_db
NOTICE = "blast-family-notice"
DRILL = "blast-emergency-drill"
BROKEN = "blast-broken-notice"


def _family_requests(ctx, category=Category.ATTENDANCE_INTERVENTION, template="attendance-intervention"):
    from students.models import GuardianLink

    links = GuardianLink.objects.filter(student__school__district=ctx.district).order_by("id")
    return [NotificationRequest(
        recipient_id=link.guardian_id, category=category, channel="email", template=template,
        context={"intervention_id": link.pk, "tier": 1, "student_name": "a student", "absence_rate": "20%",
                 "district_name": "Lakeside", "scenario": "lockdown", "scenario_label": "Lockdown",
                 "sample_message": "drill", "test": True},
        dedupe_key=f"{ctx.job.slug}:{ctx.scheduled_for:%Y%m%d%H%M}:{link.pk}", student_id=link.student_id,
    ) for link in links]


def notice(ctx) -> dict:
    return notifications_enqueue(_family_requests(ctx), job_run_id=ctx.run.id, district_id=ctx.district.id).as_dict()


def drill(ctx) -> dict:
    requests = _family_requests(ctx, category=Category.EMERGENCY_TEST, template="emergency-drill")
    return notifications_enqueue(requests, job_run_id=ctx.run.id, district_id=ctx.district.id).as_dict()


def broken(ctx) -> dict:
    notice(ctx)
    raise RuntimeError("the SIS went away after the messages were queued")


JOBS = [Job(slug=NOTICE, title="Family notice (test)", default_cron="0 18 * * *", why="test", entry=notice),
        Job(slug=DRILL, title="Emergency drill (test)", default_cron="0 18 * * *", why="test", entry=drill),
        Job(slug=BROKEN, title="Broken notice (test)", default_cron="0 18 * * *", why="test", entry=broken, max_attempts=1)]


@pytest.fixture(autouse=True)
def test_jobs():
    for job in JOBS:
        registry.register(job)
    yield
    for job in JOBS:
        registry.unregister(job.slug)


@pytest.fixture
def families(district, school):
    """40 guardians of 40 students of the district, each with an email address."""
    out = []
    for i in range(40):
        student = f.StudentFactory(school=school)
        guardian = f.UserFactory(username=f"parent{i}", email=f"parent{i}@example.org", roles=[Role.GUARDIAN])
        f.GuardianLinkFactory(guardian=guardian, student=student)
        out.append(guardian)
    return out


def run_at(slug, district, local: dt.datetime) -> JobRun:
    with time_machine.travel(local + dt.timedelta(minutes=1), tick=False):
        return run_slot(slug, district, local)


def slot(district, hour):
    return local_slot(district, 2026, 10, 6, hour, 0)


def test_released_family_messages_wait_for_the_quiet_hours_to_end(district, families, system_admin, smtp_server):
    seed_history(district, job=NOTICE, families=2, staff=0)
    BlastRadiusLimit.objects.create(district=district, job=NOTICE, floor=10)
    run = run_at(NOTICE, district, slot(district, 18))
    assert run.status == JobRun.Status.HELD and run.outbound == {"families": 40, "staff": 0}
    assert run.hold.breakdown == [{"template": "attendance-intervention", "school": "Lakeside High",
                                   "audience": "families", "count": 40}]

    # Released at 22:00 local, outside the district's 07:00-21:00 window: deferred to 07:00.
    late = local_slot(district, 2026, 10, 6, 22, 0)
    blast_radius.hold_release(hold=run.hold, acting_user=system_admin, note="real", now=late)
    rows = Notification.objects.filter(job_run_id=run.pk)
    morning = local_slot(district, 2026, 10, 7, 7, 0)
    assert set(rows.values_list("status", "send_after")) == {(Status.DEFERRED, morning)}
    with time_machine.travel(late + dt.timedelta(minutes=5), tick=False):
        delivery.drain()
    assert smtp_server.messages == []
    with time_machine.travel(morning + dt.timedelta(minutes=1), tick=False):
        delivery.drain()
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(g.email for g in families)


def test_released_inside_the_window_they_go_at_once(district, families, system_admin):
    BlastRadiusLimit.objects.create(district=district, job=NOTICE, cap=10)
    run = run_at(NOTICE, district, slot(district, 18))
    assert run.status == JobRun.Status.HELD and run.hold.baseline == {}  # first run: over the cap of 10
    at = local_slot(district, 2026, 10, 7, 9, 0)
    blast_radius.hold_release(hold=run.hold, acting_user=system_admin, note="real", now=at)
    assert set(Notification.objects.filter(job_run_id=run.pk).values_list("status", "send_after")) == {(Status.PENDING, at)}


def test_emergencies_are_never_held(district, families):
    BlastRadiusLimit.objects.create(district=district, job=DRILL, cap=1)
    run = run_at(DRILL, district, slot(district, 18))
    assert run.status == JobRun.Status.SUCCEEDED and run.outbound == {"families": 0, "staff": 0}
    assert set(Notification.objects.filter(job_run_id=run.pk).values_list("status", flat=True)) == {Status.PENDING}


def test_the_emergency_broadcast_is_not_a_run_and_is_never_held(district, families):
    from notifications.emergency import emergency_broadcast_send

    BlastRadiusLimit.objects.create(district=district, job="", cap=1)
    emergency_broadcast_send(district=district, scenario="lockdown", message="Shelter in place", actor_label="test")
    assert not Notification.objects.filter(status=Status.HELD).exists()
    assert Notification.objects.filter(category=Category.EMERGENCY, status=Status.PENDING, channel="email").count() == 40


def test_a_failed_runs_messages_are_judged_too(district, families):
    BlastRadiusLimit.objects.create(district=district, job=BROKEN, cap=10)
    run = run_at(BROKEN, district, slot(district, 18))
    # Over the cap: held with the error kept, and no retry scheduled (held, not failed).
    assert run.status == JobRun.Status.HELD and "the SIS went away" in run.error
    assert not JobRun.objects.filter(retry_of=run).exists()
    assert Notification.objects.filter(job_run_id=run.pk, status=Status.HELD).count() == 40


def test_a_failed_run_within_the_limit_sends_what_it_queued(district, families):
    run = run_at(BROKEN, district, slot(district, 18))
    assert run.status == JobRun.Status.FAILED
    assert Notification.objects.filter(job_run_id=run.pk, status=Status.PENDING).count() == 40


def test_digest_lines_are_held_and_released_with_the_run(district, families, system_admin):
    NotificationPreference.objects.bulk_create([
        NotificationPreference(user=g, category=Category.ATTENDANCE_INTERVENTION, channel="email",
                               frequency=Frequency.DAILY) for g in families])
    BlastRadiusLimit.objects.create(district=district, job=NOTICE, cap=10)
    run = run_at(NOTICE, district, slot(district, 18))
    assert run.status == JobRun.Status.HELD and run.outbound == {"families": 40, "staff": 0}
    assert DigestItem.objects.filter(job_run_id=run.pk, held=True).count() == 40
    # The next morning's assembly leaves held lines alone ...
    next_day = local_slot(district, 2026, 10, 7, 6, 0)
    assert services.digests_assemble(frequency=Frequency.DAILY, now=next_day).digests == 0
    # ... and takes them once released.
    blast_radius.hold_release(hold=run.hold, acting_user=system_admin, note="real", now=next_day)
    assert services.digests_assemble(frequency=Frequency.DAILY, now=next_day).digests == 40


def test_judging_a_run_costs_the_same_queries_whatever_its_size(district, school):
    """Set-based: counting, the baseline, the limits and releasing are a fixed number of
    statements for 5 or 200 messages (one UPDATE per district of family messages)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counted = []
    for size in (5, 200):
        run = JobRun.objects.create(job=NOTICE, district=district, trigger="manual", slot=dt.datetime(2026, 10, 6, tzinfo=dt.UTC),
                                    status=JobRun.Status.RUNNING)
        guardians = [f.UserFactory(email=f"g{size}-{i}@example.org") for i in range(size)]
        students = [f.StudentFactory(school=school) for _ in range(size)]
        for g, s in zip(guardians, students):
            f.GuardianLinkFactory(guardian=g, student=s)
        from skillcore.held_messages import staging

        with staging(run.pk):
            notifications_enqueue([NotificationRequest(
                recipient_id=g.pk, category=Category.ATTENDANCE_INTERVENTION, channel="email",
                template="attendance-intervention", context={}, dedupe_key=f"q:{size}:{g.pk}", student_id=s.pk)
                for g, s in zip(guardians, students)], job_run_id=run.pk, district_id=district.pk)
        with CaptureQueriesContext(connection) as queries:
            judgement = blast_radius.judge(run=run, now=dt.datetime(2026, 10, 6, 15, tzinfo=dt.UTC))
        assert not judgement.held and judgement.counts == {"families": size, "staff": 0}
        assert Notification.objects.filter(job_run_id=run.pk, status=Status.HELD).count() == 0
        counted.append(len(queries))
    # Two counts, the limits, the baseline; the release: 2 UPDATEs, the districts (2), one
    # UPDATE per district, the digest lines; and the release's savepoint.
    assert counted[0] == counted[1] <= 12
