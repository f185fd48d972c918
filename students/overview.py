"""The student overview: the summary at the top of a student's admin page (selectors only).

What a principal, counselor or teacher needs before editing anything: attendance this session
and over the last 30 school days, absences, the current run of absent days, active
interventions, IEP and 504 status with their next due dates, recent grades and the guardians.

Each part is read only when the viewer's role may view that kind of record, through the
viewer's row scope (students.scoping): a teacher sees the grades of their own sections and an
IEP only when on its team; a counselor sees no IEP. One query per part whatever the record's
size; the page runs them inside the FERPA access trail, so each read is recorded with the
student's id like every other admin read of a student record.

Attendance follows the attendance job's rules (interventions.selectors.attendance_evidence):
a day counts as absent by status or when at most half of it was attended; the rates are over
the school's instructional days the student was enrolled for; "last 30 school days" is the
job's window of the last 30 instructional days.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Q

from iep.models import IEP, Section504Plan
from interventions.models import Intervention
from students import scoping
from students.models import (
    ABSENT_FRACTION_MAX,
    ABSENT_STATUSES,
    AcademicSession,
    AttendanceRecord,
    CalendarDay,
    Grade,
    GuardianLink,
    Student,
)

WINDOW_SCHOOL_DAYS = 30  # interventions.selectors' window
RECENT_GRADES = 5


def person_name(first: str, last: str, username: str) -> str:
    """A person as staff know them: "Emma Allen"; the username only when no name is on file."""
    return f"{first} {last}".strip() or username


@dataclass(frozen=True)
class Attendance:
    session_name: str
    enrolled_days: int  # instructional days enrolled this session, up to today
    absences: int
    excused: int
    window_days: int  # of the last 30 school days, those enrolled
    window_absences: int
    streak: int  # absent school days in a row, ending on the latest school day
    latest_day: dt.date | None  # the latest school day up to today

    @staticmethod
    def rate(days: int, absent: int) -> str:
        return f"{(days - absent) / days:.1%}" if days else "no school days yet"

    @property
    def session_rate(self) -> str:
        return self.rate(self.enrolled_days, self.absences)

    @property
    def window_rate(self) -> str:
        return self.rate(self.window_days, self.window_absences)


@dataclass(frozen=True)
class OverviewIntervention:
    type: str
    tier: str
    since: dt.date
    owner: str
    reason: str


@dataclass(frozen=True)
class Plan:
    kind: str  # "IEP" or "504 plan"
    status: str
    due: list[tuple[str, dt.date | None]]  # ("annual review", date), ...
    contact: str  # case manager or coordinator


@dataclass(frozen=True)
class RecentGrade:
    posted_on: dt.date
    course: str
    assignment: str
    score: Decimal
    max_score: Decimal

    @staticmethod
    def number(value: Decimal) -> str:
        """92.50 -> "92.5", 100.00 -> "100"."""
        text = f"{value:f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    @property
    def score_text(self) -> str:
        return f"{self.number(self.score)} / {self.number(self.max_score)}"

    @property
    def percent(self) -> str:
        return f"{self.score / self.max_score:.0%}" if self.max_score else "-"


@dataclass(frozen=True)
class Guardian:
    name: str
    relationship: str
    custodial: bool
    revoked: bool
    language: str


@dataclass
class StudentOverview:
    today: dt.date
    # None: the viewer's role does not see that kind of record (the part is left out).
    attendance: Attendance | None = None
    no_session: bool = False
    interventions: list[OverviewIntervention] | None = None
    plans: list[Plan] | None = None
    grades: list[RecentGrade] | None = None
    guardians: list[Guardian] | None = None
    shown: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.shown


def _may_view(user, model) -> bool:
    return user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")


def _attendance(user, student: Student, today: dt.date) -> tuple[Attendance | None, bool]:
    """Two queries: the instructional days of the student's school this session (with the
    session itself as a join) and the student's absent days in it."""
    session = AcademicSession.objects.filter(district_id=student.school.district_id, is_current=True).first()
    if session is None:
        return None, True
    first = max(session.start_date, student.enrollment_date)
    last = min(today, session.end_date, student.exit_date or today)
    days = list(
        CalendarDay.objects.filter(school_id=student.school_id, is_instructional=True, date__gte=first, date__lte=last)
        .order_by("date").values_list("date", flat=True)
    ) if first <= last else []
    absent_q = Q(status__in=[str(s) for s in ABSENT_STATUSES]) | Q(fraction_present__lte=ABSENT_FRACTION_MAX)
    # Every read selects student_id: the access trail names the student from that column.
    absent = {
        day: status for _, day, status in
        scoping.scoped(user, AttendanceRecord).filter(absent_q, student_id=student.pk, date__gte=first, date__lte=last)
        .order_by().values_list("student_id", "date", "status")
    } if days else {}
    school_days = set(days)
    absent = {d: s for d, s in absent.items() if d in school_days}
    window = days[-WINDOW_SCHOOL_DAYS:]
    streak = 0
    for day in reversed(days):
        if day not in absent:
            break
        streak += 1
    return Attendance(
        session_name=session.name, enrolled_days=len(days), absences=len(absent),
        excused=sum(1 for s in absent.values() if s == "absent-excused"),
        window_days=len(window), window_absences=sum(1 for d in window if d in absent), streak=streak,
        latest_day=days[-1] if days else None,
    ), False


