"""Admin for IEPs and Section 504 plans.

Who sees an IEP is narrower than who sees the student (students.scoping.iep_q): the team,
the case manager, the school's principal and the district's coordinators. Team, services
and meetings are edited inline on the IEP; a meeting's minutes inline on the meeting;
accommodations inline on the 504 plan.
"""
from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter as RelatedOnly
from django.utils import timezone

from iep.models import (
    IEP,
    Accommodation,
    IEPMeeting,
    IEPMeetingMinutes,
    IEPService,
    IEPTeamMember,
    Section504Plan,
    ServiceLog,
)
from skillcore.admin import CappedCountPaginator
from students.models import Role
from students.scoped_admin import ScopedTabularInline, StudentRecordAdmin, school_filter

SPED_STAFF = (Role.CASE_MANAGER, Role.SPED_COORDINATOR, Role.TEACHER, Role.PRINCIPAL, Role.COUNSELOR, Role.DISTRICT_ADMIN)


class ReviewDueFilter(admin.SimpleListFilter):
    """What a coordinator asks first: which annual reviews are overdue or coming up."""

    title = "annual review"
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("30", "Due within 30 days"), ("90", "Due within 90 days")]

    def queryset(self, request, queryset):
        today = timezone.localdate()
        if self.value() == "overdue":
            return queryset.filter(next_review_due__lt=today)
        if self.value() in ("30", "90"):
            return queryset.filter(next_review_due__gte=today, next_review_due__lte=today + dt.timedelta(days=int(self.value())))
        return queryset


class TeamInline(ScopedTabularInline):
    model = IEPTeamMember
    fields = ["user", "role"]
    person_roles = {"user": SPED_STAFF}
    select_related = ("user",)


class ServiceInline(ScopedTabularInline):
    model = IEPService
    fields = ["name", "minutes_per_month", "provider"]
    person_roles = {"provider": SPED_STAFF}
    select_related = ("provider",)


class MeetingInline(ScopedTabularInline):
    model = IEPMeeting
    fields = ["purpose", "status", "scheduled_for", "location", "guardian_notice_sent_on", "notice_flagged_late"]
    readonly_fields = ["guardian_notice_sent_on"]


@admin.register(IEP)
class IEPAdmin(StudentRecordAdmin):
    list_display = ["student", "school", "status", "next_review_due", "last_annual_review", "case_manager", "disability_category"]
    list_filter = [ReviewDueFilter, "status", school_filter("student__school"), ("case_manager", RelatedOnly), "disability_category"]
    list_select_related = ["student__school", "case_manager"]
    search_fields = ["student__last_name", "student__first_name", "=student__local_id"]
    autocomplete_fields = ["student"]
    date_hierarchy = "next_review_due"
    readonly_fields = [
        "next_review_due", "last_reminder_sent_at", "last_reminder_offset", "reminders_sent_count",
        "reevaluation_due", "last_reevaluation_reminder_sent_at", "last_reevaluation_reminder_offset",
    ]
    person_roles = {"case_manager": (Role.CASE_MANAGER, Role.SPED_COORDINATOR)}
    inlines = [TeamInline, ServiceInline, MeetingInline]

    @admin.display(description="School", ordering="student__school__name")
    def school(self, obj):
        return obj.student.school


@admin.register(IEPTeamMember)
class IEPTeamMemberAdmin(StudentRecordAdmin):
    student_path = "iep__student"
    list_display = ["user", "role", "iep"]
    list_filter = ["role", school_filter("iep__student__school")]
    list_select_related = ["user", "iep__student"]
    search_fields = ["user__last_name", "user__username", "iep__student__last_name", "=iep__student__local_id"]
    autocomplete_fields = ["iep"]
    person_roles = {"user": SPED_STAFF}


class MinutesFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        # The meeting form skipped its "held needs minutes" check (the minutes are saved after
        # it); this is that check, on the minutes submitted with it.
        if self.instance.status != IEPMeeting.Status.HELD:
            return
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if not kept:
            raise forms.ValidationError("A meeting is recorded as held only with its minutes.")


class MinutesInline(ScopedTabularInline):
    model = IEPMeetingMinutes
    formset = MinutesFormSet
    template = "admin/edit_inline/stacked.html"
    fields = ["attendees", "decisions", "next_steps", "author", "written_at"]
    person_roles = {"author": SPED_STAFF}
    max_num = 1
    can_delete = False


class MeetingForm(forms.ModelForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.minutes_checked_by_form = True  # MinutesFormSet.clean checks held meetings


@admin.register(IEPMeeting)
class IEPMeetingAdmin(StudentRecordAdmin):
    student_path = "iep__student"
    form = MeetingForm
    inlines = [MinutesInline]
    readonly_fields = ["guardian_notice_sent_on"]
    list_display = ["iep", "purpose", "status", "scheduled_for", "location", "guardian_notice_sent_on", "notice_flagged_late"]
    list_filter = ["purpose", "status", "notice_flagged_late", school_filter("iep__student__school")]
    list_select_related = ["iep__student"]
    search_fields = ["iep__student__last_name", "=iep__student__local_id"]
    autocomplete_fields = ["iep"]
    date_hierarchy = "scheduled_for"


@admin.register(IEPService)
class IEPServiceAdmin(StudentRecordAdmin):
    student_path = "iep__student"
    list_display = ["name", "minutes_per_month", "iep", "provider"]
    list_filter = [("provider", RelatedOnly), school_filter("iep__student__school")]
    list_select_related = ["iep__student", "provider"]
    search_fields = ["name", "iep__student__last_name", "=iep__student__local_id"]
    autocomplete_fields = ["iep"]
    person_roles = {"provider": SPED_STAFF}


@admin.register(ServiceLog)
class ServiceLogAdmin(StudentRecordAdmin):
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_display = ["student", "service", "delivered_on", "minutes", "provider"]
    list_filter = [("provider", RelatedOnly), school_filter("student__school")]
    list_select_related = ["student", "service", "provider"]
    search_fields = ["student__last_name", "=student__local_id", "service__name"]
    autocomplete_fields = ["service", "student"]
    date_hierarchy = "delivered_on"
    person_roles = {"provider": SPED_STAFF}


class AccommodationInline(ScopedTabularInline):
    model = Accommodation
    fields = ["description", "implementers"]
    person_roles = {"implementers": SPED_STAFF}


@admin.register(Section504Plan)
class Section504PlanAdmin(StudentRecordAdmin):
    list_display = ["student", "school", "status", "start_date", "next_review_due", "coordinator"]
    list_filter = ["status", school_filter("student__school"), ("coordinator", RelatedOnly)]
    list_select_related = ["student__school", "coordinator"]
    search_fields = ["student__last_name", "student__first_name", "=student__local_id"]
    autocomplete_fields = ["student"]
    date_hierarchy = "next_review_due"
    person_roles = {"coordinator": (Role.COUNSELOR, Role.SPED_COORDINATOR, Role.PRINCIPAL, Role.CASE_MANAGER)}
    inlines = [AccommodationInline]

    @admin.display(description="School", ordering="student__school__name")
    def school(self, obj):
        return obj.student.school


@admin.register(Accommodation)
class AccommodationAdmin(StudentRecordAdmin):
    student_path = "plan__student"
    list_display = ["description", "plan"]
    list_filter = [school_filter("plan__student__school")]
    list_select_related = ["plan__student"]
    search_fields = ["description", "plan__student__last_name", "=plan__student__local_id"]
    autocomplete_fields = ["plan"]
    filter_horizontal = ["implementers"]
    person_roles = {"implementers": SPED_STAFF}
