"""The FERPA access trail as a unit of work: ``with access_trail(...):`` logs every statement
that touches student data, bulk_create / update / delete included, and writes each change's
trail row in the transaction of the change itself.

Why a database execute wrapper rather than signals: signal-based audit libraries see
``save()`` and miss ``bulk_create``, ``QuerySet.update`` and ``delete`` on querysets, which
are exactly what set-based jobs use. ``connection.execute_wrapper`` sees every statement.

How each statement is attributed:
1. The tables it names are matched against the student-data tables: the Student table,
   tables with a foreign key to Student ("direct": their student column is read), and
   tables one hop further, such as IEP team members ("one hop": the column of the foreign
   key to their direct parent is read, and the parent's student column names the students).
2. SELECT: the database cursor is wrapped so rows are observed as Django fetches them
   (no second query, no buffering); the column is the student column (``id`` when the
   statement reads the Student table itself) or, for a one-hop table, the parent column.
3. INSERT: the ids come from the statement's parameters (VALUES or PostgreSQL's UNNEST
   form of bulk_create).
4. UPDATE / DELETE: ``RETURNING <column>`` is appended and the ids are read back; the row
   count Django reads is unchanged.

When trail rows are written (the guarantee: a committed change always has its trail row):
- A write statement that changed rows gets ONE AccessLog row, inserted right after it on the
  same connection, hence in the same transaction: a batch or savepoint that rolls back takes
  its trail rows with it, and a commit (or a crash after it) keeps both. A write run in
  autocommit is wrapped, with its trail row, in one ``atomic``. The insert goes through a
  separate raw cursor of the backend: the statement's own results (INSERT ... RETURNING id)
  stay readable, and the trail's statements neither pass through the execute wrappers nor
  appear in the query log (as BEGIN and COMMIT do not), so query counts measure the work.
- Reads (and writes that matched no row) are collected in memory, one entry per (table,
  operation), and written by ``flush()``: ``JobContext.save_checkpoint`` calls it in the
  checkpoint's transaction, and the block's end calls it. Entries flushed inside a
  transaction are kept until it commits: if it rolls back, the block's end writes them again
  (the reads happened even though the batch did not).
- One-hop tables: the parent ids seen are mapped to student ids inside the trail row's own
  INSERT ... SELECT (one statement per one-hop table per flush, never a query per row).

Limits: reads since the last checkpoint are lost when the process dies (kill -9) or its
connection does, since they were only in memory; a read that does not select the student (or
parent) column records its row count without ids; ``executemany`` UPDATE / DELETE record row
counts without ids; statements run on another connection (another alias, a raw psycopg
connection) are outside the wrapper. docs/decisions/access-trail.md has the full account.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from operator import itemgetter

from django.apps import apps
from django.db import Error as DatabaseError
from django.db import connections, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone

_local = threading.local()
logger = logging.getLogger(__name__)


@dataclass
class _Touch:
    query_count: int = 0
    row_count: int = 0
    ids: set = field(default_factory=set)  # student ids, or parent ids for a one-hop table


@dataclass(frozen=True)
class _Parent:
    """How a one-hop table reaches students: ``column`` holds ids of ``table``'s rows, whose
    ``student_column`` holds the student id."""

    column: str
    table: str
    pk: str
    student_column: str


@dataclass
class _Tables:
    """Student-data tables, built once from the models."""

    labels: dict[str, str]  # db_table -> app.Model
    student_column: dict[str, str]  # direct table -> the column holding a student id
    parent: dict[str, _Parent]  # one-hop table -> its parent
    pattern: re.Pattern

    def id_column(self, table: str) -> str | None:
        """The column whose values the trail collects for ``table``."""
        if table in self.student_column:
            return self.student_column[table]
        parent = self.parent.get(table)
        return parent.column if parent else None


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
        parents: dict[str, _Parent] = {}
        for model in apps.get_models():
            if model is AccessLog or model._meta.db_table in labels:
                continue
            for f in model._meta.concrete_fields:
                if f.is_relation and f.related_model in direct and f.related_model is not Student:
                    rel = f.related_model._meta
                    labels[model._meta.db_table] = model._meta.label
                    # The first such foreign key, in field order: one parent per table.
                    parents.setdefault(model._meta.db_table, _Parent(
                        column=f.column, table=rel.db_table, pk=f.target_field.column,
                        student_column=columns[rel.db_table]))
        names = sorted(labels, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, names)) + r")(?![\w])", re.IGNORECASE)
        _tables = _Tables(labels=labels, student_column=columns, parent=parents, pattern=pattern)
    return _tables


_OPERATIONS = {"SELECT": "read", "WITH": "read", "INSERT": "create", "UPDATE": "update", "DELETE": "delete"}
_MAIN_TABLE = re.compile(r'^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
# A FROM or a parenthesis: a read's main table is the student-data FROM least deep in
# parentheses (a subquery in the select list, an annotation's EXISTS, comes before it).
_FROM_OR_PAREN = re.compile(r'[()]|\bFROM\s+"?(\w+)"?', re.IGNORECASE)
# "INSERT OR IGNORE INTO" is SQLite's bulk_create(ignore_conflicts=True).
_INSERT_COLUMNS = re.compile(r'^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+"?\w+"?\s*\(([^)]*)\)', re.IGNORECASE)
_LOG_FIELDS = ("at", "actor", "job_run_id", "actor_label", "purpose", "model", "operation", "query_count",
               "row_count", "student_count", "student_ids", "recipient")


class _ObservedCursor:
    """Wraps a DB-API cursor and records the ids of the rows fetched through it."""

    def __init__(self, cursor):
        self._cursor = cursor
        self._touch: _Touch | None = None
        self._index: int | None = None

    def _observe(self, touch: _Touch | None, index: int | None) -> None:
        self._touch, self._index = touch, index

    def _seen(self, rows):
        if self._touch is not None and rows:
            self._touch.row_count += len(rows)
            if self._index is not None:
                self._touch.ids.update(map(itemgetter(self._index), rows))
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
    """Collects what a unit of work touched; see ``access_trail`` and the module docstring."""

    def __init__(self, *, actor=None, job_run_id=None, actor_label: str, purpose: str, using: str = "default"):
        self.actor = actor
        self.job_run_id = job_run_id
        self.actor_label = actor_label[:150]
        self.purpose = purpose[:200]
        self.using = using
        self.touches: dict[tuple[str, str], _Touch] = {}
        # (on_commit callback, entries) flushed inside a transaction not committed yet.
        self._unconfirmed: list[tuple] = []

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
        # PostgreSQL writes a UNION's parts each in parentheses: "(SELECT ...) UNION (SELECT ...)".
        verb = sql.lstrip(" \t\r\n(")[:6].upper()
        operation = next((op for kw, op in _OPERATIONS.items() if verb.startswith(kw)), None)
        if not named or operation is None:
            return execute(sql, params, many, context)
        target = _MAIN_TABLE.match(sql)
        if target and target.group(1) not in tables.labels:
            # A write to a table without student data, filtered through a student table's
            # subquery: nothing of a student is written, and RETURNING a student table's column
            # would fail (it is not the target); the tables named are read, without rows.
            for other in {n.lower() for n in named}:
                self._touch(other, "read").query_count += 1
            return execute(sql, params, many, context)
        table = target.group(1) if target else self._read_table(sql, named, tables)
        # Other student-data tables the statement reads through a join or a subquery (an
        # anti-join on submissions, say) are recorded as read too; their rows never reach
        # the client, so the entry counts the statement without row or student figures.
        for other in {n.lower() for n in named} - {table}:
            self._touch(other, "read").query_count += 1
        column = tables.id_column(table)
        raw = context["cursor"].cursor

        if operation == "read":
            touch = self._touch(table, operation)
            touch.query_count += 1
            if not isinstance(raw, _ObservedCursor):
                raw = _ObservedCursor(raw)
                context["cursor"].cursor = raw
            result = execute(sql, params, many, context)
            raw._observe(touch, self._student_index(raw.description, table, column, tables))
            return result

        if isinstance(raw, _ObservedCursor):
            raw._observe(None, None)  # this cursor read rows before; what it returns now is not a read
        connection = context["connection"]
        if connection.in_atomic_block:
            return self._write(execute, sql, params, many, context, table, operation, column)
        # Autocommit: the statement and its trail row commit together, or neither does.
        with transaction.atomic(using=connection.alias, savepoint=False):
            return self._write(execute, sql, params, many, context, table, operation, column)

    def _write(self, execute, sql, params, many, context, table, operation, column):
        touch = _Touch(query_count=1)
        if operation == "create":
            result = execute(sql, params, many, context)
            for p in params if many else [params]:
                self._record_insert(touch, sql, p, column)
        elif column and " RETURNING " not in sql.upper() and not many:
            result = execute(f'{sql} RETURNING "{table}"."{column}"', params, many, context)
            ids = context["cursor"].cursor.fetchall()
            touch.ids.update(r[0] for r in ids)
            touch.row_count = len(ids)
        else:
            result = execute(sql, params, many, context)
            touch.row_count = max(context["cursor"].rowcount or 0, 0)
        if touch.row_count:
            # Right after the statement, on its connection: same transaction as the change.
            self._insert(context["connection"], [(table, operation, touch)])
        else:
            # Nothing changed: counted with the reads, at no extra statement now.
            self._touch(table, operation).query_count += 1
        return result

    @staticmethod
    def _read_table(sql: str, named: list[str], tables: _Tables) -> str:
        """The table whose rows a read returns (a write's is its target, ``_MAIN_TABLE``): the
        first student-data FROM least deep in parentheses (``Grade ... annotate(muted=Exists(
        SectionEnrollment ...))`` reads grades, though the EXISTS's FROM comes first; a CTE
        whose own FROM is not student data: its CTE's), else the first table named."""
        # The first student-data FROM at the lowest depth: not only depth 0, since a count of a
        # distinct queryset reads FROM (SELECT ... FROM grade) and PostgreSQL parenthesizes each
        # part of a UNION; a select-list EXISTS inside them is one level deeper still.
        depth, best = 0, None
        for m in _FROM_OR_PAREN.finditer(sql):
            token = m.group(0)
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
            elif m.group(1) in tables.labels and (best is None or depth < best[0]):
                best = (depth, m.group(1))
        if best is not None:
            return best[1]
        return named[0].lower()

    @staticmethod
    def _student_index(description, table: str, column: str | None, tables: _Tables) -> int | None:
        if not description or not column:
            return None
        names = [d[0] for d in description]
        if column in names:
            return names.index(column)
        if table in tables.student_column and "student_id" in names:
            return names.index("student_id")
        return None

    @staticmethod
    def _record_insert(touch: _Touch, sql: str, params, column: str | None) -> None:
        m = _INSERT_COLUMNS.match(sql)
        if not m or params is None:
            touch.row_count += 1
            return
        cols = [c.strip().strip('"').strip("`") for c in m.group(1).split(",")]
        params = list(params)
        if "UNNEST" in sql.upper():
            # PostgreSQL bulk_create: one array parameter per column.
            touch.row_count += len(params[0]) if params else 0
            if column in cols:
                touch.ids.update(params[cols.index(column)])
            return
        ncols = len(cols)
        if ncols == 0 or len(params) % ncols:
            touch.row_count += 1
            return
        touch.row_count += len(params) // ncols
        if column in cols:
            touch.ids.update(params[cols.index(column)::ncols])

    # -- writing the log -------------------------------------------------------------------
    def _values(self, table: str, operation: str, touch: _Touch, now) -> dict:
        return {
            "at": now, "actor": self.actor, "job_run_id": self.job_run_id, "actor_label": self.actor_label,
            "purpose": self.purpose, "model": student_tables().labels.get(table, table), "operation": operation,
            "query_count": touch.query_count, "row_count": touch.row_count, "recipient": "",
        }

    def entries(self, items=None):
        """AccessLog objects for the collected entries (one-hop ids are not resolved here)."""
        from skillcore.models import AccessLog

        now = timezone.now()
        for table, operation, touch in items if items is not None else self._items():
            ids = sorted(i for i in touch.ids if i is not None) if table not in student_tables().parent else []
            yield AccessLog(**self._values(table, operation, touch, now), student_count=len(ids), student_ids=ids)

    def _items(self) -> list[tuple[str, str, _Touch]]:
        return [(table, operation, touch) for (table, operation), touch in self.touches.items()]

    def _insert(self, connection, items: list[tuple[str, str, _Touch]]) -> None:
        """Write entries on ``connection`` through a raw backend cursor: one INSERT for the
        direct tables' entries, one INSERT ... SELECT per one-hop table's entry."""
        tables = student_tables()
        direct = [item for item in items if item[0] not in tables.parent]
        with contextlib.closing(connection.create_cursor()) as cursor:
            if direct:
                from skillcore.models import AccessLog

                query = InsertQuery(AccessLog)
                query.insert_values([AccessLog._meta.get_field(n) for n in _LOG_FIELDS], list(self.entries(direct)))
                for sql, params in query.get_compiler(connection=connection).as_sql():
                    cursor.execute(sql, params)
            now = timezone.now()
            for table, operation, touch in items:
                if table in tables.parent:
                    self._insert_one_hop(cursor, connection, tables.parent[table], self._values(table, operation, touch, now),
                                         sorted(i for i in touch.ids if i is not None))

    @staticmethod
    def _insert_one_hop(cursor, connection, parent: _Parent, values: dict, parent_ids: list) -> None:
        """The parent rows' student ids, distinct and sorted, become the row's student ids
        inside the INSERT itself: one statement whatever the number of rows."""
        from skillcore.models import AccessLog

        qn = connection.ops.quote_name
        meta = AccessLog._meta
        columns = ", ".join(qn(meta.get_field(n).column) for n in _LOG_FIELDS)
        values["at"] = connection.ops.adapt_datetimefield_value(values["at"])
        values["actor"] = values["actor"].pk if values["actor"] is not None else None
        head = [values[n] for n in _LOG_FIELDS if n not in ("student_count", "student_ids", "recipient")]
        # VALUES (not INSERT ... SELECT) so PostgreSQL types each parameter by its column.
        placeholders = ", ".join(["%s"] * len(head))
        ids = (f"SELECT DISTINCT p.{qn(parent.student_column)} AS s FROM {qn(parent.table)} p "
               f"WHERE p.{qn(parent.student_column)} IS NOT NULL AND p.{qn(parent.pk)} ")
        if connection.vendor == "postgresql":
            ids += "= ANY(%s)"
            as_json = "SELECT COALESCE(jsonb_agg(s ORDER BY s), '[]'::jsonb) FROM ids"
            id_param = parent_ids
        else:
            ids += "IN (SELECT value FROM json_each(%s))"
            as_json = "SELECT json_group_array(s) FROM (SELECT s FROM ids ORDER BY s)"
            id_param = json.dumps(parent_ids)
        sql = (f"WITH ids AS ({ids}) INSERT INTO {qn(meta.db_table)} ({columns}) "
               f"VALUES ({placeholders}, (SELECT count(*) FROM ids), ({as_json}), %s)")
        args = [id_param, *head, ""]
        cursor.execute(sql, args)

    def flush(self, using: str | None = None) -> int:
        """Write the reads collected so far and start afresh. Returns the entries written.

        Called in a transaction (a checkpoint's), the entries are kept until it commits: a
        rollback takes the rows away, and the block's end writes them again."""
        connection = connections[using or self.using]
        items = self._items()
        self.touches = {}
        if not items:
            return 0
        self._insert(connection, items)
        if connection.in_atomic_block:
            def confirm():
                self._unconfirmed = [u for u in self._unconfirmed if u[0] is not confirm]

            self._unconfirmed.append((confirm, items))
            transaction.on_commit(confirm, using=connection.alias)
        return len(items)

    def close(self, *, failing: bool) -> None:
        """The block's end: write what is left (and what a rolled-back flush took away)."""
        connection = connections[self.using]
        if connection.needs_rollback:
            # Inside a transaction that is already failing: the rows would roll back with
            # it, so they are written by the caller's trail after the rollback instead.
            logger.warning("access trail for %s not written: the transaction is rolling back", self.actor_label)
            return
        # A flush whose on_commit callback neither ran nor is still pending was rolled back
        # (Django drops a rolled-back savepoint's callbacks): its reads are written again.
        pending = {id(func) for _, func, *_ in connection.run_on_commit}
        for confirm, items in self._unconfirmed:
            if id(confirm) in pending:
                continue
            for table, operation, touch in items:
                merged = self._touch(table, operation)
                merged.query_count += touch.query_count
                merged.row_count += touch.row_count
                merged.ids |= touch.ids
        self._unconfirmed = []
        try:
            self.flush()
        except DatabaseError:
            if not failing:
                raise
            # The database is gone (the reason the block is failing): the work's own error
            # is what the caller must see; the reads since the last flush are lost with it.
            logger.exception("access trail for %s not written: the database failed", self.actor_label)


@contextlib.contextmanager
def access_trail(*, purpose: str, actor=None, job_run_id=None, actor_label: str | None = None, using: str = "default"):
    """Run a unit of work inside the access trail.

    Every statement on student-data tables run on ``using`` inside the block is recorded:
    writes with their own trail row in their transaction, reads when ``flush()`` is called
    (at each job checkpoint) and when the block ends, including when it raises (a failed job
    still read what it read). Nested blocks are folded into the outermost one.
    """
    outer = getattr(_local, "trail", None)
    if outer is not None:
        yield outer
        return
    label = actor_label or (actor.get_username() if actor is not None else f"job run {job_run_id}")
    trail = AccessTrail(actor=actor, job_run_id=job_run_id, actor_label=label, purpose=purpose, using=using)
    _local.trail = trail
    try:
        with connections[using].execute_wrapper(trail):
            yield trail
    except BaseException:
        _local.trail = None
        trail.close(failing=True)
        raise
    _local.trail = None
    trail.close(failing=False)


def current_trail() -> AccessTrail | None:
    return getattr(_local, "trail", None)


def render_now(response):
    """Render a TemplateResponse now, inside the trail: it would render after the view
    returns, outside the ``access_trail`` block, and the rows it shows are fetched while
    rendering."""
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()
    return response
