"""Production's database settings (Django's psycopg pool on) across fork(): a process forked
after its parent opened the pool (django-q2's sentinel forking a worker, gunicorn's master
forking a worker) gets server sessions of its own, and the parent's session survives it
(skillcore/forked_db.py). Without that, the child checked out its parent's pooled session."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.scheduling.conftest import postgres_only  # noqa: F401
from tests.support.qcluster import ROOT, cluster_env


@pytest.mark.django_db(transaction=True)
def test_a_forked_child_never_uses_its_parents_pooled_session(postgres_only):  # noqa: F811
    env = cluster_env()
    assert env["DATABASE_POOL"] == "true"
    done = subprocess.run([sys.executable, "-m", "tests.reliability.fork_probe"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    parent, children = report["parent"], report["children"]
    assert [c.get("error") for c in children] == [None, None], children
    # Every session a child used was its own: it ended with the child. The parent's first
    # session is still open (no child used or ended it) and its pool still serves.
    assert report["alive"] == [parent["before"]], report
    assert parent["after"] not in {c["backend"] for c in children} | {c["again"] for c in children}, report
    assert children[0]["backend"] != children[1]["backend"], report
