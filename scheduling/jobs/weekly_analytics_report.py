"""Weekly analytics report: 0 6 * * 0 (district local time).

Why then: Sunday 06:00 local: after performance-trends (03:00) has refreshed the figures, so principals find the report on Monday morning.

What it does, for the week of seven local days ending on the slot's local date:
1. Figures per school and grade level (``weekly_figures`` below): grade
   averages on percentages, attendance rate over enrolled instructional days, assignment
   completion, chronic-absence rate (the attendance job's session-rate rule),
   interventions opened / closed / escalated, behaviour incidents, IEP and 504 enrolment.
2. One Report for the district and one per school (HTML with inline SVG charts, printable,
   plus CSV), stored through scheduling.reports.report_store.
3. Principals get an email linking to their school's report, district admins to the
   district's (notification category "report").

Idempotency: a report is keyed (kind, district, school, week start) and replaced in place,
so its id and the dedupe key ``weekly-report:<report id>:<recipient>:email`` are the same on
a re-run: no new report row, no second email.

Student data read: students, grades, attendance records, calendar days, enrolments,
assignments, submissions, behaviour incidents, interventions, IEPs and 504 plans. Reports
hold aggregates only (no student names).

Set-based reads for the weekly analytics report: one week's figures for a district, per
school and grade level, rolled up to schools and the district.

Every figure is computed from counts (sums of percentages and their number, absent days and
enrolled days), never by averaging averages, so a school of 900 students weighs 900 times
one student. A figure with nothing to divide by is None, printed as a dash, never NaN.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Q

from interventions.selectors import _local_bounds, attendance_risks, district_students, student_week_figures
from notifications.summary_labels import ENQUEUE_FIGURES
from scheduling.registry import Job
from scheduling.reports import bar_chart, pct, render_html, report_store, report_url, to_csv
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

    def add(self, other: Agg) -> None:
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


GRADE_NAMES = {-1: "Pre-K", 0: "K"}


def grade_name(level: int) -> str:
    return GRADE_NAMES.get(level, str(level))


def _row(label, agg) -> dict:

    return {
        "label": label, "students": agg.students, "grade": pct(agg.grade_pct), "attendance": pct(agg.attendance_pct),
        "completion": pct(agg.completion_pct), "chronic": pct(agg.chronic_pct), "opened": agg.opened, "closed": agg.closed,
        "escalated": agg.escalated, "incidents": agg.incidents, "iep": agg.iep, "plan504": agg.plan504,
    }


CSV_HEADER = [
    "scope", "school_code", "school", "grade_level", "students", "grade_average_pct", "attendance_pct", "completion_pct",
    "chronic_absence_pct", "chronically_absent", "interventions_opened", "interventions_closed", "interventions_escalated",
    "behavior_incidents", "iep_students", "section_504_students",
]


def _csv_row(scope, school, grade, agg) -> list:
    return [
        scope, school.code if school else "", school.name if school else "", "" if grade is None else grade_name(grade),
        agg.students, agg.grade_pct, agg.attendance_pct, agg.completion_pct, agg.chronic_pct, agg.chronic, agg.opened,
        agg.closed, agg.escalated, agg.incidents, agg.iep, agg.plan504,
    ]


def build(*, district, figures, school=None) -> tuple[str, str, str]:
    """(title, html, csv) of the district report, or of one school's when ``school`` is given."""

    week_start, week_end = figures.week
    names = {s.pk: s for s in figures.schools}
    if school is None:
        title = f"Weekly analytics: {district.name}, week of {week_start:%B %-d, %Y}"
        total = figures.district
        rows = [_row(s.name, figures.by_school[s.pk]) for s in figures.schools]
        chart_att = [(s.name, figures.by_school[s.pk].attendance_pct) for s in figures.schools]
        chart_grades = [(s.name, figures.by_school[s.pk].grade_pct) for s in figures.schools]
        grade_keys = sorted(figures.by_grade, key=lambda k: (names[k[0]].name if k[0] in names else "", k[1]))
        rows_title, rows_label, scope = "By school", "School", district.name
        csv_rows = [_csv_row("district", None, None, total)]
        csv_rows += [_csv_row("school", s, None, figures.by_school[s.pk]) for s in figures.schools]
    else:
        title = f"Weekly analytics: {school.name}, week of {week_start:%B %-d, %Y}"
        total = figures.by_school.get(school.pk)
        grade_keys = sorted(k for k in figures.by_grade if k[0] == school.pk)
        rows = [_row(f"Grade {grade_name(k[1])}", figures.by_grade[k]) for k in grade_keys]
        chart_att = [(f"Grade {grade_name(k[1])}", figures.by_grade[k].attendance_pct) for k in grade_keys]
        chart_grades = [(f"Grade {grade_name(k[1])}", figures.by_grade[k].grade_pct) for k in grade_keys]
        rows_title, rows_label, scope = "By grade level", "Grade", f"{school.name} ({district.name})"
        csv_rows = [_csv_row("school", school, None, total)]
    csv_rows += [_csv_row("grade", names.get(k[0]), k[1], figures.by_grade[k]) for k in grade_keys]
    headline = [
        {"label": "Students", "value": total.students},
        {"label": "Grade average", "value": pct(total.grade_pct)},
        {"label": "Attendance", "value": pct(total.attendance_pct)},
        {"label": "Chronically absent", "value": pct(total.chronic_pct)},
        {"label": "Interventions opened / closed / escalated", "value": f"{total.opened} / {total.closed} / {total.escalated}"},
        {"label": "Behaviour incidents", "value": total.incidents},
        {"label": "IEP / 504 students", "value": f"{total.iep} / {total.plan504}"},
    ]
    html = render_html("reports/weekly_analytics.html", {
        "title": title, "scope": scope, "week_start": week_start, "week_end": week_end, "time_zone": district.time_zone,
        "headline": headline, "rows": rows, "rows_title": rows_title, "rows_label": rows_label,
        "chart_attendance": bar_chart(chart_att, title="Attendance rate"),
        "chart_grades": bar_chart(chart_grades, title="Grade average"),
        "grade_rows": [
            {"school": names[k[0]].name if k[0] in names else "", "grade_level": grade_name(k[1]), "students": figures.by_grade[k].students,
             "grade": pct(figures.by_grade[k].grade_pct), "attendance": pct(figures.by_grade[k].attendance_pct),
             "chronic": pct(figures.by_grade[k].chronic_pct)}
            for k in grade_keys
        ] if school is None else [],
        "threshold": f"{district.chronic_absence_threshold * 100:.0f}%", "min_days": district.min_enrolled_days,
    })
    return title, html, to_csv(CSV_HEADER, csv_rows)


