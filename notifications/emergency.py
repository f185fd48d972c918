"""Emergency notifications: the quarterly test to each district's test group (the
emergency-notification-test job) with its per-channel delivery report, and the real
broadcast (``manage.py emergency_broadcast`` and the admin's Emergency broadcast form).

Both go through ``notifications_enqueue``: categories ``emergency-test`` and ``emergency``
are immediate, ignore preferences and quiet hours (notifications.services), and are sent
on every channel (email, push and SMS) at high priority; the test's texts say TEST ONLY.

The test's delivery report: the job enqueues, then stores a Report (kind emergency-test,
one per district and test day) with counts read from the outbox, and schedules a one-off
django-q2 follow-up (``emergency_test_report_refresh``) 15 minutes later that recounts
after the outbox has drained. The job does not drain the outbox itself: the drainer claims
any due row, and a job must not send other jobs' messages.
"""
from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from notifications.models import Category, Channel, Notification, Priority, Status
from notifications.services import NotificationRequest, notifications_enqueue
from scheduling.models import EmergencyBroadcast, Scenario
from scheduling.reports import render_html, report_store, to_csv
from students.models import District, GuardianLink, StaffProfile

REPORT_DELAY = dt.timedelta(minutes=15)
REFRESH_FUNC = "notifications.emergency.emergency_test_report_refresh"

# What each scenario would say for real: the test quotes it so recipients see the wording.
SAMPLE_MESSAGES = {
    Scenario.SCHOOL_CLOSURE: "All schools are closed today. Students should not come to school.",
    Scenario.LOCKDOWN: "A school is in lockdown. Students are safe inside; do not come to the school.",
    Scenario.WEATHER_DELAY: "Schools open two hours late today because of the weather.",
    Scenario.BROADCAST: "An important message from the district for every family and staff member.",
}
# Every channel: a family without the app or a working email still gets a text (SMS goes to
# any mobile number on file, consent or STOP notwithstanding: emergencies only).
CHANNELS = (Channel.EMAIL, Channel.PUSH, Channel.SMS)


def test_key_prefix(district: District, day: dt.date) -> str:
    return f"emergency-test:{district.id}:{day.isoformat()}:"


def emergency_test_send(*, district: District, day: dt.date, job_run_id: int | None, now: dt.datetime) -> dict:
    """Enqueue the four scenario tests to the district's test group only, on every channel.
    Dedupe key ``emergency-test:<district>:<local day>:<scenario>:<user>:<channel>``."""
    recipients = list(district.emergency_test_group.filter(is_active=True).order_by("id").values_list("id", flat=True))
    prefix = test_key_prefix(district, day)
    requests = [
        NotificationRequest(
            recipient_id=uid, category=Category.EMERGENCY_TEST, channel=channel, template="emergency-drill",
            context={"district_name": district.name, "scenario": scenario.value, "scenario_label": str(scenario.label),
                     "sample_message": SAMPLE_MESSAGES[scenario], "test": True},
            dedupe_key=f"{prefix}{scenario.value}:{uid}:{channel}", priority=Priority.HIGH,
        )
        for scenario in Scenario for uid in recipients for channel in CHANNELS
    ]
    summary = notifications_enqueue(requests, job_run_id=job_run_id, district_id=district.id, now=now)
    return {"recipients": len(recipients), "requests": len(requests), **summary.as_dict()}


def _delivery_rows(prefix: str) -> list[dict]:
    """Outbox counts by scenario, channel and status for one test (one grouped query)."""
    rows = (Notification.objects.filter(dedupe_key__startswith=prefix, category=Category.EMERGENCY_TEST)
            .values("context__scenario", "channel", "status").annotate(n=Count("id")).order_by())
    return list(rows)


def _bucket(status: str) -> str:
    if status == Status.SENT:
        return "sent"
    if status == Status.FAILED:
        return "failed"
    if status == Status.SUPPRESSED:
        return "suppressed"
    return "waiting"


