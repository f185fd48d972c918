"""The event bus (skillcore/events.py) and the stream-cleanup job, on both backends: the real
Redis at 127.0.0.1:6379 (each test under its own key prefix, removed afterwards) and the
EventBusEntry table (no REDIS_URL, the test settings' default)."""
from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest
import redis
import time_machine
from django.db import transaction
from django.utils import timezone

from scheduling import services
from scheduling.models import JobRun, SchedulerHeartbeat
from skillcore import events
from skillcore.models import EventBusEntry, StoredEvent
from tests.jobs.slot_runs import run_slot

pytestmark = pytest.mark.django_db
SLUG = "stream-cleanup"
REDIS_URL = "redis://127.0.0.1:6379/0"
DAY_MS = 86_400_000


@pytest.fixture
def bus(settings):
    """The Redis backend under a prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"skillcore-test:{uuid.uuid4().hex}:events:"
    settings.REDIS_URL = REDIS_URL
    settings.EVENT_STREAM_PREFIX = prefix
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _old(client, event_type: str, ms: int, n: int = 1) -> None:
    """Entries as if published at ``ms`` (Redis ids are <milliseconds>-<sequence>)."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(events.stream_name(event_type), {"payload": "{}"}, id=f"{ms}-{i}")
    pipe.execute()


# -- publishing ----------------------------------------------------------------------------------

def test_publish_to_the_table_in_one_insert_and_durable_events_to_the_store(django_assert_num_queries):
    moment = dt.datetime(2026, 11, 2, 18, 30, tzinfo=dt.UTC)
    with django_assert_num_queries(2):
        events.publish_many("intervention.opened", [{"intervention_id": i, "on": dt.date(2026, 11, 2)} for i in range(3)],
                            durable=True, occurred_at=moment)
    with django_assert_num_queries(1):
        events.publish("notification.sent", {"id": 7})
    rows = list(EventBusEntry.objects.order_by("id").values_list("stream", "event_type", "payload"))
    assert rows[0] == ("skillcore:events:intervention.opened", "intervention.opened", {"intervention_id": 0, "on": "2026-11-02"})
    assert rows[-1] == ("skillcore:events:notification.sent", "notification.sent", {"id": 7})
    stored = StoredEvent.objects.order_by("id")
    assert [(s.event_type, s.payload["intervention_id"], s.occurred_at) for s in stored] == [
        ("intervention.opened", i, moment) for i in range(3)]
    with django_assert_num_queries(0):
        assert events.publish_many("notification.sent", []) == 0


@pytest.mark.parametrize("bad", ["", "Intervention Opened", "x" * 101, "-leading-dash", "a:b"])
def test_a_bad_event_type_is_refused_before_anything_is_written(bad):
    with pytest.raises(ValueError, match="event type"):
        events.publish(bad, {"id": 1}, durable=True)
    assert not EventBusEntry.objects.exists() and not StoredEvent.objects.exists()


def test_publish_to_redis_after_commit_and_never_for_a_rolled_back_write(bus, django_capture_on_commit_callbacks):
    stream = events.stream_name("intervention.opened")
    with django_capture_on_commit_callbacks(execute=True):
        events.publish_many("intervention.opened", [{"intervention_id": 1}, {"intervention_id": 2}], durable=True)
        assert bus.xlen(stream) == 0  # not before the commit
        with pytest.raises(RuntimeError), transaction.atomic():
            events.publish("intervention.opened", {"intervention_id": 3}, durable=True)
            raise RuntimeError("the write failed")
    entries = bus.xrange(stream)
    assert [e[1][b"payload"] for e in entries] == [b'{"intervention_id":1}', b'{"intervention_id":2}']
    assert not EventBusEntry.objects.exists()  # Redis is the bus, not the table
    assert sorted(StoredEvent.objects.values_list("payload__intervention_id", flat=True)) == [1, 2]


def test_redis_down_is_logged_and_the_durable_event_is_kept(settings, caplog, django_capture_on_commit_callbacks):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    with caplog.at_level(logging.ERROR, logger="skillcore.events"), django_capture_on_commit_callbacks(execute=True):
        events.publish("intervention.opened", {"intervention_id": 5}, durable=True)
    assert "could not publish 1 event(s)" in caplog.text
    assert StoredEvent.objects.filter(payload__intervention_id=5).exists()


