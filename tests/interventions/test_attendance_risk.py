"""Chronic-absence rules (attendance-interventions), each as a boundary test."""
import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection

from interventions.models import CounselorTask, Intervention
from interventions.selectors import attendance_evidence, attendance_risks, needs_tier_2
from interventions.services import ReviewMarks, attendance_interventions_apply, attendance_review_marks_apply
from students.models import CalendarDay
from tests import factories as f

pytestmark = pytest.mark.django_db

START = dt.date(2026, 9, 1)  # a Tuesday


def school_days(school, count, *, holidays=()):
    """``count`` instructional weekdays from START; holidays are non-instructional rows."""
    days, day = [], START
    rows = []
    while len(days) < count:
        if day.weekday() < 5:
            if day in holidays:
                rows.append(CalendarDay(school=school, date=day, is_instructional=False, note="Holiday"))
            else:
                days.append(day)
                rows.append(CalendarDay(school=school, date=day, is_instructional=True))
        day += dt.timedelta(days=1)
    CalendarDay.objects.bulk_create(rows)
    return days


@pytest.fixture
def session(district):
    return f.AcademicSessionFactory(district=district, start_date=START, end_date=dt.date(2027, 6, 18))


def attend(student, days, absent_on, status="absent-unexcused", fraction=Decimal("0")):
    from students.models import AttendanceRecord

    AttendanceRecord.objects.bulk_create([
        AttendanceRecord(
            student=student, date=d, status=status if d in absent_on else "present",
            fraction_present=fraction if d in absent_on else Decimal("1"),
        )
        for d in days
    ])


def risks_for(district, session, as_of):
    return {r.student_id: r for r in attendance_risks(district=district, session=session, as_of=as_of)[1]}


def test_exactly_ten_percent_with_ten_enrolled_days_is_at_risk(district, school, session):
    days = school_days(school, 20)
    student = f.StudentFactory(school=school, enrollment_date=days[10])
    attend(student, days[10:], absent_on={days[12]})  # 1 of 10 enrolled days = 10%
    risk = risks_for(district, session, days[-1])[student.id]
    assert risk.enrolled_days == 10 and risk.absences == 1
    assert "session-rate" in risk.criteria
    assert risk.reason == "90.0% attendance (1 absence in 10 days)"


def test_just_under_ten_percent_is_not(district, school, session):
    days = school_days(school, 11)
    student = f.StudentFactory(school=school, enrollment_date=START)
    attend(student, days, absent_on={days[3]})  # 1 / 11 = 9.09%
    assert student.id not in risks_for(district, session, days[-1])


def test_nine_enrolled_days_are_too_few_for_a_rate(district, school, session):
    days = school_days(school, 20)
    student = f.StudentFactory(school=school, enrollment_date=days[11])
    attend(student, days[11:], absent_on={days[12]})  # 1 / 9 = 11% but only 9 days
    assert student.id not in risks_for(district, session, days[-1])


def test_three_in_a_row_across_a_weekend_and_a_holiday(district, school, session):
    # Fri 2026-09-04, (weekend), Mon 09-07 is Labor Day (holiday), Tue 09-08: a streak of 3.
    days = school_days(school, 40, holidays={dt.date(2026, 9, 7)})
    student = f.StudentFactory(school=school, enrollment_date=START)
    absent = {dt.date(2026, 9, 3), dt.date(2026, 9, 4), dt.date(2026, 9, 8)}
    attend(student, days, absent_on=absent)
    risk = risks_for(district, session, days[25])[student.id]
    assert risk.streak == 3 and "3-in-a-row" in risk.criteria
    assert risk.reason == "88.5% attendance (3 absences in 26 days, 3 in a row)"


def test_a_streak_anywhere_in_the_session_flags(district, school, session):
    # A run in September still flags in November: the rule has no window (a district that
    # starts running the job mid-year, or after a gap, must not miss it).
    days = school_days(school, 60)
    student = f.StudentFactory(school=school, enrollment_date=START)
    attend(student, days, absent_on={days[1], days[2], days[3]})  # 3 / 60 = 5%
    assert risks_for(district, session, days[31])[student.id].criteria == ("3-in-a-row",)
    risk = risks_for(district, session, days[-1])[student.id]  # the run ended 56 school days ago
    assert days[-1] >= dt.date(2026, 11, 1)
    assert risk.criteria == ("3-in-a-row",) and risk.streak == 3 and risk.window_streak == 0
    assert risk.last_run_end == days[3] == risk.last_absence


def test_a_present_day_breaks_a_streak(district, school, session):
    days = school_days(school, 40)
    student = f.StudentFactory(school=school, enrollment_date=START)
    attend(student, days, absent_on={days[5], days[6], days[8]})
    assert student.id not in risks_for(district, session, days[-1])  # 3 / 40 = 7.5%, streak 2


