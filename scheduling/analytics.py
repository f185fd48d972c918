"""Set-based reads for the weekly analytics report: one week's figures for a district, per
school and grade level, rolled up to schools and the district.

Every figure is computed from counts (sums of percentages and their number, absent days and
enrolled days), never by averaging averages, so a school of 900 students weighs 900 times
one student. A figure with nothing to divide by is None, printed as a dash, never NaN.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from decimal import Decimal

from django.db.models import Count, Q

from interventions.selectors import _local_bounds, attendance_risks, district_students, student_week_figures
from students.models import District, School
from students.selectors import current_session


@dataclass
class Agg:
    """Counts for one group (a school and grade level, a school, the district)."""

    students: int = 0
    grade_sum: float = 0.0
    grade_count: int = 0
    enrolled_days: int = 0
    absences: int = 0
    due: int = 0
    submitted: int = 0
    incidents: int = 0
    chronic: int = 0  # students at or above the district's chronic-absence threshold (session rate)
    opened: int = 0
    closed: int = 0
    escalated: int = 0
    iep: int = 0
    plan504: int = 0

    def add(self, other: "Agg") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @staticmethod
    def _pct(num, den) -> Decimal | None:
        return None if not den else (Decimal(repr(float(num))) * 100 / Decimal(den)).quantize(Decimal("0.1"))

    @property
    def grade_pct(self) -> Decimal | None:
        return None if not self.grade_count else (Decimal(repr(self.grade_sum)) / self.grade_count).quantize(Decimal("0.1"))

    @property
    def attendance_pct(self) -> Decimal | None:
        return self._pct(self.enrolled_days - self.absences, self.enrolled_days)

    @property
    def completion_pct(self) -> Decimal | None:
        return self._pct(self.submitted, self.due)

    @property
    def chronic_pct(self) -> Decimal | None:
        return self._pct(self.chronic, self.students)


@dataclass
class WeeklyFigures:
    week: tuple[dt.date, dt.date]
    schools: list[School]
    by_grade: dict[tuple[int, int], Agg]  # (school id, grade level) -> counts
    by_school: dict[int, Agg]
    district: Agg
    inputs: dict  # evidence: input row counts


def weekly_figures(*, district: District, week: tuple[dt.date, dt.date]) -> WeeklyFigures:
    """The district's figures for one local week (first, last day).

    Queries (whatever the number of students): schools, students, the six of
    ``student_week_figures``, the chronic-absence selector's four (session, count,
    calendar, absences), interventions, IEPs, 504 plans — about fifteen.

    Chronic absence follows interventions.selectors.attendance_risks: a student counts when
    the session absence rate (absent / enrolled instructional days, to the week's last day)
    is at or above the district threshold with at least the district's minimum enrolled
    days (its "session-rate" criterion; the 30-day, 10-absence and streak flags are for
    outreach, not for the rate).
    """
    from iep.models import IEP, Section504Plan
    from interventions.models import Intervention

    schools = list(School.objects.filter(district=district).order_by("name"))
    students = district_students(district=district)
    by_grade: dict[tuple[int, int], Agg] = {}

    def group(school_id: int, grade: int) -> Agg:
        return by_grade.setdefault((school_id, grade), Agg())

    inputs = {"students": len(students)}
    if students:
        id_range = (min(students), max(students))
        figures = student_week_figures(district=district, weeks=[week], students=students, id_range=id_range)
        inputs["student_weeks_with_data"] = len(figures)
        for s in students.values():
            g = group(s.school_id, s.grade_level)
            g.students += 1
            w = figures.get((s.id, 0))
            if w is not None:
                g.grade_sum += w.grade_sum
                g.grade_count += w.grade_count
                g.enrolled_days += w.enrolled_days
                g.absences += w.absences
                g.due += w.due
                g.submitted += w.submitted
                g.incidents += w.incidents
        session = current_session(district)
        if session is not None:
            _, risks = attendance_risks(district=district, session=session, as_of=week[1])
            chronic = [r for r in risks if "session-rate" in r.criteria]
            inputs["chronically_absent"] = len(chronic)
            for r in chronic:
                s = students.get(r.student_id)
                if s is not None:
                    group(s.school_id, s.grade_level).chronic += 1
        else:
            inputs["chronically_absent"] = None  # no current session: no session rate

    start, end = _local_bounds(week[0], week[1], district.zone)
    in_week = Q(closed_at__gte=start, closed_at__lt=end)
    rows = (
        Intervention.objects.filter(student__school__district=district)
        .filter(Q(opened_at__gte=start, opened_at__lt=end) | in_week)
        .values("student__school_id", "student__grade_level")
        .annotate(
            opened=Count("id", filter=Q(opened_at__gte=start, opened_at__lt=end)),
            closed=Count("id", filter=in_week & Q(status=Intervention.Status.CLOSED)),
            escalated=Count("id", filter=in_week & Q(status=Intervention.Status.ESCALATED)),
        )
    )
    inputs["interventions"] = 0
    for row in rows:
        g = group(row["student__school_id"], row["student__grade_level"])
        g.opened, g.closed, g.escalated = row["opened"], row["closed"], row["escalated"]
        inputs["interventions"] += row["opened"] + row["closed"] + row["escalated"]

    # Enrolment in special education: active plans of active students.
    for model, attr in ((IEP, "iep"), (Section504Plan, "plan504")):
        counted = (
            model.objects.filter(status="active", student__school__district=district, student__is_active=True)
            .values("student__school_id", "student__grade_level").annotate(n=Count("student_id", distinct=True))
        )
        inputs[attr] = 0
        for row in counted:
            setattr(group(row["student__school_id"], row["student__grade_level"]), attr, row["n"])
            inputs[attr] += row["n"]

    by_school: dict[int, Agg] = {s.pk: Agg() for s in schools}
    total = Agg()
    for (school_id, _), g in by_grade.items():
        by_school.setdefault(school_id, Agg()).add(g)
        total.add(g)
    return WeeklyFigures(week=week, schools=schools, by_grade=by_grade, by_school=by_school, district=total, inputs=inputs)


def report_recipients(*, district: District) -> tuple[list[tuple[int, int]], list[int]]:
    """(principal user id, school id) pairs and district-admin user ids, active people with
    a StaffProfile in this district. Two queries."""
    from django.contrib.auth import get_user_model

    from students.models import Role, StaffProfile

    User = get_user_model()
    principals = list(
        StaffProfile.schools.through.objects.filter(
            staffprofile__district=district, school__district=district, staffprofile__user__is_active=True,
            staffprofile__user__groups__name=str(Role.PRINCIPAL),
        ).values_list("staffprofile__user_id", "school_id").distinct().order_by("staffprofile__user_id", "school_id")
    )
    admins = list(
        User.objects.filter(
            is_active=True, staff_profile__district=district, groups__name=str(Role.DISTRICT_ADMIN)
        ).values_list("id", flat=True).distinct().order_by("id")
    )
    return principals, admins
