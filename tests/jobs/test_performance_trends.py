"""performance-trends: percentages not raw scores, NULL (never NaN) for empty weeks, the +-5
band, the >10 drop alert once per student and week, intervention effectiveness, idempotency,
query counts, the CLI."""
from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from interventions.models import StudentAnalytics, Trend
from interventions.trends import trend
from notifications.models import Notification
from notifications.rendering import render_email
from scheduling.models import JobRun
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

SLUG = "performance-trends"
SUNDAY = dt.date(2026, 10, 18)  # this week: Mon 10-12 .. Sun 10-18; last week: 10-05 .. 10-11
THIS_MON, LAST_MON = dt.date(2026, 10, 12), dt.date(2026, 10, 5)


@pytest.fixture
def setup(district, school):
    counselor = f.StaffFactory(username="couns", roles=[Role.COUNSELOR], schools=[school])
    section = f.SectionFactory(school=school)
    # Weekdays of both weeks are instructional; weekends have no calendar row.
    for start in (LAST_MON, THIS_MON):
        for i in range(5):
            f.CalendarDayFactory(school=school, date=start + dt.timedelta(days=i))
    return {"counselor": counselor, "section": section, "school": school}


def local(district, day: dt.date, hour=12):
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=district.zone)


def student(setup, **kw):
    s = f.StudentFactory(school=setup["school"], counselor=setup["counselor"], **kw)
    f.SectionEnrollmentFactory(section=setup["section"], student=s)
    return s


def grade(setup, s, *, score, max_score, posted):
    a = f.AssignmentFactory(section=setup["section"], max_score=Decimal(max_score), due_date=posted.date())
    return f.GradeFactory(assignment=a, student=s, score=Decimal(score), posted_at=posted)


def run_week(district, day: dt.date = SUNDAY, *, again: bool = False) -> JobRun:
    """Run the Sunday 03:00 slot; ``again``: the same slot once more (a manual run for it)."""
    slot = local_slot(district, day.year, day.month, day.day, 3)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL if again else JobRun.Trigger.SCHEDULE)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def test_trend_band_boundaries():
    assert trend(Decimal("85"), Decimal("80")) == Trend.STABLE  # exactly +5: stable
    assert trend(Decimal("85.01"), Decimal("80")) == Trend.UP
    assert trend(Decimal("75"), Decimal("80")) == Trend.STABLE  # exactly -5: stable
    assert trend(Decimal("74.99"), Decimal("80")) == Trend.DOWN
    assert trend(None, Decimal("80")) is None and trend(Decimal("80"), None) is None


@pytest.mark.django_db
def test_grades_are_averaged_as_percentages_not_raw_scores(district, setup):
    s = student(setup)
    # Last week: 9/10 and 45/50 -> 90% (raw mean 27 would be nonsense).
    grade(setup, s, score=9, max_score=10, posted=local(district, LAST_MON))
    grade(setup, s, score=45, max_score=50, posted=local(district, LAST_MON + dt.timedelta(days=1)))
    # This week: 8/10 and 160/200 -> 80%: a 10-point drop is DOWN but not an alert (> 10 alerts).
    grade(setup, s, score=8, max_score=10, posted=local(district, THIS_MON))
    grade(setup, s, score=160, max_score=200, posted=local(district, THIS_MON + dt.timedelta(days=2)))
    run = run_week(district)
    row = StudentAnalytics.objects.get(student=s)
    assert (row.week_start, row.week_end) == (THIS_MON, SUNDAY)
    assert (row.grade_pct, row.grade_pct_prev, row.grade_count) == (Decimal("80.00"), Decimal("90.00"), 2)
    assert row.grade_trend == Trend.DOWN
    assert not row.alerted and Notification.objects.count() == 0
    assert run.result["down"] == 1 and run.result["alerts"] == 0


@pytest.mark.django_db
def test_local_week_boundaries_decide_which_week_a_grade_is_in(district, setup):
    s = student(setup)
    # Sunday 10-11 23:30 local is last week (03:30 UTC on Monday); Monday 00:30 local is this week.
    grade(setup, s, score=50, max_score=100, posted=dt.datetime(2026, 10, 11, 23, 30, tzinfo=district.zone))
    grade(setup, s, score=100, max_score=100, posted=dt.datetime(2026, 10, 12, 0, 30, tzinfo=district.zone))
    run_week(district)
    row = StudentAnalytics.objects.get(student=s)
    assert (row.grade_pct_prev, row.grade_pct) == (Decimal("50.00"), Decimal("100.00"))


