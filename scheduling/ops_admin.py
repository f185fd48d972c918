"""Admin for the operational jobs (issue 6, jobs 5-8): emergency broadcasts (district
admins send them) and rollover requests (two system admins). Thin: the forms validate,
the services write. Request metrics are read through the system-health report."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from notifications.emergency import emergency_broadcast_send
from scheduling.models import EmergencyBroadcast, RolloverRequest
from students.models import District, Role
from students.roles import staff_of


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


class RolloverRequestForm(forms.ModelForm):
    class Meta:
        model = RolloverRequest
        fields = ("district", "to_name", "start_date", "end_date", "run_at")

    NEEDED = ("district", "to_name", "start_date", "end_date")

    def clean(self):
        from students import rollover

        data = super().clean()
        if self.instance.pk is not None:
            # The change page shows a filed request read-only (no fields to post); a POST to
            # it changes nothing and says so instead of validating fields it does not have.
            raise forms.ValidationError("A filed rollover request cannot be changed: approve or cancel it from the list.")
        if self.errors or any(data.get(name) in (None, "") for name in self.NEEDED):
            return data  # each missing or invalid field already carries its own error
        try:
            rollover.validate(district_id=data["district"].pk, to_name=data["to_name"], start=data["start_date"],
                              end=data["end_date"])
        except rollover.RolloverError as exc:
            text = str(exc)
            field = ("end_date" if "end date" in text else "to_name" if "named" in text
                     else "start_date" if ("overlaps" in text or "start after" in text) else "district")
            raise forms.ValidationError({field: text}) from None
        if RolloverRequest.objects.filter(district=data["district"], to_name=data["to_name"].strip()).exists():
            raise forms.ValidationError({"to_name": "A rollover to this year is already on file."})
        return data


@admin.register(RolloverRequest)
class RolloverRequestAdmin(admin.ModelAdmin):
    """System admins only (model permissions: superusers). One asks, another approves:
    approval creates the one-off schedule that runs the rollover at ``run_at``."""

    form = RolloverRequestForm
    list_display = ("district", "to_name", "start_date", "end_date", "run_at", "status", "requested_by", "approved_by", "steps")
    list_filter = ("status",)
    list_select_related = ("district", "requested_by", "approved_by")
    actions = ["approve_and_schedule", "cancel"]

    @admin.display(description="steps done")
    def steps(self, obj):
        return ", ".join(obj.steps_done) or "–"

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return [f.name for f in self.model._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        obj.requested_by = request.user
        obj.created_at = timezone.now()
        obj.status = RolloverRequest.Status.PENDING
        obj.closing_session = obj.district.sessions.filter(is_current=True).first()
        obj.save()

    @admin.action(description="Approve and schedule (a second system admin)")
    def approve_and_schedule(self, request, queryset):
        from students import rollover

        for req in queryset:
            try:
                req = rollover.request_approve(request=req, approver=request.user)
            except rollover.RolloverError as exc:
                self.message_user(request, f"{req}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{req.district}: rollover to {req.to_name} scheduled for {req.run_at:%Y-%m-%d %H:%M} UTC.")

    @admin.action(description="Cancel (before it runs)")
    def cancel(self, request, queryset):
        from django_q.models import Schedule

        pending = queryset.filter(status__in=[RolloverRequest.Status.PENDING, RolloverRequest.Status.SCHEDULED])
        Schedule.objects.filter(pk__in=pending.exclude(q_schedule=None).values("q_schedule")).delete()
        n = pending.update(status=RolloverRequest.Status.CANCELLED)
        self.message_user(request, f"{n} rollover request(s) cancelled.")
