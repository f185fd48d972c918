"""SMS: the twilio library's REST client against a local Twilio-compatible HTTP server;
numbers and consent, the enqueue rules, claim/retry/settle once, quiet hours, what a text
may say, and the signed STOP/START webhook."""
from __future__ import annotations

import datetime as dt
import logging

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from twilio.request_validator import RequestValidator

from notifications.delivery import MAX_ATTEMPTS, OUTBOX, backoff, claim_batch, drain_batch
from notifications.models import (
    Notification,
    NotificationCounter,
    NotificationPreference,
    RecipientProfile,
    SmsConsentEvent,
    Status,
)
from notifications.rendering import MAX_BODY
from notifications.services import NotificationRequest, notifications_enqueue, recipient_sms_consent_record
from tests import factories as f
from tests.notifications.conftest import TWILIO_FROM, TWILIO_SID, TWILIO_TOKEN, twilio_error

NOON = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)  # 12:00 in New York
NIGHT = dt.datetime(2026, 10, 15, 3, 30, tzinfo=dt.UTC)  # 23:30 in New York
ANA = "+12025550143"
WEBHOOK = "/notifications/twilio/inbound"


@pytest.fixture(autouse=True)
def _noon():
    with time_machine.travel(NOON, tick=False):
        yield


def texting(user, *, number=ANA, consent=True, categories=("assignment-reminder",)):
    """Give ``user`` a mobile number, consent (by paper form) and SMS for ``categories``."""
    if consent:
        recipient_sms_consent_record(user_id=user.pk, mobile_number=number, method="paper-form")
    else:
        RecipientProfile.objects.update_or_create(user=user, defaults={"mobile_number": number})
    for category in categories:
        f.NotificationPreferenceFactory(user=user, category=category, channel="sms", frequency="immediately")


def enqueue(user, *, key="k", category="assignment-reminder", template="assignment-reminder", context=None, student=None,
            now=None):
    ctx = {"assignment_title": "Essay", "course_name": "English", "due_date": "Oct 15"} if context is None else context
    summary = notifications_enqueue([NotificationRequest(
        recipient_id=user.pk, category=category, channel="sms", template=template, context=ctx, dedupe_key=key,
        student_id=student.pk if student else None, priority="high" if category.startswith("emergency") else "normal",
    )], now=now)
    return summary, Notification.objects.filter(dedupe_key=key).first()


def counted(channel="sms"):
    row = NotificationCounter.objects.filter(channel=channel).first()
    return (row.sent, row.failed) if row else (0, 0)


# --- numbers and consent ---------------------------------------------------------------------

@pytest.mark.parametrize("typed, stored", [("+1 (202) 555-0143", ANA), ("+44 7700 900123", "+447700900123")])
def test_a_number_is_stored_in_e164(family, typed, stored):
    profile = recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=typed, method="portal")
    profile.refresh_from_db()
    assert profile.mobile_number == stored and profile.sms_consent_method == "portal" and profile.sms_consent_at == NOON


@pytest.mark.parametrize("bad", ["2025550143", "+0202555014", "+1202555014399999", "call me", "+1-202-555-01x3"])
def test_a_number_that_is_not_e164_is_refused_and_nothing_is_written(family, bad):
    with pytest.raises(ValidationError) as exc:
        recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=bad, method="paper-form")
    assert "mobile_number" in exc.value.message_dict
    assert not RecipientProfile.objects.filter(user=family["guardian"]).exclude(mobile_number="").exists()


def test_consent_needs_both_when_and_how(family):
    p = RecipientProfile(user=family["guardian"], mobile_number=ANA, sms_consent_at=NOON)
    with pytest.raises(ValidationError, match="when and how"):
        p.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        p.save()  # the database refuses it too


def test_an_unknown_consent_method_is_refused(family):
    with pytest.raises(ValidationError):
        recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=ANA, method="guessed")
    assert not RecipientProfile.objects.filter(user=family["guardian"]).exists()


def test_sms_preferences_are_immediate_or_never(family):
    pref = NotificationPreference(user=family["guardian"], category="assignment-reminder", channel="sms", frequency="daily")
    with pytest.raises(ValidationError, match="immediately or never"):
        pref.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        pref.save()