@pytest.mark.django_db
def test_an_empty_week_gives_no_figure_and_no_trend_never_nan(district, setup):
    s = student(setup)
    grade(setup, s, score=70, max_score=100, posted=local(district, THIS_MON))  # nothing last week
    other = f.StudentFactory(school=setup["school"])  # in no section: nothing at all
    run = run_week(district)
    row = StudentAnalytics.objects.get(student=s)
    assert row.grade_pct == Decimal("70.00") and row.grade_pct_prev is None and row.grade_trend is None
    empty = StudentAnalytics.objects.get(student=other)
    assert (empty.grade_pct, empty.grade_pct_prev, empty.grade_trend) == (None, None, None)
    assert (empty.completion_pct, empty.completion_trend) == (None, None)
    # Attendance: no absences on 5 instructional days is 100%, both weeks: stable.
    assert (empty.attendance_pct, empty.attendance_trend) == (Decimal("100.00"), Trend.STABLE)
    assert run.result["no_grade_trend"] == 2
    assert "nan" not in json.dumps(run.result).lower()


@pytest.mark.django_db
def test_attendance_completion_and_incidents(district, setup):
    s = student(setup)
    # Last week: 5 days present. This week: 2 absent (one excused, one OSS) and an ISS day
    # (in-school suspension is not an absence): 3/5 = 60%, down 40 points.
    f.AttendanceRecordFactory(student=s, date=THIS_MON, status="absent-excused")
    f.AttendanceRecordFactory(student=s, date=THIS_MON + dt.timedelta(days=1), status="oss")
    f.AttendanceRecordFactory(student=s, date=THIS_MON + dt.timedelta(days=2), status="iss")
    # Assignments: last week 2 due, 2 submitted; this week 2 due, 1 submitted, 1 exempt (left out).
    for day, submitted in ((LAST_MON, True), (LAST_MON, True), (THIS_MON, True), (THIS_MON, False)):
        a = f.AssignmentFactory(section=setup["section"], due_date=day)
        if submitted:
            f.SubmissionFactory(assignment=a, student=s)
    exempt = f.AssignmentFactory(section=setup["section"], due_date=THIS_MON)
    f.SubmissionFactory(assignment=exempt, student=s, submitted_at=None, is_exempt=True)
    f.AssignmentFactory(section=setup["section"], due_date=THIS_MON, status="draft")  # not published: not due
    f.BehaviorIncidentFactory(student=s, occurred_at=local(district, THIS_MON))
    f.BehaviorIncidentFactory(student=s, occurred_at=local(district, THIS_MON + dt.timedelta(days=1)))
    run = run_week(district)
    row = StudentAnalytics.objects.get(student=s)
    assert (row.attendance_pct_prev, row.attendance_pct, row.attendance_trend) == (Decimal("100.00"), Decimal("60.00"), Trend.DOWN)
    assert (row.completion_pct_prev, row.completion_pct, row.completion_trend) == (Decimal("100.00"), Decimal("50.00"), Trend.DOWN)
    assert (row.incidents_prev, row.incidents, row.incidents_trend) == (0, 2, Trend.UP)
    # Attendance falling 40 points is DOWN, but only a grade drop alerts (absences have their own job).
    assert not row.alerted and run.result["alerts"] == 0


@pytest.mark.django_db
def test_a_drop_of_more_than_10_points_alerts_the_counselor_once_per_week(district, setup):
    dropped = student(setup, first_name="Ana", last_name="Ruiz")
    grade(setup, dropped, score=90, max_score=100, posted=local(district, LAST_MON))
    grade(setup, dropped, score=7999, max_score=10000, posted=local(district, THIS_MON))  # 79.99: a 10.01 drop
    exactly_ten = student(setup)
    grade(setup, exactly_ten, score=90, max_score=100, posted=local(district, LAST_MON))
    grade(setup, exactly_ten, score=80, max_score=100, posted=local(district, THIS_MON))
    no_counselor = f.StudentFactory(school=setup["school"], counselor=None)
    grade(setup, no_counselor, score=90, max_score=100, posted=local(district, LAST_MON))
    grade(setup, no_counselor, score=10, max_score=100, posted=local(district, THIS_MON))

    first = run_week(district)
    n = Notification.objects.get()
    assert (n.recipient_id, n.category, n.priority, n.student_id) == (setup["counselor"].pk, "performance-alert", "high", dropped.pk)
    assert n.dedupe_key == f"performance-alert:{dropped.pk}:{THIS_MON}:{setup['counselor'].pk}:email"
    assert n.context["drops"] == [{"metric": "grade", "before": "90.0%", "now": "80.0%"}]
    assert first.result["alerts"] == 1 and first.result["notifications_queued"] == 1
    email = render_email(n)
    assert email.subject == f"Performance alert: Ana Ruiz (week of {THIS_MON})"
    assert "grade average: 90.0% the week before, 80.0% this week" in email.text

    # The same slot again (a retry, or a manual run for the same week): no new row, no message.
    rows = StudentAnalytics.objects.count()
    second = run_week(district, again=True)
    assert StudentAnalytics.objects.count() == rows == 3
    assert Notification.objects.count() == 1
    assert second.result["notifications_queued"] == 0 and second.result["notifications_duplicate"] == 1

    # Next week the drop persists against a new baseline but is a new week: a new alert only if it drops again.
    grade(setup, dropped, score=50, max_score=100, posted=local(district, THIS_MON + dt.timedelta(days=7)))
    run_week(district, SUNDAY + dt.timedelta(days=7))
    assert Notification.objects.count() == 2
    assert StudentAnalytics.objects.filter(student=dropped).count() == 2


