"""Minimal, read-only admin views of the engine's data. Changes go through the dashboard
(/admin/scheduled-jobs/) or ``manage.py jobs``, which call scheduling.services (audit rows)."""
from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import F
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from scheduling import (
    cron,
    queue_admin,  # noqa: F401  (registers django-q2's models, narrowed)
    registry,
    selectors,
    summaries,
)
from scheduling import reports as report_lib
from scheduling.models import (
    AlertDelivery,
    BlastRadiusLimit,
    Incident,
    JobRun,
    JobSchedule,
    Report,
    RunHold,
    ScheduleChange,
    SchedulerHeartbeat,
)
from scheduling.monitoring import alerting
from skillcore.access import access_trail, render_now
from skillcore.admin import ReadOnlyMixin, SystemAdminsOnly
from skillcore.csv_export import neutralized_csv
from students.roles import has_role


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    pass


@admin.register(JobSchedule)
class JobScheduleAdmin(ReadOnlyAdmin):
    list_display = ("job", "district", "cron", "in_words", "next_run_local", "paused", "pause_note", "overdue")
    list_filter = ("job", "paused")
    search_fields = ("job", "district__name")

    list_select_related = ("district", "q_schedule")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(next_run=F("q_schedule__next_run"))

    @admin.display(description="schedule")
    def in_words(self, obj):
        return cron.describe(obj.cron) if obj.cron else "ad hoc"

    @admin.display(description="next run (local)")
    def next_run_local(self, obj):
        local = selectors.next_run_local(obj)
        return local.isoformat() if local else "-"

    @admin.display(boolean=True, description="overdue")
    def overdue(self, obj):
        cutoff = timezone.now() - dt.timedelta(seconds=settings.SCHEDULING_OVERDUE_GRACE)
        return bool(not obj.paused and obj.next_run and obj.next_run < cutoff)


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "district", "trigger", "slot", "status", "attempt", "started_at", "duration_seconds", "triggered_by")
    list_filter = ("status", "trigger", "job")
    search_fields = ("job", "district__name", "task_id")
    date_hierarchy = "slot"
    list_select_related = ("district", "triggered_by")
    raw_id_fields = ("retry_of",)
    # The summary in the job's words (scheduling/summaries.py), not the stored JSON's keys.
    exclude = ("result",)
    readonly_fields = ("summary",)

    @admin.display(description="result")
    def summary(self, obj):
        figures = summaries.figures(registry.find(obj.job), obj.result, zone=obj.zone_name)
        return format_html_join(mark_safe("<br>"), "{}: {}", ((f.label, f.value) for f in figures)) or "—"


@admin.register(ScheduleChange)
class ScheduleChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_label", "action", "schedule")
    list_filter = ("action",)
    list_select_related = ("schedule", "schedule__district")


@admin.register(SchedulerHeartbeat)
class SchedulerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("name", "last_beat", "passes")


# -- stored reports (weekly analytics, compliance audit, system health) -------------------------



