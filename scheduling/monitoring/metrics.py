"""Job metrics for Prometheus, read from the database at scrape time.

Web servers and qcluster workers are separate processes (and machines): counters kept in
process memory would disagree between them and reset on every restart. So the counters
live in the database too: JobRunCounter, one row per (job, district), is updated in the
same transaction as each run's outcome (scheduling/counters.py), NotificationCounter and
AlertDeliveryCounter, one row per channel, in the transaction of each delivery's outcome
(notifications/counters.py, scheduling/counters.py), and a custom prometheus_client
Collector reads those rows when /metrics is scraped; any process serves the same numbers.
They are monotonic: pruning run history, archiving sent notifications or resending a
failed one does not lower them.

Cost: a fixed number of queries per scrape whatever the number of schedules, runs or
notifications (``QUERIES_ORM_BROKER``, asserted by the tests), and none of them reads the
run or delivery history: the counter rows (one per job and district, one per channel), the
queued/running runs and the waiting notifications and alert deliveries (a few, through
indexes), the schedules (next slot), and a few small counts. No correlated subquery per
schedule: at 6,500 schedules that alone took seconds. See docs/observability.md for
figures.
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, IntegerField, QuerySet, Value
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY

from scheduling import registry
from scheduling.models import DURATION_BUCKETS, CalendarSkipCounter, JobRunCounter, bucket_field

# Queries per scrape: run counters, calendar skips, queued/running gauges, schedules,
# heartbeat, overdue, queue (ORM broker only), notification and alert-delivery counters,
# notifications and alert deliveries waiting, open incidents.
QUERIES_ORM_BROKER = 10
QUERIES_REDIS_BROKER = 9


@dataclass(frozen=True)
class OutboxSource:
    """An outbox of another app whose deliveries /metrics reports (notifications), added with
    ``add_outbox_source`` from that app's ``ready()``: the engine counts it without importing it.

    ``counters()`` yields rows with ``channel``, ``sent``, ``failed`` (kept at write time);
    ``waiting()`` the rows not settled yet (each has ``channel``); ``families()`` the metric
    families it fills (keys unique across sources); ``add(fam, channel, sent=, failed=,
    waiting=)`` fills them for one channel.
    """

    name: str
    channels: tuple[str, ...]
    counters: Callable[[], QuerySet]
    waiting: Callable[[], QuerySet]
    families: Callable[[], dict]
    add: Callable[..., None]


_sources: dict[str, OutboxSource] = {}


def add_outbox_source(source: OutboxSource) -> None:
    """Count ``source`` on /metrics (idempotent per name); its queries join the scrape's two
    UNION queries, so the scrape's query count does not grow with the sources."""
    _sources[source.name] = source


# Per-job figures summed over districts (every counter column but last_success).
SUMMED = ("executions", "failures", "timeouts", "missed", "skipped", "timed", "duration_sum",
          *(bucket_field(b) for b in DURATION_BUCKETS))