@pytest.mark.django_db
def test_intervention_effectiveness_compares_attendance_before_and_after(district, setup):
    s = student(setup)
    # 10 instructional days before: 2 absences (80%); after: none (100%).
    opened = THIS_MON
    days = []
    for i in range(1, 20):
        d = opened - dt.timedelta(days=i)
        if d.weekday() < 5 and d < LAST_MON:
            days.append(d)
    for d in days:
        f.CalendarDayFactory(school=setup["school"], date=d)
    f.AttendanceRecordFactory(student=s, date=LAST_MON, status="absent-unexcused")
    f.AttendanceRecordFactory(student=s, date=LAST_MON + dt.timedelta(days=1), status="absent-unexcused")
    intervention = f.InterventionFactory(student=s, opened_at=local(district, opened, 6))
    run_week(district)
    (effect,) = StudentAnalytics.objects.get(student=s).intervention_effects
    assert effect["intervention"] == intervention.pk
    assert (effect["before_days"], effect["before_pct"]) == (10, "80.00")
    # After: Tue-Fri of this week (the opening day itself is not "after").
    assert (effect["after_days"], effect["after_pct"], effect["change"]) == (4, "100.00", "20.00")


def _queries(district, again=False) -> int:
    with CaptureQueriesContext(connection) as ctx:
        run_week(district, again=again)
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_query_count_is_flat_in_the_number_of_students(district, setup):
    def add(n):
        for _ in range(n):
            s = student(setup)
            grade(setup, s, score=90, max_score=100, posted=local(district, LAST_MON))
            grade(setup, s, score=50, max_score=100, posted=local(district, THIS_MON))  # every one alerts
            f.AttendanceRecordFactory(student=s, date=THIS_MON, status="absent-excused")
            f.InterventionFactory(student=s, opened_at=local(district, THIS_MON, 6))

    add(3)
    small = _queries(district)
    StudentAnalytics.objects.all().delete()
    Notification.objects.all().delete()
    add(12)
    assert _queries(district, again=True) == small
    assert StudentAnalytics.objects.count() == 15 and Notification.objects.count() == 15


@pytest.mark.django_db
def test_jobs_run_command(district, setup):
    s = student(setup)
    grade(setup, s, score=9, max_score=10, posted=local(district, THIS_MON))
    out = io.StringIO()
    with time_machine.travel(local(district, SUNDAY + dt.timedelta(days=1)), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.pk), "--as-of", "2026-10-18T03:00", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded"
    assert StudentAnalytics.objects.get(student=s).grade_pct == Decimal("90.00")


@pytest.mark.django_db
def test_a_retry_resumes_after_the_last_saved_batch(district, setup, monkeypatch):
    import interventions.trends
    from scheduling import runner
    from scheduling.jobs import performance_trends

    students = [student(setup) for _ in range(5)]
    for s in students:
        grade(setup, s, score=90, max_score=100, posted=local(district, LAST_MON))
        grade(setup, s, score=50, max_score=100, posted=local(district, THIS_MON))
    monkeypatch.setattr(performance_trends, "BATCH", 2)
    real, calls = interventions.trends.student_analytics_upsert, []

    def crash_on_second_batch(*, rows, **kw):
        calls.append([r.student_id for r in rows])
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real(rows=rows, **kw)

    monkeypatch.setattr(interventions.trends, "student_analytics_upsert", crash_on_second_batch)
    slot = local_slot(district, 2026, 10, 18, 3)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        failed = run_slot(SLUG, district, slot)
    assert failed.status == JobRun.Status.FAILED
    assert failed.checkpoint == {"week": str(THIS_MON), "after_student": students[1].pk}
    # The first batch's rows and alerts are committed with the checkpoint; the second's are not.
    assert set(StudentAnalytics.objects.values_list("student_id", flat=True)) == {students[0].pk, students[1].pk}
    assert Notification.objects.count() == 2

    retry = JobRun.objects.get(retry_of=failed)
    with time_machine.travel(slot + dt.timedelta(minutes=5), tick=False):
        done = runner.execute(retry.pk)
    assert done.status == JobRun.Status.SUCCEEDED, done.error
    assert calls[2:] == [[students[2].pk, students[3].pk], [students[4].pk]]  # batch one is not redone
    assert StudentAnalytics.objects.count() == 5 and Notification.objects.count() == 5
    assert done.result["students_checked"] == 5 and done.result["alerts"] == 3


@pytest.mark.django_db
def test_a_district_without_students_writes_nothing(db):
    empty = f.DistrictFactory(name="Brand New")
    run = run_week(empty)
    assert run.result["students_checked"] == 0 and run.result["rows_upserted"] == 0
    assert not StudentAnalytics.objects.exists()
