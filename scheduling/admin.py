"""Minimal, read-only admin views of the engine's data. Changes go through the dashboard
(/admin/scheduled-jobs/) or ``manage.py jobs``, which call scheduling.services (audit rows)."""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import admin
from django.utils import timezone

from scheduling import cron, selectors
from scheduling.models import JobRun, JobSchedule, ScheduleChange, SchedulerHeartbeat


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(JobSchedule)
class JobScheduleAdmin(ReadOnlyAdmin):
    list_display = ("job", "district", "cron", "in_words", "next_run_local", "paused", "pause_note", "overdue", "last_run_status")
    list_filter = ("job", "paused")
    search_fields = ("job", "district__name")

    def get_queryset(self, request):
        return selectors.schedules_with_figures(include_removed=True)

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

    @admin.display(description="last status")
    def last_run_status(self, obj):
        return obj.last_run_status or "-"


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "job", "district", "trigger", "slot", "status", "attempt", "started_at", "duration_seconds", "triggered_by")
    list_filter = ("status", "trigger", "job")
    search_fields = ("job", "district__name", "task_id")
    date_hierarchy = "slot"
    list_select_related = ("district", "triggered_by")
    raw_id_fields = ("retry_of",)


@admin.register(ScheduleChange)
class ScheduleChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_label", "action", "schedule")
    list_filter = ("action",)
    list_select_related = ("schedule", "schedule__district")


@admin.register(SchedulerHeartbeat)
class SchedulerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("name", "last_beat", "passes")
