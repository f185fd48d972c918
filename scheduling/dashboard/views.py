"""The dashboard's views: thin functions behind ``system_admin_required`` (every change) or
``jobs_viewer_required`` (the pages that only show: the index, a schedule, a run). Reads
come from scheduling.selectors and scheduling.monitoring.status; every change goes through
scheduling.services (which writes the audit row); bad input is a form error or a message.

A district admin sees the same pages for their own district only, read-only: no form and no
button, other districts' and global schedules and runs are "not found" (404), and every
action view stays behind ``system_admin_required`` (a POST is the 403 page)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from django.contrib import admin, messages
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from scheduling import blast_radius, calendar_policy, cron, registry, selectors, services
from scheduling.dashboard import pages
from scheduling.dashboard.charts import duration_chart
from scheduling.dashboard.forms import CronForm, HoldDecisionForm, PauseForm
from scheduling.dashboard.preview import cron_preview
from scheduling.models import JobRun, JobSchedule, RunHold
from scheduling.monitoring import status
from scheduling.summaries import figures as summary_figures
from scheduling.summaries import log_lines
from scheduling.templatetags.times_and_durations import local_text
from students.models import District
from students.roles import staff_of


# -- who may see it ------------------------------------------------------------------------------
def _context(request, **extra) -> dict:
    """The admin's page chrome (site header, user links, theme); no app-list sidebar: the
    tables need the width."""
    return {**admin.site.each_context(request), "is_nav_sidebar_enabled": False, **extra}


def _forbidden(request):
    staff = staff_of(request.user)
    return render(request, "scheduling/dashboard/forbidden.html", _context(
        request, title="Not allowed", watcher=staff.jobs_read_only_district is not None,
    ), status=403)


def _not_found(request, exc: Http404):
    """A missing (or, for a district admin, another district's) schedule or run: the 404
    page in the dashboard's look, never Django's bare one."""
    return render(request, "scheduling/dashboard/not_found.html", _context(
        request, title="Not found", reason=str(exc),
    ), status=404)


def system_admin_required(view):
    """The admin site's gate first (``admin_view``: anyone the admin refuses, anonymous users
    included, goes to the admin login page; CSRF protection and never_cache), then the role:
    staff who are not system admins get a 403 page in the admin's look, saying why."""
    @functools.wraps(view)
    def checked(request, *args, **kwargs):
        if not staff_of(request.user).is_system_admin:
            return _forbidden(request)
        return view(request, *args, **kwargs)
    return admin.site.admin_view(checked)


@dataclass(frozen=True)
class Viewer:
    """Whose dashboard a page shows: every district (a system admin: ``district_id`` None)
    or one district, read-only (a district admin)."""

    district_id: int | None

    @property
    def read_only(self) -> bool:
        return self.district_id is not None


def jobs_viewer_required(view):
    """For the pages that only show: the admin site's gate, then system admins (every
    district) or district admins (their own, read-only; ``Staff.jobs_read_only_district``);
    anyone else gets the 403 page. The view receives the ``viewer``; a lookup it cannot see
    raises Http404, shown as the dashboard's 404 page."""
    @functools.wraps(view)
    def checked(request, *args, **kwargs):
        staff = staff_of(request.user)
        if not staff.may_watch_jobs:
            return _forbidden(request)
        try:
            return view(request, *args, viewer=Viewer(staff.jobs_read_only_district), **kwargs)
        except Http404 as exc:
            return _not_found(request, exc)
    return admin.site.admin_view(checked)


# -- lookups -------------------------------------------------------------------------------------
def _schedule_or_404(pk: int, viewer: Viewer | None = None) -> JobSchedule:
    qs = JobSchedule.objects.select_related("district", "q_schedule", "paused_by", "last_run").filter(pk=pk)
    if viewer is not None and viewer.read_only:
        qs = qs.filter(district_id=viewer.district_id)
    schedule = qs.first()
    if schedule is None:
        raise Http404("No such schedule.")
    return schedule


