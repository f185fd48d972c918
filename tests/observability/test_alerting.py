"""Alerts end to end: real runs through the runner, real HTTP receivers on localhost
(pytest-httpserver) for PagerDuty and Slack, Django's locmem mail for role routing."""
from __future__ import annotations

import datetime as dt
import socket

from django.core import mail
from django.utils import timezone

from scheduling import registry, runner, services
from scheduling.models import AlertDelivery, Incident, JobRun
from scheduling.monitoring import alerting, alerts
from scheduling.registry import Job
from students.models import Role
from tests import factories as f
from tests.observability import jobs_for_tests
from tests.observability.conftest import received

PD = "/v2/enqueue"
SLACK = "/slack/hook"


def manual_run(slug: str, district, **fields) -> JobRun:
    now = timezone.now()
    return JobRun.objects.create(job=slug, district=district, trigger="manual", slot=now, status="queued",
                                 enqueued_at=now, **fields)


def execute(run: JobRun, capture) -> JobRun:
    """The real runner, with on_commit callbacks (the first delivery attempt) executed."""
    with capture(execute=True):
        return runner.execute(run.pk)


def accept(httpserver):
    httpserver.expect_request(PD, method="POST").respond_with_json({"status": "success", "message": "Event processed"}, status=202)
    httpserver.expect_request(SLACK, method="POST").respond_with_data("ok")


def closed_port_url(path: str) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more: connection refused
    return f"http://127.0.0.1:{port}{path}"


def test_critical_failure_pages_once_after_the_last_attempt_and_the_next_success_resolves(
    obs_jobs, lakeside, endpoints, django_capture_on_commit_callbacks,
):
    accept(endpoints)
    first = execute(manual_run("obs-flaky", lakeside), django_capture_on_commit_callbacks)
    assert first.status == "failed"
    assert received(endpoints, PD) == []  # attempt 1 of 2: a retry is scheduled, nobody is paged
    retry = JobRun.objects.get(retry_of=first)
    assert execute(retry, django_capture_on_commit_callbacks).status == "failed"

    [event] = received(endpoints, PD)
    key = f"skillcore/obs-flaky/{lakeside.pk}"
    assert event["routing_key"] == "R0UT1NGKEY"
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == key
    payload = event["payload"]
    assert payload["severity"] == "critical"
    assert payload["component"] == "obs-flaky" and payload["group"] == "Lakeside Unified" and payload["class"] == "failure"
    assert "Obs flaky failed for Lakeside Unified" in payload["summary"]
    assert "upstream down on attempt 2" in payload["summary"]
    assert payload["source"].startswith("skillcore@")
    assert payload["custom_details"]["run"] == retry.pk and payload["custom_details"]["attempt"] == 2
    assert dt.datetime.fromisoformat(payload["timestamp"])
    assert event["links"] == [{"href": f"https://skillcore.example/admin/scheduled-jobs/runs/{retry.pk}/",
                               "text": f"Run #{retry.pk}"}]
    assert received(endpoints, SLACK) == []  # critical goes to PagerDuty only

    # The same schedule failing again while the incident is open: seen again, no new page.
    with django_capture_on_commit_callbacks(execute=True):
        again = runner.run_sync(job_slug="obs-flaky", district=lakeside)
    assert again.status == "failed"
    assert len(received(endpoints, PD)) == 1
    incident = Incident.objects.get()
    assert (incident.kind, incident.occurrences, incident.resolved_at) == ("failure", 2, None)

    # The next success resolves it, with the same dedup key.
    jobs_for_tests.FAILING["obs-flaky"] = False
    assert execute(manual_run("obs-flaky", lakeside), django_capture_on_commit_callbacks).status == "succeeded"
    resolve = received(endpoints, PD)[-1]
    assert resolve == {"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": key}
    incident.refresh_from_db()
    assert incident.resolved_at is not None and "succeeded" in incident.resolution
    assert AlertDelivery.objects.filter(status="sent").count() == 2


