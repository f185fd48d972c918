"""Real ``manage.py qcluster`` processes for the fault tests: the environment a cluster
needs (django-q2 reads its settings at import, so the database, the broker and the test
job modules go through the environment) and a context manager that starts one and kills
its whole process group at the end."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import time_machine
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
CLOCK_OFFSET = "SKILLCORE_TEST_CLOCK_OFFSET"  # read by skillcore/settings_test.py


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll until ``predicate()`` is truthy; return its value or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def clock_env() -> dict[str, str]:
    """The test's clock for a subprocess on the test settings (skillcore/settings_test.py):
    how many seconds time-machine has moved this process's clock from the real one, when it
    has (a test's travel or the session's SKILLCORE_TEST_CLOCK). A travel with tick=False
    still ticks in the subprocess, from where the test's clock stood when the env was made."""
    if not time_machine.escape_hatch.is_travelling():
        return {}
    return {CLOCK_OFFSET: repr(time.time() - time_machine.escape_hatch.time.time())}


def cluster_env(**extra: str) -> dict[str, str]:
    """The test database (pytest-django's, by name), the test settings, quiet logs.

    The cluster runs with production's database settings: Django's connection pool on
    (the test settings turn it off only for the test process itself, whose test-database
    teardown and a pool disagree). A forked worker, sentinel or scheduler inheriting its
    parent's pooled connections is exactly what the fault tests must cover."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "skillcore.settings_test",
        "DATABASE_URL": database_url(),
        "DATABASE_POOL": "true",
        "Q_WORKERS": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    env.pop(CLOCK_OFFSET, None)
    env.update(clock_env())
    env.update(extra)
    return env


@contextlib.contextmanager
def qcluster(env: dict[str, str], log_path: Path):
    """Start ``manage.py qcluster``; on exit SIGKILL its process group (cluster, sentinel,
    workers, scheduler) at once: the test is over, a graceful stop only costs time."""
    log = log_path.open("w")
    process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        log.close()
