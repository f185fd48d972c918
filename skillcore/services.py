"""Writes on the access trail itself."""
from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import connection, transaction

from skillcore.models import AccessLog

# The most days 7 calendar years can span (two leap days): the trigger's line is the
# server's now() - interval '7 years', so a shorter retention would ask it for rows it refuses.
STATUTORY_MINIMUM_DAYS = 7 * 365 + 2


@transaction.atomic
def access_log_purge(*, now: dt.datetime, retention_days: int | None = None) -> int:
    """Delete access-trail rows older than the retention (at least 7 years, FERPA 99.32).

    The only code that deletes trail rows. On PostgreSQL the append-only trigger lets
    each row through only if it is older than the cutoff this transaction names in
    ``skillcore.access_log_purge_before`` AND than the server's ``now() - 7 years`` (a
    session naming a later cutoff gains nothing); any other DELETE, UPDATE or TRUNCATE is
    refused. The application role has no DELETE privilege on the trail, so this runs with the
    owner's connection (``manage.py purge_access_log``, docs/deployment.md "Two database roles").
    """
    days = settings.ACCESS_LOG_RETENTION_DAYS if retention_days is None else retention_days
    if days < STATUTORY_MINIMUM_DAYS:
        raise ValueError(f"the access trail is kept at least 7 years ({STATUTORY_MINIMUM_DAYS} days), not {days}")
    cutoff = now - dt.timedelta(days=days)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The trigger's line is the server's clock at the start of this transaction: never
            # ask for a row it would refuse (one would abort the whole purge).
            cursor.execute("SELECT LEAST(%s::timestamptz, now() - interval '7 years')", [cutoff])
            (cutoff,) = cursor.fetchone()
            cursor.execute("SELECT set_config('skillcore.access_log_purge_before', %s, true)", [cutoff.isoformat()])
    deleted, _ = AccessLog.objects.filter(at__lt=cutoff).delete()
    if connection.vendor == "postgresql":
        # SET LOCAL outlives a savepoint: when called inside a caller's transaction, the
        # permission would last to its end. Withdraw it now.
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('skillcore.access_log_purge_before', '', true)")
    return deleted


def access_log_archive_read(*, now: dt.datetime, actor_label: str, purpose: str,
                            reads: dict[str, tuple[int, list[int]]]) -> int:
    """Record archived rows read back (``manage.py archive_restore``): one trail row per model,
    ``reads`` mapping its label to (rows, student ids). The access trail's execute wrapper
    sees database statements only; a restore reads object storage, so it writes its own rows.
    Returns the rows written."""
    rows = [
        AccessLog(at=now, actor=None, actor_label=actor_label[:150], purpose=purpose[:200], model=model[:100],
                  operation=AccessLog.Operation.READ, query_count=1, row_count=count,
                  student_count=len(set(ids)), student_ids=sorted(set(ids)))
        for model, (count, ids) in sorted(reads.items()) if count
    ]
    AccessLog.objects.bulk_create(rows)
    return len(rows)
