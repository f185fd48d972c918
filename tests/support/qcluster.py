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

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


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
