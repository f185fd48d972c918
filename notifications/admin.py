"""Admin for notifications.

NotificationPreference is scoped like the rest of the staff admin (a district admin sees
the preferences of their district's people). The outbox, digests and deliveries are
registered below by the notifications work.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from notifications import selectors, services
from notifications.emergency import emergency_broadcast_send
from notifications.models import (
    DigestItem,
    Notification,
    NotificationPreference,
    RecipientProfile,
    Status,
    normalize_mobile_number,
)
from notifications.rendering import RenderError, render_email, render_push
from scheduling.models import EmergencyBroadcast
from skillcore.admin import ReadOnlyMixin
from students.models import District, Role
from students.roles import staff_of
from students.scoped_admin import ScopedAdmin, StudentRecordAdmin


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(ScopedAdmin):
    list_display = ["user", "category", "channel", "frequency", "low_grade_threshold"]
    list_filter = ["category", "channel", "frequency"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email", "user__last_name"]
    raw_id_fields = ["user"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            from django.contrib.auth import get_user_model

            from students import scoping

            kwargs["queryset"] = get_user_model().objects.filter(scoping.people_q(request.user))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


# --- the outbox (notifications work) ------------------------------------------------------



class StatusWithCountsFilter(admin.SimpleListFilter):
    """The status filter doubles as the counts by status ("Failed (3)"), one GROUP BY."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        counts = selectors.outbox_status_counts(model_admin.get_queryset(request))
        return [(s.value, f"{s.label} ({counts[s.value]})") for s in Status]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


class OutboxPermissionMixin(ReadOnlyMixin):
    """Only system and district admins see the outbox (it names families and students);
    a district admin sees their own district's rows. Nobody edits rows by hand."""

    def _allowed(self, request) -> bool:
        return selectors.may_view_outbox(request.user)

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request) and (obj is None or self._in_scope(request, obj))



