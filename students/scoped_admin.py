"""The base of every admin page over student records: role-scoped, and on the FERPA trail.

``ScopedAdmin`` applies students.scoping to everything admin shows or accepts: the
changelist, the change page (an out-of-scope object is a 404, never the data), the
permission checks, foreign-key and many-to-many choices (a counselor cannot pick a
student of another school, even by POSTing an id) and the filters' choices.

``StudentRecordAdmin`` adds the FERPA trail: its views run inside
``skillcore.access.access_trail``, which records every query on student-data tables, and
each changelist or change page also writes one ``operation="view"`` row naming exactly the
students whose rows were shown. Why both: the automatic rows say what the database read
(including counts and filter choices, and nothing at all for tables that hold no student id
column, such as IEP team members); the view row says what a person saw.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteMixin
from django.contrib.auth import get_user_model
from django.http import Http404
from django.utils import timezone

from skillcore.access import access_trail, render_now
from skillcore.models import AccessLog
from students import scoping
from students.models import Role

User = get_user_model()


CHOICE_RELATED = {
    "students.academicsession": ("district",),
    "iep.iep": ("student",),
    "iep.section504plan": ("student",),
    "interventions.intervention": ("student",),
}


class ScopedFormfieldsMixin:
    """Foreign-key and many-to-many choices limited to what the requesting user may see.

    ``person_roles`` maps a user field to the roles its choices come from (staff of the
    user's district); ``Role.GUARDIAN`` / ``Role.STUDENT`` pick family accounts instead.
    """

    person_roles: dict[str, tuple[str, ...]] = {}

    def scoped_choices(self, db_field, request):
        related = db_field.related_model
        if related is User:
            roles = tuple(str(r) for r in self.person_roles.get(db_field.name, ()))
            if roles and roles[0] in (Role.GUARDIAN, Role.STUDENT):
                return scoping.role_user_choices(request.user, roles[0])
            return scoping.user_choices(request.user, roles)
        if related._meta.label_lower in scoping.SCOPES:
            # Choices whose __str__ reads a related row fetch it in the same query.
            return scoping.scoped(request.user, related).select_related(*CHOICE_RELATED.get(related._meta.label_lower, ()))
        return None

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            qs = self.scoped_choices(db_field, request)
            if qs is not None:
                kwargs["queryset"] = qs
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            qs = self.scoped_choices(db_field, request)
            if qs is not None:
                kwargs["queryset"] = qs
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def related_only(*select_related: str):
    """RelatedOnlyFieldListFilter whose choices are fetched with ``select_related`` (their
    ``__str__`` reads a related row, e.g. a session names its district): one query, not one per choice."""

    class Filter(admin.RelatedOnlyFieldListFilter):
        def field_choices(self, field, request, model_admin):
            pks = model_admin.get_queryset(request).distinct().values_list(f"{self.field_path}__pk", flat=True)
            qs = field.related_model._default_manager.filter(pk__in=pks).select_related(*select_related)
            ordering = self.field_admin_ordering(field, request, model_admin)
            return [(obj.pk, str(obj)) for obj in (qs.order_by(*ordering) if ordering else qs)]

    return Filter


def school_filter(path: str):
    """A "school" filter over ``path`` (e.g. "assignment__section__school") whose choices are the
    schools the user may see: one query on the small school table, where
    RelatedOnlyFieldListFilter would scan every row of a large table for the distinct schools."""

    class SchoolFilter(admin.SimpleListFilter):
        title = "school"
        parameter_name = "school"

        def lookups(self, request, model_admin):
            from students.models import School

            return [(str(pk), name) for pk, name in scoping.scoped(request.user, School).values_list("pk", "name")]

        def queryset(self, request, queryset):
            value = self.value()
            if value and value.isdigit():
                return queryset.filter(**{f"{path}_id": int(value)})
            return queryset

    return SchoolFilter


def grade_label(grade: int | None) -> str:
    return {-1: "Pre-K", 0: "Kindergarten"}.get(grade, f"Grade {grade}") if grade is not None else "-"


def grade_filter(path: str = "grade_level"):
    """The grade levels the user's schools teach (a high school's staff see 9 to 12, not pre-K
    to 12; the chosen school's only, once one is picked in the school filter): one query on the
    small school table. Django's default filter for a plain integer field runs SELECT DISTINCT
    over the whole scope (50,000 students) on every page."""

    class GradeFilter(admin.SimpleListFilter):
        title = "grade level"
        parameter_name = path

        def lookups(self, request, model_admin):
            from students.models import School

            schools = scoping.scoped(request.user, School)
            chosen = request.GET.get("school", "")
            if chosen.isdigit():
                schools = schools.filter(pk=int(chosen))
            taught = {g for low, high in schools.values_list("lowest_grade", "highest_grade") for g in range(low, high + 1)}
            return [(str(g), grade_label(g)) for g in sorted(taught)]

        def queryset(self, request, queryset):
            value = self.value()
            if value and value.lstrip("-").isdigit():
                return queryset.filter(**{path: int(value)})
            return queryset

    return GradeFilter


def staff_filter(path: str, role: str, title: str):
    """A filter over a staff-member field (a student's counselor) whose choices are the staff
    with ``role`` of the user's district, or of their schools for school-based roles: a query on
    the staff tables, where RelatedOnlyFieldListFilter scans every row of the scope for the
    distinct people (15 ms a page at 50,000 students)."""

    class StaffFilter(admin.SimpleListFilter):
        parameter_name = f"{path}__id__exact"

        def lookups(self, request, model_admin):
            people = scoping.user_choices(request.user, [role])
            s = scoping.staff_of(request.user)
            if not s.is_system_admin and not s.has(Role.DISTRICT_ADMIN, Role.SPED_COORDINATOR):
                people = people.filter(staff_profile__schools__in=s.school_ids).distinct()
            return [(str(u.pk), u.get_full_name() or u.get_username()) for u in people.only("pk", "username", "first_name", "last_name")]

        def queryset(self, request, queryset):
            value = self.value()
            if value and value.isdigit():
                return queryset.filter(**{f"{path}_id": int(value)})
            return queryset

    StaffFilter.title = title
    return StaffFilter


class ScopedAdmin(ScopedFormfieldsMixin, admin.ModelAdmin):
    """A model admin whose rows, objects and choices are limited by students.scoping."""

    # Rendering the rows is most of a changelist's cost (bench/pages.py: 60 of 110 ms for 100
    # students); 50 rows a page, and no second COUNT of the unfiltered scope for "N total".
    list_per_page = 50
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(self.scope(request))

    def scope(self, request):
        """The ``Q`` of the rows this user may see here (students.scoping's rule for the model)."""
        return scoping.scope_q(request.user, self.model)

    def get_object(self, request, object_id, from_field=None):
        # Django would redirect to the index with "doesn't exist"; a plain 404 says no more.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with this id is visible to you.")
        return obj

    def _in_scope(self, request, obj) -> bool:
        # Several permission checks run per page; one query per object and request.
        cache = request.__dict__.setdefault("_skillcore_in_scope", {})
        key = (self.opts.label_lower, obj.pk)
        if key not in cache:
            cache[key] = self.model._default_manager.filter(scoping.scope_q(request.user, self.model), pk=obj.pk).exists()
        return cache[key]

    def has_module_permission(self, request):
        return scoping.is_staff_member(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return (
            scoping.is_staff_member(request.user)
            and super().has_view_permission(request, obj)
            and (obj is None or self._in_scope(request, obj))
        )

    def has_add_permission(self, request):
        return scoping.is_staff_member(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return (
            scoping.is_staff_member(request.user)
            and super().has_change_permission(request, obj)
            and (obj is None or self._in_scope(request, obj))
        )

    def has_delete_permission(self, request, obj=None):
        return (
            scoping.is_staff_member(request.user)
            and super().has_delete_permission(request, obj)
            and (obj is None or self._in_scope(request, obj))
        )


class ScopedTabularInline(ScopedFormfieldsMixin, admin.TabularInline):
    """Rows come through the (already scoped) parent; the choices still need scoping.

    A select in every row of an inline would run its choices query once per row (an IEP
    team of eight: eight identical user lists), so the choices are read once per field and
    request and every row's select reuses them. Submitted values are still validated
    against the scoped queryset.
    """

    extra = 0
    # Related rows each row's title (its __str__) reads, fetched with the rows.
    select_related: tuple[str, ...] = ()

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs.select_related(*self.select_related) if self.select_related else qs

    def _cached_choices(self, db_field, request, field):
        widget = getattr(field, "widget", None)
        widget = getattr(widget, "widget", widget)  # inside RelatedFieldWidgetWrapper
        # Plain selects only: autocomplete and raw-id widgets read the queryset themselves.
        if field is None or not isinstance(widget, forms.Select) or isinstance(widget, AutocompleteMixin):
            return field
        cache = request.__dict__.setdefault("_skillcore_inline_choices", {})
        key = (self.model._meta.label_lower, db_field.name)
        if key not in cache:
            cache[key] = list(field.choices)
        field.choices = cache[key]
        return field

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return self._cached_choices(db_field, request, super().formfield_for_foreignkey(db_field, request, **kwargs))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return self._cached_choices(db_field, request, super().formfield_for_manytomany(db_field, request, **kwargs))

    def has_view_permission(self, request, obj=None):
        return scoping.is_staff_member(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, obj=None):
        return scoping.is_staff_member(request.user) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return scoping.is_staff_member(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return scoping.is_staff_member(request.user) and super().has_delete_permission(request, obj)


def student_id_of(obj, path: str):
    """The student id of ``obj`` along ``path`` ("" for a Student, "iep__student" for a team member)."""
    if not path:
        return obj.pk
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop)
        if obj is None:
            return None
    return getattr(obj, f"{last}_id")


class StudentRecordAdmin(ScopedAdmin):
    """Admin for a model that holds student records: scoped, and every view is on the FERPA trail."""

    # How this model reaches the student; the hops before it are always select_related so
    # the view row costs no query.
    student_path = "student"

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        hops = self.student_path.split("__")[:-1]
        # Selected here rather than only through list_select_related (which ChangeList skips
        # once anything is selected) so change pages and autocomplete results get them too.
        related = (["__".join(hops)] if hops else []) + list(
            self.list_select_related if isinstance(self.list_select_related, (list, tuple)) else []
        )
        return qs.select_related(*related) if related else qs

    def _trail(self, request, view: str):
        return access_trail(actor=request.user, purpose=f"admin: {view} {self.opts.label_lower}")

    def _log_view(self, request, view: str, objs) -> None:
        ids = sorted({i for i in (student_id_of(o, self.student_path) for o in objs) if i is not None})
        AccessLog.objects.create(
            at=timezone.now(), actor=request.user, actor_label=request.user.get_username()[:150],
            purpose=f"admin: {view} {self.opts.label_lower}", model=self.opts.label,
            operation=AccessLog.Operation.VIEW, query_count=0, row_count=len(objs),
            student_count=len(ids), student_ids=ids,
        )

    def changelist_view(self, request, extra_context=None):
        with self._trail(request, "changelist"):
            response = render_now(super().changelist_view(request, extra_context))
            cl = (getattr(response, "context_data", None) or {}).get("cl")
            if response.status_code == 200 and cl is not None and request.method == "GET":
                self._log_view(request, "changelist", list(cl.result_list))
        return response

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        view = "change" if object_id else "add"
        with self._trail(request, view):
            response = render_now(super().changeform_view(request, object_id, form_url, extra_context))
            original = (getattr(response, "context_data", None) or {}).get("original")
            if object_id and original is not None and response.status_code == 200:
                self._log_view(request, view, [original])
        return response

    def delete_view(self, request, object_id, extra_context=None):
        with self._trail(request, "delete"):
            return render_now(super().delete_view(request, object_id, extra_context))

    def history_view(self, request, object_id, extra_context=None):
        with self._trail(request, "history"):
            return render_now(super().history_view(request, object_id, extra_context))


