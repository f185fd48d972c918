"""Fault injection at a job's commit points, for any registered job.

A job's *commit points* are the moments after which its work so far is durable:
- the end of each of its outermost ``transaction.atomic`` blocks that wrote something (in
  production a COMMIT; under pytest-django's test transaction a released savepoint, which
  is "committed" as far as the rest of the test can see);
- each write statement it runs outside any atomic block (autocommit in production).

``commit_points(slug)`` counts them during a run; ``commit_points(slug, fail_at=k)`` makes
the run stop right after the k-th one, which is what a worker dying (or the next step
failing) at that moment leaves behind: the k first units committed, nothing after; the run
then fails with ``InjectedFault``, so the runner records it and ``services.after_failure``
schedules the engine's retry. Writes to the tables in ``ignore_tables`` (run bookkeeping: the JobRun row's
progress and checkpoint, the access trail, counters) do not count on their own: a fault
after a progress write is the same fault as one before the next real write.

Nothing here knows about any particular job: the job's entry point is wrapped in the
registry for the duration of the block, so the real runner (claim, access trail, outcome,
``services.after_failure``) runs exactly as it does in a worker.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import traceback
from collections.abc import Iterable, Iterator

import pytest
from django.db import connection
from django.db.transaction import Atomic

from scheduling import registry

# INSERT INTO "t", INSERT OR IGNORE INTO "t" (SQLite), UPDATE "t", DELETE FROM "t".
_WRITE = re.compile(r'^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+"?([\w.]+)"?', re.IGNORECASE)


class InjectedFault(Exception):
    """What the run fails with when the harness stopped it; never raised by product code."""


class _Stop(BaseException):
    """Unwinds the job from the commit point to its entry point, as a worker dying there
    would leave it: the job's own ``except Exception`` handlers do not run (they would not
    after a kill either), and Django's ``mark_for_rollback_on_error`` lets a BaseException
    through, so the test's enclosing transaction is not poisoned by a write statement
    that, in production, has already committed."""


@dataclasses.dataclass
class CommitPoints:
    """What a run went through: ``labels[i]`` says where commit point i+1 was."""

    fail_at: int | None = None
    ignore_tables: frozenset[str] = frozenset()
    labels: list[str] = dataclasses.field(default_factory=list)
    _base: int | None = None  # atomic depth at the job's entry (the test's own blocks)
    _block_wrote: bool = False

    @property
    def count(self) -> int:
        return len(self.labels)

    def _reached(self, kind: str) -> None:
        self.labels.append(f"{kind} at {_caller()}")
        if self.fail_at == self.count:
            raise _Stop(f"injected after commit point {self.count} ({self.labels[-1]})")

    def _statement(self, execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if self._base is None:
            return result
        match = _WRITE.match(sql)
        if match is None or match.group(1).lower() in self.ignore_tables:
            return result
        if len(connection.atomic_blocks) > self._base:
            self._block_wrote = True  # durable when the outermost block of the job ends
        else:
            self._reached(f"autocommit {match.group(0).strip()}")
        return result

    def _atomic_exit(self, original, block, exc_type, exc_value, tb):
        outermost = self._base is not None and len(connection.atomic_blocks) == self._base + 1
        result = original(block, exc_type, exc_value, tb)
        if outermost:
            wrote, self._block_wrote = self._block_wrote, False
            if exc_type is None and wrote:
                self._reached("atomic block")
        return result


def _caller() -> str:
    """The innermost frame of product code (not Django, not this module) for the label."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        name = frame.filename
        if "site-packages" in name or "/django/" in name or name.endswith(("faults.py", "contextlib.py", "access.py")):
            continue
        return f"{name.rsplit('/', 2)[-2]}/{name.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
    return "?"


@contextlib.contextmanager
def commit_points(slug: str, *, fail_at: int | None = None, ignore_tables: Iterable[str] = ()) -> Iterator[CommitPoints]:
    """Count (and with ``fail_at``, fail after) the commit points of job ``slug``'s runs
    executed inside the block."""
    points = CommitPoints(fail_at=fail_at, ignore_tables=frozenset(t.lower() for t in ignore_tables))
    job = registry.get(slug)
    entry = job.entry

    def wrapped(ctx):
        points._base = len(connection.atomic_blocks)
        try:
            with connection.execute_wrapper(points._statement):
                return entry(ctx)
        except _Stop as stop:
            raise InjectedFault(str(stop)) from None  # the runner records it and schedules the retry
        finally:
            points._base = None

    original_exit = Atomic.__exit__

    def atomic_exit(block, exc_type, exc_value, tb):
        return points._atomic_exit(original_exit, block, exc_type, exc_value, tb)

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._jobs, slug, dataclasses.replace(job, entry=wrapped))
        mp.setattr(Atomic, "__exit__", atomic_exit)
        yield points