class JobMetricsCollector:
    """A prometheus_client collector (``collect()`` yields metric families)."""

    def describe(self):
        # Registering calls describe(): returning the families without samples keeps
        # registration free of database queries (it happens at import time).
        return list(self._families().values())

    def collect(self):
        started = time.monotonic()
        families = self._families()
        self._fill(families)
        families["scrape"].add_metric([], time.monotonic() - started)
        return list(families.values())

    # -- the families ---------------------------------------------------------------------
    @staticmethod
    def _families() -> dict:
        return {
            "executions": CounterMetricFamily(
                "scheduled_job_executions", "Runs that executed (succeeded, failed or timed out), by job.", labels=["job"]),
            "failures": CounterMetricFamily(
                "scheduled_job_failures", "Runs that failed or timed out (every attempt), by job.", labels=["job"]),
            "timeouts": CounterMetricFamily(
                "scheduled_job_timeouts", "Runs that timed out, by job.", labels=["job"]),
            "missed": CounterMetricFamily(
                "scheduled_job_missed_runs", "Slots recorded as missed (no scheduler running in time), by job.", labels=["job"]),
            "skipped": CounterMetricFamily(
                "scheduled_job_skipped_runs", "Slots recorded as skipped (paused, overlap with a run still going, or the school calendar), by job.",
                labels=["job"]),
            "calendar_skipped": CounterMetricFamily(
                "scheduled_job_skipped",
                "Slots of school-days jobs not run because the school calendar has no school that day, "
                "by job and the calendar's reason (never alerted).", labels=["job", "reason"]),
            "duration": HistogramMetricFamily(
                "scheduled_job_duration_seconds", "Duration of executed runs, by job.", labels=["job"]),
            "running": GaugeMetricFamily("scheduled_job_running", "Runs in progress, by job.", labels=["job"]),
            "queued": GaugeMetricFamily("scheduled_job_queued", "Runs queued and not started, by job.", labels=["job"]),
            "next": GaugeMetricFamily(
                "scheduled_job_next_execution_seconds",
                "Seconds until the next slot (negative: overdue), by job and district id ('global').",
                labels=["job", "district"]),
            "last_success": GaugeMetricFamily(
                "scheduled_job_last_success_timestamp_seconds",
                "Unix time the last successful run finished, by job and district id ('global').",
                labels=["job", "district"]),
            "heartbeat": GaugeMetricFamily(
                "scheduled_job_scheduler_last_heartbeat_timestamp_seconds",
                "Unix time any scheduler last ran a pass (absent: never)."),
            "overdue": GaugeMetricFamily(
                "scheduled_job_overdue_schedules", "Live schedules overdue by more than the grace (scheduler not running)."),
            "queue": GaugeMetricFamily("scheduled_job_queue_depth", "Tasks waiting in the django-q2 broker.", labels=["broker"]),
            **{key: family for source in _sources.values() for key, family in source.families().items()},
            "alerts": CounterMetricFamily(
                "scheduled_job_alert_deliveries",
                "Alert deliveries settled, by channel and outcome (sent, or failed for good).", labels=["channel", "outcome"]),
            "alerts_waiting": GaugeMetricFamily(
                "scheduled_job_alert_deliveries_waiting", "Alert deliveries pending or sending (retrying), by channel.",
                labels=["channel"]),
            "incidents": GaugeMetricFamily(
                "scheduled_job_open_incidents", "Open incidents by kind and severity.", labels=["kind", "severity"]),
            "scrape": GaugeMetricFamily(
                "scheduled_job_metrics_scrape_seconds", "Time spent computing the job metrics for this scrape."),
        }

    def _fill(self, fam: dict) -> None:
        from scheduling import selectors
        from scheduling.models import AlertDelivery, AlertDeliveryCounter, Incident, JobRun, JobSchedule

        now = timezone.now()
        S = JobRun.Status
        # 1. The counters, one row per (job, district), kept at write time
        #    (scheduling/counters.py): the scrape never reads the run history.
        per_job: dict[str, dict] = {}
        last_ok: dict[tuple[str, int | None], dt.datetime] = {}
        for row in JobRunCounter.objects.order_by().values("job", "district_id", "last_success", *SUMMED):
            if row["last_success"] is not None:
                last_ok[(row["job"], row["district_id"])] = row["last_success"]
            total = per_job.setdefault(row["job"], dict.fromkeys(SUMMED, 0))
            for key in SUMMED:
                total[key] += row[key]
        # 1b. The school calendar's skips, one row per (job, reason), kept at write time.
        for slug, reason, n in CalendarSkipCounter.objects.order_by("job", "reason").values_list("job", "reason", "skipped"):
            fam["calendar_skipped"].add_metric([slug, reason], n)
        # 2. The gauges, counted live: queued and running rows are few, found through the
        #    (status, deadline) index whatever the size of the history.
        live: dict[tuple[str, str], int] = {}
        for slug, status, n in (JobRun.objects.filter(status__in=[S.QUEUED, S.RUNNING]).order_by()
                                .values_list("job", "status").annotate(n=Count("id"))):
            live[(slug, status)] = n
        # Every registered job appears, with zeros before its first run (absent series
        # make "rate(...) == 0" alert rules silently never fire).
        slugs = sorted({j.slug for j in registry.all_jobs()} | set(per_job) | {slug for slug, _ in live})
        for slug in slugs:
            row = per_job.get(slug)

            def get(key, row=row):
                return row[key] if row else 0

            fam["executions"].add_metric([slug], get("executions"))
            fam["failures"].add_metric([slug], get("failures"))
            fam["timeouts"].add_metric([slug], get("timeouts"))
            fam["missed"].add_metric([slug], get("missed"))
            fam["skipped"].add_metric([slug], get("skipped"))
            fam["running"].add_metric([slug], live.get((slug, S.RUNNING), 0))
            fam["queued"].add_metric([slug], live.get((slug, S.QUEUED), 0))
            buckets = [(_le(b), get(bucket_field(b))) for b in DURATION_BUCKETS] + [("+Inf", get("timed"))]
            fam["duration"].add_metric([slug], buckets, sum_value=float(get("duration_sum") or 0.0))

        # 3. One query over live schedules: the next slot (from the django-q2 row); the last
        #    success per (job, district) came with step 1.
        schedules = (
            JobSchedule.objects.filter(removed_at__isnull=True).order_by()
            .values_list("job", "district_id", "paused", "q_schedule__next_run", "q_schedule__repeats")
        )
        for slug, district_id, paused, next_run, repeats in schedules:
            labels = [slug, str(district_id) if district_id is not None else "global"]
            if next_run is not None and not paused and repeats != 0:
                fam["next"].add_metric(labels, (next_run - now).total_seconds())
            last = last_ok.get((slug, district_id))
            if last is not None:
                fam["last_success"].add_metric(labels, last.timestamp())

        # 4. The scheduler: last heartbeat, overdue schedules.
        beat = selectors.last_scheduler_heartbeat()
        if beat is not None:
            fam["heartbeat"].add_metric([], beat.timestamp())
        fam["overdue"].add_metric([], selectors.overdue_schedules(now).order_by().count())

        # 5. Queue depth: OrmQ rows (one count) or the Redis list's length (no SQL).
        fam["queue"].add_metric(["redis" if settings.Q_CLUSTER.get("redis") else "orm"], _broker().queue_size())

        # 6. The outboxes: alert deliveries and every registered source (notifications).
        #    Sent and failed are counters kept at write time (a row per channel): one UNION
        #    query over those small tables. Waiting is a gauge, counted live over the rows not
        #    settled yet, which each outbox's status index finds whatever the size of the sent
        #    history: one UNION query.
        DS = AlertDelivery.Status
        outcomes = {("alert", ch): (0, 0) for ch in AlertDelivery.Channel.values}
        counters = _tagged(AlertDeliveryCounter.objects, "alert", "channel", "sent", "failed")
        waiting_rows = _tagged(AlertDelivery.objects.filter(status__in=[DS.PENDING, DS.SENDING]), "alert", "channel")
        waiting_rows = waiting_rows.annotate(n=Count("id"))
        for source in _sources.values():
            outcomes.update({(source.name, ch): (0, 0) for ch in source.channels})
            counters = counters.union(_tagged(source.counters(), source.name, "channel", "sent", "failed"), all=True)
            waiting_rows = waiting_rows.union(
                _tagged(source.waiting(), source.name, "channel").annotate(n=Count("id")), all=True)
        for name, ch, sent, failed in counters:
            outcomes[(name, ch)] = (sent, failed)
        waiting = dict.fromkeys(outcomes, 0)
        for name, ch, n in waiting_rows:
            waiting[(name, ch)] = n
        for (name, ch), (sent, failed) in sorted(outcomes.items()):
            if name == "alert":
                fam["alerts"].add_metric([ch, DS.SENT], sent)
                fam["alerts"].add_metric([ch, DS.FAILED], failed)
                fam["alerts_waiting"].add_metric([ch], waiting[(name, ch)])
            else:
                _sources[name].add(fam, ch, sent=sent, failed=failed, waiting=waiting[(name, ch)])

        # 7. Open incidents by kind.
        open_incidents = (
            Incident.objects.filter(resolved_at__isnull=True).order_by().values("kind", "severity")
            .annotate(n=Count("id", output_field=IntegerField()))
        )
        seen = set()
        for row in open_incidents:
            seen.add((row["kind"], row["severity"]))
            fam["incidents"].add_metric([row["kind"], row["severity"]], row["n"])
        for kind in Incident.Kind.values:  # zeros, so "> 0" rules see the series
            for severity in Incident.Severity.values:
                if (kind, severity) not in seen:
                    fam["incidents"].add_metric([kind, severity], 0)


def _le(bound: float) -> str:
    return str(bound)


def _tagged(qs, source: str, *fields: str):
    """``SELECT 'source', fields...`` of ``qs``: the two sides of a UNION told apart."""
    return qs.order_by().annotate(source=Value(source)).values_list("source", *fields)


_broker_instance = None


def _broker():
    """The configured django-q2 broker, created once per process (a Redis connection pool)."""
    global _broker_instance
    if _broker_instance is None:
        from django_q.brokers import get_broker

        _broker_instance = get_broker()
    return _broker_instance


_collector: JobMetricsCollector | None = None


def register() -> JobMetricsCollector:
    """Add the collector to prometheus_client's default registry (the one django-prometheus
    exports); idempotent."""
    global _collector
    if _collector is None:
        collector = JobMetricsCollector()
        REGISTRY.register(collector)
        _collector = collector
    return _collector