def test_in_school_suspension_and_tardy_are_not_absences(district, school, session):
    days = school_days(school, 20)
    iss = f.StudentFactory(school=school, enrollment_date=START)
    tardy = f.StudentFactory(school=school, enrollment_date=START)
    attend(iss, days, absent_on=set(days[:5]), status="iss", fraction=Decimal("1"))
    attend(tardy, days, absent_on=set(days[:5]), status="tardy", fraction=Decimal("0.8"))
    assert risks_for(district, session, days[-1]) == {}


def test_excused_and_suspension_count_and_a_half_day_missed_counts(district, school, session):
    days = school_days(school, 20)
    excused = f.StudentFactory(school=school, enrollment_date=START)
    oss = f.StudentFactory(school=school, enrollment_date=START)
    partial = f.StudentFactory(school=school, enrollment_date=START)
    half = f.StudentFactory(school=school, enrollment_date=START)
    attend(excused, days, absent_on={days[0], days[5]}, status="absent-excused")
    attend(oss, days, absent_on={days[0], days[5]}, status="oss")
    attend(partial, days, absent_on={days[0], days[5]}, status="tardy", fraction=Decimal("0.49"))
    attend(half, days, absent_on={days[0], days[5]}, status="tardy", fraction=Decimal("0.50"))
    risks = risks_for(district, session, days[-1])
    assert {excused.id, oss.id, partial.id, half.id} == set(risks)  # 2/20 = 10% each; exactly half present is absent


def test_a_day_counts_absent_at_half_present_not_at_fifty_one_percent(district, school, session):
    # CRDC: absent when the student missed at least 50 percent of the school day.
    days = school_days(school, 20)
    half = f.StudentFactory(school=school, enrollment_date=START)
    over_half = f.StudentFactory(school=school, enrollment_date=START)
    attend(half, days, absent_on=set(days[5:8]), status="tardy", fraction=Decimal("0.50"))
    attend(over_half, days, absent_on=set(days[5:8]), status="tardy", fraction=Decimal("0.51"))
    risks = risks_for(district, session, days[-1])
    assert set(risks) == {half.id}
    assert risks[half.id].absences == 3 and risks[half.id].streak == 3
    from students.models import AttendanceRecord

    records = AttendanceRecord.objects.filter(date=days[5])
    assert {r.student_id: r.counts_as_absent for r in records} == {half.id: True, over_half.id: False}


def test_ten_absences_flag_even_under_the_rate(district, school, session):
    days = school_days(school, 150)
    student = f.StudentFactory(school=school, enrollment_date=START)
    absent = {days[i] for i in range(0, 100, 10)}  # 10 absences in 150 days = 6.7%, spread out
    attend(student, days, absent_on=absent)
    risk = risks_for(district, session, days[-1])[student.id]
    assert risk.criteria == ("10-absences",)


def test_recent_thirty_day_rate_flags_a_student_whose_session_rate_is_fine(district, school, session):
    days = school_days(school, 100)
    student = f.StudentFactory(school=school, enrollment_date=START)
    recent = days[-30:]
    absent = {recent[0], recent[10], recent[20]}  # 3 / 30 = 10% recently, 3 / 100 overall
    attend(student, days, absent_on=absent)
    risk = risks_for(district, session, days[-1])[student.id]
    assert risk.criteria == ("30-day-rate",) and risk.window_days == 30 and risk.window_absences == 3


def test_days_outside_the_calendar_or_enrollment_do_not_count(district, school, session):
    days = school_days(school, 20, holidays={dt.date(2026, 9, 7)})
    student = f.StudentFactory(school=school, enrollment_date=START)
    attend(student, days, absent_on=set())
    from students.models import AttendanceRecord

    # An absence recorded on a holiday is not an instructional day.
    AttendanceRecord.objects.create(student=student, date=dt.date(2026, 9, 7), status="absent-unexcused",
                                    fraction_present=0)
    assert risks_for(district, session, days[-1]) == {}


def test_only_days_up_to_the_as_of_date_count(district, school, session):
    days = school_days(school, 20)
    student = f.StudentFactory(school=school, enrollment_date=START)
    attend(student, days, absent_on={days[15], days[16], days[17]})
    assert student.id not in risks_for(district, session, days[14])
    assert student.id in risks_for(district, session, days[17])


