"""Admin for districts, schools, staff and the student record.

Thin by design: what a counselor or coordinator filters and searches by, scoped through
skillcore.admin.ScopedAdmin (rows, objects, choices) and, for student data, logged on the
FERPA trail through StudentRecordAdmin. Changelists select their related rows up front
(``list_select_related``) so the query count does not grow with the rows shown.
"""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter as RelatedOnly
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from django.utils.html import format_html

from scheduling.models import RolloverRequest, UserLifecycleChange
from scheduling.templatetags.times_and_durations import local_text
from skillcore.admin import CappedCountPaginator, IdsFirstPaginator, ReadOnlyMixin
from skillcore.models import AccessLog
from students import scoping
from students.models import (
    AcademicSession,
    Assignment,
    AttendanceRecord,
    BehaviorIncident,
    CalendarDay,
    DeviceToken,
    District,
    Grade,
    GuardianLink,
    Role,
    School,
    Section,
    SectionEnrollment,
    StaffProfile,
    Student,
    Submission,
)
from students.overview import person_name, student_overview
from students.roles import staff_of
from students.scoped_admin import (
    ScopedAdmin,
    ScopedTabularInline,
    StudentRecordAdmin,
    grade_filter,
    grade_label,
    related_only,
    school_filter,
    staff_filter,
)
from students.zones import usable_zones

# ---- districts ---------------------------------------------------------------------------------


class OffsetsField(forms.CharField):
    """IEP reminder offsets typed as "90, 60, 30, 14, 7, 0" and stored as a list of days."""

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return []
        items = [v for v in re.split(r"[\s,;]+", value.strip("[] ")) if v]
        out = []
        for item in items:
            if not re.fullmatch(r"\d{1,3}", item):
                raise forms.ValidationError(f"“{item}” is not a whole number of days; write e.g. 90, 60, 30, 14, 7, 0.")
            out.append(int(item))
        return out


class DistrictForm(forms.ModelForm):
    """How the settings are typed; their rules are District's (validators, clean())."""

    # A list of IANA names rather than free text: a typo cannot reach the scheduler. The
    # choices are the model's rule (students.zones); the model's validator refuses the rest.
    time_zone = forms.ChoiceField(choices=[(z, z) for z in sorted(usable_zones())])
    iep_reminder_offsets = OffsetsField(help_text="Days before the annual review is due, e.g. 90, 60, 30, 14, 7, 0.")

    class Meta:
        model = District
        fields = "__all__"


@admin.register(District)
class DistrictAdmin(ScopedAdmin):
    form = DistrictForm
    list_display = ["name", "state", "time_zone", "chronic_absence_threshold", "min_enrolled_days", "notify_window_start", "notify_window_end"]
    list_filter = ["state", "time_zone"]
    search_fields = ["name"]
    filter_horizontal = ["emergency_test_group"]
    fieldsets = [
        (None, {"fields": ["name", "state", "time_zone", "it_contact_email"]}),
        ("Scheduled jobs", {"fields": ["chronic_absence_threshold", "min_enrolled_days", "iep_reminder_offsets", "meeting_notice_lead_days"]}),
        ("Family messages", {"fields": ["notify_window_start", "notify_window_end", "emergency_test_group"]}),
    ]

    # Creating or removing a district is a system admin's job; district admins edit theirs.
    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(School)
class SchoolAdmin(ScopedAdmin):
    # feeds_into: the school the rollover enrols this school's top grade in next year; its
    # choices are the user's schools (ScopedAdmin), School.clean() keeps it in the district
    # and on the next grade.
    list_display = ["name", "code", "district", "lowest_grade", "highest_grade", "feeds_into"]
    list_filter = [("district", RelatedOnly)]
    list_select_related = ["district", "feeds_into"]
    search_fields = ["name", "code"]


@admin.register(AcademicSession)
class AcademicSessionAdmin(ScopedAdmin):
    list_display = ["name", "district", "start_date", "end_date", "is_current"]
    list_filter = ["is_current", ("district", RelatedOnly)]
    list_select_related = ["district"]
    search_fields = ["name"]
    date_hierarchy = "start_date"


@admin.register(CalendarDay)
class CalendarDayAdmin(ScopedAdmin):
    list_display = ["date", "school", "is_instructional", "note"]
    list_filter = ["is_instructional", school_filter("school")]
    list_select_related = ["school"]
    search_fields = ["note", "school__name"]
    date_hierarchy = "date"


