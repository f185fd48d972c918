"""django-q2 signal receivers: only bookkeeping, never work (see CONVENTIONS.md)."""
from __future__ import annotations

from django.dispatch import receiver
from django_q.signals import pre_execute

from scheduling import runner


@receiver(pre_execute, dispatch_uid="scheduling.task_id")
def remember_task_id(sender, func, task, **kwargs):
    # The worker is about to call our task: remember django-q2's task id so the JobRun
    # it claims records it (the task function itself is not told its id).
    runner._current_task_id = task.get("id")
