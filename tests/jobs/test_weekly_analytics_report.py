"""weekly-analytics-report: figures per district, school and grade level; stored reports with
charts and CSV; principals get their school's, district admins the district's; scoped admin;
idempotency; query counts; the CLI."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import Notification
from notifications.rendering import render_email
from scheduling.models import JobRun, Report
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

SLUG = "weekly-analytics-report"
SUNDAY = dt.date(2026, 10, 18)
MON = dt.date(2026, 10, 12)


def local(district, day, hour=12):
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=district.zone)


@pytest.fixture
def world(district, school, other_school):
    session = f.AcademicSessionFactory(district=district)
    for s in (school, other_school):
        day = dt.date(2026, 9, 28)
        while day <= SUNDAY:
            if day.weekday() < 5:
                f.CalendarDayFactory(school=s, date=day)
            day += dt.timedelta(days=1)
    section = f.SectionFactory(school=school, session=session)
    a9 = f.StudentFactory(school=school, grade_level=9)
    b9 = f.StudentFactory(school=school, grade_level=9)
    c10 = f.StudentFactory(school=school, grade_level=10)
    d6 = f.StudentFactory(school=other_school, grade_level=6)
    for s in (a9, b9, c10):
        f.SectionEnrollmentFactory(section=section, student=s)
    # Grades this week: a9 9/10 (90%), b9 35/50 (70%), c10 100/100; one last week (ignored).
    for s, score, mx in ((a9, 9, 10), (b9, 35, 50), (c10, 100, 100)):
        a = f.AssignmentFactory(section=section, max_score=Decimal(mx), due_date=MON)
        f.GradeFactory(assignment=a, student=s, score=Decimal(score), posted_at=local(district, MON))
    old = f.AssignmentFactory(section=section, due_date=MON - dt.timedelta(days=7))
    f.GradeFactory(assignment=old, student=a9, score=Decimal(0), posted_at=local(district, MON - dt.timedelta(days=7)))
    # Attendance: a9 absent 3 days (Sep 28-30 and, this week, Oct 12): 4/15 session days -> chronic.
    for day in (dt.date(2026, 9, 28), dt.date(2026, 9, 29), dt.date(2026, 9, 30), MON):
        f.AttendanceRecordFactory(student=a9, date=day, status="absent-unexcused")
    # Interventions: one opened this week, one closed, one escalated (with its tier 2), one last week.
    opened = f.InterventionFactory(student=a9, opened_at=local(district, MON, 7))
    f.InterventionFactory(student=b9, type="academic", opened_at=local(district, dt.date(2026, 9, 1)),
                          status="closed", closed_at=local(district, MON + dt.timedelta(days=1)))
    esc = f.InterventionFactory(student=c10, type="behavior", opened_at=local(district, dt.date(2026, 9, 1)),
                                status="escalated", closed_at=local(district, MON + dt.timedelta(days=2)))
    f.InterventionFactory(student=c10, type="behavior", tier=2, escalated_from=esc, opened_at=local(district, MON + dt.timedelta(days=2)))
    f.InterventionFactory(student=d6, opened_at=local(district, MON - dt.timedelta(days=3)))
    f.BehaviorIncidentFactory(student=c10, occurred_at=local(district, MON + dt.timedelta(days=2)))
    f.IEPFactory(student=b9)
    f.Section504PlanFactory(student=c10)
    f.Section504PlanFactory(student=d6)
    principal = f.StaffFactory(username="princ", roles=[Role.PRINCIPAL], schools=[school])
    other_principal = f.StaffFactory(username="princ2", roles=[Role.PRINCIPAL], schools=[other_school])
    admin = f.StaffFactory(username="dadmin", roles=[Role.DISTRICT_ADMIN], schools=[school])
    elsewhere = f.SchoolFactory(district=f.DistrictFactory(name="Elsewhere"))
    f.StaffFactory(username="far_princ", roles=[Role.PRINCIPAL], schools=[elsewhere])
    return {"school": school, "other": other_school, "principal": principal, "other_principal": other_principal,
            "admin": admin, "opened": opened, "a9": a9, "session": session}


def run_week(district, *, again=False) -> JobRun:
    slot = local_slot(district, SUNDAY.year, SUNDAY.month, SUNDAY.day, 6)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL if again else JobRun.Trigger.SCHEDULE)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def rows(report) -> list[dict]:
    return list(csv.DictReader(io.StringIO(report.csv)))


@pytest.mark.django_db
def test_district_and_school_reports_with_figures(district, world):
    run = run_week(district)
    assert run.result["reports_created"] == 3 and run.result["students"] == 4
    district_report = Report.objects.get(kind="weekly-analytics", district=district, school=None)
    assert (district_report.period_start, district_report.period_end) == (MON, SUNDAY)
    by_scope = {(r["scope"], r["school"], r["grade_level"]): r for r in rows(district_report)}
    total = by_scope[("district", "", "")]
    # Grade average on percentages: (90 + 70 + 100) / 3 = 86.7 (the old 0% is last week's).
    assert total["grade_average_pct"] == "86.7"
    assert total["students"] == "4" and total["chronically_absent"] == "1" and total["chronic_absence_pct"] == "25.0"
    assert (total["interventions_opened"], total["interventions_closed"], total["interventions_escalated"]) == ("2", "1", "1")
    assert (total["behavior_incidents"], total["iep_students"], total["section_504_students"]) == ("1", "1", "2")
    # Attendance this week: 4 students x 5 days = 20 enrolled days, 1 absence -> 95%.
    assert total["attendance_pct"] == "95.0"
    high = by_scope[("school", "Lakeside High", "")]
    assert (high["students"], high["grade_average_pct"], high["attendance_pct"]) == ("3", "86.7", "93.3")
    grade9 = by_scope[("grade", "Lakeside High", "9")]
    assert (grade9["students"], grade9["grade_average_pct"], grade9["attendance_pct"]) == ("2", "80.0", "90.0")
    middle = by_scope[("school", "Hillcrest Middle", "")]
    assert middle["grade_average_pct"] == ""  # no grades this week: no figure, not NaN
    assert "nan" not in district_report.csv.lower() and "nan" not in district_report.html.lower()
    assert district_report.html.count("<svg") == 2 and "@media print" in district_report.html
    school_report = Report.objects.get(kind="weekly-analytics", school=world["school"])
    assert [r["scope"] for r in rows(school_report)] == ["school", "grade", "grade"]
    assert "Grade 9" in school_report.html and "Hillcrest" not in school_report.csv
    assert district_report.evidence["window"] == {"start": "2026-10-12", "end": "2026-10-18", "time_zone": "America/New_York"}
    assert len(district_report.content_hash) == 64


@pytest.mark.django_db
def test_principals_get_their_school_and_district_admins_the_district(district, world):
    run_week(district)
    got = {n.recipient.username: n for n in Notification.objects.select_related("recipient")}
    assert set(got) == {"princ", "princ2", "dadmin"}
    school_report = Report.objects.get(school=world["school"])
    assert got["princ"].context["report_id"] == school_report.pk
    assert got["princ2"].context["report_id"] == Report.objects.get(school=world["other"]).pk
    assert got["dadmin"].context["report_id"] == Report.objects.get(district=district, school=None).pk
    assert all(n.category == "report" and n.channel == "email" for n in got.values())
    email = render_email(got["princ"])
    assert f"/admin/scheduling/report/{school_report.pk}/view/" in email.text
    assert "Lakeside High" in email.subject


@pytest.mark.django_db
def test_same_slot_twice_writes_no_new_report_or_message(district, world):
    run_week(district)
    before = (Report.objects.count(), Notification.objects.count(), list(Report.objects.values_list("id", "content_hash")))
    again = run_week(district, again=True)
    assert (Report.objects.count(), Notification.objects.count(), list(Report.objects.values_list("id", "content_hash"))) == before
    assert again.result["reports_unchanged"] == 3 and again.result["notifications_queued"] == 0


@pytest.mark.django_db
def test_admin_scopes_reports_and_serves_html_and_csv(district, world, client, system_admin):
    run_week(district)
    mine = Report.objects.get(school=world["school"])
    theirs = Report.objects.get(school=world["other"])
    whole = Report.objects.get(district=district, school=None)

    client.force_login(world["principal"])
    listing = client.get("/admin/scheduling/report/")
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset.values_list("id", flat=True)) == [mine.pk]
    page = client.get(f"/admin/scheduling/report/{mine.pk}/view/")
    assert page.status_code == 200 and page.content.decode() == mine.html
    download = client.get(f"/admin/scheduling/report/{mine.pk}/csv/")
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    assert download.content.decode() == mine.csv
    assert client.get(f"/admin/scheduling/report/{theirs.pk}/view/").status_code == 404
    assert client.get(f"/admin/scheduling/report/{whole.pk}/csv/").status_code == 404

    client.force_login(world["admin"])
    listing = client.get("/admin/scheduling/report/")
    assert set(listing.context["cl"].queryset.values_list("id", flat=True)) == {mine.pk, theirs.pk, whole.pk}

    counselor = f.StaffFactory(username="c1", roles=[Role.COUNSELOR], schools=[world["school"]])
    client.force_login(counselor)
    assert client.get(f"/admin/scheduling/report/{mine.pk}/view/").status_code in (403, 404)

    client.force_login(system_admin)
    assert client.get(f"/admin/scheduling/report/{whole.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_query_count_is_flat_in_the_number_of_students(district, world):
    def queries(again):
        with CaptureQueriesContext(connection) as ctx:
            run_week(district, again=again)
        return len(ctx.captured_queries)

    small = queries(False)
    section = f.SectionFactory(school=world["school"], session=world["session"])
    for i in range(15):
        s = f.StudentFactory(school=world["school"], grade_level=9 + i % 3)
        f.SectionEnrollmentFactory(section=section, student=s)
        a = f.AssignmentFactory(section=section, due_date=MON)
        f.GradeFactory(assignment=a, student=s, score=Decimal(50), posted_at=local(district, MON))
        f.AttendanceRecordFactory(student=s, date=MON, status="absent-excused")
        f.InterventionFactory(student=s, opened_at=local(district, MON, 8))
    Report.objects.all().delete()
    Notification.objects.all().delete()
    # Grade 11 is new: one more report? No: reports are per school, so the same count.
    assert queries(True) == small


@pytest.mark.django_db
def test_jobs_run_command(district, world):
    out = io.StringIO()
    with time_machine.travel(local(district, SUNDAY + dt.timedelta(days=1)), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.pk), "--as-of", "2026-10-18T06:00", "--json", stdout=out)
    assert json.loads(out.getvalue())["status"] == "succeeded"
    assert Report.objects.filter(kind="weekly-analytics", district=district).count() == 3


@pytest.mark.django_db
def test_job_output_admins_are_scoped(district, world, client, counselor, other_counselor):
    from interventions.models import StudentAnalytics
    from scheduling.models import UserLifecycleChange

    mine = StudentAnalytics.objects.create(student=world["a9"], week_start=MON, week_end=SUNDAY, computed_at=local(district, SUNDAY))
    client.force_login(counselor)  # works at world["school"]
    listing = client.get("/admin/interventions/studentanalytics/")
    assert listing.status_code == 200 and list(listing.context["cl"].result_list) == [mine]
    assert client.get(f"/admin/interventions/studentanalytics/{mine.pk}/change/").status_code == 200
    client.force_login(other_counselor)
    assert list(client.get("/admin/interventions/studentanalytics/").context["cl"].result_list) == []
    assert client.get(f"/admin/interventions/studentanalytics/{mine.pk}/change/").status_code == 404

    change = UserLifecycleChange.objects.create(at=local(district, SUNDAY), district=district, user=world["principal"],
                                                action="flag", rule="staff-inactive-1y", actor_label="job")
    UserLifecycleChange.objects.create(at=local(district, SUNDAY), district=f.DistrictFactory(name="Other"), action="flag",
                                       rule="staff-inactive-1y", actor_label="job")
    client.force_login(world["admin"])
    assert list(client.get("/admin/scheduling/userlifecyclechange/").context["cl"].result_list) == [change]
    client.force_login(world["principal"])
    assert client.get("/admin/scheduling/userlifecyclechange/").status_code == 403


@pytest.mark.django_db
def test_an_empty_district_gets_reports_of_dashes_not_nan(db):
    empty = f.DistrictFactory(name="Brand New")
    f.SchoolFactory(district=empty, name="Empty School")
    run = run_week(empty)
    assert run.result["reports_created"] == 2 and run.result["students"] == 0
    for report in Report.objects.filter(district=empty):
        assert "nan" not in report.html.lower() and "nan" not in report.csv.lower()
        assert "no data" in report.html
    assert rows(Report.objects.get(district=empty, school=None))[0]["grade_average_pct"] == ""
