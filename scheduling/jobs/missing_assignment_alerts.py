"""Missing assignment alerts: 0 7,19 * * * (district local time).

Why then: 07:00 and 19:00 local: a morning nudge before school and an evening one while there is still time to submit, both inside the 07:00-21:00 family window.

One cron, two slots: the body tells them apart by the slot's local hour. The morning run
(before noon) sends the due-today reminders; the evening run sends the reminders for work
due in 7 days (major assignments only), 3 days and 1 day, and the overdue ones: daily until
the work is submitted, for at most OVERDUE_DAYS (14) days after the due date (day 14 is the
last; day 15 sends nothing).

Which work: published assignments with a maximum score above zero. Which students: those
enrolled in the section on the slot's local date (the enrollment started and has not
ended), active, with no submission and not exempt (a Submission with submitted_at or
is_exempt). Recipients: a push to the student's own account (the outbox needs an active
device; push bodies stay generic) and an email to each linked guardian; the outbox applies
the assignment-reminder preference (frequency, never), revocation, age 18 and muted classes
(section_id is passed).

Idempotency: ``assignment-reminder:<assignment>:<student>:<offset>:<recipient>:<channel>``
where offset is 7, 3, 1, 0 or ``overdue-<days>``: once per student, assignment, offset and
recipient, and once per day overdue. A re-run of a slot inserts nothing.

Student data read: enrollments of the sections with work due (student, account), their
submissions for that work, guardian links.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from datetime import timedelta

from django.utils import timezone

from notifications.models import Category, Channel
from notifications.selectors import queued_recipients
from notifications.services import NotificationRequest, notifications_enqueue
from scheduling.registry import Job
from students import selectors

EVENING_OFFSETS = (7, 3, 1)  # days before due, sent by the 19:00 run
MAJOR_ONLY = {"7"}  # offsets sent for major assignments only
OVERDUE_DAYS = 14
MORNING_BEFORE = dt.time(12, 0)
ASSIGNMENT_BATCH = 200  # assignments per batch: ~25 students each, a few thousand messages


def targets(today: dt.date, *, morning: bool) -> dict[dt.date, str]:
    """Due date -> offset label for the run: "0" in the morning; "7", "3", "1" and
    "overdue-<n>" (n = 1..14) in the evening."""
    if morning:
        return {today: "0"}
    out = {today + dt.timedelta(days=o): str(o) for o in EVENING_OFFSETS}
    out.update({today - dt.timedelta(days=n): f"overdue-{n}" for n in range(1, OVERDUE_DAYS + 1)})
    return out


def _requests_for(batch: list[dict], labels: dict[dt.date, str], today: dt.date, tally: Counter) -> list[NotificationRequest]:
    """The messages for one batch of assignments (2 queries, whatever its size)."""
    by_id = {a["id"]: a for a in batch}
    pairs = selectors.missing_work(assignment_ids=by_id, day=today)
    guardians: dict[int, list[int]] = defaultdict(list)
    for student_id, guardian_id in selectors.guardians_of(student_ids={s for _, s, _ in pairs}):
        guardians[student_id].append(guardian_id)
    requests: list[NotificationRequest] = []
    for assignment_id, student_id, user_id in pairs:
        a = by_id[assignment_id]
        label = labels[a["due_date"]]
        tally["overdue" if label.startswith("overdue") else label] += 1
        context = {
            "assignment_id": a["id"], "assignment_title": a["title"], "course_name": a["section__course_name"],
            "due_date": a["due_date"].isoformat(), "offset": label,
            "days_overdue": (today - a["due_date"]).days if label.startswith("overdue") else 0,
        }
        base = f"assignment-reminder:{a['id']}:{student_id}:{label}"
        recipients = [(gid, Channel.EMAIL) for gid in guardians.get(student_id, ())]
        if user_id:
            recipients.insert(0, (user_id, Channel.PUSH))
        for recipient_id, channel in recipients:
            requests.append(NotificationRequest(
                recipient_id=recipient_id, category=Category.ASSIGNMENT_REMINDER, channel=channel,
                template="assignment-reminder", context=context, dedupe_key=f"{base}:{recipient_id}:{channel}",
                student_id=student_id, section_id=a["section_id"], object_key=base, event="reminder",
            ))
    return requests


def run(ctx) -> dict:
    district = ctx.district
    local = ctx.scheduled_for.astimezone(district.zone)
    today, morning = local.date(), local.time() < MORNING_BEFORE
    labels = targets(today, morning=morning)

    # 1. The work due on the target dates (one query; a few thousand rows for a large district).
    assignments = [
        a for a in selectors.assignments_due_on(district=district, dates=labels)
        if a["is_major"] or labels[a["due_date"]] not in MAJOR_ONLY
    ]
    # 2. In batches of assignments, so memory stays bounded by a batch: who is enrolled, who
    #    turned it in (one anti-join), the guardians, then one push to the student and one email
    #    per guardian for each missing piece of work (the outbox's enqueue, ~12 queries a chunk).
    tally: Counter = Counter()
    queued_total, digested, suppressed = 0, 0, Counter()
    notified_students: set[int] = set()
    for start in range(0, len(assignments), ASSIGNMENT_BATCH):
        requests = _requests_for(assignments[start:start + ASSIGNMENT_BATCH], labels, today, tally)
        queued = notifications_enqueue(requests, job_run_id=ctx.run.id, district_id=district.id, now=timezone.now())
        queued_total += queued.inserted
        digested += queued.digested
        suppressed.update(queued.suppressed)
        notified = queued_recipients(requests=requests)
        notified_students.update(s for _, s in notified if s is not None)
        ctx.progress(min(start + ASSIGNMENT_BATCH, len(assignments)), len(assignments))
    overdue = tally.pop("overdue", 0)
    ctx.logger.info("%s run: %s assignments, %s missing, %s queued", "morning" if morning else "evening",
                    len(assignments), sum(tally.values()) + overdue, queued_total)
    return {
        "slot": "morning" if morning else "evening",
        "assignments_checked": len(assignments),
        "students_notified": len(notified_students),
        "reminders": dict(tally),
        "overdue": overdue,
        "notifications_queued": queued_total,
        "digest_items": digested,
        "suppressed": dict(suppressed),
    }


JOB = Job(
    slug='missing-assignment-alerts',
    title='Missing assignment alerts',
    default_cron='0 7,19 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=5),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=1),
    overlap="skip",
    entry=run,
)