# -- the job on Redis --------------------------------------------------------------------------------

def test_redis_streams_are_trimmed_at_the_cutoff_and_the_store_is_kept(bus, settings, django_capture_on_commit_callbacks):
    slot = timezone.now().replace(microsecond=0)
    cutoff = _ms(slot - dt.timedelta(days=settings.EVENT_STREAM_RETENTION_DAYS))
    _old(bus, "intervention.opened", cutoff - DAY_MS, n=250)
    _old(bus, "intervention.opened", cutoff - 1)  # 1 ms before the cutoff: trimmed
    _old(bus, "intervention.opened", cutoff)  # exactly at the cutoff: kept
    _old(bus, "notification.sent", cutoff - 5)
    bus.set(settings.EVENT_STREAM_PREFIX + "not-a-stream", "x")  # SCAN TYPE STREAM skips it
    with django_capture_on_commit_callbacks(execute=True):
        events.publish_many("intervention.opened", [{"intervention_id": 1}, {"intervention_id": 2}], durable=True)
    stored = StoredEvent.objects.count()

    run = run_slot(SLUG, None, slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    opened, sent = events.stream_name("intervention.opened"), events.stream_name("notification.sent")
    assert run.result["backend"] == "redis" and run.result["streams"] == 2
    assert run.result["events_trimmed"] == 252
    assert run.result["trimmed_by_stream"] == {opened: 251, sent: 1}
    assert run.result["memory_freed_bytes"] > 0
    assert run.result["used_memory_before"] > 0 and run.result["used_memory_after"] > 0
    assert [e[0] for e in bus.xrange(opened)][0] == f"{cutoff}-0".encode()
    assert bus.xlen(opened) == 3 and bus.xlen(sent) == 0
    assert bus.get(settings.EVENT_STREAM_PREFIX + "not-a-stream") == b"x"
    assert StoredEvent.objects.count() == stored == 2

    retry = run_slot(SLUG, None, slot, trigger=JobRun.Trigger.RETRY, retry_of=run)
    assert retry.result["events_trimmed"] == 0 and bus.xlen(opened) == 3


def test_redis_trim_goes_in_bounded_steps(bus):
    cutoff = timezone.now() - dt.timedelta(days=30)
    _old(bus, "attendance.recorded", _ms(cutoff) - DAY_MS, n=2_000)
    _old(bus, "attendance.recorded", _ms(cutoff) + 1, n=5)
    calls = lambda: int(bus.info("commandstats").get("cmdstat_xtrim", {}).get("calls", 0))
    before = calls()
    report = events.trim(cutoff=cutoff, batch_size=500)
    assert report.trimmed == 2_000 and bus.xlen(events.stream_name("attendance.recorded")) == 5
    assert calls() - before >= 2_000 // 500 + 1  # approximate steps of at most 500, then one exact pass


def test_a_key_prefix_with_glob_characters_matches_only_itself(bus, settings):
    settings.EVENT_STREAM_PREFIX = base = settings.EVENT_STREAM_PREFIX + "[x]*:"
    cutoff = timezone.now() - dt.timedelta(days=30)
    _old(bus, "a", _ms(cutoff) - 10)
    settings.EVENT_STREAM_PREFIX = base.replace("[x]*:", "x-sibling:")  # matched by the unescaped glob
    _old(bus, "a", _ms(cutoff) - 10)
    sibling = events.stream_name("a")
    settings.EVENT_STREAM_PREFIX = base
    report = events.trim(cutoff=cutoff)
    assert report.streams == 1 and report.trimmed == 1
    assert bus.xlen(sibling) == 1
    bus.delete(sibling)


# -- the job on the table ----------------------------------------------------------------------------

def test_table_entries_older_than_the_retention_are_deleted_and_the_store_is_kept(settings):
    slot = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    cutoff = slot - dt.timedelta(days=30)
    for moment, event_type, n in [
        (cutoff - dt.timedelta(days=3), "intervention.opened", 4),
        (cutoff - dt.timedelta(microseconds=1), "notification.sent", 2),
        (cutoff, "notification.sent", 1),  # exactly at the cutoff: kept
        (slot - dt.timedelta(hours=1), "intervention.opened", 3),
    ]:
        with time_machine.travel(moment, tick=False):
            events.publish_many(event_type, [{"id": i} for i in range(n)], durable=True)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, None, slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert run.result == {
        "backend": "table", "cutoff": cutoff.isoformat(), "streams": 2, "events_trimmed": 6,
        "trimmed_by_stream": {"skillcore:events:intervention.opened": 4, "skillcore:events:notification.sent": 2},
        "store_cutoff": (slot - dt.timedelta(days=events.EVENT_STORE_RETENTION_DAYS)).isoformat(),
        "stored_events_purged": 0,
        "heartbeat_cutoff": (slot - dt.timedelta(days=30)).isoformat(), "heartbeats_pruned": 0,
    }
    assert sorted(EventBusEntry.objects.values_list("published_at", flat=True)) == [cutoff] + [slot - dt.timedelta(hours=1)] * 3
    assert StoredEvent.objects.count() == 10  # durable events are kept 7 years, not 30 days
    with time_machine.travel(slot + dt.timedelta(minutes=5), tick=False):
        retry = run_slot(SLUG, None, slot, trigger=JobRun.Trigger.RETRY, retry_of=run)
    assert retry.result["events_trimmed"] == 0 and EventBusEntry.objects.count() == 4


def test_table_deletes_go_in_batches(django_assert_num_queries):
    now = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    with time_machine.travel(now - dt.timedelta(days=40), tick=False):
        events.publish_many("attendance.recorded", [{"id": i} for i in range(10)])
    with time_machine.travel(now, tick=False):
        events.publish("attendance.recorded", {"id": 10})
    # Streams, what is due per stream, then DELETEs of at most 3 rows: 3 + 3 + 3 + 1.
    with django_assert_num_queries(2 + 4):
        report = events.trim(cutoff=now - dt.timedelta(days=30), batch_size=3)
    assert report.trimmed == 10 and list(EventBusEntry.objects.values_list("payload__id", flat=True)) == [10]


# -- the event store's 7 years and the scheduler heartbeats -------------------------------------------

def test_stored_events_and_heartbeats_past_their_retention_are_deleted_a_day_either_side():
    """A durable event one day inside the 7 years stays, one day outside goes; a heartbeat
    silent 29 days stays, 31 days goes; the newest heartbeat stays however old."""
    slot = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    store_cutoff = slot - dt.timedelta(days=events.EVENT_STORE_RETENTION_DAYS)
    assert store_cutoff == slot.replace(year=2019)  # 7 calendar years (2020 and 2024 were leap years)
    for moment, ident in [(store_cutoff - dt.timedelta(days=1), "outside"), (store_cutoff + dt.timedelta(days=1), "inside"),
                          (store_cutoff - dt.timedelta(days=900), "long gone"), (slot - dt.timedelta(days=1), "recent")]:
        events.publish("intervention.opened", {"id": ident}, durable=True, occurred_at=moment)
    for name, days in [("old:1", 31), ("kept:2", 29), ("live:3", 0)]:
        SchedulerHeartbeat.objects.create(name=name, last_beat=slot - dt.timedelta(days=days), passes=1)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, None, slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert (run.result["stored_events_purged"], run.result["heartbeats_pruned"]) == (2, 1)
    assert run.result["store_cutoff"] == store_cutoff.isoformat()
    assert sorted(StoredEvent.objects.values_list("payload__id", flat=True)) == ["inside", "recent"]
    assert sorted(SchedulerHeartbeat.objects.values_list("name", flat=True)) == ["kept:2", "live:3"]
    with time_machine.travel(slot + dt.timedelta(minutes=5), tick=False):
        retry = run_slot(SLUG, None, slot, trigger=JobRun.Trigger.RETRY, retry_of=run)
    assert (retry.result["stored_events_purged"], retry.result["heartbeats_pruned"]) == (0, 0)

    # A scheduler silent for months: its row is the last trace of when one ran, and stays.
    later = slot + dt.timedelta(days=120)
    with time_machine.travel(later, tick=False):
        run_slot(SLUG, None, later)
    assert list(SchedulerHeartbeat.objects.values_list("name", flat=True)) == ["live:3"]


def test_the_store_purge_deletes_by_id_range_in_batches(django_assert_num_queries):
    cutoff = dt.datetime(2019, 11, 29, 2, 0, tzinfo=dt.UTC)
    events.publish_many("attendance.recorded", [{"id": i} for i in range(5)], durable=True,
                        occurred_at=cutoff - dt.timedelta(days=2))
    # A late publisher's event inside the window, with an id among the old ones: kept.
    events.publish("attendance.recorded", {"id": "late"}, durable=True, occurred_at=cutoff + dt.timedelta(hours=1))
    events.publish_many("attendance.recorded", [{"id": i} for i in range(5, 10)], durable=True,
                        occurred_at=cutoff - dt.timedelta(seconds=1))
    events.publish("attendance.recorded", {"id": "at the cutoff"}, durable=True, occurred_at=cutoff)
    # The id range of what is due (one query), then one DELETE per 3 ids of the 11 in it.
    with django_assert_num_queries(1 + 4):
        assert events.store_purge(cutoff=cutoff, batch_size=3) == 10
    assert sorted(StoredEvent.objects.values_list("payload__id", flat=True)) == ["at the cutoff", "late"]
    with django_assert_num_queries(1):
        assert events.store_purge(cutoff=cutoff, batch_size=3) == 0


def test_heartbeats_prune_in_id_ranges_and_keeps_the_newest(django_assert_num_queries):
    now = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    for i in range(7):
        SchedulerHeartbeat.objects.create(name=f"h:{i}", last_beat=now - dt.timedelta(days=40 + i), passes=1)
    # The newest row, the stale id range, then DELETEs of 3 ids: 3 + 3 (one of them kept).
    with django_assert_num_queries(2 + 2):
        assert services.heartbeats_prune(before=now - dt.timedelta(days=30), batch_size=3) == 6
    assert list(SchedulerHeartbeat.objects.values_list("name", flat=True)) == ["h:0"]


def test_the_retention_is_a_setting(settings):
    settings.EVENT_STREAM_RETENTION_DAYS = 7
    slot = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    with time_machine.travel(slot - dt.timedelta(days=8), tick=False):
        events.publish("notification.sent", {"id": 1})
    with time_machine.travel(slot - dt.timedelta(days=6), tick=False):
        events.publish("notification.sent", {"id": 2})
    with time_machine.travel(slot, tick=False):
        run = run_slot(SLUG, None, slot)
    assert run.result["events_trimmed"] == 1
    assert list(EventBusEntry.objects.values_list("payload__id", flat=True)) == [2]


def test_a_bad_retention_in_the_environment_stops_with_one_line(settings):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import skillcore.settings"], capture_output=True, text=True,
        env={"EVENT_STREAM_RETENTION_DAYS": "thirty", "SECRET_KEY": "x", "PATH": "/usr/bin:/bin"}, cwd=settings.BASE_DIR,
    )
    assert proc.returncode != 0
    assert "EVENT_STREAM_RETENTION_DAYS" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_drained_batch_announces_the_messages_it_sent(counselor):
    from notifications.delivery import drain_batch
    from notifications.models import Notification
    from notifications.services import NotificationRequest, notifications_enqueue

    noon = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)
    with time_machine.travel(noon, tick=False):
        notifications_enqueue([
            NotificationRequest(recipient_id=counselor.pk, category="system", channel="email", template="system",
                                context=context, dedupe_key=key)
            for key, context in [("good", {"headline": "Hi", "message": "Test"}), ("broken", {"headline": "Hi"})]
        ])
        summary = drain_batch(worker="w1")
    assert (summary.sent, summary.failed) == (1, 1)
    good = Notification.objects.get(dedupe_key="good")
    assert list(EventBusEntry.objects.values_list("event_type", "payload")) == [
        ("notification.sent", {"id": good.id, "category": "system", "channel": "email", "recipient_id": counselor.id,
                               "student_id": None})]
    assert not StoredEvent.objects.exists()  # not a durable event
