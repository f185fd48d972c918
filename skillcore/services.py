"""Writes on the access trail itself."""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import connection, transaction

from skillcore.models import AccessLog

STATUTORY_MINIMUM_DAYS = 7 * 365


@transaction.atomic
def access_log_purge(*, now: dt.datetime, retention_days: int | None = None) -> int:
    """Delete access-trail rows older than the retention (at least 7 years, FERPA 99.32).

    On PostgreSQL the append-only trigger lets this DELETE through only because the
    transaction names the cutoff in ``skillcore.access_log_purge_before`` and that cutoff
    is at least 7 years old; any other DELETE is refused by the database.
    """
    days = settings.ACCESS_LOG_RETENTION_DAYS if retention_days is None else retention_days
    if days < STATUTORY_MINIMUM_DAYS:
        raise ValueError(f"the access trail is kept at least 7 years ({STATUTORY_MINIMUM_DAYS} days), not {days}")
    cutoff = now - dt.timedelta(days=days)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('skillcore.access_log_purge_before', %s, true)", [cutoff.isoformat()])
    deleted, _ = AccessLog.objects.filter(at__lt=cutoff).delete()
    return deleted
