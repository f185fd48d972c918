"""The SkillCore admin site: Django's, with three rules added for a site full of student records.

1. Only staff members get in. ``is_staff`` alone is not enough: a guardian or student
   account that was given ``is_staff`` by mistake, or staff without a role or a
   StaffProfile, gets the login page's "not authorized", never an (empty) admin.
2. The autocomplete endpoint (student names for a foreign-key search box) runs inside the
   FERPA access trail, like every other admin view that reads student records.
3. The login is locked against password guessing by django-axes (skillcore/login_lockout.py,
   settings AXES_*): repeated failures for one username from one address lock further
   attempts for a while (429); the site itself needs no override for it.
4. The scheduled-jobs dashboard is listed inside the "Scheduling" section (the scheduling
   app's models: reports, runs, schedules), for the users its views admit (system admins;
   district admins, who see their own district's schedules and runs read-only), so the
   index has one Scheduling section rather than a dashboard box above the app list.
5. A refused page (``PermissionDenied`` anywhere: a teacher opening Reports, a counselor
   opening the task queue) is the admin's own 403 page saying which role the user has and
   where to ask, never the bare "403 Forbidden" (``permission_denied``, the URLconf's
   ``handler403``).

Installed through ``SkillCoreAdminConfig`` in INSTALLED_APPS, so ``admin.site`` is this site
and every ``@admin.register`` keeps working unchanged.
"""
from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class SkillCoreAdminSite(admin.AdminSite):
    def has_permission(self, request):
        from students.roles import is_staff_member

        return super().has_permission(request) and is_staff_member(request.user)

    def may_open_dashboard(self, request) -> bool:
        """Whether the scheduled-jobs dashboard (scheduling/dashboard/, mounted by
        skillcore/urls.py) admits this user: system admins, and district admins read-only
        (``Staff.may_watch_jobs``). staff_of is cached on the user by has_permission, so
        this costs no query."""
        from students.roles import staff_of

        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated and user.is_active and staff_of(user).may_watch_jobs)

    def get_app_list(self, request, app_label=None):
        app_list = super().get_app_list(request, app_label)
        if app_label not in (None, "scheduling") or not self.may_open_dashboard(request):
            return app_list
        from django.urls import reverse

        section = next((app for app in app_list if app["app_label"] == "scheduling"), None)
        if section is None:
            section = {"name": "Scheduling", "app_label": "scheduling", "has_module_perms": True, "models": [],
                       "app_url": reverse("admin:app_list", kwargs={"app_label": "scheduling"}, current_app=self.name)}
            app_list = sorted([*app_list, section], key=lambda app: app["name"].lower())
        # First in its section: the page system admins come to the admin for.
        section["models"].insert(0, {
            "name": "Scheduled jobs dashboard", "object_name": "ScheduledJobsDashboard", "perms": {"view": True},
            "admin_url": reverse("admin:scheduled_jobs", current_app=self.name), "add_url": None, "view_only": True,
        })
        return app_list

    def autocomplete_view(self, request):
        from skillcore.access import access_trail

        # The JSON is built inside the view, so every row it names is read inside the trail.
        with access_trail(actor=request.user, purpose="admin: autocomplete"):
            return super().autocomplete_view(request)


class SkillCoreAdminConfig(AdminConfig):
    default_site = "skillcore.sites.SkillCoreAdminSite"


def permission_denied(request, exception=None):
    """The 403 page for every refused request (the URLconf's ``handler403``), in the admin's
    look: the site header, the user's links, what was refused and the role the user has.
    Django's default is a bare "403 Forbidden" on a white page."""
    from django.contrib import admin
    from django.template.response import TemplateResponse

    from students.models import Role
    from students.roles import staff_of

    match = getattr(request, "resolver_match", None)
    model_admin = getattr(getattr(match, "func", None), "model_admin", None)
    what = model_admin.opts.verbose_name_plural if model_admin is not None else None
    user = getattr(request, "user", None)
    staff = staff_of(user) if user is not None else None
    roles = sorted(Role(r).label for r in staff.roles) if staff is not None else []
    if staff is not None and staff.is_system_admin:
        roles.insert(0, Role.SYSTEM_ADMIN.label)
    context = {
        **admin.site.each_context(request), "is_nav_sidebar_enabled": False, "title": "Not allowed",
        "what": what, "roles": roles, "reason": str(exception or ""),
    }
    response = TemplateResponse(request, "admin/403.html", context, status=403)
    return response.render()
