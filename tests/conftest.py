"""Shared fixtures: a small district and named personas, one per role."""
from __future__ import annotations

import pytest
from django.db import connection

from students.models import Role
from tests import factories as f


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let the test database's transactional tests empty the access trail between tests.

    The append-only trigger refuses TRUNCATE unless the database says otherwise; only test
    databases do (production never sets skillcore.allow_truncate).
    """
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f'ALTER DATABASE "{connection.settings_dict["NAME"]}" SET skillcore.allow_truncate = \'on\'')
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
