"""System health summary: 0 8 1 * * (UTC, global).

Why then: 08:00 UTC on the 1st: a monthly summary for IT at the start of the working day in Europe and before the US wakes.

What it reports (scheduling/health_report.py) for the previous calendar month (UTC):
availability and response times and error rates per endpoint (from the durable
RequestMetric table the request-metrics middleware fills, since django-prometheus's
counters are per process and lost at restarts), the job queue (JobRun per job: runs,
failures, missed, durations; django-q2 tasks), slow queries (pg_stat_statements, or "not
enabled"), event bus stream lengths, email and push failure rates from the outbox. Stored
as a Report (kind system-health, global, one per month) and e-mailed to every active
superuser (category report). Also deletes RequestMetric hours older than 400 days.

Idempotency: one Report per month (a re-run replaces it in place); dedupe key
``system-health:<report id>:<month>:<user>:email``: a re-run sends nothing new.

Student data read: none (counts of requests, runs, queue rows and outbox rows only).
"""
import datetime
from datetime import timedelta

from scheduling.registry import Job


def run(ctx) -> dict:
    from notifications.models import Category, Channel
    from notifications.services import NotificationRequest, notifications_enqueue
    from scheduling import health_report
    from scheduling.jobs.weekly_analytics_report import report_url
    from scheduling.models import Report
    from scheduling.reports import report_store

    first, last = health_report.previous_month(ctx.scheduled_for.astimezone(datetime.timezone.utc).date())
    title, html, csv_text, evidence = health_report.build(first=first, last=last, now=ctx.scheduled_for)
    stored = report_store(
        kind=Report.Kind.SYSTEM_HEALTH, district_id=None, school_id=None, period_start=first, period_end=last,
        title=title, html=html, csv_text=csv_text, evidence=evidence, job_run_id=ctx.run.id, now=ctx.scheduled_for,
    )
    admins = health_report.system_admin_ids()
    sent = notifications_enqueue([
        NotificationRequest(
            recipient_id=uid, category=Category.REPORT, channel=Channel.EMAIL, template="report",
            context={"report_name": title, "period": f"{first:%B %Y}", "report_url": report_url(stored.report),
                     "report_id": stored.report.pk},
            dedupe_key=f"system-health:{stored.report.pk}:{first:%Y-%m}:{uid}:email",
        ) for uid in admins
    ], job_run_id=ctx.run.id, now=ctx.scheduled_for)
    pruned = health_report.prune_metrics(now=ctx.scheduled_for)
    return {
        "period": f"{first}..{last}", "report_id": stored.report.pk,
        "report": "created" if stored.created else "updated" if stored.changed else "unchanged",
        **evidence["summary"], "admins": len(admins), "emails_queued": sent.inserted, "emails_duplicate": sent.duplicates,
        "metric_rows_pruned": pruned,
    }

JOB = Job(
    slug='system-health-summary',
    title='System health summary',
    default_cron='0 8 1 * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='global',
    critical=False,
    expected_duration=timedelta(minutes=2),
    timeout=600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(days=1),
    overlap="skip",
    entry=run,
)
