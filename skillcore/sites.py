"""The SkillCore admin site: Django's, with three rules added for a site full of student records.

1. Only staff members get in. ``is_staff`` alone is not enough: a guardian or student
   account that was given ``is_staff`` by mistake, or staff without a role or a
   StaffProfile, gets the login page's "not authorized", never an (empty) admin.
2. The autocomplete endpoint (student names for a foreign-key search box) runs inside the
   FERPA access trail, like every other admin view that reads student records.
3. The login is locked against password guessing by django-axes (skillcore/login_lockout.py,
   settings AXES_*): repeated failures for one username from one address lock further
   attempts for a while (429); the site itself needs no override for it.

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

    def each_context(self, request):
        from students.roles import staff_of

        context = super().each_context(request)
        # The admin index links the scheduled-jobs dashboard (scheduling/dashboard/, mounted by
        # skillcore/urls.py) for system admins (templates/admin/index.html);
        # staff_of is cached on the user by has_permission, so this costs no query.
        user = getattr(request, "user", None)
        context["scheduled_jobs_link"] = bool(
            user is not None and user.is_authenticated and user.is_active and staff_of(user).is_system_admin
        )
        return context

    def autocomplete_view(self, request):
        from skillcore.access import access_trail

        # The JSON is built inside the view, so every row it names is read inside the trail.
        with access_trail(actor=request.user, purpose="admin: autocomplete"):
            return super().autocomplete_view(request)


class SkillCoreAdminConfig(AdminConfig):
    default_site = "skillcore.sites.SkillCoreAdminSite"
