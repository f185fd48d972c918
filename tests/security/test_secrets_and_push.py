"""Secrets never reach logs or stored rows, even when every delivery fails; push payloads
(shown on lock screens) carry no grades or attendance details."""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings
from django.utils import timezone

from notifications.delivery import drain_batch
from notifications.models import Notification
from notifications.push import build_message
from notifications.rendering import render_push, render_sms
from notifications.services import NotificationRequest, notifications_enqueue
from scheduling import runner
from scheduling.models import AlertDelivery, JobRun
from students.models import DeviceToken, Role
from tests import factories as f
from tests.notifications.conftest import fcm  # noqa: F401  (a local FCM and token endpoint)
from tests.observability.conftest import lakeside, obs_jobs  # noqa: F401
from tests.observability.jobs_for_tests import FAILING

MARKERS = {
    "SECRET_KEY": "MARKERsecretkey0123456789abcdefghijklmnopqrstuvwxyz",
    "SENDGRID_API_KEY": "SG.MARKERsendgridkey",
    "PAGERDUTY_ROUTING_KEY": "MARKERpagerdutyroutingkey",
    "METRICS_TOKEN": "MARKERmetricstoken",
    "SLACK_WEBHOOK_PATH": "MARKERslackwebhooksecret",
}


def _all_text(model) -> str:
    return "\n".join(json.dumps(row, default=str) for row in model.objects.values())


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:django-anymail has dropped official support for SendGrid")
def test_failing_email_push_and_alert_deliveries_never_log_or_store_a_secret(
    settings, httpserver, fcm, obs_jobs, lakeside, caplog, client, django_capture_on_commit_callbacks,  # noqa: F811
):
    settings.SECRET_KEY = MARKERS["SECRET_KEY"]
    settings.METRICS_TOKEN = MARKERS["METRICS_TOKEN"]
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {"SENDGRID_API_KEY": MARKERS["SENDGRID_API_KEY"], "SENDGRID_API_URL": httpserver.url_for("/v3/")}
    settings.PAGERDUTY_ROUTING_KEY = MARKERS["PAGERDUTY_ROUTING_KEY"]
    settings.PAGERDUTY_EVENTS_URL = httpserver.url_for("/v2/enqueue")
    settings.SLACK_WEBHOOK_URL = httpserver.url_for(f"/services/T0/B0/{MARKERS['SLACK_WEBHOOK_PATH']}")
    # Every provider is down or refuses us, in the ways that produce the longest errors.
    httpserver.expect_request("/v3/mail/send").respond_with_data('{"errors":[{"message":"The provided authorization grant is invalid"}]}', status=401)
    httpserver.expect_request("/v2/enqueue").respond_with_data("upstream unavailable", status=503)
    httpserver.expect_request(f"/services/T0/B0/{MARKERS['SLACK_WEBHOOK_PATH']}").respond_with_data("invalid_token", status=403)
    fcm.behaviour["a" * 152] = (503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "down"}})
    caplog.set_level(logging.DEBUG)
    traveller = time_machine.travel(dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC), tick=True)  # outside quiet hours
    traveller.start()

    school = f.SchoolFactory(district=lakeside)
    guardian = f.UserFactory(username="parent", roles=[Role.GUARDIAN])
    DeviceToken.objects.create(user=guardian, token="a" * 152, platform="android")
    student = f.StudentFactory(school=school)
    notifications_enqueue([
        NotificationRequest(recipient_id=guardian.pk, category="assignment-reminder", channel=channel,
                            template="assignment-reminder", context={"assignment_title": "Essay", "course_name": "English",
                                                                     "due_date": "Oct 15"},
                            dedupe_key=f"secret-test:{channel}", student_id=student.pk)
        for channel in ("email", "push")
    ])
    drain_batch()
    assert not Notification.objects.filter(status="sent").exists()

    # A critical job (PagerDuty) and a normal one (Slack) fail for good.
    FAILING.update({"obs-fail": True, "obs-warn": True})
    for slug in ("obs-fail", "obs-warn"):
        now = timezone.now()
        run = JobRun.objects.create(job=slug, district=lakeside, trigger="manual", slot=now, status="queued", enqueued_at=now)
        with django_capture_on_commit_callbacks(execute=True):
            assert runner.execute(run.pk).status == "failed"
    assert AlertDelivery.objects.filter(channel="pagerduty").exists() and AlertDelivery.objects.filter(channel="slack").exists()
    assert not AlertDelivery.objects.filter(status="sent").exists()
    # A scrape with a wrong token, one with the right one.
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {MARKERS['METRICS_TOKEN']}").status_code == 200

    # The secrets did reach the providers (so the test exercised them) ...
    sent = "\n".join(str(req.headers) + req.get_data(as_text=True) for req, _ in httpserver.log)
    assert MARKERS["SENDGRID_API_KEY"] in sent and MARKERS["PAGERDUTY_ROUTING_KEY"] in sent
    # ... and nowhere else.
    traveller.stop()
    # werkzeug's lines are the fake providers' own access log, not SkillCore's.
    logs = "\n".join(r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
                     for r in caplog.records if r.name != "werkzeug")
    stored = {
        "log": logs, "JobRun": _all_text(JobRun), "Notification": _all_text(Notification), "AlertDelivery": _all_text(AlertDelivery),
    }
    assert "failed" in stored["JobRun"] and stored["AlertDelivery"]
    leaks = [f"{name} in {where}" for name, marker in MARKERS.items() for where, text in stored.items() if marker in text]
    assert not leaks, leaks


