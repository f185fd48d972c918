"""The admin login is throttled: repeated failures lock a username (and, past a higher
limit, an address) for a while; a correct password during the lock is refused too."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.cache import cache

from students.models import Role
from tests import factories as f

PASSWORD = "correct horse battery staple"
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    settings.LOGIN_THROTTLE_FAILURES = 3
    settings.LOGIN_THROTTLE_MINUTES = 10
    cache.clear()
    yield
    cache.clear()


def _post(client, username, password, addr="10.0.0.5"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=addr)


@pytest.mark.django_db
def test_failures_lock_the_username_even_for_the_right_password_then_the_lock_expires(client, school):
    f.StaffFactory(username="principal", roles=[Role.PRINCIPAL], schools=[school])
    start = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        for guess in ("a", "b", "c"):
            assert _post(client, "principal", guess).status_code == 200  # the form's own error
        locked = _post(client, "principal", PASSWORD)
        assert locked.status_code == 429
        assert b"Too many failed logins" in locked.content
        assert "_auth_user_id" not in client.session
        # Another address is not locked out for this username.
        assert _post(client, "principal", PASSWORD, addr="10.0.0.6").status_code == 302
        client.logout()
        clock.shift(dt.timedelta(minutes=11))
        assert _post(client, "principal", PASSWORD).status_code == 302
        assert client.session["_auth_user_id"]


@pytest.mark.django_db
def test_a_success_clears_the_counter(client, school):
    f.StaffFactory(username="teacher", roles=[Role.TEACHER], schools=[school])
    for _ in range(2):
        assert _post(client, "teacher", "wrong").status_code == 200
    assert _post(client, "teacher", PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert _post(client, "teacher", "wrong").status_code == 200
    assert _post(client, "teacher", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_spraying_one_password_over_many_usernames_locks_the_address(client, school):
    f.StaffFactory(username="counselor", roles=[Role.COUNSELOR], schools=[school])
    # 4 x 3 = 12 failures over 12 different usernames from one address (none reaches 3 alone).
    for i in range(12):
        assert _post(client, f"nobody{i}", "Summer2026!").status_code == 200
    assert _post(client, "counselor", PASSWORD).status_code == 429
    assert _post(client, "counselor", PASSWORD, addr="10.0.0.7").status_code == 302


@pytest.mark.django_db
def test_odd_usernames_never_break_the_throttle(client):
    for name in ("", " ", "x" * 5000, "ünï\u0000code\U0001F600", "a b\tc\n"):
        assert _post(client, name, "pw").status_code in (200, 429)


@pytest.mark.django_db
def test_with_redis_the_counters_are_shared_between_processes(settings, school):
    """Production runs several web processes: with REDIS_URL the counters live in Redis, so
    failures seen by one process lock the login in every other. Here another process (a
    second "worker") records the failures and this one refuses the login."""
    import os
    import subprocess
    import sys

    import redis

    url = "redis://127.0.0.1:6379/7"
    redis.from_url(url).flushdb()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    f.StaffFactory(username="principal", roles=[Role.PRINCIPAL], schools=[school])
    # The other process fails three logins as django.contrib.auth.authenticate reports them (the
    # signal axes counts). It shares Redis with this one, not the test database, so it keeps no
    # failure log rows.
    code = ("import django; django.setup()\n"
            "from django.conf import settings; settings.AXES_ENABLE_ACCESS_FAILURE_LOG = False\n"
            "from django.contrib.auth.signals import user_login_failed\n"
            "from django.test import RequestFactory\n"
            "for _ in range(3):\n"
            "    request = RequestFactory().post('/admin/login/', {'username': 'principal'}, REMOTE_ADDR='10.0.0.9')\n"
            "    user_login_failed.send('worker', credentials={'username': 'principal'}, request=request)\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "skillcore.settings_test", "REDIS_URL": url,
           "LOGIN_THROTTLE_FAILURES": "3", "LOGIN_THROTTLE_MINUTES": "10"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    try:
        from django.test import Client

        assert _post(Client(), "principal", PASSWORD, addr="10.0.0.9").status_code == 429
        assert _post(Client(), "principal", PASSWORD, addr="10.0.0.10").status_code == 302
    finally:
        redis.from_url(url).flushdb()


@pytest.mark.django_db
def test_each_checked_failure_is_in_the_attempt_log_without_the_password(client, school, caplog):
    import logging

    from axes.models import AccessFailureLog

    f.StaffFactory(username="principal", roles=[Role.PRINCIPAL], schools=[school])
    caplog.set_level(logging.DEBUG)
    guesses = ["Autumn2026!", "Winter2026!", "Spring2026!"]
    for guess in guesses:
        assert _post(client, "principal", guess).status_code == 200
    assert _post(client, "principal", PASSWORD).status_code == 429  # refused: not checked, not logged
    rows = list(AccessFailureLog.objects.order_by("id").values("username", "ip_address", "locked_out", "path_info"))
    assert rows == [
        {"username": "principal", "ip_address": "10.0.0.5", "locked_out": locked, "path_info": "/admin/login/"}
        for locked in (False, False, True)
    ]
    stored = "\n".join(str(row) for row in AccessFailureLog.objects.values())
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "Locking out" in logs  # axes did log the lock ...
    for secret in [*guesses, PASSWORD]:  # ... and no password, wrong or right, anywhere
        assert secret not in stored and secret not in logs


@pytest.mark.django_db
def test_the_attempt_log_is_in_the_admin_for_system_admins(client, school):
    admin_user = f.UserFactory(username="sa", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])
    _post(client, "someone", "wrong", addr="10.0.0.8")
    client.force_login(admin_user)
    page = client.get("/admin/axes/accessfailurelog/")
    assert page.status_code == 200
    assert b"someone" in page.content and b"10.0.0.8" in page.content


@pytest.mark.django_db
def test_axes_reset_commands_unlock(client, school):
    from django.core.management import call_command

    f.StaffFactory(username="principal", roles=[Role.PRINCIPAL], schools=[school])
    f.StaffFactory(username="teacher", roles=[Role.TEACHER], schools=[school])

    def lock(username):
        for _ in range(3):
            _post(client, username, "wrong")
        assert _post(client, username, PASSWORD).status_code == 429

    lock("principal")
    lock("teacher")
    call_command("axes_reset_ip_username", "10.0.0.5", "teacher")  # one pair ...
    assert _post(client, "principal", PASSWORD).status_code == 429
    assert _post(client, "teacher", PASSWORD).status_code == 302
    client.logout()
    lock("teacher")
    call_command("axes_reset_username", "principal")  # one username ...
    assert _post(client, "principal", PASSWORD).status_code == 302
    client.logout()
    lock("principal")
    call_command("axes_reset")  # ... or everyone
    assert _post(client, "principal", PASSWORD).status_code == 302
    client.logout()
    assert _post(client, "teacher", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_axes_reset_ip_unlocks_an_address_locked_by_spraying(client, school):
    from django.core.management import call_command

    f.StaffFactory(username="counselor", roles=[Role.COUNSELOR], schools=[school])
    for i in range(12):
        _post(client, f"nobody{i}", "Summer2026!")
    assert _post(client, "counselor", PASSWORD).status_code == 429
    call_command("axes_reset_ip", "10.0.0.5")
    assert _post(client, "counselor", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_forwarded_for_header_does_not_change_the_address(client, school):
    """X-Forwarded-For is the client's to write: rotating it must not escape the lock."""
    f.StaffFactory(username="principal", roles=[Role.PRINCIPAL], schools=[school])
    for i in range(3):
        response = client.post(LOGIN, {"username": "principal", "password": "wrong"},
                               REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=f"192.0.2.{i}")
        assert response.status_code == 200
    locked = client.post(LOGIN, {"username": "principal", "password": PASSWORD},
                         REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="192.0.2.99")
    assert locked.status_code == 429
    assert locked.content.count(b"Too many failed logins") == 1


@pytest.mark.django_db
def test_axes_reset_failure_logs_prunes_the_attempt_log_by_age(client):
    from axes.models import AccessFailureLog
    from django.core.management import call_command

    start = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        _post(client, "old", "wrong")
        clock.shift(dt.timedelta(days=40))
        _post(client, "recent", "wrong")
        call_command("axes_reset_failure_logs", "--age", "30")
    assert list(AccessFailureLog.objects.values_list("username", flat=True)) == ["recent"]
