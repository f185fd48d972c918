"""The FERPA access trail as a unit of work: ``with access_trail(...):`` logs every query
that touches student data, bulk_create / update / delete included.

Why a database execute wrapper rather than signals: signal-based audit libraries see
``save()`` and miss ``bulk_create``, ``QuerySet.update`` and ``delete`` on querysets, which
are exactly what set-based jobs use. ``connection.execute_wrapper`` sees every statement.

How each statement is attributed:
1. The tables it names are matched against the student-data tables (the Student table,
   tables with a foreign key to Student, and tables one hop further, such as IEP teams).
2. SELECT: the database cursor is wrapped so rows are observed as Django fetches them
   (no second query, no buffering); the student id column is ``student_id``, or ``id``
   when the statement reads the Student table itself.
3. INSERT: student ids come from the statement's parameters (VALUES or PostgreSQL's
   UNNEST form of bulk_create).
4. UPDATE / DELETE: ``RETURNING <student column>`` is appended and the ids are read back;
   the row count Django reads is unchanged.
5. On exit, one AccessLog row per (table, operation) is written, with the query count,
   row count and the distinct student ids.
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
from operator import itemgetter
from dataclasses import dataclass, field

from django.apps import apps
from django.db import connections
from django.utils import timezone

_local = threading.local()
logger = logging.getLogger(__name__)


@dataclass
class _Touch:
    query_count: int = 0
    row_count: int = 0
    student_ids: set = field(default_factory=set)


@dataclass
class _Tables:
    """Student-data tables, built once from the models."""

    labels: dict[str, str]  # db_table -> app.Model
    student_column: dict[str, str]  # db_table -> the column holding a student id
    pattern: re.Pattern


_tables: _Tables | None = None


def student_tables() -> _Tables:
    global _tables
    if _tables is None:
        from skillcore.models import AccessLog
        from students.models import Student

        labels: dict[str, str] = {Student._meta.db_table: Student._meta.label}
        columns: dict[str, str] = {Student._meta.db_table: Student._meta.pk.column}
        direct = {Student}
        for model in apps.get_models():
            for f in model._meta.concrete_fields:
                if f.is_relation and f.related_model is Student:
                    labels[model._meta.db_table] = model._meta.label
                    columns.setdefault(model._meta.db_table, f.column)
                    direct.add(model)
        for model in apps.get_models():
            if model is AccessLog or model._meta.db_table in labels:
                continue
            related = {f.related_model for f in model._meta.concrete_fields if f.is_relation}
            if related & direct:
                labels[model._meta.db_table] = model._meta.label
        names = sorted(labels, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, names)) + r")(?![\w])", re.IGNORECASE)
        _tables = _Tables(labels=labels, student_column=columns, pattern=pattern)
    return _tables


_OPERATIONS = {"SELECT": "read", "WITH": "read", "INSERT": "create", "UPDATE": "update", "DELETE": "delete"}
_MAIN_TABLE = re.compile(r'^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
_FROM_TABLE = re.compile(r'\bFROM\s+"?(\w+)"?', re.IGNORECASE)
# "INSERT OR IGNORE INTO" is SQLite's bulk_create(ignore_conflicts=True).
_INSERT_COLUMNS = re.compile(r'^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+"?\w+"?\s*\(([^)]*)\)', re.IGNORECASE)


class _ObservedCursor:
    """Wraps a DB-API cursor and records the student ids of the rows fetched through it."""

    def __init__(self, cursor, trail: "AccessTrail"):
        self._cursor = cursor
        self._trail = trail
        self._touch: _Touch | None = None
        self._index: int | None = None

    def _observe(self, touch: _Touch, index: int | None) -> None:
        self._touch, self._index = touch, index

    def _seen(self, rows):
        if self._touch is not None and rows:
            self._touch.row_count += len(rows)
            if self._index is not None:
                self._touch.student_ids.update(map(itemgetter(self._index), rows))
        return rows

    def fetchone(self):
        row = self._cursor.fetchone()
        if row is not None:
            self._seen([row])
        return row

    def fetchmany(self, *args, **kwargs):
        return self._seen(self._cursor.fetchmany(*args, **kwargs))

    def fetchall(self):
        return self._seen(self._cursor.fetchall())

    def __iter__(self):
        for row in self._cursor:
            self._seen([row])
            yield row

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class AccessTrail:
    """Collects what a unit of work touched; see ``access_trail``."""

    def __init__(self, *, actor=None, job_run_id=None, actor_label: str, purpose: str):
        self.actor = actor
        self.job_run_id = job_run_id
        self.actor_label = actor_label[:150]
        self.purpose = purpose[:200]
        self.touches: dict[tuple[str, str], _Touch] = {}

    def _touch(self, table: str, operation: str) -> _Touch:
        key = (table, operation)
        touch = self.touches.get(key)
        if touch is None:
            touch = self.touches[key] = _Touch()
        return touch

    # -- the execute wrapper -------------------------------------------------------------
    def __call__(self, execute, sql, params, many, context):
        tables = student_tables()
        named = tables.pattern.findall(sql)
        verb = sql.lstrip()[:6].upper()
        operation = next((op for kw, op in _OPERATIONS.items() if verb.startswith(kw)), None)
        if not named or operation is None:
            return execute(sql, params, many, context)
        table = self._main_table(sql, named, tables)
        touch = self._touch(table, operation)
        touch.query_count += 1
        # Other student-data tables the statement reads through a join or a subquery (an
        # anti-join on submissions, say) are recorded as read too; their rows never reach
        # the client, so the entry counts the statement without row or student figures.
        for other in {n.lower() for n in named} - {table}:
            self._touch(other, "read").query_count += 1
        column = tables.student_column.get(table)

        if operation == "read":
            django_cursor = context["cursor"]
            raw = django_cursor.cursor
            if not isinstance(raw, _ObservedCursor):
                raw = _ObservedCursor(raw, self)
                django_cursor.cursor = raw
            result = execute(sql, params, many, context)
            raw._observe(touch, self._student_index(raw.description, table, column))
            return result

        if operation == "create":
            result = execute(sql, params, many, context)
            rows = params if many else [params]
            for p in rows:
                self._record_insert(touch, sql, p, column)
            return result

        # update / delete
        if column and " RETURNING " not in sql.upper() and not many:
            sql = f'{sql} RETURNING "{table}"."{column}"'
            result = execute(sql, params, many, context)
            ids = context["cursor"].cursor.fetchall()
            touch.student_ids.update(r[0] for r in ids)
            touch.row_count += len(ids)
            return result
        result = execute(sql, params, many, context)
        touch.row_count += max(context["cursor"].rowcount or 0, 0)
        return result

    @staticmethod
    def _main_table(sql: str, named: list[str], tables: _Tables) -> str:
        m = _MAIN_TABLE.match(sql) or _FROM_TABLE.search(sql)
        if m and m.group(1) in tables.labels:
            return m.group(1)
        return named[0].lower()

    @staticmethod
    def _student_index(description, table: str, column: str | None) -> int | None:
        if not description or not column:
            return None
        names = [d[0] for d in description]
        if column in names:
            return names.index(column)
        if "student_id" in names:
            return names.index("student_id")
        return None

    def _record_insert(self, touch: _Touch, sql: str, params, column: str | None) -> None:
        m = _INSERT_COLUMNS.match(sql)
        if not m or params is None:
            touch.row_count += 1
            return
        cols = [c.strip().strip('"').strip("`") for c in m.group(1).split(",")]
        params = list(params)
        if "UNNEST" in sql.upper():
            # PostgreSQL bulk_create: one array parameter per column.
            n = len(params[0]) if params else 0
            touch.row_count += n
            if column in cols:
                touch.student_ids.update(params[cols.index(column)])
            return
        ncols = len(cols)
        if ncols == 0 or len(params) % ncols:
            touch.row_count += 1
            return
        touch.row_count += len(params) // ncols
        if column in cols:
            touch.student_ids.update(params[cols.index(column)::ncols])

    # -- writing the log -------------------------------------------------------------------
    def entries(self):
        from skillcore.models import AccessLog

        tables = student_tables()
        now = timezone.now()
        for (table, operation), touch in self.touches.items():
            ids = sorted(i for i in touch.student_ids if i is not None)
            yield AccessLog(
                at=now,
                actor=self.actor,
                job_run_id=self.job_run_id,
                actor_label=self.actor_label,
                purpose=self.purpose,
                model=tables.labels.get(table, table),
                operation=operation,
                query_count=touch.query_count,
                row_count=touch.row_count,
                student_count=len(ids),
                student_ids=ids,
            )

    def flush(self, using: str = "default") -> int:
        """Write what was collected so far and start afresh (long jobs flush per batch)."""
        from skillcore.models import AccessLog

        entries = list(self.entries())
        self.touches = {}
        if entries:
            AccessLog.objects.using(using).bulk_create(entries)
        return len(entries)


@contextlib.contextmanager
def access_trail(*, purpose: str, actor=None, job_run_id=None, actor_label: str | None = None, using: str = "default"):
    """Run a unit of work inside the access trail.

    Every statement on student-data tables run on ``using`` inside the block is recorded
    and written as AccessLog rows when the block ends, including when it raises: a failed
    job still read what it read. Nested blocks are folded into the outermost one.
    """
    outer = getattr(_local, "trail", None)
    if outer is not None:
        yield outer
        return
    label = actor_label or (actor.get_username() if actor is not None else f"job run {job_run_id}")
    trail = AccessTrail(actor=actor, job_run_id=job_run_id, actor_label=label, purpose=purpose)
    connection = connections[using]
    _local.trail = trail
    try:
        with connection.execute_wrapper(trail):
            yield trail
    finally:
        _local.trail = None
        if connection.needs_rollback:
            # Inside a transaction that is already failing: the rows would roll back with
            # it, so they are written by the caller's trail after the rollback instead.
            logger.warning("access trail for %s not written: the transaction is rolling back", label)
        else:
            trail.flush(using)


def current_trail() -> AccessTrail | None:
    return getattr(_local, "trail", None)
