"""The run counters /metrics reads (JobRunCounter): kept by every write that ends a run, once
per run, and independent of the run history (a scrape's cost and values survive pruning)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib

import pytest
import time_machine
from django.apps import apps
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest

from scheduling import registry, runner, services
from scheduling.models import JobRun, JobRunCounter, JobSchedule
from scheduling.monitoring import counters, metrics
from tests import factories as f
from tests.observability.test_metrics import _run, samples

UTC = dt.UTC


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def counter(slug, district) -> JobRunCounter:
    return JobRunCounter.objects.get(job=slug, district_id=district.pk if district else None)


def job_samples(m: dict, slug: str) -> dict:
    """Every sample of one job (any family), so before/after comparisons cover them all."""
    return {k: v for k, v in m.items() if ("job", slug) in k[1]}


def scrape(django_assert_num_queries) -> dict:
    registry = CollectorRegistry()
    registry.register(metrics.JobMetricsCollector())
    with django_assert_num_queries(metrics.QUERIES_ORM_BROKER):
        text = generate_latest(registry).decode()
    return {k: v for k, v in samples(text).items() if k[0] != "scheduled_job_metrics_scrape_seconds"}


def test_the_runner_counts_each_outcome_with_its_duration_and_last_success(only_obs_jobs, lakeside):
    for slug in ("obs-ok", "obs-fail"):
        run = JobRun.objects.create(job=slug, district=lakeside, trigger="manual", slot=timezone.now())
        runner.execute(run.pk, auto_retry=False)
    ok, failed = counter("obs-ok", lakeside), counter("obs-fail", lakeside)
    done = JobRun.objects.get(job="obs-ok")
    assert (ok.executions, ok.failures, ok.timed, ok.le_1, ok.le_7200) == (1, 0, 1, 1, 1)
    assert ok.duration_sum == pytest.approx(done.duration_seconds)
    assert ok.last_success == done.finished_at
    assert (failed.executions, failed.failures, failed.timeouts, failed.last_success) == (1, 1, 0, None)


def test_a_lost_run_is_counted_once_even_when_its_worker_comes_back(only_obs_jobs, lakeside, monkeypatch):
    """The reaper marks the run failed (counted); the worker then writes success on the same
    row: the row shows the real outcome, the counters do not count the run a second time."""
    run = JobRun.objects.create(job="obs-ok", district=lakeside, trigger="manual", slot=timezone.now())
    claimed = runner.claim(run.pk)

    def reaped_meanwhile(ctx):
        services.recover_lost_run(run=claimed, now=timezone.now(), enqueue=False)
        return {"items": 3}

    patched, original = dataclasses.replace(only_obs_jobs["obs-ok"], entry=reaped_meanwhile), registry.get
    monkeypatch.setattr(registry, "get", lambda slug: patched if slug == "obs-ok" else original(slug))
    runner._execute_claimed(claimed, enforce_timeout=False, auto_retry=False)
    run.refresh_from_db()
    assert run.status == "succeeded"
    c = counter("obs-ok", lakeside)
    assert (c.executions, c.failures, c.last_success) == (1, 1, None)


def test_missed_and_skipped_slots_are_counted_once_when_a_slot_is_delivered_twice(only_obs_jobs, lakeside):
    with time_machine.travel(at(2026, 12, 1, 0, 0), tick=False) as traveller:
        services.sync_schedules()
        # obs-ok: 06:00 New York (11:00 UTC), catch-up window 1 h: 3 days late, 4 slots missed.
        traveller.move_to(at(2026, 12, 4, 20, 0))
        for _ in range(2):  # a second scheduler (or a redelivered task) fires the same slot
            assert services.claim_slot(job_slug="obs-ok", district_id=lakeside.pk, slot=at(2026, 12, 1, 11, 0)) is None
    assert JobRun.objects.filter(job="obs-ok", status="missed").count() == 4
    assert counter("obs-ok", lakeside).missed == 4
    schedule = JobSchedule.objects.get(job="obs-warn", district=lakeside)
    services.pause_schedule(schedule=schedule, acting_user=None, note="audit week")
    for _ in range(2):
        services.claim_slot(job_slug="obs-warn", district_id=lakeside.pk, slot=at(2026, 12, 5, 14, 0))
    assert (counter("obs-warn", lakeside).skipped, counter("obs-warn", lakeside).missed) == (1, 0)


def test_concurrent_first_runs_of_a_job_and_district_share_one_counter_row(only_obs_jobs, lakeside):
    """The insert of the zero row ignores a conflict and the UPDATE adds: two first runs
    (here one after the other, the row created by the first) make one row counting two."""
    for _ in range(2):
        counters.run_finished(job="obs-ok", district_id=lakeside.pk, status="succeeded", duration_seconds=2.0,
                              finished_at=timezone.now())
    counters.run_finished(job="obs-global", district_id=None, status="failed", duration_seconds=None, finished_at=None)
    assert JobRunCounter.objects.filter(job="obs-ok").count() == 1
    assert (counter("obs-ok", lakeside).executions, counter("obs-ok", lakeside).le_5) == (2, 2)
    assert (counter("obs-global", None).failures, counter("obs-global", None).timed) == (1, 0)


def test_a_late_success_never_moves_last_success_backwards(only_obs_jobs, lakeside):
    later, earlier = at(2026, 12, 2, 9, 0), at(2026, 12, 1, 9, 0)
    for finished in (later, earlier):
        counters.run_finished(job="obs-ok", district_id=lakeside.pk, status="succeeded", duration_seconds=1.0,
                              finished_at=finished)
    assert counter("obs-ok", lakeside).last_success == later


def test_a_failure_after_a_success_keeps_last_success_and_a_first_run_writes_one_statement(only_obs_jobs, lakeside):
    """The counter is one upsert whatever the run's outcome: a failure adds to its counts and
    leaves the last success as it was; a global job's row (district NULL) is its own."""
    ok = at(2026, 12, 1, 9, 0)
    with CaptureQueriesContext(connection) as first:
        counters.run_finished(job="obs-ok", district_id=lakeside.pk, status="succeeded", duration_seconds=2.0, finished_at=ok)
    counters.run_finished(job="obs-ok", district_id=lakeside.pk, status="failed", duration_seconds=9.0,
                          finished_at=at(2026, 12, 2, 9, 0))
    counters.run_finished(job="obs-ok", district_id=None, status="failed", duration_seconds=1.0, finished_at=ok)
    row = counter("obs-ok", lakeside)
    assert len(first.captured_queries) == 1
    assert (row.executions, row.failures, row.timed, row.le_5, row.le_15, row.last_success) == (2, 1, 2, 1, 2, ok)
    assert (counter("obs-ok", None).executions, counter("obs-ok", None).last_success) == (1, None)


