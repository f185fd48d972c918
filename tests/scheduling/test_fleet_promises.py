"""Issue #17's promises, attacked with cases the engine's own tests do not cover: each slot
run exactly once (never skipped, never twice) when deliveries, adjacent slots, run-now and
schedulers race; the overlap policy; the run counters exact when first runs settle at once;
DST nights for a spread job through batch firing; batch firing around paused, removed,
re-timed and global schedules and at the chunk boundary. The real claim, runner and passes;
races on PostgreSQL with threads holding their own connections."""
from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from scheduling import cron, firing, registry, runner, services, tasks
from scheduling.models import Incident, JobRun, JobRunCounter, JobSchedule
from scheduling.monitoring import counters
from tests import factories as f
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import scheduler_pass

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
SLOT = dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 02:00 New York: t-daily's slot
NEXT = dt.datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
SYNCED = SLOT - dt.timedelta(minutes=30)  # 01:30 New York: only t-daily falls due at 02:00


def deliver(district, slot=SLOT, job="t-daily") -> dict:
    """The fire task as a worker receives it (scheduling.tasks.fire)."""
    return tasks.fire(job=job, district=district.pk if district else None, tz="America/New_York",
                      scheduled_for=slot.isoformat())


def runs(job="t-daily") -> set[tuple]:
    return set(JobRun.objects.filter(job=job).values_list("slot", "status", "trigger"))


def counter(job="t-daily", district=None) -> JobRunCounter | None:
    return JobRunCounter.objects.filter(job=job, district=district).first()


def in_threads(*targets, timeout=30):
    """Run each target in its own thread (its own database connection) and wait for all."""
    errors = []

    def wrap(target):
        try:
            target()
        except BaseException as exc:  # surfaced in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    [t.start() for t in threads]
    [t.join(timeout) for t in threads]
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]