def student_overview(*, user, student: Student, now: dt.datetime) -> StudentOverview:
    """The overview of ``student`` as ``user`` may see it at ``now``, in the district's zone.

    ``student`` comes with its school and district (select_related). At most 9 queries
    (session, calendar, absences, interventions, IEPs, 504 plans, grades, guardians), each only
    for the parts the user's role may view, each through the user's row scope.
    """
    zone = student.school.district.zone
    today = now.astimezone(zone).date()
    out = StudentOverview(today=today)
    if _may_view(user, AttendanceRecord):
        out.attendance, out.no_session = _attendance(user, student, today)
        out.shown.append("attendance")
    if _may_view(user, Intervention):
        rows = (
            scoping.scoped(user, Intervention).filter(student_id=student.pk, status=Intervention.Status.ACTIVE)
            .select_related("owner").order_by("-tier", "opened_at")
        )
        out.interventions = [
            OverviewIntervention(
                type=i.get_type_display(), tier=i.get_tier_display(), since=i.opened_at.astimezone(zone).date(),
                reason=i.reason,
                owner=person_name(i.owner.first_name, i.owner.last_name, i.owner.username) if i.owner else "nobody yet",
            )
            for i in rows
        ]
        out.shown.append("interventions")
    plans: list[Plan] = []
    if _may_view(user, IEP):
        for iep in (scoping.scoped(user, IEP).filter(student_id=student.pk).exclude(status=IEP.Status.CLOSED)
                    .select_related("case_manager").order_by("-last_annual_review")[:1]):
            cm = iep.case_manager
            plans.append(Plan(
                kind="IEP", status=iep.get_status_display(),
                due=[("annual review", iep.next_review_due), ("reevaluation", iep.reevaluation_due)],
                contact=f"case manager {person_name(cm.first_name, cm.last_name, cm.username)}" if cm else "no case manager",
            ))
        out.shown.append("plans")
    if _may_view(user, Section504Plan):
        for plan in (scoping.scoped(user, Section504Plan).filter(student_id=student.pk, status=Section504Plan.Status.ACTIVE)
                     .select_related("coordinator")[:1]):
            co = plan.coordinator
            plans.append(Plan(
                kind="504 plan", status=plan.get_status_display(), due=[("review", plan.next_review_due)],
                contact=f"coordinator {person_name(co.first_name, co.last_name, co.username)}" if co else "no coordinator",
            ))
        if "plans" not in out.shown:
            out.shown.append("plans")
    if "plans" in out.shown:
        out.plans = plans
    if _may_view(user, Grade):
        rows = (
            scoping.scoped(user, Grade).filter(student_id=student.pk)
            .order_by("-posted_at", "-id")
            .values_list("student_id", "posted_at", "assignment__section__course_name", "assignment__title", "score",
                         "assignment__max_score")[:RECENT_GRADES]
        )
        out.grades = [
            RecentGrade(posted_on=posted.astimezone(zone).date(), course=course, assignment=title, score=score, max_score=max_score)
            for _, posted, course, title, score, max_score in rows
        ]
        out.shown.append("grades")
    if _may_view(user, GuardianLink):
        rows = (
            scoping.scoped(user, GuardianLink).filter(student_id=student.pk).order_by("-is_custodial", "guardian__last_name")
            .values_list("student_id", "guardian__first_name", "guardian__last_name", "guardian__username", "relationship",
                         "is_custodial", "access_revoked", "preferred_language")
        )
        relationships, languages = dict(GuardianLink.Relationship.choices), dict(GuardianLink.Language.choices)
        out.guardians = [
            Guardian(name=person_name(first, last, username), relationship=relationships.get(rel, rel),
                     custodial=custodial, revoked=revoked, language=languages.get(lang, lang))
            for _, first, last, username, rel, custodial, revoked, lang in rows
        ]
        out.shown.append("guardians")
    return out
