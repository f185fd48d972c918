"""System checks for the scheduling engine's configuration."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register


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


# The django-q2 releases the engine is written against: pyproject's pin (>=1.11,<1.12).
# scheduling/scheduler.py replaces two django-q2 names at start-up, Schedule.calculate_next_run
# and the sentinel's module-level ``scheduler`` in django_q.cluster. A release that renames
# either, changes its arguments, or stops calling it through that name keeps running but
# silently computes next runs with croniter in one zone (docs/decisions/django-q2.md): hence
# an error at start-up rather than a wrong slot months later.
DJANGO_Q_SUPPORTED = ((1, 11), (1, 12))  # lowest supported (major, minor), first unsupported


def django_q_version() -> str:
    from importlib.metadata import version

    return version("django-q2")


def django_q_problems() -> list[str]:
    """What about the installed django-q2 the engine cannot rely on (empty when nothing)."""
    import inspect

    import django_q.cluster
    import django_q.scheduler
    from django_q.models import Schedule

    problems = []
    installed = django_q_version()
    major_minor = tuple(int(p) for p in installed.split(".")[:2] if p.isdigit())
    low, high = DJANGO_Q_SUPPORTED
    if not (low <= major_minor < high):
        problems.append(f"django-q2 {installed} is installed; the engine supports >={low[0]}.{low[1]},<{high[0]}.{high[1]}")
    # The wrapper keeps django-q2's method as __wrapped__; the one read here is theirs.
    method = getattr(Schedule, "calculate_next_run", None)
    method = getattr(method, "__wrapped__", method)
    if method is None or list(inspect.signature(method).parameters) != ["self", "next_run"]:
        problems.append("django_q.models.Schedule.calculate_next_run(self, next_run) is gone or has other arguments")
    original = getattr(django_q.scheduler, "scheduler", None)
    if original is None or list(inspect.signature(original).parameters) != ["broker"]:
        problems.append("django_q.scheduler.scheduler(broker) is gone or has other arguments")
    sentinel = getattr(getattr(django_q.cluster, "Sentinel", None), "guard", None)
    sentinel = inspect.unwrap(sentinel) if sentinel is not None else None  # a wrapper is judged by what it wraps
    if not hasattr(django_q.cluster, "scheduler") or sentinel is None or "scheduler" not in sentinel.__code__.co_names:
        # The engine's pre-pass (heartbeat, reaper, sweeper) runs only if the sentinel looks
        # the scheduler up by this module-level name on every pass.
        problems.append("django_q.cluster.Sentinel.guard no longer calls the module-level name `scheduler`")
    return problems


@register()
def supported_django_q(app_configs, **kwargs):
    return [
        Error(
            problem,
            hint="scheduling/scheduler.py replaces Schedule.calculate_next_run and django_q.cluster.scheduler "
                 "by name; check both against the new release (docs/decisions/django-q2.md), then widen "
                 "DJANGO_Q_SUPPORTED in scheduling/checks.py and the pin in pyproject.toml.",
            id="scheduling.E001",
        )
        for problem in django_q_problems()
    ]