def wait_for_lock_waiter(timeout=10.0) -> None:
    """Until another backend of this database waits on a lock (pg_stat_activity)."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("no backend waited on a lock")


# -- a delivery seen twice ------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_fire_task_delivered_again_after_the_run_ended_changes_nothing(only_test_jobs, new_york):
    services.sync_schedules(now=SYNCED)
    with time_machine.travel(SLOT + dt.timedelta(seconds=20), tick=False):
        assert deliver(new_york)["claimed"] is True
    with time_machine.travel(SLOT + dt.timedelta(minutes=3), tick=False):
        assert deliver(new_york) == {"claimed": False}
    assert runs() == {(SLOT, "succeeded", "schedule")}
    assert (counter(district=new_york).executions, counter(district=new_york).skipped) == (1, 0)
    assert not Incident.objects.exists()


@pytest.mark.django_db
def test_a_fire_task_delivered_twice_while_its_run_runs_alerts_nothing(only_test_jobs, new_york):
    """Batch firing admits double delivery (a push accepted, the chunk's commit lost, and
    django-q2's loop fires the row again). The slot is running: nothing to record, nothing
    to tell anyone."""
    services.sync_schedules(now=SYNCED)
    now = SLOT + dt.timedelta(seconds=20)
    first = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=SLOT, now=now,
                                start=runner.started_fields("t-daily", now))
    with time_machine.travel(now + dt.timedelta(seconds=5), tick=False):
        assert deliver(new_york) == {"claimed": False}
    assert list(JobRun.objects.filter(job="t-daily").values_list("pk", "status")) == [(first.pk, "running")]
    assert counter(district=new_york) is None  # nothing was counted as skipped
    assert list(Incident.objects.values_list("kind", "summary")) == []


@pytest.mark.django_db
def test_a_fire_task_redelivered_after_its_worker_died_still_gets_the_slot_done(
        only_test_jobs, new_york, django_capture_on_commit_callbacks):
    """The worker running slot S (inserted started by the fire task) dies with the host; the
    cluster is back an hour later and the broker redelivers the task before the sentinel's
    first reaper pass. The slot must still be done (a retry from its checkpoint)."""
    services.sync_schedules(now=SYNCED)
    now = SLOT + dt.timedelta(seconds=20)
    lost = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=SLOT, now=now,
                               start=runner.started_fields("t-daily", now))
    back = now + dt.timedelta(seconds=3700)  # Q_RETRY: the redelivery
    with time_machine.travel(back, tick=False):
        # The redelivery recovers the lost run; its retry is sent when the claim commits.
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(new_york) == {"claimed": False}
    with time_machine.travel(back + dt.timedelta(seconds=30), tick=False):
        # The sentinel's pass: the reaper (its retry sent on commit), then the queue.
        with django_capture_on_commit_callbacks(execute=True):
            services.reap_lost_runs()
        scheduler_pass()
    lost.refresh_from_db()
    assert lost.status == "failed"
    assert JobRun.objects.filter(job="t-daily", slot=SLOT, status="succeeded", retry_of=lost).count() == 1
    assert [c for c in jobs_for_tests.CALLS if c[0] == "t-daily"] == [("t-daily", SLOT, new_york.pk)]


@pytest.mark.django_db
def test_a_lost_slot_run_reaped_before_its_redelivery_is_retried_once(only_test_jobs, new_york,
                                                                     django_capture_on_commit_callbacks):
    """The same death, the reaper first (the usual order): one retry finishes the slot, and
    the redelivery that follows changes nothing."""
    services.sync_schedules(now=SYNCED)
    now = SLOT + dt.timedelta(seconds=20)
    lost = services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=SLOT, now=now,
                               start=runner.started_fields("t-daily", now))
    with time_machine.travel(now + dt.timedelta(minutes=3), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert services.reap_lost_runs() == 1
        scheduler_pass()
    with time_machine.travel(now + dt.timedelta(seconds=3700), tick=False):
        assert deliver(new_york) == {"claimed": False}
    assert set(JobRun.objects.filter(job="t-daily").values_list("pk", "status", "retry_of")) == {
        (lost.pk, "failed", None), (lost.pk + 1, "succeeded", lost.pk)}
    assert [c for c in jobs_for_tests.CALLS if c[0] == "t-daily"] == [("t-daily", SLOT, new_york.pk)]


@pytest.mark.django_db
def test_a_chunk_pushed_to_redis_whose_commit_failed_is_fired_again_and_run_once(
        only_test_jobs, new_york, postgres_only, monkeypatch):
    """Redis accepted the chunk's push, then the chunk's UPDATE failed (a PostgreSQL trigger
    refuses it here): the rows stay due and the next pass pushes the slot again. The two
    deliveries run the slot once, and the second, after the first ended, tells no one."""
    import pydoc

    import redis
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf

    services.sync_schedules(now=SYNCED)
    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:6379/13")  # this test's own database number
    client = redis.from_url(Conf.REDIS)
    client.flushdb()
    broker = Redis()
    table = Schedule._meta.db_table
    try:
        with time_machine.travel(SLOT + dt.timedelta(seconds=20), tick=False):
            with connection.cursor() as cursor:
                cursor.execute("CREATE FUNCTION fleet_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                               "$$ BEGIN RAISE EXCEPTION 'the commit was lost'; END $$")
                cursor.execute(f'CREATE TRIGGER fleet_refuse BEFORE UPDATE ON "{table}" '
                               "FOR EACH ROW EXECUTE FUNCTION fleet_refuse()")
            with pytest.raises(Exception, match="the commit was lost"):
                firing.fire_due(broker=broker)
            with connection.cursor() as cursor:
                cursor.execute(f'DROP TRIGGER fleet_refuse ON "{table}"')
            assert Schedule.objects.get(name__startswith="skillcore:t-daily:").next_run == SLOT  # still due
            assert firing.fire_due(broker=broker).fired == 1
        payloads = [SignedPackage.loads(p) for p in client.lrange(broker.list_key, 0, -1)]
        assert [(t["kwargs"]["scheduled_for"], t["kwargs"]["district"]) for t in payloads] == [
            (SLOT.isoformat(), new_york.pk)] * 2
        results = []
        for i, task in enumerate(payloads):
            with time_machine.travel(SLOT + dt.timedelta(seconds=30 + 60 * i), tick=False):
                results.append(pydoc.locate(task["func"])(*task["args"], **task["kwargs"])["claimed"])
    finally:
        client.flushdb()
    assert results == [True, False]
    assert runs() == {(SLOT, "succeeded", "schedule")}
    assert counter(district=new_york).executions == 1
    assert not Incident.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("job", ["t-daily", "t-global"])
def test_a_slot_that_succeeds_resolves_what_its_schedule_had_open_and_nothing_else(only_test_jobs, new_york, job):
    """The settle now asks before it takes its savepoints: a district's and a global job's
    open failure and missed incidents are still resolved by a fired slot's success; another
    district's, and a kind success does not resolve, stay open."""
    from scheduling.monitoring import alerting

    other = f.DistrictFactory(time_zone="America/New_York")
    district = new_york if job == "t-daily" else None
    slot = SLOT if job == "t-daily" else dt.datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    services.sync_schedules(now=SYNCED)
    with time_machine.travel(SYNCED, tick=False):
        mine = [alerting.incident_open(kind=kind, job_slug=job, district=district, summary=f"{job} {kind}")
                for kind in (Incident.Kind.FAILURE, Incident.Kind.MISSED)]
        theirs = alerting.incident_open(kind=Incident.Kind.FAILURE, job_slug="t-daily", district=other, summary="other")
        down = alerting.incident_open(kind=Incident.Kind.SCHEDULER_DOWN, job_slug=job, district=district, summary="down")
    with time_machine.travel(slot + dt.timedelta(seconds=20), tick=False):
        assert tasks.fire(job=job, district=district and district.pk, tz="America/New_York" if district else "UTC",
                          scheduled_for=slot.isoformat())["status"] == "succeeded"
    open_now = set(Incident.objects.filter(resolved_at__isnull=True).values_list("pk", flat=True))
    assert open_now == {theirs.pk, down.pk}
    assert Incident.objects.filter(pk__in=[i.pk for i in mine], resolution__contains="succeeded").count() == 2


# -- races (PostgreSQL: row locks across connections) ------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_four_deliveries_of_one_slot_at_once_run_it_once(only_test_jobs, new_york, postgres_only):
    services.sync_schedules(now=SYNCED)
    start = threading.Barrier(4)
    results = []

    def worker():
        start.wait(10)
        results.append(deliver(new_york))

    with time_machine.travel(SLOT + dt.timedelta(seconds=20), tick=False):
        in_threads(*[worker] * 4)
    assert sorted(r["claimed"] for r in results) == [False, False, False, True]
    assert runs() == {(SLOT, "succeeded", "schedule")}
    assert [c for c in jobs_for_tests.CALLS if c[0] == "t-daily"] == [("t-daily", SLOT, new_york.pk)]
    assert (counter(district=new_york).executions, counter(district=new_york).skipped) == (1, 0)
    schedule = JobSchedule.objects.get(job="t-daily", district=new_york)
    assert schedule.last_slot == SLOT


@pytest.mark.django_db(transaction=True)
def test_adjacent_slots_claimed_at_once_never_both_run(only_test_jobs, new_york, postgres_only):
    """An every-minute schedule; the claims of slot N and slot N+1 (each with its own
    clock) race twenty times. The overlap policy: exactly one of them starts, the other is
    recorded skipped naming it; never both running, never neither."""
    services.sync_schedules(now=SYNCED)
    JobSchedule.objects.filter(job="t-daily", district=new_york).update(cron="* * * * *")
    base = SLOT
    for i in range(20):
        first, second = base + dt.timedelta(minutes=2 * i), base + dt.timedelta(minutes=2 * i + 1)
        start = threading.Barrier(2)

        def claim(slot, start=start):
            now = slot + dt.timedelta(seconds=10)
            start.wait(10)
            services.claim_slot(job_slug="t-daily", district_id=new_york.pk, slot=slot, now=now,
                                start=runner.started_fields("t-daily", now))

        in_threads(lambda first=first: claim(first), lambda second=second: claim(second))
        pair = dict(JobRun.objects.filter(job="t-daily", slot__in=[first, second]).values_list("slot", "status"))
        assert sorted(pair.values()) == ["running", "skipped"], (i, pair)
        # The running one ends before the next pair (as a real run of a minute's job would).
        JobRun.objects.filter(job="t-daily", status="running").update(status="succeeded", finished_at=second)
    assert JobRun.objects.filter(job="t-daily").count() == 40


@pytest.mark.django_db(transaction=True)
def test_a_slot_racing_a_run_now_of_the_same_district_runs_or_skips_once(only_test_jobs, new_york, system_admin,
                                                                         postgres_only):
    """Staff press "run now" as the slot fires. The manual run runs once; the slot is
    decided once (run, or skipped because the manual run was running): one row each."""
    services.sync_schedules(now=SYNCED)
    start = threading.Barrier(2)
    manual = {}

    def run_now():
        start.wait(10)
        manual["run"] = services.run_now(job_slug="t-daily", district=new_york, acting_user=system_admin)
        runner.execute(manual["run"].pk)

    def fire():
        start.wait(10)
        deliver(new_york)

    with time_machine.travel(SLOT + dt.timedelta(seconds=20), tick=False):
        in_threads(run_now, fire)
    assert JobRun.objects.get(pk=manual["run"].pk).status == "succeeded"
    (slot_run,) = JobRun.objects.filter(job="t-daily", trigger="schedule")
    assert slot_run.slot == SLOT and slot_run.status in ("succeeded", "skipped")
    ran = JobRun.objects.filter(job="t-daily", status="succeeded").count()
    assert len([c for c in jobs_for_tests.CALLS if c[0] == "t-daily"]) == ran
    assert counter(district=new_york).executions == ran


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("job", ["t-daily", "t-global"])
def test_first_runs_of_a_job_settling_at_once_both_count(only_test_jobs, new_york, job, postgres_only):
    """No counter row yet for the job and district. The first settle's transaction inserts
    it and stays open; the second's UPDATE matches nothing and its INSERT waits on the
    first (checked in pg_stat_activity); after the first commits, both are counted."""
    district_id = new_york.pk if job == "t-daily" else None
    inside, release = threading.Event(), threading.Event()

    def first():
        with transaction.atomic():
            counters.run_finished(job=job, district_id=district_id, status="succeeded", duration_seconds=1.0,
                                  finished_at=SLOT)
            inside.set()
            assert release.wait(10)

    def second():
        assert inside.wait(10)
        with transaction.atomic():
            counters.run_finished(job=job, district_id=district_id, status="failed", duration_seconds=2.0,
                                  finished_at=SLOT + dt.timedelta(seconds=1))

    def conductor():
        assert inside.wait(10)
        wait_for_lock_waiter()
        release.set()

    in_threads(first, second, conductor)
    row = JobRunCounter.objects.get(job=job, district_id=district_id)
    assert (row.executions, row.failures, row.timed, row.duration_sum, row.last_success) == (2, 1, 2, 3.0, SLOT)


# -- batch firing around staff's changes ---------------------------------------------------------
@pytest.mark.django_db
def test_batch_firing_leaves_paused_and_removed_schedules_and_follows_a_new_cron_and_a_global_job(
        only_test_jobs, system_admin):
    paused, removed, retimed, plain = f.DistrictFactory.create_batch(4, time_zone="America/New_York")
    with time_machine.travel(SYNCED, tick=False):
        services.sync_schedules()
        mine = {d: JobSchedule.objects.get(job="t-daily", district=d) for d in (paused, removed, retimed)}
        services.pause_schedule(schedule=mine[paused], acting_user=system_admin, note="audit week")
        services.delete_schedule(schedule=mine[removed], acting_user=system_admin)
        services.edit_cron(schedule=mine[retimed], acting_user=system_admin, cron_expr="30 2 * * *")
    at_0200 = SLOT + dt.timedelta(seconds=20)
    with time_machine.travel(at_0200, tick=False):
        scheduler_pass()
    assert set(JobRun.objects.filter(job="t-daily").values_list("district_id", "slot", "status")) == {
        (plain.pk, SLOT, "succeeded")}
    with time_machine.travel(SLOT + dt.timedelta(minutes=30, seconds=20), tick=False):
        scheduler_pass()
        # Resumed after its slot passed: the slot is not replayed.
        services.resume_schedule(schedule=JobSchedule.objects.get(pk=mine[paused].pk), acting_user=system_admin)
        scheduler_pass()
    global_slot = dt.datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # t-global: 04:00 UTC, the next one after sync
    with time_machine.travel(global_slot + dt.timedelta(seconds=20), tick=False):
        scheduler_pass()
    retimed_slot = SLOT + dt.timedelta(minutes=30)
    assert set(JobRun.objects.filter(job="t-daily").values_list("district_id", "slot", "status")) == {
        (plain.pk, SLOT, "succeeded"), (retimed.pk, retimed_slot, "succeeded")}
    assert runs("t-global") == {(global_slot, "succeeded", "schedule")}
    q = {s.district_id: s.q_schedule for s in JobSchedule.objects.select_related("q_schedule").filter(job="t-daily")}
    assert q[removed.pk] is None
    assert q[paused.pk].next_run == NEXT  # tomorrow's 02:00, not tonight's
    assert q[retimed.pk].next_run == NEXT + dt.timedelta(minutes=30)
    assert not Incident.objects.filter(job__in=["t-daily", "t-global"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("due", "chunks"), [(500, [500]), (501, [500, 1])])
def test_the_chunk_boundary_fires_every_row_once(only_test_jobs, new_york, due, chunks):
    services.sync_schedules(now=SYNCED)
    row = Schedule.objects.get(name__startswith="skillcore:t-daily:")
    Schedule.objects.bulk_create([
        Schedule(name=f"skillcore:t-daily:clone-{i}", func=row.func, kwargs=row.kwargs, schedule_type=row.schedule_type,
                 cron=row.cron, next_run=row.next_run, repeats=row.repeats, cluster=row.cluster,
                 intended_date_kwarg=row.intended_date_kwarg)
        for i in range(due - 1)
    ])
    rows = Schedule.objects.filter(name__startswith="skillcore:t-daily:")
    with time_machine.travel(SLOT + dt.timedelta(seconds=20), tick=False):
        report = firing.fire_due()
        assert (report.fired, report.per_chunk) == (due, chunks)
        assert firing.fire_due().fired == 0
    groups = [SignedPackage.loads(p)["group"] for p in OrmQ.objects.values_list("payload", flat=True)]
    assert sorted(groups) == sorted(rows.values_list("name", flat=True))
    assert set(rows.values_list("next_run", flat=True)) == {NEXT}
    assert set(rows.values_list("task", flat=True)) == {SignedPackage.loads(p)["id"]
                                                         for p in OrmQ.objects.values_list("payload", flat=True)}


# -- a spread job on the DST nights, through the real passes --------------------------------------
SPREAD = registry.Job(slug="t-fleet-spread", title="Test fleet spread", default_cron="0 2 * * *", why="test",
                      entry=jobs_for_tests.record, spread_minutes=60, timeout=30)


@pytest.fixture
def spread_job(monkeypatch):
    registry.register(SPREAD)
    monkeypatch.setattr(registry, "all_jobs", lambda: [SPREAD])
    yield
    registry.unregister(SPREAD.slug)


@pytest.mark.django_db
@pytest.mark.parametrize(("night", "expected", "following"), [
    # Fall back: 01:00-01:59 happens twice, 02:MM once (EST, UTC-5).
    (dt.date(2026, 11, 1), lambda m: dt.datetime(2026, 11, 1, 7, m, tzinfo=UTC),
     lambda m: dt.datetime(2026, 11, 2, 7, m, tzinfo=UTC)),
    # Spring forward: 02:MM does not exist; the slot runs once, at 03:00 EDT.
    (dt.date(2027, 3, 14), lambda m: dt.datetime(2027, 3, 14, 7, 0, tzinfo=UTC),
     lambda m: dt.datetime(2027, 3, 15, 6, m, tzinfo=UTC)),
], ids=["fall-back", "spring-forward"])
def test_a_spread_slot_runs_once_on_a_dst_night_through_batch_firing(spread_job, night, expected, following):
    district = f.DistrictFactory(time_zone="America/New_York")
    while not SPREAD.spread_offset(district.pk):  # the window's first minute would prove nothing
        district = f.DistrictFactory(time_zone="America/New_York")
    minute = SPREAD.spread_offset(district.pk)
    eve = dt.datetime.combine(night - dt.timedelta(days=1), dt.time(12), tzinfo=NY)
    with time_machine.travel(eve, tick=False):
        services.sync_schedules()
    # A pass every two minutes from 00:00 to 04:30 local (the sentinel's ~30 s is finer; two
    # minutes is within the overdue grace, so every slot is on time).
    moment = dt.datetime.combine(night, dt.time(0), tzinfo=NY).astimezone(UTC) + dt.timedelta(seconds=10)
    end = dt.datetime.combine(night, dt.time(4, 30), tzinfo=NY).astimezone(UTC)
    while moment < end:
        with time_machine.travel(moment, tick=False):
            scheduler_pass()
        moment += dt.timedelta(minutes=2)
    assert runs(SPREAD.slug) == {(expected(minute), "succeeded", "schedule")}
    q_row = JobSchedule.objects.select_related("q_schedule").get(job=SPREAD.slug, district=district).q_schedule
    assert q_row.next_run == following(minute)


@pytest.mark.django_db
@pytest.mark.parametrize("night", [dt.date(2026, 11, 1), dt.date(2027, 3, 14)], ids=["fall-back", "spring-forward"])
@pytest.mark.parametrize("expr", ["30 1 * * *", "15 * * * *", "*/20 1-3 * * *"])
def test_a_customized_cron_on_a_dst_night_fires_each_of_its_slots_once_through_batch_firing(
        only_test_jobs, new_york, system_admin, night, expr):
    """Staff's cron in the hours the clocks change: batch firing (and django-q2's loop after
    it) runs exactly the slots the cron module lists for the night, each once."""
    begin = dt.datetime.combine(night, dt.time(0, 30), tzinfo=NY).astimezone(UTC)
    with time_machine.travel(begin - dt.timedelta(minutes=10), tick=False):  # the night's first pass follows
        services.sync_schedules()
        services.edit_cron(schedule=JobSchedule.objects.get(job="t-daily", district=new_york),
                           acting_user=system_admin, cron_expr=expr)
    end = dt.datetime.combine(night, dt.time(4, 0), tzinfo=NY).astimezone(UTC)
    moment = begin + dt.timedelta(seconds=10)
    while moment < end:
        with time_machine.travel(moment, tick=False):
            scheduler_pass()
        moment += dt.timedelta(minutes=2)
    expected = cron.slots_between(expr, "America/New_York", after=begin, until=moment - dt.timedelta(minutes=2))
    assert expected  # the night has slots of this cron
    assert sorted(JobRun.objects.filter(job="t-daily").values_list("slot", "status", "trigger")) == [
        (s, "succeeded", "schedule") for s in expected]
