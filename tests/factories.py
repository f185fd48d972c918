"""factory_boy factories for every model. Related rows share one district and school
through SubFactory/SelfAttribute so a test builds a coherent little world in one line."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from iep.models import IEP, Accommodation, IEPMeeting, IEPService, IEPTeamMember, Section504Plan, ServiceLog
from interventions.models import CounselorTask, Intervention
from notifications.models import NotificationPreference
from skillcore.models import AccessLog
from students.models import (
    AcademicSession,
    Assignment,
    AttendanceRecord,
    BehaviorIncident,
    CalendarDay,
    DeviceToken,
    District,
    Grade,
    GuardianLink,
    Role,
    School,
    Section,
    SectionEnrollment,
    StaffProfile,
    Student,
    Submission,
)

User = get_user_model()


class DistrictFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = District

    name = factory.Sequence(lambda n: f"District {n}")
    time_zone = "America/New_York"
    state = "NY"


class SchoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = School

    district = factory.SubFactory(DistrictFactory)
    name = factory.Sequence(lambda n: f"School {n}")
    code = factory.Sequence(lambda n: f"S{n:04d}")
    lowest_grade = 6
    highest_grade = 12


class AcademicSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AcademicSession

    district = factory.SubFactory(DistrictFactory)
    name = factory.Sequence(lambda n: f"{2026 + n}-{2027 + n}")
    start_date = dt.date(2026, 8, 31)
    end_date = dt.date(2027, 6, 18)
    is_current = True


class CalendarDayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CalendarDay

    school = factory.SubFactory(SchoolFactory)
    date = factory.Sequence(lambda n: dt.date(2026, 9, 1) + dt.timedelta(days=n))
    is_instructional = True


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    first_name = "Pat"
    last_name = factory.Sequence(lambda n: f"Person{n}")
    password = factory.django.Password("correct horse battery staple")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*[Group.objects.get_or_create(name=str(r))[0] for r in extracted])


class StaffFactory(UserFactory):
    """A staff member with a role, working at the given schools."""

    is_staff = True

    class Params:
        district = None

    @factory.post_generation
    def schools(self, create, extracted, **kwargs):
        if not create:
            return
        schools = list(extracted or [])
        district = schools[0].district if schools else DistrictFactory()
        profile = StaffProfile.objects.create(user=self, district=district)
        if schools:
            profile.schools.set(schools)


class StudentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Student

    school = factory.SubFactory(SchoolFactory)
    local_id = factory.Sequence(lambda n: f"{100000 + n}")
    first_name = factory.Sequence(lambda n: f"Student{n}")
    last_name = "Doe"
    grade_level = 9
    birth_date = dt.date(2011, 3, 15)
    enrollment_date = dt.date(2026, 8, 31)
    is_active = True


class GuardianLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GuardianLink

    guardian = factory.SubFactory(UserFactory, roles=[Role.GUARDIAN])
    student = factory.SubFactory(StudentFactory)
    relationship = GuardianLink.Relationship.PARENT


class DeviceTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeviceToken

    user = factory.SubFactory(UserFactory)
    token = factory.Sequence(lambda n: f"fcm-token-{n:08d}-" + "x" * 120)
    platform = DeviceToken.Platform.ANDROID


class SectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Section

    school = factory.SubFactory(SchoolFactory)
    session = factory.SubFactory(AcademicSessionFactory, district=factory.SelfAttribute("..school.district"))
    course_name = factory.Sequence(lambda n: f"Course {n}")
    period = "1"


class SectionEnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SectionEnrollment

    section = factory.SubFactory(SectionFactory)
    student = factory.SubFactory(StudentFactory, school=factory.SelfAttribute("..section.school"))
    start_date = dt.date(2026, 8, 31)


class AssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Assignment

    section = factory.SubFactory(SectionFactory)
    title = factory.Sequence(lambda n: f"Assignment {n}")
    status = Assignment.Status.PUBLISHED
    due_date = dt.date(2026, 10, 15)
    max_score = Decimal("100")


class SubmissionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Submission

    assignment = factory.SubFactory(AssignmentFactory)
    student = factory.SubFactory(StudentFactory, school=factory.SelfAttribute("..assignment.section.school"))
    submitted_at = factory.LazyFunction(timezone.now)


class GradeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Grade

    assignment = factory.SubFactory(AssignmentFactory)
    student = factory.SubFactory(StudentFactory, school=factory.SelfAttribute("..assignment.section.school"))
    score = Decimal("85")
    posted_at = factory.LazyFunction(timezone.now)


class AttendanceRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AttendanceRecord

    student = factory.SubFactory(StudentFactory)
    date = dt.date(2026, 9, 1)
    status = "present"
    fraction_present = Decimal("1.00")


class BehaviorIncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BehaviorIncident

    student = factory.SubFactory(StudentFactory)
    occurred_at = factory.LazyFunction(timezone.now)
    category = "Disruption"


class InterventionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Intervention

    student = factory.SubFactory(StudentFactory)
    type = Intervention.Type.ATTENDANCE
    tier = 1
    reason = "Chronic absence"
    opened_at = factory.LazyFunction(timezone.now)


class CounselorTaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CounselorTask

    counselor = factory.SubFactory(UserFactory, roles=[Role.COUNSELOR])
    student = factory.SubFactory(StudentFactory)
    kind = CounselorTask.Kind.PRIORITY
    created_at = factory.LazyFunction(timezone.now)


class IEPFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IEP

    student = factory.SubFactory(StudentFactory)
    eligibility_date = dt.date(2023, 2, 1)
    last_annual_review = dt.date(2026, 2, 1)
    # Reevaluated at the last annual review, so the 3-year reevaluation (eligibility + 3 years
    # would be 2026-02-01) is not overdue in every test; reevaluation tests set their dates.
    last_reevaluation = factory.LazyAttribute(lambda o: o.last_annual_review)
    case_manager = factory.SubFactory(UserFactory, roles=[Role.CASE_MANAGER])


class IEPTeamMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IEPTeamMember

    iep = factory.SubFactory(IEPFactory)
    user = factory.SubFactory(UserFactory, roles=[Role.TEACHER])
    role = IEPTeamMember.TeamRole.GENERAL_EDUCATION_TEACHER


class IEPMeetingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IEPMeeting

    iep = factory.SubFactory(IEPFactory)


class IEPServiceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IEPService

    iep = factory.SubFactory(IEPFactory)
    name = "Speech therapy"
    minutes_per_month = 120


class ServiceLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceLog

    service = factory.SubFactory(IEPServiceFactory)
    student = factory.SelfAttribute("service.iep.student")
    delivered_on = dt.date(2026, 10, 5)
    minutes = 30


class Section504PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Section504Plan

    student = factory.SubFactory(StudentFactory)
    evaluation_date = dt.date(2026, 1, 10)
    start_date = dt.date(2026, 1, 20)
    next_review_due = dt.date(2027, 1, 20)


class AccommodationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Accommodation

    plan = factory.SubFactory(Section504PlanFactory)
    description = "Extended time on tests"


class NotificationPreferenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NotificationPreference

    user = factory.SubFactory(UserFactory)
    category = "grade-digest"
    channel = "email"
    frequency = "daily"


class AccessLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AccessLog

    at = factory.LazyFunction(timezone.now)
    actor_label = "tester"
    purpose = "test"
    model = "students.Student"
    operation = AccessLog.Operation.READ
