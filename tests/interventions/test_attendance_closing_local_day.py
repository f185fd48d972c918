"""A counselor's closing in the evening: the closing day C is the district's local date, not
UTC's (21:30 in New York is already the next day in UTC), so an absence on the next local
day reopens and one on C does not."""
import datetime as dt

import pytest

from interventions.models import Intervention
from students.models import AttendanceRecord
from tests import factories as f
from tests.interventions.test_attendance_risk import apply, attend, risks_for, school_days, session  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("offset", "reopens"), [(0, False), (1, True)])
def test_an_evening_closing_is_on_the_districts_day(district, school, session, counselor, offset, reopens):  # noqa: F811
    days = school_days(school, 20)
    student = f.StudentFactory(school=school, enrollment_date=days[0], counselor=counselor)
    attend(student, days, absent_on={days[0], days[1], days[2]})
    slot = dt.datetime.combine(days[4], dt.time(18, 30), tzinfo=district.zone)
    first = apply(district, risks_for(district, session, days[4]), slot).created[0]
    closed_day = days[10]
    assert closed_day.weekday() < 4  # the next school day is the next calendar day
    first.status, first.closed_reason = "closed", "Reviewed late in the evening"
    first.closed_at = dt.datetime.combine(closed_day, dt.time(21, 30), tzinfo=district.zone)
    first.save()
    assert first.closed_at.astimezone(dt.UTC).date() == closed_day + dt.timedelta(days=1)
    AttendanceRecord.objects.filter(student=student, date=days[10 + offset]).update(
        status="absent-unexcused", fraction_present=0)
    later = dt.datetime.combine(days[-1], dt.time(18, 30), tzinfo=district.zone)
    outcome = apply(district, risks_for(district, session, days[-1]), later, run_id=2)
    assert [i.student_id for i in outcome.created] == ([student.id] if reopens else [])
    assert Intervention.objects.filter(student=student, status="active").count() == (1 if reopens else 0)
