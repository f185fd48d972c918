"""Monotonic counters kept in the database: one statement that adds to a row keyed by a
unique column, creating it at zero first if it is missing.

Used for the Prometheus counters /metrics reports (notifications/counters.py,
scheduling/counters.py): web and worker processes share them, they survive restarts, and
deleting history never lowers them. Call it inside the transaction of the state change
being counted, only when that change won (a conditional UPDATE that matched its row, an
INSERT that did not conflict), so the count and the change commit or roll back together.
"""
from __future__ import annotations

from django.db import connection, models


def add(model: type[models.Model], *, key: str, value: str, increments: dict[str, int]) -> None:
    """``INSERT (key, counters...) ON CONFLICT (key) DO UPDATE SET c = c + EXCLUDED.c``.

    One statement, not an UPDATE and a fallback INSERT: concurrent writers of the same key
    never lose an increment (the database adds on the locked row, nothing is read into
    Python) and a first writer racing another first writer cannot fail on the unique
    index. PostgreSQL and SQLite (3.24+) share the syntax. ``key`` must be the column of a
    unique constraint without a condition; every other column of ``model`` is a counter
    (absent from ``increments``: 0, so the insert of a new row fills every column).
    """
    if not any(increments.values()):
        return
    counters = [f for f in model._meta.concrete_fields if not f.primary_key and f.name != key]
    unknown = set(increments) - {f.name for f in counters}
    if unknown:
        raise ValueError(f"{model.__name__} has no counter {sorted(unknown)}")
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    columns = [model._meta.get_field(key).column, *(f.column for f in counters)]
    adds = ", ".join(f"{qn(c)} = {table}.{qn(c)} + EXCLUDED.{qn(c)}" for c in columns[1:])
    sql = (
        f"INSERT INTO {table} ({', '.join(map(qn, columns))}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({qn(columns[0])}) DO UPDATE SET {adds}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value, *(increments.get(f.name, 0) for f in counters)])
