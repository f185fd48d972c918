"""Grade posting digest: 0 20 * * * (district local time).

Why then: 20:00 local: after teachers post the day's grades and before the 21:00 end of the family messaging window.

Window: grades posted in (previous delivered slot, this slot]. The previous delivered slot is
the latest earlier slot of this job and district whose run succeeded or committed its
output (scheduling.selectors.last_delivered_slot); never "the last 24 hours from now", so a
late run (catch-up at 20:40) or a retry (same slot, hours later) neither skips nor repeats a
grade. First run ever: the job's previous cron slot (one day back with the default cron).
Look-back is capped at MAX_LOOKBACK (a schedule paused for months does not mail a term's
grades at once; the cap is logged when it applies).

Messages: one digest per student (their own account) and one per linked guardian, listing
class, assignment, score, maximum and percentage (score / maximum). The outbox's enqueue
applies the recipient's grade-digest frequency (immediately: the digest goes now; daily or
weekly: it joins that digest; never: suppressed), guardian revocation and age 18
(student_id is passed). Classes the student muted are left out of the student's own digest.
Guardians who chose the grade digest by SMS (consent recorded, no STOP reply since:
notifications.selectors.sms_texting) also get it as a text that names the child and no score.
Guardians with ``NotificationPreference.low_grade_threshold`` (category grade-digest) also
get an immediate performance alert, per grade below the threshold, on that preference's
channel (the grade stays in the digest: the digest is the full record).

Idempotency: ``grade-digest:<slot>:<student>:<recipient>:<email|sms>`` (a re-run of a slot has the
same window and keys) and ``low-grade:<grade>:<posted_at>:<recipient>:<channel>``. The
messages and the ``delivered_through`` checkpoint commit in one transaction.

Student data read: grades posted in the window (score, assignment title and maximum, class
name), students' first names and accounts, muted classes, guardian links.
"""
from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.utils import timezone

from notifications.models import Category, Channel, Priority
from notifications.selectors import low_grade_thresholds, queued_recipients, sms_texting
from notifications.services import NotificationRequest, notifications_enqueue
from notifications.summary_labels import ENQUEUE_FIGURES
from scheduling import selectors as run_selectors
from scheduling.registry import Job
from students import selectors

SLUG = "grade-posting-digest"
MAX_LOOKBACK = dt.timedelta(days=14)
# Messages per outbox call (one transaction each). Each chunk costs the outbox's fixed set
# of queries (~12) plus 2 to see who was notified, so the query count grows only with the
# messages written, by one such set per chunk, never with the students or grades read. 10,000
# rather than the outbox's default 2,000 (a 10,000-student district writes ~11,000 digests
# and alerts a day: 2 chunks, not 6); a chunk of 10,000 requests is tens of MB in memory.
REQUEST_CHUNK = 10_000


def _number(value: Decimal) -> str:
    """8.50 -> "8.5", 10.00 -> "10": what a family expects to read."""
    text = format(value.normalize(), "f")
    return text