def run(ctx) -> dict:
    from django.db import transaction

    from notifications.models import Category, Channel
    from notifications.services import NotificationRequest, notifications_enqueue
    from scheduling.models import Report

    district = ctx.district
    local_date = ctx.scheduled_for.astimezone(district.zone).date()
    week = (local_date - dt.timedelta(days=6), local_date)
    figures = weekly_figures(district=district, week=week)
    evidence = {
        "window": {"start": week[0].isoformat(), "end": week[1].isoformat(), "time_zone": district.time_zone},
        "inputs": figures.inputs,
    }
    principals, admins = report_recipients(district=district)
    summary = {"week_start": week[0].isoformat(), "schools": len(figures.schools), "students": figures.district.students,
               "reports_created": 0, "reports_updated": 0, "reports_unchanged": 0, "notifications_queued": 0,
               "notifications_digested": 0, "notifications_suppressed": 0, "notifications_duplicate": 0}
    stored = {}
    with transaction.atomic():
        for school in [None, *figures.schools]:
            title, html, csv_text = build(district=district, figures=figures, school=school)
            result = report_store(
                kind=Report.Kind.WEEKLY_ANALYTICS, district_id=district.pk, school_id=school.pk if school else None,
                period_start=week[0], period_end=week[1], title=title, html=html, csv_text=csv_text,
                evidence=evidence, job_run_id=ctx.run.id, now=ctx.scheduled_for,
            )
            stored[school.pk if school else None] = result.report
            key = "reports_created" if result.created else "reports_updated" if result.changed else "reports_unchanged"
            summary[key] += 1
        period = f"{week[0]:%b %-d} – {week[1]:%b %-d, %Y}"

        def request(user_id, report):
            return NotificationRequest(
                recipient_id=user_id, category=Category.REPORT, channel=Channel.EMAIL, template="report",
                context={"report_name": report.title, "period": period, "report_url": report_url(report), "report_id": report.pk},
                dedupe_key=f"weekly-report:{report.pk}:{user_id}:email",
            )

        requests = [request(uid, stored[sid]) for uid, sid in principals if sid in stored]
        requests += [request(uid, stored[None]) for uid in admins]
        if requests:
            sent = notifications_enqueue(requests, job_run_id=ctx.run.id, district_id=district.pk, now=ctx.scheduled_for)
            summary["notifications_queued"], summary["notifications_duplicate"] = sent.inserted, sent.duplicates
            # A principal who chose a weekly digest for reports gets it there (their preference).
            summary["notifications_digested"] = sent.digested
            summary["notifications_suppressed"] = sum(sent.suppressed.values())
    ctx.progress(len(stored), len(stored))
    return summary


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "week_start": "Week from",
    "schools": "Schools",
    "students": "Students",
    "reports_created": "Reports created",
    "reports_updated": "Reports updated",
    "reports_unchanged": ("Reports unchanged", "the same figures as the stored report"),
    **ENQUEUE_FIGURES,  # the outbox's figures, the same words on every job
}


JOB = Job(
    slug='weekly-analytics-report',
    title='Weekly analytics report',
    default_cron='0 6 * * 0',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=10),
    # Principals read it on Monday: any minute of 06:00-06:59 on Sunday serves them alike.
    spread_minutes=60,
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=24),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="reports",
    entry=run,
)
