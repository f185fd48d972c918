import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from interventions.models import Intervention
from students.models import AcademicSession, District
from tests import factories as f

pytestmark = pytest.mark.django_db


def _refused(factory, **kwargs):
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**kwargs)


def test_one_attendance_record_per_student_and_day():
    record = f.AttendanceRecordFactory(date=dt.date(2026, 9, 2))
    _refused(f.AttendanceRecordFactory, student=record.student, date=dt.date(2026, 9, 2))


def test_attendance_status_must_be_known():
    _refused(f.AttendanceRecordFactory, status="asleep")


def test_attendance_fraction_between_0_and_1():
    _refused(f.AttendanceRecordFactory, fraction_present=Decimal("1.50"))


def test_assignment_max_score_must_be_positive():
    _refused(f.AssignmentFactory, max_score=Decimal("0"))


def test_grade_score_not_negative():
    _refused(f.GradeFactory, score=Decimal("-1"))


def test_at_most_one_current_session_per_district(district):
    f.AcademicSessionFactory(district=district, name="2026-2027", is_current=True)
    f.AcademicSessionFactory(district=district, name="2025-2026", is_current=False,
                             start_date=dt.date(2025, 8, 31), end_date=dt.date(2026, 6, 18))
    _refused(f.AcademicSessionFactory, district=district, name="2027-2028", is_current=True,
             start_date=dt.date(2027, 8, 31), end_date=dt.date(2028, 6, 18))
    assert AcademicSession.objects.filter(district=district, is_current=True).count() == 1


def test_session_must_end_after_it_starts(district):
    _refused(f.AcademicSessionFactory, district=district, start_date=dt.date(2027, 1, 1), end_date=dt.date(2026, 1, 1))


def test_one_active_intervention_per_student_and_type():
    first = f.InterventionFactory()
    _refused(f.InterventionFactory, student=first.student, type=Intervention.Type.ATTENDANCE)
    # A different type, or a closed one, is fine.
    f.InterventionFactory(student=first.student, type=Intervention.Type.ACADEMIC)
    f.InterventionFactory(student=first.student, type=Intervention.Type.ATTENDANCE, status="closed",
                          closed_at=first.opened_at, closed_reason="resolved")


def test_intervention_tier_between_1_and_3():
    _refused(f.InterventionFactory, tier=4)


def test_one_active_iep_per_student():
    iep = f.IEPFactory()
    _refused(f.IEPFactory, student=iep.student)


def test_iep_due_date_is_last_review_plus_365_days_across_a_leap_year():
    iep = f.IEPFactory(last_annual_review=dt.date(2027, 3, 1))
    assert iep.next_review_due == dt.date(2028, 2, 29)  # 2028 is a leap year: 365 days, not the same date


def test_district_time_zone_is_validated():
    district = District(name="Nowhere", time_zone="Mars/Olympus_Mons", state="NY")
    with pytest.raises(ValidationError) as excinfo:
        district.full_clean()
    assert "time_zone" in excinfo.value.message_dict


def test_district_threshold_is_checked_by_the_database():
    _refused(f.DistrictFactory, chronic_absence_threshold=Decimal("1.5"))


def test_attendance_outside_enrollment_is_refused_by_validation():
    student = f.StudentFactory(enrollment_date=dt.date(2026, 9, 10))
    record = f.AttendanceRecordFactory.build(student=student, date=dt.date(2026, 9, 1))
    with pytest.raises(ValidationError) as excinfo:
        record.full_clean()
    assert "date" in excinfo.value.message_dict
