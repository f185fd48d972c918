"""System checks for the scheduling engine's configuration."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register


@register()
def redelivery_after_deadline(app_configs, **kwargs):
    """The ORM broker redelivers an un-acked task after Q_CLUSTER["retry"] seconds. For a
    redelivered task to find its lost run past the deadline (and resume it instead of
    leaving it to the reaper), retry must exceed the longest job timeout plus the grace."""
    from scheduling import registry

    retry = settings.Q_CLUSTER.get("retry")
    if not retry or "orm" not in settings.Q_CLUSTER:
        return []
    longest = max((j.timeout for j in registry.all_jobs()), default=0)
    needed = longest + settings.SCHEDULING_LOST_GRACE
    if retry <= needed:
        return [Warning(
            f"Q_RETRY ({retry} s) should exceed the longest job timeout plus SCHEDULING_LOST_GRACE ({needed} s)",
            hint="Raise Q_RETRY: a task redelivered earlier is taken for a duplicate delivery and the lost run "
                 "waits for the scheduler's reaper.",
            id="scheduling.W001",
        )]
    return []
