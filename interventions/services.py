"""Writes on interventions. Every state change of an intervention goes through here."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Max

from interventions.models import CounselorTask, Intervention
from interventions.selectors import AttendanceRisk
from skillcore import events
from students.models import District

ATTENDANCE_STRATEGIES = ["Parent conference", "Attendance contract", "Transportation support"]
TIER_2_STRATEGIES = ["Attendance team referral", "Daily check-in/check-out", "Home visit"]
CONFERENCE_LEAD_DAYS = 7


@dataclass
class AttendanceOutcome:
    created: list[Intervention] = field(default_factory=list)
    escalated: list[Intervention] = field(default_factory=list)
    tasks_created: int = 0
    # At risk, but on evidence the counselor had when closing their last intervention.
    closed_by_counselor: list[int] = field(default_factory=list)


@transaction.atomic
def attendance_interventions_apply(
    *, risks: list[AttendanceRisk], escalate: set[int], opened_at: dt.datetime, local_date: dt.date,
    job_run_id: int | None, district_id: int,
) -> AttendanceOutcome:
    """Open attendance interventions for at-risk students and escalate to Tier 2.

    The tier follows the evidence: a student with no active intervention opens at Tier 2
    directly when ``escalate`` names them (session rate >= 20% with the minimum enrolled
    days), at Tier 1 otherwise. Only an intervention opened at an EARLIER slot escalates:
    a Tier 1 row whose ``opened_at`` is this slot was opened on the evidence of this slot
    (by this call or by an earlier attempt of it), so a re-run or a retry of the slot
    leaves it as it is instead of escalating its own work.

    A counselor's closing is respected: a student whose last attendance intervention was
    closed on local day C opens a new one only on evidence dated after C
    (``AttendanceRisk.has_evidence_after``): an absence on C does not reopen it, an absence
    on C + 1 that keeps the student at risk does.

    Idempotent per slot: ``opened_at`` is the job's slot, so a retry of the same slot finds
    the rows it opened (and returns them again, for notifications keyed by intervention),
    and the one-active-per-type constraint means a second active intervention never exists,
    even when two workers race.

    1. Read the district's active attendance interventions (one query).
    2. Escalate: active Tier 1 rows opened before this slot, of students in ``escalate``,
       become "escalated" and a Tier 2 row opens, linked through ``escalated_from``.
    3. Open Tier 2 (in ``escalate``) or Tier 1 for at-risk students with none active and
       no counselor's closing that the evidence predates (ON CONFLICT DO NOTHING).
    4. Return the rows opened at this slot (fresh or from an earlier attempt of it) and put
       each on the counselor's list with a proposed parent conference.
    """
    by_student = {r.student_id: r for r in risks}
    active = {
        row["student_id"]: row
        for row in Intervention.objects.filter(
            type=Intervention.Type.ATTENDANCE, status=Intervention.Status.ACTIVE,
            student__school__district_id=district_id,
        ).values("id", "student_id", "tier", "opened_at")
    }

    # 2. Escalation, of rows an earlier slot opened only.
    to_escalate = [
        row for sid, row in active.items() if sid in escalate and row["tier"] == 1 and row["opened_at"] < opened_at
    ]
    if to_escalate:
        ids = [row["id"] for row in to_escalate]
        Intervention.objects.filter(id__in=ids, status=Intervention.Status.ACTIVE).update(
            status=Intervention.Status.ESCALATED, closed_at=opened_at,
            closed_reason="Escalated to Tier 2: session absence rate reached 20%",
        )
        Intervention.objects.bulk_create([
            Intervention(
                student_id=row["student_id"], type=Intervention.Type.ATTENDANCE, tier=2,
                reason=by_student[row["student_id"]].reason, recommended_strategies=TIER_2_STRATEGIES,
                opened_at=opened_at, owner_id=by_student[row["student_id"]].counselor_id,
                escalated_from_id=row["id"], opened_by_run_id=job_run_id,
            )
            for row in to_escalate
        ])

    # 3. New interventions, at the tier the evidence supports, unless a counselor closed the
    # student's last one on or after the day of the latest evidence. One grouped read.
    zone = District.objects.get(pk=district_id).zone
    last_closed = {
        row["student_id"]: row["last"].astimezone(zone).date()
        for row in Intervention.objects.filter(
            type=Intervention.Type.ATTENDANCE, status=Intervention.Status.CLOSED,
            student__school__district_id=district_id,
        ).values("student_id").annotate(last=Max("closed_at")).order_by()
    }
    candidates = [r for r in risks if r.student_id not in active]
    new = [r for r in candidates if r.student_id not in last_closed or r.has_evidence_after(last_closed[r.student_id])]
    Intervention.objects.bulk_create(
        [
            Intervention(
                student_id=r.student_id, type=Intervention.Type.ATTENDANCE, tier=2 if r.student_id in escalate else 1,
                reason=r.reason, opened_at=opened_at, owner_id=r.counselor_id, opened_by_run_id=job_run_id,
                recommended_strategies=TIER_2_STRATEGIES if r.student_id in escalate else ATTENDANCE_STRATEGIES,
            )
            for r in new
        ],
        ignore_conflicts=True,
    )

    # 4. What this slot opened, including on an earlier attempt of the same slot.
    opened = list(
        Intervention.objects.filter(
            type=Intervention.Type.ATTENDANCE, status=Intervention.Status.ACTIVE, opened_at=opened_at,
            student__school__district_id=district_id,
        ).select_related("student")
    )
    outcome = AttendanceOutcome(
        created=[i for i in opened if i.escalated_from_id is None],
        escalated=[i for i in opened if i.escalated_from_id is not None],
        closed_by_counselor=sorted({r.student_id for r in candidates} - {r.student_id for r in new}),
    )
    # Events for the rows written by this call only (a retry of the slot re-reads the rows
    # of its earlier attempt but announces nothing twice). One batch per event type.
    new_ids, escalated_ids = {r.student_id for r in new}, {row["id"] for row in to_escalate}
    events.publish_many("intervention.opened", [
        {"intervention_id": i.id, "student_id": i.student_id, "type": i.type, "tier": i.tier, "job_run_id": job_run_id}
        for i in outcome.created if i.student_id in new_ids
    ], durable=True, occurred_at=opened_at)
    events.publish_many("intervention.escalated", [
        {"intervention_id": i.id, "escalated_from_id": i.escalated_from_id, "student_id": i.student_id,
         "type": i.type, "tier": i.tier, "job_run_id": job_run_id}
        for i in outcome.escalated if i.escalated_from_id in escalated_ids
    ], durable=True, occurred_at=opened_at)
    tasks = []
    for intervention in opened:
        counselor_id = intervention.owner_id
        if counselor_id is None:
            continue
        tasks.append(CounselorTask(
            counselor_id=counselor_id, student_id=intervention.student_id, intervention=intervention,
            kind=CounselorTask.Kind.PRIORITY, note=intervention.reason, created_at=opened_at,
        ))
        tasks.append(CounselorTask(
            counselor_id=counselor_id, student_id=intervention.student_id, intervention=intervention,
            kind=CounselorTask.Kind.PARENT_CONFERENCE, note="Proposed: attendance conference with the family",
            due_date=local_date + dt.timedelta(days=CONFERENCE_LEAD_DAYS), created_at=opened_at,
        ))
    slot_tasks = CounselorTask.objects.filter(
        intervention__opened_at=opened_at, intervention__student__school__district_id=district_id
    )
    before = slot_tasks.count()
    CounselorTask.objects.bulk_create(tasks, ignore_conflicts=True)
    outcome.tasks_created = slot_tasks.count() - before
    return outcome


@dataclass(frozen=True)
class ReviewMarks:
    marked: int  # newly ready to review
    cleared: int  # no longer: the student slipped again
    ready: int  # active attendance interventions ready to review after this call


@transaction.atomic
def attendance_review_marks_apply(*, slipping: frozenset[int], local_date: dt.date, district_id: int) -> ReviewMarks:
    """Mark the district's active attendance interventions ready to review, or clear the mark.

    Ready: the student is not in ``slipping`` (their last 30 instructional days are under
    the threshold with no run of 3 absent days ending in them). The mark keeps the first day
    it held; it is cleared as soon as the student slips again. Nothing is ever closed here:
    the counselor reviews and decides. Three statements whatever the district's size; a
    re-run of the slot finds the marks as they are.
    """
    active = Intervention.objects.filter(
        type=Intervention.Type.ATTENDANCE, status=Intervention.Status.ACTIVE, student__school__district_id=district_id,
    )
    slipping_ids = sorted(slipping)
    marked = active.filter(ready_to_review_since__isnull=True).exclude(student_id__in=slipping_ids).update(
        ready_to_review_since=local_date
    )
    cleared = active.filter(ready_to_review_since__isnull=False, student_id__in=slipping_ids).update(
        ready_to_review_since=None
    )
    return ReviewMarks(marked=marked, cleared=cleared, ready=active.filter(ready_to_review_since__isnull=False).count())


@transaction.atomic
def interventions_close_all(*, district_id: int, closed_at: dt.datetime, reason: str, job_run_id: int | None = None) -> int:
    """Close every active intervention of the district's students (the end-of-year
    rollover: reason "end of year"). One UPDATE; announces the ids on the event bus.
    Idempotent: a second call finds none active."""
    active = Intervention.objects.filter(student__school__district_id=district_id, status=Intervention.Status.ACTIVE)
    ids = list(active.values_list("id", flat=True))
    if not ids:
        return 0
    Intervention.objects.filter(id__in=ids, status=Intervention.Status.ACTIVE).update(
        status=Intervention.Status.CLOSED, closed_at=closed_at, closed_reason=reason[:200],
    )
    events.publish_many("intervention.closed", [{"id": i, "reason": reason, "job_run_id": job_run_id} for i in ids])
    return len(ids)
