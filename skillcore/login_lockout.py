"""Admin login lockout: django-axes, configured to keep SkillCore's rules (settings: AXES_*).

What axes does for us: AxesStandaloneBackend refuses an authentication while the client is
locked, the auth signals count failures, AxesMiddleware turns a refusal into the lockout page,
and `manage.py axes_reset` (and axes_reset_ip / _username / _ip_username) unlock.

What this module adds, and why:
- The counters live in the default cache (``LockoutHandler`` is axes' cache handler): Redis
  when REDIS_URL is set, which every web process of a deployment shares, so a guesser gains
  nothing by landing on another process. Nothing hits the database to decide a login.
- Two limits, as before axes: LOGIN_THROTTLE_FAILURES failures for one (username, address)
  lock that pair; ADDRESS_FACTOR times as many from one address over any usernames lock the
  address (one common password sprayed over many accounts). Axes has one limit for all its
  lockout parameters, so the address counter is kept here beside axes' own.
- The attempt whose password was checked and failed gets the form's own error, even when it
  is the one that reaches the limit; from the next attempt on every login is refused with the
  lockout page (429), a correct password too, or a guesser would learn it by the response.
  A refused attempt is not counted (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT is off), so
  the lock ends LOGIN_THROTTLE_MINUTES after the last checked failure however hard it is hammered.
- Every checked failure is written to axes' AccessFailureLog (username, address, user agent,
  whether it locked), read-only in admin for system admins. Never a password: axes passes
  only the username on; its log lines mask username and address (AXES_SENSITIVE_PARAMETERS).
  Refused attempts are not logged, so one address writes at most ADDRESS_FACTOR x limit rows
  per cool-off. The log also tells ``reset_attempts`` which counters may still be live: axes'
  own cache handler cannot find them (its keys are hashes) and refuses `axes_reset`.

The client address is REMOTE_ADDR (``client_address``): behind a reverse proxy configure the
proxy to set it (gunicorn forwarded-allow-ips); X-Forwarded-For is not trusted because any
client can send it. Set explicitly so installing django-ipware never changes the rule.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging

from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache, get_client_cache_keys, get_cool_off, get_failure_limit
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)

# The address-wide limit is this many times the per-(username, address) limit.
ADDRESS_FACTOR = 4


def client_address(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the socket's peer address, never a header the client writes."""
    return request.META.get("REMOTE_ADDR") or None


def failure_limit(request, credentials) -> int:
    """AXES_FAILURE_LIMIT: read at each use, so LOGIN_THROTTLE_FAILURES stays the one setting."""
    return settings.LOGIN_THROTTLE_FAILURES


def cool_off(request) -> dt.timedelta:
    """AXES_COOLOFF_TIME: how long a lock lasts after the last counted failure."""
    return dt.timedelta(minutes=settings.LOGIN_THROTTLE_MINUTES)


def lockout_response(request, original_response, credentials):
    """AXES_LOCKOUT_CALLABLE: the admin login page with one error and status 429."""
    from django.contrib import admin
    from django.contrib.admin.forms import AdminAuthenticationForm
    from django.forms.utils import ErrorDict
    from django.template.response import TemplateResponse

    username = str((credentials or {}).get("username") or request.POST.get("username", ""))[:150]
    form = AdminAuthenticationForm(request, data={"username": username})
    # Errors set directly: form.errors would run clean(), which checks the password.
    form._errors = ErrorDict({"__all__": form.error_class([
        f"Too many failed logins. Try again in {settings.LOGIN_THROTTLE_MINUTES} minutes.",
    ])})
    site = admin.site
    context = {
        **site.each_context(request), "title": "Log in", "subtitle": None, "form": form,
        "app_path": request.get_full_path(), "username": username,
        "next": request.POST.get("next") or request.GET.get("next", ""),
    }
    # Rendered here: a response replaced in middleware is past the point where Django renders.
    return TemplateResponse(request, site.login_template or "admin/login.html", context, status=429).render()


