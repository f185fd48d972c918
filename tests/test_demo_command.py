"""``manage.py demo --no-serve``: migrate, seed, demo logins; running it twice duplicates nothing."""
from __future__ import annotations

import json
import os
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from students.models import AttendanceRecord, District, Role, Student

User = get_user_model()


def demo(*args: str) -> str:
    out = StringIO()
    call_command("demo", "--no-serve", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_demo_seeds_once_and_creates_a_login_per_role(settings):
    settings.DEBUG = True
    first = demo("--students", "40")
    assert "http://127.0.0.1:8000/admin/" in first and "skillcore-demo" in first
    district = District.objects.get()
    counts = (User.objects.count(), Student.objects.count(), AttendanceRecord.objects.count())
    assert counts[1] == 40

    second = demo("--students", "40")
    assert "already exists: not seeding again" in second
    assert (User.objects.count(), Student.objects.count(), AttendanceRecord.objects.count()) == counts
    assert District.objects.get() == district

    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password("skillcore-demo")
    for role in (Role.DISTRICT_ADMIN, Role.PRINCIPAL, Role.COUNSELOR, Role.SPED_COORDINATOR, Role.CASE_MANAGER, Role.TEACHER):
        user = User.objects.get(username=f"demo-{role}")
        assert user.is_staff and user.check_password("skillcore-demo")
        assert user.groups.filter(name=role).exists()
        assert user.staff_profile.district == district
        assert f"demo-{role}" in second
    # The demo counselor is a real counselor with a caseload, not an empty account.
    assert User.objects.get(username="demo-counselor").counselees.exists()


@pytest.mark.django_db
def test_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=1") as error:
        demo()
    assert error.value.returncode == 2
    assert not District.objects.exists() and not User.objects.exists()


@pytest.mark.django_db
def test_demo_rejects_a_bad_student_count(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError) as error:
        demo("--students", "-1")
    assert error.value.returncode == 2
    assert not District.objects.exists()


@pytest.mark.django_db
def test_the_demos_emergency_broadcast_reaches_a_guardian_by_sms_through_a_local_twilio(settings, tmp_path):
    from notifications.models import Notification, RecipientProfile, Status
    from skillcore.management.commands import demo as command

    settings.DEBUG, settings.VAR_DIR, settings.TWILIO_ACCOUNT_SID = True, tmp_path, ""
    out = demo("--students", "40")
    profile = RecipientProfile.objects.get(mobile_number=command.DEMO_GUARDIAN_MOBILE)
    assert profile.sms_consent_method == "paper-form"
    text = Notification.objects.get(category="emergency", channel="sms", recipient=profile.user)
    assert text.status == Status.SENT and text.provider_message_id.startswith("SM")
    [recorded] = [json.loads(line) for line in (tmp_path / "demo-sms.jsonl").read_text().splitlines()]
    assert recorded["to"] == command.DEMO_GUARDIAN_MOBILE and recorded["from"] == command.DEMO_TWILIO_FROM
    assert recorded["sid"] == text.provider_message_id and command.DEMO_BROADCAST in recorded["body"]
    assert "1 text(s) sent" in out and command.DEMO_GUARDIAN_MOBILE in out
    # The recorder is stopped and the settings are the configured ones again.
    assert settings.TWILIO_ACCOUNT_SID == "" and "TWILIO_API_BASE_URL" not in os.environ
    # A second demo sends no second broadcast.
    demo("--students", "40")
    assert Notification.objects.filter(category="emergency", channel="sms", status=Status.SENT).count() == 1
    assert len((tmp_path / "demo-sms.jsonl").read_text().splitlines()) == 1


def test_the_sms_recorder_answers_the_twilio_client_like_twilio(tmp_path):
    from twilio.base.exceptions import TwilioRestException
    from twilio.rest import Client

    from skillcore.sms_recorder import SmsRecorder

    sid = "AC" + "ab" * 16
    with SmsRecorder(sid, "token", tmp_path / "sms.jsonl") as url:
        client = Client(sid, "token")
        client.api.base_url = url
        message = client.messages.create(to="+12025550143", from_="+12025550100", body="Hello")
        assert message.sid.startswith("SM") and message.status == "queued" and message.body == "Hello"
        assert client.api.v2010.accounts(sid).fetch().status == "active"
        wrong = Client(sid, "not-the-token")
        wrong.api.base_url = url
        with pytest.raises(TwilioRestException) as refused:
            wrong.messages.create(to="+12025550143", from_="+12025550100", body="Hello")
        assert refused.value.status == 401 and refused.value.code == 20003
    assert [m["body"] for m in SmsRecorder(sid, "token", tmp_path / "sms.jsonl").messages()] == ["Hello"]
