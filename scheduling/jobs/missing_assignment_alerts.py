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
import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

from django.utils import timezone

from notifications.models import Category, Channel
from notifications.selectors import queued_recipients
from notifications.services import NotificationRequest, notifications_enqueue
from notifications.summary_labels import ENQUEUE_FIGURES
from scheduling.registry import Job
from students import selectors
from students.calendar import schools_in_session

EVENING_OFFSETS = (7, 3, 1)  # days before due, sent by the 19:00 run
MAJOR_ONLY = {"7"}  # offsets sent for major assignments only
OVERDUE_DAYS = 14
MORNING_BEFORE = dt.time(12, 0)
# Messages per outbox call (one transaction each). Each chunk costs the outbox's fixed set
# of queries (~12) plus 2 to see who was notified, so the query count grows only with the
# messages written, by one such set per chunk, never with the assignments read. 10,000
# rather than the outbox's default 2,000: a 50,000-student evening writes ~400,000
# messages; a chunk in memory is ~25 MB (tracemalloc, 6,205 messages in one chunk).
REQUEST_CHUNK = 10_000


def targets(today: dt.date, *, morning: bool) -> dict[dt.date, str]:
    """Due date -> offset label for the run: "0" in the morning; "7", "3", "1" and
    "overdue-<n>" (n = 1..14) in the evening."""
    if morning:
        return {today: "0"}
    out = {today + dt.timedelta(days=o): str(o) for o in EVENING_OFFSETS}
    out.update({today - dt.timedelta(days=n): f"overdue-{n}" for n in range(1, OVERDUE_DAYS + 1)})
    return out


class _Stream:
    """Turns the selector's rows (one per missing pair and guardian link, a pair's rows
    adjacent) into NotificationRequests, counting pairs per offset and assignments seen."""

    def __init__(self, rows, labels: dict[dt.date, str], today: dt.date):
        self.rows, self.labels, self.today = rows, labels, today
        self.tally: Counter = Counter()
        self.assignments_seen = 0

    def __iter__(self) -> Iterator[NotificationRequest]:
        pair = base = context = None
        for assignment_id, due_date, title, section_id, course, student_id, user_id, guardian_id in self.rows:
            recipients = []
            if pair != (assignment_id, student_id):
                # First row of a pair: count it, and the student's own push (no account: none).
                if pair is None or pair[0] != assignment_id:
                    self.assignments_seen += 1
                pair = (assignment_id, student_id)
                label = self.labels[due_date]
                overdue = label.startswith("overdue")
                self.tally["overdue" if overdue else label] += 1
                base = f"assignment-reminder:{assignment_id}:{student_id}:{label}"
                context = {
                    "assignment_id": assignment_id, "assignment_title": title, "course_name": course,
                    "due_date": due_date.isoformat(), "offset": label,
                    "days_overdue": (self.today - due_date).days if overdue else 0,
                }
                if user_id:
                    recipients.append((user_id, Channel.PUSH))
            if guardian_id:
                recipients.append((guardian_id, Channel.EMAIL))
            for recipient_id, channel in recipients:
                yield NotificationRequest(
                    recipient_id=recipient_id, category=Category.ASSIGNMENT_REMINDER, channel=channel,
                    template="assignment-reminder", context=context, dedupe_key=f"{base}:{recipient_id}:{channel}",
                    student_id=student_id, section_id=section_id, object_key=base, event="reminder",
                )


def run(ctx) -> dict:
    district = ctx.district
    local = ctx.scheduled_for.astimezone(district.zone)
    today, morning = local.date(), local.time() < MORNING_BEFORE
    labels = targets(today, morning=morning)
    major_only = [d for d, label in labels.items() if label in MAJOR_ONLY]

    # 0. A school-days job: only the schools in session today (or without a calendar for
    #    it); the engine already skipped the slot when there is none (docs/jobs.md).
    in_session = schools_in_session(district_id=district.id, day=today)
    # 1. How much work is due on the target dates (one COUNT), for the summary and progress.
    checked = selectors.assignments_due_count(district=district, dates=labels, major_only_dates=major_only,
                                              school_ids=in_session)
    ctx.progress(0, checked)
    # 2. One statement for the whole district, streamed: the missing work (an anti-join on
    #    submissions) with its recipients (the student's account, a LEFT JOIN to the guardian
    #    links). A push to the student and one email per guardian for each missing piece of
    #    work, queued REQUEST_CHUNK at a time (the outbox's enqueue applies preferences,
    #    revocation, age 18 and muted classes, ~12 queries a chunk), so the query count
    #    depends on the messages written, never on how many assignments were read.
    stream = _Stream(
        selectors.missing_work_recipients(district=district, dates=labels, major_only_dates=major_only, day=today,
                                          school_ids=in_session),
        labels, today,
    )
    queued_total, digested, suppressed = 0, 0, Counter()
    notified_students: set[int] = set()
    requests = iter(stream)
    while chunk := list(itertools.islice(requests, REQUEST_CHUNK)):
        queued = notifications_enqueue(
            chunk, job_run_id=ctx.run.id, district_id=district.id, now=timezone.now(), chunk_size=REQUEST_CHUNK,
        )
        queued_total += queued.inserted
        digested += queued.digested
        suppressed.update(queued.suppressed)
        # Re-read from the outbox, so that a re-run of the slot reports the same students.
        notified_students.update(s for _, s in queued_recipients(requests=chunk) if s is not None)
        ctx.progress(stream.assignments_seen, checked)
    ctx.progress(checked, checked)
    tally = stream.tally
    overdue = tally.pop("overdue", 0)
    ctx.logger.info("%s run: %s assignments, %s missing, %s queued", "morning" if morning else "evening",
                    checked, sum(tally.values()) + overdue, queued_total)
    return {
        "slot": "morning" if morning else "evening",
        "assignments_checked": checked,
        "students_notified": len(notified_students),
        "reminders": dict(tally),
        "overdue": overdue,
        "notifications_queued": queued_total,
        "digest_items": digested,
        "suppressed": dict(suppressed),
    }


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "slot": "Run",
    "assignments_checked": "Assignments checked",
    "students_notified": "Students told",
    "reminders": ("Reminders, by days before due", "missing work due soon"),
    "overdue": "Overdue reminders",
    "0": "due today", "1": "due tomorrow",
    **{str(days): f"due in {days} days" for days in range(2, 15)},
    **{f"overdue-{days}": f"{days} days overdue" for days in range(1, 15)},
    **ENQUEUE_FIGURES,  # the outbox's figures, the same words on every job
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
    calendar="school days",
    figures=FIGURES,
    progress_unit="assignments",
    entry=run,
)
