"""Error pages and error e-mails that never show a secret.

Django's DEBUG page (and the report mailed to ADMINS) lists every setting, the request's
META (under runserver: the whole environment, DATABASE_URL and REDIS_URL included) and the
local variables of every frame. Its default filter hides settings whose *name* says API,
AUTH, TOKEN, KEY, SECRET, PASS or SIGNATURE, which misses ``SLACK_WEBHOOK_URL`` (the
webhook's path is its secret), the password inside ``REDIS_URL`` (also copied into CACHES
and Q_CLUSTER) and any secret a frame holds in a local variable or an exception message
(``Max retries exceeded with url: /services/T0/B0/...``).

So, three layers:

1. ``SecretsHiddenFilter`` hides more names (webhooks, credentials, DSNs, private keys)
   and cleanses the password and the secret query parameters of every URL it shows,
   whatever its name (REDIS_URL keeps its host); it applies the
   ``sensitive_variables``/``sensitive_post_parameters`` markings with DEBUG on as well.
2. ``SecretsScrubbedReporter`` replaces, in the finished page or text, every value a
   secret setting or environment variable holds (and a secret URL's path), wherever it
   appears: frame variables, exception messages, template context.
3. Both are the project's defaults (settings: DEFAULT_EXCEPTION_REPORTER_FILTER and
   DEFAULT_EXCEPTION_REPORTER), so DEBUG pages, technical_500_response and AdminEmailHandler
   all go through them.
"""
from __future__ import annotations

import html
import os
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.regex_helper import _lazy_re_compile
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute

# Setting, META and variable names whose whole value is secret. Connection URLs
# (DATABASE_URL, REDIS_URL, a cache's LOCATION) are not: their host helps whoever reads the
# page, and their password is starred wherever it appears (``cleanse_text``).
SECRET_NAMES = _lazy_re_compile(
    r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL|WEBHOOK|DSN|PRIVATE",
    flags=re.I,
)
# scheme://user:password@host -> the password; ?token=... / &api_key=... -> the value.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:@/\s'\"]*:)(?P<secret>[^@/\s'\"]+)(?P<at>@)", re.I)
_URL_PARAM = re.compile(
    r"(?P<head>[?&][^=&\s'\"]*(?:key|token|secret|password|passwd|pwd|signature|sig|auth)[^=&\s'\"]*=)"
    r"(?P<secret>[^&#\s'\"]+)", re.I)
_MIN_SECRET = 6  # shorter values would blank ordinary words of the page


def cleanse_text(text: str) -> str:
    """A string with the passwords of its URLs and its secret query values starred."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + SUBSTITUTE + m["at"], text)
    return _URL_PARAM.sub(lambda m: m["head"] + SUBSTITUTE, text)


def _secret_parts(value: str) -> set[str]:
    """What to scrub for one secret value: itself, and for a URL its password and its path
    (a Slack webhook's path is the secret; errors quote the path without the host)."""
    parts = {value}
    for m in _URL_PASSWORD.finditer(value):
        parts.add(m["secret"])
    for m in _URL_PARAM.finditer(value):
        parts.add(m["secret"])
    try:
        split = urlsplit(value)
    except ValueError:
        split = None
    if split is not None and split.scheme and split.netloc and split.path not in ("", "/"):
        parts.add(split.path + (f"?{split.query}" if split.query else ""))
    return {p for p in parts if len(p) >= _MIN_SECRET}


def _walk(name: str, value, found: set[str], secret: bool = False) -> None:
    secret = secret or bool(SECRET_NAMES.search(name))
    if isinstance(value, str):
        if secret:
            found |= _secret_parts(value)
        else:  # a URL with a password under an innocent name ("LOCATION", "redis")
            for m in _URL_PASSWORD.finditer(value):
                found |= {m["secret"]} if len(m["secret"]) >= _MIN_SECRET else set()
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(str(k), v, found, secret)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _walk(name, v, found, secret)


def secret_values() -> set[str]:
    """Every secret the running process holds in its settings and environment."""
    found: set[str] = set()
    for name in dir(settings):
        if name.isupper():
            _walk(name, getattr(settings, name, None), found)
    for name, value in os.environ.items():
        # A file path under a secret-sounding name (XAUTHORITY, SSL_CERT_FILE) names where
        # a secret is, not the secret; scrubbing it would blank the traceback's file names.
        if not value.startswith("/"):
            _walk(name, value, found)
    return found


class SecretsHiddenFilter(SafeExceptionReporterFilter):
    hidden_settings = SECRET_NAMES

    def is_active(self, request):
        # Django applies @sensitive_variables / @sensitive_post_parameters only with DEBUG
        # off; the DEBUG page is exactly where an operator shares a screenshot.
        return True

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        return cleanse_text(cleansed) if isinstance(cleansed, str) else cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [(name, SUBSTITUTE if SECRET_NAMES.search(name) and value is not None and not callable(value) else value)
                for name, value in super().get_traceback_frame_variables(request, tb_frame)]


class SecretsScrubbedReporter(ExceptionReporter):
    """The page as Django builds it, then every known secret value replaced (longest first,
    so a URL goes before its own path), raw and HTML-escaped."""

    def _scrub(self, text: str, *, escaped: bool) -> str:
        for value in sorted(secret_values(), key=len, reverse=True):
            text = text.replace(value, SUBSTITUTE)
            if escaped:
                text = text.replace(html.escape(value), SUBSTITUTE)
        return cleanse_text(text)

    def get_traceback_html(self):
        return self._scrub(super().get_traceback_html(), escaped=True)

    def get_traceback_text(self):
        return self._scrub(super().get_traceback_text(), escaped=False)
