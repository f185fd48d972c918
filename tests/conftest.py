"""Shared fixtures: a small district and named personas, one per role."""
from __future__ import annotations

import pytest
from django.db import connection

from students.models import Role
from tests import factories as f


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