# -- push payloads ----------------------------------------------------------------------------

TEMPLATE_DIR = Path(django_settings.BASE_DIR) / "templates" / "notifications"
# Figures a grade or attendance message could carry; none may appear on a lock screen.
SENSITIVE = {
    "score": 37, "points": 37, "max_score": 58, "percent": "63.8%", "percentage": 63.8, "grade": "63.8%",
    "letter_grade": "D", "average": 61.25, "threshold": "65%", "absences": 9, "absence_count": 9, "days_absent": 9,
    "tardies": 4, "attendance_rate": "81.7%", "rate": "81.7%", "drop": "12.4", "previous_average": 73.65,
    "current_average": 61.25, "missing_count": 3,
}
SENSITIVE_TEXT = re.compile(r"\d|%")


def _templates_and_context_names() -> dict[str, set[str]]:
    """Every notification template and the variable names its email and item parts use."""
    names: dict[str, set[str]] = {}
    for path in TEMPLATE_DIR.iterdir():
        name = path.name.split(".")[0]
        if name.startswith("_"):
            continue
        names.setdefault(name, set()).update(re.findall(r"{{\s*([a-z_]+)", path.read_text()))
    return names


def _poisoned_context(variables: set[str]) -> dict:
    ctx = {v: SENSITIVE.get(v, 42) for v in variables}
    ctx.update(SENSITIVE)
    item = {"template": "grade-posted", **SENSITIVE, "assignment_title": "Quiz 7", "course_name": "Algebra 2"}
    ctx.update({
        "student_first_name": "Maria", "child_names": ["Maria", "Leo"], "district_name": "Lakeside Unified",
        "scenario_label": "Severe weather drill", "children": [{"first_name": "Maria", "items": [item]}],
        "assignment_title": "Quiz 7", "course_name": "Algebra 2", "due_date": "Oct 15",
    })
    return ctx


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "es"])
def test_no_push_template_shows_a_grade_or_attendance_figure(language):
    guardian = f.UserFactory(first_name="Ana")
    checked = []
    for template, variables in sorted(_templates_and_context_names().items()):
        if template == "emergency":
            continue  # the headline and message are what the district admin typed; no student data
        n = Notification(pk=1, recipient=guardian, channel="push", category="general", template=template,
                         language=language, context=_poisoned_context(variables), dedupe_key="x")
        rendered = render_push(n)
        shown = f"{rendered.push_title}\n{rendered.push_body}"
        assert rendered.push_body, template
        assert not SENSITIVE_TEXT.search(shown), f"{template}.{language}: {shown!r}"
        checked.append(template)
    # Every template a job uses was rendered (most fall back to the generic push body).
    assert {"low-grade-alert", "performance-trend-alert", "attendance-intervention", "grade-digest",
            "assignment-reminder", "digest"} <= set(checked)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "es"])
def test_no_sms_template_shows_a_grade_or_attendance_figure(language):
    """Texts travel through carriers and sit on lock screens: like push, no figure, and at
    most 320 characters, whatever the context holds."""
    guardian = f.UserFactory(first_name="Ana")
    checked = []
    for template, variables in sorted(_templates_and_context_names().items()):
        if template == "emergency":
            continue  # the district admin's own words (cut to 320, never checked for figures)
        n = Notification(pk=1, recipient=guardian, channel="sms", category="general", template=template,
                         language=language, context=_poisoned_context(variables), dedupe_key="x")
        body = render_sms(n).sms_body
        assert body and len(body) <= 320, template
        assert not SENSITIVE_TEXT.search(body), f"{template}.{language}: {body!r}"
        checked.append(template)
    assert {"low-grade-alert", "attendance-intervention", "grade-digest", "assignment-reminder", "digest",
            "emergency-drill"} <= set(checked)


@pytest.mark.django_db
def test_the_fcm_message_data_carries_ids_only():
    guardian = f.UserFactory(first_name="Ana")
    student = f.StudentFactory()
    n = Notification(pk=77, recipient=guardian, channel="push", category="grade-digest", template="low-grade-alert",
                     language="en", context=_poisoned_context(set()), dedupe_key="low:1", student_id=student.pk, priority="high")
    message = build_message(n, render_push(n), "tok")
    assert message.data == {"notification_id": "77", "category": "grade-digest", "student_id": str(student.pk)}
    assert not SENSITIVE_TEXT.search(message.notification.title + message.notification.body)