def test_a_timeout_pages_with_its_own_class(obs_jobs, lakeside, endpoints, monkeypatch, django_capture_on_commit_callbacks):
    accept(endpoints)
    monkeypatch.setenv("OBS_SLOW_SECONDS", "3")
    registry.register(Job(slug="obs-timeout", title="Obs timeout", default_cron=None, why="test",
                          entry=jobs_for_tests.slow, critical=True, timeout=1, max_attempts=1))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run = runner.run_sync(job_slug="obs-timeout", district=lakeside)
    finally:
        registry.unregister("obs-timeout")
    assert run.status == "timed_out"
    [event] = received(endpoints, PD)
    assert event["payload"]["class"] == "timeout"
    assert "timed out" in event["payload"]["summary"]
    assert event["dedup_key"] == f"skillcore/obs-timeout/{lakeside.pk}"


def test_a_normal_jobs_failure_is_a_slack_warning_resolved_in_slack(
    obs_jobs, lakeside, endpoints, django_capture_on_commit_callbacks,
):
    accept(endpoints)
    assert execute(manual_run("obs-warn", lakeside), django_capture_on_commit_callbacks).status == "failed"
    assert received(endpoints, PD) == []
    [warning] = received(endpoints, SLACK)
    assert warning["text"].startswith(":warning: Obs warn failed for Lakeside Unified")
    assert "https://skillcore.example/admin/scheduled-jobs/runs/" in warning["text"]  # the run page, in words
    assert Incident.objects.get().severity == "warning"

    jobs_for_tests.FAILING["obs-warn"] = False
    assert execute(manual_run("obs-warn", lakeside), django_capture_on_commit_callbacks).status == "succeeded"
    assert received(endpoints, SLACK)[-1]["text"].startswith(":white_check_mark: Resolved: Obs warn failed")


def test_critical_alerts_fall_back_to_slack_without_a_pagerduty_key(
    obs_jobs, lakeside, endpoints, settings, django_capture_on_commit_callbacks,
):
    accept(endpoints)
    settings.PAGERDUTY_ROUTING_KEY = ""
    execute(manual_run("obs-fail", lakeside), django_capture_on_commit_callbacks)
    assert received(endpoints, PD) == []
    assert received(endpoints, SLACK)[0]["text"].startswith(":rotating_light: Obs fail failed")


