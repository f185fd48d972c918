"""The real django-q2 scheduler loop, driven under time travel, fires each slot once at
the district's local time (Debian cron DST rules) (docs/decisions/cron-and-dst.md)."""
from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django_q.models import Schedule

from scheduling import services
from scheduling.models import JobRun, JobSchedule
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import scheduler_pass

UTC = dt.UTC
NY = ZoneInfo("America/New_York")


def tick_through(traveller, start: dt.datetime, end: dt.datetime, step=dt.timedelta(seconds=30)) -> None:
    """Run a scheduler pass every ``step`` from start to end, as a qcluster sentinel does."""
    t = start
    while t <= end:
        traveller.move_to(t)
        scheduler_pass()
        t += step


def calls(job: str) -> list[dt.datetime]:
    return [slot for slug, slot, _ in jobs_for_tests.CALLS if slug == job]


def set_cron(job: str, district, expr: str) -> None:
    s = JobSchedule.objects.get(job=job, district=district)
    services.edit_cron(schedule=s, acting_user=None, cron_expr=expr)


@pytest.mark.django_db
def test_monthly_job_runs_once_on_the_fall_back_day(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2026, 10, 31, 12, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        set_cron("t-daily", new_york, "30 1 * * *")
        # Every 30 s from 00:00 EDT to 03:00 EST: the 01:00-01:59 hour happens twice.
        tick_through(traveller, dt.datetime(2026, 11, 1, 0, 0, tzinfo=NY), dt.datetime(2026, 11, 1, 3, 0, tzinfo=NY))

    assert calls("t-monthly") == [dt.datetime(2026, 11, 1, 5, 0, tzinfo=UTC)]  # 01:00 EDT, once
    assert calls("t-daily") == [dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]  # 01:30 EDT, once
    run = JobRun.objects.get(job="t-monthly")
    assert (run.trigger, run.status, run.result) == ("schedule", "succeeded", {"slots": 1})
    monthly = JobSchedule.objects.get(job="t-monthly", district=new_york).q_schedule
    assert monthly.next_run == dt.datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # 01:00 EST
    assert JobRun.objects.filter(district=new_york).count() == 2


@pytest.mark.django_db
def test_slot_in_the_skipped_spring_forward_hour_runs_once_at_three(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2027, 3, 13, 12, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        tick_through(traveller, dt.datetime(2027, 3, 14, 0, 0, tzinfo=NY), dt.datetime(2027, 3, 14, 5, 0, tzinfo=NY))

    # 02:00 does not exist on 2027-03-14: Debian cron runs it once, right after the jump.
    assert calls("t-daily") == [dt.datetime(2027, 3, 14, 7, 0, tzinfo=UTC)]
    assert calls("t-daily")[0].astimezone(NY).isoformat() == "2027-03-14T03:00:00-04:00"
    nxt = JobSchedule.objects.get(job="t-daily", district=new_york).q_schedule.next_run
    assert nxt.astimezone(NY).isoformat() == "2027-03-15T02:00:00-04:00"


@pytest.mark.django_db
def test_half_hour_zone_dst_changes_in_adelaide(only_test_jobs, adelaide):
    zone = ZoneInfo("Australia/Adelaide")
    with time_machine.travel(dt.datetime(2026, 10, 3, 12, tzinfo=zone), tick=False) as traveller:
        services.sync_schedules()
        set_cron("t-daily", adelaide, "30 2 * * *")
        # 2026-10-04: 02:00 ACST jumps to 03:00 ACDT, so 02:30 does not exist.
        tick_through(traveller, dt.datetime(2026, 10, 4, 1, 0, tzinfo=zone), dt.datetime(2026, 10, 4, 4, 0, tzinfo=zone))
        assert [s.astimezone(zone).isoformat() for s in calls("t-daily")] == ["2026-10-04T03:00:00+10:30"]
        # 2027-04-04: 03:00 ACDT falls back to 02:00 ACST, so 02:30 happens twice: once.
        jobs_for_tests.CALLS.clear()
        traveller.move_to(dt.datetime(2027, 4, 3, 12, tzinfo=zone))
        services.sync_schedules()  # unchanged: staff's cron stays
        s = JobSchedule.objects.get(job="t-daily", district=adelaide)
        services.pause_schedule(schedule=s, acting_user=None, note="jump ahead")
        services.resume_schedule(schedule=s, acting_user=None)
        tick_through(traveller, dt.datetime(2027, 4, 4, 1, 0, tzinfo=zone), dt.datetime(2027, 4, 4, 4, 0, tzinfo=zone))
    assert [s.astimezone(zone).isoformat() for s in calls("t-daily")] == ["2027-04-04T02:30:00+10:30"]
    assert JobSchedule.objects.get(job="t-daily", district=adelaide).cron == "30 2 * * *"


@pytest.mark.django_db
def test_two_districts_fire_at_their_own_local_times(only_test_jobs, new_york, kolkata):
    with time_machine.travel(dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC), tick=False) as traveller:
        services.sync_schedules()
        tick_through(traveller, dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC), dt.datetime(2026, 12, 2, 0, 0, tzinfo=UTC),
                     step=dt.timedelta(minutes=4))  # within the 5-minute overdue grace
    by_district = {d: slot for slug, slot, d in jobs_for_tests.CALLS if slug == "t-daily"}
    assert by_district[new_york.pk] == dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 02:00 EST
    assert by_district[kolkata.pk] == dt.datetime(2026, 11, 30, 20, 30, tzinfo=UTC) + dt.timedelta(days=1)  # 02:00 IST
    assert by_district[kolkata.pk].astimezone(ZoneInfo("Asia/Kolkata")).hour == 2
    # The global job runs at 04:00 in the global zone (UTC), once.
    assert calls("t-global") == [dt.datetime(2026, 12, 1, 4, 0, tzinfo=UTC)]
    assert set(JobRun.objects.exclude(job="t-nobody").values_list("status", flat=True)) == {"succeeded"}
    # A registered job whose body has not landed: its slots are recorded as skipped, not failed.
    assert set(JobRun.objects.filter(job="t-nobody").values_list("status", "note")) == {("skipped", "job t-nobody has no body yet")}


