"""Benchmark: one /metrics job-metrics scrape on PostgreSQL at 13 jobs x 500 districts.

Builds 6,500 schedules (``jobs sync``), then run history of R runs per schedule and N
notifications with generate_series, fills the run counters from that history (the
migration's backfill: what the runner would have counted), and times the collector (best
of 3) and counts its queries, at two history sizes and once more after the run history is
deleted, to show what grows. Run:
``.venv/bin/python bench/metrics_scrape.py`` (BENCH_DATABASE_URL overrides the database).

Since the counters (JobRunCounter, scheduling/counters.py) the scrape reads one row per
(job, district) instead of grouping the run history; the notification and alert-delivery
counts are still grouped over their tables.
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

    from scheduling import metrics, services
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
        from django.contrib.auth import get_user_model

        user, _ = get_user_model().objects.get_or_create(username="bench-recipient")
        with connection.cursor() as c:
            c.execute("DELETE FROM notifications_notification")
            c.execute(
                """
                INSERT INTO notifications_notification (recipient_id, channel, category, priority, template, context,
                    dedupe_key, status, status_reason, send_after, attempts, claimed_by, provider_message_id, error,
                    quiet_hours, language, created_at)
                SELECT %s, CASE WHEN g %% 3 = 0 THEN 'push' ELSE 'email' END, 'system', 'normal', 't', '{}',
                       'bench:' || g, CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'sent' END, '', now(), 1, '', '', '',
                       false, 'en', now()
                FROM generate_series(1, %s) AS g
                """, [user.pk, count])
            c.execute("ANALYZE notifications_notification")

    print(f"{DISTRICTS} districts, {connection.cursor().execute('SELECT count(*) FROM scheduling_jobschedule').fetchone()[0]} schedules")
    def timed(label: str) -> None:
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
              + "; ".join(f"{float(q['time']) * 1000:.0f} ms {q['sql'][:60]}" for q in slowest))

    for per_schedule, notes in ((10, 100_000), (60, 500_000)):
        history(per_schedule)
        notifications(notes)
        runs = connection.cursor().execute("SELECT count(*) FROM scheduling_jobrun").fetchone()[0]
        timed(f"runs {runs:>9,}  notifications {notes:>9,}")
    with connection.cursor() as c:
        c.execute("DELETE FROM scheduling_incident")
        c.execute("DELETE FROM scheduling_jobrun")
    timed(f"runs {0:>9,} (history deleted, counters kept)  notifications {notes:>9,}")


if __name__ == "__main__":
    main()