def _run_or_404(pk: int, viewer: Viewer | None = None) -> JobRun:
    qs = JobRun.objects.select_related("district", "triggered_by").filter(pk=pk)
    if viewer is not None and viewer.read_only:
        qs = qs.filter(district_id=viewer.district_id)
    run = qs.first()
    if run is None:
        raise Http404("No such run.")
    return run


def _job_title(slug: str) -> str:
    job = registry.find(slug)
    return job.title if job is not None else slug


def _expected(slug: str):
    job = registry.find(slug)
    return job.expected_duration if job is not None else None


def _progress_unit(slug: str) -> str:
    job = registry.find(slug)
    return job.progress_unit if job is not None else "items"


def _schedule_title(schedule: JobSchedule) -> str:
    where = schedule.district.name if schedule.district_id else "global"
    return f"{_job_title(schedule.job)} — {where}"


def _back(request, schedule: JobSchedule) -> str:
    """Back to where the action was clicked: the dashboard or the schedule's page."""
    if request.POST.get("next") == "index":
        return reverse("admin:scheduled_jobs") + f"#job-{schedule.job}"
    return reverse("admin:scheduled_jobs_schedule", args=[schedule.pk])


# -- pages ---------------------------------------------------------------------------------------
HOLD_ACTIONS = (("release", "Release and send", "default"), ("discard", "Discard (send none)", ""))


@jobs_viewer_required
def index(request, *, viewer: Viewer):
    if viewer.read_only:
        return _district_index(request, viewer)
    return _index(request)


def _district_index(request, viewer: Viewer):
    """A district admin's read-only view of their district: every schedule of it (a district
    has one per job, so no row limit; ``?job=<slug>`` as for system admins), the last run's
    status and failures, its held runs without the release and discard forms, its missing
    calendar. No system tiles: the scheduler and the queue are the system admins' to watch.
    A fixed number of queries however many runs the district has."""
    now = timezone.now()
    job = (request.GET.get("job") or "").strip()[:100] or None
    jobs = pages.job_lines(now=now, job=job, limit=None, district_id=viewer.district_id)
    holds = [{
        "hold": h, "title": blast_radius.job_title(h.run.job),
        "audiences": [(a, n, (h.baseline or {}).get(a)) for a, n in h.counts.items()],
    } for h in blast_radius.undecided_holds().filter(run__district_id=viewer.district_id)]
    name = next((r.district_name for j in jobs for r in j.rows), None)
    if name is None:
        name = District.objects.filter(pk=viewer.district_id).values_list("name", flat=True).first()
    rows = [r for j in jobs for r in j.rows]
    district = {
        "name": name, "schedules": len(rows), "failing": sum(j.failing for j in jobs), "held": len(holds),
        "paused": sum(j.paused for j in jobs), "overdue": sum(j.overdue for j in jobs),
        "runs_30d": sum(j.runs_30d for j in jobs),
    }
    return render(request, "scheduling/dashboard/index.html", _context(
        request, title=f"Scheduled jobs — {name}", now=now, read_only=True, district=district, jobs=jobs,
        missing_calendars=[m for m in calendar_policy.missing_calendars(now=now) if m.district_id == viewer.district_id],
        job_filter=job, district_filter="", holds=holds,
    ))


def _index(request, *, hold_forms: dict | None = None, status_code: int = 200):
    """All jobs (``?job=<slug>``: one job, every district; ``?district=<text>``: districts
    whose name contains it). Unknown filters show an empty list, never an error. Held runs
    (the blast-radius guard) come first, each with its release and discard forms."""
    now = timezone.now()
    job = (request.GET.get("job") or "").strip()[:100] or None
    district = (request.GET.get("district") or "")[:100]
    hold_forms = hold_forms or {}
    holds = [{
        "hold": h, "title": blast_radius.job_title(h.run.job), "form": hold_forms.get(h.pk) or HoldDecisionForm(),
        "audiences": [(a, n, (h.baseline or {}).get(a)) for a, n in h.counts.items()],
    } for h in blast_radius.undecided_holds()]
    return render(request, "scheduling/dashboard/index.html", _context(
        request, title="Scheduled jobs", now=now, system=status.system_status(now=now),
        jobs=pages.job_lines(now=now, job=job, district=district, limit=None if job else pages.ROWS_PER_JOB),
        missing_calendars=calendar_policy.missing_calendars(now=now),
        job_filter=job, district_filter=district, holds=holds, hold_actions=HOLD_ACTIONS,
    ), status=status_code)


