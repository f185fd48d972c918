"""The engine's services: claim, catch-up and missed slots, overlap, retries with backoff,
lost workers, sync, and every staff action with its audit row."""
from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django_q.models import OrmQ, Schedule

from scheduling import runner, services
from scheduling.models import JobRun, JobSchedule, ScheduleChange
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import drain_queue, scheduler_pass

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
pytestmark = pytest.mark.django_db


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def schedule(job, district) -> JobSchedule:
    return JobSchedule.objects.select_related("q_schedule", "district").get(job=job, district=district)


# -- sync ----------------------------------------------------------------------------------------
def test_sync_creates_one_schedule_per_job_and_district_and_is_idempotent(test_jobs, new_york, adelaide):
    report = services.sync_schedules()
    real_district_jobs = 11  # 13 jobs, 2 global
    assert report.created == (real_district_jobs + 6) * 2 + 2 + 1  # + test jobs (6 per district, 1 global)
    assert services.sync_schedules().created == 0
    assert JobSchedule.objects.count() == report.created
    names = set(Schedule.objects.values_list("name", flat=True))
    assert f"skillcore:compliance-audit-report:{new_york.pk}" in names
    assert "skillcore:stream-cleanup:global" in names
    # The ad-hoc rollover has a schedule row (run now, history) but nothing fires it.
    rollover = schedule("end-of-year-rollover", new_york)
    assert rollover.cron == "" and rollover.q_schedule is None
    mat = schedule("missing-assignment-alerts", adelaide)
    assert mat.cron == "0 7,19 * * *"
    assert mat.q_schedule.intended_date_kwarg == "scheduled_for"
    assert "'tz': 'Australia/Adelaide'" in mat.q_schedule.kwargs


def test_sync_keeps_staff_cron_pause_and_deletions(only_test_jobs, new_york, system_admin):
    services.sync_schedules()
    daily = schedule("t-daily", new_york)
    services.edit_cron(schedule=daily, acting_user=system_admin, cron_expr="15 3 * * 1-5")
    monthly = schedule("t-monthly", new_york)
    services.pause_schedule(schedule=monthly, acting_user=system_admin, note="audit moved")
    services.delete_schedule(schedule=schedule("t-flaky", new_york), acting_user=system_admin)
    report = services.sync_schedules()
    assert report.created == 0
    assert schedule("t-daily", new_york).cron == "15 3 * * 1-5"
    assert schedule("t-daily", new_york).q_schedule.cron == "15 3 * * 1-5"
    assert schedule("t-monthly", new_york).paused and schedule("t-monthly", new_york).q_schedule.repeats == 0
    assert schedule("t-flaky", new_york).removed_at is not None
    assert not Schedule.objects.filter(name=f"skillcore:t-flaky:{new_york.pk}").exists()


def test_sync_reseeds_code_cron_and_follows_a_zone_change(only_test_jobs, new_york, monkeypatch):
    with time_machine.travel(dt.datetime(2026, 12, 1, tzinfo=UTC), tick=False):
        services.sync_schedules()
        new_york.time_zone = "Europe/Paris"
        new_york.save()
        services.sync_schedules()
    q = schedule("t-daily", new_york).q_schedule
    assert q.next_run == dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 02:00 CET
    assert "'tz': 'Europe/Paris'" in q.kwargs


