"""Periodic system tasks (settings.SCHEDULING_PERIODIC_TASKS): ``jobs sync`` keeps one
django-q2 MINUTES row per entry, by its stable name, and django-q2's own loop fires them."""
from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from scheduling import periodic_tasks
from scheduling.models import JobSchedule

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def sync_command() -> str:
    out = StringIO()
    call_command("jobs", "sync", stdout=out)
    return out.getvalue()


def periodic_rows() -> list[tuple]:
    return list(Schedule.objects.filter(name__startswith="periodic:").order_by("name").values_list(
        "name", "func", "kwargs", "schedule_type", "minutes", "repeats", "next_run", "cluster"))


def test_the_project_declares_the_outbox_drain_every_minute_and_digest_assembly_hourly(only_test_jobs):
    with time_machine.travel(T0, tick=False):
        assert sync_command().splitlines()[1] == "periodic tasks: created 3, updated 0, unchanged 0, removed 0"
    assert periodic_rows() == [
        ("periodic:notifications-assemble-daily-digests", "notifications.tasks.assemble_digests",
         "{'frequency': 'daily'}", Schedule.MINUTES, 60, -1, T0, None),
        ("periodic:notifications-assemble-weekly-digests", "notifications.tasks.assemble_digests",
         "{'frequency': 'weekly'}", Schedule.MINUTES, 60, -1, T0, None),
        ("periodic:notifications-drain-outbox", "notifications.tasks.drain_outbox", "", Schedule.MINUTES, 1, -1, T0, None),
    ]


def test_a_second_sync_leaves_the_same_rows_and_their_next_runs(only_test_jobs):
    with time_machine.travel(T0, tick=False):
        sync_command()
    first = list(Schedule.objects.filter(name__startswith="periodic:").order_by("pk").values_list("pk", "name"))
    before = periodic_rows()
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        assert sync_command().splitlines()[1] == "periodic tasks: created 0, updated 0, unchanged 3, removed 0"
    assert list(Schedule.objects.filter(name__startswith="periodic:").order_by("pk").values_list("pk", "name")) == first
    assert periodic_rows() == before  # a deploy never pushes a drain back


def test_a_changed_interval_or_kwargs_is_updated_in_place(only_test_jobs, settings):
    with time_machine.travel(T0, tick=False):
        sync_command()
    drain = Schedule.objects.get(name="periodic:notifications-drain-outbox")
    Schedule.objects.filter(pk=drain.pk).update(next_run=T0 + dt.timedelta(minutes=1))
    daily = Schedule.objects.get(name="periodic:notifications-assemble-daily-digests")
    Schedule.objects.filter(pk=daily.pk).update(next_run=T0 + dt.timedelta(minutes=60))
    settings.SCHEDULING_PERIODIC_TASKS = {
        **settings.SCHEDULING_PERIODIC_TASKS,
        "notifications-drain-outbox": {"func": "notifications.tasks.drain_outbox", "minutes": 5,
                                       "kwargs": {"batch_size": 200}},
        "notifications-assemble-daily-digests": {"func": "notifications.tasks.assemble_digests",
                                                 "kwargs": {"frequency": "daily"}, "minutes": 15},
    }
    with time_machine.travel(T0 + dt.timedelta(seconds=10), tick=False):
        assert sync_command().splitlines()[1] == "periodic tasks: created 0, updated 2, unchanged 1, removed 0"
    drain.refresh_from_db()
    daily.refresh_from_db()
    assert (drain.minutes, drain.kwargs, drain.repeats) == (5, "{'batch_size': 200}", -1)
    assert drain.next_run == T0 + dt.timedelta(minutes=1)  # sooner than now + 5 min: kept
    assert daily.minutes == 15
    assert daily.next_run == T0 + dt.timedelta(minutes=15, seconds=10)  # the shorter interval counts from now
    assert Schedule.objects.filter(name__startswith="periodic:").count() == 3


