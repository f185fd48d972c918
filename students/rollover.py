"""End-of-year rollover: close a district's school year and open the next.

Steps, in this order (RosarioSIS's rules, docs/decisions/domain-rules.md), each one transaction that also
records the step as done on the RolloverRequest, so a crashed run resumes at the first
unfinished step and a finished rollover re-run changes nothing:

1. ``snapshot``: the closing year — active students per school and grade, active
   interventions — stored on the request (RolloverRequest.snapshot).
2. ``new-session``: create the new AcademicSession (not yet current).
3. ``graduate``: active students in grade 12 at a school whose highest grade is 12, not
   retained: graduated_on and exit_date = the closing session's end, inactive, archived,
   not re-enrolled.
4. ``promote``: every other active enrollment moves up one grade, except retained students
   (Student.retain_next_year), who keep their grade and school; the flag is cleared for
   next year. A promoted student whose next grade is above their school's highest grade
   (an elementary school's 5th graders) is enrolled in the school it feeds into
   (School.feeds_into: the middle school), in that next grade, and listed in
   ``counts["moved_to_feeder_student_ids"]``; their counselor stays only if on the new
   school's staff. Where the school names no feeder (or the feeder does not teach that
   grade, or already has a student with that student number), the student is promoted in
   place and listed in ``counts["feeder_transfer_student_ids"]`` for staff to transfer by
   hand; the dry run names those schools first. Transfers (transferred_on set) and
   inactive or archived students are not rolled.
5. ``sessions-current``: the old session stops being current and the new one becomes
   current. The attendance jobs count per current session, so this resets their counters.
6. ``close-interventions``: every active intervention closes with reason "end of year".

Every step is set-based (a few UPDATEs), whatever the number of students.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from interventions.models import Intervention
from interventions.services import interventions_close_all
from scheduling.models import RolloverRequest
from students.models import AcademicSession, District, School, StaffProfile, Student

STEPS = ("snapshot", "new-session", "graduate", "promote", "sessions-current", "close-interventions")
END_OF_YEAR = "end of year"
RUN_FUNC = "students.rollover.run_approved"


class RolloverError(ValueError):
    """Bad input: one clear line, nothing written."""


class NotApproved(RolloverError):
    """The request waits for a second system admin's approval, or was cancelled."""


@dataclass(frozen=True)
class Target:
    district: District
    to_name: str
    start: dt.date
    end: dt.date
    closing: AcademicSession