def test_a_down_endpoint_is_retried_with_backoff_and_the_job_still_succeeds(
    obs_jobs, lakeside, endpoints, settings, django_capture_on_commit_callbacks,
):
    accept(endpoints)
    good_url = settings.SLACK_WEBHOOK_URL
    settings.SLACK_WEBHOOK_URL = closed_port_url(SLACK)
    settings.ALERTS_SLACK_RUN_EVENTS = ["obs-ok"]
    run = execute(manual_run("obs-ok", lakeside), django_capture_on_commit_callbacks)
    assert run.status == "succeeded" and run.result == {"items": 3}
    pending = list(AlertDelivery.objects.order_by("id"))
    assert [(d.channel, d.status, d.attempts) for d in pending] == [("slack", "pending", 1), ("slack", "pending", 1)]
    assert "ConnectionRefusedError" in pending[0].last_error or "refused" in pending[0].last_error.lower()
    first_retry = max(d.next_attempt_at for d in pending)

    # Too early: nothing is sent.
    assert alerting.deliver_due(now=first_retry - dt.timedelta(seconds=1)).sent == 0
    # Still down at the first retry: attempt 2, the delay doubles.
    report = alerting.deliver_due(now=first_retry)
    assert (report.sent, report.retrying) == (0, 2)
    d = AlertDelivery.objects.order_by("id").first()
    assert d.attempts == 2 and d.next_attempt_at == first_retry + alerting.backoff(2)
    # The endpoint is back.
    settings.SLACK_WEBHOOK_URL = good_url
    assert alerting.deliver_due(now=d.next_attempt_at).sent == 2
    texts = [b["text"] for b in received(endpoints, SLACK)]
    assert texts[0].startswith(":arrow_forward: Obs OK started for Lakeside Unified")
    assert texts[1].startswith(":white_check_mark: Obs OK succeeded for Lakeside Unified") and "Items: 3" in texts[1]
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_a_5xx_is_retried_a_4xx_is_not_and_attempts_are_bounded(obs_jobs, lakeside, endpoints, settings,
                                                                django_capture_on_commit_callbacks):
    endpoints.expect_oneshot_request(PD, method="POST").respond_with_data("busy", status=503)
    endpoints.expect_request(PD, method="POST").respond_with_json({"status": "success"}, status=202)
    execute(manual_run("obs-fail", lakeside), django_capture_on_commit_callbacks)
    d = AlertDelivery.objects.get()
    assert (d.status, d.attempts) == ("pending", 1) and "HTTP 503" in d.last_error
    alerting.deliver_due(now=d.next_attempt_at)
    d.refresh_from_db()
    assert (d.status, d.attempts) == ("sent", 2)
    assert [e["event_action"] for e in received(endpoints, PD)] == ["trigger", "trigger"]  # the 503'd one and the retry

    # A 400 (bad key or payload) fails at once; a dead endpoint gives up after ALERTS_MAX_ATTEMPTS.
    endpoints.clear()
    endpoints.expect_request(SLACK, method="POST").respond_with_data("invalid_payload", status=400)
    settings.PAGERDUTY_ROUTING_KEY = ""
    execute(manual_run("obs-warn", lakeside), django_capture_on_commit_callbacks)
    bad = AlertDelivery.objects.filter(channel="slack").get()
    assert (bad.status, bad.attempts) == ("failed", 1) and "HTTP 400" in bad.last_error

    settings.ALERTS_MAX_ATTEMPTS = 2
    settings.SLACK_WEBHOOK_URL = closed_port_url(SLACK)
    Incident.objects.update(resolved_at=timezone.now())
    execute(manual_run("obs-warn", lakeside), django_capture_on_commit_callbacks)
    dead = AlertDelivery.objects.filter(channel="slack").latest("id")
    assert (dead.status, dead.attempts) == ("pending", 1)
    alerting.deliver_due(now=dead.next_attempt_at)
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("failed", 2)


