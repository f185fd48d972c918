"""What the dashboard's pages list: one line per job with its districts (the index), the
fields a recorded change altered, and a run's progress. Plain data; the templates format
times and durations (scheduling/templatetags/times_and_durations.py)."""
from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass, field

from scheduling import calendar_policy, cron, registry, selectors
from scheduling.models import JobRun, JobSchedule
from scheduling.monitoring import status
from scheduling.templatetags.times_and_durations import local_text

# A job's expanded table lists this many districts (those needing attention first); the
# "all districts" link shows one job with every district. 13 jobs x 500 districts as rows
# with their forms is an 8 MB page that takes seconds to render; the summary line of each
# job still covers all its districts.
ROWS_PER_JOB = 10


@dataclass
class DistrictLine:
    row: selectors.DashboardRow
    alert: status.JobAlertState | None

    @property
    def where(self) -> str:
        return self.row.district_name or "global"

    @property
    def success(self) -> str:
        return f"{self.row.success_rate:.0%}" if self.row.success_rate is not None else ""


def _failing(row: selectors.DashboardRow) -> bool:
    return row.last_status in (JobRun.Status.FAILED, JobRun.Status.TIMED_OUT)


@dataclass
class JobLine:
    slug: str
    title: str
    why: str
    critical: bool
    scope: str
    rows: list[selectors.DashboardRow] = field(default_factory=list)
    alert_states: dict[int | None, status.JobAlertState] = field(default_factory=dict)
    lines: list[DistrictLine] = field(default_factory=list)  # the rows shown

    def needs_attention(self, row: selectors.DashboardRow) -> bool:
        return bool(row.overdue or _failing(row) or row.paused or row.district_id in self.alert_states)

    def show(self, limit: int | None) -> None:
        """The rows to show: those needing attention first, then by district name."""
        ordered = sorted(self.rows, key=lambda r: not self.needs_attention(r))  # stable: names stay sorted
        self.lines = [DistrictLine(r, self.alert_states.get(r.district_id)) for r in ordered[:limit]]

    @property
    def hidden(self) -> int:
        return len(self.rows) - len(self.lines)

    @property
    def paused(self) -> int:
        return sum(1 for r in self.rows if r.paused)

    @property
    def failing(self) -> int:
        return sum(1 for r in self.rows if _failing(r))

    @property
    def overdue(self) -> int:
        return sum(1 for r in self.rows if r.overdue)

    @property
    def alert_severity(self) -> str:
        severities = {a.severity for a in self.alert_states.values()}
        return "critical" if "critical" in severities else "warning" if severities else ""

    @property
    def alerts(self) -> int:
        return len(self.alert_states)

    @property
    def crons(self) -> list[tuple[str, str]]:
        """The distinct (cron, in words) of its schedules, most common first."""
        counts: dict[tuple[str, str], int] = {}
        for r in self.rows:
            key = (r.cron or "", r.cron_text)
            counts[key] = counts.get(key, 0) + 1
        return sorted(counts, key=lambda k: -counts[k])

    @property
    def next_run(self) -> DistrictLine | None:
        live = [r for r in self.rows if r.next_run_utc is not None]
        if not live:
            return None
        row = min(live, key=lambda r: r.next_run_utc)
        return DistrictLine(row, self.alert_states.get(row.district_id))

    @property
    def runs_30d(self) -> int:
        return sum(r.runs_30d for r in self.rows)

    @property
    def success_rate(self) -> str:
        executed = [(r.success_rate, r.runs_30d) for r in self.rows if r.success_rate is not None]
        total = sum(n for _, n in executed)
        return f"{sum(rate * n for rate, n in executed) / total:.0%}" if total else ""


