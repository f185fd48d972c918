"""/admin/scheduled-jobs/: permissions, the figures shown, every action through the engine's
services (with its audit row), bad input (form errors, never a 500), the cron preview
across a DST change, and a query count that does not grow with the number of schedules."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling import cron, runner, services
from scheduling.dashboard import forms, pages
from scheduling.models import Incident, JobRun, JobSchedule, ScheduleChange
from tests import factories as f
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import drain_queue

UTC = dt.UTC
NOW = dt.datetime(2026, 10, 27, 14, 0, tzinfo=UTC)  # five days before New York's fall-back
pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(f"admin:scheduled_jobs{name}", args=args)


@pytest.fixture
def synced(only_test_jobs, new_york, adelaide):
    with time_machine.travel(NOW, tick=False):
        services.sync_schedules()
    return {(s.job, s.district_id): s for s in JobSchedule.objects.select_related("district", "q_schedule")}


@pytest.fixture
def admin_client(client, system_admin):
    client.force_login(system_admin)
    return client


def daily(synced, district) -> JobSchedule:
    return synced[("t-daily", district.pk)]


def _finished_run(district, job="t-daily", status=JobRun.Status.SUCCEEDED, *, seconds=2.0, started=None, **extra) -> JobRun:
    started = started or NOW - dt.timedelta(days=1)
    return JobRun.objects.create(
        job=job, district=district, trigger=JobRun.Trigger.SCHEDULE, slot=started, status=status,
        started_at=started, finished_at=started + dt.timedelta(seconds=seconds), duration_seconds=seconds, **extra,
    )


# -- who may see it --------------------------------------------------------------------------------
def test_anonymous_is_sent_to_the_login_page(synced, client, new_york):
    for target in (url(""), url("_schedule", daily(synced, new_york).pk)):
        response = client.get(target)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


# District admins see their own district read-only: tests/scheduling/test_district_admin_dashboard.py.
@pytest.mark.parametrize("persona", ["counselor", "principal", "teacher"])
def test_other_staff_get_403_on_every_page_and_action(persona, request, synced, new_york):
    user = request.getfixturevalue(persona)
    client = Client()
    client.force_login(user)
    schedule = daily(synced, new_york)
    run = _finished_run(new_york, status=JobRun.Status.FAILED)
    for target in (url(""), url("_schedule", schedule.pk), url("_cron", schedule.pk), url("_delete", schedule.pk),
                   url("_preview", schedule.pk) + "?cron=0+1+*+*+*", url("_run", run.pk), url("_run_progress", run.pk)):
        response = client.get(target)
        assert response.status_code == 403, target
        assert "is for system administrators" in response.content.decode()
        assert "data-job=" not in response.content.decode() and "Hudson Valley" not in response.content.decode()
    for target, data in ((url("_run_now", schedule.pk), {}), (url("_pause", schedule.pk), {"note": "x"}),
                         (url("_resume", schedule.pk), {}), (url("_cron", schedule.pk), {"cron": "0 1 * * *"}),
                         (url("_delete", schedule.pk), {}), (url("_retry", run.pk), {})):
        assert client.post(target, data).status_code == 403, target
    schedule.refresh_from_db()
    assert not schedule.paused and schedule.removed_at is None and schedule.cron == "0 2 * * *"
    assert not ScheduleChange.objects.exists() and JobRun.objects.count() == 1


def test_the_admin_index_links_the_dashboard_for_system_admins_only(synced, admin_client, counselor):
    assert url("") in admin_client.get(reverse("admin:index")).content.decode()
    other = Client()
    other.force_login(counselor)
    page = other.get(reverse("admin:index"))
    assert page.status_code == 200 and url("") not in page.content.decode()


def test_state_changes_need_the_csrf_token(synced, system_admin, new_york):
    client = Client(enforce_csrf_checks=True)
    client.force_login(system_admin)
    schedule = daily(synced, new_york)
    assert client.post(url("_pause", schedule.pk), {"note": "break"}).status_code == 403
    assert client.post(url("_run_now", schedule.pk)).status_code == 403
    schedule.refresh_from_db()
    assert not schedule.paused and not JobRun.objects.exists()


# -- what it shows -------------------------------------------------------------------------------
def test_dashboard_shows_each_job_with_its_districts_figures_and_status_card(synced, admin_client, new_york, adelaide):
    _finished_run(new_york, seconds=4.0)
    failed = _finished_run(new_york, status=JobRun.Status.FAILED, seconds=2.0, started=NOW - dt.timedelta(hours=3))
    JobSchedule.objects.filter(pk=daily(synced, new_york).pk).update(last_run=failed)
    Incident.objects.create(
        dedup_key=f"skillcore/t-daily/{new_york.pk}", job="t-daily", district=new_york, kind=Incident.Kind.FAILURE,
        severity=Incident.Severity.CRITICAL, summary="t-daily failed", opened_at=NOW, last_seen_at=NOW,
    )
    services.pause_schedule(schedule=daily(synced, adelaide), acting_user=None, note="winter break", now=NOW)
    with time_machine.travel(NOW, tick=False):
        page = admin_client.get(url("")).content.decode()
    assert 'id="system-status"' in page and "Scheduler heartbeat" in page and "Overdue schedules" in page
    assert 'id="job-t-daily"' in page and "Test daily" in page
    ny_row = re.search(rf'<tr id="schedule-{daily(synced, new_york).pk}".*?</tr>', page, re.S).group(0)
    assert "At 02:00 every day" in ny_row and "America/New_York" in ny_row
    # The next slot, 02:00 EDT on 28 October, in local time with its offset, and in UTC.
    assert "Wed 2026-10-28 02:00 EDT (UTC\u221204:00)" in ny_row and "2026-10-28 06:00Z" in ny_row
    assert "3.0 s" in ny_row and "50%" in ny_row and ">2<" in ny_row  # average, success rate, runs
    assert "failed" in ny_row and '<span class="sj-badge critical" title="t-daily failed">critical</span>' in ny_row
    assert "Failing</h3>\n    <div class=\"big\">1<" in page  # the status card counts the open failure
    adelaide_row = re.search(rf'<tr id="schedule-{daily(synced, adelaide).pk}".*?</tr>', page, re.S).group(0)
    assert "paused" in adelaide_row and "winter break" in adelaide_row and "Australia/Adelaide" in adelaide_row


def test_schedule_in_plain_words_covers_nth_weekday(synced, admin_client, new_york):
    services.edit_cron(schedule=daily(synced, new_york), acting_user=None, cron_expr="0 10 * 1,4,7,10 MON#1", now=NOW)
    page = admin_client.get(url("")).content.decode()
    assert "first Monday of the month" in page


def _dashboard_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url("")).status_code == 200
    return len(ctx.captured_queries)


def test_dashboard_query_count_does_not_grow_with_schedules(only_test_jobs, admin_client, django_assert_num_queries):
    with time_machine.travel(NOW, tick=False):
        f.DistrictFactory.create_batch(2)
        services.sync_schedules()
        for district in f.DistrictFactory._meta.model.objects.all():
            _finished_run(district)
        services.pause_schedule(schedule=JobSchedule.objects.filter(job="t-daily").first(), acting_user=None, note="n")
        schedules_small = JobSchedule.objects.count()
        small = _dashboard_queries(admin_client)
        # session, user, staff (2), rows and 30-day figures (2), alert states (1), status card (5:
        # heartbeat, overdue, running, incidents, and "anything scheduled?" as no heartbeat exists),
        # held runs (1: the blast-radius guard's card)
        assert small == 13
        f.DistrictFactory.create_batch(30)
        services.sync_schedules()
        assert JobSchedule.objects.count() == 16 * schedules_small - 15 * 1  # 16x the districts, one global
        with django_assert_num_queries(small):
            assert admin_client.get(url("")).status_code == 200


# -- actions -------------------------------------------------------------------------------------
def test_pause_needs_a_note_and_records_who(synced, admin_client, system_admin, new_york):
    schedule = daily(synced, new_york)
    for bad in ("", "   ", "x" * (forms.PAUSE_NOTE_MAX + 1)):
        response = admin_client.post(url("_pause", schedule.pk), {"note": bad})
        assert response.status_code == 400
        assert 'class="errorlist"' in response.content.decode()
    schedule.refresh_from_db()
    assert not schedule.paused and not ScheduleChange.objects.exists()

    response = admin_client.post(url("_pause", schedule.pk), {"note": "  winter break  ", "next": "index"})
    assert response.status_code == 302 and response["Location"].startswith(url(""))
    schedule.refresh_from_db()
    assert schedule.paused and schedule.pause_note == "winter break" and schedule.paused_by == system_admin
    assert schedule.q_schedule.repeats == 0
    change = ScheduleChange.objects.get()
    assert (change.action, change.acting_user, change.before["paused"], change.after["paused"]) == (
        "pause", system_admin, False, True)
    # Pausing again: a message, not an error page.
    response = admin_client.post(url("_pause", schedule.pk), {"note": "again"}, follow=True)
    assert response.status_code == 200 and "already paused" in response.content.decode()


def test_resume_never_fires_a_stale_slot(synced, admin_client, new_york):
    schedule = daily(synced, new_york)
    services.pause_schedule(schedule=schedule, acting_user=None, note="break", now=NOW)
    later = NOW + dt.timedelta(days=3, hours=5)  # three 02:00 slots went by while paused
    with time_machine.travel(later, tick=False):
        response = admin_client.post(url("_resume", schedule.pk), follow=True)
    assert "Resumed" in response.content.decode()
    schedule.refresh_from_db()
    assert not schedule.paused
    assert schedule.q_schedule.next_run > later and schedule.q_schedule.repeats == -1
    assert ScheduleChange.objects.filter(schedule=schedule, action="resume").count() == 1
    assert not JobRun.objects.exists()


def test_run_now_queues_a_manual_run_recording_who_and_the_worker_runs_it(
        synced, admin_client, system_admin, new_york, django_capture_on_commit_callbacks):
    schedule = daily(synced, new_york)
    with django_capture_on_commit_callbacks(execute=True):  # the enqueue happens on commit
        response = admin_client.post(url("_run_now", schedule.pk))
    run = JobRun.objects.get()
    assert response.status_code == 302 and response["Location"] == url("_run", run.pk)
    assert (run.trigger, run.status, run.triggered_by) == ("manual", "queued", system_admin)
    assert ScheduleChange.objects.get(schedule=schedule).action == "run-now"
    progress = admin_client.get(url("_run_progress", run.pk)).json()
    assert progress["status"] == "queued" and progress["finished"] is False
    drain_queue()
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert admin_client.get(url("_run_progress", run.pk)).json() | {} == {
        "id": run.pk, "status": "succeeded", "status_label": "Succeeded", "finished": True,
        "done": None, "total": None, "percent": 100, "unit": "items"}
    page = admin_client.get(url("_run", run.pk)).content.decode()
    assert "ran for slot" in page and '<th scope="row">Slots</th><td><span class="figure-value">1</span>' in page
    assert "<svg" in page


def test_run_now_of_a_job_without_a_body_is_a_message(synced, admin_client, new_york):
    schedule = synced[("t-nobody", new_york.pk)]
    response = admin_client.post(url("_run_now", schedule.pk), follow=True)
    assert response.status_code == 200 and "has no body yet" in response.content.decode()
    assert not JobRun.objects.exists()


def test_run_page_shows_error_traceback_and_a_progress_bar_while_running(synced, admin_client, new_york):
    jobs_for_tests.FAIL_TIMES["t-flaky"] = 5
    failed = runner.run_sync(job_slug="t-flaky", district=new_york)
    assert failed.status == "failed"
    page = admin_client.get(url("_run", failed.pk)).content.decode()
    assert "boom on attempt 1" in page and 'id="run-traceback"' in page and "RuntimeError" in page
    assert 'name="retry"' in page
    running = JobRun.objects.create(
        job="t-batches", district=new_york, trigger="manual", slot=NOW, status="running", started_at=NOW,
        progress_done=3, progress_total=12,
    )
    page = admin_client.get(url("_run", running.pk)).content.decode()
    assert 'aria-valuenow="25"' in page and "3 of 12 items (25%)" in page and 'http-equiv="refresh"' in page
    assert admin_client.get(url("_run_progress", running.pk)).json()["percent"] == 25


def test_retry_a_failed_run_and_refuse_others(
        synced, admin_client, system_admin, new_york, django_capture_on_commit_callbacks):
    jobs_for_tests.FAIL_TIMES["t-flaky"] = 1
    failed = runner.run_sync(job_slug="t-flaky", district=new_york)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url("_retry", failed.pk))
    retry = JobRun.objects.get(retry_of=failed)
    assert response["Location"] == url("_run", retry.pk)
    assert (retry.attempt, retry.trigger, retry.triggered_by) == (2, "retry", system_admin)
    assert ScheduleChange.objects.filter(action="retry").count() == 1
    drain_queue()
    retry.refresh_from_db()
    assert retry.status == "succeeded"
    response = admin_client.post(url("_retry", retry.pk), follow=True)
    assert "only failed, timed-out or held runs can be retried" in response.content.decode()
    assert JobRun.objects.count() == 2


@pytest.mark.parametrize("bad", ["", "   ", "0 2 * *", "61 2 * * *", "0 25 * * *", "* * * * * *", "x" * 200,
                                 "0 2 * * MON#9", "\x00"])
def test_bad_cron_is_a_form_error_and_changes_nothing(bad, synced, admin_client, new_york):
    schedule = daily(synced, new_york)
    response = admin_client.post(url("_cron", schedule.pk), {"cron": bad, "_save": "Save"})
    assert response.status_code == 400 and 'class="errorlist"' in response.content.decode()
    schedule.refresh_from_db()
    assert schedule.cron == "0 2 * * *" and not schedule.cron_customized
    assert not ScheduleChange.objects.exists()


def test_edit_cron_saves_through_the_service_and_the_history_shows_it(synced, admin_client, system_admin, new_york):
    schedule = daily(synced, new_york)
    with time_machine.travel(NOW, tick=False):
        response = admin_client.post(url("_cron", schedule.pk), {"cron": " 30  6 * * 1-5 ", "_save": "Save"})
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.cron == "30 6 * * 1-5" and schedule.cron_customized
    assert schedule.q_schedule.next_run == dt.datetime(2026, 10, 28, 10, 30, tzinfo=UTC)
    change = ScheduleChange.objects.get(action="edit-cron")
    assert (change.acting_user, change.before["cron"], change.after["cron"]) == (system_admin, "0 2 * * *", "30 6 * * 1-5")
    page = admin_client.get(url("_schedule", schedule.pk)).content.decode()
    history = page[page.index('id="change-history"'):]
    assert "Edited the cron" in history and "sysadmin" in history and "30 6 * * 1-5" in history


def test_preview_submit_works_without_javascript_and_crosses_the_next_dst_change(synced, admin_client, new_york):
    schedule = daily(synced, new_york)
    with time_machine.travel(NOW, tick=False):
        response = admin_client.post(url("_cron", schedule.pk), {"cron": "30 1 * * *", "_preview": "1"})
    page = response.content.decode()
    assert response.status_code == 200
    schedule.refresh_from_db()
    assert schedule.cron == "0 2 * * *"  # a preview saves nothing
    assert page.count('class="next-run"') == 5
    # New York falls back on Sunday 1 November 2026: 01:30 happens twice and runs once.
    assert "Sun 2026-11-01" in page and "clocks go from UTC\u221204:00 to UTC\u221205:00" in page
    dst_rows = re.findall(r'<tr class="dst-run[^"]*"><td>([^<]+)</td><td>([^<]+)</td>', page)
    assert [local for local, _ in dst_rows] == [
        "Sat 2026-10-31 01:30 EDT (UTC\u221204:00)", "Sun 2026-11-01 01:30 EDT (UTC\u221204:00)",
        "Mon 2026-11-02 01:30 EST (UTC\u221205:00)", "Tue 2026-11-03 01:30 EST (UTC\u221205:00)",
        "Wed 2026-11-04 01:30 EST (UTC\u221205:00)",
    ]
    assert [u for _, u in dst_rows][2] == "2026-11-02 06:30Z"


def test_preview_endpoint_for_the_inline_script(synced, admin_client, new_york, adelaide):
    with time_machine.travel(NOW, tick=False):
        good = admin_client.get(url("_preview", daily(synced, new_york).pk), {"cron": "0 2 * * *"})
        bad = admin_client.get(url("_preview", daily(synced, new_york).pk), {"cron": "0 2 * *"})
        south = admin_client.get(url("_preview", daily(synced, adelaide).pk), {"cron": "0 2 * * *"})
    assert good.status_code == 200 and good.content.decode().count('class="next-run"') == 5
    assert bad.status_code == 400 and "needs 5 fields" in bad.content.decode()
    # Adelaide springs forward on 4 April 2027? No: it falls back (UTC+10:30 -> +09:30) then.
    text = south.content.decode()
    assert "Sun 2027-04-04: clocks go from UTC+10:30 to UTC+09:30" in text


def test_next_offset_change():
    assert cron.next_transition("America/New_York", NOW) == dt.datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    assert cron.next_transition("Asia/Kolkata", NOW) is None
    assert cron.next_transition("UTC", NOW) is None


def test_delete_asks_first_then_keeps_the_history(synced, admin_client, new_york):
    schedule = daily(synced, new_york)
    run = _finished_run(new_york)
    page = admin_client.get(url("_delete", schedule.pk)).content.decode()
    assert "Yes, delete the schedule" in page and "1 run" in page
    schedule.refresh_from_db()
    assert schedule.removed_at is None
    response = admin_client.post(url("_delete", schedule.pk))
    assert response.status_code == 302 and response["Location"] == url("")
    schedule.refresh_from_db()
    assert schedule.removed_at is not None and schedule.q_schedule is None
    assert JobRun.objects.filter(pk=run.pk).exists()
    assert f'id="schedule-{schedule.pk}"' not in admin_client.get(url("")).content.decode()
    detail = admin_client.get(url("_schedule", schedule.pk)).content.decode()
    assert "deleted" in detail and "Deleted" in detail and f"#{run.pk}" in detail
    # Actions on a deleted schedule are messages, not errors.
    for name, data in (("_pause", {"note": "x"}), ("_run_now", {}), ("_delete", {}), ("_cron", {"cron": "0 1 * * *"})):
        response = admin_client.post(url(name, schedule.pk), data, follow=True)
        assert response.status_code == 200, name


def test_bad_ids_and_methods_never_500(synced, admin_client, new_york):
    assert admin_client.get(url("_schedule", 999999)).status_code == 404
    assert admin_client.get(url("_run", 999999)).status_code == 404
    assert admin_client.post(url("_pause", 999999), {"note": "x"}).status_code == 404
    assert admin_client.post(url("_retry", 999999)).status_code == 404
    assert admin_client.get("/admin/scheduled-jobs/abc/").status_code == 404
    assert admin_client.get(url("_pause", daily(synced, new_york).pk)).status_code == 405
    assert admin_client.get(url("_run_now", daily(synced, new_york).pk)).status_code == 405
    assert admin_client.get(url("_preview", daily(synced, new_york).pk)).status_code == 400  # no cron given


def test_run_page_chart_marks_this_run(synced, admin_client, new_york):
    runs = [_finished_run(new_york, seconds=s, started=NOW - dt.timedelta(days=d)) for d, s in ((3, 1.0), (2, 4.0), (1, 2.0))]
    page = admin_client.get(url("_run", runs[1].pk)).content.decode()
    assert page.count('<rect class="bar') == 3 and page.count(' current"') == 1
    assert f"this run (#{runs[1].pk}, 4.0 s)" in page  # named in the legend
    assert "4.0 s" in page  # the chart's top


def test_many_districts_show_the_ones_needing_attention_first_and_link_to_all(only_test_jobs, admin_client, monkeypatch):
    monkeypatch.setattr(pages, "ROWS_PER_JOB", 3)
    districts = [f.DistrictFactory(name=f"District {i:02d}") for i in range(6)]
    with time_machine.travel(NOW, tick=False):
        services.sync_schedules()
        late = JobSchedule.objects.get(job="t-daily", district=districts[5])
        services.pause_schedule(schedule=late, acting_user=None, note="closed for repairs")
        page = admin_client.get(url("")).content.decode()
        block = page[page.index('id="job-t-daily"'):page.index('id="job-t-flaky"')]
        shown = re.findall(r'data-district="([^"]+)"', block)
        assert shown == ["District 05", "District 00", "District 01"]  # the paused one first
        assert "Show all 6 districts of Test daily" in block and "3 more" in block
        one_job = admin_client.get(url(""), {"job": "t-daily"}).content.decode()
        assert re.findall(r'data-job="([^"]+)"', one_job) == ["t-daily"]
        assert len(re.findall(r'data-district="', one_job)) == 6 and "Show all" not in one_job
        filtered = admin_client.get(url(""), {"district": "district 04"}).content.decode()
        assert set(re.findall(r'data-district="([^"]+)"', filtered)) == {"District 04"}
        nothing = admin_client.get(url(""), {"job": "no-such-job", "district": "\x00" * 300})
        assert nothing.status_code == 200 and "No schedule matches this filter." in nothing.content.decode()


def test_change_history_shows_what_changed():
    diff = pages.change_diff(
        {"cron": "0 2 * * *", "paused": False, "next_run": "a"}, {"cron": "30 6 * * *", "paused": False, "next_run": "b"})
    assert diff == [("cron", "0 2 * * *", "30 6 * * *"), ("next run", "a", "b")]
    assert pages.change_diff({}, {"run": 7, "slot": "x"}) == [("run", "", "#7"), ("slot", "", "x")]
    assert pages.change_diff({"pause_note": ""}, {"pause_note": "break"}) == [("pause note", "—", "break")]
    # Flags in words, times in the schedule's zone with their offset, statuses by their label.
    assert pages.change_diff({"paused": False, "next_run": "2026-12-02T07:00:00+00:00"},
                             {"paused": True, "next_run": None}, zone="America/New_York") == [
        ("paused", "no", "yes"), ("next run", "Wed 2026-12-02 02:00 EST (UTC−05:00)", "—")]
    assert pages.change_diff({"run": 3, "status": "timed_out"}, {"run": 4, "attempt": 2}) == [
        ("run", "#3", "#4"), ("status", "timed out", "—"), ("attempt", "", "2")]
