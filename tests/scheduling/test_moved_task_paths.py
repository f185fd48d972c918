"""Queued one-off Schedule rows name their task by dotted path; migration 0008 points the
rows queued before the rollover and emergency-test functions moved at their new modules."""
from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.utils import timezone
from django_q.models import Schedule

migration = importlib.import_module("scheduling.migrations.0008_task_paths_after_moves")


@pytest.mark.django_db
def test_rows_queued_before_the_move_point_at_the_moved_functions_and_back():
    when = timezone.now()
    old = {
        "rollover": "scheduling.rollover.run_approved",
        "refresh": "scheduling.emergency.emergency_test_report_refresh",
        "other": "scheduling.tasks.fire",
    }
    for name, func in old.items():
        Schedule.objects.create(name=name, func=func, schedule_type=Schedule.ONCE, next_run=when)

    migration.forward(apps, None)
    moved = dict(Schedule.objects.values_list("name", "func"))
    assert moved == {
        "rollover": "students.rollover.run_approved",
        "refresh": "notifications.emergency.emergency_test_report_refresh",
        "other": "scheduling.tasks.fire",
    }
    for func in moved.values():  # each path names a function that exists
        module, attr = func.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), attr))

    migration.backward(apps, None)
    assert dict(Schedule.objects.values_list("name", "func")) == old
