"""The outbox admin (search, preview, resend, counts, who may see it) and the ops command."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.urls import reverse

from notifications.models import Notification, Status
from notifications.services import NotificationRequest, notifications_enqueue
from skillcore.models import AccessLog
from students.models import Role
from tests import factories as f

NOON = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)
CHANGELIST = "admin:notifications_notification_changelist"


@pytest.fixture
def outbox(family, district):
    with time_machine.travel(NOON, tick=False):
        notifications_enqueue([
            NotificationRequest(recipient_id=family["guardian"].pk, category="assignment-reminder", channel="email",
                                template="assignment-reminder", dedupe_key=f"a:{i}", student_id=family["student"].pk,
                                context={"assignment_title": f"Essay {i}", "course_name": "English", "due_date": "Oct 15"})
            for i in range(3)
        ])
    Notification.objects.filter(dedupe_key="a:2").update(status=Status.FAILED, status_reason="SMTP 550", attempts=5)
    return Notification.objects.order_by("dedupe_key")


@pytest.fixture
def district_admin(district, school):
    return f.StaffFactory(username="dadmin", roles=[Role.DISTRICT_ADMIN], schools=[school])


def test_system_admin_searches_and_sees_counts_by_status(client, system_admin, outbox):
    client.force_login(system_admin)
    response = client.get(reverse(CHANGELIST), {"q": "a:1"})
    assert response.status_code == 200
    assert [n.dedupe_key for n in response.context["cl"].result_list] == ["a:1"]
    content = response.content.decode()
    assert "Pending (2)" in content and "Failed (1)" in content and "Sent (0)" in content


def test_district_admin_sees_own_district_only_and_views_are_on_the_trail(client, district_admin, outbox):
    other = f.StudentFactory(first_name="Zed")
    g = f.UserFactory()
    f.GuardianLinkFactory(guardian=g, student=other)
    notifications_enqueue([NotificationRequest(recipient_id=g.pk, category="system", channel="email", template="system",
                                               context={"headline": "x", "message": "y"}, dedupe_key="other", student_id=other.pk)])
    client.force_login(district_admin)
    response = client.get(reverse(CHANGELIST))
    assert {n.dedupe_key for n in response.context["cl"].result_list} == {"a:0", "a:1", "a:2"}
    theirs = Notification.objects.get(dedupe_key="other")
    assert client.get(reverse("admin:notifications_notification_change", args=[theirs.pk])).status_code == 404
    assert AccessLog.objects.filter(operation=AccessLog.Operation.VIEW, model="notifications.Notification").exists()


def test_counselor_cannot_see_the_outbox(client, counselor, outbox):
    client.force_login(counselor)
    assert client.get(reverse(CHANGELIST)).status_code == 403


def test_change_page_shows_a_rendered_preview(client, system_admin, outbox):
    client.force_login(system_admin)
    n = outbox.get(dedupe_key="a:0")
    response = client.get(reverse("admin:notifications_notification_change", args=[n.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    assert "Essay 0 vence el Oct 15" in content  # the Spanish subject, rendered


def test_preview_of_a_broken_message_says_why(client, system_admin, counselor):
    notifications_enqueue([NotificationRequest(recipient_id=counselor.pk, category="system", channel="email",
                                               template="system", context={"headline": "x"}, dedupe_key="broken")])
    client.force_login(system_admin)
    n = Notification.objects.get()
    content = client.get(reverse("admin:notifications_notification_change", args=[n.pk])).content.decode()
    assert "Cannot render: template variable &#x27;message&#x27; is missing" in content


def test_resend_failed_requeues_only_failed_rows(client, system_admin, outbox):
    client.force_login(system_admin)
    response = client.post(reverse(CHANGELIST), {
        "action": "resend_failed", "_selected_action": [n.pk for n in outbox],
    }, follow=True)
    assert response.status_code == 200
    assert "1 failed message(s) queued again. 2 not failed, left alone." in response.content.decode()
    resent = Notification.objects.get(dedupe_key="a:2")
    assert (resent.status, resent.attempts, resent.status_reason) == (Status.PENDING, 0, "resend requested")


def test_command_drains(counselor, capsys):
    notifications_enqueue([NotificationRequest(recipient_id=counselor.pk, category="system", channel="email",
                                               template="system", context={"headline": "x", "message": "y"}, dedupe_key="c")])
    call_command("notifications", "drain", "--batch-size", "5")
    assert "'sent': 1" in capsys.readouterr().out
    assert Notification.objects.get().status == Status.SENT


@pytest.mark.parametrize("args, message", [
    (["drain", "--batch-size", "0"], "expected a whole number >= 1, got '0'"),
    (["drain", "--max-batches", "many"], "expected a whole number >= 1, got 'many'"),
    (["assemble", "--frequency", "hourly"], "--frequency must be daily or weekly, not 'hourly'"),
])
def test_command_bad_input_exits_2_with_one_line(db, args, message):
    with pytest.raises(CommandError) as err:
        call_command("notifications", *args)
    assert str(err.value) == message and err.value.returncode == 2