def test_a_row_stopped_or_edited_by_hand_is_put_back_and_an_undeclared_one_removed(only_test_jobs, settings):
    with time_machine.travel(T0, tick=False):
        sync_command()
        Schedule.objects.filter(name="periodic:notifications-drain-outbox").update(repeats=0, minutes=30)
        Schedule.objects.create(name="periodic:retired-task", func="notifications.tasks.drain_outbox",
                                schedule_type=Schedule.MINUTES, minutes=1, next_run=T0)
        # Two syncs raced on a first deploy: the younger duplicate goes.
        Schedule.objects.create(name="periodic:notifications-assemble-weekly-digests", func="x.y",
                                schedule_type=Schedule.MINUTES, minutes=1, next_run=T0)
        mine = Schedule.objects.create(name="district-report", func="notifications.tasks.drain_outbox",
                                       schedule_type=Schedule.DAILY, next_run=T0)
        assert sync_command().splitlines()[1] == "periodic tasks: created 0, updated 1, unchanged 2, removed 2"
    rows = periodic_rows()
    assert [r[0] for r in rows] == ["periodic:notifications-assemble-daily-digests",
                                    "periodic:notifications-assemble-weekly-digests", "periodic:notifications-drain-outbox"]
    assert rows[2][4:6] == (1, -1)
    assert Schedule.objects.filter(pk=mine.pk).exists()  # a system admin's own row is not ours


@pytest.mark.parametrize("declaration, message", [
    ({"drain": {"func": "notifications.tasks.drain_outbox", "minutes": 0}}, "minutes must be a whole number >= 1"),
    ({"drain": {"func": "notifications.tasks.no_such_task", "minutes": 1}}, "is not an importable callable"),
    ({"drain": {"func": "notifications.tasks.drain_outbox", "minutes": 1, "kwargs": [1]}}, "kwargs must be a dict"),
    ({"drain": {"func": "notifications.tasks.drain_outbox", "every": 1}}, "give a dict of func, minutes"),
])
def test_a_malformed_declaration_exits_2_with_one_line_and_writes_nothing(only_test_jobs, settings, declaration, message):
    settings.SCHEDULING_PERIODIC_TASKS = declaration
    with pytest.raises(CommandError) as info:
        call_command("jobs", "sync", stdout=StringIO())
    assert info.value.returncode == 2 and "\n" not in str(info.value)
    assert str(info.value).startswith("SCHEDULING_PERIODIC_TASKS['drain']: ") and message in str(info.value)
    assert not Schedule.objects.exists() and not JobSchedule.objects.exists()


def test_django_q2s_pass_fires_the_due_rows_once_and_moves_them_an_interval_on(only_test_jobs):
    """The engine's batch firing takes only its own CRON rows; django-q2's loop, which
    scheduling.scheduler.fire runs after it, fires these."""
    from django_q.brokers import get_broker

    from scheduling.scheduler import fire

    with time_machine.travel(T0, tick=False):
        periodic_tasks.sync()
    with time_machine.travel(T0 + dt.timedelta(seconds=30), tick=False):
        fire(get_broker())
    funcs = sorted((SignedPackage.loads(q.payload)["func"], str(SignedPackage.loads(q.payload)["kwargs"].get("frequency")))
                   for q in OrmQ.objects.all())
    assert funcs == [("notifications.tasks.assemble_digests", "daily"), ("notifications.tasks.assemble_digests", "weekly"),
                     ("notifications.tasks.drain_outbox", "None")]
    next_runs = dict(Schedule.objects.filter(name__startswith="periodic:").values_list("name", "next_run"))
    assert next_runs["periodic:notifications-drain-outbox"] == T0 + dt.timedelta(minutes=1)
    assert next_runs["periodic:notifications-assemble-daily-digests"] == T0 + dt.timedelta(minutes=60)
    with time_machine.travel(T0 + dt.timedelta(seconds=50), tick=False):
        fire(get_broker())  # nothing due yet: nothing more queued
    assert OrmQ.objects.count() == 3


