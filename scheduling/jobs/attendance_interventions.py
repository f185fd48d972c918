"""Attendance interventions: 30 18 * * * (district local time).

Why then: 18:30 local: the school day's attendance is final (teachers' late corrections are in by the evening) and counselors see new interventions first thing next morning.

What it does, for the district's current session as of the slot's local date (today's
attendance included):
1. Selects the chronically absent students in one set-based pass
   (``interventions.selectors.attendance_evidence``: session rate >= the district threshold
   with the minimum enrolled days, the same over the last 30 instructional days, 10+
   absences, 3+ absent instructional days in a row anywhere in the session). A day is
   absent by status (excused, unexcused, out-of-school suspension: ED EDFacts FS195) or
   when the student missed at least half of it, fraction present <= 0.5 (CRDC chronic
   absenteeism: "absent ... at least 50 percent of the school day"); exactly half present
   is absent.
2. Opens an attendance intervention for each at-risk student without an active one, at
   the tier the evidence supports (a counselor's closing is respected: a student whose
   last intervention was closed on local day C reopens only on evidence dated after C,
   ``interventions.selectors.AttendanceRisk.has_evidence_after``): Tier 2 directly when the session rate is 20% or more
   with the minimum enrolled days (``interventions.selectors.needs_tier_2``), Tier 1
   otherwise; and escalates an active Tier 1 opened at an EARLIER slot to Tier 2 when the
   session rate reaches 20% (``interventions.services.attendance_interventions_apply``).
   Each opened row puts the student on the counselor's priority list and proposes a
   parent conference.
3. Marks each active attendance intervention "ready to review"
   (``Intervention.ready_to_review_since``, ``interventions.services.attendance_review_marks_apply``)
   when the student's last 30 instructional days are under the district threshold with no
   3-day run ending in them, and clears the mark when the student slips again. Nothing is
   closed automatically: the counselor reviews (MTSS: a Tier 1/2 support is faded on a
   team's decision from progress data, not by a rule).
4. Tells each intervention's counselor (its owner) by email and push, high priority.
No current session (summer): nothing is written and the summary says so.

The blast-radius guard: the interventions, tasks and counselor messages of a slot are
written in one transaction; when the messages would be held (far above the district's usual
volume: a bad import marking every student absent), all of it rolls back and the run ends
held with them as proposals (nothing opened, nothing sent; summary ``proposed``). A system
admin's release runs the slot again, approved; a discard leaves nothing to undo.

Idempotency key: the slot. Interventions opened by a slot carry ``opened_at = slot``, so a
retry finds its earlier attempt's rows instead of opening new ones (and the database allows
one active intervention per student and type). An intervention whose ``opened_at`` is this
slot is never escalated by this slot: a re-run or a retry of the slot (after a failure at
any step, interventions already committed) finds the same evidence and leaves its rows as
they are, so running a slot twice gives the same rows as running it once. Notifications
are keyed ``attendance-intervention:<intervention>:<recipient>:<channel>``, so a retry sends
nothing new. A later slot finds the interventions active and opens nothing; it escalates a
Tier 1 only when the rate has since reached 20%. The review marks are set and cleared by
two UPDATEs on the slot's evidence: a retry finds them as the first attempt left them.

Student data read: students (school, counselor, enrollment dates), the school calendars,
attendance records of the session, active attendance interventions. All of it runs inside
the run's FERPA access trail.

Summary: checked (active students), at_risk, created (opened at Tier 1 or 2), escalated (Tier 1 -> 2),
closed_by_counselor (at risk on evidence the counselor's closing predates: not reopened),
ready_to_review (active interventions marked after the run), review_marked, review_cleared, tasks_created, notifications_queued, notifications_not_queued (suppressed by the recipient's
preferences or missing address/device, or already queued), without_counselor.
"""
from datetime import timedelta

from django.db import transaction

from interventions.selectors import attendance_evidence, needs_tier_2
from interventions.services import attendance_interventions_apply, attendance_review_marks_apply
from notifications.models import Category, Channel, Priority
from notifications.services import NotificationRequest, notifications_enqueue
from notifications.summary_labels import ENQUEUE_FIGURES
from scheduling.registry import Job
from students.calendar import schools_in_session
from students.selectors import current_session

TEMPLATE = "attendance-intervention"


def _percent(risk) -> str:
    return f"{float(risk.rate) * 100:.1f}%" if risk else ""


class _HeldAsProposals(Exception):
    """The blast-radius guard would hold this slot's messages: its writes roll back."""

    def __init__(self, reason: str, created: int, escalated: int):
        super().__init__(reason)
        self.reason, self.created, self.escalated = reason, created, escalated


def _counselor_requests(outcome, risks) -> tuple[list[NotificationRequest], int]:
    """The email and push to the counselor of each intervention opened or escalated at this
    slot; and how many have no counselor (nobody to tell)."""
    by_student = {r.student_id: r for r in risks}
    requests, without_counselor = [], 0
    for intervention in [*outcome.created, *outcome.escalated]:
        counselor_id = intervention.owner_id
        if counselor_id is None:
            without_counselor += 1
            continue
        student = intervention.student
        context = {
            "intervention_id": intervention.id, "tier": intervention.tier,
            "student_name": f"{student.first_name} {student.last_name}",
            "absence_rate": _percent(by_student.get(intervention.student_id)) or intervention.reason,
        }
        for channel in (Channel.EMAIL, Channel.PUSH):
            requests.append(NotificationRequest(
                recipient_id=counselor_id, category=Category.ATTENDANCE_INTERVENTION, channel=channel,
                template=TEMPLATE, context=context, priority=Priority.HIGH, student_id=intervention.student_id,
                dedupe_key=f"attendance-intervention:{intervention.id}:{counselor_id}:{channel}",
                object_key=f"intervention:{intervention.id}",
                event="escalated" if intervention.escalated_from_id else "opened",
            ))
    return requests, without_counselor


