"""Periodic system tasks: the django-q2 Schedule rows of ``settings.SCHEDULING_PERIODIC_TASKS``.

The project declares a few tasks that must run on every deployment but are not jobs: the
outbox drain every minute, digest assembly every hour. A job has a district, cron slots, a
run row per slot, catch-up, missed-slot alerts; the drain needs none of that (it would
write half a million run rows a year). So the project lists them in its settings
(key -> dotted path, kwargs, interval in minutes) and ``manage.py jobs sync``, which every
deploy runs, keeps one django-q2 MINUTES row per entry, named ``periodic:<key>``. The
engine knows them only by dotted path, as django-q2 does: it never imports them.

Who fires them: django-q2's own scheduler loop (``scheduling.scheduler.fire`` runs it after
the engine's batch firing, which takes only CRON rows named "skillcore:"). With
``catch_up`` off (Q_CLUSTER), a cluster back after an outage fires each row once, then
every interval from then on, not once per missed interval.

The declaration wins: a row edited in django-q2's admin (its interval, its kwargs, repeats
set to 0) is put back by the next sync; a row whose key left the declaration is deleted.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule

PREFIX = "periodic:"


class PeriodicTaskError(ValueError):
    """The declaration is malformed; the message is one line naming the entry."""


@dataclass(frozen=True)
class PeriodicTask:
    """One entry of the declaration, as its django-q2 row holds it."""

    name: str
    func: str
    kwargs: str  # repr of a dict, as django-q2 reads it (ast.literal_eval); "" for none
    minutes: int


@dataclass
class PeriodicSyncReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    def __str__(self) -> str:
        return (f"periodic tasks: created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
                f"removed {self.removed}")


def declared() -> list[PeriodicTask]:
    """The declaration, checked: each entry needs a task that imports and is callable, a
    whole number of minutes >= 1 and kwargs as a dict. A typo fails the sync (and so the
    deploy) with one line, rather than every minute in a worker."""
    out = []
    for key, spec in (getattr(settings, "SCHEDULING_PERIODIC_TASKS", None) or {}).items():
        where = f"SCHEDULING_PERIODIC_TASKS[{key!r}]"
        if not isinstance(spec, dict) or set(spec) - {"func", "kwargs", "minutes"}:
            raise PeriodicTaskError(f"{where}: give a dict of func, minutes and optionally kwargs")
        minutes, kwargs, func = spec.get("minutes"), spec.get("kwargs") or {}, spec.get("func")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes < 1:
            raise PeriodicTaskError(f"{where}: minutes must be a whole number >= 1, not {minutes!r}")
        if not isinstance(kwargs, dict):
            raise PeriodicTaskError(f"{where}: kwargs must be a dict, not {kwargs!r}")
        try:
            target = import_string(func) if isinstance(func, str) else None
        except ImportError:
            target = None
        if not callable(target):
            raise PeriodicTaskError(f"{where}: func {func!r} is not an importable callable")
        name = f"{PREFIX}{key}"
        if len(name) > Schedule._meta.get_field("name").max_length:
            raise PeriodicTaskError(f"{where}: the key is too long for a schedule name")
        out.append(PeriodicTask(name=name, func=func, kwargs=repr(kwargs) if kwargs else "", minutes=minutes))
    return out


def _in_line(row: Schedule, task: PeriodicTask) -> bool:
    return (row.func, row.kwargs or "", row.schedule_type, row.minutes, row.repeats) == (
        task.func, task.kwargs, Schedule.MINUTES, task.minutes, -1)


@transaction.atomic
def sync(*, now: dt.datetime | None = None) -> PeriodicSyncReport:
    """Create, update or delete the ``periodic:`` rows so they match the declaration.
    Idempotent: a second sync changes nothing (and leaves every next run as it was, so a
    deploy never delays a drain). A fixed number of statements, whatever changed.

    1. Check the declaration (bad: PeriodicTaskError, nothing written).
    2. Read every ``periodic:`` row (one query); of two rows with one name (two syncs racing
       on a first deploy) the older is kept and the other deleted.
    3. Create the missing rows, first run now (the scheduler's next pass fires them).
    4. Bring changed rows in line; a new interval takes effect from now: the next run moves
       to now + interval when that is sooner than the one already set.
    5. Delete the rows of keys no longer declared.
    """
    now = now or timezone.now()
    tasks = declared()
    report = PeriodicSyncReport()
    rows: dict[str, Schedule] = {}
    extra: list[int] = []
    for row in Schedule.objects.filter(name__startswith=PREFIX).order_by("pk"):
        if row.name in rows:
            extra.append(row.pk)
        else:
            rows[row.name] = row
    fresh, changed = [], []
    for task in tasks:
        row = rows.pop(task.name, None)
        if row is None:
            fresh.append(Schedule(name=task.name, func=task.func, kwargs=task.kwargs, schedule_type=Schedule.MINUTES,
                                  minutes=task.minutes, repeats=-1, next_run=now))
        elif _in_line(row, task):
            report.unchanged += 1
        else:
            soonest = now + dt.timedelta(minutes=task.minutes)
            row.next_run = min(row.next_run, soonest) if row.next_run else now
            row.func, row.kwargs, row.schedule_type, row.minutes, row.repeats = (
                task.func, task.kwargs, Schedule.MINUTES, task.minutes, -1)
            changed.append(row)
    if fresh:
        Schedule.objects.bulk_create(fresh)  # bulk_create: never through Schedule.save()'s next-run rule
        report.created = len(fresh)
    if changed:
        Schedule.objects.bulk_update(changed, ["func", "kwargs", "schedule_type", "minutes", "repeats", "next_run"])
        report.updated = len(changed)
    gone = [row.pk for row in rows.values()]
    if gone or extra:
        Schedule.objects.filter(pk__in=gone + extra).delete()
        report.removed = len(gone) + len(extra)
    return report


def problems() -> list[str]:
    """What keeps a declared periodic task from running, one line each; empty when all is
    well. For ``manage.py jobs check`` and /health: a deploy that skipped ``jobs sync``
    leaves the outbox undrained (no email, text or push goes out) and nothing else says so.
    One query, whatever the number of tasks.

    - missing: the task has no row (sync never ran with this declaration);
    - paused: its row's repeats is 0, which django-q2's scheduler never fires (set in
      django-q2's admin, or a row stopped by hand);
    - out of date: its row differs from the declaration (an interval or kwargs changed
      in the settings and not synced yet).
    A malformed declaration is one line too (sync would refuse it).
    """
    try:
        tasks = declared()
    except PeriodicTaskError as exc:
        return [f"periodic tasks: {exc}"]
    rows = {row.name: row for row in Schedule.objects.filter(name__in=[t.name for t in tasks])
            .only("name", "func", "kwargs", "schedule_type", "minutes", "repeats")}
    out = []
    for task in tasks:
        row = rows.get(task.name)
        if row is None:
            out.append(f"missing: periodic task {task.name} ({task.func}) has no schedule: run `manage.py jobs sync`")
        elif row.repeats == 0:
            out.append(f"paused: periodic task {task.name} ({task.func}) has repeats 0, so django-q2 never fires it: "
                       "run `manage.py jobs sync`")
        elif not _in_line(row, task):
            out.append(f"out of date: periodic task {task.name} differs from SCHEDULING_PERIODIC_TASKS: "
                       "run `manage.py jobs sync`")
    return out
