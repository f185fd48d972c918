"""The access trail cannot be wiped or changed from the application's connection.

Every path is tried against production's real trigger (the test database's TRUNCATE trigger,
switched off for the flush between transactional tests, is switched back on inside each
test's transaction) and as roles set up the way docs/deployment.md ("Two database roles")
says: an application role with SELECT and INSERT on the trail and nothing else, and a
non-superuser owner that runs migrations and the retention purge. Each attempt must be refused
with insufficient_privilege (42501) and the reason named, so a typo that fails for another
reason cannot pass, and the rows must come out unchanged.

The roles are cluster-wide, so their names are unique, and they are created inside the
test's transaction: CREATE ROLE is transactional in PostgreSQL, so pytest-django's rollback
at the end of the test removes them, whether the test passed, failed or its process died.
"""
from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from dataclasses import dataclass

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from skillcore.models import AccessLog
from skillcore.services import access_log_purge
from tests import factories as f
from tests.conftest import TRAIL_TRUNCATE_TRIGGER
from tests.scheduling.conftest import postgres_only  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("postgres_only")]

TABLE = "public.skillcore_accesslog"
TRIGGERS = ("skillcore_accesslog_append_only", TRAIL_TRUNCATE_TRIGGER)
# Every skillcore.* setting the trigger reads, plus the one 0002's trigger obeyed.
SETTINGS = [
    ("skillcore.access_log_purge_before", "{recent}"),
    ("skillcore.access_log_purge_before", "infinity"),
    ("skillcore.access_log_purge_before", "3000-01-01"),
    ("skillcore.allow_truncate", "on"),
]
WRITES = ["UPDATE {table} SET purpose = 'rewritten', student_ids = '[]'", "DELETE FROM {table}", "TRUNCATE {table}"]


@dataclass
class Roles:
    app: str
    owner: str


def _sql(cursor, statement: str) -> None:
    recent = (timezone.now() - dt.timedelta(days=1)).isoformat()
    cursor.execute(statement.format(table=TABLE, recent=recent))


def _refused(role: str, *statements: str, reason: str) -> None:
    """Run the statements as `role` in a savepoint; the database must refuse one of them, saying `reason` (a regex)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {role}")
            for statement in statements:
                _sql(cursor, statement)
    except DatabaseError as error:
        assert getattr(error.__cause__, "sqlstate", None) == "42501", f"{statements}: {error}"
        assert re.search(reason, str(error)), f"{statements}: {error}"
    else:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
        pytest.fail(f"{role} was allowed: {statements}")


def _trail() -> list[dict]:
    return list(AccessLog.objects.order_by("id").values())


@pytest.fixture
def trail():
    """Rows on both sides of the 7-year line, with production's triggers all on."""
    now = timezone.now()
    f.AccessLogFactory(at=now - dt.timedelta(days=8 * 365), purpose="past the retention")
    f.AccessLogFactory(at=now - dt.timedelta(days=7 * 365 - 30), purpose="a month short of 7 years")
    f.AccessLogFactory(at=now - dt.timedelta(minutes=5), purpose="just written", student_ids=[1, 2])
    with connection.cursor() as cursor:
        # The rows' deferred foreign-key checks would stop ALTER TABLE ("pending trigger
        # events"): run them now, and every later one at once, for the rest of the test.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {TRAIL_TRUNCATE_TRIGGER}")
        cursor.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [TABLE],
        )
        assert dict(cursor.fetchall()) == {name: "O" for name in TRIGGERS}
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'skillcore_accesslog_append_only'")
        assert "allow_truncate" not in cursor.fetchone()[0]
    return _trail()


