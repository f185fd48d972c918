"""Admin login throttle: refuse further attempts after repeated failures.

Two counters in the default cache, both counting *failed* logins within a window of
LOGIN_THROTTLE_MINUTES:
- one per (username, client address): LOGIN_THROTTLE_FAILURES failures lock that username
  from that address (guessing one account's password);
- one per client address: 4 x LOGIN_THROTTLE_FAILURES failures lock the address for every
  username (trying one common password over many accounts).
While locked, even a correct password is refused, or a guesser would learn it by the
response. A successful login clears its (username, address) counter. The lock ends by
itself when the window expires; nothing is stored in the database.

The client address is REMOTE_ADDR: behind a reverse proxy configure the proxy to set it
(uwsgi/gunicorn forwarded-allow-ips); X-Forwarded-For is not trusted here because any
client can send it.
"""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

PREFIX = "skillcore:login-throttle:"


def _window() -> int:
    return settings.LOGIN_THROTTLE_MINUTES * 60


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _keys(username: str, address: str) -> tuple[str, str]:
    # Hash the username: cache keys must be short and free of spaces/control characters,
    # and a username typed in the login box can be anything.
    user_part = hashlib.sha256((username or "").strip().lower().encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{PREFIX}user:{user_part}:{address}", f"{PREFIX}addr:{address}"


def is_locked(*, username: str, address: str) -> bool:
    user_key, addr_key = _keys(username, address)
    counts = cache.get_many([user_key, addr_key])
    limit = settings.LOGIN_THROTTLE_FAILURES
    return counts.get(user_key, 0) >= limit or counts.get(addr_key, 0) >= 4 * limit


def record_failure(*, username: str, address: str) -> None:
    for key in _keys(username, address):
        # add() starts the window on the first failure; incr() keeps the key's expiry, so
        # the lock lasts at most LOGIN_THROTTLE_MINUTES after the first failure of the run.
        if not cache.add(key, 1, timeout=_window()):
            try:
                cache.incr(key)
            except ValueError:  # expired between add() and incr()
                cache.add(key, 1, timeout=_window())


def clear(*, username: str, address: str) -> None:
    cache.delete(_keys(username, address)[0])
