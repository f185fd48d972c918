"""System health summary: 0 8 1 * * (UTC, global).

Why then: 08:00 UTC on the 1st: a monthly summary for IT at the start of the working day in Europe and before the US wakes.

What it reports (below) for the previous calendar month (UTC):
availability and response times and error rates per endpoint (from the durable
RequestMetric table the request-metrics middleware fills, since django-prometheus's
counters are per process and lost at restarts), the job queue (JobRun per job: runs,
failures, missed, durations; django-q2 tasks), slow queries (pg_stat_statements, or "not
enabled"), event bus stream lengths, email, push and SMS failure rates from the outbox and
each provider's status (Twilio's account status is asked of its API). Stored
as a Report (kind system-health, global, one per month) and e-mailed to every active
superuser (category report). Also deletes RequestMetric hours older than 400 days.

Idempotency: one Report per month (a re-run replaces it in place); dedupe key
``system-health:<report id>:<month>:<user>:email``: a re-run sends nothing new.

Student data read: none (counts of requests, runs, queue rows and outbox rows only).

The monthly system-health summary (the system-health-summary job): one global Report
for the calendar month before the slot, e-mailed to the system admins (superusers).

Sources, each read with one grouped query:
- web: RequestMetric (scheduling.request_metrics), per endpoint: requests, 5xx and 4xx
  rates, mean and worst response time; availability = hours of the month in which the
  app served requests with fewer than 5% server errors, over the hours it served any
  (a monitor probing /health every minute makes every hour observed);
- queue: JobRun per job (runs, failed or timed out, missed, skipped, mean and worst
  duration) and django-q2's Task table (successes and failures) and queued tasks now;
- slow queries: pg_stat_statements' top 10 by mean time when the extension is installed,
  otherwise the report says "not enabled" (SQLite: "not available");
- event bus: Redis stream lengths (XLEN) or the EventBusEntry table per stream, and the
  durable StoredEvent count;
- notifications: the outbox by channel and status for messages created in the month:
  sent, failed and the failure rate per provider (email, push, SMS);
- providers: which email backend (SendGrid through anymail, SMTP, ...) and whether Firebase
  and Twilio are configured; for Twilio also its account status now (one API call:
  active, suspended, closed, or why it could not be read).
Nothing here reads student data.
"""
from __future__ import annotations

import datetime as dt
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Avg, Count, Max, Q, Sum

from notifications.models import Channel, Notification, Status
from scheduling.models import JobRun, RequestMetric, SchedulerHeartbeat
from scheduling.registry import Job
from scheduling.reports import bar_chart, pct, render_html, report_store, report_url, to_csv

logger = logging.getLogger(__name__)
METRIC_RETENTION_DAYS = 400
ERROR_HOUR_THRESHOLD = 0.05


def previous_month(day: dt.date) -> tuple[dt.date, dt.date]:
    last = day.replace(day=1) - dt.timedelta(days=1)
    return last.replace(day=1), last


def _rate(part, whole):
    return None if not whole else round(100.0 * part / whole, 2)


