"""A run whose job did nothing it was meant to ends "succeeded with warnings": the reason in
its note, shown on the dashboard, alerted on (a Slack warning, never a page, even for a
critical job), never retried; the next plain success resolves the alert.

Real jobs through the real runner: the emergency test with an empty test group, the
attendance job with no current session; alerts to a real HTTP receiver on localhost."""
from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from scheduling import runner, services
from scheduling.models import Incident, JobRun, JobRunCounter
from students.models import AcademicSession
from tests import factories as f
from tests.observability.conftest import endpoints, received  # noqa: F401 (endpoints: a fixture)

SLACK, PD = "/slack/hook", "/v2/enqueue"
NOW = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)  # the first Monday of the quarter, 10:00 in New York
pytestmark = pytest.mark.django_db


@pytest.fixture
def lakeside(db):
    return f.DistrictFactory(name="Lakeside Unified", time_zone="America/New_York")


def run_now(slug, district, capture) -> JobRun:
    with time_machine.travel(NOW, tick=False), capture(execute=True):
        return runner.run_sync(job_slug=slug, district=district)


def test_an_emergency_test_that_reached_nobody_succeeds_with_warnings_and_alerts(
    lakeside, endpoints, django_capture_on_commit_callbacks,
):
    endpoints.expect_request(SLACK, method="POST").respond_with_data("ok")
    run = run_now("emergency-notification-test", lakeside, django_capture_on_commit_callbacks)

    assert run.status == JobRun.Status.WARNING and run.get_status_display() == "Succeeded with warnings"
    assert "emergency test group is empty" in run.note
    assert run.result["recipients"] == 0  # the job's summary is kept
    assert "WARNING" in run.log and "emergency test group is empty" in run.log
    assert not JobRun.objects.filter(retry_of=run).exists()  # nothing failed: no retry
    counter = JobRunCounter.objects.get(job=run.job, district=lakeside)
    assert (counter.executions, counter.failures) == (1, 0)

    incident = Incident.objects.get(resolved_at__isnull=True)
    assert (incident.kind, incident.severity, incident.run_id) == ("did-nothing", "warning", run.pk)
    # A critical job, but a warning: Slack hears it, PagerDuty does not page anyone.
    [slack] = received(endpoints, SLACK)
    assert "Emergency notification test succeeded with warnings for Lakeside Unified" in slack["text"]
    assert "emergency test group is empty" in slack["text"]
    assert received(endpoints, PD) == []

    # The next run that reaches the group is a plain success and resolves the warning.
    lakeside.emergency_test_group.add(f.UserFactory(email="drill@lakeside.example"))
    second = run_now("emergency-notification-test", lakeside, django_capture_on_commit_callbacks)
    assert second.status == JobRun.Status.SUCCEEDED and second.note != run.note
    assert not Incident.objects.filter(resolved_at__isnull=True).exists()


def test_no_current_session_succeeds_with_warnings(lakeside, django_capture_on_commit_callbacks):
    AcademicSession.objects.filter(district=lakeside).update(is_current=False)
    run = run_now("attendance-interventions", lakeside, django_capture_on_commit_callbacks)
    assert run.status == JobRun.Status.WARNING and "no current session" in run.note
    assert Incident.objects.get(kind="did-nothing", resolved_at__isnull=True).district == lakeside


def test_the_warning_and_its_reason_show_on_the_dashboard_and_in_the_cli(
    lakeside, system_admin, client, django_capture_on_commit_callbacks,
):
    with time_machine.travel(NOW, tick=False):
        services.sync_schedules()
    run = run_now("emergency-notification-test", lakeside, django_capture_on_commit_callbacks)
    client.force_login(system_admin)

    index = client.get(reverse("admin:scheduled_jobs")).content.decode()
    assert "succeeded with warnings" in index and "emergency test group is empty" in index
    page = client.get(reverse("admin:scheduled_jobs_run", args=[run.pk])).content.decode()
    assert 'data-status="warning"' in page and "succeeded with warnings" in page and run.note in page

    out = StringIO()
    call_command("jobs", "history", "emergency-notification-test", "--district", str(lakeside.pk), stdout=out)
    assert "succeeded with warnings" in out.getvalue() and "emergency test group is empty" in out.getvalue()
    out = StringIO()
    with time_machine.travel(NOW, tick=False):  # jobs run: a warning is not a failure (exit 0)
        call_command("jobs", "run", "emergency-notification-test", "--district", str(lakeside.pk), stdout=out)
    assert "succeeded with warnings" in out.getvalue()
