"""Delivery: a real SMTP server, anymail's test backend, and FCM through firebase-admin
against a local HTTP server; retries, permanent failures and bad input."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail

from notifications.delivery import MAX_ATTEMPTS, backoff, drain_batch
from notifications.mail import message_id_for
from notifications.models import Notification, RecipientProfile, Status
from notifications.push import collapse_id
from notifications.services import NotificationRequest, notifications_enqueue
from students.models import DeviceToken
from tests import factories as f
from tests.notifications.conftest import fcm_error

NOON = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _noon():
    with time_machine.travel(NOON, tick=False):
        yield


def enqueue(user, *, key="k", channel="email", template="assignment-reminder", context=None, student=None, category="assignment-reminder", priority="normal"):
    ctx = {"assignment_title": "Essay <1>", "course_name": "English", "due_date": "Oct 15"} if context is None else context
    notifications_enqueue([NotificationRequest(
        recipient_id=user.pk, category=category, channel=channel, template=template, context=ctx,
        dedupe_key=key, student_id=student.pk if student else None, priority=priority)])
    return Notification.objects.get(dedupe_key=key)


# --- email over real SMTP ----------------------------------------------------------------

def test_smtp_delivery_text_html_language_and_message_id(family, smtp_server):
    n = enqueue(family["guardian"], student=family["student"])

    summary = drain_batch(worker="w1")

    assert summary.as_dict()["sent"] == 1
    [msg] = smtp_server.messages
    assert msg["To"] == "ana@example.org"
    assert msg["Subject"] == "Essay <1> vence el Oct 15"
    assert msg["Message-ID"] == message_id_for("k")
    assert msg["X-SkillCore-Dedupe-Key"] == "k"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in msg.walk() if not p.is_multipart()}
    assert "Maria todavía no ha entregado Essay <1>" in parts["text/plain"]
    assert "<strong>Essay &lt;1&gt;</strong>" in parts["text/html"]  # HTML is escaped
    n.refresh_from_db()
    assert (n.status, n.attempts, n.provider_message_id, n.sent_at) == (Status.SENT, 1, message_id_for("k"), NOON)


def test_smtp_transient_refusal_retries_with_backoff_then_gives_up(counselor, smtp_server):
    smtp_server.refuse[counselor.email] = "451 4.7.1 greylisted"
    n = enqueue(counselor, template="system", category="system", context={"headline": "Hi", "message": "Test"})
    now = NOON
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert drain_batch(now=now).claimed == 1
        n.refresh_from_db()
        if attempt < MAX_ATTEMPTS:
            assert (n.status, n.attempts, n.send_after) == (Status.PENDING, attempt, now + backoff(attempt))
            assert drain_batch(now=n.send_after - dt.timedelta(seconds=1)).claimed == 0  # not early
            now = n.send_after
    assert n.status == Status.FAILED
    assert n.status_reason.startswith(f"gave up after {MAX_ATTEMPTS} attempts: recipient temporarily refused")
    assert [backoff(a).total_seconds() for a in (1, 2, 3, 4)] == [60, 120, 240, 480]


def test_smtp_permanent_refusal_fails_and_marks_the_address_bouncing(counselor, smtp_server):
    smtp_server.refuse[counselor.email] = "550 5.1.1 no such user"
    n = enqueue(counselor, template="system", category="system", context={"headline": "Hi", "message": "Test"})
    drain_batch()
    n.refresh_from_db()
    assert n.status == Status.FAILED and "SMTP 550" in n.status_reason
    assert RecipientProfile.objects.get(user=counselor).email_status == "bouncing"
    # Later messages skip the bouncing channel.
    later = enqueue(counselor, key="k2", template="system", category="system", context={"headline": "Hi", "message": "x"})
    assert (later.status, later.status_reason) == (Status.SUPPRESSED, "email-bouncing")


def test_smtp_server_down_is_transient(counselor, settings, smtp_server):
    from tests.notifications.conftest import free_port

    settings.EMAIL_PORT = free_port()  # nothing listens there
    n = enqueue(counselor, template="system", category="system", context={"headline": "Hi", "message": "x"})
    drain_batch()
    n.refresh_from_db()
    assert n.status == Status.PENDING and "unreachable" in n.status_reason


# --- bad input: one message fails with a clear reason, the batch goes on -------------------

def test_bad_input_fails_each_message_alone(family, counselor, smtp_server):
    bad_email = f.UserFactory(email="not-an-address")
    missing_var = enqueue(counselor, key="missing", template="system", category="system", context={"headline": "Hi"})
    no_template = enqueue(counselor, key="no-template", template="no-such-template", category="system", context={})
    invalid = enqueue(bad_email, key="bad-email", template="system", category="system", context={"headline": "Hi", "message": "x"})
    good = enqueue(family["guardian"], key="good", student=family["student"])

    summary = drain_batch()

    assert (summary.sent, summary.failed) == (1, 3)
    reasons = dict(Notification.objects.values_list("dedupe_key", "status_reason"))
    assert reasons["missing"] == "template variable 'message' is missing from the context"
    assert reasons["no-template"] == "no template notifications/no-such-template.en.subject.txt"
    assert reasons["bad-email"] == "invalid email address 'not-an-address'"
    assert Notification.objects.get(pk=good.pk).status == Status.SENT
    assert len(smtp_server.messages) == 1
    for n in (missing_var, no_template, invalid):
        n.refresh_from_db()
        assert n.status == Status.FAILED


# --- anymail (ESP payload, the idempotency key) --------------------------------------------

def test_anymail_payload_carries_the_dedupe_key(family, settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    enqueue(family["guardian"], key="iep:42:30:ana", student=family["student"])
    drain_batch()
    [msg] = mail.outbox
    params = msg.anymail_test_params
    assert params["metadata"] == {"dedupe_key": "iep:42:30:ana", "notification_id": str(Notification.objects.get().pk)}
    assert params["tags"] == ["assignment-reminder"]
    assert params["extra_headers"]["Message-ID"] == message_id_for("iep:42:30:ana")
    n = Notification.objects.get()
    assert n.status == Status.SENT and n.provider_message_id  # anymail's message id


@pytest.mark.filterwarnings("ignore:django-anymail has dropped official support for SendGrid")
def test_sendgrid_receives_the_dedupe_key_as_custom_args(family, settings, httpserver):
    # anymail's real SendGrid backend, its API URL pointed at a local HTTP server.
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {"SENDGRID_API_KEY": "SG.local-test", "SENDGRID_API_URL": httpserver.url_for("/v3/")}
    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_data("", status=202)
    n = enqueue(family["guardian"], key="grade:9:posted:ana", student=family["student"])

    drain_batch()

    [(request, _)] = httpserver.log
    payload = request.get_json()
    assert request.headers["Authorization"] == "Bearer SG.local-test"
    assert payload["custom_args"]["dedupe_key"] == "grade:9:posted:ana"
    assert payload["headers"]["Message-ID"] == message_id_for("grade:9:posted:ana")
    assert payload["categories"] == ["assignment-reminder"]
    n.refresh_from_db()
    assert n.status == Status.SENT and n.provider_message_id


@pytest.mark.filterwarnings("ignore:django-anymail has dropped official support for SendGrid")
def test_sendgrid_5xx_is_retried(family, settings, httpserver):
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {"SENDGRID_API_KEY": "SG.local-test", "SENDGRID_API_URL": httpserver.url_for("/v3/")}
    httpserver.expect_request("/v3/mail/send").respond_with_data("unavailable", status=503)
    n = enqueue(family["guardian"], student=family["student"])
    drain_batch()
    n.refresh_from_db()
    assert n.status == Status.PENDING and "email provider unavailable (503)" in n.status_reason


def test_anymail_api_errors_are_classified(family, settings):
    from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused

    from notifications.mail import classify

    assert classify(AnymailAPIError("boom", status_code=503)).kind == "retry"
    assert classify(AnymailAPIError("slow down", status_code=429)).kind == "retry"
    assert classify(AnymailAPIError("bad", status_code=400)).kind == "fail"
    out = classify(AnymailRecipientsRefused("refused"))
    assert out.kind == "fail" and out.bounce


# --- push through firebase-admin against a local FCM ---------------------------------------

def test_push_goes_through_fcm_with_a_generic_body_and_collapse_ids(family, fcm):
    token = f.DeviceTokenFactory(user=family["guardian"], token="t" * 150)
    n = enqueue(family["guardian"], channel="push", student=family["student"], priority="high")

    assert drain_batch().sent == 1

    [call] = fcm.received
    assert call["auth"] == "Bearer local-test-token"  # a token from the local token endpoint
    m = call["json"]["message"]
    assert m["token"] == token.token
    assert m["notification"] == {"title": "SkillCore", "body": "Nueva actualización sobre Maria — abra la aplicación"}
    assert m["data"] == {"notification_id": str(n.pk), "category": "assignment-reminder", "student_id": str(family["student"].pk)}
    assert m["android"]["collapse_key"] == collapse_id("k") == m["android"]["notification"]["tag"]
    assert m["android"]["priority"] == "high"
    assert m["apns"]["headers"]["apns-collapse-id"] == collapse_id("k")
    assert "validate_only" not in call["json"]
    n.refresh_from_db()
    assert n.status == Status.SENT and n.provider_message_id.startswith("projects/skillcore-test/messages/")


def test_unregistered_tokens_are_deactivated_and_a_live_one_still_receives(family, fcm):
    dead = f.DeviceTokenFactory(user=family["guardian"], token="d" * 150)
    live = f.DeviceTokenFactory(user=family["guardian"], token="l" * 150)
    fcm.behaviour[dead.token] = fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
    enqueue(family["guardian"], channel="push", student=family["student"])

    assert drain_batch().sent == 1
    dead.refresh_from_db()
    live.refresh_from_db()
    assert (dead.is_active, live.is_active) == (False, True)


def test_all_tokens_invalid_fails_with_the_reason(family, fcm):
    bad = f.DeviceTokenFactory(user=family["guardian"], token="b" * 150)
    fcm.behaviour[bad.token] = fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
                                         "The registration token is not a valid FCM registration token")
    n = enqueue(family["guardian"], channel="push", student=family["student"])
    drain_batch()
    n.refresh_from_db()
    bad.refresh_from_db()
    assert n.status == Status.FAILED and n.status_reason.startswith("device token rejected")
    assert bad.is_active is False


def test_a_malformed_token_fails_without_calling_fcm(family, fcm):
    bad = f.DeviceTokenFactory(user=family["guardian"], token="not a token!")
    n = enqueue(family["guardian"], channel="push", student=family["student"])
    drain_batch()
    n.refresh_from_db()
    bad.refresh_from_db()
    assert (n.status, n.status_reason) == (Status.FAILED, "malformed device token")
    assert bad.is_active is False and fcm.received == []


def test_fcm_unavailable_is_retried(family, fcm):
    token = f.DeviceTokenFactory(user=family["guardian"], token="u" * 150)
    fcm.behaviour[token.token] = fcm_error(502, "UNAVAILABLE", None, "bad gateway")
    n = enqueue(family["guardian"], channel="push", student=family["student"])
    drain_batch()
    n.refresh_from_db()
    assert n.status == Status.PENDING and n.attempts == 1 and "FCM temporarily unavailable" in n.status_reason
    del fcm.behaviour[token.token]
    assert drain_batch(now=n.send_after).sent == 1
    assert DeviceToken.objects.get(pk=token.pk).is_active


def test_push_dry_run_is_passed_to_fcm(family, fcm, settings):
    settings.FCM_DRY_RUN = True
    f.DeviceTokenFactory(user=family["guardian"], token="r" * 150)
    enqueue(family["guardian"], channel="push", student=family["student"])
    drain_batch()
    assert fcm.received[0]["json"]["validate_only"] is True


def test_push_without_credentials_waits_and_the_batch_goes_on(family, counselor, settings, tmp_path, smtp_server):
    from notifications import push

    settings.FCM_CREDENTIALS_FILE = str(tmp_path / "missing.json")
    push.reset_firebase_app()
    f.DeviceTokenFactory(user=family["guardian"], token="m" * 150)
    p = enqueue(family["guardian"], key="p", channel="push", student=family["student"])
    e = enqueue(counselor, key="e", template="system", category="system", context={"headline": "Hi", "message": "x"})
    summary = drain_batch()
    p.refresh_from_db()
    e.refresh_from_db()
    assert (summary.sent, summary.retried) == (1, 1)
    assert p.status == Status.PENDING and p.error.startswith("FCM not configured")
    assert e.status == Status.SENT
    push.reset_firebase_app()