def test_an_alerting_error_never_fails_or_rolls_back_the_run(obs_jobs, lakeside, monkeypatch, django_capture_on_commit_callbacks):
    def broken(*args, **kwargs):
        raise RuntimeError("alerting is broken")

    monkeypatch.setattr(alerting, "on_job_failed", broken)
    monkeypatch.setattr(alerting, "on_run_finished", broken)
    run = execute(manual_run("obs-fail", lakeside), django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "RuntimeError: archive bucket unreachable"
    assert not Incident.objects.exists()


def test_missed_slots_page_once_and_the_catch_up_run_resolves(only_obs_jobs, lakeside, endpoints,
                                                              django_capture_on_commit_callbacks):
    accept(endpoints)
    start = dt.datetime(2026, 10, 5, 12, tzinfo=dt.UTC)
    services.sync_schedules(now=start)
    slot = dt.datetime(2026, 10, 6, 10, tzinfo=dt.UTC)  # 06:00 in New York (EDT)
    now = slot + dt.timedelta(days=2, hours=1)  # the scheduler was down two days; latest slot 1 h late
    with django_capture_on_commit_callbacks(execute=True):
        run = services.claim_slot(job_slug="obs-ok", district_id=lakeside.pk, slot=slot, now=now)
    assert run.trigger == "catch-up"
    assert JobRun.objects.filter(job="obs-ok", status="missed").count() == 2
    [event] = received(endpoints, PD)
    assert event["event_action"] == "trigger" and event["payload"]["class"] == "missed"
    assert event["dedup_key"] == f"skillcore/obs-ok/{lakeside.pk}"
    assert "Obs OK missed 2 slots, Tue 2026-10-06 06:00 EDT (UTC\u221204:00) (2026-10-06 10:00Z) to " \
           "Wed 2026-10-07 06:00 EDT (UTC\u221204:00) (2026-10-07 10:00Z) for Lakeside Unified" in event["payload"]["summary"]
    assert event["payload"]["custom_details"]["slots"] == [slot.isoformat(), (slot + dt.timedelta(days=1)).isoformat()]

    # The same outage seen by a second scheduler's claim: no second page.
    with django_capture_on_commit_callbacks(execute=True):
        assert services.claim_slot(job_slug="obs-ok", district_id=lakeside.pk, slot=slot, now=now) is None
    assert len(received(endpoints, PD)) == 1

    assert execute(run, django_capture_on_commit_callbacks).status == "succeeded"
    assert received(endpoints, PD)[-1]["event_action"] == "resolve"
    assert not Incident.objects.filter(resolved_at__isnull=True).exists()


def test_a_missed_slot_is_named_in_the_districts_local_time(only_obs_jobs, lakeside, endpoints,
                                                            django_capture_on_commit_callbacks):
    """People read alerts in the district's time: one slot missed in a New York district in
    winter names 06:00 EST with its offset, the UTC instant only in parentheses."""
    accept(endpoints)
    services.sync_schedules(now=dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC))
    slot = dt.datetime(2026, 12, 2, 11, tzinfo=dt.UTC)  # obs-ok: 06:00 in New York (EST)
    with django_capture_on_commit_callbacks(execute=True):
        alerting.on_slots_not_run(job_slug="obs-ok", district=lakeside, slots=[slot], status="missed",
                                  note="the scheduler was not running")
    [event] = received(endpoints, PD)
    assert event["payload"]["summary"] == (
        "Obs OK missed the slot of Wed 2026-12-02 06:00 EST (UTC\u221205:00) (2026-12-02 11:00Z) "
        "for Lakeside Unified: the scheduler was not running")
    assert Incident.objects.get(kind="missed").summary == event["payload"]["summary"]


