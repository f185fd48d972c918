"""The engine's due slots are fired in chunks (scheduling/firing.py): a few statements per
chunk, each chunk committed on its own, shared by several schedulers through SKIP LOCKED,
and each slot still fired and run exactly once."""
from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from django.db import connection, transaction
from django_q.brokers import get_broker
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from scheduling import firing, services
from scheduling.models import JobRun
from tests import factories as f
from tests.scheduling import jobs_for_tests
from tests.scheduling.conftest import drain_queue, scheduler_pass

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
SYNCED = dt.datetime(2026, 12, 1, 1, 0, tzinfo=NY)
BURST = dt.datetime(2026, 12, 1, 2, 0, 20, tzinfo=NY)  # 02:00 New York: every t-daily slot is due
SLOT = dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
NEXT = dt.datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


def daily_rows():
    return Schedule.objects.filter(name__startswith="skillcore:t-daily:")


def queued_tasks() -> list[dict]:
    return [SignedPackage.loads(p) for p in OrmQ.objects.order_by("id").values_list("payload", flat=True)]


@pytest.fixture
def burst(only_test_jobs, db):
    """23 New York districts synced at 01:00; their t-daily rows fall due at 02:00."""
    districts = f.DistrictFactory.create_batch(23, time_zone="America/New_York")
    with time_machine.travel(SYNCED, tick=False):
        services.sync_schedules()
    return districts


@pytest.mark.django_db
def test_a_burst_is_fired_in_chunks_of_a_few_statements_each(burst, django_assert_num_queries):
    with time_machine.travel(BURST, tick=False):
        # 5 chunks of 5 (23 t-daily rows + 2 t-global/t-monthly are not due): 23 = 5+5+5+5+3.
        # Each chunk: claim, insert the tasks, advance the rows = 3 statements, plus its
        # savepoint and release here (inside the test's transaction; a transaction of its own
        # in the scheduler, whose BEGIN/COMMIT are not counted).
        with django_assert_num_queries(5 * (3 + 2)):
            report = firing.fire_due(chunk=5)
    assert (report.fired, report.chunks, report.per_chunk) == (23, 5, [5, 5, 5, 5, 3])
    tasks = queued_tasks()
    assert len(tasks) == 23
    assert {t["kwargs"]["district"] for t in tasks} == {d.pk for d in burst}
    assert {t["kwargs"]["scheduled_for"] for t in tasks} == {SLOT.isoformat()}
    assert {(t["func"], t["timeout"], t["kwargs"]["job"], t["kwargs"]["tz"]) for t in tasks} == {
        ("scheduling.tasks.fire", 30, "t-daily", "America/New_York")}
    # Every row now waits for tomorrow's 02:00 and names the task it just sent.
    assert set(daily_rows().values_list("next_run", flat=True)) == {NEXT}
    assert {s.task for s in daily_rows()} == {t["id"] for t in tasks}
    assert {t["group"] for t in tasks} == set(daily_rows().values_list("name", flat=True))


@pytest.mark.django_db
def test_the_task_is_the_one_django_q2s_loop_would_send(burst, monkeypatch):
    """The worker cannot tell a batch-fired task from one django-q2's own loop sent."""
    from django_q.scheduler import scheduler

    with time_machine.travel(BURST, tick=False):
        theirs_row = daily_rows().order_by("id").first()
        Schedule.objects.exclude(pk=theirs_row.pk).update(repeats=0)
        scheduler(get_broker())  # django-q2's loop fires only that row
        (theirs,) = queued_tasks()
        OrmQ.objects.all().delete()
        Schedule.objects.exclude(pk=theirs_row.pk).update(repeats=-1)
        firing.fire_due()
    ours = next(t for t in queued_tasks() if t["group"] != theirs["group"])
    assert set(ours) == set(theirs)
    assert set(ours["kwargs"]) == set(theirs["kwargs"])
    same = {k for k in theirs if k not in ("id", "name", "group", "started", "kwargs")}
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}


@pytest.mark.django_db
def test_each_slot_runs_once_through_the_real_pass(burst):
    with time_machine.travel(BURST, tick=False):
        scheduler_pass()
        scheduler_pass()  # a second pass finds nothing due
    assert sorted(d for slug, _, d in jobs_for_tests.CALLS if slug == "t-daily") == sorted(d.pk for d in burst)
    assert set(JobRun.objects.filter(job="t-daily").values_list("slot", "status", "trigger")) == {
        (SLOT, "succeeded", "schedule")}
    assert JobRun.objects.filter(job="t-daily").count() == 23


@pytest.mark.django_db
def test_paused_foreign_and_one_off_rows_are_left_alone(burst):
    """A paused row does not fire; rows that are not the engine's CRON rows (another app's,
    a retry's one-off row) are django-q2's loop's, which still fires them in the same pass."""
    paused = daily_rows().order_by("id").first()
    Schedule.objects.filter(pk=paused.pk).update(repeats=0)
    with time_machine.travel(BURST, tick=False):
        Schedule.objects.create(name="other-app", func="math.floor", args="1.5", schedule_type=Schedule.ONCE,
                                next_run=BURST - dt.timedelta(minutes=1))
        report = firing.fire_due()
        assert report.fired == 22
        assert Schedule.objects.filter(name="other-app").exists()
        assert Schedule.objects.get(pk=paused.pk).next_run == SLOT
        from scheduling.scheduler import fire

        fire(get_broker())
    assert not Schedule.objects.filter(name="other-app").exists()  # django-q2 fired (and deleted) it
    assert [t["func"] for t in queued_tasks()].count("math.floor") == 1