@pytest.mark.django_db
def test_first_monday_of_the_quarter(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2026, 12, 30, tzinfo=UTC), tick=False) as traveller:
        services.sync_schedules()
        set_cron("t-daily", new_york, "0 10 * 1,4,7,10 MON#1")
        nxt = JobSchedule.objects.get(job="t-daily", district=new_york).q_schedule.next_run
        assert nxt.astimezone(NY).isoformat() == "2027-01-04T10:00:00-05:00"
        tick_through(traveller, nxt - dt.timedelta(minutes=1), nxt + dt.timedelta(minutes=2))
        after = JobSchedule.objects.get(job="t-daily", district=new_york).q_schedule.next_run
    assert calls("t-daily") == [dt.datetime(2027, 1, 4, 15, 0, tzinfo=UTC)]
    # Not the 1st-7th of April nor every Monday: the first Monday of April, in EDT.
    assert after.astimezone(NY).isoformat() == "2027-04-05T10:00:00-04:00"


@pytest.mark.django_db
def test_paused_schedule_does_not_fire_and_resume_skips_stale_slots(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2026, 12, 1, 0, 0, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        s = JobSchedule.objects.get(job="t-daily", district=new_york)
        services.pause_schedule(schedule=s, acting_user=None, note="snow week")
        tick_through(traveller, dt.datetime(2026, 12, 1, 1, 55, tzinfo=NY), dt.datetime(2026, 12, 1, 2, 5, tzinfo=NY))
        assert calls("t-daily") == []
        traveller.move_to(dt.datetime(2026, 12, 3, 9, 0, tzinfo=NY))
        services.resume_schedule(schedule=s, acting_user=None)
        scheduler_pass()
        assert calls("t-daily") == []  # the slots of Dec 1-3 are not fired on resume
        nxt = JobSchedule.objects.get(pk=s.pk).q_schedule.next_run
        assert nxt.astimezone(NY).isoformat() == "2026-12-04T02:00:00-05:00"
    assert not JobRun.objects.filter(job="t-daily").exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_schedulers_fire_a_slot_once(only_test_jobs, new_york, postgres_only):
    """Two sentinels' passes at the same moment on one database: one task per slot (row
    locks), and even a duplicated task claims the slot once (unique run row)."""
    from django_q.brokers import get_broker
    from django_q.models import OrmQ
    from django_q.scheduler import scheduler

    with time_machine.travel(dt.datetime(2026, 12, 1, 1, 0, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(dt.datetime(2026, 12, 1, 2, 0, 20, tzinfo=NY))
        barrier = threading.Barrier(2)

        def one_scheduler():
            barrier.wait()
            scheduler(get_broker())
            connection.close()

        threads = [threading.Thread(target=one_scheduler) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        fire_tasks = OrmQ.objects.count()
        assert fire_tasks == 1
        # Now duplicate the delivery (a broker redelivery, or a second copy of the row):
        # two workers run the same fire task at once.
        from django_q.signing import SignedPackage

        task = SignedPackage.loads(OrmQ.objects.get().payload)
        OrmQ.objects.all().delete()
        from scheduling import tasks

        def worker():
            barrier.wait()
            tasks.fire(**{k: v for k, v in task["kwargs"].items()})
            connection.close()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert calls("t-daily") == [dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC)]
    assert JobRun.objects.filter(job="t-daily").count() == 1


@pytest.mark.django_db
def test_a_bad_row_does_not_stall_the_pass(only_test_jobs, new_york):
    with time_machine.travel(dt.datetime(2026, 12, 1, 1, 0, tzinfo=NY), tick=False) as traveller:
        services.sync_schedules()
        # A zone that no longer exists in the row (e.g. hand-edited): the pass goes on.
        Schedule.objects.filter(name__startswith="skillcore:t-monthly").update(
            kwargs=f"{{'job': 't-monthly', 'district': {new_york.pk}, 'tz': 'Mars/Olympus'}}",
            next_run=dt.datetime(2026, 12, 1, 5, 0, tzinfo=UTC),
        )
        traveller.move_to(dt.datetime(2026, 12, 1, 2, 0, 30, tzinfo=NY))
        scheduler_pass()
    assert calls("t-daily") == [dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC)]