def test_overlap_skips_alert_but_a_paused_schedules_skips_do_not(only_obs_jobs, lakeside, endpoints,
                                                                 django_capture_on_commit_callbacks):
    accept(endpoints)
    start = dt.datetime(2026, 10, 5, 12, tzinfo=dt.UTC)
    services.sync_schedules(now=start)
    slot = dt.datetime(2026, 10, 6, 12, tzinfo=dt.UTC)  # obs-fail: 07:00 in New York (critical)
    JobRun.objects.create(job="obs-fail", district=lakeside, trigger="manual", slot=slot - dt.timedelta(hours=5),
                          status="running", started_at=slot - dt.timedelta(minutes=1), deadline=slot + dt.timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.claim_slot(job_slug="obs-fail", district_id=lakeside.pk, slot=slot, now=slot) is None
    [event] = received(endpoints, PD)
    assert event["payload"]["class"] == "skipped" and "still running" in event["payload"]["summary"]
    assert "skipped the slot of Tue 2026-10-06 08:00 EDT (UTC\u221204:00) (2026-10-06 12:00Z)" in event["payload"]["summary"]

    schedule = lakeside.job_schedules.get(job="obs-warn")
    services.pause_schedule(schedule=schedule, acting_user=None, note="winter break", now=start)
    with django_capture_on_commit_callbacks(execute=True):
        services.claim_slot(job_slug="obs-warn", district_id=lakeside.pk, slot=slot, now=slot)
    assert JobRun.objects.filter(job="obs-warn", status="skipped").exists()
    assert received(endpoints, SLACK) == [] and Incident.objects.count() == 1


def _failed_run(slug: str, district) -> JobRun:
    now = timezone.now()
    return JobRun.objects.create(job=slug, district=district, trigger="schedule", slot=now, status="failed",
                                 started_at=now, finished_at=now, error="OSError: archive bucket unreachable", attempt=3)


def test_iep_failures_email_the_districts_special_education_coordinators(lakeside, endpoints,
                                                                         django_capture_on_commit_callbacks):
    accept(endpoints)
    school = f.SchoolFactory(district=lakeside)
    f.StaffFactory(username="coord", email="coord@lakeside.example", roles=[Role.SPED_COORDINATOR], schools=[school])
    f.StaffFactory(username="coord2", email="coord2@lakeside.example", roles=[Role.SPED_COORDINATOR], schools=[school])
    f.StaffFactory(username="teacher", email="teacher@lakeside.example", roles=[Role.TEACHER], schools=[school])
    elsewhere = f.SchoolFactory(district=f.DistrictFactory(name="Elsewhere"))
    f.StaffFactory(username="other", email="other@elsewhere.example", roles=[Role.SPED_COORDINATOR], schools=[elsewhere])
    with django_capture_on_commit_callbacks(execute=True):
        alerts.job_failed(_failed_run("iep-review-reminders", lakeside))
    [message] = mail.outbox
    assert sorted(message.to) == ["coord2@lakeside.example", "coord@lakeside.example"]
    assert message.subject == "[SkillCore] IEP review reminders failed for Lakeside Unified"
    assert "archive bucket unreachable" in message.body
    assert received(endpoints, PD)[0]["payload"]["component"] == "iep-review-reminders"  # critical job: paged too


def test_archival_failures_email_the_districts_it_contact(lakeside, endpoints, django_capture_on_commit_callbacks):
    accept(endpoints)
    with django_capture_on_commit_callbacks(execute=True):
        alerts.job_failed(_failed_run("data-archival", lakeside))
    [message] = mail.outbox
    assert message.to == ["it@lakeside.example"]
    assert "Data archival" in message.subject or "data-archival" in message.subject.lower() or "archival" in message.subject.lower()
    assert AlertDelivery.objects.filter(channel="email", status="sent").count() == 1


def test_a_long_run_warns_in_slack_once_while_it_is_still_going_and_closes_when_it_ends(
    obs_jobs, lakeside, endpoints, settings,
):
    accept(endpoints)
    settings.ALERTS_LONG_RUNNING_FACTOR = 3.0
    start = timezone.now()
    run = JobRun.objects.create(job="obs-slow", district=lakeside, trigger="manual", slot=start, status="running",
                                started_at=start, deadline=start + dt.timedelta(hours=1), progress_done=4, progress_total=10)
    assert alerting.watch(now=start + dt.timedelta(seconds=2)).long_running_opened == 0  # within 1 s x 3
    for seconds in (4, 34, 64):  # three scheduler passes while the run goes on
        alerting.watch(now=start + dt.timedelta(seconds=seconds))
    [warning] = received(endpoints, SLACK)
    assert warning["text"].startswith(":warning: Obs slow for Lakeside Unified has been running 4 s (expected 1 s")
    assert "progress 4/10" in warning["text"]
    incident = Incident.objects.get(kind="long-running")
    assert incident.occurrences == 1 and incident.severity == "warning"  # later passes skip open ones

    JobRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=start + dt.timedelta(seconds=70))
    report = alerting.watch(now=start + dt.timedelta(seconds=94))
    assert report.long_running_closed == 1
    assert received(endpoints, SLACK)[-1]["text"].startswith(":white_check_mark: Resolved: Obs slow")


