"""Monotonic counters kept in the database: one statement that adds to a row found by its
unique key, creating the row first if it is missing.

Used for the Prometheus counters /metrics reports (notifications/counters.py,
scheduling/monitoring/counters.py): web and worker processes share them, they survive
restarts, and deleting history never lowers them. Call it inside the transaction of the
state change being counted, only when that change won (a conditional UPDATE that matched
its row, an INSERT that did not conflict), so the count and the change commit or roll back
together.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping

from django.db import connection, models


def add(model: type[models.Model], *, key: Mapping[str, object], increments: Mapping[str, float],
        latest: Mapping[str, object] | None = None) -> None:
    """``INSERT (key..., counters..., latest...) ON CONFLICT (key) DO UPDATE SET c = c + EXCLUDED.c``.

    One statement, not an UPDATE and a fallback INSERT: concurrent writers of the same key
    never lose an increment (the database adds on the locked row, nothing is read into
    Python) and a first writer racing another first writer cannot fail on the unique
    index. PostgreSQL and SQLite (3.24+) share the syntax; the statement is built once per
    model and key shape (this runs on every finished run).

    ``key``: field name -> value, the fields of a unique constraint. A nullable key field
    is held the way this project holds NULLs in a unique key (NULLs are distinct in a
    unique index): two partial unique indexes, one over the key with the field and
    ``WHERE field IS NOT NULL``, one over the rest ``WHERE field IS NULL``; the conflict
    target names the one the value falls under. Every other field of ``model`` is either a
    timestamp (a DateTimeField), which keeps the greater of the stored and the new value
    from ``latest`` (a late writer never moves it back; absent or None leaves it as it is),
    or a counter, which adds its value from ``increments`` (absent: 0, so the insert of a
    new row fills every column).
    """
    latest = latest or {}
    if not any(increments.values()) and all(v is None for v in latest.values()):
        return
    nulls = tuple(sorted(name for name, value in key.items() if value is None))
    sql, keys, counters, stamps = _statement(model, tuple(key), nulls)
    for given, fields, what in ((increments, counters, "counter"), (latest, stamps, "timestamp")):
        if unknown := set(given) - {f.name for f in fields}:
            raise ValueError(f"{model.__name__} has no {what} {sorted(unknown)}")
    params = [f.get_db_prep_save(key[f.name], connection) for f in keys]
    params += [increments.get(f.name, 0) for f in counters]
    params += [f.get_db_prep_save(latest.get(f.name), connection) for f in stamps]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@functools.cache
def _statement(model: type[models.Model], key: tuple[str, ...], nulls: tuple[str, ...]):
    """The statement for one model and key shape, with its key, counter and timestamp fields."""
    opts = model._meta
    qn = connection.ops.quote_name
    table = qn(opts.db_table)
    keys = [opts.get_field(name) for name in key]
    rest = [f for f in opts.concrete_fields if not f.primary_key and f not in keys]
    stamps = [f for f in rest if isinstance(f, models.DateTimeField)]
    counters = [f for f in rest if f not in stamps]
    columns = [f.column for f in (*keys, *counters, *stamps)]
    target = ", ".join(qn(f.column) for f in keys if f.name not in nulls)
    where = " AND ".join(f"{qn(f.column)} IS {'NULL' if f.name in nulls else 'NOT NULL'}" for f in keys if f.null)
    sets = [f"{qn(f.column)} = {table}.{qn(f.column)} + EXCLUDED.{qn(f.column)}" for f in counters]
    # The greater of the two, NULL on either side ignored (GREATEST is PostgreSQL's alone,
    # and SQLite's MAX() returns NULL when either is NULL).
    sets += [
        f"{qn(f.column)} = CASE WHEN EXCLUDED.{qn(f.column)} IS NOT NULL AND ({table}.{qn(f.column)} IS NULL "
        f"OR EXCLUDED.{qn(f.column)} > {table}.{qn(f.column)}) THEN EXCLUDED.{qn(f.column)} ELSE {table}.{qn(f.column)} END"
        for f in stamps
    ]
    sql = (
        f"INSERT INTO {table} ({', '.join(map(qn, columns))}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({target}){f' WHERE {where}' if where else ''} DO UPDATE SET {', '.join(sets)}"
    )
    return sql, keys, counters, stamps
