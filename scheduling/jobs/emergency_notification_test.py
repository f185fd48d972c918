"""Emergency notification test: 0 10 * 1,4,7,10 MON#1 (district local time).

Why then: 10:00 local on the first Monday of each quarter: school hours, staff are expecting it, and only the district's test group receives it.

Rules (scheduling/emergency.py): one test message per scenario (school closure, lockdown,
weather delay, system-wide broadcast) to each active member of District.emergency_test_group
only — never to families — on every channel (email and push), category emergency-test
(ignores quiet hours and preferences), marked TEST in subject, body and push title. The
delivery report per channel (sent / failed / waiting / not sent) is a Report (kind
emergency-test) stored at once and recounted by a one-off follow-up 15 minutes later,
after the outbox has drained.

Idempotency: dedupe keys ``emergency-test:<district>:<local day>:<scenario>:<user>:<channel>``;
the report is one row per district and day; the follow-up schedule is named per district
and day. A re-run of the slot enqueues nothing and refreshes the same report.

Student data read: none (staff and test-group users only).
"""
from datetime import timedelta

from notifications.summary_labels import ENQUEUE_FIGURES
from scheduling.registry import Job


def run(ctx) -> dict:
    from notifications import emergency

    day = ctx.scheduled_for.astimezone(ctx.district.zone).date()
    sent = emergency.emergency_test_send(district=ctx.district, day=day, job_run_id=ctx.run.id, now=ctx.scheduled_for)
    if not sent["recipients"]:
        # A drill that reached nobody tested nothing: the run says so and is alerted on.
        ctx.warn("the emergency test group is empty (or has no active member): no test message was sent")
    report, delivery = emergency.emergency_test_report_store(
        district=ctx.district, day=day, recipients=sent["recipients"], job_run_id=ctx.run.id, now=ctx.scheduled_for)
    follow_up = emergency.schedule_report_refresh(
        district=ctx.district, day=day, recipients=sent["recipients"], job_run_id=ctx.run.id,
        when=ctx.scheduled_for + emergency.REPORT_DELAY)
    return {"day": day.isoformat(), **sent, "report_id": report.pk, "delivery": delivery, "report_follow_up": follow_up}

# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "day": "Test day",
    "recipients": ("Test group members reached", "active members of the district's emergency test group"),
    "report_id": "Delivery report number",
    "delivery": ("Delivery so far, by channel", "recounted 15 minutes later in the delivery report"),
    "report_follow_up": ("Report recount", "the one-off task that recounts the report after the outbox drains"),
    "total": "total", "sent": "sent", "waiting": "waiting",
    "delivery.failed": "failed", "delivery.suppressed": "not sent (a rule said no)",
    **ENQUEUE_FIGURES,  # the outbox's figures, the same words on every job
}


JOB = Job(
    slug='emergency-notification-test',
    title='Emergency notification test',
    default_cron='0 10 * 1,4,7,10 MON#1',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=2),
    timeout=600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=4),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="messages",
    entry=run,
)