def test_two_concurrent_opens_make_one_incident(obs_jobs, lakeside, endpoints, django_capture_on_commit_callbacks):
    accept(endpoints)
    with django_capture_on_commit_callbacks(execute=True):
        a = alerting.incident_open(kind="failure", job_slug="obs-fail", district=lakeside, summary="x")
        b = alerting.incident_open(kind="failure", job_slug="obs-fail", district=lakeside, summary="x")
        c = alerting.incident_open(kind="timeout", job_slug="obs-fail", district=lakeside, summary="y")
    assert a is not None and b is None and c is not None
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 2
    # Two kinds of one schedule share PagerDuty's dedup key: one resolve closes both.
    with django_capture_on_commit_callbacks(execute=True):
        assert alerting.incidents_resolve(job_slug="obs-fail", district_id=lakeside.pk,
                                          kinds=Incident.RESOLVED_BY_SUCCESS, resolution="test") == 2
    actions = [e["event_action"] for e in received(endpoints, PD)]
    assert actions == ["trigger", "trigger", "resolve"]


def test_one_unreachable_channel_costs_one_attempt_per_pass_not_one_per_message(lakeside, endpoints, settings):
    accept(endpoints)
    settings.SLACK_WEBHOOK_URL = closed_port_url(SLACK)
    now = timezone.now()
    AlertDelivery.objects.bulk_create([
        AlertDelivery(channel="slack", action="message", payload={"text": f"m{i}"}, next_attempt_at=now, created_at=now)
        for i in range(5)
    ] + [AlertDelivery(channel="pagerduty", action="resolve", payload={"dedup_key": "k"}, next_attempt_at=now, created_at=now)])
    report = alerting.deliver_due(now=now)
    assert (report.sent, report.retrying) == (1, 5)  # PagerDuty still went out
    slack = list(AlertDelivery.objects.filter(channel="slack").order_by("id").values_list("attempts", "next_attempt_at"))
    assert [a for a, _ in slack] == [1, 0, 0, 0, 0]
    assert len({when for _, when in slack}) == 1 and slack[0][1] == now + alerting.backoff(1)
    settings.SLACK_WEBHOOK_URL = endpoints.url_for(SLACK)
    assert alerting.deliver_due(now=slack[0][1]).sent == 5
    assert [b["text"] for b in received(endpoints, SLACK)] == ["m0", "m1", "m2", "m3", "m4"]  # order kept


def test_an_incident_opened_while_the_run_ran_is_resolved_by_its_success(obs_jobs, lakeside, endpoints,
                                                                          django_capture_on_commit_callbacks):
    """The end-of-run hook asks whether anything is open before taking its savepoints: an
    incident opened during the run (here the next slot's overlap skip, opened from the body)
    is seen at the settle and resolved, as when every settle took the savepoints."""
    accept(endpoints)

    def skipped_meanwhile(ctx) -> dict:
        alerting.incident_open(kind=alerting.Kind.SKIPPED, job_slug=ctx.job.slug, district=ctx.district,
                               summary="the next slot was skipped: this run is still running")
        return {"items": 1}

    registry.register(Job(slug="obs-meanwhile", title="Obs meanwhile", default_cron=None, why="test",
                          entry=skipped_meanwhile, timeout=30, max_attempts=1))
    try:
        run = execute(manual_run("obs-meanwhile", lakeside), django_capture_on_commit_callbacks)
    finally:
        registry.unregister("obs-meanwhile")
    assert run.status == "succeeded"
    incident = Incident.objects.get(job="obs-meanwhile")
    assert incident.resolved_at is not None and f"run #{run.pk} succeeded" in incident.resolution


def test_a_run_ending_with_nothing_open_takes_no_savepoint(obs_jobs, lakeside, django_capture_on_commit_callbacks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run = manual_run("obs-ok", lakeside)
    with CaptureQueriesContext(connection) as captured:
        execute(run, django_capture_on_commit_callbacks)
    incident_reads = [q["sql"] for q in captured.captured_queries if "scheduling_incident" in q["sql"]]
    assert len(incident_reads) == 1 and "FOR UPDATE" not in incident_reads[0]
    assert not Incident.objects.exists()
