"""The DEBUG error page (technical_500_response) and the error e-mail never show a secret:
the Redis password (REDIS_URL, CACHES, Q_CLUSTER), the Slack webhook (setting, a local
variable, an exception message quoting its path), PagerDuty, e-mail, SendGrid, S3, FCM and
the database password (DATABASE_URL in the environment, as runserver passes it in META)."""
from __future__ import annotations

import sys

import pytest
from django.test import RequestFactory, override_settings
from django.views.debug import (
    SafeExceptionReporterFilter,
    get_default_exception_reporter_filter,
    technical_500_response,
)

from skillcore.error_reports import SecretsHiddenFilter

REDIS = "redis://:RedisPw-4f1c9a@127.0.0.1:6379/0"
SLACK = "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/WebhookPath7d3e"
SECRETS = {
    "redis password": "RedisPw-4f1c9a",
    "slack webhook path": "/services/T0SECRET1/B0SECRET2/WebhookPath7d3e",
    "slack webhook token": "WebhookPath7d3e",
    "pagerduty key": "PdRoutingKey-88a1",
    "email password": "SmtpPassword-19be",
    "sendgrid key": "SG.sendgridKey-5c2d",
    "s3 secret": "S3SecretAccess-7781",
    "fcm credentials": "fcm-service-account-3b9e.json",
    "database password": "DbPassword-a41f",
    "metrics token": "MetricsToken-6e0a",
}
SETTINGS = dict(
    DEBUG=True,
    REDIS_URL=REDIS,
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": REDIS}},
    Q_CLUSTER={"name": "skillcore", "redis": REDIS},
    SLACK_WEBHOOK_URL=SLACK,
    PAGERDUTY_ROUTING_KEY=SECRETS["pagerduty key"],
    EMAIL_HOST_PASSWORD=SECRETS["email password"],
    ANYMAIL={"SENDGRID_API_KEY": SECRETS["sendgrid key"]},
    ARCHIVE_S3_SETTINGS={"options": {"secret_key": SECRETS["s3 secret"], "bucket_name": "archive"}},
    FCM_CREDENTIALS_FILE="var/" + SECRETS["fcm credentials"],
    METRICS_TOKEN=SECRETS["metrics token"],
)


def send_alert():
    webhook = SLACK  # a local variable in a frame of the traceback
    raise ConnectionError(f"Max retries exceeded with url: {webhook.split('slack.com', 1)[1]} ({REDIS})")


def error_page(monkeypatch, accept: str) -> str:
    db_url = f"postgres://skillcore:{SECRETS['database password']}@db.internal:5432/skillcore"
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REDIS_URL", REDIS)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", SLACK)
    # runserver copies the process environment into every request's META.
    request = RequestFactory().get("/admin/", HTTP_ACCEPT=accept, DATABASE_URL=db_url, REDIS_URL=REDIS,
                                   SLACK_WEBHOOK_URL=SLACK)
    try:
        send_alert()
    except ConnectionError:
        response = technical_500_response(request, *sys.exc_info())
    assert response.status_code == 500
    return response.content.decode()


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_debug_page_shows_no_secret(monkeypatch, accept):
    with override_settings(**SETTINGS):
        page = error_page(monkeypatch, accept)
    leaked = {what: value for what, value in SECRETS.items() if value in page}
    assert leaked == {}
    # Still a useful page: the setting names, the hosts, the exception.
    assert "SLACK_WEBHOOK_URL" in page and "REDIS_URL" in page and "ConnectionError" in page
    assert "127.0.0.1:6379" in page and "db.internal:5432" in page


def test_the_project_uses_the_filter():
    assert isinstance(get_default_exception_reporter_filter(), SecretsHiddenFilter)


def test_django_s_own_filter_would_have_shown_them(monkeypatch):
    # The premise: without the project's reporter and filter, the same page leaks.
    with override_settings(**SETTINGS, DEFAULT_EXCEPTION_REPORTER="django.views.debug.ExceptionReporter",
                           DEFAULT_EXCEPTION_REPORTER_FILTER="django.views.debug.SafeExceptionReporterFilter"):
        get_default_exception_reporter_filter.cache_clear()
        try:
            assert type(get_default_exception_reporter_filter()) is SafeExceptionReporterFilter
            page = error_page(monkeypatch, "text/html")
        finally:
            get_default_exception_reporter_filter.cache_clear()
    assert SECRETS["redis password"] in page and SECRETS["slack webhook path"] in page
    assert SECRETS["database password"] in page
