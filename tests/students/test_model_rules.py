"""The rules the admin forms used to hold are the models' own: ``full_clean()`` refuses the
same bad values with the same field and message, whatever form, command or job checks the row
(tests/test_admin_forms.py shows the admin still gives them as form errors)."""
from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from iep.models import IEPMeeting
from notifications.models import NotificationPreference
from students.models import Grade, StaffProfile, Submission
from tests import factories as f

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 10, 1, 8, 0, tzinfo=dt.UTC)


def refused(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as exc:
        instance.full_clean()
    return exc.value.message_dict


def district(**kw):
    return f.DistrictFactory.build(name="Riverside", state="CA", **kw)


CASES = {
    "district window": (
        lambda: district(notify_window_start=dt.time(21), notify_window_end=dt.time(7)),
        "notify_window_end", "The end of the messaging window must be after its start.",
    ),
    "district threshold": (
        lambda: district(chronic_absence_threshold="1.5"), "chronic_absence_threshold",
        "Ensure this value is less than or equal to 0.99.",
    ),
    "district minimum days": (
        lambda: district(min_enrolled_days=0), "min_enrolled_days", "Ensure this value is greater than or equal to 1.",
    ),
    "district offsets": (
        lambda: district(iep_reminder_offsets=[90, 90, 30]), "iep_reminder_offsets", "Reminder offsets must not repeat.",
    ),
    "school span": (
        lambda: f.SchoolFactory.build(district=f.DistrictFactory(), lowest_grade=9, highest_grade=6),
        "highest_grade", "The highest grade is below the lowest grade.",
    ),
    "student grade range": (
        lambda: f.StudentFactory.build(school=f.SchoolFactory(), grade_level=15),
        "grade_level", "Ensure this value is less than or equal to 12.",
    ),
    "student grade outside the school": (
        lambda: f.StudentFactory.build(school=f.SchoolFactory(name="Hill High", lowest_grade=9, highest_grade=12), grade_level=3),
        "grade_level", "Hill High teaches grades 9 to 12.",
    ),
    "submission neither submitted nor exempt": (
        lambda: Submission(assignment=f.AssignmentFactory(), student=f.StudentFactory(), submitted_at=None, is_exempt=False),
        "submitted_at", "Give the submission time, or mark the student exempt.",
    ),
    "grade of a student outside the section": (
        lambda: Grade(assignment=f.AssignmentFactory(), student=f.StudentFactory(), score=80, posted_at=timezone.now()),
        "student", "This student is not enrolled in the assignment's section.",
    ),
    "iep review before eligibility": (
        lambda: f.IEPFactory.build(student=f.StudentFactory(), case_manager=None, eligibility_date=dt.date(2026, 5, 1),
                                   last_annual_review=dt.date(2026, 2, 1)),
        "last_annual_review", "The annual review cannot precede the eligibility date.",
    ),
    "meeting scheduled without a time": (
        lambda: IEPMeeting(iep=f.IEPFactory(), status=IEPMeeting.Status.SCHEDULED, scheduled_for=None),
        "scheduled_for", "A scheduled meeting needs a date and time.",
    ),
    "service log of another student": (
        lambda: f.ServiceLogFactory.build(service=f.IEPServiceFactory(), student=f.StudentFactory()),
        "student", "This service belongs to another student's IEP.",
    ),
    "service log over 8 hours": (
        lambda: f.ServiceLogFactory.build(service=f.IEPServiceFactory(), minutes=600),
        "minutes", "Ensure this value is less than or equal to 480.",
    ),
    "504 plan before its evaluation": (
        lambda: f.Section504PlanFactory.build(student=f.StudentFactory(), start_date=dt.date(2026, 1, 1)),
        "start_date", "A 504 plan starts after its evaluation (34 CFR 104.35).",
    ),
    "504 review not after the start": (
        lambda: f.Section504PlanFactory.build(student=f.StudentFactory(), next_review_due=dt.date(2026, 1, 20)),
        "next_review_due", "The review is due after the plan starts.",
    ),
    "intervention tier": (
        lambda: f.InterventionFactory.build(student=f.StudentFactory(), tier=5, opened_at=NOW),
        "tier", "Value 5 is not a valid choice.",
    ),
    "closed intervention without a closing time": (
        lambda: f.InterventionFactory.build(student=f.StudentFactory(), status="closed", opened_at=NOW),
        "closed_at", "Give the time the intervention was closed or escalated.",
    ),
    "active intervention with a closing time": (
        lambda: f.InterventionFactory.build(student=f.StudentFactory(), opened_at=NOW, closed_at=NOW),
        "closed_at", "An active intervention has no closing time; clear it or change the status.",
    ),
    "escalated from another student's intervention": (
        lambda: f.InterventionFactory.build(student=f.StudentFactory(), opened_at=NOW, tier=2,
                                            escalated_from=f.InterventionFactory(status="escalated", closed_at=NOW)),
        "escalated_from", "The escalated intervention belongs to another student.",
    ),
    "low-grade threshold outside the grade digest": (
        lambda: NotificationPreference(user=f.UserFactory(), category="report", channel="email", frequency="daily",
                                       low_grade_threshold=60),
        "low_grade_threshold", "A low-grade threshold applies to the grade digest only.",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_model_refuses_with_the_forms_field_and_message(case):
    build, field, message = CASES[case]
    assert refused(build())[field] == [message]


def test_both_errors_of_an_intervention_closing_time_are_given():
    bad = f.InterventionFactory.build(student=f.StudentFactory(), opened_at=NOW, closed_at=NOW - dt.timedelta(days=1))
    assert refused(bad)["closed_at"] == [
        "An active intervention has no closing time; clear it or change the status.",
        "The intervention cannot close before it opened.",
    ]


def test_sound_rows_pass():
    school = f.SchoolFactory(lowest_grade=9, highest_grade=12)
    student = f.StudentFactory(school=school, grade_level=10)
    section = f.SectionFactory(school=school)
    f.SectionEnrollmentFactory(section=section, student=student)
    assignment = f.AssignmentFactory(section=section)
    for row in (
        district(), school, student, Grade(assignment=assignment, student=student, score=80, posted_at=timezone.now()),
        Submission(assignment=assignment, student=student, submitted_at=None, is_exempt=True),
        f.ServiceLogFactory.build(service=f.IEPServiceFactory(), minutes=480),
        f.InterventionFactory.build(student=student, status="closed", opened_at=NOW, closed_at=NOW),
        NotificationPreference(user=f.UserFactory(), category="grade-digest", channel="email", frequency="daily",
                               low_grade_threshold=60),
    ):
        row.full_clean()


def test_staff_schools_belong_to_their_district():
    home, elsewhere = f.SchoolFactory(), f.SchoolFactory()
    StaffProfile.validate_schools(district=home.district, schools=[home])
    with pytest.raises(ValidationError) as exc:
        StaffProfile.validate_schools(district=home.district, schools=[home, elsewhere])
    assert exc.value.message_dict == {"schools": ["Every school must belong to the staff member's district."]}
