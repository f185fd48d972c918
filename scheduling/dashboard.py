"""/admin/scheduled-jobs/: the scheduled-jobs dashboard, registered on the admin site
(skillcore/sites.py). System admins only; everyone else 403, anonymous users the login page.

Thin views: reads come from scheduling.selectors / scheduling.status (a fixed number of
queries whatever the number of schedules), every change goes through scheduling.services,
which writes the ScheduleChange audit row. Bad input gives a form error or a message,
never a 500.
"""
from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass, field

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from scheduling import cron, registry, selectors, services
from scheduling.monitoring import status
from scheduling.models import JobRun, JobSchedule

PAUSE_NOTE_MAX = 500
PREVIEW_COUNT = 5
UTC = dt.timezone.utc


# -- permission ----------------------------------------------------------------------------------
def _require_system_admin(request) -> None:
    from students.roles import staff_of

    if not staff_of(request.user).is_system_admin:
        raise PermissionDenied("The scheduled-jobs dashboard is for system administrators.")


def _forbidden_page(site, view):
    """Staff who are not system admins get a 403 in the admin's look, saying why."""
    import functools

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except PermissionDenied:
            return render(request, "scheduling/dashboard/forbidden.html",
                          _context(site, request, title="Not allowed"), status=403)
    return wrapped


# -- formatting ----------------------------------------------------------------------------------
def _offset(value: dt.datetime) -> str:
    """UTC offset as "UTC−05:00" / "UTC+10:30" (a real minus sign, as clocks print it)."""
    seconds = int(value.utcoffset().total_seconds())
    sign = "+" if seconds >= 0 else "\u2212"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def local_text(value: dt.datetime | None, tz_name: str) -> str:
    if value is None:
        return ""
    local = value.astimezone(cron.zone(tz_name))
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} ({_offset(local)})"


def utc_text(value: dt.datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M}Z" if value is not None else ""


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# -- forms ---------------------------------------------------------------------------------------
class PauseForm(forms.Form):
    note = forms.CharField(
        max_length=PAUSE_NOTE_MAX, strip=True,
        widget=forms.TextInput(attrs={"size": 50, "placeholder": "Why? (required, e.g. winter break)"}),
        help_text="Required: says why the job is paused (shown on the dashboard and in the history).",
        error_messages={"required": "A pause needs a note saying why."},
    )


