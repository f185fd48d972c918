"""Benchmark: one /metrics job-metrics scrape on PostgreSQL at 13 jobs x 500 districts.

Builds 6,500 schedules (``jobs sync``), then run history of R runs per schedule, N
notifications (a few pending) and N/20 alert deliveries with generate_series, fills the
counters from that history (the migrations' backfills: what the runner and the drainers
would have counted), and times the collector (best of 3) and counts its queries, at two
history sizes and once more after the run history, the sent notifications and the sent
alert deliveries are deleted (checking every counter reads the same), to show what grows.
Run: ``.venv/bin/python bench/metrics_scrape.py`` (BENCH_DATABASE_URL overrides the
database).

The scrape reads counters kept at write time, one row per (job, district) (JobRunCounter)
and per channel (NotificationCounter, AlertDeliveryCounter), instead of grouping the run,
notification and alert-delivery history; what waits now (queued/running runs, pending
notifications and deliveries) is counted live through partial/status indexes.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/skillcore_bench_metrics")
DISTRICTS = int(os.environ.get("BENCH_DISTRICTS", "500"))


def setup() -> None:
    os.environ["DATABASE_URL"] = URL
    os.environ.setdefault("SECRET_KEY", "benchmark-only-not-a-secret")
    from skillcore.archives import new_key

    os.environ.setdefault("ARCHIVE_ENCRYPTION_KEY", new_key())  # production settings need one; the bench archives nothing it keeps
    os.environ.setdefault("DATABASE_POOL", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillcore.settings")
    import psycopg

    name = URL.rsplit("/", 1)[1]
    with psycopg.connect(URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from prometheus_client import CollectorRegistry, generate_latest

    from scheduling import services
    from scheduling.monitoring import metrics
    from students.models import District

    with connection.cursor() as c:
        c.execute("TRUNCATE scheduling_alertdelivery, scheduling_incident, scheduling_jobrun, scheduling_schedulechange, "
                  "scheduling_jobschedule, django_q_schedule, notifications_notification, students_district CASCADE")
    District.objects.bulk_create([District(name=f"Bench {i}", time_zone="America/New_York", state="NY")
                                  for i in range(DISTRICTS)])
    services.sync_schedules()
    registry = CollectorRegistry()
    registry.register(metrics.JobMetricsCollector())

    def history(per_schedule: int) -> None:
        # Runs for every schedule: 90% succeeded, 7% failed, 3% missed, durations 1-600 s.
        with connection.cursor() as c:
            c.execute("DELETE FROM scheduling_incident")
            c.execute("DELETE FROM scheduling_jobrun")  # not TRUNCATE ... CASCADE: that reaches the schedules
            c.execute(
                """
                INSERT INTO scheduling_jobrun (job, district_id, trigger, slot, status, attempt, enqueued_at, started_at,
                    finished_at, duration_seconds, result, note, error, traceback, log, checkpoint, task_id, worker)
                SELECT s.job, s.district_id, 'schedule', now() - make_interval(days => g),
                       CASE WHEN g %% 33 = 0 THEN 'missed' WHEN g %% 14 = 0 THEN 'failed' ELSE 'succeeded' END,
                       1, now() - make_interval(days => g), now() - make_interval(days => g),
                       now() - make_interval(days => g) + interval '1 minute', (g * 37 %% 600) + 1,
                       '{}', '', '', '', '', '{}', '', ''
                FROM scheduling_jobschedule s CROSS JOIN generate_series(1, %s) AS g
                """, [per_schedule])
            c.execute("ANALYZE scheduling_jobrun")
        counters_from_history()

    def counters_from_history() -> None:
        import importlib

        from django.apps import apps

        from scheduling.models import JobRunCounter

        JobRunCounter.objects.all().delete()
        importlib.import_module("scheduling.migrations.0006_job_run_counters").backfill(apps, None)

    def notifications(count: int) -> None:
        import importlib

        from django.apps import apps
        from django.contrib.auth import get_user_model

        user, _ = get_user_model().objects.get_or_create(username="bench-recipient")
        with connection.cursor() as c:
            c.execute("DELETE FROM notifications_notification")
            c.execute("DELETE FROM notifications_notificationcounter")
            c.execute("DELETE FROM scheduling_alertdelivery")
            c.execute("DELETE FROM scheduling_alertdeliverycounter")
            c.execute(
                """
                INSERT INTO notifications_notification (recipient_id, channel, category, priority, template, context,
                    dedupe_key, status, status_reason, send_after, attempts, claimed_by, provider_message_id, error,
                    quiet_hours, language, created_at)
                SELECT %s, CASE WHEN g %% 3 = 0 THEN 'push' ELSE 'email' END, 'system', 'normal', 't', '{}',
                       'bench:' || g,
                       CASE WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 1000 = 1 THEN 'pending' ELSE 'sent' END,
                       '', now(), 1, '', '', '', false, 'en', now()
                FROM generate_series(1, %s) AS g
                """, [user.pk, count])
            c.execute(
                """
                INSERT INTO scheduling_alertdelivery (channel, action, payload, status, attempts, next_attempt_at,
                    last_error, created_at)
                SELECT CASE WHEN g %% 2 = 0 THEN 'slack' ELSE 'pagerduty' END, 'trigger', '{}',
                       CASE WHEN g %% 40 = 0 THEN 'failed' ELSE 'sent' END, 1, now(), '', now()
                FROM generate_series(1, %s) AS g
                """, [count // 20])
            c.execute("ANALYZE notifications_notification")
            c.execute("ANALYZE scheduling_alertdelivery")
        importlib.import_module("notifications.migrations.0006_notification_counters").backfill(apps, None)
        importlib.import_module("scheduling.migrations.0007_alert_delivery_counters").backfill(apps, None)

    print(f"{DISTRICTS} districts, {connection.cursor().execute('SELECT count(*) FROM scheduling_jobschedule').fetchone()[0]} schedules")
    def timed(label: str) -> dict:
        from prometheus_client.parser import text_string_to_metric_families

        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            text = generate_latest(registry)
            best = min(best, time.perf_counter() - start)
        with CaptureQueriesContext(connection) as ctx:
            generate_latest(registry)
        slowest = sorted(ctx.captured_queries, key=lambda q: -float(q["time"]))[:2]
        print(f"{label}: scrape {best * 1000:7.0f} ms, {len(ctx.captured_queries)} queries, "
              f"{len(text) / 1024:.0f} KiB of text; slowest: "
              + "; ".join(f"{float(q['time']) * 1000:.0f} ms {q['sql'][:60]}" for q in slowest)
              + "; notification/alert-delivery queries: " + " + ".join(
                  f"{float(q['time']) * 1000:.1f} ms" for q in ctx.captured_queries if "notifications_notification" in q["sql"]
                  or "counter" in q["sql"] and "notification" in q["sql"]))
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text.decode())
                for s in family.samples if s.name != "scheduled_job_metrics_scrape_seconds"}

    for per_schedule, notes in ((10, 100_000), (60, 500_000)):
        history(per_schedule)
        notifications(notes)
        runs = connection.cursor().execute("SELECT count(*) FROM scheduling_jobrun").fetchone()[0]
        full = timed(f"runs {runs:>9,}  notifications {notes:>9,}  alert deliveries {notes // 20:>7,}")
    with connection.cursor() as c:
        c.execute("DELETE FROM scheduling_incident")
        c.execute("DELETE FROM scheduling_jobrun")
        c.execute("DELETE FROM notifications_notification WHERE status = 'sent'")
        c.execute("DELETE FROM scheduling_alertdelivery WHERE status = 'sent'")
        c.execute("ANALYZE notifications_notification")
        left = c.execute("SELECT count(*) FROM notifications_notification").fetchone()[0]
    pruned = timed(f"runs {0:>9,}  notifications {left:>9,} (sent history deleted, counters kept)")
    # Every series but the clock-driven "seconds until the next slot".
    full, pruned = ({k: v for k, v in m.items() if k[0] != "scheduled_job_next_execution_seconds"} for m in (full, pruned))
    print(f"{len(pruned):,} other samples after deleting history:", "identical" if pruned == full else
          f"DIFFER: {sorted(set(pruned.items()) ^ set(full.items()))[:10]}")


if __name__ == "__main__":
    main()