# -- claim: catch-up, missed, overlap -----------------------------------------------------------
def test_outage_runs_only_the_latest_slot_within_the_window_and_records_the_rest_missed(only_test_jobs, new_york):
    with time_machine.travel(at(2026, 12, 1, 0, 0), tick=False) as traveller:
        services.sync_schedules()
        # The scheduler is down from before Dec 1 02:00 until Dec 4 03:30 (window: 3 h).
        traveller.move_to(at(2026, 12, 4, 3, 30))
        scheduler_pass()
    runs = {r.slot.astimezone(NY).day: r for r in JobRun.objects.filter(job="t-daily")}
    assert sorted(runs) == [1, 2, 3, 4]
    assert [runs[d].status for d in (1, 2, 3)] == ["missed"] * 3
    assert runs[4].status == "succeeded" and runs[4].trigger == "catch-up"
    assert "latest slot" in runs[1].note
    assert [s for j, s, _ in jobs_for_tests.CALLS if j == "t-daily"] == [at(2026, 12, 4, 2, 0).astimezone(UTC)]
    # The scheduler's next run is the next slot, not a replay of the missed ones.
    assert schedule("t-daily", new_york).q_schedule.next_run == at(2026, 12, 5, 2, 0)


def test_outage_beyond_the_catch_up_window_runs_nothing(only_test_jobs, new_york):
    with time_machine.travel(at(2026, 12, 1, 0, 0), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(at(2026, 12, 1, 9, 0))  # 7 h late; the window is 3 h
        scheduler_pass()
    run = JobRun.objects.get(job="t-daily")
    assert run.status == "missed" and "beyond the catch-up window of 3 h" in run.note
    assert not [c for c in jobs_for_tests.CALLS if c[0] == "t-daily"]


def test_slot_is_skipped_while_the_previous_run_is_still_running(only_test_jobs, new_york):
    with time_machine.travel(at(2026, 12, 1, 0, 0), tick=False) as traveller:
        services.sync_schedules()
        running = JobRun.objects.create(
            job="t-daily", district=new_york, trigger="manual", slot=at(2026, 12, 1, 1, 0), status="running",
            started_at=at(2026, 12, 1, 1, 0), deadline=at(2026, 12, 1, 5, 0),
        )
        traveller.move_to(at(2026, 12, 1, 2, 0, 30))
        scheduler_pass()
    skipped = JobRun.objects.get(job="t-daily", trigger="schedule")
    assert skipped.status == "skipped"
    assert f"run #{running.pk}" in skipped.note and "overlap policy: skip" in skipped.note
    assert not [c for c in jobs_for_tests.CALLS if c[0] == "t-daily"]


def test_unique_slot_is_enforced_by_the_database(only_test_jobs, new_york):
    slot = at(2026, 12, 1, 2, 0)
    JobRun.objects.create(job="t-daily", district=new_york, trigger="schedule", slot=slot, status="succeeded")
    with pytest.raises(IntegrityError), transaction.atomic():
        JobRun.objects.create(job="t-daily", district=new_york, trigger="catch-up", slot=slot)
    JobRun.objects.create(job="t-global", district=None, trigger="schedule", slot=slot)
    with pytest.raises(IntegrityError), transaction.atomic():
        JobRun.objects.create(job="t-global", district=None, trigger="schedule", slot=slot)
    # Manual runs for the same slot are allowed (staff can rerun a day).
    JobRun.objects.create(job="t-daily", district=new_york, trigger="manual", slot=slot)


def test_a_second_delivery_of_a_claimed_slot_does_nothing(only_test_jobs, new_york):
    services.sync_schedules()
    slot = at(2026, 12, 1, 2, 0)
    with time_machine.travel(slot + dt.timedelta(seconds=20), tick=False):
        first = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=slot)
        second = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=slot)
    assert first is not None and second is None