def run(ctx) -> dict:
    district = ctx.district
    summary = {"checked": 0, "at_risk": 0, "created": 0, "escalated": 0, "closed_by_counselor": 0,
               "ready_to_review": 0, "review_marked": 0, "review_cleared": 0, "tasks_created": 0,
               "notifications_queued": 0, "notifications_not_queued": 0, "without_counselor": 0}
    session = current_session(district)
    if session is None:
        ctx.warn("no current session: no attendance to check (mark the school year current in the admin)")
        return {**summary, "skipped": "no current session"}
    local_date = ctx.scheduled_for.astimezone(district.zone).date()

    # 1. Who is at risk, as of the slot's local date. A school-days job: interventions are
    #    opened only for students of the schools in session today (or without a calendar for
    #    it); the engine already skipped the slot when there is none (docs/jobs.md).
    evidence = attendance_evidence(district=district, session=session, as_of=local_date)
    in_session = schools_in_session(district_id=district.id, day=local_date)
    checked, risks = evidence.checked, [r for r in evidence.risks if r.school_id in in_session]
    summary.update(checked=checked, at_risk=len(risks))
    ctx.progress(0, checked)
    ctx.logger.info("%s of %s active students at risk as of %s (%s)", len(risks), checked, local_date, session.name)

    # 2. Open and escalate, and 3. tell the counselor of each intervention opened at this slot
    #    (email and push), in one transaction: when the blast-radius guard finds the messages
    #    far above the district's usual volume (a bad import marking everyone absent), the
    #    interventions and tasks roll back with them and the run ends held, with them as
    #    proposals; a system admin's release runs the slot again, approved (docs/blast-radius-guard.md).
    #    The slot makes a retry find its own rows.
    minimum = district.min_enrolled_days
    escalate = {r.student_id for r in risks if needs_tier_2(r, minimum_days=minimum)}
    failure = None
    try:
        with transaction.atomic():
            outcome = attendance_interventions_apply(
                risks=risks, escalate=escalate, opened_at=ctx.scheduled_for, local_date=local_date,
                job_run_id=ctx.run.id, district_id=district.id,
            )
            requests, without_counselor = _counselor_requests(outcome, risks)
            try:
                # "now" is the clock, not the slot: a late run must still respect the quiet hours.
                sent = notifications_enqueue(requests, job_run_id=ctx.run.id, district_id=district.id)
            except Exception as exc:  # the outbox failed: the interventions stay, the retry tells
                failure = exc
            else:
                if reason := ctx.over_blast_radius():
                    raise _HeldAsProposals(reason, len(outcome.created), len(outcome.escalated))
        if failure is not None:
            raise failure
    except _HeldAsProposals as held:
        summary.update(proposed=held.created, proposed_escalations=held.escalated)
        ctx.logger.warning("held, not opened: %s intervention(s) and %s escalation(s) proposed (%s)",
                           held.created, held.escalated, held.reason)
    else:
        summary.update(created=len(outcome.created), escalated=len(outcome.escalated),
                       tasks_created=outcome.tasks_created, closed_by_counselor=len(outcome.closed_by_counselor),
                       without_counselor=without_counselor)
        summary["notifications_queued"] = sent.inserted + sent.digested
        summary["notifications_not_queued"] = len(requests) - summary["notifications_queued"]
    # 4. Review marks, after opening: an intervention opened today on old evidence (a run in September) is
    # ready to review at once when the last 30 days are fine.
    marks = attendance_review_marks_apply(slipping=evidence.slipping, local_date=local_date, district_id=district.id)
    summary.update(ready_to_review=marks.ready, review_marked=marks.marked, review_cleared=marks.cleared)
    ctx.progress(checked, checked)
    ctx.logger.info("opened %s, escalated %s, queued %s notification(s)", summary["created"], summary["escalated"],
                    summary["notifications_queued"])
    return summary


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "checked": ("Students checked", "active students of the current session"),
    "at_risk": ("At risk", "absent on at least 10% of their enrolled days, or 3 days in a row"),
    "created": "Interventions opened",
    "escalated": "Interventions escalated",
    "closed_by_counselor": ("Kept closed by a counselor", "closed by a counselor, no absence since: not reopened"),
    "ready_to_review": ("Ready to review", "active interventions a counselor should now look at"),
    "review_marked": "Marked ready to review",
    "review_cleared": "No longer ready to review",
    "tasks_created": "Counselor tasks created",
    "without_counselor": ("At risk with no counselor", "no counselor assigned: nobody could be told"),
    "skipped": "Nothing checked",
    **ENQUEUE_FIGURES,  # the outbox's figures, the same words on every job
}


JOB = Job(
    slug='attendance-interventions',
    title='Attendance interventions',
    default_cron='30 18 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=5),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=6),
    overlap="skip",
    calendar="school days",
    figures=FIGURES,
    progress_unit="students",
    entry=run,
)