def test_choosing_a_category_by_sms_needs_consent_first(family):
    pref = NotificationPreference(user=family["guardian"], category="assignment-reminder", channel="sms", frequency="immediately")
    with pytest.raises(ValidationError, match="consent to texts"):
        pref.full_clean()
    NotificationPreference(user=family["guardian"], category="assignment-reminder", channel="sms", frequency="never").full_clean()
    recipient_sms_consent_record(user_id=family["guardian"].pk, mobile_number=ANA, method="verbal")
    pref.full_clean()


def test_the_admin_refuses_a_bad_number_with_a_form_error(client, system_admin, family):
    client.force_login(system_admin)
    response = client.post("/admin/notifications/recipientprofile/add/", {
        "user": family["guardian"].pk, "language": "es", "email_status": "ok", "mobile_number": "555-0143",
    })
    assert response.status_code == 200 and "E.164" in response.content.decode()
    assert not RecipientProfile.objects.exists()


def test_the_admin_stores_a_typed_number_in_e164_and_finds_it(client, system_admin, family):
    client.force_login(system_admin)
    response = client.post("/admin/notifications/recipientprofile/add/", {
        "user": family["guardian"].pk, "language": "es", "email_status": "ok", "mobile_number": "+1 (202) 555-0143",
        "sms_consent_at_0": "2026-10-14", "sms_consent_at_1": "12:00:00", "sms_consent_method": "paper-form",
    })
    assert response.status_code == 302, response.context["adminform"].form.errors
    profile = RecipientProfile.objects.get(user=family["guardian"])
    assert profile.mobile_number == ANA and profile.sms_consent_method == "paper-form"
    # Consent recorded by staff is in the history, shown on the profile's page.
    assert list(SmsConsentEvent.objects.values_list("action", "method", "mobile_number")) == [("opt-in", "paper-form", ANA)]
    page = client.get(f"/admin/notifications/recipientprofile/{profile.pk}/change/")
    assert "Opted in · paper-form · +12025550143" in page.content.decode()
    found = client.get("/admin/notifications/recipientprofile/", {"q": ANA})
    assert found.status_code == 200 and "ana" in found.content.decode()


# --- who gets a text ---------------------------------------------------------------------------

def test_sms_is_opt_in_per_category_and_needs_consent(family):
    guardian = family["guardian"]
    assert enqueue(guardian, key="a")[1].status_reason == "no-mobile-number"
    texting(guardian, consent=False, categories=["assignment-reminder"])
    assert enqueue(guardian, key="b")[1].status_reason == "sms-no-consent"
    recipient_sms_consent_record(user_id=guardian.pk, mobile_number=ANA, method="paper-form")
    assert enqueue(guardian, key="c")[1].status == Status.PENDING
    # Consent to texts is not every category: without a row choosing SMS, none.
    assert enqueue(guardian, key="d", category="iep-reminder")[1].status_reason == "preference-never"


def test_emergencies_reach_any_number_on_file_despite_no_consent_and_stop(family):
    guardian = family["guardian"]
    RecipientProfile.objects.create(user=guardian, mobile_number=ANA, sms_opted_out_at=NOON)
    _, n = enqueue(guardian, key="e", category="emergency", template="emergency",
                   context={"headline": "Lakeside: Lockdown", "message": "Students are safe inside.", "scenario": "lockdown"})
    assert n.status == Status.PENDING
    assert enqueue(guardian, key="f")[1].status_reason == "sms-opted-out"


# --- delivery through the local Twilio ---------------------------------------------------------

def test_a_text_goes_through_twilio_and_keeps_its_message_sid(family, twilio):
    texting(family["guardian"])
    _, n = enqueue(family["guardian"], student=family["student"])
    summary = drain_batch(worker="w1")
    n.refresh_from_db()
    assert summary.sent == 1 and n.status == Status.SENT and n.provider_message_id.startswith("SM")
    [request] = twilio.received
    assert request["form"]["To"] == ANA and request["form"]["From"] == TWILIO_FROM
    assert request["auth"].username == TWILIO_SID and request["auth"].password == TWILIO_TOKEN
    # Spanish (the guardian's link), generic, no figures, within 320 characters.
    assert request["form"]["Body"].startswith("SkillCore: hay una nueva actualización sobre Maria")
    assert counted() == (1, 0)
    assert drain_batch(worker="w2").claimed == 0 and len(twilio.received) == 1


