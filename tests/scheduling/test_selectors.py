"""Dashboard selectors: the figures are right and the query count does not grow with the
number of schedules; the scheduler heartbeat and overdue detection."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from scheduling import selectors, services
from scheduling.models import JobRun, JobSchedule, SchedulerHeartbeat
from tests import factories as f

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def _runs(district, job="t-daily"):
    # Older than 30 days: not in the figures, but still the history.
    old = dt.datetime(2026, 10, 1, 7, tzinfo=UTC)
    JobRun.objects.create(job=job, district=district, trigger="schedule", slot=old, status="failed", started_at=old, duration_seconds=100)
    for day, status, seconds in [(1, "succeeded", 2.0), (2, "failed", 4.0), (3, "succeeded", 6.0), (4, "skipped", None)]:
        slot = dt.datetime(2026, 12, day, 7, tzinfo=UTC)
        run = JobRun.objects.create(
            job=job, district=district, trigger="schedule", slot=slot, status=status,
            started_at=slot if seconds else None, finished_at=slot + dt.timedelta(seconds=seconds or 0),
            duration_seconds=seconds,
        )
        if seconds:
            last = run
    # What the runner does when a run starts (scheduling.runner.claim).
    JobSchedule.objects.filter(job=job, district=district).update(last_run=last)


def test_dashboard_rows_figures(only_test_jobs, new_york, adelaide):
    with time_machine.travel(NOW, tick=False):
        services.sync_schedules()
        _runs(new_york)
        _runs(None, job="t-global")
        rows = {(r.job_slug, r.district_id): r for r in selectors.dashboard_rows()}
    ny = rows[("t-daily", new_york.pk)]
    assert ny.runs_30d == 3 and ny.success_rate == round(2 / 3, 3) and ny.avg_duration == pytest.approx(4.0)
    assert ny.last_status == "succeeded" and ny.last_started == dt.datetime(2026, 12, 3, 7, tzinfo=UTC)
    assert ny.next_run_local.isoformat() == "2026-12-11T02:00:00-05:00"
    assert ny.next_run_utc == dt.datetime(2026, 12, 11, 7, tzinfo=UTC) and ny.time_zone == "America/New_York"
    assert ny.cron_text == "At 02:00 every day" and not ny.overdue
    # Runs of New York do not leak into Adelaide's row, nor into the global job's.
    assert rows[("t-daily", adelaide.pk)].runs_30d == 0 and rows[("t-daily", adelaide.pk)].success_rate is None
    g = rows[("t-global", None)]
    assert g.runs_30d == 3 and g.time_zone == "UTC"
    assert rows[("t-batches", new_york.pk)].next_run_local is None
    assert rows[("t-batches", new_york.pk)].cron_text == "ad hoc (run on demand)"


def test_dashboard_query_count_does_not_grow_with_schedules(only_test_jobs, django_assert_num_queries):
    with time_machine.travel(NOW, tick=False):
        districts = [f.DistrictFactory() for _ in range(2)]
        services.sync_schedules()
        for d in districts:
            _runs(d)
        with django_assert_num_queries(2):
            small = selectors.dashboard_rows()
        more = [f.DistrictFactory() for _ in range(8)]
        services.sync_schedules()
        for d in more:
            _runs(d)
        with django_assert_num_queries(2):
            large = selectors.dashboard_rows()
        with django_assert_num_queries(1):
            list(selectors.overdue_schedules(NOW))
        with django_assert_num_queries(2):
            selectors.failing_critical_schedules(NOW)
    assert len(large) == 5 * len(small) - 4  # 6 district jobs x 10 districts + 1 global


def test_sync_query_count_does_not_grow_with_districts(only_test_jobs, django_assert_max_num_queries):
    for _ in range(3):
        f.DistrictFactory()
    with django_assert_max_num_queries(12):
        services.sync_schedules()
    for _ in range(30):
        f.DistrictFactory()
    with django_assert_max_num_queries(12):
        services.sync_schedules()


def test_overdue_means_no_scheduler_and_heartbeat_is_recorded(only_test_jobs, new_york):
    from scheduling.scheduler import scheduler_pass

    with time_machine.travel(dt.datetime(2026, 12, 1, 6, 0, tzinfo=UTC), tick=False) as traveller:
        services.sync_schedules()
        assert selectors.last_scheduler_heartbeat() is None
        traveller.move_to(dt.datetime(2026, 12, 1, 7, 4, tzinfo=UTC))  # t-daily was due 07:00; grace is 5 min
        assert not selectors.overdue_schedules().exists()
        traveller.move_to(dt.datetime(2026, 12, 1, 7, 6, tzinfo=UTC))
        assert [s.job for s in selectors.overdue_schedules()] == ["t-daily"]
        scheduler_pass()  # the pre-pass hook installed in the qcluster sentinel
        scheduler_pass()
        assert selectors.last_scheduler_heartbeat() == dt.datetime(2026, 12, 1, 7, 6, tzinfo=UTC)
        assert SchedulerHeartbeat.objects.get().passes == 2
        assert not selectors.overdue_schedules().exists()  # fired (late), next run tomorrow


def test_scheduler_pass_is_what_the_qcluster_sentinel_calls():
    import django_q.cluster

    from scheduling.scheduler import scheduler_pass

    assert django_q.cluster.scheduler is scheduler_pass


def test_admin_pages_show_schedules_and_runs(only_test_jobs, new_york, system_admin, client):
    services.sync_schedules()
    _runs(new_york)
    client.force_login(system_admin)
    for name in ("jobschedule", "jobrun", "schedulechange", "schedulerheartbeat"):
        response = client.get(reverse(f"admin:scheduling_{name}_changelist"))
        assert response.status_code == 200, name
    page = client.get(reverse("admin:scheduling_jobschedule_changelist")).content.decode()
    assert "t-daily" in page and "At 02:00 every day" in page
    run = JobRun.objects.first()
    assert client.get(reverse("admin:scheduling_jobrun_change", args=[run.pk])).status_code == 200
