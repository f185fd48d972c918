"""emergency-notification-test and the real broadcast: test group only, four scenarios on
every channel marked TEST, delivery report per channel (stored, then recounted after the
outbox drains), idempotency, query counts, the broadcast command and admin form ignore
quiet hours and preferences, bad input."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from notifications import delivery, emergency
from notifications.models import Category, Frequency, Notification, RecipientProfile, Status
from scheduling.models import EmergencyBroadcast, JobRun, Report
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot, statements
from tests.notifications.conftest import fcm, fcm_error, twilio  # noqa: F401 - real FCM and Twilio APIs on localhost

SLUG = "emergency-notification-test"


def first_monday_slot(district):
    return local_slot(district, 2027, 1, 4, 10)  # 2027-01-04 is the first Monday of Q1


def run_test(district, *, trigger=JobRun.Trigger.SCHEDULE):
    slot = first_monday_slot(district)
    with time_machine.travel(slot + dt.timedelta(seconds=30), tick=False):
        run = run_slot(SLUG, district, slot, trigger=trigger)
    assert run.status in (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING), run.error  # warning: did nothing
    return run


@pytest.fixture
def group(district, school):
    members = [f.StaffFactory(roles=[Role.DISTRICT_ADMIN], schools=[school]) for _ in range(2)]
    f.DeviceTokenFactory(user=members[0])  # the second has no device: push not sent to them
    # The first has a mobile number (no consent to other texts: emergencies need none), the second none.
    RecipientProfile.objects.create(user=members[0], mobile_number="+12025550101")
    district.emergency_test_group.set(members)
    return members


@pytest.fixture
def families(district, school):
    st = f.StudentFactory(school=school)
    g = f.GuardianLinkFactory(student=st).guardian
    f.DeviceTokenFactory(user=g)
    return [g]


def test_only_the_test_group_gets_four_scenarios_on_every_channel_marked_test(district, group, families, fcm, twilio):
    token = group[0].device_tokens.get().token
    fcm.behaviour[token] = fcm_error(500, "INTERNAL", message="server error")  # push fails: the report says so
    run = run_test(district)
    rows = Notification.objects.filter(category=Category.EMERGENCY_TEST)
    assert set(rows.values_list("recipient_id", flat=True)) == {u.id for u in group}
    assert not Notification.objects.filter(recipient__in=families).exists()  # never families
    assert rows.count() == 4 * 2 * 3
    assert set(rows.values_list("context__scenario", flat=True)) == {"school-closure", "lockdown", "weather-delay", "broadcast"}
    assert set(rows.values_list("channel", flat=True)) == {"email", "push", "sms"}
    assert rows.filter(status=Status.SUPPRESSED, channel="push").count() == 4  # member without a device
    assert rows.filter(status=Status.SUPPRESSED, channel="sms", status_reason="no-mobile-number").count() == 4
    assert run.result["recipients"] == 2 and run.result["inserted"] == 16
    # Sent at once at 10:00 with high priority; the report exists before the outbox drains.
    report = Report.objects.get(kind="emergency-test", district=district)
    assert report.period_start == dt.date(2027, 1, 4)
    assert report.evidence["delivery"]["email"] == {"total": 8, "sent": 0, "failed": 0, "waiting": 8, "suppressed": 0}
    # The follow-up recount is a one-off django-q2 schedule 15 minutes later.
    follow = Schedule.objects.get(name=run.result["report_follow_up"])
    assert follow.schedule_type == Schedule.ONCE and follow.next_run == first_monday_slot(district) + dt.timedelta(minutes=15)
    # Drain (email through the locmem backend), then the follow-up recounts.
    with time_machine.travel(first_monday_slot(district) + dt.timedelta(minutes=1), tick=False):
        delivery.drain(batch_size=100)
        emergency.emergency_test_report_refresh(**eval(follow.kwargs))  # noqa: S307 - the schedule's own repr
    report.refresh_from_db()
    assert report.evidence["delivery"]["email"]["sent"] == 8
    push_counts = report.evidence["delivery"]["push"]
    assert push_counts["sent"] == 0 and push_counts["suppressed"] == 4 and push_counts["failed"] + push_counts["waiting"] == 4
    assert {r["json"]["message"]["notification"]["title"] for r in fcm.received} >= {"TEST: Lockdown"}
    assert all(m.subject.startswith("TEST:") for m in mail.outbox) and len(mail.outbox) == 8
    assert "THIS IS A TEST" in mail.outbox[0].body
    assert "Delivery by channel" in report.html
    # SMS: the member with a number got the four tests by text, each marked TEST, through Twilio.
    assert report.evidence["delivery"]["sms"] == {"total": 8, "sent": 4, "failed": 0, "waiting": 0, "suppressed": 4}
    assert {r["form"]["To"] for r in twilio.received} == {"+12025550101"} and len(twilio.received) == 4
    assert all(r["form"]["Body"].startswith("TEST ONLY:") for r in twilio.received)
    assert "sms" in report.html


def test_preferences_and_quiet_hours_do_not_hold_the_test(district, group):
    f.NotificationPreferenceFactory(user=group[0], category=Category.EMERGENCY_TEST, channel="email", frequency=Frequency.NEVER)
    run_test(district)
    assert Notification.objects.filter(recipient=group[0], channel="email", status=Status.PENDING).count() == 4


def test_rerun_of_the_slot_enqueues_nothing_and_keeps_one_report(district, group):
    run_test(district)
    before = Notification.objects.count()
    again = run_test(district, trigger=JobRun.Trigger.MANUAL)
    assert again.result["inserted"] == 0 and again.result["duplicates"] == 24
    assert Notification.objects.count() == before
    assert Report.objects.filter(kind="emergency-test").count() == 1
    assert Schedule.objects.filter(name__startswith="skillcore:emergency-test-report:").count() == 1


def test_empty_test_group_sends_nothing_and_says_so(district, families):
    run = run_test(district)
    assert run.result["recipients"] == 0 and not Notification.objects.exists()
    assert run.status == "warning" and "emergency test group is empty" in run.note  # succeeded with warnings
    assert "test group is empty" in Report.objects.get(kind="emergency-test").html


def _queries(district, school, n):
    district.emergency_test_group.set([f.StaffFactory(roles=[Role.TEACHER], schools=[school]) for _ in range(n)])
    Notification.objects.all().delete()
    Report.objects.all().delete()
    Schedule.objects.all().delete()
    with CaptureQueriesContext(connection) as ctx:
        run_test(district, trigger=JobRun.Trigger.MANUAL)
    return statements(ctx.captured_queries)  # a bulk insert split by SQLite's parameter limit counts once


def test_query_count_does_not_grow_with_the_test_group(district, school):
    assert _queries(district, school, 2) == _queries(district, school, 9)


def test_jobs_run_command(district, group):
    call_command("jobs", "run", SLUG, "--district", str(district.id), "--as-of", first_monday_slot(district).isoformat(),
                 stdout=io.StringIO())
    assert JobRun.objects.get(job=SLUG).status == JobRun.Status.SUCCEEDED
    assert Notification.objects.filter(category=Category.EMERGENCY_TEST).count() == 24


# -- the real broadcast --------------------------------------------------------------------------
def test_broadcast_reaches_every_family_and_staff_at_night_whatever_their_preferences(district, school, group, families):
    revoked = f.GuardianLinkFactory(student=f.StudentFactory(school=school), access_revoked=True).guardian
    f.NotificationPreferenceFactory(user=families[0], category=Category.EMERGENCY, channel="email", frequency=Frequency.NEVER)
    other_district_guardian = f.GuardianLinkFactory().guardian
    night = dt.datetime(2027, 1, 5, 23, 30, tzinfo=district.zone)  # outside the 07:00-21:00 family window
    out = io.StringIO()
    with time_machine.travel(night, tick=False):
        call_command("emergency_broadcast", "--district", str(district.id), "--scenario", "lockdown",
                     "--message", "Hillcrest is in lockdown.", stdout=out)
    result = json.loads(out.getvalue())
    rows = Notification.objects.filter(category=Category.EMERGENCY)
    recipients = set(rows.values_list("recipient_id", flat=True))
    assert families[0].id in recipients and {u.id for u in group} <= recipients
    assert revoked.id not in recipients and other_district_guardian.id not in recipients
    g_email = rows.get(recipient=families[0], channel="email")
    assert g_email.status == Status.PENDING and g_email.send_after == night  # not deferred to 07:00, not "never"
    assert result["deferred"] == 0
    assert EmergencyBroadcast.objects.get().counts["recipients"] == len(recipients)


def test_broadcast_reaches_a_guardian_by_sms_at_night_after_stop(district, school, families, fcm, twilio):
    """A guardian who never consented to texts and replied STOP still gets the lockdown text."""
    RecipientProfile.objects.create(user=families[0], mobile_number="+12025550143", sms_opted_out_at=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    night = dt.datetime(2027, 1, 5, 23, 30, tzinfo=district.zone)
    with time_machine.travel(night, tick=False):
        broadcast = emergency.emergency_broadcast_send(district=district, scenario="lockdown", message="Hillcrest is in lockdown.",
                                                       actor_label="test")
        delivery.drain(batch_size=100)
    text = Notification.objects.get(category=Category.EMERGENCY, recipient=families[0], channel="sms")
    assert text.status == Status.SENT and text.provider_message_id.startswith("SM") and text.priority == "high"
    assert text.dedupe_key == f"emergency:{broadcast.pk}:{families[0].pk}:sms"
    [request] = twilio.received
    assert request["form"] == {"To": "+12025550143", "From": "+15005550006",
                               "Body": f"{district.name}: Lockdown: Hillcrest is in lockdown."}


@pytest.mark.parametrize("args, message", [
    (["--district", "999999", "--scenario", "lockdown", "--message", "x"], "unknown district 999999"),
    (["--scenario", "tornado", "--message", "x"], "unknown scenario 'tornado'"),
    (["--scenario", "lockdown", "--message", "  "], "--message is empty"),
])
def test_broadcast_bad_input_exits_2_and_sends_nothing(district, group, args, message):
    if "--district" not in args:
        args = ["--district", str(district.id), *args]
    with pytest.raises(CommandError) as exc:
        call_command("emergency_broadcast", *args)
    assert exc.value.returncode == 2 and message in str(exc.value)
    assert not Notification.objects.exists() and not EmergencyBroadcast.objects.exists()


def test_admin_form_sends_for_a_district_admin_and_scopes_the_district(client, district, school, group, families):
    admin_user = group[0]
    client.force_login(admin_user)
    other = f.DistrictFactory()
    url = "/admin/scheduling/emergencybroadcast/add/"
    page = client.get(url)
    assert page.status_code == 200 and "first 320 characters" in page.content.decode()  # what a text carries
    # Another district is not a choice: a field error, not a 500, nothing sent.
    bad = client.post(url, {"district": other.id, "scenario": "lockdown", "message": "x"})
    assert bad.status_code == 200 and "district" in bad.context["adminform"].form.errors
    assert not Notification.objects.exists()
    ok = client.post(url, {"district": district.id, "scenario": "weather-delay", "message": "Two hours late."})
    assert ok.status_code == 302
    b = EmergencyBroadcast.objects.get()
    assert b.sent_by == admin_user and b.counts["inserted"] > 0
    assert Notification.objects.filter(category=Category.EMERGENCY, recipient=families[0]).count() == 3


def test_teachers_cannot_send_broadcasts(client, teacher):
    client.force_login(teacher)
    assert client.get("/admin/scheduling/emergencybroadcast/add/").status_code == 403
