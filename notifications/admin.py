"""Admin for notifications.

NotificationPreference is scoped like the rest of the staff admin (a district admin sees
the preferences of their district's people). The outbox, digests and deliveries are
registered below by the notifications work.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin

from notifications.models import Category, NotificationPreference
from skillcore.admin import ScopedAdmin


class NotificationPreferenceForm(forms.ModelForm):
    class Meta:
        model = NotificationPreference
        fields = "__all__"

    def clean(self):
        data = super().clean()
        if data.get("low_grade_threshold") is not None and data.get("category") != Category.GRADE_DIGEST:
            self.add_error("low_grade_threshold", "A low-grade threshold applies to the grade digest only.")
        return data


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(ScopedAdmin):
    form = NotificationPreferenceForm
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
