"""docs/deployment.md's "Two database roles" recipe, run as written on a fresh database:
the SQL blocks of that section (role names made unique), `manage.py migrate` with the owner's
DATABASE_URL, then the application role at work. The database and the roles are dropped at
the end, pass or fail (roles are cluster-wide)."""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from psycopg import errors

from tests.scheduling.conftest import postgres_only  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("postgres_only")


def _recipe(owner: str, app: str, database: str) -> list[str]:
    """The section's ```sql blocks, in order, for these names."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    section = doc.split("## Two database roles", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    renamed = []
    for block in blocks:
        block = block.replace(" PASSWORD '...'", "").replace("skillcore_owner", owner).replace("skillcore_app", app)
        renamed.append(block.replace("DATABASE skillcore ", f"DATABASE {database} ").replace(r"\connect skillcore", rf"\connect {database}"))
    return renamed


def _statements(block: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in block.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _connect(user: str, dbname: str) -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(host=db["HOST"], port=db["PORT"], user=user, dbname=dbname, autocommit=True)


def _manage(user: str, database: str, *args: str) -> subprocess.CompletedProcess:
    db = settings.DATABASES["default"]
    env = {
        **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
        "DJANGO_SETTINGS_MODULE": "skillcore.settings", "DEBUG": "true", "DATABASE_POOL": "false",
        "DATABASE_URL": f"postgres://{user}@{db['HOST']}:{db['PORT']}/{database}",
    }
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def names():
    suffix = uuid.uuid4().hex[:10]
    made = (f"skc_doc_owner_{suffix}", f"skc_doc_app_{suffix}", f"skc_doc_db_{suffix}")
    yield made
    owner, app, database = made
    with _connect(settings.DATABASES["default"]["USER"], "postgres") as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {app}")
        admin.execute(f"DROP ROLE IF EXISTS {owner}")


def test_the_documented_two_role_setup_leaves_the_application_unable_to_touch_the_trail(names):
    owner, app, database = names
    setup, after_migrate, check = _recipe(owner, app, database)
    superuser = settings.DATABASES["default"]["USER"]
    before_connect, after_connect = setup.split(rf"\connect {database}")
    with _connect(superuser, "postgres") as admin:
        for statement in _statements(before_connect):
            admin.execute(statement)
    with _connect(superuser, database) as admin:
        for statement in _statements(after_connect):
            admin.execute(statement)

    migrated = _manage(owner, database, "migrate", "-v0")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    with _connect(owner, database) as as_owner:
        for statement in _statements(after_migrate):
            as_owner.execute(statement)
        assert [as_owner.execute(s).fetchone()[0] for s in _statements(check)] == [owner, "INSERT, SELECT", False]
        # The function migration 0005 left, with no session switch in it.
        assert "allow_truncate" not in as_owner.execute(
            "SELECT prosrc FROM pg_proc WHERE proname = 'skillcore_accesslog_append_only'").fetchone()[0]

    now = dt.datetime.now(dt.UTC)
    with _connect(app, database) as as_app:
        as_app.execute(
            "INSERT INTO skillcore_accesslog (at, job_run_id, actor_label, purpose, model, operation, query_count,"
            " row_count, student_count, student_ids, recipient) VALUES"
            " (%s, 1, 'job run 1', 'p', 'students.Student', 'read', 1, 1, 1, '[1]', ''),"
            " (%s, 1, 'job run 1', 'p', 'students.Student', 'read', 1, 1, 1, '[1]', '')",
            [now - dt.timedelta(days=9 * 365), now],
        )
        # The rest of the schema is the application's to write, change and delete.
        as_app.execute("INSERT INTO skillcore_eventbusentry (stream, event_type, payload, published_at)"
                       " VALUES ('s', 'e', '{}', now())")
        as_app.execute("UPDATE skillcore_eventbusentry SET stream = 't'")
        as_app.execute("DELETE FROM skillcore_eventbusentry")
        trail = as_app.execute("SELECT * FROM skillcore_accesslog ORDER BY id").fetchall()
        for statement in [
            "UPDATE skillcore_accesslog SET purpose = 'x'", "DELETE FROM skillcore_accesslog",
            "TRUNCATE skillcore_accesslog", "ALTER TABLE skillcore_accesslog DISABLE TRIGGER ALL",
            "DROP TRIGGER skillcore_accesslog_append_only ON skillcore_accesslog",
            "SET session_replication_role = replica",
            "SELECT nextval('skillcore_accesslog_id_seq')",
            "CREATE TABLE app_made (id int)",
        ]:
            with pytest.raises(errors.InsufficientPrivilege):
                as_app.execute(statement)
        refused = _manage(app, database, "purge_access_log")
        assert refused.returncode == 1 and "purge refused: permission denied" in refused.stderr
        assert as_app.execute("SELECT * FROM skillcore_accesslog ORDER BY id").fetchall() == trail

    purged = _manage(owner, database, "purge_access_log")
    assert purged.returncode == 0 and purged.stdout.startswith("deleted 1 access-trail rows"), purged.stderr
    with _connect(app, database) as as_app:
        assert as_app.execute("SELECT * FROM skillcore_accesslog ORDER BY id").fetchall() == trail[1:]

