"""Admin for interventions and counselors' tasks: scoped to the staff member's students, on the FERPA trail."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter as RelatedOnly

from interventions.models import CounselorTask, Intervention, StudentAnalytics
from skillcore.admin import ReadOnlyMixin
from students.models import Role
from students.scoped_admin import StudentRecordAdmin, school_filter


class ReadyToReviewFilter(admin.SimpleListFilter):
    """Active attendance interventions the job marked: the student has recovered over the
    last 30 instructional days and the counselor may review (and close) them."""

    title = "ready to review"
    parameter_name = "ready_to_review"
    field = "ready_to_review_since"

    def lookups(self, request, model_admin):
        return [("yes", "Ready to review"), ("no", "Not ready")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == "no"})
        return queryset


class TaskReadyToReviewFilter(ReadyToReviewFilter):
    field = "intervention__ready_to_review_since"


@admin.register(Intervention)
class InterventionAdmin(StudentRecordAdmin):
    list_display = ["student", "school", "type", "tier", "status", "opened_at", "closed_at", "ready_to_review_since",
                    "owner"]
    list_filter = ["type", "tier", "status", ReadyToReviewFilter, school_filter("student__school"), ("owner", RelatedOnly)]
    list_select_related = ["student__school", "owner"]
    search_fields = ["student__last_name", "student__first_name", "=student__local_id", "reason"]
    autocomplete_fields = ["student", "escalated_from"]
    date_hierarchy = "opened_at"
    person_roles = {"owner": (Role.COUNSELOR, Role.PRINCIPAL, Role.TEACHER, Role.CASE_MANAGER)}

    @admin.display(description="School", ordering="student__school__name")
    def school(self, obj):
        return obj.student.school


@admin.register(CounselorTask)
class CounselorTaskAdmin(StudentRecordAdmin):
    list_display = ["student", "kind", "status", "ready_to_review", "due_date", "counselor", "created_at"]
    list_filter = ["kind", "status", TaskReadyToReviewFilter, ("counselor", RelatedOnly), school_filter("student__school")]
    list_select_related = ["student", "counselor", "intervention"]
    search_fields = ["student__last_name", "=student__local_id", "note"]
    autocomplete_fields = ["student", "intervention"]
    date_hierarchy = "due_date"
    person_roles = {"counselor": (Role.COUNSELOR,)}

    @admin.display(description="Ready to review since", ordering="intervention__ready_to_review_since")
    def ready_to_review(self, obj):
        # On the priority list: the intervention's student has recovered (set by attendance-interventions).
        return obj.intervention.ready_to_review_since if obj.intervention else None




@admin.register(StudentAnalytics)
class StudentAnalyticsAdmin(ReadOnlyMixin, StudentRecordAdmin):
    """performance-trends' weekly rows: read-only, scoped like the student record, on the FERPA trail.
    (Read-only: the interventions admin proper stays the counselors' working screen.)"""

    list_display = ("student", "week_start", "grade_pct", "grade_trend", "attendance_pct", "attendance_trend",
                    "completion_pct", "completion_trend", "incidents", "incidents_trend", "alerted")
    list_filter = ("week_start", "grade_trend", "attendance_trend", "alerted")
    search_fields = ("student__last_name", "student__first_name", "student__local_id")
    list_select_related = ("student",)
    readonly_fields = [f.name for f in StudentAnalytics._meta.fields]
