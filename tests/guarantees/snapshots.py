"""Whole-database snapshots of a job's effects, for the exactly-once harness.

The tables are every concrete model's table (auto-created many-to-many tables included)
minus the run bookkeeping in ``BOOKKEEPING``: a table added to any app later is covered
without touching this file. Rows are read with plain SQL, keyed by primary key, every
column compared.

Ids: ``sequences_reset`` starts each table's id sequence at its own base (10^9 + i x 10^7),
so every id a scenario creates is a 10-digit number that names its table. Between a clean
run and a faulted run that was retried, ids of new rows legitimately differ (PostgreSQL
spends a sequence value on every ``ON CONFLICT DO NOTHING`` row the retry skips), so
``canonical`` renames each new row's id to (table, rank among the new rows) everywhere it
appears: primary keys, foreign keys, and inside text and JSON (dedupe keys, event
payloads). A re-run is compared on raw rows, ids included: it must write nothing.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter

from django.apps import apps
from django.db import connection, models

# Run bookkeeping: written by the runner, the scheduler, the alerting and the metrics on
# every run by design, so a re-run legitimately changes them. Everything else is an effect.
BOOKKEEPING = {
    "django_q_task", "django_q_schedule", "django_q_ormq",  # the queue (one-off retry schedules, follow-ups)
    "scheduling_jobrun", "scheduling_jobschedule",  # run rows, the schedule's last_run
    "scheduling_schedulechange", "scheduling_schedulerheartbeat",  # schedule audit, scheduler liveness
    "scheduling_jobruncounter", "scheduling_alertdeliverycounter", "notifications_notificationcounter",  # metrics counters
    "scheduling_incident", "scheduling_alertdelivery",  # alerting on run outcomes
    "skillcore_accesslog",  # the access trail (each run records its own reads; proven separately)
    "django_session",  # logins, not jobs
}
ID_BASE = 10**9
ID_STEP = 10**7
_NEW_ID = re.compile(r"(?<!\d)(\d{10})(?!\d)")


def _concrete_models() -> list[type[models.Model]]:
    seen, out = set(), []
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or not meta.managed or meta.db_table in seen:
            continue
        seen.add(meta.db_table)
        out.append(model)
    return sorted(out, key=lambda m: m._meta.db_table)


def effect_tables() -> list[tuple[str, str]]:
    """(table, primary key column) of every table a job's effect can land in."""
    return [(m._meta.db_table, m._meta.pk.column) for m in _concrete_models() if m._meta.db_table not in BOOKKEEPING]


def _sequenced_tables() -> list[str]:
    """Tables with an auto-incremented id: the effect tables and the run table (run ids
    land in effect rows as ``job_run_id``)."""
    auto = (models.AutoField, models.BigAutoField, models.SmallAutoField)
    return [m._meta.db_table for m in _concrete_models()
            if isinstance(m._meta.pk, auto) and (m._meta.db_table not in BOOKKEEPING or m._meta.db_table == "scheduling_jobrun")]


def sequence_bases() -> dict[str, int]:
    return {table: ID_BASE + i * ID_STEP for i, table in enumerate(_sequenced_tables())}


def sequences_save() -> dict:
    """PostgreSQL sequences are not transactional: remember them to put them back."""
    if connection.vendor != "postgresql":
        return {}
    saved = {}
    with connection.cursor() as cursor:
        for table in _sequenced_tables():
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            seq = cursor.fetchone()[0]
            if seq:
                cursor.execute(f"SELECT last_value, is_called FROM {seq}")
                saved[seq] = cursor.fetchone()
    return saved


def sequences_restore(saved: dict) -> None:
    with connection.cursor() as cursor:
        for seq, (value, called) in saved.items():
            cursor.execute("SELECT setval(%s, %s, %s)", [seq, value, called])


def sequences_reset() -> None:
    """Every sequenced table's next id is its base + 1 (SQLite: inside the transaction, so
    rolled back with the scenario; PostgreSQL: set again at each scenario's start)."""
    with connection.cursor() as cursor:
        for table, base in sequence_bases().items():
            if connection.vendor == "postgresql":
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, true)", [table, base])
            else:
                cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
                cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, base])


def _value(v):
    if isinstance(v, memoryview):
        return bytes(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def snapshot() -> dict[str, dict]:
    """{table: {pk: {column: value}}} over every effect table."""
    qn = connection.ops.quote_name
    out = {}
    with connection.cursor() as cursor:
        for table, pk in effect_tables():
            cursor.execute(f"SELECT * FROM {qn(table)}")
            names = [c[0] for c in cursor.description]
            rows = {}
            for row in cursor.fetchall():
                values = dict(zip(names, (_value(v) for v in row)))
                rows[values[pk]] = values
            out[table] = rows
    return out


def new_rows(before: dict, after: dict, table: str) -> list[dict]:
    return [row for pk, row in after[table].items() if pk not in before[table]]


def canonical(snap: dict, baseline: dict, run_ids: set[int]) -> dict:
    """The snapshot with each new row's id replaced by (table, rank among new rows) and every
    run id by "run", wherever they appear (key, foreign key, text, JSON)."""
    names: dict[int, str] = {i: "<run>" for i in run_ids}
    for table, rows in snap.items():
        fresh = sorted(pk for pk in rows if pk not in baseline[table] and isinstance(pk, int))
        names.update({pk: f"<{table}#{rank}>" for rank, pk in enumerate(fresh)})

    def rename(v):
        if isinstance(v, int) and not isinstance(v, bool) and v >= ID_BASE:
            return names.get(v, v)
        if isinstance(v, str):
            return _NEW_ID.sub(lambda m: names.get(int(m.group(1)), m.group(1)), v)
        return v

    return {table: {rename(pk): {k: rename(v) for k, v in row.items()} for pk, row in rows.items()}
            for table, rows in snap.items()}


def differences(expected: dict, actual: dict, *, limit: int = 3) -> list[str]:
    """Readable differences, per table: rows added, removed, changed (a few examples)."""
    out = []
    for table in sorted(set(expected) | set(actual)):
        a, b = expected.get(table, {}), actual.get(table, {})
        if a == b:
            continue
        added = [k for k in b if k not in a]
        removed = [k for k in a if k not in b]
        changed = [k for k in a if k in b and a[k] != b[k]]
        line = f"{table}: +{len(added)} -{len(removed)} ~{len(changed)}"
        for k in added[:limit]:
            line += f"\n    + {b[k]}"
        for k in removed[:limit]:
            line += f"\n    - {a[k]}"
        for k in changed[:limit]:
            diff = {c: (a[k][c], b[k].get(c)) for c in a[k] if a[k][c] != b[k].get(c)}
            line += f"\n    ~ {k}: {diff}"
        out.append(line)
    return out


def repeated(rows: list[dict], fields: tuple[str, ...]) -> list[tuple]:
    """Values of ``fields`` that occur on more than one row."""
    counts = Counter(tuple(r[f] for f in fields) for r in rows)
    return [key for key, n in counts.items() if n > 1]


def day(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