def test_scrape_cost_and_values_do_not_depend_on_history(only_obs_jobs, lakeside, django_assert_num_queries):
    """Same number of queries at 4 and 404 runs; after deleting every finished run (history
    pruned) the counters, histogram and last success read exactly as before."""
    traveller = time_machine.travel(at(2026, 12, 1, 9, 0), tick=False)
    traveller.start()
    services.sync_schedules()
    _run("obs-ok", lakeside, "succeeded", 3.0)
    _run("obs-fail", lakeside, "failed", 40.0)
    _run("obs-fail", lakeside, "missed")
    _run("obs-slow", lakeside, "running")
    small = scrape(django_assert_num_queries)
    assert small[("scheduled_job_executions_total", (("job", "obs-ok"),))] == 1

    others = [f.DistrictFactory() for _ in range(3)]
    for i in range(400):
        _run("obs-ok", others[i % 3], "succeeded" if i % 4 else "timed_out", float(i % 90))
    large = scrape(django_assert_num_queries)
    assert large[("scheduled_job_executions_total", (("job", "obs-ok"),))] == 401
    assert large[("scheduled_job_timeouts_total", (("job", "obs-ok"),))] == 100
    assert large[("scheduled_job_duration_seconds_count", (("job", "obs-ok"),))] == 401
    assert job_samples(large, "obs-fail") == job_samples(small, "obs-fail")

    JobRun.objects.filter(status__in=JobRun.FINISHED).delete()
    assert JobRun.objects.count() == 1  # the running one
    pruned = scrape(django_assert_num_queries)
    assert pruned == large
    assert pruned[("scheduled_job_running", (("job", "obs-slow"),))] == 1
    traveller.stop()


def test_the_migration_backfills_the_counters_from_history(only_obs_jobs, lakeside):
    """What the counters say after the backfill is what the old scrape computed from the rows."""
    finished = at(2026, 11, 30, 6, 0)
    for status, seconds in (("succeeded", 0.5), ("succeeded", 20.0), ("failed", 700.0), ("timed_out", None),
                            ("missed", None), ("skipped", None), ("running", None)):
        _run("obs-ok", lakeside, status, seconds, finished_at=finished)
    _run("obs-ok", None, "succeeded", 1.0, finished_at=finished)
    expected = {(c.job, c.district_id): c for c in JobRunCounter.objects.all()}
    JobRunCounter.objects.all().delete()
    importlib.import_module("scheduling.migrations.0006_job_run_counters").backfill(apps, None)
    fields = [fld.attname for fld in JobRunCounter._meta.concrete_fields if fld.attname != "id"]
    got = {(c.job, c.district_id): c for c in JobRunCounter.objects.all()}
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        assert {n: getattr(got[key], n) for n in fields} == {n: getattr(want, n) for n in fields}
    assert got[("obs-ok", lakeside.pk)].executions == 4 and got[("obs-ok", lakeside.pk)].le_30 == 2