def test_twilio_unavailable_retries_with_backoff_then_gives_up(family, twilio):
    texting(family["guardian"])
    twilio.behaviour[ANA] = [twilio_error(503, 20500, "Service unavailable")] * MAX_ATTEMPTS
    _, n = enqueue(family["guardian"])
    moment = NOON
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with time_machine.travel(moment, tick=False):
            drain_batch(worker=f"w{attempt}", now=moment)
        n.refresh_from_db()
        if attempt < MAX_ATTEMPTS:
            assert n.status == Status.PENDING and n.send_after == moment + backoff(attempt)
            assert n.status_reason.startswith(f"retry {attempt}/{MAX_ATTEMPTS}: Twilio unavailable (HTTP 503)")
            moment = n.send_after
    assert n.status == Status.FAILED and n.status_reason.startswith(f"gave up after {MAX_ATTEMPTS} attempts")
    assert len(twilio.received) == MAX_ATTEMPTS and counted() == (0, 1)


def test_a_retried_text_is_settled_and_counted_exactly_once(family, twilio):
    texting(family["guardian"])
    twilio.behaviour[ANA] = [twilio_error(500, 20500, "Internal error")]
    _, n = enqueue(family["guardian"])
    drain_batch(worker="w1", now=NOON)
    later = NOON + backoff(1)
    with time_machine.travel(later, tick=False):
        assert drain_batch(worker="w2", now=later).sent == 1
        assert drain_batch(worker="w3", now=later + dt.timedelta(hours=1)).claimed == 0
    n.refresh_from_db()
    assert n.status == Status.SENT and n.attempts == 2 and len(twilio.received) == 2
    assert [r["form"]["Body"] for r in twilio.received][0] == [r["form"]["Body"] for r in twilio.received][1]
    assert counted() == (1, 0)


def test_a_worker_whose_lease_ran_out_cannot_settle_a_reclaimed_text(family, twilio):
    texting(family["guardian"])
    _, n = enqueue(family["guardian"])
    assert claim_batch(worker="slow", limit=10, now=NOON) == [n.id]  # then it stalls
    later = NOON + dt.timedelta(minutes=11)
    with time_machine.travel(later, tick=False):
        assert drain_batch(worker="fast", now=later).sent == 1
    assert not OUTBOX.settle(n.id, owner="slow", status=Status.FAILED, counted=lambda s: pytest.fail("counted twice"))
    n.refresh_from_db()
    assert n.status == Status.SENT and n.claimed_by == "fast" and counted() == (1, 0) and len(twilio.received) == 1


@pytest.mark.parametrize("code, reason", [(21211, "invalid number"), (21610, "unsubscribed at Twilio (STOP)"),
                                          (21614, "not a mobile number")])
def test_a_number_twilio_refuses_fails_at_once(family, twilio, code, reason):
    texting(family["guardian"])
    twilio.behaviour[ANA] = [twilio_error(400, code, "refused")]
    _, n = enqueue(family["guardian"])
    drain_batch(worker="w1")
    n.refresh_from_db()
    assert n.status == Status.FAILED and reason in n.status_reason and f"code {code}" in n.error and n.attempts == 1
    assert counted() == (0, 1)


def test_without_twilio_settings_texts_wait_and_the_batch_goes_on(family, counselor, settings, smtp_server):
    settings.TWILIO_ACCOUNT_SID = ""
    texting(family["guardian"])
    _, text = enqueue(family["guardian"])
    notifications_enqueue([NotificationRequest(
        recipient_id=counselor.pk, category="system", channel="email", template="assignment-reminder",
        context={"assignment_title": "x", "course_name": "y", "due_date": "z"}, dedupe_key="mail",
        student_id=family["student"].pk)])
    summary = drain_batch(worker="w1")
    text.refresh_from_db()
    assert summary.sent == 1 and len(smtp_server.messages) == 1
    assert text.status == Status.PENDING and text.status_reason.startswith("retry 1/5: Twilio not configured")


# --- quiet hours and what a text may say ------------------------------------------------------

def test_quiet_hours_hold_family_texts_but_not_emergencies(family, twilio):
    texting(family["guardian"])
    _, ordinary = enqueue(family["guardian"], key="ordinary", student=family["student"], now=NIGHT)
    _, emergency = enqueue(family["guardian"], key="lockdown", category="emergency", template="emergency", now=NIGHT,
                           context={"headline": "Lakeside: Lockdown", "message": "Stay away from the school.", "scenario": "lockdown"})
    assert ordinary.status == Status.DEFERRED
    assert ordinary.send_after == dt.datetime(2026, 10, 15, 11, 0, tzinfo=dt.UTC)  # 07:00 EDT
    assert emergency.status == Status.PENDING and emergency.send_after == NIGHT
    with time_machine.travel(NIGHT, tick=False):
        drain_batch(worker="night", now=NIGHT)
    assert [r["form"]["Body"] for r in twilio.received] == ["Lakeside: Lockdown: Stay away from the school."]
    with time_machine.travel(ordinary.send_after, tick=False):
        assert drain_batch(worker="morning", now=ordinary.send_after).sent == 1