def parse_date(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise RolloverError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None


def validate(*, district_id, to_name: str, start: dt.date, end: dt.date, existing: RolloverRequest | None = None) -> Target:
    """Check a rollover's input; raise RolloverError naming the first problem."""
    district = District.objects.filter(pk=district_id).first() if str(district_id).isdigit() else None
    if district is None:
        # Quoted unless it is a plain number: "\n0" typed as an id must not break the one-line error.
        shown = district_id if str(district_id).isdigit() else repr(str(district_id))
        raise RolloverError(f"unknown district {shown}")
    to_name = (to_name or "").strip()
    if not to_name:
        raise RolloverError("the new school year needs a name (--to)")
    if end <= start:
        raise RolloverError(f"the end date {end} is not after the start date {start}")
    mine = existing.new_session_id if existing else None
    sessions = AcademicSession.objects.filter(district=district).exclude(pk=mine)
    if sessions.filter(name=to_name).exists():
        raise RolloverError(f"district {district.id} already has a session named {to_name!r}")
    overlap = sessions.filter(start_date__lte=end, end_date__gte=start).order_by("start_date").first()
    if overlap is not None:
        raise RolloverError(f"{start}..{end} overlaps session {overlap.name!r} ({overlap.start_date}..{overlap.end_date})")
    closing = existing.closing_session if existing and existing.closing_session_id else (
        AcademicSession.objects.filter(district=district, is_current=True).first())
    if closing is None:
        raise RolloverError(f"district {district.id} has no current session to close")
    if start <= closing.end_date:
        raise RolloverError(f"the new year must start after the closing year ends ({closing.end_date})")
    return Target(district, to_name, start, end, closing)


# -- what the steps touch (one definition, shared by the plan and the run) -------------------------
def _enrolled(district: District):
    """Active enrollments: active, not archived, not graduated, not transferred."""
    return Student.objects.filter(school__district_id=district.id, is_active=True, archived_at__isnull=True,
                                  graduated_on__isnull=True, transferred_on__isnull=True)


def _graduating(district: District):
    return _enrolled(district).filter(retain_next_year=False, school__highest_grade=12, grade_level__gte=12)


def _rolling(district: District):
    """Promoted: not retained and not graduating (grade 12 only exists at 12-ending schools
    or as a data error elsewhere; the grade never exceeds 12)."""
    return _enrolled(district).filter(retain_next_year=False, grade_level__lt=12)


def _leaving(district: District):
    """Promoted past their school's highest grade (below 12: a 12-ending school graduates)."""
    return _rolling(district).filter(school__highest_grade__lt=12, grade_level__gte=F("school__highest_grade"))


def _to_feeder(district: District):
    """Leaving, and their school's feeder can take them: same district, teaches the next
    grade, and no student there (or arriving there from another school) has their student
    number, which is unique per school — a clash stays behind, listed, rather than failing
    the step."""
    clash = Student.objects.filter(local_id=OuterRef("local_id"), school__district_id=district.id).exclude(
        pk=OuterRef("pk")).filter(Q(school_id=OuterRef("school__feeds_into_id"))
                                  | Q(school__feeds_into_id=OuterRef("school__feeds_into_id")))
    return _leaving(district).filter(
        school__feeds_into__district_id=district.id,
        school__feeds_into__lowest_grade__lte=F("grade_level") + 1,
        school__feeds_into__highest_grade__gte=F("grade_level") + 1,
    ).exclude(Exists(clash))


def _feeder(district: District):
    """Leaving and staying: promoted in place, listed for staff to transfer."""
    return _leaving(district).exclude(pk__in=_to_feeder(district).values("pk"))


def _no_feeder_schools(district: District) -> list[dict]:
    """The schools whose leaving students would stay (no feeder, or one that cannot take them)."""
    rows = (_feeder(district).values("school_id", "school__name", "school__highest_grade", "school__feeds_into__name")
            .annotate(n=Count("id")).order_by("school__name", "school_id"))
    return [{"school_id": r["school_id"], "school": r["school__name"], "highest_grade": r["school__highest_grade"],
             "feeds_into": r["school__feeds_into__name"], "students": r["n"]} for r in rows]


def _not_rolled(district: District):
    return Student.objects.filter(school__district_id=district.id).filter(
        Q(transferred_on__isnull=False) | Q(is_active=False) | Q(archived_at__isnull=False) | Q(graduated_on__isnull=False))


def snapshot(district: District, closing: AcademicSession) -> dict:
    rows = (_enrolled(district).values("school_id", "school__name", "grade_level").annotate(n=Count("id"))
            .order_by("school__name", "grade_level"))
    by_school: dict[str, dict] = {}
    for r in rows:
        s = by_school.setdefault(str(r["school_id"]), {"school": r["school__name"], "grades": {}, "total": 0})
        s["grades"][str(r["grade_level"])] = r["n"]
        s["total"] += r["n"]
    return {
        "session": {"id": closing.id, "name": closing.name, "start": closing.start_date.isoformat(),
                    "end": closing.end_date.isoformat()},
        "schools": by_school, "active_students": sum(s["total"] for s in by_school.values()),
        "active_interventions": Intervention.objects.filter(student__school__district_id=district.id,
                                                            status=Intervention.Status.ACTIVE).count(),
    }


# What each count of the dry run (``plan``) and of a run's summary means, in the words the
# dry run's table and the run page show (the end-of-year-rollover job declares them too).
COUNT_LABELS = {
    "active_students": "Active students now",
    "closing_active_students": "Active students in the closing year",
    "graduated": "Graduated (top grade of a school ending at 12)",
    "promoted": "Promoted one grade",
    "retained": "Kept in their grade (marked to repeat it)",
    "moved_to_feeder": "Moved to the school their school feeds into",
    "feeder_transfer": "Promoted in place, to transfer by hand (no usable feeder school)",
    "not_rolled": "Not rolled over (transferred out or inactive)",
    "interventions_closed": "Active interventions closed (end of year)",
}


def plan(target: Target) -> dict:
    """The exact counts a run would produce now (the dry run). Reads only."""
    d = target.district
    return {
        "district": d.id, "closing_session": target.closing.name, "new_session": target.to_name,
        "start": target.start.isoformat(), "end": target.end.isoformat(),
        "active_students": _enrolled(d).count(), "graduated": _graduating(d).count(), "promoted": _rolling(d).count(),
        "retained": _enrolled(d).filter(retain_next_year=True).count(), "feeder_transfer": _feeder(d).count(),
        "not_rolled": _not_rolled(d).count(),
        "interventions_closed": Intervention.objects.filter(student__school__district_id=d.id,
                                                            status=Intervention.Status.ACTIVE).count(),
        "moved_to_feeder": _to_feeder(d).count(), "no_feeder_schools": _no_feeder_schools(d),
    }


# -- running ---------------------------------------------------------------------------------------
def _step(request_id: int, name: str, work) -> bool:
    """Run one step unless done; mark it done in the same transaction. True when it ran."""
    with transaction.atomic():
        req = RolloverRequest.objects.select_for_update().get(pk=request_id)
        if name in req.steps_done:
            return False
        work(req)
        req.steps_done = [*req.steps_done, name]
        req.save(update_fields=["steps_done", "counts", "snapshot", "new_session", "closing_session"])
        return True


def ensure_approved(request: RolloverRequest) -> None:
    """The two-person rule, for every path that runs a rollover (the job, the command line):
    only a request a second system admin approved runs. RolloverError (one line) otherwise."""
    if request.status == RolloverRequest.Status.CANCELLED:
        raise NotApproved(f"rollover request {request.pk} to {request.to_name!r} was cancelled; nothing written")
    if request.approved_by_id is None:
        asked = f" (asked by {request.requested_by.get_username()})" if request.requested_by_id else ""
        raise NotApproved(
            f"rollover request {request.pk} to {request.to_name!r}{asked} is waiting for approval: a system admin "
            f"{'other than the one who asked ' if asked else ''}must approve it in the admin (Scheduling > Rollover "
            f"requests > Approve and schedule); nothing written")


def execute(*, request: RolloverRequest, now: dt.datetime, job_run_id: int | None = None, logger=None) -> dict:
    """Run the request's unfinished steps in order. Returns the counts. Refuses (RolloverError,
    nothing written) a request that was not approved."""
    # Checked and claimed in one conditional UPDATE, so a request cancelled (or never
    # approved) after the caller loaded it still does not run.
    started = (RolloverRequest.objects.filter(pk=request.pk, approved_by__isnull=False)
               .exclude(status=RolloverRequest.Status.CANCELLED)
               .update(status=RolloverRequest.Status.RUNNING, job_run_id=job_run_id, error=""))
    if not started:
        ensure_approved(RolloverRequest.objects.select_related("requested_by").get(pk=request.pk))
        raise NotApproved(f"rollover request {request.pk} cannot run")  # approved and not cancelled: unreachable
    district = request.district
    if not request.closing_session_id:
        closing = AcademicSession.objects.filter(district=district, is_current=True).first()
        if closing is None:
            raise RolloverError(f"district {district.id} has no current session to close")
        RolloverRequest.objects.filter(pk=request.pk).update(closing_session=closing)
    ran = []

    def snap(req):
        req.snapshot = snapshot(district, req.closing_session)

    def new_session(req):
        req.new_session = AcademicSession.objects.create(
            district=district, name=req.to_name, start_date=req.start_date, end_date=req.end_date, is_current=False)
        req.counts["new_session_id"] = req.new_session.id

    def graduate(req):
        day = req.closing_session.end_date
        req.counts["graduated"] = _graduating(district).update(
            graduated_on=day, exit_date=Greatest(F("enrollment_date"), Value(day)), is_active=False, archived_at=now,
            retain_next_year=False)

    def promote(req):
        # Who stays and who moves is read before anything moves: the move changes their school.
        req.counts["feeder_transfer_student_ids"] = list(_feeder(district).order_by("id").values_list("id", flat=True))
        req.counts["no_feeder_schools"] = _no_feeder_schools(district)
        moving = _to_feeder(district)
        req.counts["moved_to_feeder_student_ids"] = list(moving.order_by("id").values_list("id", flat=True))
        # A counselor who is not on the feeder's staff no longer serves the student: cleared
        # (the new school assigns one) before the move, while the old school still names the feeder.
        on_feeder_staff = StaffProfile.schools.through.objects.filter(
            staffprofile__user_id=OuterRef("counselor_id"), school_id=OuterRef("school__feeds_into_id"))
        moving.filter(counselor__isnull=False).exclude(Exists(on_feeder_staff)).update(counselor=None)
        moving.update(school=Subquery(School.objects.filter(pk=OuterRef("school_id")).values("feeds_into_id")[:1]))
        req.counts["promoted"] = _rolling(district).update(grade_level=F("grade_level") + 1)
        # Retained students keep their grade; the flag is for one rollover only.
        req.counts["retained"] = _enrolled(district).filter(retain_next_year=True).update(retain_next_year=False)

    def current(req):
        AcademicSession.objects.filter(district=district, is_current=True).exclude(pk=req.new_session_id).update(is_current=False)
        AcademicSession.objects.filter(pk=req.new_session_id).update(is_current=True)

    def close(req):
        req.counts["interventions_closed"] = interventions_close_all(
            district_id=district.id, closed_at=now, reason=END_OF_YEAR, job_run_id=job_run_id)

    for name, work in zip(STEPS, (snap, new_session, graduate, promote, current, close)):
        if _step(request.pk, name, work):
            ran.append(name)
            if logger:
                logger.info("rollover %s: step %s done", request.pk, name)
    RolloverRequest.objects.filter(pk=request.pk).update(status=RolloverRequest.Status.DONE, finished_at=now)
    request.refresh_from_db()
    counts = dict(request.counts)
    return {"request": request.pk, "steps_run": ran, "steps_skipped": [s for s in STEPS if s not in ran],
            "graduated": counts.get("graduated", 0), "promoted": counts.get("promoted", 0),
            "retained": counts.get("retained", 0), "feeder_transfer": len(counts.get("feeder_transfer_student_ids", [])),
            "moved_to_feeder": len(counts.get("moved_to_feeder_student_ids", [])),
            "no_feeder_schools": counts.get("no_feeder_schools", []),
            "interventions_closed": counts.get("interventions_closed", 0), "new_session_id": counts.get("new_session_id"),
            "closing_active_students": request.snapshot.get("active_students")}


def mark_failed(request: RolloverRequest, error: str) -> None:
    RolloverRequest.objects.filter(pk=request.pk).update(status=RolloverRequest.Status.FAILED, error=error[:2000])


@transaction.atomic
def request_create(*, target: Target, requested_by, run_at: dt.datetime | None, now: dt.datetime,
                   status: str = RolloverRequest.Status.PENDING) -> RolloverRequest:
    return RolloverRequest.objects.create(
        district=target.district, to_name=target.to_name, start_date=target.start, end_date=target.end, run_at=run_at,
        requested_by=requested_by, status=status, closing_session=target.closing, created_at=now,
    )


@transaction.atomic
def request_approve(*, request: RolloverRequest, approver, now: dt.datetime | None = None) -> RolloverRequest:
    """The second system admin approves: a one-off django-q2 schedule at ``run_at`` runs it."""
    from django_q.models import Schedule

    now = now or timezone.now()
    req = RolloverRequest.objects.select_for_update().get(pk=request.pk)
    if req.status != RolloverRequest.Status.PENDING:
        raise RolloverError(f"rollover {req.pk} is {req.status}, not waiting for approval")
    if not approver.is_superuser:
        raise RolloverError("only a system admin can approve a rollover")
    if req.requested_by_id == approver.pk:
        raise RolloverError("a second system admin must approve: you asked for this rollover")
    validate(district_id=req.district_id, to_name=req.to_name, start=req.start_date, end=req.end_date, existing=req)
    when = max(req.run_at or now, now)
    req.q_schedule = Schedule.objects.create(
        name=f"skillcore:rollover:{req.pk}", func=RUN_FUNC, kwargs=repr({"request_id": req.pk}),
        schedule_type=Schedule.ONCE, repeats=-1, next_run=when,
    )
    req.approved_by, req.approved_at, req.status, req.run_at = approver, now, RolloverRequest.Status.SCHEDULED, when
    req.save(update_fields=["q_schedule", "approved_by", "approved_at", "status", "run_at"])
    return req


def run_approved(*, request_id: int):
    """The one-off schedule's task: a JobRun of end-of-year-rollover, through the runner
    (claim, access trail, retries from the checkpointed steps)."""
    from scheduling import runner
    from scheduling.models import JobRun

    req = RolloverRequest.objects.select_related("district").get(pk=request_id)
    # One run per (job, district, slot): a redelivered task finds the run and the runner's
    # claim (queued -> running) lets only the first delivery execute it.
    run, _ = JobRun.objects.get_or_create(
        job="end-of-year-rollover", district=req.district, slot=req.run_at or timezone.now(),
        defaults=dict(trigger=JobRun.Trigger.SCHEDULE, status=JobRun.Status.QUEUED, enqueued_at=timezone.now(),
                      note=f"rollover request {req.pk}"),
    )
    return runner.execute(run.pk)


def next_request(district: District) -> RolloverRequest | None:
    """What the job runs: the district's approved (or failed, to resume) request."""
    return (RolloverRequest.objects.select_related("district", "closing_session")
            .filter(district=district, approved_by__isnull=False,
                    status__in=[RolloverRequest.Status.SCHEDULED, RolloverRequest.Status.RUNNING, RolloverRequest.Status.FAILED])
            .order_by("run_at", "pk").first())
