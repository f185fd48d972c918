"""``manage.py demo --no-serve``: migrate, seed, demo logins; running it twice duplicates nothing."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from students.models import AttendanceRecord, District, Role, Student

User = get_user_model()


def demo(*args: str) -> str:
    out = StringIO()
    call_command("demo", "--no-serve", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_demo_seeds_once_and_creates_a_login_per_role(settings):
    settings.DEBUG = True
    first = demo("--students", "40")
    assert "http://127.0.0.1:8000/admin/" in first and "skillcore-demo" in first
    district = District.objects.get()
    counts = (User.objects.count(), Student.objects.count(), AttendanceRecord.objects.count())
    assert counts[1] == 40

    second = demo("--students", "40")
    assert "already exists: not seeding again" in second
    assert (User.objects.count(), Student.objects.count(), AttendanceRecord.objects.count()) == counts
    assert District.objects.get() == district

    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password("skillcore-demo")
    for role in (Role.DISTRICT_ADMIN, Role.PRINCIPAL, Role.COUNSELOR, Role.SPED_COORDINATOR, Role.CASE_MANAGER, Role.TEACHER):
        user = User.objects.get(username=f"demo-{role}")
        assert user.is_staff and user.check_password("skillcore-demo")
        assert user.groups.filter(name=role).exists()
        assert user.staff_profile.district == district
        assert f"demo-{role}" in second
    # The demo counselor is a real counselor with a caseload, not an empty account.
    assert User.objects.get(username="demo-counselor").counselees.exists()


@pytest.mark.django_db
def test_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=1") as error:
        demo()
    assert error.value.returncode == 2
    assert not District.objects.exists() and not User.objects.exists()


@pytest.mark.django_db
def test_demo_rejects_a_bad_student_count(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError) as error:
        demo("--students", "-1")
    assert error.value.returncode == 2
    assert not District.objects.exists()
