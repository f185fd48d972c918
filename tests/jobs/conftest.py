"""Fixtures for every job's tests."""
from __future__ import annotations

import functools

import pytest

from scheduling import runner


@pytest.fixture(autouse=True)
def progress_without_the_clock(monkeypatch):
    """A run writes its progress at most once a second (JobContext.progress), so how many
    progress UPDATEs it issues depends on how fast the machine is: a query count over a run
    changed with the load (missing-assignment-alerts' 450-assignment run on a busy SQLite
    machine took over a second and issued one more UPDATE of scheduling_jobrun, 39 against
    38, about one run in two). Job tests count what the job does, not the clock: timed
    progress writes are off. The run's final row still carries its progress (the runner's
    last write); tests outside tests/jobs run with the timed writes on."""
    monkeypatch.setattr(runner, "JobContext", functools.partial(runner.JobContext, progress_interval=float("inf")))