def test_sync_costs_the_same_statements_however_many_rows_change(only_test_jobs, settings, django_assert_num_queries):
    with time_machine.travel(T0, tick=False):
        # The savepoint and its release around: the read, and one INSERT for all the rows.
        with django_assert_num_queries(4):
            periodic_tasks.sync()
        settings.SCHEDULING_PERIODIC_TASKS = {k: {**v, "minutes": v["minutes"] + 1}
                                              for k, v in settings.SCHEDULING_PERIODIC_TASKS.items()}
        with django_assert_num_queries(4):  # the read, and one UPDATE for all three
            periodic_tasks.sync()


# -- jobs check and /health say when they are missing or paused -----------------------------------
def check_command() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("jobs", "check", stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


DRAIN = "periodic:notifications-drain-outbox"


def test_jobs_check_exits_1_naming_a_periodic_task_missing_paused_or_out_of_date(only_test_jobs, settings):
    from scheduling import services

    with time_machine.travel(T0, tick=False):
        services.sync_schedules(now=T0)  # the jobs' schedules only: a deploy that skipped `jobs sync`'s new part
        services.record_heartbeat(name="host:1", now=T0)
        code, out = check_command()
        assert code == 1
        assert f"missing: periodic task {DRAIN} (notifications.tasks.drain_outbox) has no schedule: " \
               "run `manage.py jobs sync`" in out.splitlines()
        assert sum(line.startswith("missing: periodic task") for line in out.splitlines()) == 3

        sync_command()
        assert check_command() == (0, "ok: no schedule overdue, no critical job failing, periodic tasks in place; "
                                      "last scheduler heartbeat: 2026-12-01T12:00:00+00:00\n")

        Schedule.objects.filter(name=DRAIN).update(repeats=0)  # stopped in django-q2's admin
        code, out = check_command()
        assert code == 1 and out.splitlines()[0] == (
            f"paused: periodic task {DRAIN} (notifications.tasks.drain_outbox) has repeats 0, "
            "so django-q2 never fires it: run `manage.py jobs sync`")

        sync_command()
        settings.SCHEDULING_PERIODIC_TASKS = {**settings.SCHEDULING_PERIODIC_TASKS,
                                              "notifications-drain-outbox": {"func": "notifications.tasks.drain_outbox",
                                                                             "minutes": 5}}
        code, out = check_command()
        assert code == 1 and out.splitlines()[0] == (
            f"out of date: periodic task {DRAIN} differs from SCHEDULING_PERIODIC_TASKS: run `manage.py jobs sync`")
        sync_command()
        assert check_command()[0] == 0


def test_the_periodic_check_is_one_query_however_many_tasks(only_test_jobs, settings, django_assert_num_queries):
    settings.SCHEDULING_PERIODIC_TASKS = {
        f"drain-{n}": {"func": "notifications.tasks.drain_outbox", "minutes": n + 1} for n in range(20)}
    with django_assert_num_queries(1):
        assert len(periodic_tasks.problems()) == 20
    periodic_tasks.sync(now=T0)
    with django_assert_num_queries(1):
        assert periodic_tasks.problems() == []


def test_health_is_503_naming_a_missing_periodic_task_and_ok_once_synced(only_test_jobs, client):
    from scheduling import services

    with time_machine.travel(T0, tick=False):
        services.record_heartbeat(name="host:1", now=T0)
        periodic_tasks.sync(now=T0)
        Schedule.objects.filter(name=DRAIN).delete()
        response = client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy" and body["scheduler"]["ok"] is True
        assert body["periodic_tasks"] == {"ok": False, "problems": [
            f"missing: periodic task {DRAIN} (notifications.tasks.drain_outbox) has no schedule: run `manage.py jobs sync`"]}
        periodic_tasks.sync(now=T0)
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["periodic_tasks"] == {"ok": True, "problems": []}
