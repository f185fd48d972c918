"""SMS beside the happy path: numbers written with other scripts' digits or one digit too
many, the STOP and START words as people type them, the webhook's signature behind a
TLS-terminating proxy, the 320-character boundary, and a retried family text that would
land in quiet hours."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError
from twilio.request_validator import RequestValidator

from notifications.delivery import backoff, drain_batch
from notifications.models import Notification, RecipientProfile, SmsConsentEvent, Status
from notifications.rendering import ELLIPSIS, MAX_BODY, fit
from notifications.services import (
    NotificationRequest,
    notifications_enqueue,
    recipient_sms_consent_record,
    sms_reply_keyword,
)
from tests import factories as f
from tests.notifications.conftest import TWILIO_FROM, TWILIO_SID, TWILIO_TOKEN, twilio_error

NOON = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)  # 12:00 in New York
ANA = "+12025550143"
WEBHOOK = "/notifications/twilio/inbound"


@pytest.fixture(autouse=True)
def _noon():
    with time_machine.travel(NOON, tick=False):
        yield


# --- numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    "+1٢٠٢٥٥٥٠١٤٣",  # Arabic-Indic digits: Python's \d takes them, Twilio and the webhook's From never carry them
    "+1２０２５５５０１４３",  # full-width digits
    "+1234567890123456",  # 16 digits: E.164 allows 15
    "0012025550143",  # the international prefix instead of "+"
])
def test_a_number_not_in_ascii_e164_is_refused(family, bad):
    with pytest.raises(ValidationError):
        recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=bad, method="paper-form")
    assert not RecipientProfile.objects.exclude(mobile_number="").exists()


def test_fifteen_digits_is_the_longest_number_taken(family):
    profile = recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number="+123 456 789 012 345",
                                           method="portal")
    assert profile.mobile_number == "+123456789012345"


def test_the_admin_refuses_a_number_in_other_digits_with_a_form_error(client, system_admin, family):
    client.force_login(system_admin)
    response = client.post("/admin/notifications/recipientprofile/add/", {
        "user": family["guardian"].pk, "language": "en", "email_status": "ok", "mobile_number": "+1٢٠٢٥٥٥٠١٤٣",
    })
    assert response.status_code == 200 and "E.164" in response.content.decode()
    assert not RecipientProfile.objects.exists()


# --- STOP and START as people type them -----------------------------------------------------

@pytest.mark.parametrize("body, keyword", [
    ("stop", "stop"), ("STOP ALL", "stop"), ("stop all", "stop"), ("  Stop  ", "stop"), ("stop\n", "stop"),
    ("UNSUBSCRIBE", "stop"), ("unsubscribe", "stop"), ("Cancel", "stop"), ("end", "stop"), ("quit", "stop"),
    ("start", "start"), (" START ", "start"), ("Unstop", "start"), ("yes", "start"),
    ("stop texting me about grades", None), ("stopping", None), ("", None), ("   ", None), ("restart", None),
])
def test_the_reply_words_ignore_case_and_spaces_and_nothing_else_matches(body, keyword):
    assert sms_reply_keyword(body) == keyword


def _signed(client, url: str, params: dict, **extra):
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    path = url.split("://", 1)[1].split("/", 1)[1]
    return client.post("/" + path, params, HTTP_X_TWILIO_SIGNATURE=signature, **extra)


def _reply(body: str) -> dict:
    return {"MessageSid": "SM" + "2" * 32, "AccountSid": TWILIO_SID, "From": ANA, "To": TWILIO_FROM, "Body": body}


@pytest.mark.parametrize("body", ["stop all", " Unsubscribe ", "STOP\n"])
def test_a_signed_stop_in_any_of_its_forms_opts_out(client, family, twilio, body):
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    assert _signed(client, f"http://testserver{WEBHOOK}", _reply(body)).status_code == 200
    assert RecipientProfile.objects.get(user=family["guardian"]).sms_opted_out_at == NOON


# --- the signature behind a proxy ----------------------------------------------------------------

def test_behind_a_tls_proxy_the_signature_is_checked_against_the_https_url_twilio_called(client, family, twilio, settings):
    """Twilio signs https://host/path; the proxy forwards plain http with X-Forwarded-Proto.
    With SECURE_PROXY_SSL_HEADER set, Django rebuilds the https URL and the signature holds."""
    settings.ALLOWED_HOSTS = ["skillcore.example.org"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    url = f"https://skillcore.example.org{WEBHOOK}"
    response = _signed(client, url, _reply("STOP"), HTTP_HOST="skillcore.example.org", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert RecipientProfile.objects.get(user=family["guardian"]).sms_opted_out_at == NOON


def test_behind_a_proxy_without_the_proxy_header_setting_every_reply_is_refused(client, family, twilio, settings, caplog):
    """Without SECURE_PROXY_SSL_HEADER Django rebuilds http://, which is not what Twilio
    signed: refused (and logged), nothing changes. The webhook's docstring says so."""
    settings.ALLOWED_HOSTS = ["skillcore.example.org"]
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    url = f"https://skillcore.example.org{WEBHOOK}"
    response = _signed(client, url, _reply("STOP"), HTTP_HOST="skillcore.example.org", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 403 and "bad signature" in caplog.text
    assert RecipientProfile.objects.get(user=family["guardian"]).sms_opted_out_at is None


def test_a_webhook_url_with_a_query_string_is_signed_with_it(client, family, twilio):
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    url = f"http://testserver{WEBHOOK}?district=3"
    assert _signed(client, url, _reply("STOP")).status_code == 200
    # The same signature for the URL without its query is not the one Twilio made.
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"http://testserver{WEBHOOK}", _reply("START"))
    assert client.post(f"{WEBHOOK}?district=3", _reply("START"), HTTP_X_TWILIO_SIGNATURE=signature).status_code == 403
    assert RecipientProfile.objects.get(user=family["guardian"]).sms_opted_out_at == NOON