def web_metrics(start: dt.datetime, end: dt.datetime) -> dict:
    rows = list(RequestMetric.objects.filter(hour__gte=start, hour__lt=end).values("endpoint").annotate(
        requests=Sum("requests"), errors=Sum("errors"), client_errors=Sum("client_errors"), total_ms=Sum("total_ms"),
        max_ms=Max("max_ms")).order_by("-requests", "endpoint"))
    endpoints = [{
        "endpoint": r["endpoint"], "requests": r["requests"], "errors": r["errors"], "client_errors": r["client_errors"],
        "error_rate": _rate(r["errors"], r["requests"]), "mean_ms": round(r["total_ms"] / r["requests"], 1) if r["requests"] else None,
        "max_ms": round(r["max_ms"], 1),
    } for r in rows]
    hours = list(RequestMetric.objects.filter(hour__gte=start, hour__lt=end).values("hour").annotate(
        requests=Sum("requests"), errors=Sum("errors")).order_by())
    observed = len(hours)
    healthy = sum(1 for h in hours if h["errors"] < ERROR_HOUR_THRESHOLD * h["requests"])
    period_hours = int((end - start).total_seconds() // 3600)
    return {
        "endpoints": endpoints[:50], "endpoint_count": len(endpoints), "requests": sum(e["requests"] for e in endpoints),
        "errors": sum(e["errors"] for e in endpoints), "hours_in_period": period_hours, "hours_observed": observed,
        "hours_healthy": healthy, "availability": _rate(healthy, observed),
        "observed_share": _rate(observed, period_hours),
    }


def queue_metrics(start: dt.datetime, end: dt.datetime, now: dt.datetime) -> dict:
    from django_q.models import OrmQ, Task

    S = JobRun.Status
    jobs = list(JobRun.objects.filter(slot__gte=start, slot__lt=end).values("job").annotate(
        runs=Count("id"), succeeded=Count("id", filter=Q(status=S.SUCCEEDED)),
        failed=Count("id", filter=Q(status__in=[S.FAILED, S.TIMED_OUT])), missed=Count("id", filter=Q(status=S.MISSED)),
        skipped=Count("id", filter=Q(status=S.SKIPPED)), mean_s=Avg("duration_seconds"), max_s=Max("duration_seconds"),
    ).order_by("job"))
    for j in jobs:
        j["mean_s"] = round(j["mean_s"], 2) if j["mean_s"] is not None else None
        j["max_s"] = round(j["max_s"], 2) if j["max_s"] is not None else None
        j["failure_rate"] = _rate(j["failed"], j["runs"] - j["skipped"] - j["missed"])
    tasks = Task.objects.filter(started__gte=start, started__lt=end).aggregate(
        ok=Count("id", filter=Q(success=True)), failed=Count("id", filter=Q(success=False)))
    beat = SchedulerHeartbeat.objects.aggregate(last=Max("last_beat"))["last"]
    return {
        "jobs": jobs, "runs": sum(j["runs"] for j in jobs), "failed": sum(j["failed"] for j in jobs),
        "missed": sum(j["missed"] for j in jobs), "tasks_ok": tasks["ok"], "tasks_failed": tasks["failed"],
        "queued_now": OrmQ.objects.count() if settings.Q_CLUSTER.get("orm") else None,
        "last_heartbeat": beat.isoformat() if beat else None,
    }


def slow_queries() -> dict:
    if connection.vendor != "postgresql":
        return {"status": "not available (SQLite)", "queries": []}
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
        if cursor.fetchone() is None:
            return {"status": "not enabled", "queries": []}
        try:
            # Constants are normalised to $1, $2 by pg_stat_statements: no values leak here.
            cursor.execute(
                "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 200), calls, mean_exec_time, total_exec_time "
                "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "ORDER BY mean_exec_time DESC LIMIT 10")
            rows = cursor.fetchall()
        except Exception as exc:  # installed but not preloaded (shared_preload_libraries)
            return {"status": f"not readable: {str(exc).splitlines()[0][:150]}", "queries": []}
    return {"status": "enabled", "queries": [
        {"query": q, "calls": c, "mean_ms": round(m, 2), "total_ms": round(t, 1)} for q, c, m, t in rows]}


def event_bus() -> dict:
    from skillcore import events
    from skillcore.models import EventBusEntry, StoredEvent

    out = {"stored_events": StoredEvent.objects.count()}
    client = events.redis_client()
    if client is None:
        out["backend"] = "table"
        out["streams"] = dict(EventBusEntry.objects.values_list("stream").annotate(n=Count("id")).order_by("stream"))
    else:
        out["backend"] = "redis"
        try:
            names = sorted(n.decode() if isinstance(n, bytes) else n
                           for n in client.scan_iter(match=settings.EVENT_STREAM_PREFIX + "*", count=500))
            pipe = client.pipeline(transaction=False)
            for n in names:
                pipe.xlen(n)
            out["streams"] = dict(zip(names, pipe.execute()))
        except Exception as exc:
            out["streams"] = {}
            out["error"] = f"{type(exc).__name__}: {str(exc)[:150]}"
    out["entries"] = sum(out["streams"].values())
    return out


def notification_rates(start: dt.datetime, end: dt.datetime) -> dict:
    rows = Notification.objects.filter(created_at__gte=start, created_at__lt=end).values("channel", "status").annotate(
        n=Count("id")).order_by()
    channels = {c.value: {"channel": c.value, "sent": 0, "failed": 0, "waiting": 0, "suppressed": 0} for c in Channel}
    for r in rows:
        b = {Status.SENT: "sent", Status.FAILED: "failed", Status.SUPPRESSED: "suppressed"}.get(r["status"], "waiting")
        channels.setdefault(r["channel"], {"channel": r["channel"], "sent": 0, "failed": 0, "waiting": 0, "suppressed": 0})[b] += r["n"]
    for c in channels.values():
        c["error_rate"] = _rate(c["failed"], c["sent"] + c["failed"])
    return {"channels": list(channels.values())}


def providers() -> list[dict]:
    """Each delivery provider and its status now (Twilio: one API call, bounded by
    TWILIO_TIMEOUT; a failure is reported, never raised)."""
    from notifications import sms

    backend = settings.EMAIL_BACKEND
    email = "SendGrid (anymail)" if "sendgrid" in backend.lower() else backend.rsplit(".", 2)[-2] if "." in backend else backend
    email_ok = "sendgrid" not in backend.lower() or bool(settings.ANYMAIL.get("SENDGRID_API_KEY"))
    fcm = bool(settings.FCM_CREDENTIALS_FILE or settings.FCM_PROJECT_ID)
    twilio = sms.account_status()
    return [
        {"channel": "email", "provider": email, "status": "configured" if email_ok else "not configured (no SENDGRID_API_KEY)",
         "warn": not email_ok},
        {"channel": "push", "provider": "Firebase Cloud Messaging",
         "status": ("configured" + (" (dry run)" if settings.FCM_DRY_RUN else "")) if fcm else "not configured", "warn": not fcm},
        {"channel": "sms", "provider": "Twilio", "status": twilio["status"], "warn": twilio["status"] != "active"},
    ]


def build(*, first: dt.date, last: dt.date, now: dt.datetime) -> tuple[str, str, str, dict]:
    """(title, html, csv, evidence) for the month first..last (UTC days)."""
    start = dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    web, queue, slow, bus, notes = web_metrics(start, end), queue_metrics(start, end, now), slow_queries(), event_bus(), notification_rates(start, end)
    notes["providers"] = providers()
    title = f"System health, {first:%B %Y}"
    headline = [
        {"label": "Availability", "value": pct(web["availability"]), "warn": (web["availability"] or 100) < 99},
        {"label": "Requests", "value": f"{web['requests']:,}"},
        {"label": "Server errors", "value": f"{web['errors']:,}", "warn": web["errors"] > 0},
        {"label": "Job runs", "value": f"{queue['runs']:,}"},
        {"label": "Failed runs", "value": f"{queue['failed']:,}", "warn": queue["failed"] > 0},
        {"label": "Missed slots", "value": f"{queue['missed']:,}", "warn": queue["missed"] > 0},
    ]
    html = render_html("reports/system_health.html", {
        "title": title, "first": first, "last": last, "headline": headline, "web": web, "queue": queue, "slow": slow,
        "bus": bus, "notes": notes,
        "chart_errors": bar_chart([(e["endpoint"], e["error_rate"]) for e in web["endpoints"][:15]],
                                  title="Server error rate by endpoint (top 15 by traffic)", maximum=max(
                                      [5.0] + [e["error_rate"] or 0 for e in web["endpoints"][:15]])),
        "chart_latency": bar_chart([(e["endpoint"], e["mean_ms"]) for e in web["endpoints"][:15]],
                                   title="Mean response time, ms", unit=" ms",
                                   maximum=max([1.0] + [e["mean_ms"] or 0 for e in web["endpoints"][:15]])),
    })
    csv_rows = [["endpoint", e["endpoint"], e["requests"], e["errors"], e["error_rate"], e["mean_ms"], e["max_ms"]] for e in web["endpoints"]]
    csv_rows += [["job", j["job"], j["runs"], j["failed"], j["failure_rate"], j["mean_s"], j["max_s"]] for j in queue["jobs"]]
    csv_rows += [["channel", c["channel"], c["sent"] + c["failed"], c["failed"], c["error_rate"], None, None] for c in notes["channels"]]
    csv_text = to_csv(["kind", "name", "count", "failures", "failure_rate_pct", "mean", "max"], csv_rows)
    evidence = {
        "window": [start.isoformat(), end.isoformat()], "requests": web["requests"], "hours_observed": web["hours_observed"],
        "job_runs": queue["runs"], "slow_queries": slow["status"], "event_bus": bus["backend"],
        "notifications": {c["channel"]: c["sent"] + c["failed"] for c in notes["channels"]},
    }
    return title, html, csv_text, {**evidence, "summary": {
        "availability": web["availability"], "requests": web["requests"], "server_errors": web["errors"],
        "job_runs": queue["runs"], "job_failures": queue["failed"], "missed": queue["missed"],
        "slow_queries": slow["status"], "event_bus_entries": bus["entries"],
        "email_error_rate": next((c["error_rate"] for c in notes["channels"] if c["channel"] == "email"), None),
        "push_error_rate": next((c["error_rate"] for c in notes["channels"] if c["channel"] == "push"), None),
        "sms_error_rate": next((c["error_rate"] for c in notes["channels"] if c["channel"] == "sms"), None),
        "twilio_status": notes["providers"][-1]["status"],
    }}


def system_admin_ids() -> list[int]:
    return list(get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("id").values_list("id", flat=True))


def prune_metrics(*, now: dt.datetime) -> int:
    deleted, _ = RequestMetric.objects.filter(hour__lt=now - dt.timedelta(days=METRIC_RETENTION_DAYS)).delete()
    return deleted


__all__ = ["build", "previous_month", "prune_metrics", "system_admin_ids"]


def run(ctx) -> dict:
    from notifications.models import Category, Channel
    from notifications.services import NotificationRequest, notifications_enqueue
    from scheduling.models import Report

    first, last = previous_month(ctx.scheduled_for.astimezone(dt.UTC).date())
    title, html, csv_text, evidence = build(first=first, last=last, now=ctx.scheduled_for)
    stored = report_store(
        kind=Report.Kind.SYSTEM_HEALTH, district_id=None, school_id=None, period_start=first, period_end=last,
        title=title, html=html, csv_text=csv_text, evidence=evidence, job_run_id=ctx.run.id, now=ctx.scheduled_for,
    )
    admins = system_admin_ids()
    sent = notifications_enqueue([
        NotificationRequest(
            recipient_id=uid, category=Category.REPORT, channel=Channel.EMAIL, template="report",
            context={"report_name": title, "period": f"{first:%B %Y}", "report_url": report_url(stored.report),
                     "report_id": stored.report.pk},
            dedupe_key=f"system-health:{stored.report.pk}:{first:%Y-%m}:{uid}:email",
        ) for uid in admins
    ], job_run_id=ctx.run.id, now=ctx.scheduled_for)
    pruned = prune_metrics(now=ctx.scheduled_for)
    return {
        "period": f"{first}..{last}", "report_id": stored.report.pk,
        "report": "created" if stored.created else "updated" if stored.changed else "unchanged",
        **evidence["summary"], "admins": len(admins), "emails_queued": sent.inserted, "emails_duplicate": sent.duplicates,
        "metric_rows_pruned": pruned,
    }

# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "period": "Month",
    "report_id": "Report number",
    "report": "Report",
    "availability": ("Availability", "share of observed hours that were healthy (none: no hour observed)"),
    "requests": "Web requests",
    "server_errors": "Server errors",
    "job_runs": "Job runs",
    "job_failures": "Job failures",
    "missed": "Missed slots",
    "slow_queries": "Slow queries",
    "event_bus_entries": "Event bus entries",
    "email_error_rate": ("Email error rate", "share of emails that failed (none: no email sent)"),
    "push_error_rate": ("Push error rate", "share of pushes that failed (none: no push sent)"),
    "sms_error_rate": ("SMS error rate", "share of text messages that failed (none: none sent)"),
    "twilio_status": "SMS provider (Twilio)",
    "admins": "System admins told",
    "emails_queued": "Emails queued",
    "emails_duplicate": ("Emails already queued", "queued by an earlier run of this month: not sent twice"),
    "metric_rows_pruned": "Old metric rows pruned",
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
    calendar="any day",
    figures=FIGURES,
    progress_unit="reports",
    entry=run,
)
