"""Settings read from the environment, failing loudly on a malformed value.

A bad value stops start-up with one line that names the variable (no traceback): the
person fixing a deployment at 2 a.m. needs the variable's name, not Django's internals.
"""
from __future__ import annotations

import secrets
import sys
from pathlib import Path

import environ

_env = environ.Env()


class BadSetting(SystemExit):
    pass


def read_dotenv(path: Path) -> bool:
    """Read ``KEY=value`` lines of ``path`` into os.environ without overriding what is set
    already (django-environ's ``read_env``); False when there is no such file."""
    if not path.is_file():
        return False
    environ.Env.read_env(path, overwrite=False)
    return True


def write_demo_dotenv(path: Path) -> bool:
    """The demo checkout's .env: DEBUG=1 and a SECRET_KEY generated here (sessions survive
    restarts of the demo; no key is ever shared between checkouts). An existing file is
    kept as it is (False): it may hold the user's own settings."""
    if path.exists():
        return False
    path.write_text(
        "# Written by `make demo` for this checkout only; never commit it (.gitignore lists it).\n"
        "DEBUG=1\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
    )
    return True


def fail(name: str, problem: str) -> None:
    print(f"SkillCore: environment variable {name} {problem}", file=sys.stderr)
    raise BadSetting(2)


def get_str(name: str, default: str | None = None) -> str | None:
    return _env.str(name, default=default)


def get_bool(name: str, default: bool) -> bool:
    raw = _env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    fail(name, f"must be true or false, got {raw!r}")


def get_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = _env.str(name, default=None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        fail(name, f"must be a whole number, got {raw!r}")
    if minimum is not None and value < minimum:
        fail(name, f"must be at least {minimum}, got {value}")
    return value


def get_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = _env.str(name, default=None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        fail(name, f"must be a number, got {raw!r}")
    if minimum is not None and value < minimum:
        fail(name, f"must be at least {minimum}, got {value}")
    return value


def get_networks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of CIDR networks (10.0.0.0/8, ::1/128); each is validated."""
    import ipaddress

    items = get_list(name, default)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            fail(name, f"must be a comma-separated list of networks such as 10.0.0.0/8, got {item!r}")
    return items


def get_list(name: str, default: list[str]) -> list[str]:
    raw = _env.str(name, default=None)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def get_db(name: str, default: str) -> dict:
    raw = _env.str(name, default=default)
    if "://" not in raw:
        fail(name, f"must be a URL such as postgres://user@host/db or sqlite:///path, got {raw!r}")
    try:
        config = environ.Env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for a bad URL
        fail(name, f"is not a database URL we understand ({exc})")
    engine = config.get("ENGINE", "")
    if engine not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"}:
        fail(name, f"must point at PostgreSQL or SQLite, got {raw.split(':', 1)[0]!r}")
    if not config.get("NAME"):
        fail(name, "names no database")
    return config


def get_redis_url(name: str) -> str | None:
    raw = _env.str(name, default=None)
    if not raw:
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        fail(name, f"must start with redis://, rediss:// or unix://, got {raw!r}")
    return raw


def get_zone(name: str, default: str) -> str:
    from students.zones import zone_problem  # plain Python: importable before Django is set up

    raw = _env.str(name, default=default)
    if zone_problem(raw):  # the districts' rule: a place's IANA zone, not "localtime" or "Factory"
        fail(name, f"is not an IANA time zone of a place, got {raw!r}")
    return raw


def get_choices(name: str, choices: tuple[str, ...]) -> list[str]:
    """A comma-separated list, each item one of ``choices``."""
    items = get_list(name, [])
    for item in items:
        if item not in choices:
            fail(name, f"must be a comma-separated list of {', '.join(choices)}, got {item!r}")
    return items


def get_archive_key(name: str) -> str:
    """An archive encryption key (skillcore/archives.py), checked; empty when unset."""
    from skillcore.archives import ArchiveKeyError, parse_key  # plain Python

    raw = (get_str(name, "") or "").strip()
    if raw:
        try:
            parse_key(raw)
        except ArchiveKeyError as error:
            fail(name, str(error))
    return raw


def get_archive_keys(name: str) -> list[str]:
    """A comma-separated list of archive encryption keys, each checked."""
    from skillcore.archives import ArchiveKeyError, parse_key

    items = get_list(name, [])
    for n, item in enumerate(items, 1):
        try:
            parse_key(item)
        except ArchiveKeyError as error:
            fail(name, f"item {n} {error}")
    return items