def test_a_long_emergency_is_cut_to_320_characters(family, twilio):
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    message = "Students are safe inside the building and will stay there until police clear the area. " * 6
    enqueue(family["guardian"], key="long", category="emergency", template="emergency",
            context={"headline": "Lakeside: Lockdown", "message": message, "scenario": "lockdown"})
    drain_batch(worker="w1")
    body = twilio.received[0]["form"]["Body"]
    assert len(body) <= MAX_BODY == 320 and body.endswith("…") and body.startswith("Lakeside: Lockdown: Students are safe")


def test_a_text_carrying_a_grade_figure_fails_instead_of_going_out(family, twilio):
    texting(family["guardian"], categories=["system"])
    _, n = enqueue(family["guardian"], key="leak", category="system", template="emergency",
                   context={"headline": "Maria", "message": "scored 85% in Algebra (17/20)", "scenario": "broadcast"})
    drain_batch(worker="w1")
    n.refresh_from_db()
    assert n.status == Status.FAILED and "may not carry grade or attendance figures (85%, 17/20)" in n.status_reason
    assert twilio.received == []


def test_the_grade_digest_text_names_the_child_but_no_score(family, twilio):
    texting(family["guardian"], categories=["grade-digest"])
    enqueue(family["guardian"], key="gd", category="grade-digest", template="grade-digest", student=family["student"],
            context={"grades": [{"course": "Algebra", "score": "17", "maximum": "20", "percentage": "85.0"}]})
    drain_batch(worker="w1")
    body = twilio.received[0]["form"]["Body"]
    assert "Maria" in body and not any(ch.isdigit() for ch in body)


# --- STOP and START through the signed webhook ----------------------------------------------------

def signed_post(client, params: dict, *, token=TWILIO_TOKEN, url=f"http://testserver{WEBHOOK}"):
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(WEBHOOK, params, HTTP_X_TWILIO_SIGNATURE=signature)


def reply(body: str, number=ANA, account=TWILIO_SID) -> dict:
    return {"MessageSid": "SM" + "1" * 32, "AccountSid": account, "From": number, "To": TWILIO_FROM, "Body": body,
            "NumMedia": "0"}


def test_stop_opts_out_of_all_but_emergencies_and_start_opts_back_in(client, family, twilio):
    guardian = family["guardian"]
    texting(guardian, categories=["assignment-reminder", "grade-digest"])
    _, queued = enqueue(guardian, key="queued-before-stop", student=family["student"], now=NIGHT)
    assert queued.status == Status.DEFERRED  # held by quiet hours
    response = signed_post(client, reply(" stop "))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
    profile = RecipientProfile.objects.get(user=guardian)
    assert profile.sms_opted_out_at == NOON and profile.sms_consent_method == "paper-form"
    # The next grade digest: not texted.
    assert enqueue(guardian, key="next-digest", category="grade-digest", template="grade-digest",
                   student=family["student"], context={})[1].status_reason == "sms-opted-out"
    # A text queued before STOP is held back when its time comes.
    morning = queued.send_after
    with time_machine.travel(morning, tick=False):
        assert drain_batch(worker="w1", now=morning).suppressed == 1
    queued.refresh_from_db()
    assert queued.status == Status.SUPPRESSED and queued.status_reason == "sms-opted-out" and twilio.received == []
    # Emergencies still go.
    assert enqueue(guardian, key="em", category="emergency", template="emergency",
                   context={"headline": "h", "message": "m", "scenario": "lockdown"})[1].status == Status.PENDING
    assert signed_post(client, reply("START")).status_code == 200
    assert enqueue(guardian, key="after-start")[1].status == Status.PENDING
    assert counted() == (0, 0)
    # The history: the paper form, the STOP, the START; a second START changes and records nothing.
    history = list(SmsConsentEvent.objects.filter(user=guardian).order_by("id").values_list("action", "method"))
    assert history == [("opt-in", "paper-form"), ("opt-out", "text-stop"), ("opt-in", "text-start")]
    signed_post(client, reply("START"))
    assert SmsConsentEvent.objects.filter(user=guardian).count() == 3