def _address_key(address: str | None) -> str:
    return "axes-address-" + hashlib.sha256((address or "").encode()).hexdigest()


class LockoutHandler(AxesCacheHandler):
    """AXES_HANDLER: axes' cache handler plus the address-wide limit and the failure log."""

    def __init__(self):  # axes keeps one cache object from start-up; see ``cache``
        pass

    @property
    def cache(self):
        # Looked up at each use: Django's cache objects are per thread, and a test (or a
        # settings change) that swaps CACHES must reach the handler too.
        return get_cache()

    def get_failures(self, request, credentials=None) -> int:
        """The larger of the pair's count and the address count scaled to the same limit."""
        per_pair = super().get_failures(request, credentials)
        per_address = self.cache.get(_address_key(request.axes_ip_address), 0)
        return max(per_pair, per_address // ADDRESS_FACTOR)

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        if request is None:
            return super().user_login_failed(sender, credentials, request, **kwargs)
        # Set by AxesStandaloneBackend when it refused this attempt without checking the password.
        refused = request.axes_locked_out
        super().user_login_failed(sender, credentials, request, **kwargs)
        if refused or self.is_whitelisted(request, credentials):
            return
        key, timeout = _address_key(request.axes_ip_address), int(cool_off(request).total_seconds())
        # add() then incr(), as axes does for its own keys: atomic in Redis, so two processes
        # counting the same address at once both count.
        if not self.cache.add(key, 1, timeout=timeout):
            self.cache.incr(key)
            self.cache.touch(key, timeout=timeout)
        locked = self.get_failures(request, credentials) >= get_failure_limit(request, credentials)
        if locked:
            log.warning("Admin login locked for %s minutes after repeated failures.", settings.LOGIN_THROTTLE_MINUTES)
        # This attempt's password was checked: it gets the form's error; the lock refuses the next.
        request.axes_locked_out = False
        if settings.AXES_ENABLE_ACCESS_FAILURE_LOG:
            AccessFailureLog.objects.create(
                username=str(credentials.get(settings.AXES_USERNAME_FORM_FIELD) or "")[:255],
                ip_address=request.axes_ip_address, user_agent=request.axes_user_agent,
                http_accept=request.axes_http_accept, path_info=request.axes_path_info,
                attempt_time=request.axes_attempt_time, locked_out=locked,
            )

    def reset_attempts(self, *, ip_address=None, username=None, ip_or_username=False) -> int:
        """Unlock: delete the live counters of the matching failures (all when no filter).

        The counters' keys are hashes, so they are found through the failure log: every
        counted failure has a row, and a counter outlives its last failure by the cool-off."""
        rows = AccessFailureLog.objects.filter(attempt_time__gte=timezone.now() - get_cool_off())
        if ip_or_username:
            rows = rows.filter(ip_address=ip_address) | rows.filter(username=username)
        else:
            if ip_address:
                rows = rows.filter(ip_address=ip_address)
            if username:
                rows = rows.filter(username=username)
        keys = set()
        for user, address in rows.values_list("username", "ip_address").distinct():
            keys.update(get_client_cache_keys(AccessAttempt(username=user, ip_address=address)))
            if ip_address or not username:  # unlocking a username leaves its guesser's address locked
                keys.add(_address_key(address))
        if ip_address:
            keys.add(_address_key(ip_address))
        count = sum(1 for key in sorted(keys) if self.cache.delete(key))
        log.info("Admin login lockout: %d counters reset.", count)
        return count

    def reset_failure_logs(self, *, age_days=None) -> int:
        """`manage.py axes_reset_failure_logs --age DAYS`: the log is this handler's to prune."""
        rows = AccessFailureLog.objects.all()
        if age_days is not None:
            rows = rows.filter(attempt_time__lte=timezone.now() - dt.timedelta(days=age_days))
        return rows.delete()[0]
