"""The blast-radius guard end to end: a bad attendance import (every student absent) through
the real runner and the real attendance-interventions job, the outbox drained to a real SMTP
server on localhost, PagerDuty and Slack on a real local HTTP server.

Runs on PostgreSQL and SQLite (nothing here depends on the database)."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from interventions.models import CounselorTask, Intervention
from notifications import delivery
from notifications.models import Notification, Status
from scheduling import blast_radius, runner, services
from scheduling.models import Incident, JobRun, JobSchedule, RunHold, ScheduleChange
from scheduling.monitoring import alerting
from tests import factories as f
from tests.blast_radius.conftest import SLUG, STUDENTS, run_attendance, seed_history
from tests.observability.conftest import received

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoints(httpserver, settings):
    """PagerDuty and Slack on pytest-httpserver (a real HTTP server on localhost)."""
    settings.PAGERDUTY_ROUTING_KEY = "R0UT1NGKEY"
    settings.PAGERDUTY_EVENTS_URL = httpserver.url_for("/v2/enqueue")
    settings.SLACK_WEBHOOK_URL = httpserver.url_for("/slack/hook")
    settings.ALERTS_SLACK_RUN_EVENTS = []
    httpserver.expect_request("/v2/enqueue", method="POST").respond_with_json({"status": "success"}, status=202)
    httpserver.expect_request("/slack/hook", method="POST").respond_with_data("ok")
    return httpserver


def held_run(district, all_absent) -> JobRun:
    seed_history(district, staff=2)
    run = run_attendance(district, all_absent["days"][-1])
    assert run.status == JobRun.Status.HELD, (run.status, run.error)
    return run


def approved_retry(run: JobRun) -> JobRun:
    """The retry a release of proposals queued, executed as a worker would."""
    retry = JobRun.objects.get(retry_of_id=run.retry_of_id or run.pk, status=JobRun.Status.QUEUED)
    assert retry.checkpoint == {blast_radius.RELEASED_PROPOSALS: run.hold.pk}
    with time_machine.travel(run.finished_at + dt.timedelta(hours=2), tick=False):
        return runner.execute(retry.pk)


def drained_emails(smtp_server) -> list[str]:
    delivery.drain()
    return [m["To"] for m in smtp_server.messages]


def test_an_all_absent_import_holds_every_message_and_sends_none(district, school, counselor, all_absent, limits,
                                                                   smtp_server, endpoints):
    run = held_run(district, all_absent)

    # Nothing written: the interventions, their tasks and the counselor's messages rolled back
    # together; the run holds them as proposals (attendance-interventions' rule).
    assert run.result["proposed"] == STUDENTS and run.result["created"] == 0
    assert run.result["notifications_queued"] == 0
    assert run.outbound == {"families": 0, "staff": STUDENTS}
    assert run.note.startswith(f"held: {STUDENTS} messages to staff, more than 5x the baseline of 2")
    assert not Intervention.objects.exists() and not CounselorTask.objects.exists()
    assert not Notification.objects.exists()
    # The drainer finds nothing to send; the SMTP server received nothing.
    assert drained_emails(smtp_server) == []

    hold = RunHold.objects.get(run=run)
    assert hold.counts == {"families": 0, "staff": STUDENTS}
    assert hold.baseline == {"families": 0, "staff": 2, "runs": 3}
    assert hold.limits == {"multiplier": 5, "floor": 10, "cap": 10_000, "proposals": True}
    assert hold.breakdown == [{"template": "attendance-intervention", "school": "Lakeside High", "audience": "staff",
                               "count": STUDENTS}]
    assert len(hold.samples) == 20
    sample = hold.samples[0]
    assert sample["recipient"] == counselor.get_full_name() and sample["channel"] == "email"
    assert sample["audience"] == "staff" and sample["reason"]  # the subject the counselor would read
    assert hold.decision == "" and hold.decided_at is None

    # attendance-interventions is critical: PagerDuty is paged, naming the run and the counts.
    incident = Incident.objects.get(kind=Incident.Kind.HELD)
    assert incident.severity == Incident.Severity.CRITICAL and incident.run_id == run.pk
    alerting.deliver_due()
    pages = received(endpoints, "/v2/enqueue")
    assert len(pages) == 1 and f"held {STUDENTS} message(s)" in pages[0]["payload"]["summary"]


def test_a_job_that_is_not_critical_warns_on_slack(district, all_absent, limits, endpoints, monkeypatch):
    from scheduling import registry

    job = registry.get(SLUG)
    monkeypatch.setitem(registry._jobs, SLUG, type(job)(**{**job.__dict__, "critical": False}))
    held_run(district, all_absent)
    assert Incident.objects.get(kind=Incident.Kind.HELD).severity == Incident.Severity.WARNING
    alerting.deliver_due()
    assert received(endpoints, "/v2/enqueue") == []
    assert "held 30 message(s)" in received(endpoints, "/slack/hook")[0]["text"]


def test_release_sends_exactly_the_held_messages_once(district, counselor, all_absent, limits, smtp_server,
                                                     system_admin, endpoints):
    services.sync_schedules()
    run = held_run(district, all_absent)
    hold = run.hold
    now = run.finished_at + dt.timedelta(hours=1)

    released = blast_radius.hold_release(hold=hold, acting_user=system_admin, note="Import checked: all real", now=now)

    assert released.decision == "released" and released.messages_affected == STUDENTS
    assert (released.decided_by, released.decided_at, released.note) == (system_admin, now, "Import checked: all real")
    run.refresh_from_db()
    assert run.status == JobRun.Status.RELEASED
    # The release runs the slot again, approved: the proposals are opened with their messages.
    retry = approved_retry(run)
    assert retry.status == JobRun.Status.SUCCEEDED, retry.note
    assert retry.result["created"] == STUDENTS and retry.result["notifications_queued"] == STUDENTS
    assert Intervention.objects.filter(opened_at=run.slot, status="active").count() == STUDENTS
    change = ScheduleChange.objects.get(schedule=JobSchedule.objects.get(job=SLUG, district=district))
    assert change.action == "release" and change.acting_user == system_admin
    assert change.after == {"run": run.pk, "status": "released", "messages": STUDENTS, "note": "Import checked: all real"}
    # Exactly the held messages, once: every email of the run to the counselor, and a second
    # drain sends nothing more.
    assert drained_emails(smtp_server) == [counselor.email] * STUDENTS
    assert drained_emails(smtp_server) == [counselor.email] * STUDENTS
    assert set(Notification.objects.filter(job_run_id=retry.pk, channel="email").values_list("status", flat=True)) == {
        Status.SENT}
    # The alert is resolved: nothing held is left for this job and district.
    assert not Incident.objects.filter(kind=Incident.Kind.HELD, resolved_at__isnull=True).exists()
    # A second decision is refused and changes nothing.
    with pytest.raises(blast_radius.HoldError, match="already released"):
        blast_radius.hold_discard(hold=hold, acting_user=system_admin, note="oops")


def test_discard_sends_none(district, all_absent, limits, smtp_server, system_admin):
    run = held_run(district, all_absent)

    discarded = blast_radius.hold_discard(hold=run.hold, acting_user=system_admin, note="Bad import from the SIS")

    assert discarded.decision == "discarded" and discarded.messages_affected == 0  # none was ever written
    run.refresh_from_db()
    assert run.status == JobRun.Status.DISCARDED
    assert not JobRun.objects.filter(retry_of=run).exists()
    assert not Intervention.objects.exists() and not Notification.objects.exists()
    assert drained_emails(smtp_server) == []


@pytest.mark.parametrize("note", ["", "   "])
def test_a_decision_needs_a_note_and_a_system_admin(district, all_absent, limits, system_admin, counselor, note):
    run = held_run(district, all_absent)
    with pytest.raises(blast_radius.HoldError, match="a note is required"):
        blast_radius.hold_release(hold=run.hold, acting_user=system_admin, note=note)
    with pytest.raises(blast_radius.HoldError, match="only a system admin"):
        blast_radius.hold_release(hold=run.hold, acting_user=counselor, note="I think it is fine")
    # Nothing written: still held, nothing released.
    run.hold.refresh_from_db()
    assert run.hold.decision == "" and JobRun.objects.get(pk=run.pk).status == JobRun.Status.HELD
    assert not JobRun.objects.filter(retry_of=run).exists() and not Intervention.objects.exists()


def test_a_retry_of_a_held_run_holds_again(district, all_absent, limits, smtp_server, system_admin):
    run = held_run(district, all_absent)

    retry = services.retry_run(run=run, acting_user=system_admin)
    with time_machine.travel(run.finished_at + dt.timedelta(minutes=5), tick=False):
        retry = runner.execute(retry.pk)

    # The retry opens and sends nothing: only a person releases what a held run proposed.
    assert retry.status == JobRun.Status.HELD and retry.retry_of_id == run.pk
    assert retry.note.startswith(f"held: a retry of held run #{run.pk}")
    assert not Intervention.objects.exists() and not Notification.objects.exists()
    old = RunHold.objects.get(run=run)
    assert old.decision == "superseded" and str(retry.pk) in old.note
    assert RunHold.objects.get(run=retry).counts == {"families": 0, "staff": STUDENTS}
    assert drained_emails(smtp_server) == []
    # Released once, by a person: each message goes out once.
    blast_radius.hold_release(hold=retry.hold, acting_user=system_admin, note="Checked")
    assert approved_retry(retry).status == JobRun.Status.SUCCEEDED
    assert len(drained_emails(smtp_server)) == STUDENTS
    assert len(drained_emails(smtp_server)) == STUDENTS


def test_within_the_limit_the_messages_go_out_when_the_run_ends(district, counselor, all_absent, smtp_server):
    seed_history(district, staff=20)  # 30 is within 5x 20: the default limits
    run = run_attendance(district, all_absent["days"][-1])

    assert run.status == JobRun.Status.SUCCEEDED and run.outbound == {"families": 0, "staff": STUDENTS}
    assert not RunHold.objects.exists()
    assert set(Notification.objects.filter(job_run_id=run.pk, channel="email").values_list("status", flat=True)) == {
        Status.PENDING}
    assert len(drained_emails(smtp_server)) == STUDENTS


def test_the_first_runs_use_the_absolute_cap_only(district, all_absent, limits):
    # No history: 30 messages to staff with a floor of 10 is not held (no baseline to be 5x of) ...
    run = run_attendance(district, all_absent["days"][-1])
    assert run.status == JobRun.Status.SUCCEEDED

    # ... but over the cap it is, baseline or not.
    limits.cap = 25
    limits.save()
    Notification.objects.all().delete()
    JobRun.objects.all().delete()
    run = run_attendance(district, all_absent["days"][-1])
    assert run.status == JobRun.Status.HELD
    assert run.hold.reason == f"{STUDENTS} messages, over the cap of 25" and run.hold.baseline == {}


def test_a_district_limit_for_every_job_applies_when_the_job_has_none(district):
    from scheduling.models import BlastRadiusLimit

    assert blast_radius.Limits.for_job(job_slug=SLUG, district_id=district.pk) == blast_radius.Limits(5, 200, 50_000)
    BlastRadiusLimit.objects.create(district=district, job="", multiplier=3, floor=50, cap=900)
    assert blast_radius.Limits.for_job(job_slug=SLUG, district_id=district.pk) == blast_radius.Limits(3, 50, 900)
    BlastRadiusLimit.objects.create(district=district, job=SLUG, multiplier=8, floor=400, cap=5000)
    assert blast_radius.Limits.for_job(job_slug=SLUG, district_id=district.pk) == blast_radius.Limits(8, 400, 5000)


def test_the_baseline_is_the_median_of_the_last_ten_successful_runs(district):
    base = dt.datetime(2026, 9, 1, 22, 30, tzinfo=dt.UTC)
    rows = [(JobRun.Status.SUCCEEDED, {"families": 100 + i, "staff": i}) for i in range(12)]
    rows += [(JobRun.Status.FAILED, {"families": 9999, "staff": 9999}), (JobRun.Status.RELEASED, {"families": 9999, "staff": 9999})]
    JobRun.objects.bulk_create([
        JobRun(job=SLUG, district=district, trigger="schedule", slot=base + dt.timedelta(days=i), status=status,
               started_at=base + dt.timedelta(days=i), outbound=outbound)
        for i, (status, outbound) in enumerate(rows)
    ])
    # The last ten successes are i = 2..11: medians 106.5 and 6.5; failed and released runs never count.
    assert blast_radius.baseline(job_slug=SLUG, district_id=district.pk) == {"families": 106.5, "staff": 6.5, "runs": 10}
    # 5 x 106.5 = 532.5: 532 is within, 533 is over.
    assert blast_radius.verdict({"families": 532, "staff": 0}, {"families": 106.5, "staff": 6.5}, blast_radius.Limits()) is None
    assert blast_radius.verdict({"families": 533, "staff": 0}, {"families": 106.5, "staff": 6.5}, blast_radius.Limits())
    # More than 5x but not more than 200: within the limit.
    assert blast_radius.verdict({"families": 0, "staff": 200}, {"families": 0, "staff": 6.5}, blast_radius.Limits()) is None


def test_a_hold_left_24_hours_escalates_once_and_never_sends(district, all_absent, limits, smtp_server, endpoints):
    run = held_run(district, all_absent)
    hold = run.hold

    assert alerting.escalate_undecided_holds(now=hold.held_at + dt.timedelta(hours=23)) == 0
    report = alerting.watch(now=hold.held_at + dt.timedelta(hours=24, minutes=1), deliver=False)
    assert report.holds_escalated == 1
    escalated = Incident.objects.get(kind=Incident.Kind.HELD_UNDECIDED)
    assert escalated.severity == Incident.Severity.CRITICAL and escalated.run_id == run.pk
    hold.refresh_from_db()
    assert hold.escalated_at is not None and hold.decision == ""
    assert alerting.watch(now=hold.held_at + dt.timedelta(hours=30), deliver=False).holds_escalated == 0
    # Still held: nothing is sent by itself.
    assert drained_emails(smtp_server) == []
    assert JobRun.objects.get(pk=run.pk).status == JobRun.Status.HELD


def test_a_run_without_a_schedule_is_released_without_a_schedule_change(district, all_absent, limits, system_admin):
    run = held_run(district, all_absent)
    assert not JobSchedule.objects.exists()
    blast_radius.hold_release(hold=run.hold, acting_user=system_admin, note="ok")
    assert not ScheduleChange.objects.exists() and RunHold.objects.get(run=run).actor_label == system_admin.username


def test_a_guardian_reached_by_another_run_is_not_affected(district, school, all_absent, limits):
    """A held run holds only its own messages: a row another enqueue wrote stays pending."""
    from notifications.services import NotificationRequest, notifications_enqueue

    guardian = f.UserFactory(email="parent@example.org")
    notifications_enqueue([NotificationRequest(
        recipient_id=guardian.pk, category="system", channel="email", template="generic",
        context={"subject": "hello", "body": "x"}, dedupe_key="unrelated:1")], district_id=district.pk)
    held_run(district, all_absent)
    assert Notification.objects.get(dedupe_key="unrelated:1").status in (Status.PENDING, Status.DEFERRED)


def test_jobs_run_says_the_run_is_held_and_exits_1(district, all_absent, limits):
    import io

    from django.core.management import call_command

    from tests.jobs.slot_runs import local_slot

    seed_history(district, staff=2)
    day = all_absent["days"][-1]
    slot = local_slot(district, day.year, day.month, day.day, 18, 30)
    out = io.StringIO()
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False), pytest.raises(SystemExit) as exit_:
        call_command("jobs", "run", SLUG, "--district", str(district.id), "--as-of", slot.isoformat(), stdout=out)
    assert exit_.value.code == 1
    first = out.getvalue().splitlines()[0]
    assert first.startswith(f"run #{JobRun.objects.get(job=SLUG, trigger='manual').pk} {SLUG} Lakeside Unified held")
    assert not Notification.objects.exists() and not Intervention.objects.exists()
