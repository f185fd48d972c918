"""The start-up check of the database connection follows libpq: a DATABASE_URL without a host
connects where PGHOST says, with PGSSLMODE and PGSSLROOTCERT when the URL names none. Without
that, ``postgres:///skillcore`` with PGHOST=db.internal started in production and spoke clear
text over the network."""
from __future__ import annotations

import pytest

from tests.skillcore.test_transport_tls import _refused, _start_up

ENGINE = "django.db.backends.postgresql"


def _found(db: dict, environ: dict):
    from skillcore.transport import _database

    return _database(db, environ)


def test_a_host_from_pghost_over_the_network_is_refused_at_start_up():
    _refused(_start_up(DATABASE_URL="postgres:///skillcore", PGHOST="db.internal"), "DATABASE_URL", "db.internal", "verify-full")


def test_pghost_with_libpqs_own_tls_variables_starts():
    result = _start_up(DATABASE_URL="postgres:///skillcore", PGHOST="db.internal", PGSSLMODE="verify-full",
                       PGSSLROOTCERT="/etc/hostname")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("environ, refused", [
    ({"PGHOST": "/var/run/postgresql"}, False),
    ({"PGHOST": "127.0.0.1"}, False),
    ({}, False),
    ({"PGHOST": "10.0.0.5"}, True),
    ({"PGHOST": "10.0.0.5", "PGSSLMODE": "require"}, True),
    ({"PGHOST": "10.0.0.5", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "system"}, False),
])
def test_libpqs_environment_decides_when_the_url_names_no_host(environ, refused):
    assert (_found({"ENGINE": ENGINE, "HOST": "", "OPTIONS": {}}, environ) is not None) is refused


def test_the_urls_own_host_and_sslmode_win_over_the_environment():
    db = {"ENGINE": ENGINE, "HOST": "127.0.0.1", "OPTIONS": {"sslmode": "disable"}}
    assert _found(db, {"PGHOST": "db.internal"}) is None
    db = {"ENGINE": ENGINE, "HOST": "db.internal", "OPTIONS": {"sslmode": "disable"}}
    assert _found(db, {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "system"}) is not None


def test_the_override_lets_the_database_through_but_not_redis():
    env = {"DATABASE_URL": "postgres:///skillcore", "PGHOST": "db.internal", "REDIS_URL": "redis://cache.internal:6379/0"}
    _refused(_start_up(**env, ALLOW_PLAINTEXT_TRANSPORT="database"), "REDIS_URL", "rediss://")
    result = _start_up(**env, ALLOW_PLAINTEXT_TRANSPORT="database,redis")
    assert result.returncode == 0, result.stderr