def percentage(score: Decimal, maximum: Decimal) -> Decimal:
    return (Decimal(score) * 100 / Decimal(maximum)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def window(ctx) -> tuple[dt.datetime, dt.datetime]:
    """(after, until] for this run."""
    until = ctx.scheduled_for
    after = run_selectors.last_delivered_slot(job_slug=SLUG, district_id=ctx.district.id, before=until)
    if after is None:
        after = run_selectors.previous_cron_slot(
            job_slug=SLUG, district_id=ctx.district.id, tz_name=ctx.district.time_zone, before=until,
        ) or until - dt.timedelta(days=1)
        ctx.logger.info("first delivered run: looking back to the previous slot %s", after.isoformat())
    if until - after > MAX_LOOKBACK:
        ctx.logger.warning("last delivered slot %s is more than %s ago: capped", after.isoformat(), MAX_LOOKBACK)
        after = until - MAX_LOOKBACK
    return after, until


def _requests(grades, *, guardians: dict[int, list[int]], thresholds: dict, until: dt.datetime, slot_key: str,
              tally: dict, texting: set[int] = frozenset()) -> Iterator[NotificationRequest]:
    """The messages for the window's grades (ordered by student), one student at a time.
    Guardians in ``texting`` also get the digest by SMS (its text names the child, never a
    score: templates/notifications/grade-digest.<lang>.sms.txt)."""

    def digest(recipient_id: int, student_id: int, lines: list[dict], channel: str = Channel.EMAIL) -> NotificationRequest:
        return NotificationRequest(
            recipient_id=recipient_id, category=Category.GRADE_DIGEST, channel=channel, template="grade-digest",
            context={"grades": [g["line"] for g in lines], "grade_count": len(lines), "window_end": until.isoformat()},
            dedupe_key=f"grade-digest:{slot_key}:{student_id}:{recipient_id}:{channel}",
            student_id=student_id, object_key=f"grade-digest:{slot_key}:{student_id}", event="posted",
        )

    for student_id, rows in itertools.groupby(grades, key=lambda g: g["student_id"]):
        lines = list(rows)
        tally["grades"] += len(lines)
        tally["students"] += 1
        for g in lines:
            g["line"] = {
                "grade_id": g["id"], "course_name": g["assignment__section__course_name"], "assignment_title": g["assignment__title"],
                "score": _number(g["score"]), "max_score": _number(g["assignment__max_score"]),
                "percentage": str(percentage(g["score"], g["assignment__max_score"])),
            }
        user_id = lines[0]["student__user_id"]
        if user_id:
            own = [g for g in lines if not g["muted"]]
            if own:
                tally["student_users"].add(user_id)
                yield digest(user_id, student_id, own)
        for guardian_id in guardians.get(student_id, ()):
            yield digest(guardian_id, student_id, lines)
            if guardian_id in texting:
                yield digest(guardian_id, student_id, lines, Channel.SMS)
            for channel, threshold in thresholds.get(guardian_id, ()):
                for g in lines:
                    if percentage(g["score"], g["assignment__max_score"]) >= threshold:
                        continue
                    tally["low_alerts"] += 1
                    posted = g["posted_at"].astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
                    yield NotificationRequest(
                        recipient_id=guardian_id, category=Category.PERFORMANCE_ALERT, channel=channel,
                        template="low-grade-alert", context={**g["line"], "threshold": _number(threshold)},
                        dedupe_key=f"low-grade:{g['id']}:{posted}:{guardian_id}:{channel}",
                        priority=Priority.HIGH, student_id=student_id, section_id=g["assignment__section_id"],
                    )


def run(ctx) -> dict:
    district = ctx.district
    after, until = window(ctx)
    slot_key = until.astimezone(dt.UTC).strftime("%Y%m%dT%H%MZ")

    # 1. The students graded in the window (a subquery, counted once for progress), their
    #    guardians and the guardians' low-grade thresholds (one query each, whatever the
    #    district's size: the guardian links of graded students fit in memory, the grades
    #    themselves are streamed).
    graded = selectors.students_graded_between(district=district, after=after, until=until)
    total = graded.count()
    ctx.progress(0, total)
    guardians: dict[int, list[int]] = defaultdict(list)
    for student_id, guardian_id in selectors.guardians_of(student_ids=graded):
        guardians[student_id].append(guardian_id)
    thresholds = low_grade_thresholds(user_ids=selectors.guardian_ids_of(student_ids=graded))
    # Guardians who chose the digest by text (consent recorded, no STOP since): one query.
    texting = sms_texting(user_ids=selectors.guardian_ids_of(student_ids=graded), category=Category.GRADE_DIGEST)
    tally = {"student_users": set(), "low_alerts": 0, "grades": 0, "students": 0}
    queued_total = digested = 0
    suppressed: Counter = Counter()
    students_notified: set[int] = set()
    guardians_notified: set[int] = set()
    # 2. One statement streams the window's grades by student (muted classes as an EXISTS);
    #    one digest per student and per guardian and the low-grade alerts are queued
    #    REQUEST_CHUNK at a time (~12 queries a chunk). Everything, and the
    #    ``delivered_through`` checkpoint, is one transaction: a crash leaves none of it, and
    #    a run that committed counts as delivered even if its success was never recorded.
    with transaction.atomic():
        requests = _requests(
            selectors.grades_posted_between(district=district, after=after, until=until),
            guardians=guardians, thresholds=thresholds, until=until, slot_key=slot_key, tally=tally, texting=texting,
        )
        while chunk := list(itertools.islice(requests, REQUEST_CHUNK)):
            queued = notifications_enqueue(
                chunk, job_run_id=ctx.run.id, district_id=district.id, now=timezone.now(), chunk_size=REQUEST_CHUNK,
            )
            queued_total += queued.inserted
            digested += queued.digested
            suppressed.update(queued.suppressed)
            # Who will get this slot's digest (preferences, revocation, age 18 applied), re-read
            # from the outbox so that a re-run of the slot reports the same people.
            digests = [r for r in chunk if r.category == Category.GRADE_DIGEST]
            for user_id, student_id in queued_recipients(requests=digests):
                if user_id in tally["student_users"]:
                    students_notified.add(student_id)
                else:
                    guardians_notified.add(user_id)
            ctx.progress(tally["students"], total)
        ctx.save_checkpoint({"delivered_through": until.isoformat(), "window_after": after.isoformat()})
    grades = tally["grades"]
    ctx.logger.info("%s grades in (%s, %s]: %s queued", grades, after.isoformat(), until.isoformat(), queued_total)
    return {
        "window_after": after.astimezone(district.zone).isoformat(),
        "window_until": until.astimezone(district.zone).isoformat(),
        "grades": grades,
        "students_notified": len(students_notified),
        "guardians_notified": len(guardians_notified),
        "low_grade_alerts": tally["low_alerts"],
        "notifications_queued": queued_total,
        "digest_items": digested,
        "suppressed": dict(suppressed),
    }


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "window_after": "Grades posted after",
    "window_until": "Up to",
    "grades": "Grades posted in the window",
    "students_notified": "Students told",
    "guardians_notified": "Guardians told",
    "low_grade_alerts": "Low-grade alerts",
    **ENQUEUE_FIGURES,  # the outbox's figures, the same words on every job
}


JOB = Job(
    slug=SLUG,
    title='Grade posting digest',
    default_cron='0 20 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=5),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(minutes=50),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="students",
    entry=run,
)
