"""CSRF: with a client that enforces the checks, every state-changing POST of the admin
and of the scheduled-jobs dashboard without a token is refused (403) and changes nothing;
the same POST with the token goes through (so the test can tell the difference)."""
from __future__ import annotations

import re

import pytest
from django.test import Client

from scheduling.models import JobSchedule, ScheduleChange
from tests.security.test_role_matrix import dashboard_objects, dashboard_requests, registered_admin_urls  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def csrf_client(system_admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(system_admin)
    return client


def test_every_admin_post_without_a_token_is_403(csrf_client, dashboard_objects):
    posts = [("/admin/logout/", {}), ("/admin/password_change/", {"old_password": "x", "new_password1": "y", "new_password2": "y"})]
    for changelist, add in registered_admin_urls().values():
        posts.append((add, {}))
        posts.append((changelist, {"action": "delete_selected", "_selected_action": ["1"], "post": "yes"}))
    posts += [(url, data) for method, url, data in dashboard_requests(*dashboard_objects) if method == "POST"]
    before = ScheduleChange.objects.count()
    wrong = [f"{url}: {code}" for url, data in posts if (code := csrf_client.post(url, data).status_code) != 403]
    assert not wrong, "\n".join(wrong)
    assert ScheduleChange.objects.count() == before
    assert not JobSchedule.objects.filter(removed_at__isnull=False).exists()
    # Still logged in: the logout POST was refused too.
    assert csrf_client.get("/admin/").status_code == 200


def test_the_login_post_needs_the_token_too(system_admin):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "sysadmin", "password": "correct horse battery staple"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_with_the_token_the_same_post_goes_through(csrf_client, dashboard_objects):
    schedule = dashboard_objects[0]
    page = csrf_client.get(f"/admin/scheduled-jobs/{schedule.pk}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = csrf_client.post(f"/admin/scheduled-jobs/{schedule.pk}/pause/", {"note": "break", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert ScheduleChange.objects.filter(schedule=schedule).exists()