@admin.register(Notification)
class NotificationAdmin(OutboxPermissionMixin, StudentRecordAdmin):
    list_display = ["id", "created_at", "recipient", "channel", "category", "status", "status_reason", "attempts", "send_after", "sent_at"]
    list_filter = [StatusWithCountsFilter, "channel", "category", "priority", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["dedupe_key", "=recipient__username", "recipient__email", "recipient__last_name", "template", "provider_message_id"]
    list_select_related = ["recipient"]
    show_full_result_count = False
    actions = ["resend_failed"]
    fields = readonly_fields = [
        "recipient", "channel", "category", "priority", "template", "language", "student", "dedupe_key",
        "status", "status_reason", "send_after", "attempts", "claimed_at", "claimed_by", "sent_at",
        "provider_message_id", "error", "job_run_id", "district", "quiet_hours", "created_at", "context", "preview",
    ]

    def get_queryset(self, request):
        return selectors.outbox_visible_to(request.user)

    def _in_scope(self, request, obj) -> bool:
        return selectors.outbox_visible_to(request.user).filter(pk=obj.pk).exists()

    def has_resend_permission(self, request):
        return self._allowed(request)

    @admin.display(description="Rendered preview")
    def preview(self, obj):
        try:
            if obj.channel == "email":
                r = render_email(obj)
                return format_html(
                    "<p><strong>Subject:</strong> {}</p><pre style='white-space: pre-wrap'>{}</pre>"
                    "<iframe sandbox srcdoc='{}' style='width: 100%; height: 320px; border: 1px solid #ccc'></iframe>",
                    r.subject, r.text, r.html,
                )
            r = render_push(obj)
            return format_html("<p><strong>{}</strong></p><p>{}</p>", r.push_title, r.push_body)
        except RenderError as exc:
            return format_html("<p class='errornote'>Cannot render: {}</p>", str(exc))

    @admin.action(description="Resend selected failed messages", permissions=["resend"])
    def resend_failed(self, request, queryset):
        n = services.notifications_resend(notification_ids=queryset.filter(status=Status.FAILED).values_list("id", flat=True))
        skipped = queryset.count() - n
        self.message_user(request, f"{n} failed message(s) queued again." + (f" {skipped} not failed, left alone." if skipped else ""))


@admin.register(DigestItem)
class DigestItemAdmin(OutboxPermissionMixin, StudentRecordAdmin):
    list_display = ["id", "recipient", "channel", "frequency", "period_start", "object_key", "event", "updated_at"]
    list_filter = ["frequency", "channel", "category"]
    search_fields = ["=recipient__username", "recipient__email", "object_key"]
    list_select_related = ["recipient"]
    actions = None

    def get_queryset(self, request):
        return selectors.digest_items_visible_to(request.user)

    def _in_scope(self, request, obj) -> bool:
        return selectors.digest_items_visible_to(request.user).filter(pk=obj.pk).exists()


class RecipientProfileForm(forms.ModelForm):
    # Wider than the stored E.164 (16): what people type carries spaces and brackets.
    mobile_number = forms.CharField(max_length=40, required=False,
                                    help_text=RecipientProfile._meta.get_field("mobile_number").help_text)

    class Meta:
        model = RecipientProfile
        fields = "__all__"

    def clean_mobile_number(self):
        # Before the model's E.164 validator sees it: "+1 (202) 555-0143" is a fine answer.
        return normalize_mobile_number(self.cleaned_data.get("mobile_number", ""))

    def clean(self):
        cleaned = super().clean()
        # Consent to texts was given for a number: a new number keeps no consent it never
        # gave. Without this, editing the number alone carried the old consent (and its date
        # and method, into the history) over to a number nobody asked about.
        if (self.instance.pk and self.instance.sms_consent_at and "mobile_number" in self.changed_data
                and cleaned.get("sms_consent_at") and "sms_consent_at" not in self.changed_data):
            self.add_error("sms_consent_at", "The consent on file was given for the old number: record when and how "
                                             "the new number's consent was given, or clear it.")
        return cleaned


@admin.register(RecipientProfile)
class RecipientProfileAdmin(admin.ModelAdmin):
    """Language, email health and the SMS channel. Staff reset a bounce here after a family
    fixes its address, and record a mobile number (E.164; anything else is a form error) and
    the family's consent to texts, when and how (a STOP reply shows as "opted out")."""

    list_display = ["user", "language", "email_status", "email_status_reason", "email_status_at", "mobile_number",
                    "sms_consent_method", "sms_opted_out_at"]
    form = RecipientProfileForm
    list_filter = ["email_status", "language", "sms_consent_method"]
    search_fields = ["=user__username", "user__email", "=mobile_number"]
    raw_id_fields = ["user"]
    readonly_fields = ["sms_consent_history"]

    def get_queryset(self, request):
        return selectors.recipient_profiles_visible_to(request.user)

    @admin.display(description="SMS consent history")
    def sms_consent_history(self, obj):
        if obj is None or obj.pk is None:
            return "–"
        rows = [(e.at.strftime("%Y-%m-%d %H:%M %Z"), e.get_action_display(), e.method, e.mobile_number)
                for e in obj.user.sms_consent_events.all()[:50]]
        if not rows:
            return "none recorded"
        return format_html_join("", "<div>{} · {} · {} · {}</div>", rows)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.sms_consent_at and {"sms_consent_at", "sms_consent_method", "mobile_number"} & set(form.changed_data):
            # Consent recorded (or re-recorded) by staff goes into the history like any other.
            services.sms_consent_history_add(user_id=obj.user_id, mobile_number=obj.mobile_number,
                                             method=obj.sms_consent_method, at=obj.sms_consent_at)

    def has_module_permission(self, request):
        return selectors.may_view_outbox(request.user)

    def has_view_permission(self, request, obj=None):
        return selectors.may_view_outbox(request.user) and (obj is None or self.get_queryset(request).filter(pk=obj.pk).exists())

    has_change_permission = has_view_permission

    def has_add_permission(self, request):
        return selectors.may_view_outbox(request.user)

    def has_delete_permission(self, request, obj=None):
        return False


# -- emergency broadcasts: district admins send them ------------------------------------------


def _may_broadcast(user) -> bool:
    s = staff_of(user)
    return s.is_system_admin or (s.has(Role.DISTRICT_ADMIN) and s.district_id is not None)


class EmergencyBroadcastForm(forms.ModelForm):
    class Meta:
        model = EmergencyBroadcast
        fields = ("district", "scenario", "message")
        widgets = {"message": forms.Textarea(attrs={"rows": 4, "maxlength": 1000})}
        help_texts = {"message": "Sent by email, push and SMS. A text carries the headline and the first "
                                 "320 characters or so: put what families must do first."}

    def clean_message(self):
        text = (self.cleaned_data.get("message") or "").strip()
        if not text:
            raise forms.ValidationError("Write the message families and staff will read.")
        return text


@admin.register(EmergencyBroadcast)
class EmergencyBroadcastAdmin(admin.ModelAdmin):
    """Send a real emergency message: every family and staff member of the district, email,
    push and SMS, at once (quiet hours and preferences do not apply). District admins send for
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
