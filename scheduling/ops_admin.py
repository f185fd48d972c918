"""Admin for the operational jobs (issue 6, jobs 5-8): emergency broadcasts (district
admins send them), rollover requests (two system admins) and the request metrics
(read-only). Thin: the forms validate, the services write."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from scheduling.emergency import emergency_broadcast_send
from scheduling.ops_models import EmergencyBroadcast, RequestMetric, RolloverRequest  # noqa: F401
from students.models import District, Role
from students.scoping import staff_of


def _may_broadcast(user) -> bool:
    s = staff_of(user)
    return s.is_system_admin or (s.has(Role.DISTRICT_ADMIN) and s.district_id is not None)


class EmergencyBroadcastForm(forms.ModelForm):
    class Meta:
        model = EmergencyBroadcast
        fields = ("district", "scenario", "message")
        widgets = {"message": forms.Textarea(attrs={"rows": 4, "maxlength": 1000})}

    def clean_message(self):
        text = (self.cleaned_data.get("message") or "").strip()
        if not text:
            raise forms.ValidationError("Write the message families and staff will read.")
        return text


@admin.register(EmergencyBroadcast)
class EmergencyBroadcastAdmin(admin.ModelAdmin):
    """Send a real emergency message: every family and staff member of the district, email
    and push, at once (quiet hours and preferences do not apply). District admins send for
    their own district; system admins for any."""

    form = EmergencyBroadcastForm
    list_display = ("created_at", "district", "scenario", "actor_label", "recipients")
    list_filter = ("scenario",)
    readonly_fields = ("sent_by", "actor_label", "created_at", "counts")
    list_select_related = ("district",)

    @admin.display(description="recipients")
    def recipients(self, obj):
        return (obj.counts or {}).get("recipients", "")

    def has_module_permission(self, request):
        return _may_broadcast(request.user)

    def has_view_permission(self, request, obj=None):
        return _may_broadcast(request.user)

    def has_add_permission(self, request):
        return _may_broadcast(request.user)

    def has_change_permission(self, request, obj=None):
        return False  # a sent message cannot be unsent

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        s = staff_of(request.user)
        return qs if s.is_system_admin else qs.filter(district_id=s.district_id)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "district":
            s = staff_of(request.user)
            kwargs["queryset"] = District.objects.all() if s.is_system_admin else District.objects.filter(pk=s.district_id)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        now = timezone.now()
        obj.sent_by = request.user
        obj.actor_label = f"admin {request.user.get_username()}"[:150]
        obj.created_at = now
        obj.save()
        emergency_broadcast_send(district=obj.district, scenario=obj.scenario, message=obj.message,
                                 sent_by=request.user, actor_label=obj.actor_label, now=now, broadcast=obj)
        messages.success(request, f"Emergency message queued for {obj.counts.get('recipients', 0)} people "
                                  f"({obj.counts.get('inserted', 0)} messages).")