@pytest.fixture
def roles(trail):
    """The application role with production's grants, and a non-superuser owner of the trail."""
    assert connection.in_atomic_block, "the roles must live inside the test's rolled-back transaction"
    suffix = uuid.uuid4().hex[:12]
    made = Roles(app=f"skc_test_app_{suffix}", owner=f"skc_test_owner_{suffix}")
    with connection.cursor() as cursor:
        for role in (made.app, made.owner):
            cursor.execute(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS")
        cursor.execute(f"GRANT SELECT, INSERT ON {TABLE} TO {made.app}")
        cursor.execute(f"ALTER TABLE {TABLE} OWNER TO {made.owner}")
    yield made
    with connection.cursor() as cursor:
        if not connection.needs_rollback:
            cursor.execute("RESET ROLE")


def test_the_application_role_writes_and_reads_the_trail_with_select_and_insert_only(roles, trail):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {roles.app}")
        # The id is an identity column: INSERT needs no privilege on its sequence.
        written = AccessLog.objects.create(
            at=timezone.now(), actor_label="job run 1", purpose="p", model="students.Student", operation="read",
        )
        assert AccessLog.objects.filter(pk=written.pk).exists()
        cursor.execute("RESET ROLE")
    assert _trail() == [*trail, AccessLog.objects.filter(pk=written.pk).values().get()]


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("setting", [None, *SETTINGS], ids=lambda s: "no setting" if s is None else f"{s[0]}={s[1]}")
def test_the_application_role_cannot_update_delete_or_truncate_whatever_it_sets(roles, trail, write, setting):
    statements = ([] if setting is None else [f"SET LOCAL {setting[0]} = '{setting[1]}'"]) + [write]
    _refused(roles.app, *statements, reason="permission denied for table skillcore_accesslog")
    assert _trail() == trail


@pytest.mark.parametrize("statement", [
    "ALTER TABLE {table} DISABLE TRIGGER ALL",
    "ALTER TABLE {table} DISABLE TRIGGER USER",
    *(f"ALTER TABLE {{table}} DISABLE TRIGGER {name}" for name in TRIGGERS),
    *(f"DROP TRIGGER {name} ON {{table}}" for name in TRIGGERS),
    "ALTER TABLE {table} OWNER TO CURRENT_USER",
    "DROP TABLE {table}",
])
def test_the_application_role_cannot_switch_off_or_drop_the_trigger(roles, trail, statement):
    _refused(roles.app, statement, reason="must be owner of (table|relation) skillcore_accesslog")
    assert _trail() == trail


def test_the_application_role_cannot_replace_the_trigger_function(roles, trail):
    _refused(roles.app, """CREATE OR REPLACE FUNCTION public.skillcore_accesslog_append_only() RETURNS trigger
                            LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$""", reason="permission denied")
    assert _trail() == trail


def test_the_application_role_cannot_turn_triggers_off_for_its_session(roles, trail):
    # Replica mode skips ordinary triggers; setting it is a superuser's right.
    _refused(roles.app, "SET LOCAL session_replication_role = replica", f"DELETE FROM {TABLE}",
             reason='permission denied to set parameter "session_replication_role"')
    assert _trail() == trail


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("setting", [None, *SETTINGS], ids=lambda s: "no setting" if s is None else f"{s[0]}={s[1]}")
def test_the_trigger_refuses_the_owner_whatever_it_sets(roles, trail, write, setting):
    """The owner holds every privilege: only the trigger stands in the way (and, for a role
    wrongly granted UPDATE/DELETE/TRUNCATE, it does the same)."""
    statements = ([] if setting is None else [f"SET LOCAL {setting[0]} = '{setting[1]}'"]) + [write]
    _refused(roles.owner, *statements, reason="skillcore_accesslog is append-only")
    assert _trail() == trail


def test_a_purge_date_chosen_by_the_session_cannot_reach_rows_younger_than_7_years(roles, trail):
    for younger in ("a month short of 7 years", "just written"):
        _refused(roles.owner, "SET LOCAL skillcore.access_log_purge_before = 'infinity'",
                 f"DELETE FROM {TABLE} WHERE purpose = '{younger}'", reason="append-only: DELETE refused")
    assert _trail() == trail


def test_a_session_search_path_cannot_move_the_7_year_line(roles, trail):
    """A role that may create objects puts its own now() ahead of pg_catalog; the trigger
    function pins its search_path, so the server's now() is the one it reads."""
    schema = f"{roles.owner}_tools"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {roles.owner}")
    _refused(
        roles.owner,
        f"CREATE FUNCTION {schema}.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '3000-01-01'::timestamptz $$",
        f"SET LOCAL search_path = {schema}, pg_catalog, public",
        # Before its own now() - 7 years: a purge date an unpinned function would accept.
        "SET LOCAL skillcore.access_log_purge_before = '2990-01-01'",
        f"DELETE FROM {TABLE} WHERE purpose = 'just written'",
        reason="append-only: DELETE refused",
    )
    assert _trail() == trail


def test_the_owner_could_switch_the_trigger_off_which_is_why_the_application_is_not_the_owner(roles, trail):
    """The documented limit: ownership (and superuser) is above any trigger."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {roles.owner}")
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        cursor.execute(f"DELETE FROM {TABLE}")
        assert AccessLog.objects.count() == 0
        transaction.set_rollback(True)
    assert _trail() == trail


def test_the_retention_purge_run_as_the_owner_deletes_only_rows_past_7_years(roles, trail):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {roles.owner}")
        assert access_log_purge(now=timezone.now()) == 1
        cursor.execute("RESET ROLE")
    assert _trail() == [row for row in trail if row["purpose"] != "past the retention"]


def test_the_retention_purge_is_refused_to_the_application_role(roles, trail):
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {roles.app}")
        access_log_purge(now=timezone.now())
    assert _trail() == trail


def test_the_purge_command_run_with_the_owner_role_deletes_only_rows_past_7_years(roles, trail):
    out = io.StringIO()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {roles.owner}")
        call_command("purge_access_log", stdout=out)
        cursor.execute("RESET ROLE")
    assert out.getvalue().startswith("deleted 1 access-trail rows")
    assert _trail() == [row for row in trail if row["purpose"] != "past the retention"]


def test_the_purge_command_run_with_the_application_role_says_why_it_is_refused(roles, trail):
    with pytest.raises(CommandError, match="purge refused: permission denied"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {roles.app}")
            call_command("purge_access_log", stdout=io.StringIO())
    assert _trail() == trail


def test_the_purge_never_asks_for_a_row_inside_the_servers_7_years(roles, trail):
    """A caller's clock ahead of the server's (or a transaction started before the caller's
    `now`) must not make the purge select a row the trigger refuses: one refusal aborts it all."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now() - interval '7 years' + interval '12 hours'")
        (inside,) = cursor.fetchone()
    f.AccessLogFactory(at=inside, purpose="12 hours inside the server's 7 years")
    expected = [row for row in _trail() if row["purpose"] != "past the retention"]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {roles.owner}")
        assert access_log_purge(now=timezone.now() + dt.timedelta(days=1), retention_days=7 * 365 + 2) == 1
        cursor.execute("RESET ROLE")
    assert _trail() == expected