# --- 320 characters -------------------------------------------------------------------------------

def test_a_body_of_exactly_320_characters_is_kept_and_321_is_cut():
    exact = ("word " * 64)[:MAX_BODY]
    assert len(exact) == MAX_BODY and fit(exact) == " ".join(exact.split())
    longer = "x" * (MAX_BODY + 1)
    assert len(fit(longer)) == MAX_BODY and fit(longer).endswith(ELLIPSIS)
    words = "absent " * 60
    assert len(fit(words)) <= MAX_BODY and fit(words).endswith("absent" + ELLIPSIS)


def test_a_family_text_with_a_very_long_title_goes_out_within_320_characters(family, twilio):
    recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=ANA, method="paper-form")
    f.NotificationPreferenceFactory(user=family["guardian"], category="assignment-reminder", channel="sms",
                                    frequency="immediately")
    notifications_enqueue([NotificationRequest(
        recipient_id=family["guardian"].pk, category="assignment-reminder", channel="sms", template="assignment-reminder",
        context={"assignment_title": "Essay on the Harlem Renaissance " * 15, "course_name": "English", "due_date": "Oct 15"},
        dedupe_key="long", student_id=family["student"].pk)])
    assert drain_batch(worker="w1").sent == 1
    body = twilio.received[0]["form"]["Body"]
    assert len(body) <= MAX_BODY


# --- quiet hours on a retry --------------------------------------------------------------------

def test_a_family_text_retried_into_quiet_hours_waits_for_the_morning(family, twilio):
    """Twilio down at 20:59:30 New York: the backoff would land at 21:0x, inside quiet hours; the
    retry is held to 07:00 instead, and an emergency retried at the same moment is not."""
    evening = dt.datetime(2026, 10, 15, 0, 59, 30, tzinfo=dt.UTC)  # 20:59:30 EDT
    recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=ANA, method="paper-form")
    f.NotificationPreferenceFactory(user=family["guardian"], category="assignment-reminder", channel="sms",
                                    frequency="immediately")
    twilio.behaviour[ANA] = [twilio_error(503, 20500, "down"), twilio_error(503, 20500, "down")]
    with time_machine.travel(evening, tick=False):
        notifications_enqueue([
            NotificationRequest(recipient_id=family["guardian"].pk, category="assignment-reminder", channel="sms",
                                template="assignment-reminder", dedupe_key="family", student_id=family["student"].pk,
                                context={"assignment_title": "Essay", "course_name": "English", "due_date": "Oct 15"}),
            NotificationRequest(recipient_id=family["guardian"].pk, category="emergency", channel="sms", template="emergency",
                                dedupe_key="em", priority="high",
                                context={"headline": "Lakeside", "message": "Closed tomorrow.", "scenario": "school-closure"}),
        ], now=evening)
        drain_batch(worker="w1", now=evening)
    ordinary, emergency = Notification.objects.get(dedupe_key="family"), Notification.objects.get(dedupe_key="em")
    assert emergency.status == Status.PENDING and emergency.send_after == evening + backoff(1)
    assert ordinary.send_after == dt.datetime(2026, 10, 15, 11, 0, tzinfo=dt.UTC)  # 07:00 EDT


# --- consent belongs to a number -----------------------------------------------------------------

def _change(client, profile, **fields):
    from django.utils import timezone

    shown = timezone.localtime(profile.sms_consent_at)  # as the change form shows it: unchanged
    data = {"user": profile.user_id, "language": "en", "email_status": "ok", "mobile_number": profile.mobile_number,
            "sms_consent_at_0": f"{shown:%Y-%m-%d}", "sms_consent_at_1": f"{shown:%H:%M:%S}", "sms_consent_method": "paper-form"}
    data.update(fields)
    return client.post(f"/admin/notifications/recipientprofile/{profile.pk}/change/", data)


def test_a_new_number_does_not_inherit_the_old_numbers_consent(client, system_admin, family):
    client.force_login(system_admin)
    profile = recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=ANA, method="paper-form")
    response = _change(client, profile, mobile_number="+1 202 555 0199")
    assert response.status_code == 200 and "consent on file was given for the old number" in response.content.decode()
    profile.refresh_from_db()
    assert profile.mobile_number == ANA
    assert list(SmsConsentEvent.objects.values_list("mobile_number", flat=True)) == [ANA]


def test_a_new_number_with_its_own_consent_or_none_is_saved(client, system_admin, family):
    client.force_login(system_admin)
    profile = recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=ANA, method="paper-form")
    response = _change(client, profile, mobile_number="+12025550199", sms_consent_at_0="2026-10-14",
                       sms_consent_at_1="11:30:00", sms_consent_method="verbal")
    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.mobile_number, profile.sms_consent_method) == ("+12025550199", "verbal")
    assert ("+12025550199", "verbal") in set(SmsConsentEvent.objects.values_list("mobile_number", "method"))
    # Emergencies only on another number: the consent cleared with the change.
    response = _change(client, profile, mobile_number="+12025550177", sms_consent_at_0="", sms_consent_at_1="",
                       sms_consent_method="")
    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.mobile_number, profile.sms_consent_at) == ("+12025550177", None)