class StaffProfileForm(forms.ModelForm):
    class Meta:
        model = StaffProfile
        fields = "__all__"

    def clean(self):
        data = super().clean()
        try:
            StaffProfile.validate_schools(district=data.get("district"), schools=data.get("schools"))
        except ValidationError as exc:
            self.add_error(None, exc)
        return data


@admin.register(StaffProfile)
class StaffProfileAdmin(ScopedAdmin):
    form = StaffProfileForm
    list_display = ["user", "title", "district", "flagged_for_review_at"]
    list_filter = [("district", RelatedOnly), ("schools", RelatedOnly)]
    list_select_related = ["user", "district"]
    search_fields = ["user__username", "user__last_name", "user__first_name", "title"]
    filter_horizontal = ["schools"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            # Staff accounts that have no profile yet, or whose profile is in this district.
            from django.contrib.auth import get_user_model
            from django.db.models import Q

            s = scoping.staff_of(request.user)
            qs = get_user_model().objects.filter(is_staff=True)
            if not s.is_system_admin:
                qs = qs.filter(Q(staff_profile__isnull=True) | Q(staff_profile__district_id=s.district_id))
            kwargs["queryset"] = qs
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


# ---- the student record --------------------------------------------------------------------------


class GuardianLinkInline(ScopedTabularInline):
    """The student's guardians, edited in place; a new link is added on the guardian-link page
    (the guardian is picked there by id), so each row shows its guardian without a lookup."""

    model = GuardianLink
    fk_name = "student"
    fields = ["guardian_name", "relationship", "is_custodial", "access_revoked", "access_revoked_note", "is_dependent_claim",
              "preferred_language"]
    readonly_fields = ["guardian_name"]
    select_related = ("guardian", "student")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Guardian")
    def guardian_name(self, obj):
        # By name, as staff know them; the username (a generated login) only when no name is on file.
        return person_name(obj.guardian.first_name, obj.guardian.last_name, obj.guardian.username) if obj.pk else "-"


@admin.register(Student)
class StudentAdmin(StudentRecordAdmin):
    """The student list and page. The page opens with the student overview (students/overview.py:
    attendance, interventions, IEP/504, recent grades, guardians, as far as the viewer's role may
    see them), read inside the page's access trail. People show by name everywhere: the
    counselor in the list, the filter and the form's choices, guardians in the inline."""

    student_path = ""
    list_display = ["last_name", "first_name", "local_id", "school", "grade", "is_active", "counselor_name"]
    list_display_links = ["last_name", "first_name"]
    list_filter = [
        school_filter("school"), grade_filter(), "is_active", staff_filter("counselor", Role.COUNSELOR, "counselor"),
        "directory_opt_out",
    ]
    list_select_related = ["school", "counselor"]
    change_form_template = "admin/students/student/change_form.html"

    @admin.display(description="Grade", ordering="grade_level")
    def grade(self, obj):
        return grade_label(obj.grade_level)

    @admin.display(description="Counselor", ordering="counselor__last_name")
    def counselor_name(self, obj):
        c = obj.counselor
        return person_name(c.first_name, c.last_name, c.username) if c else "-"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "counselor" and field is not None:
            field.label_from_instance = lambda u: person_name(u.first_name, u.last_name, u.username)
        return field

    def get_queryset(self, request):
        # The overview reads the district's zone: fetched with the student, not one more query.
        return super().get_queryset(request).select_related("school__district")

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Rendered inside changeform_view, so inside the page's access trail (StudentRecordAdmin).
        if obj is not None and obj.pk:
            context["overview"] = student_overview(user=request.user, student=obj, now=timezone.now())
        return super().render_change_form(request, context, add, change, form_url, obj)
    search_fields = ["last_name", "first_name", "=local_id"]
    raw_id_fields = ["user"]
    person_roles = {"counselor": (Role.COUNSELOR,), "user": (Role.STUDENT,)}
    inlines = [GuardianLinkInline]
    fieldsets = [
        (None, {"fields": ["school", "local_id", "first_name", "last_name", "grade_level", "birth_date", "counselor", "user"]}),
        ("Enrollment", {"fields": ["enrollment_date", "exit_date", "is_active", "graduated_on", "transferred_on", "archived_at"]}),
        ("Privacy", {"fields": ["directory_opt_out", "consents_to_guardian_access"]}),
    ]


@admin.register(GuardianLink)
class GuardianLinkAdmin(StudentRecordAdmin):
    list_display = ["guardian_name", "student", "relationship", "is_custodial", "access_revoked", "preferred_language"]
    list_filter = ["relationship", "is_custodial", "access_revoked", "preferred_language"]
    list_select_related = ["guardian", "student"]
    search_fields = ["guardian__last_name", "guardian__email", "student__last_name", "=student__local_id"]
    autocomplete_fields = ["student"]
    raw_id_fields = ["guardian"]
    person_roles = {"guardian": (Role.GUARDIAN,)}

    @admin.display(description="Guardian", ordering="guardian__last_name")
    def guardian_name(self, obj):
        return person_name(obj.guardian.first_name, obj.guardian.last_name, obj.guardian.username)


@admin.register(DeviceToken)
class DeviceTokenAdmin(ScopedAdmin):
    list_display = ["user", "platform", "is_active", "created_at", "last_seen_at", "token_tail"]
    list_filter = ["platform", "is_active"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    date_hierarchy = "created_at"
    raw_id_fields = ["user"]

    @admin.display(description="Token")
    def token_tail(self, obj):
        # The token is a credential for pushing to someone's phone: show its end only.
        return f"…{obj.token[-8:]}"

    def get_fields(self, request, obj=None):
        return ["user", "platform", "is_active", "last_seen_at"] + (["token"] if obj is None else [])


# ---- classes, grades, attendance, behaviour ----------------------------------------------------------


@admin.register(Section)
class SectionAdmin(ScopedAdmin):
    list_display = ["course_name", "period", "school", "session", "teacher"]
    # No teacher filter: a district has thousands of teachers (a sidebar of 2,000 names cost half
    # the page); find a teacher's sections by searching their name.
    list_filter = [school_filter("school"), ("session", related_only("district"))]
    list_select_related = ["school", "session__district", "teacher"]
    search_fields = ["course_name", "teacher__last_name"]
    person_roles = {"teacher": (Role.TEACHER,)}


@admin.register(SectionEnrollment)
class SectionEnrollmentAdmin(StudentRecordAdmin):
    # A big table: capped counts, no second full count.
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_display = ["student", "section", "start_date", "end_date", "notifications_muted"]
    list_filter = ["notifications_muted", school_filter("section__school")]
    list_select_related = ["student", "section"]
    search_fields = ["student__last_name", "=student__local_id", "section__course_name"]
    autocomplete_fields = ["student", "section"]


class AssignmentForm(forms.ModelForm):
    class Meta:
        model = Assignment
        fields = "__all__"


@admin.register(Assignment)
class AssignmentAdmin(ScopedAdmin):
    form = AssignmentForm
    list_display = ["title", "section", "status", "due_date", "max_score", "is_major"]
    list_filter = ["status", "is_major", school_filter("section__school")]
    list_select_related = ["section"]
    search_fields = ["title", "section__course_name"]
    autocomplete_fields = ["section"]
    date_hierarchy = "due_date"


@admin.register(Submission)
class SubmissionAdmin(StudentRecordAdmin):
    # A big table: capped counts, no second full count.
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_display = ["student", "assignment", "submitted_at", "is_exempt"]
    list_filter = ["is_exempt", school_filter("assignment__section__school"), "submitted_at"]
    list_select_related = ["student", "assignment"]
    search_fields = ["student__last_name", "=student__local_id", "assignment__title"]
    autocomplete_fields = ["student", "assignment"]


@admin.register(Grade)
class GradeAdmin(StudentRecordAdmin):
    # A big table: capped counts, no second full count.
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_display = ["student", "assignment", "score", "max_score", "posted_at"]
    list_filter = [school_filter("assignment__section__school"), "assignment__is_major", "posted_at"]
    list_select_related = ["student", "assignment"]
    search_fields = ["student__last_name", "=student__local_id", "assignment__title"]
    autocomplete_fields = ["student", "assignment"]

    @admin.display(description="Out of", ordering="assignment__max_score")
    def max_score(self, obj):
        return obj.assignment.max_score


@admin.register(AttendanceRecord)
class AttendanceRecordAdmin(StudentRecordAdmin):
    # A big table: capped counts, no second full count; pages read ids first (see get_queryset).
    paginator = IdsFirstPaginator
    show_full_result_count = False
    # Up to this many students in scope, their ids are written into the query (below).
    inline_student_ids = 5_000
    list_display = ["student", "date", "status", "fraction_present", "school", "recorded_at"]
    list_filter = ["status", school_filter("student__school"), "date"]
    # Newest school days first, through attendance_date_id_idx. Ordering by id made PostgreSQL walk
    # the id index back through the whole table looking for one school's rows when that school's
    # rows were old (2-10 s per page at 50,000 students; bench/load.py).
    ordering = ["-date", "-id"]
    list_select_related = ["student__school"]
    search_fields = ["student__last_name", "student__first_name", "=student__local_id"]
    autocomplete_fields = ["student"]
    # By date through the date filter (today, past 7 days, this month, this year), not
    # date_hierarchy: its MIN/MAX and DISTINCT months scan the whole scope (9 million rows
    # for a 50,000-student year) on every unfiltered page.

    @admin.display(description="School", ordering="student__school__name")
    def school(self, obj):
        return obj.student.school

    def scope(self, request):
        """For a school's or a teacher's staff, the scope stated as the ids of its students.

        The same rows: attendance's scope is its students' (``student_q(user, "student")``),
        and the ids are read with that very rule. But with ids rather than a join on the
        student's school, PostgreSQL pages through attendance_date_id_idx (date, id,
        student_id) and rejects other schools' rows inside the index, reading only the page's
        rows from the table: a principal's page 267 -> 40 ms at 50,000 students. District-wide
        roles (tens of thousands of students) keep the join."""
        s = scoping.staff_of(request.user)
        if s.is_system_admin or s.has(Role.DISTRICT_ADMIN, Role.SPED_COORDINATOR):
            return super().scope(request)
        limit = self.inline_student_ids
        ids = list(scoping.scoped(request.user, Student).order_by().values_list("pk", flat=True)[: limit + 1])
        return Q(student_id__in=ids) if len(ids) <= limit else super().scope(request)


@admin.register(BehaviorIncident)
class BehaviorIncidentAdmin(StudentRecordAdmin):
    # A big table: capped counts, no second full count.
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_display = ["student", "occurred_at", "category", "severity", "reported_by"]
    list_filter = ["severity", "category", school_filter("student__school")]
    list_select_related = ["student", "reported_by"]
    search_fields = ["student__last_name", "=student__local_id", "category", "description"]
    autocomplete_fields = ["student"]
    date_hierarchy = "occurred_at"


# -- what the year-end and cleanup jobs record: rollover requests (two system admins), the
# inactive-user audit --------------------------------------------------------------------------


class RolloverRequestForm(forms.ModelForm):
    class Meta:
        model = RolloverRequest
        fields = ("district", "to_name", "start_date", "end_date", "run_at")
        help_texts = {"run_at": "The district's local time (its own time zone). Empty: as soon as it is approved."}

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
        if data.get("run_at") is not None:
            data["run_at"] = self._in_district_time(data["run_at"], data["district"])
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

    @staticmethod
    def _in_district_time(value, district):
        """The clock time typed, read in the district's zone: the field arrives in the site's
        zone (UTC), and "18:00" for a New York district meant 18:00 New York, not 13:00.
        A time the district's clocks skip (the spring DST gap) is refused, not moved; in the
        repeated autumn hour the first 01:30 is taken."""
        zone = zoneinfo.ZoneInfo(district.time_zone)
        wall = timezone.localtime(value).replace(tzinfo=None)
        local = wall.replace(tzinfo=zone)
        if local.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != wall:
            raise forms.ValidationError({"run_at": f"{wall:%Y-%m-%d %H:%M} does not exist in {district.time_zone} "
                                                   f"(the clocks skip it for daylight saving time): choose another time."})
        return local


@admin.register(RolloverRequest)
class RolloverRequestAdmin(admin.ModelAdmin):
    """System admins only (model permissions: superusers). One asks, another approves:
    approval creates the one-off schedule that runs the rollover at ``run_at``."""

    form = RolloverRequestForm
    list_display = ("district", "to_name", "start_date", "end_date", "runs_at", "status", "requested_by", "approved_by", "steps")
    list_filter = ("status",)
    list_select_related = ("district", "requested_by", "approved_by")
    actions = ["approve_and_schedule", "cancel"]

    @admin.display(description="runs at (district time)", ordering="run_at")
    def runs_at(self, obj):
        return local_text(obj.run_at, obj.district.time_zone) or "when approved"

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
                when = local_text(req.run_at, req.district.time_zone)
                self.message_user(request, f"{req.district}: rollover to {req.to_name} scheduled for {when}.")

    @admin.action(description="Cancel (before it runs)")
    def cancel(self, request, queryset):
        from django_q.models import Schedule

        pending = queryset.filter(status__in=[RolloverRequest.Status.PENDING, RolloverRequest.Status.SCHEDULED])
        Schedule.objects.filter(pk__in=pending.exclude(q_schedule=None).values("q_schedule")).delete()
        n = pending.update(status=RolloverRequest.Status.CANCELLED)
        self.message_user(request, f"{n} rollover request(s) cancelled.")


@admin.register(UserLifecycleChange)
class UserLifecycleChangeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """inactive-user-cleanup's audit: system admins see every district's, district admins their own."""

    list_display = ("at", "district", "action", "rule", "user", "student", "duties", "actor_label", "job_run_id")
    list_filter = ("action", "rule")
    date_hierarchy = "at"
    list_select_related = ("district", "user", "student")
    readonly_fields = ("at", "district", "action", "rule", "user", "student", "before", "after", "job_run_id", "actor_label")

    @admin.display(description="current duties (reassign before deactivating)")
    def duties(self, obj):
        return "; ".join(obj.after.get("duties", []))

    def _district_id(self, request):
        from students.models import Role

        s = staff_of(request.user)
        if s.is_system_admin:
            return "all"
        return s.district_id if s.has(Role.DISTRICT_ADMIN) else None

    def has_module_permission(self, request):
        return self._district_id(request) is not None

    def has_view_permission(self, request, obj=None):
        scope = self._district_id(request)
        return scope is not None and (obj is None or scope == "all" or obj.district_id == scope)

    def get_queryset(self, request):
        scope = self._district_id(request)
        qs = super().get_queryset(request)
        return qs if scope == "all" else qs.filter(district_id=scope) if scope else qs.none()


# -- the FERPA access trail, as staff may see it (students.scoping.access_log_q) -------------------
class TrailTableFilter(admin.SimpleListFilter):
    """The table a row touched, by its name in words. Fixed choices (the project's models):
    the default filter would read the distinct values of an ever-growing log on every page."""

    title = "record"
    parameter_name = "model"

    def lookups(self, request, model_admin):
        from django.apps import apps

        # The records of students and what is sent about them, and the reports that name them.
        domain = {"students", "interventions", "iep", "notifications"}
        labels = [m._meta.label for m in apps.get_models() if m._meta.app_label in domain] + ["scheduling.Report"]
        return sorted(((label, AccessLog.model_text(label)) for label in labels), key=lambda choice: choice[1])

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value()) if self.value() else queryset


class WhenFilter(admin.DateFieldListFilter):
    """The date filter over ``at``, titled for people ("By when", not "By at")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.title = "when"


class AccessLogChangeList(ChangeList):
    """Reads the student numbers of a page's rows in one query (never one per row): the trail
    stores database ids, people know a student by the district's number."""

    def get_results(self, request):
        super().get_results(request)
        self.model_admin.attach_student_numbers(request, self.result_list)


@admin.register(AccessLog)
class AccessLogAdmin(ReadOnlyMixin, ScopedAdmin):
    """The FERPA access trail: read-only for everyone, superusers included (PostgreSQL also refuses writes).

    Shown in words: the record's name ("Guardian link"), the purpose ("Admin: student page"),
    the time in the viewer's district zone with its offset (UTC on hover), and the district's
    student numbers of the students a row touched. Searching a student number (``100428``)
    finds the rows that touched that student; ``student:<id>`` still takes the database id.
    Reading the numbers reads the student table, so a page that shows them is on the trail
    like every student-record page.
    """

    list_display = ["when", "who", "operation", "record", "purpose_words", "row_count", "student_numbers"]
    # No actor filter: its choices would be every distinct actor in an ever-growing log (or
    # every staff member); an auditor finds a person's actions by searching their username.
    list_filter = ["operation", TrailTableFilter, ("at", WhenFilter)]
    search_fields = ["actor_label", "purpose", "model", "recipient"]
    search_help_text = "A username, a purpose, or a student number (e.g. 100428); student:<id> for a database id."
    date_hierarchy = "at"
    show_full_result_count = False  # the log grows without bound; an exact count is a full scan
    readonly_fields = [
        "when", "actor", "actor_label", "job_run_id", "purpose_words", "record", "operation", "query_count",
        "row_count", "student_count", "student_numbers", "student_ids_display", "recipient",
    ]
    fields = readonly_fields
    actions = None

    def get_changelist(self, request, **kwargs):
        return AccessLogChangeList

    # -- how a row reads ------------------------------------------------------------------------
    def zone_name(self, request) -> str:
        """The viewer's district zone (system admins without a district: the global jobs' zone)."""
        cache = request.__dict__
        if "_skillcore_trail_zone" not in cache:
            from django.conf import settings

            district_id = staff_of(request.user).district_id
            name = District.objects.filter(pk=district_id).values_list("time_zone", flat=True).first() if district_id else None
            cache["_skillcore_trail_zone"] = name or settings.SCHEDULING_GLOBAL_TIME_ZONE
        return cache["_skillcore_trail_zone"]

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        self.attach_student_numbers(request, [obj])
        return obj

    @admin.display(description="When (local)", ordering="at")
    def when(self, obj):
        from scheduling.templatetags.times_and_durations import local_text, utc_text

        zone = getattr(obj, "shown_zone", None)
        if zone is None:
            return utc_text(obj.at)
        return format_html('<span title="{}">{}</span>', utc_text(obj.at), local_text(obj.at, zone))

    @admin.display(description="Who", ordering="actor_label")
    def who(self, obj):
        return f"{obj.actor_label} (run {obj.job_run_id})" if obj.job_run_id and str(obj.job_run_id) not in obj.actor_label else obj.actor_label

    @admin.display(description="Record", ordering="model")
    def record(self, obj):
        return AccessLog.model_text(obj.model)

    @admin.display(description="Purpose", ordering="purpose")
    def purpose_words(self, obj):
        return AccessLog.purpose_text(obj.purpose)

    @admin.display(description="Students")
    def student_numbers(self, obj):
        numbers = getattr(obj, "shown_student_numbers", None)
        if numbers is None:
            return "-"
        shown = numbers[:8]
        more = f" and {len(numbers) - len(shown)} more" if len(numbers) > len(shown) else ""
        return (", ".join(shown) + more) or "-"

    @admin.display(description="Student database ids")
    def student_ids_display(self, obj):
        return format_html("<code>{}</code>", ", ".join(str(i) for i in obj.student_ids) or "-")

    def attach_student_numbers(self, request, rows) -> None:
        """Each row's ``shown_student_numbers``: the district numbers of the students it touched that
        the viewer may see (one query for the page, on the trail); a student outside the viewer's
        scope, or since deleted, shows as ``#<id>``. And the zone its time is shown in."""
        from skillcore.access import access_trail

        zone = self.zone_name(request)

        ids = {i for row in rows for i in (row.student_ids or [])}
        numbers = {}
        if ids:
            with access_trail(actor=request.user, purpose="admin: changelist skillcore.accesslog"):
                numbers = dict(
                    scoping.scoped(request.user, Student).filter(pk__in=ids).order_by().values_list("id", "local_id")  # "id": the trail reads the ids by name
                )
        for row in rows:
            row.shown_student_numbers = [numbers.get(i, f"#{i}") for i in (row.student_ids or [])]
            row.shown_zone = zone

    def get_search_results(self, request, queryset, search_term):
        # "student:123" finds the rows that touched that student (JSON containment on PostgreSQL,
        # a text match on the JSON elsewhere); a bare number also finds the rows that touched
        # the student with that district number (in the viewer's scope).
        term = search_term.strip()
        if term.startswith("student:") and term[8:].strip().isdigit():
            return queryset.filter(self._touched([int(term[8:].strip())])), False
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if term and " " not in term:
            from skillcore.access import access_trail

            with access_trail(actor=request.user, purpose="admin: changelist skillcore.accesslog"):
                ids = list(scoping.scoped(request.user, Student).filter(local_id=term).values_list("id", flat=True)[:50])
            if ids:
                results = results | queryset.filter(self._touched(ids))
        return results, may_have_duplicates

    @staticmethod
    def _touched(ids) -> Q:
        from django.db import connection

        q = Q()
        for sid in ids:
            if connection.vendor == "postgresql":
                q |= Q(student_ids__contains=[sid])
            else:
                q |= Q(student_ids__regex=rf"[\[ ,]{sid}[,\]]")
        return q
