"""Alert hooks of the scheduling engine. Delivery (mail, chat, pager) is the observability
issue's; for now each hook logs at ERROR so a log shipper can page on it."""
from __future__ import annotations

import logging

logger = logging.getLogger("scheduling.alerts")


def job_failed(run) -> None:
    """A run failed for good: its last attempt failed, timed out or lost its worker."""
    logger.error(
        "job %s for %s failed for good: run #%s attempt %s %s: %s",
        run.job, run.district_id or "global", run.pk, run.attempt, run.status, (run.error or "").splitlines()[:1],
    )
