"""The SkillCore admin site: Django's, with two rules added for a site full of student records.

1. Only staff members get in. ``is_staff`` alone is not enough: a guardian or student
   account that was given ``is_staff`` by mistake, or staff without a role or a
   StaffProfile, gets the login page's "not authorized", never an (empty) admin.
2. The autocomplete endpoint (student names for a foreign-key search box) runs inside the
   FERPA access trail, like every other admin view that reads student records.
3. The login is throttled against password guessing (skillcore/throttle.py): repeated
   failures for one username from one address lock further attempts for a while (429).

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

    def get_urls(self):
        # /admin/scheduled-jobs/: the scheduling engine's dashboard (scheduling/dashboard.py).
        from scheduling import dashboard

        return dashboard.urls(self) + super().get_urls()

    def each_context(self, request):
        from students.roles import staff_of

        context = super().each_context(request)
        # The admin index links the dashboard for system admins (templates/admin/index.html);
        # staff_of is cached on the user by has_permission, so this costs no query.
        user = getattr(request, "user", None)
        context["scheduled_jobs_link"] = bool(
            user is not None and user.is_authenticated and user.is_active and staff_of(user).is_system_admin
        )
        return context

    def login(self, request, extra_context=None):
        from skillcore import throttle

        if request.method != "POST":
            return super().login(request, extra_context)
        username = str(request.POST.get("username", ""))[:150]
        address = throttle.client_address(request)
        if throttle.is_locked(username=username, address=address):
            return self._throttled_login(request, username)
        response = super().login(request, extra_context)
        if response.status_code in (301, 302) and request.user.is_authenticated:
            throttle.clear(username=username, address=address)
        else:
            throttle.record_failure(username=username, address=address)
        return response

    def _throttled_login(self, request, username: str):
        """The login page with one error and status 429; the password is not checked."""
        from django.conf import settings
        from django.contrib.admin.forms import AdminAuthenticationForm
        from django.forms.utils import ErrorDict
        from django.template.response import TemplateResponse

        form = AdminAuthenticationForm(request, data={"username": username})
        # Errors set directly: form.errors would run clean(), which checks the password.
        form._errors = ErrorDict({"__all__": form.error_class([
            f"Too many failed logins. Try again in {settings.LOGIN_THROTTLE_MINUTES} minutes.",
        ])})
        context = {
            **self.each_context(request), "title": "Log in", "subtitle": None, "form": form,
            "app_path": request.get_full_path(), "username": username,
            "next": request.POST.get("next") or request.GET.get("next", ""),
        }
        return TemplateResponse(request, self.login_template or "admin/login.html", context, status=429)

    def autocomplete_view(self, request):
        from skillcore.access import access_trail

        # The JSON is built inside the view, so every row it names is read inside the trail.
        with access_trail(actor=request.user, purpose="admin: autocomplete"):
            return super().autocomplete_view(request)


class SkillCoreAdminConfig(AdminConfig):
    default_site = "skillcore.sites.SkillCoreAdminSite"
