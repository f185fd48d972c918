"""Student data in transit: which configured connection would carry it in clear text.

The settings call ``plaintext_connections`` in production (DEBUG off) and refuse to start on
the first connection it names, unless that connection's service is listed in
ALLOW_PLAINTEXT_TRANSPORT. docs/deployment.md ("Encryption in transit") is the operator's page.

What counts as encrypted, per service:
- database: ``sslmode=verify-full`` with ``sslrootcert`` (a CA file that exists, or libpq's
  ``system``) in DATABASE_URL's query. ``require`` and ``verify-ca`` are refused: ``require``
  authenticates nobody (anyone in the path can pose as the server), ``verify-ca`` accepts any
  certificate the CA ever signed, for any host.
- redis: ``rediss://``, without ``ssl_cert_reqs=none|optional`` or ``ssl_check_hostname=false``
  (redis-py verifies the certificate and the host name by default; those would turn it off).
- email: the SMTP backend with EMAIL_USE_TLS (STARTTLS) or EMAIL_USE_SSL; Django's SMTP
  backend verifies the server's certificate against the system's CAs. An HTTPS API backend
  (anymail) is https by construction.
- s3: an ``https://`` ARCHIVE_S3_ENDPOINT_URL (none at all: the provider's https default).
- http: FCM_ENDPOINT, PAGERDUTY_EVENTS_URL, SLACK_WEBHOOK_URL and TWILIO_API_BASE_URL are https.

Why a connection to this machine needs no TLS: a unix socket or loopback address (localhost,
127.0.0.0/8, ::1) never leaves the host; whoever can read loopback traffic is root there and
can read the database's files and the process's memory anyway, so TLS would add a certificate
to manage and protect nothing. Any other name, including a private address or a container
network's service name, is treated as a network: the override is the explicit way to accept it.

Plain Python: the settings import this module before Django is set up.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SERVICES = ("database", "redis", "email", "s3", "http")
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


@dataclass(frozen=True)
class Plaintext:
    service: str   # one of SERVICES: the word ALLOW_PLAINTEXT_TRANSPORT takes
    variable: str  # the environment variable to fix
    problem: str   # one line, completing "environment variable <variable> ..."


def is_local(host: str | None) -> bool:
    """True for a unix socket (no host, or a directory) or a loopback name or address."""
    host = unquote(host or "").strip().strip("[]")  # DATABASE_URL spells a socket directory %2Fvar%2Frun...
    if not host or host.startswith("/") or host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    if host.lower().endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _database(db: dict, environ=os.environ) -> Plaintext | None:
    options = db.get("OPTIONS", {})
    # Django passes HOST as libpq's host, else OPTIONS' (``?host=/var/run/postgresql``).
    # What neither names, libpq takes from its environment (PGHOST, PGSSLMODE, PGSSLROOTCERT):
    # DATABASE_URL=postgres:///skillcore with PGHOST=db.internal goes over the network.
    host = db.get("HOST") or options.get("host") or environ.get("PGHOST")
    if "postgresql" not in db.get("ENGINE", "") or is_local(host):
        return None
    mode = options.get("sslmode") or environ.get("PGSSLMODE", "")
    ca = options.get("sslrootcert") or environ.get("PGSSLROOTCERT", "")
    where = f"connects to {host} over the network"
    if mode != "verify-full":
        return Plaintext("database", "DATABASE_URL",
                         f"{where} with sslmode={mode or 'prefer (the default)'}: add "
                         "?sslmode=verify-full&sslrootcert=<CA file> (require and verify-ca do not check who answers)")
    if ca != "system" and not (ca and os.path.isfile(ca)):
        return Plaintext("database", "DATABASE_URL",
                         f"{where} with sslmode=verify-full but sslrootcert={ca or '(none)'} is not a CA file that exists")
    return None


def _redis(url: str | None) -> Plaintext | None:
    if not url or url.startswith("unix://"):
        return None
    parts = urlsplit(url)
    if is_local(parts.hostname):
        return None
    if parts.scheme != "rediss":
        return Plaintext("redis", "REDIS_URL", f"connects to {parts.hostname} in clear text: use rediss://")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    if query.get("ssl_cert_reqs") in {"none", "optional"} or query.get("ssl_check_hostname") in {"false", "0", "no", "n"}:
        return Plaintext("redis", "REDIS_URL",
                         f"turns off the check of {parts.hostname}'s certificate (ssl_cert_reqs / ssl_check_hostname)")
    return None


def _email(backend: str, host: str, use_tls: bool, use_ssl: bool) -> Plaintext | None:
    if backend != SMTP_BACKEND or is_local(host) or use_tls or use_ssl:
        return None
    return Plaintext("email", "EMAIL_HOST",
                     f"is {host} over the network without TLS: set EMAIL_USE_TLS (STARTTLS, port 587) or EMAIL_USE_SSL (port 465)")


def _https(variable: str, service: str, url: str) -> Plaintext | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "https" or is_local(parts.hostname):
        return None
    return Plaintext(service, variable, f"is {parts.scheme}:// to {parts.hostname}: use https://")


def plaintext_connections(*, database: dict, redis_url: str | None, email_backend: str, email_host: str,
                          email_use_tls: bool, email_use_ssl: bool, s3_bucket: str, s3_endpoint: str,
                          http_urls: dict[str, str]) -> list[Plaintext]:
    """Every configured connection that would carry student data unencrypted over a network."""
    found = [
        _database(database),
        _redis(redis_url),
        _email(email_backend, email_host, email_use_tls, email_use_ssl),
        _https("ARCHIVE_S3_ENDPOINT_URL", "s3", s3_endpoint) if s3_bucket else None,
        *(_https(variable, "http", url) for variable, url in http_urls.items()),
    ]
    return [p for p in found if p is not None]