def job_lines(*, now: dt.datetime, job: str | None = None, district: str = "",
              limit: int | None = ROWS_PER_JOB, district_id: int | None = None) -> list[JobLine]:
    """One JobLine per job with its schedules (3 queries: rows, 30-day figures, alerts).

    ``job``: only that job; ``district``: only districts whose name contains it; ``limit``:
    how many district rows of each job to show (None: all); ``district_id``: only that
    district's schedules (a district admin's read-only view: no global job either).
    """
    alert_states = status.job_alert_states()
    needle = district.strip().casefold()
    jobs: OrderedDict[str, JobLine] = OrderedDict()
    for row in selectors.dashboard_rows(now=now, job_slugs=[job] if job else None, district_id=district_id):
        if needle and needle not in (row.district_name or "global").casefold():
            continue
        definition = row.job
        line = jobs.get(row.job_slug)
        if line is None:
            line = jobs[row.job_slug] = JobLine(
                slug=row.job_slug, title=definition.title if definition else f"{row.job_slug} (no longer registered)",
                why=definition.why if definition else "", critical=bool(definition and definition.critical),
                scope=definition.scope if definition else "district",
            )
        line.rows.append(row)
        alert = alert_states.get((row.job_slug, row.district_id))
        if alert is not None:
            line.alert_states[row.district_id] = alert
    for line in jobs.values():
        line.show(limit)
    return list(jobs.values())


# The fields a ScheduleChange snapshot holds (services._snapshot, run now, retry), in words.
CHANGE_FIELDS = {
    "cron": "cron", "cron_customized": "cron edited by staff", "paused": "paused", "pause_note": "pause note",
    "removed": "deleted", "next_run": "next run", "run": "run", "slot": "slot", "status": "status",
    "attempt": "attempt",
}


def change_diff(before: dict, after: dict, *, zone: str = "UTC") -> list[tuple[str, str, str]]:
    """(field, before, after) in words for the fields a change altered, in a stable order; a
    field only on one side (run now: after = {"run": ...}) shows with an empty other side.
    Yes/no for flags, times in ``zone`` with their offset, "#12" for a run, a status's label."""
    def text(key: str, value) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if key == "run":
            return f"#{value}"
        if key == "status" and value in JobRun.Status.values:
            return JobRun.Status(value).label.lower()
        if key in ("next_run", "slot") and isinstance(value, str):
            try:
                return local_text(dt.datetime.fromisoformat(value), zone)
            except ValueError:
                return value
        return str(value)

    before, after = before or {}, after or {}
    keys = [k for k in (*before, *(k for k in after if k not in before)) if before.get(k) != after.get(k)]
    return [(CHANGE_FIELDS.get(k, k.replace("_", " ")), text(k, before.get(k)) if k in before else "",
             text(k, after.get(k))) for k in keys]


def run_progress(run: JobRun) -> dict:
    """{"done", "total", "percent"} for the run page's bar (percent None: not known yet)."""
    done, total = run.progress_done, run.progress_total
    if run.status == JobRun.Status.SUCCEEDED:
        percent = 100
    elif done is not None and total:
        percent = min(100, int(done * 100 / total))
    else:
        percent = None
    return {"done": done, "total": total, "percent": percent}


# The schedule page lists this many next runs, the school calendar's skips marked.
UPCOMING_RUNS = 5


def calendar_skips_of(schedule: JobSchedule):
    """``slots -> {slot: reason}`` for this schedule's job, district and zone (the cron
    preview's ``skips``); the same function the slot claim applies."""
    job = registry.find(schedule.job)

    def skips(slots) -> dict[dt.datetime, str]:
        if job is None:
            return {}
        return calendar_policy.calendar_skips(job, district_id=schedule.district_id, zone_name=schedule.zone_name,
                                              slots=slots)
    return skips


def upcoming_runs(schedule: JobSchedule, *, now: dt.datetime) -> list[tuple[dt.datetime, str]]:
    """The schedule's next UPCOMING_RUNS slots after now, each with the reason the school
    calendar skips it ("" when it runs). None for a paused, deleted or ad-hoc schedule."""
    if not schedule.cron or schedule.paused or schedule.removed_at is not None:
        return []
    try:
        slots = cron.next_slots(schedule.cron, schedule.zone_name, now, UPCOMING_RUNS)
    except cron.BadCron:
        return []
    skipped = calendar_skips_of(schedule)(slots)
    return [(s, skipped.get(s, "")) for s in slots]