@pytest.mark.django_db
def test_a_row_with_bad_kwargs_does_not_stall_the_chunk(burst):
    bad = daily_rows().order_by("id").first()
    Schedule.objects.filter(pk=bad.pk).update(kwargs="not a dict(")
    zone = daily_rows().order_by("id")[1]
    Schedule.objects.filter(pk=zone.pk).update(kwargs=zone.kwargs.replace("America/New_York", "Mars/Olympus"))
    with time_machine.travel(BURST, tick=False):
        report = firing.fire_due(chunk=500)
        assert report.fired == 23
        # The bad rows are pushed an hour ahead; every other row fired its slot.
        assert Schedule.objects.get(pk=bad.pk).next_run == BURST + dt.timedelta(hours=1)
        assert Schedule.objects.get(pk=zone.pk).next_run == BURST + dt.timedelta(hours=1)
    assert len(queued_tasks()) == 22  # the unreadable row sent nothing; the bad zone's task went


@pytest.mark.django_db
def test_the_redis_broker_gets_one_push_per_chunk(burst, monkeypatch):
    from django_q.brokers.redis_broker import Redis
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "REDIS", "redis://127.0.0.1:6379/12")  # this test's own database number
    client = redis.from_url(Conf.REDIS)
    client.flushdb()
    broker = Redis()
    pushes = []
    real = broker.connection.rpush
    monkeypatch.setattr(broker.connection, "rpush", lambda key, *values: pushes.append(len(values)) or real(key, *values))
    try:
        with time_machine.travel(BURST, tick=False):
            report = firing.fire_due(broker=broker, chunk=10)
        assert pushes == [10, 10, 3] == report.per_chunk
        payloads = client.lrange(broker.list_key, 0, -1)
        assert {SignedPackage.loads(p)["kwargs"]["district"] for p in payloads} == {d.pk for d in burst}
        assert not OrmQ.objects.exists()
    finally:
        client.flushdb()


# -- several schedulers, real transactions (PostgreSQL: SQLite has no row locks) --------------
@pytest.mark.django_db(transaction=True)
def test_two_schedulers_share_a_burst_and_fire_each_slot_once(burst, postgres_only):
    """Two schedulers start on the same burst; the first waits after its first chunk until
    the second has fired one, so both take part. Every slot is fired exactly once."""
    first_done, second_done = threading.Event(), threading.Event()
    reports = {}

    def scheduler(name, mine, theirs):
        def after_chunk(report):
            if report.chunks == 1:
                mine.set()
                assert theirs.wait(20), "the other scheduler never fired a chunk"
        try:
            reports[name] = firing.fire_due(chunk=4, after_chunk=after_chunk)
        finally:
            mine.set()
            connection.close()

    with time_machine.travel(BURST, tick=False):
        threads = [threading.Thread(target=scheduler, args=("a", first_done, second_done)),
                   threading.Thread(target=scheduler, args=("b", second_done, first_done))]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        assert reports["a"].fired > 0 and reports["b"].fired > 0
        assert reports["a"].fired + reports["b"].fired == 23
        tasks = queued_tasks()
        assert sorted(t["kwargs"]["district"] for t in tasks) == sorted(d.pk for d in burst)
        drain_queue()
    assert JobRun.objects.filter(job="t-daily", slot=SLOT).count() == 23


@pytest.mark.django_db(transaction=True)
def test_rows_another_scheduler_holds_are_skipped_not_waited_for(burst, postgres_only):
    """While another scheduler's chunk holds 10 rows (its transaction still open), this one
    fires the other 13 at once instead of waiting for the lock."""
    holding, release = threading.Event(), threading.Event()

    def other_scheduler():
        with transaction.atomic():
            list(daily_rows().select_for_update().order_by("next_run", "id")[:10])
            holding.set()
            release.wait(20)
        connection.close()

    other = threading.Thread(target=other_scheduler)
    other.start()
    try:
        assert holding.wait(20)
        with time_machine.travel(BURST, tick=False):
            report = firing.fire_due(chunk=500)
        assert report.fired == 13
        assert OrmQ.objects.count() == 13
    finally:
        release.set()
        other.join(20)
    with time_machine.travel(BURST, tick=False):
        assert firing.fire_due().fired == 10  # released: the held rows fire now, once


@pytest.mark.django_db(transaction=True)
def test_workers_see_a_chunk_before_the_pass_ends(burst, postgres_only):
    """After each chunk commits, another connection (a worker) sees its tasks while the pass
    is still firing the next chunks."""
    seen = []

    def after_chunk(report):
        def worker():
            seen.append((report.chunks, OrmQ.objects.count(), report.fired))
            connection.close()

        t = threading.Thread(target=worker)
        t.start()
        t.join(20)

    with time_machine.travel(BURST, tick=False):
        firing.fire_due(chunk=10, after_chunk=after_chunk)
    assert seen == [(1, 10, 10), (2, 20, 20), (3, 23, 23)]


@pytest.mark.django_db
def test_the_due_rows_are_read_through_an_index_on_next_run():
    """django-q2 ships no index on next_run: every pass scanned the whole table."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Schedule._meta.db_table)
    assert ["next_run"] in [c["columns"] for c in constraints.values() if c["index"]]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN SELECT id FROM django_q_schedule WHERE next_run < now() ORDER BY next_run LIMIT 500")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "scheduling_q_schedule_next_run" in plan
