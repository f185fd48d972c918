"""Admin for incidents and alert deliveries: read-only history, system admins only, and one
action (send failed deliveries again). Registered from scheduling/admin.py."""
from __future__ import annotations

from django.contrib import admin, messages

from scheduling.monitoring import alerting
from scheduling.models import AlertDelivery, Incident
from skillcore.admin import ReadOnlyMixin
from students.roles import has_role


class _SystemAdminReadOnly(ReadOnlyMixin, admin.ModelAdmin):
    def has_module_permission(self, request):
        return has_role(request.user, "system-admin")

    def has_view_permission(self, request, obj=None):
        return has_role(request.user, "system-admin")


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
