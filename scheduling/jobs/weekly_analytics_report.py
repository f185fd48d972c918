"""Weekly analytics report: 0 6 * * 0 (district local time).

Why then: Sunday 06:00 local: after performance-trends (03:00) has refreshed the figures, so principals find the report on Monday morning.

What it does, for the week of seven local days ending on the slot's local date:
1. Figures per school and grade level (scheduling.analytics.weekly_figures): grade
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
"""
from __future__ import annotations

import datetime as dt
from datetime import timedelta

from scheduling.registry import Job

GRADE_NAMES = {-1: "Pre-K", 0: "K"}


def grade_name(level: int) -> str:
    return GRADE_NAMES.get(level, str(level))


def _row(label, agg) -> dict:
    from scheduling.reports import pct

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
    from scheduling.reports import bar_chart, pct, render_html, to_csv

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


def report_url(report) -> str:
    from django.conf import settings
    from django.urls import reverse

    return settings.ALERTS_BASE_URL.rstrip("/") + reverse("admin:scheduling_report_view", args=[report.pk])


def run(ctx) -> dict:
    from django.db import transaction

    from notifications.models import Category, Channel
    from notifications.services import NotificationRequest, notifications_enqueue
    from scheduling.analytics import report_recipients, weekly_figures
    from scheduling.models import Report
    from scheduling.reports import report_store

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


JOB = Job(
    slug='weekly-analytics-report',
    title='Weekly analytics report',
    default_cron='0 6 * * 0',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=10),
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=24),
    overlap="skip",
    entry=run,
)
