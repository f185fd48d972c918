"""Prometheus counters of job runs, kept when a run's state changes (scheduling/counters.py).
Imported by scheduling/models.py so Django sees it as the scheduling app's model.

One row per (job, district): the /metrics scrape reads these few thousand rows instead of
grouping the whole JobRun history, so its cost does not grow with history, and pruning old
runs never lowers a counter (Prometheus counters must be monotonic).
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

# Seconds. Jobs range from a few seconds (stream cleanup) to an hour (archival, rollover).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


def bucket_field(bound: float) -> str:
    """The counter column of one histogram bucket: ``le_60`` counts durations <= 60 s."""
    return f"le_{int(bound)}"


class JobRunCounter(models.Model):
    """Runs of one job in one district (district NULL: a global job) since the beginning,
    by outcome; the duration histogram's buckets are cumulative, as Prometheus wants them."""

    job = models.CharField(max_length=100)
    district = models.ForeignKey("students.District", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    executions = models.PositiveBigIntegerField(default=0, help_text="Succeeded, failed or timed out.")
    failures = models.PositiveBigIntegerField(default=0, help_text="Failed or timed out (every attempt).")
    timeouts = models.PositiveBigIntegerField(default=0)
    missed = models.PositiveBigIntegerField(default=0)
    skipped = models.PositiveBigIntegerField(default=0)
    timed = models.PositiveBigIntegerField(default=0, help_text="Executed runs with a recorded duration (+Inf bucket).")
    duration_sum = models.FloatField(default=0.0)
    le_1 = models.PositiveBigIntegerField(default=0)
    le_5 = models.PositiveBigIntegerField(default=0)
    le_15 = models.PositiveBigIntegerField(default=0)
    le_30 = models.PositiveBigIntegerField(default=0)
    le_60 = models.PositiveBigIntegerField(default=0)
    le_120 = models.PositiveBigIntegerField(default=0)
    le_300 = models.PositiveBigIntegerField(default=0)
    le_600 = models.PositiveBigIntegerField(default=0)
    le_1800 = models.PositiveBigIntegerField(default=0)
    le_3600 = models.PositiveBigIntegerField(default=0)
    le_7200 = models.PositiveBigIntegerField(default=0)
    last_success = models.DateTimeField(null=True, blank=True, help_text="When the latest successful run finished.")

    class Meta:
        constraints = [
            # The upsert's conflict target; NULLs are distinct in a unique index, so global
            # jobs get their own constraint (as JobSchedule).
            models.UniqueConstraint(fields=["job", "district"], condition=Q(district__isnull=False),
                                    name="jobruncounter_one_per_district"),
            models.UniqueConstraint(fields=["job"], condition=Q(district__isnull=True), name="jobruncounter_one_global"),
        ]

    def __str__(self) -> str:
        return f"{self.job} @ {self.district_id or 'global'}: {self.executions} executed"


class AlertDeliveryCounter(models.Model):
    """Alert deliveries (scheduling.AlertDelivery) per channel by outcome since the
    beginning: ``scheduled_job_alert_deliveries_total{channel,outcome}``. Kept when a
    delivery settles (scheduling/counters.py), so a resend of a failed delivery does not
    lower ``failed`` and the scrape does not group the whole outbox."""

    channel = models.CharField(max_length=10, unique=True)
    sent = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveBigIntegerField(default=0, help_text="Given up (permanent error or attempts exhausted).")

    def __str__(self) -> str:
        return f"{self.channel}: {self.sent} sent, {self.failed} failed"
