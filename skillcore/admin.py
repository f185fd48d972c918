"""Admin pieces every app's admin uses, and the admin login's attempt log.

- ``SystemAdminsOnly``: pages for system admins alone (engine internals, alert history).
- ``ReadOnlyMixin``: rows only a job or the system writes (run history, analytics, audit
  trails) are viewable, never added, changed or deleted from admin.
- ``CappedCountPaginator`` / ``IdsFirstPaginator``: changelists over millions of rows.

The role-scoped base classes (``ScopedAdmin``, ``StudentRecordAdmin``) are in
students/scoped_admin.py, beside the scope rules they apply.
"""
from __future__ import annotations

from axes.admin import AccessFailureLogAdmin as AxesFailureLogAdmin
from axes.models import AccessFailureLog
from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from students.roles import staff_of


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows: an exact COUNT(*) over a district's grades or attendance
    (millions of rows, joined for the scope) costs more than the page itself. Beyond the cap,
    narrow the list with the filters."""

    cap = 10_000

    @cached_property
    def count(self):
        # No ORDER BY in the count: an ordering would make the planner walk the sort index
        # (e.g. attendance by date) instead of reading the scope's rows directly.
        return self.object_list.order_by()[: self.cap].count()


class IdsFirstPaginator(CappedCountPaginator):
    """Reads a page in two steps: the page's ids (from an index alone, when one covers the
    filter and the ordering), then those rows with their joins. A one-step page fetches every
    candidate row from the table before the filter can reject it; on attendance, ordered by
    date, that was a whole school day (48,000 rows) for one school's 50."""

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        ids = list(self.object_list.values_list("pk", flat=True)[bottom : bottom + self.per_page])
        rows = self.object_list.order_by().filter(pk__in=ids).in_bulk()
        return self._get_page([rows[i] for i in ids if i in rows], number, self)


class ReadOnlyMixin:
    """For rows only a job writes (run history, analytics, audit): viewable, never added,
    changed or deleted from admin."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SystemAdminsOnly:
    """Every view of the model is for system admins alone (module, list, object)."""

    def _system_admin(self, request) -> bool:
        user = request.user
        return user.is_authenticated and user.is_active and staff_of(user).is_system_admin

    def has_module_permission(self, request):
        return self._system_admin(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._system_admin(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return self._system_admin(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self._system_admin(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._system_admin(request) and super().has_delete_permission(request, obj)


@admin.register(AccessFailureLog)
class LoginFailureAdmin(ReadOnlyMixin, AxesFailureLogAdmin):
    """The admin login's attempt log (django-axes; skillcore/login_lockout.py writes it): every
    checked failure with its username, address and whether it locked. No role is granted it
    (students/roles.py), so only system admins (superusers) see it, and nobody edits it."""
