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
import zlib
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
    # Spread (docs/scheduling.md, "Spread"): a back-office job may run anywhere in the
    # spread_minutes starting at its default cron's minute (60 with "0 2 * * 0": 02:00-02:59).
    # Each district takes a stable minute in that window, so thousands of districts in one
    # zone do not all fall due in the same instant. 0: every district keeps the exact minute.
    spread_minutes: int = 0
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
        if self.spread_minutes:
            self._check_spread()
        if self.timeout < 1 or self.max_attempts < 1 or self.backoff_base < 0:
            raise ValueError(f"job {self.slug}: timeout and max_attempts must be positive")

    def _check_spread(self) -> None:
        # The window stays inside the default cron's hour so only the minute field moves:
        # the hour, days and the cron's DST handling are the default's, unchanged.
        if self.is_global:
            raise ValueError(f"job {self.slug}: a global job has one schedule, nothing to spread")
        minute = cron.validate(self.default_cron).split()[0] if self.default_cron else ""
        if not minute.isdigit():
            raise ValueError(f"job {self.slug}: spread needs a default cron with one fixed minute")
        if not 0 < self.spread_minutes <= 60 - int(minute):
            raise ValueError(f"job {self.slug}: spread_minutes must keep the window inside the hour "
                             f"(1 to {60 - int(minute)})")

    def spread_offset(self, district_id: int | None) -> int:
        """The district's stable offset in minutes within the job's spread window (0 without).

        crc32 of "<slug>:<district id>", not hash(): Python salts str hashes per process,
        and every sync, qcluster and `jobs next` must pick the same minute.
        """
        if not self.spread_minutes or district_id is None:
            return 0
        return zlib.crc32(f"{self.slug}:{district_id}".encode()) % self.spread_minutes

    def cron_for(self, district_id: int | None) -> str:
        """The cron sync seeds the district's schedule with: the default cron, its minute
        moved by the district's spread offset ("" for an ad-hoc job)."""
        if not self.default_cron:
            return ""
        offset = self.spread_offset(district_id)
        if not offset:
            return self.default_cron
        # Split, not cron.validate(): sync calls this per schedule (50,000 rows for 10,000
        # districts), and the default cron was validated once when the job was declared.
        minute, rest = self.default_cron.split(None, 1)
        return f"{int(minute) + offset} {rest}"

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
