"""Shared fixtures: a small district and named personas, one per role."""
from __future__ import annotations

import datetime as dt
import os

import pytest
import time_machine
from django.db import connection

from students.models import Role
from tests import factories as f

# The TRUNCATE trigger on the access trail, switched off on the test database only.
TRAIL_TRUNCATE_TRIGGER = "skillcore_accesslog_no_truncate"

# SKILLCORE_TEST_CLOCK="2027-11-07T05:59:30+00:00" runs the whole session from that instant,
# the clock ticking on (README.md, "Two commands"). A test that passes only at some hours,
# days or dates (a schedule falling due mid-test, a month end, a DST night, a weekend) fails
# at will instead of once in a while in CI. A test's own time_machine.travel still wins
# inside it. A real qcluster a test starts follows the clock it had (tests/support/qcluster.py).
# Not findings: PostgreSQL's and Redis's own clocks (now(), stream ids) and a subprocess on
# the production settings stay real; an instant weeks before a test's own pinned date expires
# a login the test made before travelling there (tests/scheduling/test_spread.py at 2026-11-01).
TEST_CLOCK = "SKILLCORE_TEST_CLOCK"
_session_clock = None


def pytest_configure(config):
    global _session_clock
    value = os.environ.get(TEST_CLOCK)
    if not value:
        return
    instant = dt.datetime.fromisoformat(value)
    if instant.tzinfo is None:
        raise pytest.UsageError(f"{TEST_CLOCK} needs an offset, e.g. 2027-11-07T05:59:30+00:00; got {value!r}")
    _session_clock = time_machine.travel(instant, tick=True)
    _session_clock.start()


def pytest_report_header(config):
    if _session_clock is not None:
        return f"{TEST_CLOCK}: the session started at {os.environ[TEST_CLOCK]} (time-machine, ticking)"


def pytest_unconfigure(config):
    global _session_clock
    if _session_clock is not None:
        _session_clock.stop()
        _session_clock = None


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let transactional tests' flush (a TRUNCATE of every table) empty the access trail.

    Production's trigger refuses TRUNCATE whatever a session sets. The throwaway test
    database switches that one trigger off with DDL, as the superuser that created and owns
    it: an application role cannot do this (docs/deployment.md, "Two database roles").
    The UPDATE/DELETE trigger stays on; tests of TRUNCATE re-enable theirs inside their
    own rolled-back transaction (tests/security/test_trail_append_only.py).
    """
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE skillcore_accesslog DISABLE TRIGGER {TRAIL_TRUNCATE_TRIGGER}")
            connection.close()


@pytest.fixture
def district(db):
    return f.DistrictFactory(name="Lakeside Unified", time_zone="America/New_York")


@pytest.fixture
def school(district):
    return f.SchoolFactory(district=district, name="Lakeside High")


@pytest.fixture
def other_school(district):
    return f.SchoolFactory(district=district, name="Hillcrest Middle")


@pytest.fixture
def system_admin(db):
    return f.UserFactory(username="sysadmin", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])


@pytest.fixture
def counselor(school):
    return f.StaffFactory(username="counselor", roles=[Role.COUNSELOR], schools=[school])


@pytest.fixture
def other_counselor(other_school):
    return f.StaffFactory(username="other_counselor", roles=[Role.COUNSELOR], schools=[other_school])


@pytest.fixture
def on_postgres():
    return connection.vendor == "postgresql"


# More personas, one per staff role, for the role-scoped admin (and the role matrix).
@pytest.fixture
def district_admin(school):
    return f.StaffFactory(username="district_admin", roles=[Role.DISTRICT_ADMIN], schools=[school])


@pytest.fixture
def principal(school):
    return f.StaffFactory(username="principal", roles=[Role.PRINCIPAL], schools=[school])


@pytest.fixture
def teacher(school):
    return f.StaffFactory(username="teacher", roles=[Role.TEACHER], schools=[school])


@pytest.fixture
def case_manager(school):
    return f.StaffFactory(username="case_manager", roles=[Role.CASE_MANAGER], schools=[school])


@pytest.fixture
def sped_coordinator(school):
    return f.StaffFactory(username="sped_coordinator", roles=[Role.SPED_COORDINATOR], schools=[school])