class CronForm(forms.Form):
    cron = forms.CharField(
        max_length=100, strip=True,
        widget=forms.TextInput(attrs={"size": 30, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Five fields: minute hour day-of-month month day-of-week, in the district's time zone. "
                  "MON#1 is the first Monday of the month.",
        error_messages={"required": "Enter a cron expression."},
    )

    def clean_cron(self) -> str:
        try:
            return cron.validate(self.cleaned_data["cron"])
        except cron.BadCron as exc:
            raise forms.ValidationError(str(exc)) from None


# -- the cron preview: next runs, and the runs around the next DST change --------------------------
@dataclass
class PreviewSlot:
    utc: dt.datetime
    local: str
    utc_label: str
    offset: str
    after_change: bool = False


@dataclass
class Preview:
    expr: str
    tz_name: str
    words: str = ""
    error: str = ""
    next_runs: list[PreviewSlot] = field(default_factory=list)
    dst_change: dt.datetime | None = None  # the instant the offset changes (UTC)
    dst_label: str = ""
    around_change: list[PreviewSlot] = field(default_factory=list)


def next_offset_change(tz_name: str, after: dt.datetime, horizon_days: int = 400) -> dt.datetime | None:
    """The first instant after ``after`` at which the zone's UTC offset changes (None:
    no change within the horizon, e.g. Asia/Kolkata or UTC). Day steps, then bisection
    to the second: the answer is exact, found in ~420 offset lookups."""
    tz = cron.zone(tz_name)
    start = after.astimezone(UTC)
    base = start.astimezone(tz).utcoffset()
    lo = start
    for day in range(1, horizon_days + 1):
        hi = start + dt.timedelta(days=day)
        if hi.astimezone(tz).utcoffset() != base:
            while hi - lo > dt.timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == base:
                    lo = mid
                else:
                    hi = mid
            return hi.replace(microsecond=0)
        lo = hi
    return None


def _slot(value: dt.datetime, tz_name: str, change: dt.datetime | None = None) -> PreviewSlot:
    local = value.astimezone(cron.zone(tz_name))
    return PreviewSlot(
        utc=value, local=local_text(value, tz_name), utc_label=utc_text(value), offset=_offset(local),
        after_change=change is not None and value >= change,
    )


def cron_preview(expr: str, tz_name: str, *, now: dt.datetime | None = None) -> Preview:
    """The next PREVIEW_COUNT runs of ``expr`` in ``tz_name`` and the runs that straddle the
    zone's next DST change (two before, three after), computed by the engine's own slot
    function (scheduling/cron.py), so the preview is what the scheduler will do."""
    from cronsim import CronSim

    now = now or timezone.now()
    preview = Preview(expr=expr, tz_name=tz_name)
    try:
        expr = preview.expr = cron.validate(expr)
        preview.words = cron.describe(expr)
        preview.next_runs = [_slot(s, tz_name) for s in cron.next_slots(expr, tz_name, now, PREVIEW_COUNT)]
    except cron.BadCron as exc:
        preview.error = str(exc)
        return preview
    change = next_offset_change(tz_name, now)
    if change is None:
        return preview
    preview.dst_change = change
    # Instants, not wall-clock arithmetic: one second before the change is still the old offset.
    tz = cron.zone(tz_name)
    before, after = (change - dt.timedelta(seconds=1)).astimezone(tz), change.astimezone(tz)
    preview.dst_label = (
        f"{after:%a %Y-%m-%d}: clocks go from {_offset(before)} to {_offset(after)}"
    )
    # Two slots before the change: cronsim walks backwards from the change in local time;
    # then the engine walks forward from just before the earlier one (DST rules applied once).
    back = CronSim(expr, before, reverse=True)
    earlier = [next(back) for _ in range(2)]
    start = min(e.astimezone(UTC) for e in earlier) - dt.timedelta(seconds=1)
    slots = cron.next_slots(expr, tz_name, max(start, now), PREVIEW_COUNT)
    preview.around_change = [_slot(s, tz_name, change) for s in slots]
    return preview


# -- the dashboard's rows --------------------------------------------------------------------------
# A job's expanded table lists this many districts (those needing attention first); the
# "all districts" link shows one job with every district. 13 jobs x 500 districts as rows
# with their forms is an 8 MB page that takes seconds to render; the summary line of each
# job still covers all its districts.
ROWS_PER_JOB = 10


@dataclass
class DistrictLine:
    row: selectors.DashboardRow
    where: str
    next_local: str
    next_utc: str
    last_run: str
    avg: str
    success: str
    alert: status.JobAlertState | None


def _district_line(row: selectors.DashboardRow, alert: status.JobAlertState | None) -> DistrictLine:
    return DistrictLine(
        row=row, where=row.district_name or "global",
        next_local=local_text(row.next_run_local, row.time_zone), next_utc=utc_text(row.next_run_utc),
        last_run=local_text(row.last_started, row.time_zone), avg=duration_text(row.avg_duration),
        success=f"{row.success_rate:.0%}" if row.success_rate is not None else "", alert=alert,
    )


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
    lines: list[DistrictLine] = field(default_factory=list)  # the rows shown, formatted

    def needs_attention(self, row: selectors.DashboardRow) -> bool:
        return bool(row.overdue or _failing(row) or row.paused or row.district_id in self.alert_states)

    def show(self, limit: int | None) -> None:
        """Format the rows to show: those needing attention first, then by district name."""
        ordered = sorted(self.rows, key=lambda r: not self.needs_attention(r))  # stable: names stay sorted
        self.lines = [_district_line(r, self.alert_states.get(r.district_id)) for r in ordered[:limit]]

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
        return _district_line(row, self.alert_states.get(row.district_id))

    @property
    def runs_30d(self) -> int:
        return sum(r.runs_30d for r in self.rows)

    @property
    def success_rate(self) -> str:
        executed = [(r.success_rate, r.runs_30d) for r in self.rows if r.success_rate is not None]
        total = sum(n for _, n in executed)
        return f"{sum(rate * n for rate, n in executed) / total:.0%}" if total else ""


def job_lines(*, now: dt.datetime, job: str | None = None, district: str = "",
              limit: int | None = ROWS_PER_JOB) -> list[JobLine]:
    """One JobLine per job with its schedules (3 queries: rows, 30-day figures, alerts).

    ``job``: only that job; ``district``: only districts whose name contains it; ``limit``:
    how many district rows of each job to format and show (None: all).
    """
    alert_states = status.job_alert_states()
    needle = district.strip().casefold()
    jobs: OrderedDict[str, JobLine] = OrderedDict()
    for row in selectors.dashboard_rows(now=now, job_slugs=[job] if job else None):
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


# -- views ---------------------------------------------------------------------------------------
def _context(site, request, **extra) -> dict:
    # No app-list sidebar: the tables need the width.
    return {**site.each_context(request), "is_nav_sidebar_enabled": False, **extra}


def _schedule_or_404(pk: int) -> JobSchedule:
    schedule = JobSchedule.objects.select_related("district", "q_schedule", "paused_by", "last_run").filter(pk=pk).first()
    if schedule is None:
        raise Http404("No such schedule.")
    return schedule


def _run_or_404(pk: int) -> JobRun:
    run = JobRun.objects.select_related("district", "triggered_by").filter(pk=pk).first()
    if run is None:
        raise Http404("No such run.")
    return run


def _zone_of(schedule: JobSchedule) -> str:
    return services.zone_name(schedule.district)


def _schedule_title(schedule: JobSchedule) -> str:
    where = schedule.district.name if schedule.district_id else "global"
    return f"{_job_title(schedule.job)} — {where}"


def _job_title(slug: str) -> str:
    try:
        return registry.get(slug).title
    except registry.UnknownJob:
        return slug


def make_views(site):
    """The dashboard's views bound to ``site`` (for each_context and admin_view)."""

    def index(request):
        """All jobs (``?job=<slug>``: one job, every district; ``?district=<text>``: districts
        whose name contains it). Unknown filters show an empty list, never an error."""
        _require_system_admin(request)
        now = timezone.now()
        job = (request.GET.get("job") or "").strip()[:100] or None
        district = (request.GET.get("district") or "")[:100]
        return render(request, "scheduling/dashboard/index.html", _context(
            site, request, title="Scheduled jobs", now=now, system=status.system_status(now=now),
            jobs=job_lines(now=now, job=job, district=district, limit=None if job else ROWS_PER_JOB),
            job_filter=job, district_filter=district,
        ))

    def _schedule_page(request, schedule: JobSchedule, *, pause_form=None, status_code=200):
        tz_name = _zone_of(schedule)
        runs = list(selectors.run_history(job_slug=schedule.job, district_id=schedule.district_id, limit=25))
        changes = list(schedule.changes.select_related("acting_user").order_by("-at", "-id")[:50])
        q = schedule.q_schedule
        next_run = q.next_run if (q is not None and not schedule.paused and q.repeats != 0) else None
        return render(request, "scheduling/dashboard/schedule.html", _context(
            site, request, title=_schedule_title(schedule), schedule=schedule, tz_name=tz_name,
            job=_job_or_none(schedule.job), words=cron.describe(schedule.cron) if schedule.cron else "ad hoc (run on demand)",
            next_local=local_text(next_run, tz_name), next_utc=utc_text(next_run),
            runs=[(r, local_text(r.slot, tz_name), duration_text(r.duration_seconds)) for r in runs],
            changes=[(c, local_text(c.at, tz_name), change_diff(c.before, c.after)) for c in changes],
            chart=duration_chart(selectors.recent_durations(job_slug=schedule.job, district_id=schedule.district_id)),
            pause_form=pause_form or PauseForm(),
        ), status=status_code)

    def schedule_detail(request, pk: int):
        _require_system_admin(request)
        return _schedule_page(request, _schedule_or_404(pk))

    @require_POST
    def run_now(request, pk: int):
        _require_system_admin(request)
        schedule = _schedule_or_404(pk)
        if schedule.removed_at:
            messages.error(request, "This schedule was deleted; it cannot run.")
            return redirect("admin:scheduled_jobs_schedule", pk=pk)
        try:
            run = services.run_now(job_slug=schedule.job, district=schedule.district, acting_user=request.user)
        except services.QueueUnavailable as exc:  # saved, not sent: say so, never a 500
            messages.warning(request, str(exc))
            return redirect("admin:scheduled_jobs_run", pk=exc.run.pk)
        except (services.ScheduleError, registry.UnknownJob) as exc:
            messages.error(request, str(exc))
            return redirect("admin:scheduled_jobs_schedule", pk=pk)
        messages.success(request, f"Run #{run.pk} of {_schedule_title(schedule)} queued.")
        return redirect("admin:scheduled_jobs_run", pk=run.pk)

    @require_POST
    def pause(request, pk: int):
        _require_system_admin(request)
        schedule = _schedule_or_404(pk)
        form = PauseForm(request.POST)
        if not form.is_valid():
            return _schedule_page(request, schedule, pause_form=form, status_code=400)
        try:
            services.pause_schedule(schedule=schedule, acting_user=request.user, note=form.cleaned_data["note"])
        except services.ScheduleError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Paused {_schedule_title(schedule)}.")
        return redirect(_back(request, schedule))

    @require_POST
    def resume(request, pk: int):
        _require_system_admin(request)
        schedule = _schedule_or_404(pk)
        try:
            schedule = services.resume_schedule(schedule=schedule, acting_user=request.user)
        except (services.ScheduleError, registry.UnknownJob) as exc:
            messages.error(request, str(exc))
        else:
            q = schedule.q_schedule
            when = f"; next run {local_text(q.next_run, _zone_of(schedule))}" if q is not None and q.next_run else ""
            messages.success(request, f"Resumed {_schedule_title(schedule)}{when}.")
        return redirect(_back(request, schedule))

    def edit_cron(request, pk: int):
        _require_system_admin(request)
        schedule = _schedule_or_404(pk)
        tz_name = _zone_of(schedule)
        if schedule.removed_at:
            messages.error(request, "This schedule was deleted; its cron cannot change.")
            return redirect("admin:scheduled_jobs_schedule", pk=pk)
        preview = None
        code = 200
        if request.method == "POST":
            form = CronForm(request.POST)
            if form.is_valid():
                if "_preview" in request.POST:
                    preview = cron_preview(form.cleaned_data["cron"], tz_name)
                else:
                    try:
                        services.edit_cron(schedule=schedule, acting_user=request.user, cron_expr=form.cleaned_data["cron"])
                    except (services.ScheduleError, registry.UnknownJob) as exc:
                        form.add_error("cron", str(exc))
                        code = 400
                    else:
                        messages.success(request, f"Cron of {_schedule_title(schedule)} is now {form.cleaned_data['cron']!r}.")
                        return redirect("admin:scheduled_jobs_schedule", pk=pk)
            else:
                code = 400
        else:
            form = CronForm(initial={"cron": schedule.cron})
            if schedule.cron:
                preview = cron_preview(schedule.cron, tz_name)
        return render(request, "scheduling/dashboard/edit_cron.html", _context(
            site, request, title=f"Edit the cron of {_schedule_title(schedule)}", schedule=schedule, tz_name=tz_name,
            form=form, preview=preview,
        ), status=code)

    @require_GET
    def preview(request, pk: int):
        """The preview fragment (HTML) the edit page's script fetches as the cron is typed."""
        _require_system_admin(request)
        schedule = _schedule_or_404(pk)
        expr = (request.GET.get("cron") or "")[:100]
        result = cron_preview(expr, _zone_of(schedule))
        return render(request, "scheduling/dashboard/_preview.html", {"preview": result},
                      status=400 if result.error else 200)

    def delete(request, pk: int):
        _require_system_admin(request)
        schedule = _schedule_or_404(pk)
        if request.method == "POST":
            try:
                services.delete_schedule(schedule=schedule, acting_user=request.user)
            except services.ScheduleError as exc:
                messages.error(request, str(exc))
                return redirect("admin:scheduled_jobs_schedule", pk=pk)
            messages.success(request, f"Deleted {_schedule_title(schedule)}. Its run history is kept.")
            return redirect("admin:scheduled_jobs")
        return render(request, "scheduling/dashboard/delete.html", _context(
            site, request, title=f"Delete {_schedule_title(schedule)}?", schedule=schedule,
            run_count=JobRun.objects.filter(job=schedule.job, district_id=schedule.district_id).count(),
        ))

    def run_detail(request, pk: int):
        _require_system_admin(request)
        run = _run_or_404(pk)
        tz_name = services.zone_name(run.district)
        schedule = JobSchedule.objects.filter(job=run.job, district_id=run.district_id).only("id").first()
        return render(request, "scheduling/dashboard/run.html", _context(
            site, request, title=f"Run #{run.pk} — {_job_title(run.job)}", run=run, tz_name=tz_name,
            schedule=schedule, progress=_progress(run),
            slot_local=local_text(run.slot, tz_name), started_local=local_text(run.started_at, tz_name),
            finished_local=local_text(run.finished_at, tz_name), duration=duration_text(run.duration_seconds),
            finished=run.status in JobRun.FINISHED, can_retry=run.status in (JobRun.Status.FAILED, JobRun.Status.TIMED_OUT),
            where=run.district.name if run.district_id else "global",
            chart=duration_chart(selectors.recent_durations(job_slug=run.job, district_id=run.district_id), highlight=run.started_at),
        ))

    @require_GET
    def run_progress(request, pk: int):
        """JSON the run page polls while the run is queued or running."""
        _require_system_admin(request)
        run = _run_or_404(pk)
        return JsonResponse({
            "id": run.pk, "status": run.status, "status_label": run.get_status_display(),
            "finished": run.status in JobRun.FINISHED, **_progress(run),
        })

    @require_POST
    def retry(request, pk: int):
        _require_system_admin(request)
        run = _run_or_404(pk)
        try:
            new = services.retry_run(run=run, acting_user=request.user)
        except services.QueueUnavailable as exc:  # saved, not sent: say so, never a 500
            messages.warning(request, str(exc))
            return redirect("admin:scheduled_jobs_run", pk=exc.run.pk)
        except (services.ScheduleError, registry.UnknownJob) as exc:
            messages.error(request, str(exc))
            return redirect("admin:scheduled_jobs_run", pk=pk)
        messages.success(request, f"Retry #{new.pk} (attempt {new.attempt}) of run #{run.pk} queued.")
        return redirect("admin:scheduled_jobs_run", pk=new.pk)

    return {
        "index": index, "schedule": schedule_detail, "run_now": run_now, "pause": pause, "resume": resume,
        "edit_cron": edit_cron, "preview": preview, "delete": delete, "run": run_detail,
        "run_progress": run_progress, "retry": retry,
    }


def change_diff(before: dict, after: dict) -> list[tuple[str, str, str]]:
    """(field, before, after) for the fields a change altered, in a stable order; a field only
    on one side (run now: after = {"run": ...}) shows with an empty other side."""
    def text(value) -> str:
        return "—" if value is None or value == "" else str(value)

    before, after = before or {}, after or {}
    keys = [k for k in (*before, *(k for k in after if k not in before)) if before.get(k) != after.get(k)]
    return [(k.replace("_", " "), text(before.get(k)) if k in before else "", text(after.get(k))) for k in keys]


def _job_or_none(slug: str) -> registry.Job | None:
    try:
        return registry.get(slug)
    except registry.UnknownJob:
        return None


def _back(request, schedule: JobSchedule) -> str:
    """Back to where the action was clicked: the dashboard or the schedule's page."""
    if request.POST.get("next") == "index":
        return reverse("admin:scheduled_jobs") + f"#job-{schedule.job}"
    return reverse("admin:scheduled_jobs_schedule", args=[schedule.pk])


def _progress(run: JobRun) -> dict:
    done, total = run.progress_done, run.progress_total
    if run.status == JobRun.Status.SUCCEEDED:
        percent = 100
    elif done is not None and total:
        percent = min(100, int(done * 100 / total))
    else:
        percent = None
    return {"done": done, "total": total, "percent": percent}


# -- the duration chart (inline SVG, no JS) --------------------------------------------------------
@dataclass
class Chart:
    width: int
    height: int
    bars: list[dict]
    max_label: str
    empty: bool


def duration_chart(points: list[tuple[dt.datetime, float]], *, highlight: dt.datetime | None = None,
                   width: int = 600, height: int = 140) -> Chart:
    """Bars of the latest runs' durations, oldest left; the y axis tops at the slowest.
    ``highlight``: the start time of the run whose page this is (its bar is coloured)."""
    top = max((s for _, s in points), default=0) or 1
    plot_h, left, gap = height - 30, 50, 2
    bar_w = max(4, min(40, (width - left) // max(len(points), 1) - gap))
    bars = []
    for i, (started, seconds) in enumerate(points):
        h = max(1, round(seconds / top * plot_h))
        bars.append({
            "x": left + i * (bar_w + gap), "y": 10 + plot_h - h, "w": bar_w, "h": h,
            "label": f"{started:%Y-%m-%d %H:%M}Z: {duration_text(seconds)}",
            "current": highlight is not None and started == highlight,
        })
    if bars:  # a short history: the axis ends after the last bar, so "latest" sits next to it
        width = max(240, bars[-1]["x"] + bar_w + 40)
    return Chart(width=width, height=height, bars=bars, max_label=duration_text(top), empty=not points)


def urls(site) -> list:
    views = make_views(site)

    def wrap(view):
        return site.admin_view(_forbidden_page(site, view))
    return [
        path("scheduled-jobs/", wrap(views["index"]), name="scheduled_jobs"),
        path("scheduled-jobs/<int:pk>/", wrap(views["schedule"]), name="scheduled_jobs_schedule"),
        path("scheduled-jobs/<int:pk>/run/", wrap(views["run_now"]), name="scheduled_jobs_run_now"),
        path("scheduled-jobs/<int:pk>/pause/", wrap(views["pause"]), name="scheduled_jobs_pause"),
        path("scheduled-jobs/<int:pk>/resume/", wrap(views["resume"]), name="scheduled_jobs_resume"),
        path("scheduled-jobs/<int:pk>/cron/", wrap(views["edit_cron"]), name="scheduled_jobs_cron"),
        path("scheduled-jobs/<int:pk>/preview/", wrap(views["preview"]), name="scheduled_jobs_preview"),
        path("scheduled-jobs/<int:pk>/delete/", wrap(views["delete"]), name="scheduled_jobs_delete"),
        path("scheduled-jobs/runs/<int:pk>/", wrap(views["run"]), name="scheduled_jobs_run"),
        path("scheduled-jobs/runs/<int:pk>/progress.json", wrap(views["run_progress"]), name="scheduled_jobs_run_progress"),
        path("scheduled-jobs/runs/<int:pk>/retry/", wrap(views["retry"]), name="scheduled_jobs_retry"),
    ]

