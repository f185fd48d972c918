"""The engine runs only on the django-q2 releases it was written against.

scheduling/scheduler.py replaces two django-q2 names by hand (Schedule.calculate_next_run and
the sentinel's ``scheduler``); a release that renames or re-signs either would keep running
on croniter in one zone without a word. These tests fail loudly on such a release, and the
system check (scheduling.E001) stops ``manage.py`` commands (qcluster, runserver, migrate)
at start-up.
"""
from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import django_q.cluster
import django_q.scheduler
import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django_q.models import Schedule

from scheduling import checks, scheduler

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_django_q2_is_in_the_supported_range():
    installed = tuple(int(p) for p in version("django-q2").split(".")[:2])
    low, high = checks.DJANGO_Q_SUPPORTED
    assert low <= installed < high, f"django-q2 {version('django-q2')} is not in >={low},<{high}"


def test_the_pyproject_pin_is_the_supported_range():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("django-q2"))
    low, high = checks.DJANGO_Q_SUPPORTED
    assert re.sub(r"\s", "", pin) == f"django-q2>={low[0]}.{low[1]},<{high[0]}.{high[1]}"


def test_the_two_names_the_engine_replaces_exist_with_the_expected_signatures():
    original = Schedule.calculate_next_run.__wrapped__  # django-q2's own, kept by the wrapper
    assert list(inspect.signature(original).parameters) == ["self", "next_run"]
    assert inspect.signature(original).parameters["next_run"].default is None
    assert list(inspect.signature(django_q.scheduler.scheduler).parameters) == ["broker"]
    # The sentinel calls the scheduler through the module-level name the engine replaces.
    assert "scheduler" in django_q.cluster.Sentinel.guard.__code__.co_names
    # ... and the replacement is in place (AppConfig.ready ran install()).
    assert django_q.cluster.scheduler is scheduler.scheduler_pass
    assert Schedule.calculate_next_run._skillcore is True


def test_the_system_check_is_silent_on_the_installed_release():
    assert checks.django_q_problems() == []
    assert [e for e in run_checks() if e.id == "scheduling.E001"] == []


@pytest.mark.parametrize("release", ["1.12.0", "2.0.1", "1.10.3"])
def test_an_unsupported_release_stops_manage_py_at_start_up(monkeypatch, release):
    monkeypatch.setattr(checks, "django_q_version", lambda: release)
    errors = [e for e in run_checks() if e.id == "scheduling.E001"]
    assert [e.msg for e in errors] == [f"django-q2 {release} is installed; the engine supports >=1.11,<1.12"]
    with pytest.raises(SystemCheckError, match="scheduling.E001"):
        call_command("check")


def test_a_renamed_or_resigned_name_is_reported(monkeypatch):
    def calculate_next_run(self, after, zone):  # a release with other arguments
        return None

    monkeypatch.setattr(Schedule, "calculate_next_run", calculate_next_run)
    monkeypatch.delattr(django_q.cluster, "scheduler")
    assert checks.django_q_problems() == [
        "django_q.models.Schedule.calculate_next_run(self, next_run) is gone or has other arguments",
        "django_q.cluster.Sentinel.guard no longer calls the module-level name `scheduler`",
    ]
