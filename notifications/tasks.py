"""django-q2 entry points: thin wrappers over delivery and services.

Schedule: declared in ``settings.SCHEDULING_PERIODIC_TASKS``, kept as django-q2 rows by
``manage.py jobs sync`` (scheduling/periodic_tasks.py). ``drain_outbox`` every minute (a
backlog drains in a loop of batches; deferred rows become due at the window start);
``assemble_digests`` every hour with "daily" and with "weekly": it assembles only closed
periods (each district's local day; the week from Monday), so an hourly run is safe and a
digest is assembled within the hour after the district's local midnight — the digests it
writes are held to the window's start by quiet hours for families.
"""
from __future__ import annotations

from notifications import delivery, services


def drain_outbox(batch_size: int = 100, max_batches: int | None = 50) -> dict:
    return delivery.drain(batch_size=batch_size, max_batches=max_batches).as_dict()


def assemble_digests(frequency: str = "daily", job_run_id: int | None = None) -> dict:
    s = services.digests_assemble(frequency=frequency, job_run_id=job_run_id)
    return {"digests": s.digests, "items": s.items, "dropped_revoked": s.dropped_revoked,
            "dropped_no_consent": s.dropped_no_consent}