def _schedule_page(request, schedule: JobSchedule, *, pause_form=None, status_code=200, read_only=False):
    runs = selectors.run_history(job_slug=schedule.job, district_id=schedule.district_id, limit=25)
    changes = schedule.changes.select_related("acting_user").order_by("-at", "-id")[:50]
    q = schedule.q_schedule
    return render(request, "scheduling/dashboard/schedule.html", _context(
        request, title=_schedule_title(schedule), schedule=schedule, tz_name=schedule.zone_name,
        job=registry.find(schedule.job), words=cron.describe(schedule.cron) if schedule.cron else "ad hoc (run on demand)",
        next_run=q.next_run if (q is not None and not schedule.paused and q.repeats != 0) else None,
        upcoming=pages.upcoming_runs(schedule, now=timezone.now()),
        runs=list(runs), changes=[(c, pages.change_diff(c.before, c.after, zone=schedule.zone_name)) for c in changes],
        chart=duration_chart(selectors.recent_durations(job_slug=schedule.job, district_id=schedule.district_id),
                             expected=_expected(schedule.job), zone=schedule.zone_name),
        pause_form=pause_form or PauseForm(), read_only=read_only,
    ), status=status_code)


@jobs_viewer_required
def schedule_detail(request, pk: int, *, viewer: Viewer):
    return _schedule_page(request, _schedule_or_404(pk, viewer), read_only=viewer.read_only)


@system_admin_required
def edit_cron(request, pk: int):
    schedule = _schedule_or_404(pk)
    if schedule.removed_at:
        messages.error(request, "This schedule was deleted; its cron cannot change.")
        return redirect("admin:scheduled_jobs_schedule", pk=pk)
    preview, code = None, 200
    if request.method != "POST":
        form = CronForm(initial={"cron": schedule.cron})
        if schedule.cron:
            preview = cron_preview(schedule.cron, schedule.zone_name, skips=pages.calendar_skips_of(schedule))
    elif not (form := CronForm(request.POST)).is_valid():
        code = 400
    elif "_preview" in request.POST:
        preview = cron_preview(form.cleaned_data["cron"], schedule.zone_name, skips=pages.calendar_skips_of(schedule))
    else:
        try:
            services.edit_cron(schedule=schedule, acting_user=request.user, cron_expr=form.cleaned_data["cron"])
        except (services.ScheduleError, registry.UnknownJob) as exc:
            form.add_error("cron", str(exc))
            code = 400
        else:
            messages.success(request, f"Cron of {_schedule_title(schedule)} is now {form.cleaned_data['cron']!r}.")
            return redirect("admin:scheduled_jobs_schedule", pk=pk)
    return render(request, "scheduling/dashboard/edit_cron.html", _context(
        request, title=f"Edit the cron of {_schedule_title(schedule)}", schedule=schedule,
        tz_name=schedule.zone_name, form=form, preview=preview,
    ), status=code)


@system_admin_required
@require_GET
def preview(request, pk: int):
    """The preview fragment (HTML) the edit page's script fetches as the cron is typed."""
    schedule = _schedule_or_404(pk)
    result = cron_preview((request.GET.get("cron") or "")[:100], schedule.zone_name,
                          skips=pages.calendar_skips_of(schedule))
    return render(request, "scheduling/dashboard/_preview.html", {"preview": result},
                  status=400 if result.error else 200)


