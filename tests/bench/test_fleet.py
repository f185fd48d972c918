"""The fleet benchmark's own arithmetic (bench/fleet.py): which slots make the night, and
what it reports from the runs, the tasks and the schedulers' logs. The night itself (real
qclusters for minutes) is not run here; docs/benchmarks.md has its figures."""
from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import pytest
import time_machine
from django_q.models import Schedule, Task

from bench import fleet
from scheduling import cron, services
from scheduling.models import JobRun
from tests.factories import DistrictFactory

NY = zoneinfo.ZoneInfo("America/New_York")
SUNDAY_2AM_NY = dt.datetime(2026, 12, 13, 2, 0, tzinfo=NY).astimezone(dt.UTC)  # 07:00Z


def test_percentile_is_a_lateness_that_happened():
    values = [float(v) for v in range(1, 101)]
    assert (fleet._percentile(values, 50), fleet._percentile(values, 95), fleet._percentile(values, 99)) == (50, 95, 99)
    assert fleet._percentile([3.5], 99) == 3.5
    assert fleet._percentile([], 99) == 0.0
    assert fleet._percentile([1.0, 10.0], 50) == 1.0


@pytest.mark.django_db
@time_machine.travel(dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC), tick=False)
def test_the_night_holds_each_schedules_first_slot_in_its_districts_zone():
    DistrictFactory(time_zone="America/New_York")
    DistrictFactory(time_zone="America/Chicago")
    DistrictFactory(time_zone="Pacific/Honolulu")
    services.sync_schedules()
    rows = list(Schedule.objects.filter(name__startswith="skillcore:", schedule_type=Schedule.CRON).exclude(repeats=0))

    for minutes in (60, 61, 24 * 60):
        window = dt.timedelta(minutes=minutes)
        # The oracle: each row's own next slot, one cron evaluation per row (the benchmark
        # evaluates once per cron and zone).
        expected = {}
        for row in rows:
            slot = cron.next_slot(row.cron, services.q_row_zone(row), SUNDAY_2AM_NY - dt.timedelta(seconds=1))
            if slot < SUNDAY_2AM_NY + window:
                expected[row.pk] = slot
        assert fleet._night_slots(SUNDAY_2AM_NY, window) == expected
    # A whole day holds slots of every zone, at different instants.
    zones = {services.q_row_zone(r) for r in rows if r.pk in expected}
    assert zones >= {"America/New_York", "America/Chicago", "Pacific/Honolulu"}
    assert len(set(expected.values())) > 3


@pytest.mark.django_db
def test_the_report_counts_lateness_catch_ups_missed_lost_claims_and_the_schedulers_statements(tmp_path):
    district = DistrictFactory()
    burst = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)
    second = burst + dt.timedelta(minutes=6)
    for i, late in enumerate([1, 2, 3, 40]):
        JobRun.objects.create(job=f"job-{i}", district=district, trigger=JobRun.Trigger.SCHEDULE, slot=burst,
                              status=JobRun.Status.SUCCEEDED, started_at=burst + dt.timedelta(seconds=late),
                              finished_at=burst + dt.timedelta(seconds=late + 1))
    JobRun.objects.create(job="job-late", district=district, trigger=JobRun.Trigger.CATCH_UP, slot=second,
                          status=JobRun.Status.SUCCEEDED, started_at=second + dt.timedelta(seconds=400))
    JobRun.objects.create(job="job-missed", district=district, trigger=JobRun.Trigger.SCHEDULE, slot=second,
                          status=JobRun.Status.MISSED)
    # A second delivery of a slot already claimed returns claimed: False (the run row is unique).
    Task.objects.create(id="a" * 32, name="t1", func="scheduling.tasks.fire", started=burst, stopped=burst,
                        success=True, result={"claimed": False})
    Task.objects.create(id="b" * 32, name="t2", func="scheduling.tasks.fire", started=burst, stopped=burst,
                        success=True, result={"claimed": True, "run": 1, "status": "succeeded"})
    log = tmp_path / "k1-cluster0.jsonl"
    log.write_text("\n".join(json.dumps(line) for line in [
        {"start": burst.timestamp() + 2, "fired": 4, "chunks": 1, "seconds": 0.25, "queries": 4},
        {"start": second.timestamp() + 30, "fired": 3, "chunks": 1, "seconds": 0.5, "queries": 3},
    ]))
    slots = {1: burst, 2: burst, 3: burst, 4: burst, 5: second, 6: second, 7: second}  # one never ran
    night = {"start": burst, "bursts": {burst: 4, second: 3}, "loads": [1.0, 3.0], "done_at": None, "logs": [log]}

    report = fleet._report(1, 2, slots, night, compress=10)

    first, then = report["bursts"]
    assert (first["slots"], first["runs"], first["late_p50"], first["late_p99"], first["late_max"]) == (4, 4, 2, 40, 40)
    assert (first["fire_seconds"], first["queries_per_fired_slot"], first["catch_up"], first["missed"]) == (0.25, 1.0, 0, 0)
    assert (then["runs"], then["late_max"], then["catch_up"], then["missed"], then["fire_seconds"]) == (2, 400, 1, 1, 0.5)
    assert report["deliveries_that_lost_the_claim"] == 1
    assert report["duplicate_runs"] == 0
    assert report["slots_without_run"] == 7 - 6
    assert (report["load_mean"], report["load_max"]) == (2.0, 3.0)
    # The whole window: every started run's lateness (1, 2, 3, 40, 400 s), nearest rank.
    night_figures = report["night"]
    assert (night_figures["late_p50"], night_figures["late_p99"], night_figures["late_max"]) == (3, 400, 400)
    assert (night_figures["catch_up"], night_figures["missed"]) == (1, 1)
    # Four runs finished, from the first start (+1 s) to the last finish (+41 s); 1 s each.
    assert (report["runs_per_second"], report["run_seconds_median"]) == (0.1, 1.0)