# -- skillcore.counters.add (da8563f) in cases its tests did not write ----------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers: SQLite has one writer")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("per_district", [True, False])
def test_concurrent_first_upserts_from_their_own_connections_make_one_row_and_lose_nothing(lakeside, per_district):
    """Four workers, each on its own connection, start together on a key with no row yet:
    every first upsert but one meets the others' uncommitted insert, waits, and adds."""
    import threading

    district_id = lakeside.pk if per_district else None
    workers, each = 4, 10
    start, errors = threading.Barrier(workers), []
    finished = [at(2026, 12, 1, 9, 0) + dt.timedelta(minutes=w) for w in range(workers)]

    def worker(w):
        try:
            start.wait(10)
            for i in range(each):
                with transaction.atomic():
                    counters.run_finished(job="obs-race", district_id=district_id,
                                          status="succeeded" if i % 2 else "failed", duration_seconds=3.0,
                                          finished_at=finished[w] - dt.timedelta(seconds=i))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    row = JobRunCounter.objects.get(job="obs-race")
    assert row.district_id == district_id
    n = workers * each
    assert (row.executions, row.failures, row.timed, row.le_1, row.le_5, row.duration_sum) == (n, n // 2, n, 0, n, 3.0 * n)
    # The latest success of all: worker 3's first success (i = 1).
    assert row.last_success == finished[-1] - dt.timedelta(seconds=1)


def test_a_global_row_and_a_district_row_of_one_job_are_kept_apart_in_either_order(only_obs_jobs, lakeside):
    other = f.DistrictFactory(name="Other")
    counters.run_finished(job="obs-ok", district_id=None, status="succeeded", duration_seconds=0.5,
                          finished_at=at(2026, 12, 1, 9, 0))
    counters.run_finished(job="obs-ok", district_id=lakeside.pk, status="timed_out", duration_seconds=40.0,
                          finished_at=at(2026, 12, 1, 10, 0))
    counters.run_finished(job="obs-ok", district_id=other.pk, status="failed", duration_seconds=None, finished_at=None)
    counters.run_finished(job="obs-ok", district_id=None, status="failed", duration_seconds=None, finished_at=None)
    counters.slots_decided(job="obs-ok", district_id=None, missed=2, skipped=1)
    counters.slots_decided(job="obs-ok", district_id=lakeside.pk, missed=0, skipped=0)  # nothing to add
    rows = {r.district_id: r for r in JobRunCounter.objects.filter(job="obs-ok")}
    assert set(rows) == {None, lakeside.pk, other.pk}
    g, d, o = rows[None], rows[lakeside.pk], rows[other.pk]
    assert (g.executions, g.failures, g.missed, g.skipped, g.le_1, g.last_success) == (2, 1, 2, 1, 1, at(2026, 12, 1, 9, 0))
    assert (d.executions, d.failures, d.timeouts, d.le_30, d.le_60, d.last_success) == (1, 1, 1, 0, 1, None)
    assert (o.executions, o.failures, o.timed, o.duration_sum) == (1, 1, 0, 0.0)


def test_last_success_compares_instants_not_local_clock_readings_and_keeps_microseconds(only_obs_jobs, lakeside):
    """Given in New York time, a success at 09:30 there (14:30 UTC) is earlier than one stored
    at 15:00 UTC; one a half second later than the stored one replaces it."""
    import zoneinfo

    ny = zoneinfo.ZoneInfo("America/New_York")
    stored = at(2026, 12, 1, 15, 0)

    def success(finished):
        counters.run_finished(job="obs-ok", district_id=lakeside.pk, status="succeeded", duration_seconds=1.0,
                              finished_at=finished)
        return counter("obs-ok", lakeside).last_success

    assert success(stored) == stored
    assert success(dt.datetime(2026, 12, 1, 9, 30, tzinfo=ny)) == stored
    later = stored + dt.timedelta(microseconds=500_000)
    assert success(later) == later
    assert success(stored) == later  # the whole second is earlier than the half
    assert success(dt.datetime(2026, 12, 1, 10, 0, 1, tzinfo=ny)) == at(2026, 12, 1, 15, 0, 1)
    assert counter("obs-ok", lakeside).executions == 5


def test_calendar_skips_with_quotes_and_unicode_reasons_add_per_reason(only_obs_jobs, db):
    from scheduling.models import CalendarSkipCounter

    reasons = {"Winter break": 2, "O'Brien Day \"observed\"": 1, "Fête — neige ❄": 3, "back\\slash": 1}
    counters.calendar_skipped(job="obs-ok", reasons=reasons)
    counters.calendar_skipped(job="obs-ok", reasons={"Fête — neige ❄": 1, "Winter break": 0})
    counters.calendar_skipped(job="obs-warn", reasons={"Winter break": 5})
    got = dict(CalendarSkipCounter.objects.filter(job="obs-ok").values_list("reason", "skipped"))
    assert got == {**reasons, "Fête — neige ❄": 4}
    assert CalendarSkipCounter.objects.get(job="obs-warn").skipped == 5
