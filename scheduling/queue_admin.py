"""django-q2's own admin (the "Task queue" section), narrowed to what may be done there.

django-q2 registers Schedule, Success, Failure and (with the ORM broker) OrmQ with full edit
rights for anyone holding the model permissions. Two problems with that here:

1. The engine's rows (``skillcore:<job>:<district>`` and the one-off ``skillcore:retry:<run>``)
   would be editable past scheduling.services: a cron, repeats or next_run typed into
   django-q2's form bypasses the pause/edit audit (ScheduleChange), the cron validation and
   the zone the engine computes next_run in. Those rows are read-only here, and a new row
   may not take their name prefix or the engine's task functions; a cron edit, pause or
   delete goes through the dashboard or ``manage.py jobs``.
2. Staff who are not system admins have no use for queue internals (task payloads, failures'
   tracebacks): the section is shown to system admins only, whatever model permissions a user
   was given.

System admins keep the read-only views (what ran, what failed, what waits in the ORM queue)
for debugging, and may still manage schedules of their own that are not the engine's.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Schedule, Success

from scheduling.scheduler import PREFIX
from scheduling.services import EXECUTE_FUNC, FIRE_FUNC
from skillcore.admin import ReadOnlyMixin, SystemAdminsOnly


def is_engine_row(schedule: Schedule | None) -> bool:
    return schedule is not None and (schedule.name or "").startswith(PREFIX)


class ScheduleForm(forms.ModelForm):
    """A schedule a system admin adds or edits here is never one of the engine's."""

    class Meta:
        model = Schedule
        fields = "__all__"

    def clean_name(self):
        name = self.cleaned_data.get("name") or ""
        if name.startswith(PREFIX):
            raise forms.ValidationError(
                f"Names starting with {PREFIX!r} belong to the scheduled-jobs engine; change those "
                "schedules on the scheduled-jobs dashboard."
            )
        return name

    def clean_func(self):
        func = self.cleaned_data.get("func") or ""
        if func in (FIRE_FUNC, EXECUTE_FUNC):
            raise forms.ValidationError("This task belongs to the scheduled-jobs engine; use the scheduled-jobs dashboard.")
        return func


class ScheduleAdmin(SystemAdminsOnly, q_admin.ScheduleAdmin):
    form = ScheduleForm

    def has_change_permission(self, request, obj=None):
        # A POST to an engine row's change page is refused (403); its GET shows it read-only.
        return not is_engine_row(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        # Checked per row by the delete page and the "delete selected" action alike.
        return not is_engine_row(obj) and super().has_delete_permission(request, obj)


class SuccessAdmin(SystemAdminsOnly, ReadOnlyMixin, q_admin.TaskAdmin):
    actions = []  # resubmitting would run a task outside the engine's run records


class FailureAdmin(SystemAdminsOnly, ReadOnlyMixin, q_admin.FailAdmin):
    actions = []


class QueueAdmin(SystemAdminsOnly, ReadOnlyMixin, q_admin.QueueAdmin):
    pass


for model, model_admin in ((Schedule, ScheduleAdmin), (Success, SuccessAdmin), (Failure, FailureAdmin), (OrmQ, QueueAdmin)):
    # django-q2 registers OrmQ only with the ORM broker (or in its test mode): replace what it registered.
    if admin.site.is_registered(model):
        admin.site.unregister(model)
        admin.site.register(model, model_admin)