def test_query_count_does_not_grow_with_students(district, school, session, django_assert_num_queries):
    days = school_days(school, 20)
    for n in (1, 12):
        for _ in range(n):
            s = f.StudentFactory(school=school, enrollment_date=START)
            attend(s, days, absent_on={days[0], days[1], days[2]})
        # The count and the statement; on PostgreSQL also the planner setting taken for the
        # statement and given back (selectors._risk_rows).
        with django_assert_num_queries(4 if connection.vendor == "postgresql" else 2):
            checked, risks = attendance_risks(district=district, session=session, as_of=days[-1])
    assert checked == 13 and len(risks) == 13


def test_the_statements_planner_setting_does_not_outlive_it(district, school, session):
    """PostgreSQL: merge joins are off for the at-risk statement only; a caller's transaction
    (the test's own here) finds the setting it had before."""
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL planner setting")
    days = school_days(school, 5)
    student = f.StudentFactory(school=school, enrollment_date=START)
    attend(student, days, absent_on=set(days[:3]))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_mergejoin = on")
        assert student.id in risks_for(district, session, days[-1])
        cursor.execute("SHOW enable_mergejoin")
        assert cursor.fetchone()[0] == "on"


def apply(district, risks, slot, run_id=1):
    return attendance_interventions_apply(
        risks=list(risks.values()),
        escalate={sid for sid, r in risks.items() if needs_tier_2(r, minimum_days=district.min_enrolled_days)},
        opened_at=slot, local_date=slot.date(), job_run_id=run_id, district_id=district.id,
    )


def test_opens_tier_1_once_and_never_a_second_active(district, school, session, counselor):
    days = school_days(school, 20)
    student = f.StudentFactory(school=school, enrollment_date=START, counselor=counselor)
    attend(student, days, absent_on={days[0], days[5]})
    slot = dt.datetime(2026, 9, 28, 22, 30, tzinfo=dt.UTC)
    risks = risks_for(district, session, days[-1])
    outcome = apply(district, risks, slot)
    assert [(i.student_id, i.tier) for i in outcome.created] == [(student.id, 1)]
    assert outcome.tasks_created == 2
    # The same slot again (a retry): the same rows, nothing new.
    again = apply(district, risks, slot, run_id=2)
    assert [i.pk for i in again.created] == [i.pk for i in outcome.created] and again.tasks_created == 0
    # The next day's slot: still at risk, but no second active intervention.
    later = apply(district, risks, slot + dt.timedelta(days=1), run_id=3)
    assert later.created == [] and Intervention.objects.filter(student=student).count() == 1
    kinds = set(CounselorTask.objects.filter(counselor=counselor, student=student).values_list("kind", flat=True))
    assert kinds == {"priority", "parent-conference"}


def test_escalates_to_tier_2_when_the_session_rate_reaches_twenty_percent(district, school, session, counselor):
    days = school_days(school, 20)
    student = f.StudentFactory(school=school, enrollment_date=START, counselor=counselor)
    slot = dt.datetime(2026, 9, 28, 22, 30, tzinfo=dt.UTC)
    attend(student, days, absent_on={days[0], days[5], days[10]})  # 15%
    apply(district, risks_for(district, session, days[-1]), slot)
    from students.models import AttendanceRecord

    AttendanceRecord.objects.filter(student=student, date=days[15]).update(status="absent-excused", fraction_present=0)
    risks = risks_for(district, session, days[-1])  # 4 / 20 = 20%
    outcome = apply(district, risks, slot + dt.timedelta(days=1), run_id=2)
    assert [i.tier for i in outcome.escalated] == [2]
    tier1 = Intervention.objects.get(student=student, tier=1)
    assert tier1.status == "escalated" and tier1.closed_at is not None
    assert Intervention.objects.get(student=student, status="active").escalated_from == tier1


# -- a counselor's closing is respected ---------------------------------------------------------
def close_on(intervention, day, district):
    """The counselor closes it on local ``day``, late afternoon."""
    intervention.status, intervention.closed_reason = "closed", "Reviewed: family plan in place"
    intervention.closed_at = dt.datetime.combine(day, dt.time(16, 0), tzinfo=district.zone)
    intervention.save()


@pytest.mark.parametrize(("offset", "reopens"), [(0, False), (1, True)])
def test_a_closing_on_day_c_holds_against_an_absence_on_c_not_on_c_plus_one(
    district, school, session, counselor, offset, reopens,
):
    days = school_days(school, 20)
    student = f.StudentFactory(school=school, enrollment_date=START, counselor=counselor)
    attend(student, days, absent_on={days[0], days[1], days[2]})  # a run of 3: opened
    slot = dt.datetime.combine(days[4], dt.time(18, 30), tzinfo=district.zone)
    first = apply(district, risks_for(district, session, days[4]), slot).created[0]
    closed_day = days[10]
    close_on(first, closed_day, district)
    from students.models import AttendanceRecord

    # One more absence on C (offset 0) or on C + 1 (offset 1): 4 / 20 = 20%, at risk either way.
    AttendanceRecord.objects.filter(student=student, date=days[10 + offset]).update(
        status="absent-unexcused", fraction_present=0)
    risks = risks_for(district, session, days[-1])
    assert "session-rate" in risks[student.id].criteria
    later = dt.datetime.combine(days[-1], dt.time(18, 30), tzinfo=district.zone)
    outcome = apply(district, risks, later, run_id=2)
    assert [i.student_id for i in outcome.created] == ([student.id] if reopens else [])
    assert outcome.closed_by_counselor == ([] if reopens else [student.id])
    first.refresh_from_db()
    assert first.status == "closed"  # never reopened itself: a new one opens
    assert Intervention.objects.filter(student=student, status="active").count() == (1 if reopens else 0)