@system_admin_required
def delete(request, pk: int):
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
        request, title=f"Delete {_schedule_title(schedule)}?", schedule=schedule,
        run_count=JobRun.objects.filter(job=schedule.job, district_id=schedule.district_id).count(),
    ))


@jobs_viewer_required
def run_detail(request, pk: int, *, viewer: Viewer):
    run = _run_or_404(pk, viewer)
    return render(request, "scheduling/dashboard/run.html", _context(
        request, title=f"Run #{run.pk} — {_job_title(run.job)}", run=run, tz_name=run.zone_name,
        schedule=JobSchedule.objects.filter(job=run.job, district_id=run.district_id).only("id").first(),
        progress=pages.run_progress(run), finished=run.status in JobRun.FINISHED,
        can_retry=run.status in services.RETRYABLE and not viewer.read_only, read_only=viewer.read_only,
        hold=RunHold.objects.filter(run=run).select_related("decided_by").first(),
        where=run.district.name if run.district_id else "global",
        # The summary in the job's words and the log in the district's time (scheduling/summaries.py).
        figures=summary_figures(registry.find(run.job), run.result, zone=run.zone_name),
        log_lines=log_lines(run.log, zone=run.zone_name), progress_unit=_progress_unit(run.job),
        chart=duration_chart(selectors.recent_durations(job_slug=run.job, district_id=run.district_id),
                             current_run_id=run.pk, expected=_expected(run.job), zone=run.zone_name),
    ))


@jobs_viewer_required
@require_GET
def run_progress(request, pk: int, *, viewer: Viewer):
    """JSON the run page polls while the run is queued or running."""
    run = _run_or_404(pk, viewer)
    return JsonResponse({
        "id": run.pk, "status": run.status, "status_label": run.get_status_display(),
        "finished": run.status in JobRun.FINISHED, **pages.run_progress(run), "unit": _progress_unit(run.job),
    })


# -- actions (POST) ------------------------------------------------------------------------------
@system_admin_required
@require_POST
def run_now(request, pk: int):
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


@system_admin_required
@require_POST
def pause(request, pk: int):
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


@system_admin_required
@require_POST
def resume(request, pk: int):
    schedule = _schedule_or_404(pk)
    try:
        schedule = services.resume_schedule(schedule=schedule, acting_user=request.user)
    except (services.ScheduleError, registry.UnknownJob) as exc:
        messages.error(request, str(exc))
    else:
        q = schedule.q_schedule
        when = f"; next run {local_text(q.next_run, schedule.zone_name)}" if q is not None and q.next_run else ""
        messages.success(request, f"Resumed {_schedule_title(schedule)}{when}.")
    return redirect(_back(request, schedule))


@system_admin_required
@require_POST
def retry(request, pk: int):
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


@system_admin_required
@require_POST
def hold_decide(request, pk: int, decision: str):
    """Release or discard a held run's messages (a note is required; both audited)."""
    hold = RunHold.objects.select_related("run").filter(pk=pk).first()
    if hold is None or decision not in ("release", "discard"):
        raise Http404("No such hold.")
    form = HoldDecisionForm(request.POST)
    if not form.is_valid():
        return _index(request, hold_forms={hold.pk: form}, status_code=400)
    act = blast_radius.hold_release if decision == "release" else blast_radius.hold_discard
    try:
        hold = act(hold=hold, acting_user=request.user, note=form.cleaned_data["note"])
    except blast_radius.HoldError as exc:
        messages.error(request, str(exc))
        return redirect("admin:scheduled_jobs")
    except services.QueueUnavailable as exc:  # released; the approved retry waits for the queue
        messages.warning(request, str(exc))
        return redirect("admin:scheduled_jobs")
    verb = "released: they go out through the outbox" if decision == "release" else "discarded: none will be sent"
    messages.success(request, f"Run #{hold.run_id}: {hold.messages_affected} held message(s) {verb}.")
    return redirect("admin:scheduled_jobs")
