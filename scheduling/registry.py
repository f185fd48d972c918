"""The job registry: every job is declared in code, one module per job under
scheduling/jobs/, as ``JOB = Job(...)``.

The registry is filled on first use by importing every module of ``scheduling.jobs`` and
of ``settings.SCHEDULING_EXTRA_JOB_MODULES`` (tests and a qcluster started by a test use
that to add their own jobs). ``register()`` adds a job at run time (tests).
"""
from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from scheduling import cron
from skillcore import outbox

SCOPES = ("district", "global")
# A job's calendar policy: on which days its slots run (docs/scheduling.md, "School calendars").
ANY_DAY = "any day"  # every slot its cron names (legal deadlines run on calendar days)
SCHOOL_DAYS = "school days"  # only slots whose local date is a school day of the district
CALENDARS = (ANY_DAY, SCHOOL_DAYS)


@dataclass(frozen=True)
class Job:
    """A job's definition. ``entry(ctx) -> dict`` is None until the job's own issue lands."""

    slug: str
    title: str
    default_cron: str | None
    why: str
    scope: str = "district"
    critical: bool = False
    expected_duration: dt.timedelta = dt.timedelta(minutes=5)
    timeout: int = 1800
    max_attempts: int = 3
    backoff_base: int = 60
    backoff_cap: int = 3600
    catch_up_window: dt.timedelta = dt.timedelta(hours=2)
    overlap: str = "skip"
    calendar: str = ANY_DAY
    # What the run's summary figures mean to people (scheduling/summaries.py): key -> label,
    # or (label, a one-line meaning) where the label alone could mislead. Keys of nested
    # figures (a per-channel count) are labelled from the same mapping.
    figures: Mapping[str, str | tuple[str, str]] = field(default_factory=dict, compare=False)
    progress_unit: str = "items"  # what ctx.progress(done, total) counts: "5 of 12 students"
    entry: Callable[[Any], dict] | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"job {self.slug}: scope must be one of {SCOPES}")
        if self.overlap != "skip":
            raise ValueError(f"job {self.slug}: only the 'skip' overlap policy is implemented")
        if self.calendar not in CALENDARS:
            raise ValueError(f"job {self.slug}: calendar must be one of {CALENDARS}")
        if self.calendar == SCHOOL_DAYS and self.scope == "global":
            # A global job has no district, hence no school calendar to follow.
            raise ValueError(f"job {self.slug}: a global job cannot follow the school calendar")
        if self.default_cron:
            cron.validate(self.default_cron)
        if self.timeout < 1 or self.max_attempts < 1 or self.backoff_base < 0:
            raise ValueError(f"job {self.slug}: timeout and max_attempts must be positive")

    @property
    def is_global(self) -> bool:
        return self.scope == "global"

    @property
    def on_school_days(self) -> bool:
        return self.calendar == SCHOOL_DAYS

    @property
    def has_body(self) -> bool:
        return self.entry is not None

    def backoff(self, attempt: int, *, jitter: float) -> dt.timedelta:
        """Delay before attempt ``attempt + 1``: base x 2^(attempt-1), capped, times jitter.

        ``jitter`` is a factor in [0.5, 1.0] ("equal jitter"), so retries of many districts
        failing together (a database blip) do not come back at the same second.
        """
        return outbox.backoff(attempt, base=dt.timedelta(seconds=self.backoff_base),
                              cap=dt.timedelta(seconds=self.backoff_cap), jitter=jitter)


class UnknownJob(LookupError):
    pass


_jobs: dict[str, Job] = {}
_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import scheduling.jobs as package

    names = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    names += list(getattr(settings, "SCHEDULING_EXTRA_JOB_MODULES", []))
    for name in names:
        module = importlib.import_module(name)
        job = getattr(module, "JOB", None)
        if isinstance(job, Job):
            _add(job)
        for extra in getattr(module, "JOBS", ()):
            _add(extra)


def _add(job: Job) -> None:
    existing = _jobs.get(job.slug)
    if existing is not None and existing is not job:
        raise ValueError(f"two jobs share the slug {job.slug!r}")
    _jobs[job.slug] = job


def register(job: Job) -> Job:
    """Add a job at run time (tests); the slug must be new."""
    _load()
    _add(job)
    return job


def unregister(slug: str) -> None:
    _jobs.pop(slug, None)


def all_jobs() -> list[Job]:
    _load()
    return sorted(_jobs.values(), key=lambda j: j.slug)


def get(slug: str) -> Job:
    """The job with this slug; UnknownJob (one line for the user) when there is none."""
    job = find(slug)
    if job is None:
        raise UnknownJob(f"unknown job {slug!r} (see `manage.py jobs list`)")
    return job


def find(slug: str) -> Job | None:
    """The job with this slug, or None: a schedule or run whose job left the registry."""
    _load()
    return _jobs.get(slug)
