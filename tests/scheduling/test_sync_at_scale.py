"""``jobs sync`` at fleet size: a fixed number of statements whatever the number of districts
(plus one INSERT per 1,000 new rows), each new schedule linked to its own django-q2 row with
the first run in its own district's zone."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from scheduling import cron, services
from scheduling.models import JobSchedule, schedule_name
from tests import factories as f

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Pacific/Honolulu"]


def sync_queries() -> tuple[services.SyncReport, dict[str, int]]:
    """Sync, and count its statements: INSERTs apart (batched: 1,000 rows each on
    PostgreSQL, fewer on SQLite, which caps the parameters of one statement)."""
    with CaptureQueriesContext(connection) as ctx, time_machine.travel(NOW, tick=False):
        report = services.sync_schedules()
    inserts = sum(q["sql"].startswith("INSERT") for q in ctx.captured_queries)
    return report, {"inserts": inserts, "others": len(ctx.captured_queries) - inserts}


@pytest.mark.django_db
def test_sync_statements_do_not_grow_with_the_districts(only_test_jobs):
    f.DistrictFactory.create_batch(3, time_zone="America/New_York")
    small, small_q = sync_queries()
    f.DistrictFactory.create_batch(40, time_zone="America/Chicago")
    big, big_q = sync_queries()
    again, again_q = sync_queries()
    per_district = len([j for j in only_test_jobs.values() if not j.is_global])
    global_ = len(only_test_jobs) - per_district
    assert (small.created, big.created, again.created) == (3 * per_district + global_, 40 * per_district, 0)
    assert again.unchanged == 43 * per_district + global_
    assert small_q["others"] == big_q["others"] == again_q["others"]
    assert 2 <= big_q["inserts"] <= big.created / 20  # batches, never a statement per row
    assert again_q["inserts"] == 0


@pytest.mark.django_db
def test_each_new_schedule_is_linked_to_its_row_with_the_first_run_in_its_zone(only_test_jobs):
    districts = [f.DistrictFactory(time_zone=ZONES[i % len(ZONES)]) for i in range(12)]
    sync_queries()
    schedules = list(JobSchedule.objects.select_related("q_schedule", "district").exclude(cron=""))
    assert len(schedules) == Schedule.objects.filter(name__startswith="skillcore:").count()
    for s in schedules:
        assert s.q_schedule.name == schedule_name(s.job, s.district_id)
        assert s.q_schedule.next_run == cron.next_slot(s.cron, s.zone_name, NOW), (s.job, s.zone_name)
        assert services.q_row_zone(s.q_schedule) == s.zone_name
    daily = {s.district_id: s.q_schedule.next_run for s in schedules if s.job == "t-daily"}
    assert daily[districts[0].pk] == dt.datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # 02:00 EST
    assert daily[districts[3].pk] == dt.datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # 02:00 HST


@pytest.mark.django_db
def test_a_leftover_row_with_the_stable_name_is_reused_not_duplicated(only_test_jobs):
    district = f.DistrictFactory(time_zone="America/New_York")
    leftover = Schedule.objects.create(
        name=schedule_name("t-daily", district.pk), func=services.FIRE_FUNC, schedule_type=Schedule.CRON,
        cron="0 2 * * *", next_run=NOW,
    )
    sync_queries()
    s = JobSchedule.objects.get(job="t-daily", district=district)
    assert s.q_schedule_id == leftover.pk
    assert Schedule.objects.filter(name=leftover.name).count() == 1