def test_an_old_run_does_not_reopen_on_an_absence_that_flags_nothing(district, school, session, counselor):
    # The run in September was the evidence the counselor closed on; one absence in
    # November is new, but no rule holds on it (4 / 60 = 6.7%, 1 in the last 30).
    days = school_days(school, 60)
    student = f.StudentFactory(school=school, enrollment_date=START, counselor=counselor)
    attend(student, days, absent_on={days[0], days[1], days[2], days[45]})
    slot = dt.datetime.combine(days[4], dt.time(18, 30), tzinfo=district.zone)
    close_on(apply(district, risks_for(district, session, days[4]), slot).created[0], days[20], district)
    risks = risks_for(district, session, days[-1])
    assert risks[student.id].criteria == ("3-in-a-row",) and risks[student.id].last_absence == days[45]
    outcome = apply(district, risks, dt.datetime.combine(days[-1], dt.time(18, 30), tzinfo=district.zone), run_id=2)
    assert outcome.created == [] and outcome.closed_by_counselor == [student.id]


# -- ready to review: set and cleared, never closed -------------------------------------------------
@pytest.mark.parametrize(("recent_absences", "slipping"), [(2, False), (3, True)])
def test_slipping_is_the_last_thirty_days_at_the_threshold(district, school, session, recent_absences, slipping):
    days = school_days(school, 60)
    student = f.StudentFactory(school=school, enrollment_date=START)
    recent = days[-30:]
    attend(student, days, absent_on={recent[i] for i in range(0, 10 * recent_absences, 10)})  # 2 or 3 of 30
    evidence = attendance_evidence(district=district, session=session, as_of=days[-1])
    assert (student.id in evidence.slipping) is slipping  # the threshold (10%) is inclusive


@pytest.mark.parametrize(("absent", "slipping"), [((100, 101, 102), True), ((100, 101, 103), False)])
def test_a_run_of_three_in_the_last_thirty_days_is_slipping_under_the_rate(district, school, session, absent, slipping):
    district.chronic_absence_threshold = Decimal("0.20")
    district.save()
    days = school_days(school, 120)
    student = f.StudentFactory(school=school, enrollment_date=START)
    attend(student, days, absent_on={days[i] for i in absent})  # 3 of the last 30 = 10%, under 20%
    assert (student.id in attendance_evidence(district=district, session=session, as_of=days[-1]).slipping) is slipping


def test_review_mark_is_set_when_recovered_and_cleared_when_slipping_again(district, school, session, counselor):
    days = school_days(school, 60)
    student = f.StudentFactory(school=school, enrollment_date=START, counselor=counselor)
    attend(student, days, absent_on={days[0], days[1], days[2]})
    slot = dt.datetime.combine(days[4], dt.time(18, 30), tzinfo=district.zone)
    intervention = apply(district, risks_for(district, session, days[4]), slot).created[0]

    def marks(day):
        evidence = attendance_evidence(district=district, session=session, as_of=day)
        result = attendance_review_marks_apply(slipping=evidence.slipping, local_date=day, district_id=district.id)
        intervention.refresh_from_db()
        return result

    assert marks(days[4]).ready == 0 and intervention.ready_to_review_since is None  # 3 of 5 days
    # days[33]: the last 30 are days[4..33], absence-free; the September run still flags (at risk).
    assert marks(days[33]) == ReviewMarks(marked=1, cleared=0, ready=1)
    assert intervention.ready_to_review_since == days[33] and intervention.status == "active"
    assert marks(days[34]) == ReviewMarks(marked=0, cleared=0, ready=1)  # keeps the first day
    assert intervention.ready_to_review_since == days[33]
    from students.models import AttendanceRecord

    AttendanceRecord.objects.filter(student=student, date__in=days[35:38]).update(status="oss", fraction_present=0)
    assert marks(days[37]) == ReviewMarks(marked=0, cleared=1, ready=0)
    assert intervention.ready_to_review_since is None and intervention.status == "active"  # never closed