# -- failures, retries, lost workers ------------------------------------------------------------
def test_failed_run_is_retried_with_backoff_as_one_off_schedules_then_alerts(only_test_jobs, new_york, caplog, monkeypatch):
    monkeypatch.setattr(services.random, "uniform", lambda a, b: 1.0)  # no jitter: exact delays
    jobs_for_tests.FAIL_TIMES["t-flaky"] = 5
    with time_machine.travel(at(2026, 12, 1, 4, 0), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(at(2026, 12, 1, 5, 0, 10))
        scheduler_pass()
        first = JobRun.objects.get(job="t-flaky", attempt=1)
        assert first.status == "failed" and "boom on attempt 1" in first.error and "RuntimeError" in first.traceback
        retry_q = Schedule.objects.get(name__startswith="skillcore:retry:")
        assert retry_q.schedule_type == Schedule.ONCE
        assert retry_q.next_run == at(2026, 12, 1, 5, 0, 20)  # base 10 s x 2^0
        second = JobRun.objects.get(job="t-flaky", attempt=2)
        assert (second.trigger, second.status, second.retry_of_id) == ("retry", "queued", first.pk)
        traveller.move_to(at(2026, 12, 1, 5, 0, 21))
        scheduler_pass()
        third_q = Schedule.objects.get(name__startswith="skillcore:retry:")
        assert third_q.next_run == at(2026, 12, 1, 5, 0, 41)  # 10 x 2^1
        traveller.move_to(at(2026, 12, 1, 5, 0, 42))
        with caplog.at_level(logging.ERROR, logger="scheduling.monitoring.alerts"):
            scheduler_pass()
    attempts = list(JobRun.objects.filter(job="t-flaky").order_by("attempt").values_list("attempt", "status", "retry_of_id"))
    assert attempts == [(1, "failed", None), (2, "failed", first.pk), (3, "failed", first.pk)]
    assert not Schedule.objects.filter(name__startswith="skillcore:retry:").exists()
    assert "failed for good" in caplog.text and "attempt 3" in caplog.text


def test_backoff_is_capped_and_jittered(test_jobs):
    job = test_jobs["t-flaky"]  # base 10, cap 25
    assert job.backoff(1, jitter=1.0) == dt.timedelta(seconds=10)
    assert job.backoff(2, jitter=1.0) == dt.timedelta(seconds=20)
    assert job.backoff(3, jitter=1.0) == dt.timedelta(seconds=25)
    assert job.backoff(3, jitter=0.5) == dt.timedelta(seconds=12.5)


def test_retry_succeeds_on_a_later_attempt(only_test_jobs, new_york, monkeypatch):
    monkeypatch.setattr(services.random, "uniform", lambda a, b: 1.0)
    jobs_for_tests.FAIL_TIMES["t-flaky"] = 1
    with time_machine.travel(at(2026, 12, 1, 4, 0), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(at(2026, 12, 1, 5, 0, 10))
        scheduler_pass()
        traveller.move_to(at(2026, 12, 1, 5, 0, 30))
        scheduler_pass()
    assert list(JobRun.objects.filter(job="t-flaky").order_by("attempt").values_list("status", flat=True)) == ["failed", "succeeded"]
    assert JobRun.objects.get(attempt=2).result == {"attempt": 2}


def test_redelivered_task_of_a_lost_worker_resumes_from_the_checkpoint(only_test_jobs, new_york, db):
    from django.db import connection

    with connection.cursor() as c:
        c.execute(f"CREATE TABLE {jobs_for_tests.OUTPUT_TABLE} (item integer PRIMARY KEY, run_id bigint)")
    run = JobRun.objects.create(job="t-batches", district=new_york, trigger="manual", slot=at(2026, 12, 1, 9, 0))
    # A worker claimed it, wrote items 1-6 with their checkpoint, then died.
    with time_machine.travel(at(2026, 12, 1, 9, 0), tick=False) as traveller:
        assert runner.claim(run.pk).status == "running"
        with connection.cursor() as c:
            for item in range(1, 7):
                c.execute(f"INSERT INTO {jobs_for_tests.OUTPUT_TABLE} VALUES (%s, %s)", [item, run.pk])
        JobRun.objects.filter(pk=run.pk).update(checkpoint={"next": 7})
        traveller.move_to(at(2026, 12, 1, 9, 0, 10))
        assert runner.execute(run.pk) is None  # still within its deadline: a duplicate delivery
        traveller.move_to(at(2026, 12, 1, 9, 5))  # past timeout (30 s) + lost grace
        retry = runner.execute(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("worker lost")
    assert (retry.trigger, retry.attempt, retry.retry_of_id, retry.status) == ("retry", 2, run.pk, "succeeded")
    assert retry.result == {"written": 14, "resumed_from": 7}
    with connection.cursor() as c:
        c.execute(f"SELECT count(*), count(DISTINCT item), min(item), max(item) FROM {jobs_for_tests.OUTPUT_TABLE}")
        assert c.fetchone() == (20, 20, 1, 20)


def test_reaper_recovers_lost_runs_and_enqueues_the_retry(only_test_jobs, new_york, django_capture_on_commit_callbacks):
    run = JobRun.objects.create(
        job="t-daily", district=new_york, trigger="schedule", slot=at(2026, 12, 1, 2, 0), status="running",
        started_at=at(2026, 12, 1, 2, 0), deadline=at(2026, 12, 1, 2, 2), checkpoint={"next": 3},
    )
    assert services.reap_lost_runs(now=at(2026, 12, 1, 2, 1)) == 0
    with time_machine.travel(at(2026, 12, 1, 2, 3), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.reap_lost_runs(now=at(2026, 12, 1, 2, 3)) == 1
        assert OrmQ.objects.count() == 1
        drain_queue()
    retry = JobRun.objects.get(retry_of=run)
    assert retry.status == "succeeded" and retry.checkpoint == {"next": 3}


# -- staff actions --------------------------------------------------------------------------------
def test_run_now_queues_a_manual_run_records_who_and_runs_in_the_worker(
    only_test_jobs, new_york, system_admin, django_capture_on_commit_callbacks
):
    services.sync_schedules()
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_now(job_slug="t-daily", district=new_york, acting_user=system_admin)
    assert run.status == "queued" and run.triggered_by == system_admin and run.trigger == "manual"
    assert JobRun.objects.get(pk=run.pk).task_id  # django-q2 task id recorded on enqueue
    change = ScheduleChange.objects.get(action="run-now")
    assert change.acting_user == system_admin and change.after["run"] == run.pk
    drain_queue()
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result == {"slots": 1} and "ran for slot" in run.log
    assert schedule("t-daily", new_york).last_run == run  # the dashboard's "last run"
    assert run.started_at and run.finished_at and run.duration_seconds is not None


def test_run_now_refuses_jobs_without_a_body_and_wrong_scope(test_jobs, new_york, system_admin):
    with pytest.raises(services.ScheduleError, match="has no body yet"):
        services.run_now(job_slug="t-nobody", district=new_york, acting_user=system_admin)
    with pytest.raises(services.ScheduleError, match="global"):
        services.run_now(job_slug="t-global", district=new_york, acting_user=system_admin)
    with pytest.raises(services.ScheduleError, match="per district"):
        services.run_now(job_slug="t-daily", district=None, acting_user=system_admin)
    assert not JobRun.objects.exists() and not ScheduleChange.objects.exists()


def test_pause_needs_a_note_and_is_audited(only_test_jobs, new_york, system_admin):
    services.sync_schedules()
    s = schedule("t-daily", new_york)
    with pytest.raises(services.ScheduleError, match="note"):
        services.pause_schedule(schedule=s, acting_user=system_admin, note="  ")
    assert not ScheduleChange.objects.exists()
    services.pause_schedule(schedule=s, acting_user=system_admin, note="testing week")
    s = schedule("t-daily", new_york)
    assert s.paused and s.pause_note == "testing week" and s.paused_by == system_admin and s.q_schedule.repeats == 0
    change = ScheduleChange.objects.get(action="pause")
    assert change.before["paused"] is False and change.after == {**change.before, "paused": True, "pause_note": "testing week"}
    with pytest.raises(services.ScheduleError, match="already paused"):
        services.pause_schedule(schedule=s, acting_user=system_admin, note="again")


def test_edit_cron_validates_recomputes_next_run_and_audits(only_test_jobs, new_york, system_admin):
    with time_machine.travel(at(2026, 12, 1, 12, 0), tick=False):
        services.sync_schedules()
        s = schedule("t-daily", new_york)
        for bad in ("61 * * * *", "0 2 * *", "every day", ""):
            with pytest.raises(services.ScheduleError):
                services.edit_cron(schedule=s, acting_user=system_admin, cron_expr=bad)
        assert not ScheduleChange.objects.exists() and schedule("t-daily", new_york).cron == "0 2 * * *"
        services.edit_cron(schedule=s, acting_user=system_admin, cron_expr="0  6 * * 1-5")
    s = schedule("t-daily", new_york)
    assert s.cron == "0 6 * * 1-5" and s.cron_customized
    assert s.q_schedule.next_run == at(2026, 12, 2, 6, 0)
    change = ScheduleChange.objects.get(action="edit-cron")
    assert (change.before["cron"], change.after["cron"]) == ("0 2 * * *", "0 6 * * 1-5")


def test_delete_keeps_history_and_restore_brings_it_back(only_test_jobs, new_york, system_admin):
    services.sync_schedules()
    s = schedule("t-daily", new_york)
    JobRun.objects.create(job="t-daily", district=new_york, trigger="manual", slot=at(2026, 12, 1, 2, 0), status="succeeded")
    services.delete_schedule(schedule=s, acting_user=system_admin)
    assert JobRun.objects.filter(job="t-daily").count() == 1
    assert not Schedule.objects.filter(name=f"skillcore:t-daily:{new_york.pk}").exists()
    services.restore_schedule(schedule=s, acting_user=system_admin)
    assert Schedule.objects.filter(name=f"skillcore:t-daily:{new_york.pk}", repeats=-1).exists()
    assert list(ScheduleChange.objects.order_by("id").values_list("action", flat=True)) == ["delete", "restore"]


def test_staff_retry_of_a_failed_run(only_test_jobs, new_york, system_admin, django_capture_on_commit_callbacks):
    services.sync_schedules()
    failed = JobRun.objects.create(
        job="t-daily", district=new_york, trigger="schedule", slot=at(2026, 12, 1, 2, 0), status="failed",
        checkpoint={"next": 5},
    )
    ok = JobRun.objects.create(job="t-daily", district=new_york, trigger="manual", slot=at(2026, 12, 1, 3, 0), status="succeeded")
    with pytest.raises(services.ScheduleError, match="only failed"):
        services.retry_run(run=ok, acting_user=system_admin)
    with django_capture_on_commit_callbacks(execute=True):
        retry = services.retry_run(run=failed, acting_user=system_admin)
    assert (retry.attempt, retry.retry_of_id, retry.triggered_by, retry.checkpoint) == (2, failed.pk, system_admin, {"next": 5})
    drain_queue()
    retry.refresh_from_db()
    assert retry.status == "succeeded"
    assert ScheduleChange.objects.get(action="retry").after == {"run": retry.pk, "attempt": 2}


def test_progress_and_log_are_bounded(only_test_jobs, new_york):
    def chatty(ctx):
        for i in range(800):
            ctx.logger.info("line %s", i)
            ctx.progress(i + 1, 800)
        return {"lines": 800}

    from scheduling import registry
    from scheduling.registry import Job

    registry.register(Job(slug="t-chatty", title="chatty", default_cron=None, why="test", entry=chatty))
    try:
        run = JobRun.objects.create(job="t-chatty", district=new_york, trigger="manual", slot=at(2026, 12, 1, 2, 0))
        done = runner.execute(run.pk)
    finally:
        registry.unregister("t-chatty")
    lines = done.log.splitlines()
    assert len(lines) == 500 and lines[-1].endswith("line 799")
    assert (done.progress_done, done.progress_total) == (800, 800)