def test_start_from_someone_who_never_consented_records_consent_by_text(client, family, twilio):
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    assert signed_post(client, reply("Start")).status_code == 200
    profile = RecipientProfile.objects.get(user=family["guardian"])
    assert profile.sms_consent_at == NOON and profile.sms_consent_method == "text-start"


def test_stop_reaches_every_profile_sharing_the_number(client, family, twilio):
    other = f.UserFactory(username="luis")
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    RecipientProfile.objects.create(user=other, mobile_number=ANA)
    signed_post(client, reply("UNSUBSCRIBE"))
    assert RecipientProfile.objects.filter(sms_opted_out_at=NOON).count() == 2
    assert set(SmsConsentEvent.objects.values_list("user_id", "action")) == {(family["guardian"].pk, "opt-out"), (other.pk, "opt-out")}


@pytest.mark.parametrize("keyword", ["stop", "start"])
def test_a_reply_costs_the_same_queries_for_a_household_of_two_or_six(db, keyword):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications.services import sms_reply_apply

    def household(number, size):
        for _ in range(size):
            RecipientProfile.objects.create(user=f.UserFactory(), mobile_number=number,
                                            sms_opted_out_at=NOON if keyword == "start" else None)
        with CaptureQueriesContext(connection) as ctx:
            assert sms_reply_apply(mobile_number=number, keyword=keyword) == size
        return len(ctx.captured_queries)

    assert household("+12025550111", 2) == household("+12025550166", 6)


@pytest.mark.parametrize("case", ["unsigned", "wrong token", "tampered body", "other account"])
def test_a_bad_or_unknown_webhook_is_refused_logged_and_changes_nothing(client, family, twilio, caplog, case):
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    params = reply("STOP")
    with caplog.at_level(logging.WARNING, logger="notifications.webhooks"):
        if case == "unsigned":
            response = client.post(WEBHOOK, params)
        elif case == "wrong token":
            response = signed_post(client, params, token="not-our-token")
        elif case == "tampered body":
            signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"http://testserver{WEBHOOK}", reply("hello"))
            response = client.post(WEBHOOK, params, HTTP_X_TWILIO_SIGNATURE=signature)
        else:
            response = signed_post(client, reply("STOP", account="AC" + "9" * 32))
    assert response.status_code == 403
    assert "twilio inbound webhook refused" in caplog.text
    assert RecipientProfile.objects.get(user=family["guardian"]).sms_opted_out_at is None


def test_the_webhook_answers_only_post(client, twilio):
    assert client.get(WEBHOOK).status_code == 405


def test_any_other_reply_changes_nothing(client, family, twilio):
    RecipientProfile.objects.create(user=family["guardian"], mobile_number=ANA)
    assert signed_post(client, reply("please stop sending me these")).status_code == 200
    assert RecipientProfile.objects.get(user=family["guardian"]).sms_opted_out_at is None


def test_two_drainers_text_each_message_once(transactional_db, pg_only, district, school, twilio, httpserver):
    """Two drainers at once on PostgreSQL (SKIP LOCKED): every text reaches Twilio once, is
    settled once and counted once."""
    import threading

    from django.db import connections

    from notifications.delivery import drain

    people = [f.UserFactory(username=f"parent{i}") for i in range(40)]
    for i, person in enumerate(people):
        RecipientProfile.objects.create(user=person, mobile_number=f"+120255501{i:02d}")
    notifications_enqueue(NotificationRequest(
        recipient_id=p.pk, category="emergency", channel="sms", template="emergency", priority="high",
        context={"headline": "Lakeside", "message": "Stay home today.", "scenario": "school-closure"},
        dedupe_key=f"em:{p.pk}:sms") for p in people)
    barrier, totals = threading.Barrier(2), {}

    def run(name):
        try:
            barrier.wait()
            totals[name] = drain(batch_size=5, worker=name)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(f"drainer-{i}",)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    numbers = [r["form"]["To"] for r in twilio.received]
    assert len(numbers) == 40 and len(set(numbers)) == 40
    assert totals["drainer-1"].sent + totals["drainer-2"].sent == 40
    assert set(Notification.objects.values_list("status", "attempts")) == {(Status.SENT, 1)}
    assert len(set(Notification.objects.values_list("provider_message_id", flat=True))) == 40
    assert counted() == (40, 0)