@transaction.atomic
def emergency_test_report_store(*, district: District, day: dt.date, recipients: int, job_run_id: int | None,
                                now: dt.datetime):
    """Store (or refresh) the test's delivery report from the outbox as it is now."""
    prefix = test_key_prefix(district, day)
    channels = {c.value: {"channel": c.value, "total": 0, "sent": 0, "failed": 0, "waiting": 0, "suppressed": 0} for c in CHANNELS}
    scenarios = {(s.value, c.value): {"scenario": str(s.label), "channel": c.value, "sent": 0, "failed": 0, "waiting": 0,
                                      "suppressed": 0} for s in Scenario for c in CHANNELS}
    for r in _delivery_rows(prefix):
        b = _bucket(r["status"])
        channels[r["channel"]][b] += r["n"]
        channels[r["channel"]]["total"] += r["n"]
        key = (r["context__scenario"], r["channel"])
        if key in scenarios:
            scenarios[key][b] += r["n"]
    failures = [
        {"recipient": f"{n.recipient.get_full_name() or n.recipient.get_username()}", "channel": n.channel,
         "scenario": n.context.get("scenario_label", ""), "error": (n.error or n.status_reason)[:200]}
        for n in Notification.objects.filter(dedupe_key__startswith=prefix, status__in=[Status.FAILED])
        .select_related("recipient").order_by("id")[:50]
    ]
    title = f"Emergency notification test, {district.name}, {day:%B %-d, %Y}"
    html = render_html("reports/emergency_test.html", {
        "title": title, "district_name": district.name, "day": day.isoformat(), "recipients": recipients,
        "as_of": now.astimezone(district.zone).strftime("%Y-%m-%d %H:%M %Z"), "channels": list(channels.values()),
        "scenarios": list(scenarios.values()), "failures": failures,
    })
    csv_text = to_csv(["scenario", "channel", "sent", "failed", "waiting", "suppressed"],
                      [[r["scenario"], r["channel"], r["sent"], r["failed"], r["waiting"], r["suppressed"]] for r in scenarios.values()])
    delivery = {c: {k: v for k, v in row.items() if k != "channel"} for c, row in channels.items()}
    stored = report_store(
        kind="emergency-test", district_id=district.id, school_id=None, period_start=day, period_end=day, title=title,
        html=html, csv_text=csv_text, evidence={"recipients": recipients, "delivery": delivery, "dedupe_prefix": prefix},
        job_run_id=job_run_id, now=now,
    )
    return stored.report, delivery


def schedule_report_refresh(*, district: District, day: dt.date, recipients: int, job_run_id: int | None, when: dt.datetime):
    """A one-off django-q2 schedule that recounts the report once the outbox has drained
    (one per district and day: a re-run does not add a second)."""
    from django_q.models import Schedule

    name = f"skillcore:emergency-test-report:{district.id}:{day.isoformat()}"
    Schedule.objects.update_or_create(name=name, defaults=dict(
        func=REFRESH_FUNC, kwargs=repr({"district_id": district.id, "day": day.isoformat(), "recipients": recipients,
                                         "job_run_id": job_run_id}),
        schedule_type=Schedule.ONCE, repeats=-1, next_run=when,
    ))
    return name


def emergency_test_report_refresh(*, district_id: int, day: str, recipients: int, job_run_id: int | None = None) -> dict:
    """The follow-up task: recount and store the delivery report."""
    district = District.objects.get(pk=district_id)
    _, delivery = emergency_test_report_store(district=district, day=dt.date.fromisoformat(day), recipients=recipients,
                                              job_run_id=job_run_id, now=timezone.now())
    return delivery


# -- the real broadcast ------------------------------------------------------------------------
def broadcast_recipient_ids(district: District) -> list[int]:
    """Every family and staff member of the district: guardians (rights not revoked) of
    active students, and staff working in the district. Two queries, one id list."""
    guardians = GuardianLink.objects.filter(
        student__school__district_id=district.id, student__is_active=True, access_revoked=False,
    ).values_list("guardian_id", flat=True)
    staff = StaffProfile.objects.filter(district_id=district.id).values_list("user_id", flat=True)
    return sorted(set(guardians) | set(staff))


@transaction.atomic
def emergency_broadcast_send(*, district: District, scenario: str, message: str, sent_by=None, actor_label: str,
                             now: dt.datetime | None = None, broadcast: EmergencyBroadcast | None = None) -> EmergencyBroadcast:
    """Record a broadcast and enqueue it to everyone in the district on every channel,
    category emergency (immediate: no quiet hours, no preferences). Dedupe key
    ``emergency:<broadcast id>:<user>:<channel>``: sending the same row again adds nothing."""
    now = now or timezone.now()
    if scenario not in Scenario.values:
        raise ValueError(f"unknown scenario {scenario!r}: use one of {', '.join(Scenario.values)}")
    message = (message or "").strip()
    if not message:
        raise ValueError("the message is empty")
    if broadcast is None:
        broadcast = EmergencyBroadcast.objects.create(
            district=district, scenario=scenario, message=message, sent_by=sent_by, actor_label=actor_label[:150], created_at=now,
        )
    label = str(Scenario(scenario).label)
    recipients = broadcast_recipient_ids(district)
    summary = notifications_enqueue(
        (NotificationRequest(
            recipient_id=uid, category=Category.EMERGENCY, channel=channel, template="emergency",
            context={"headline": f"{district.name}: {label}", "message": message, "scenario": scenario},
            dedupe_key=f"emergency:{broadcast.pk}:{uid}:{channel}", priority=Priority.HIGH,
        ) for uid in recipients for channel in CHANNELS),
        district_id=district.id, now=now,
    )
    broadcast.counts = {"recipients": len(recipients), **summary.as_dict()}
    broadcast.save(update_fields=["counts"])
    return broadcast