@admin.register(Report)
class ReportAdmin(ReadOnlyAdmin):
    """Read-only. Principals see their schools' reports, district admins their district's,
    system admins all (scheduling.reports.reports_visible_to). "View" serves the stored,
    printable HTML as it was written; "CSV" downloads the figures (and any export file)."""

    # Few, short columns beside the title (which names the kind and the school or district),
    # so a list holds at 1280 px beside the filter sidebar (templates/admin/scheduling/report/).
    list_display = ("title", "period", "updated", "links")
    list_filter = ("kind",)
    search_fields = ("title",)
    date_hierarchy = "period_start"
    fields = ("title", "kind", "district", "school", "period_start", "period_end", "content_hash", "evidence",
              "job_run_id", "created_at", "updated_at", "links")
    readonly_fields = fields

    def _may_read_reports(self, request) -> bool:
        from students.models import Role
        from students.roles import staff_of

        s = staff_of(request.user)
        return s.is_system_admin or (s.district_id is not None and s.has(Role.DISTRICT_ADMIN, Role.PRINCIPAL))

    def has_module_permission(self, request):
        return self._may_read_reports(request)

    def has_view_permission(self, request, obj=None):
        if not self._may_read_reports(request):
            return False
        return obj is None or report_lib.reports_visible_to(request.user).filter(pk=obj.pk).exists()

    def get_queryset(self, request):
        return report_lib.reports_visible_to(request.user).defer("html", "csv")

    def get_urls(self):
        own = [
            path("<int:pk>/view/", self.admin_site.admin_view(self.view_html), name="scheduling_report_view"),
            path("<int:pk>/csv/", self.admin_site.admin_view(self.download_csv), name="scheduling_report_csv"),
        ]
        return own + super().get_urls()

    @admin.display(description="period", ordering="period_start")
    def period(self, obj):
        start, end = obj.period_start, obj.period_end
        if start == end:
            return f"{end:%b} {end.day}, {end.year}"
        if (start.year, start.month) == (end.year, end.month):
            return f"{start:%b} {start.day} – {end.day}, {end.year}"
        if start.year == end.year:
            return f"{start:%b} {start.day} – {end:%b} {end.day}, {end.year}"
        return f"{start:%b} {start.day}, {start.year} – {end:%b} {end.day}, {end.year}"

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj):
        from scheduling.templatetags.times_and_durations import local_text, utc_text

        # The day in the list; the local time with its offset, and UTC, on hover.
        zone = obj.district.time_zone if obj.district_id else settings.SCHEDULING_GLOBAL_TIME_ZONE
        local = obj.updated_at.astimezone(cron.zone(zone))
        return format_html('<span title="{} · {}">{} {}, {}</span>', local_text(obj.updated_at, zone),
                           utc_text(obj.updated_at), f"{local:%b}", local.day, local.year)

    @admin.display(description="files")
    def links(self, obj):
        files = [("CSV", reverse("admin:scheduling_report_csv", args=[obj.pk]))]
        files += [(name, reverse("admin:scheduling_report_csv", args=[obj.pk]) + f"?name={name}") for name in sorted(obj.extra_csv or {})]
        return format_html(
            '<a href="{}" target="_blank">View / print</a> · {}', reverse("admin:scheduling_report_view", args=[obj.pk]),
            format_html_join(" · ", '<a href="{}">{}</a>', ((url, label) for label, url in files)),
        )

    def _report(self, request, pk: int) -> Report:
        if not self._may_read_reports(request):
            raise Http404("no such report")
        return get_object_or_404(report_lib.reports_visible_to(request.user), pk=pk)

    def view_html(self, request, pk: int):
        report = self._report(request, pk)
        self._log_view(request, report, "view")
        response = HttpResponse(report.html, content_type="text/html; charset=utf-8")
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        return response

    def _log_view(self, request, report: Report, what: str) -> None:
        """A FERPA view row per opening: a compliance report names students (its evidence
        lists them); an aggregate report names none but its reading is still recorded."""
        self._log_reports(request, [report], f"admin: {what} report {report.kind}")

    @staticmethod
    def _log_reports(request, reports, purpose: str) -> None:
        from skillcore.models import AccessLog

        ids = sorted({i for r in reports for i in (r.evidence or {}).get("students_named", [])})
        AccessLog.objects.create(
            at=timezone.now(), actor=request.user, actor_label=request.user.get_username()[:150],
            purpose=purpose, model=Report._meta.label, operation=AccessLog.Operation.VIEW, query_count=0,
            row_count=len(reports), student_count=len(ids), student_ids=ids,
        )

    # The change page shows a report's evidence, whose ``students_named`` are student ids;
    # the list shows the reports that name them. Both are on the trail like every other
    # student-record page (students.scoped_admin.StudentRecordAdmin): the queries inside
    # ``access_trail`` and one "view" row naming the students of the reports shown.
    def changelist_view(self, request, extra_context=None):
        with access_trail(actor=request.user, purpose="admin: changelist scheduling.report"):
            response = render_now(super().changelist_view(request, extra_context))
            cl = (getattr(response, "context_data", None) or {}).get("cl")
            if response.status_code == 200 and cl is not None and request.method == "GET":
                self._log_reports(request, list(cl.result_list), "admin: changelist scheduling.report")
        return response

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        with access_trail(actor=request.user, purpose="admin: change scheduling.report"):
            response = render_now(super().changeform_view(request, object_id, form_url, extra_context))
            original = (getattr(response, "context_data", None) or {}).get("original")
            if object_id and original is not None and response.status_code == 200:
                self._log_view(request, original, "change")
        return response

    def download_csv(self, request, pk: int):
        report = self._report(request, pk)
        name = request.GET.get("name")
        if name:
            if name not in (report.extra_csv or {}):
                raise Http404("no such file in this report")
            text, filename = report.extra_csv[name], name
        else:
            text = report.csv
            filename = f"{report.kind}-{report.school.code if report.school_id else report.district_id or 'global'}-{report.period_start}.csv"
        self._log_view(request, report, f"download {name or 'csv'} of")
        # Re-checked on the way out: a file stored before cells were neutralized is served safe.
        response = HttpResponse(neutralized_csv(text), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


# -- incidents and alert deliveries: read-only history, system admins only, one action (send
# failed deliveries again) --------------------------------------------------------------------


class _SystemAdminReadOnly(SystemAdminsOnly, ReadOnlyMixin, admin.ModelAdmin):
    pass


@admin.register(Incident)
class IncidentAdmin(_SystemAdminReadOnly):
    list_display = ("opened_at", "severity", "kind", "job", "district", "occurrences", "resolved_at", "summary")
    list_filter = ("severity", "kind", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("job", "summary", "dedup_key")
    list_select_related = ("district",)
    readonly_fields = [f.name for f in Incident._meta.fields]
    date_hierarchy = None
    ordering = ("-opened_at", "-id")


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(_SystemAdminReadOnly):
    list_display = ("id", "created_at", "channel", "action", "status", "attempts", "next_attempt_at", "sent_at", "last_error")
    list_filter = ("channel", "status", "action")
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]
    actions = ["resend"]

    @admin.action(description="Send the selected failed deliveries again")
    def resend(self, request, queryset):
        count = alerting.deliveries_resend(ids=queryset.values_list("id", flat=True))
        self.message_user(request, f"{count} failed deliver{'y' if count == 1 else 'ies'} queued again; "
                                   "the next scheduler pass or `manage.py alerts deliver` sends them.", messages.SUCCESS)

    def get_actions(self, request):
        # Read-only admins hide actions without change permission; this one is the exception.
        actions = super().get_actions(request)
        if has_role(request.user, "system-admin"):
            actions.setdefault("resend", (AlertDeliveryAdmin.resend, "resend", AlertDeliveryAdmin.resend.short_description))
        return actions


# -- the blast-radius guard: a district's limits (editable), holds (read-only; decided on the dashboard) --
class BlastRadiusLimitForm(forms.ModelForm):
    """The job is picked from the registered jobs (never free text); empty: every job."""

    job = forms.ChoiceField(required=False, help_text="Empty: every job of the district (a job's own row wins).")

    class Meta:
        model = BlastRadiusLimit
        fields = ("district", "job", "multiplier", "floor", "cap")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["job"].choices = [("", "every job")] + [(j.slug, j.title) for j in registry.all_jobs()]


@admin.register(BlastRadiusLimit)
class BlastRadiusLimitAdmin(SystemAdminsOnly, admin.ModelAdmin):
    form = BlastRadiusLimitForm
    list_display = ("district", "job_label", "multiplier", "floor", "cap")
    list_select_related = ("district",)
    list_filter = ("district",)

    @admin.display(description="job")
    def job_label(self, obj):
        return obj.job or "every job"


@admin.register(RunHold)
class RunHoldAdmin(_SystemAdminReadOnly):
    list_display = ("held_at", "run", "reason", "decision", "decided_at", "actor_label", "messages_affected")
    list_filter = ("decision",)
    list_select_related = ("run",)
    readonly_fields = [f.name for f in RunHold._meta.fields]
    ordering = ("-held_at", "-id")
