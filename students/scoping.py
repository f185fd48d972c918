"""Row-level scope: which rows of each model a staff member may see.

Model-level permissions (may a counselor view grades at all?) come from the role groups
in students.roles. This module answers the row-level question (whose grades?), as small
functions that take a user and return a ``Q`` over some model. Admin's ``get_queryset``,
``has_*_permission`` and foreign-key choices all go through ``scope_q``.

The rules, per role (a user with several roles gets the union):
- system admin (superuser): everything.
- district admin: everything in their district (StaffProfile.district).
- principal, counselor: students of their own schools (StaffProfile.schools) and the
  students' records; principals also the IEPs there, counselors the 504 plans.
- special-education coordinator: IEPs and 504 plans of the district (and so its students).
- case manager: the IEPs they manage or are on the team of, and those students.
- teacher: the students in their sections; grades and assignments of their own sections;
  an IEP only when they are on its team; a 504 plan of a student they teach.
- guardian, student, or staff without a role or a StaffProfile: nothing.

Every function takes ``path``: how the model being filtered reaches the scoped model
("" when it is that model), so ``student_q(user, "student")`` filters attendance rows and
``iep_q(user, "service__iep")`` filters service logs. Paths through many-valued relations
are written as ``__in`` subqueries, never joins, so a scoped changelist has no duplicate
rows and needs no DISTINCT.
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable

from django.contrib.auth import get_user_model
from django.db.models import Model, Q

from students.models import Role
from students.roles import Staff, is_staff_member, staff_of

NOTHING = Q(pk__in=[])


def _p(path: str, rest: str) -> str:
    return f"{path}__{rest}" if path else rest


def _any(parts: Iterable[Q]) -> Q:
    parts = list(parts)
    return functools.reduce(operator.or_, parts) if parts else NOTHING


def _rule(body: Callable[[Staff, str], Q]) -> Callable[..., Q]:
    """A scope rule: system admins see everything, non-staff nothing, the rest what ``body`` says."""

    @functools.wraps(body)
    def rule(user, path: str = "") -> Q:
        s = staff_of(user)
        if s.is_system_admin:
            return Q()
        if not is_staff_member(user):
            return NOTHING
        return body(s, path)

    return rule


# -- the building blocks: ids of rows reachable through a person ------------------------------
def _taught_student_ids(user_id: int):
    from students.models import SectionEnrollment

    return SectionEnrollment.objects.filter(section__teacher_id=user_id).values("student_id")


def _team_iep_ids(user_id: int):
    from iep.models import IEPTeamMember

    return IEPTeamMember.objects.filter(user_id=user_id).values("iep_id")


def _own_student_ids(s: Staff):
    """Students a teacher or case manager reaches personally: taught in their sections (teachers),
    or on an IEP they manage or are on the team of (a related-services provider need not teach
    the student), as ONE ``UNION ALL`` subquery.

    One IN over a union, not an OR of IN subqueries: PostgreSQL cannot use an OR of two IN
    subqueries to drive the query, and misestimated ``case_manager = x OR id IN (...)`` at half
    the IEP table, so a teacher's attendance or grade page walked the whole table in date order
    (4 s at 50,000 students) instead of reading their 20-150 students' rows (a few ms)."""
    from iep.models import IEP, IEPTeamMember

    # No ORDER BY in the parts: SQLite refuses one inside a compound SELECT.
    parts = [
        IEP.objects.filter(case_manager_id=s.user_id).order_by().values("student_id"),
        IEPTeamMember.objects.filter(user_id=s.user_id).order_by().values("iep__student_id"),
    ]
    if s.has(Role.TEACHER):
        parts.insert(0, _taught_student_ids(s.user_id).order_by())
    first, *rest = parts
    return first.union(*rest, all=True)


def _implemented_plan_ids(user_id: int):
    from iep.models import Accommodation

    return Accommodation.implementers.through.objects.filter(user_id=user_id).values("accommodation__plan_id")


# -- the rules -----------------------------------------------------------------------------------
@_rule
def district_q(s: Staff, path: str = "") -> Q:
    """Over District (path to a district): a staff member's own district."""
    return Q(**{_p(path, "pk"): s.district_id})


@_rule
def school_q(s: Staff, path: str = "") -> Q:
    """Over School: the district for district-wide roles, else the staff member's schools."""
    parts = []
    if s.has(Role.DISTRICT_ADMIN, Role.SPED_COORDINATOR, Role.CASE_MANAGER):
        parts.append(Q(**{_p(path, "district_id"): s.district_id}))
    if s.has(Role.PRINCIPAL, Role.COUNSELOR, Role.TEACHER):
        parts.append(Q(**{_p(path, "pk__in"): s.school_ids}))
    return _any(parts)


@_rule
def student_q(s: Staff, path: str = "") -> Q:
    """Over Student: whose records this staff member may see."""
    parts = []
    if s.has(Role.DISTRICT_ADMIN, Role.SPED_COORDINATOR):
        parts.append(Q(**{_p(path, "school__district_id"): s.district_id}))
    if s.has(Role.PRINCIPAL, Role.COUNSELOR):
        parts.append(Q(**{_p(path, "school_id__in"): s.school_ids}))
    if s.has(Role.CASE_MANAGER, Role.TEACHER):
        parts.append(Q(**{_p(path, "pk__in"): _own_student_ids(s)}))
    return _any(parts)


@_rule
def section_q(s: Staff, path: str = "") -> Q:
    """Over Section: a teacher's own sections; the schools' sections for school leaders."""
    parts = []
    if s.has(Role.DISTRICT_ADMIN):
        parts.append(Q(**{_p(path, "school__district_id"): s.district_id}))
    if s.has(Role.PRINCIPAL, Role.COUNSELOR):
        parts.append(Q(**{_p(path, "school_id__in"): s.school_ids}))
    if s.has(Role.TEACHER):
        parts.append(Q(**{_p(path, "teacher_id"): s.user_id}))
    return _any(parts)


@_rule
def iep_q(s: Staff, path: str = "") -> Q:
    """Over IEP: district-wide for coordinators, school-wide for principals, else team only."""
    parts = [
        # Whatever the role, the IEP's own team and case manager see it (if their role may view IEPs).
        Q(**{_p(path, "pk__in"): _team_iep_ids(s.user_id)}),
        Q(**{_p(path, "case_manager_id"): s.user_id}),
    ]
    if s.has(Role.DISTRICT_ADMIN, Role.SPED_COORDINATOR):
        parts.append(Q(**{_p(path, "student__school__district_id"): s.district_id}))
    if s.has(Role.PRINCIPAL):
        parts.append(Q(**{_p(path, "student__school_id__in"): s.school_ids}))
    return _any(parts)


@_rule
def plan504_q(s: Staff, path: str = "") -> Q:
    """Over Section504Plan: the district, the schools, the plan's coordinator, its implementers and teachers."""
    parts = [
        Q(**{_p(path, "coordinator_id"): s.user_id}),
        Q(**{_p(path, "pk__in"): _implemented_plan_ids(s.user_id)}),
    ]
    if s.has(Role.DISTRICT_ADMIN, Role.SPED_COORDINATOR):
        parts.append(Q(**{_p(path, "student__school__district_id"): s.district_id}))
    if s.has(Role.PRINCIPAL, Role.COUNSELOR):
        parts.append(Q(**{_p(path, "student__school_id__in"): s.school_ids}))
    if s.has(Role.TEACHER):
        # Teachers implement accommodations in class, so they see the plans of the students they teach.
        parts.append(Q(**{_p(path, "student_id__in"): _taught_student_ids(s.user_id)}))
    return _any(parts)


def district_people_ids(district_id: int):
    """Ids of the people of a district: its staff, its students' accounts and their guardians."""
    User = get_user_model()
    return User.objects.filter(
        Q(staff_profile__district_id=district_id)
        | Q(student_record__school__district_id=district_id)
        | Q(guardian_links__student__school__district_id=district_id)
    ).values("pk")


@_rule
def people_q(s: Staff, path: str = "") -> Q:
    """Over User (device tokens, notification preferences): a district admin's district; oneself."""
    parts = [Q(**{_p(path, "pk"): s.user_id})]
    if s.has(Role.DISTRICT_ADMIN):
        parts.append(Q(**{_p(path, "pk__in"): district_people_ids(s.district_id)}))
    return _any(parts)


@_rule
def access_log_q(s: Staff, path: str = "") -> Q:
    """Over AccessLog: what the district's (or, for a principal, the schools') staff did.

    Rows written by job runs (no actor) are for system admins only until runs carry a district.
    """
    from students.models import StaffProfile

    parts = []
    if s.has(Role.DISTRICT_ADMIN):
        parts.append(Q(**{_p(path, "actor_id__in"): StaffProfile.objects.filter(district_id=s.district_id).values("user_id")}))
    if s.has(Role.PRINCIPAL):
        ids = StaffProfile.schools.through.objects.filter(school_id__in=s.school_ids).values("staffprofile__user_id")
        parts.append(Q(**{_p(path, "actor_id__in"): ids}))
    return _any(parts)


def staff_users_q(user, roles: Iterable[str] = ()) -> Q:
    """Over User: staff of the user's district (with one of ``roles`` if given), for choice lists."""
    s = staff_of(user)
    q = Q(is_active=True)
    if roles:
        q &= Q(groups__name__in=[str(r) for r in roles])
    if s.is_system_admin:
        return q
    if not is_staff_member(user):
        return NOTHING
    return q & Q(staff_profile__district_id=s.district_id)


def user_choices(user, roles: Iterable[str] = ()):
    """Users a staff member may pick for a person field (a counselor, a case manager, ...)."""
    User = get_user_model()
    # A subquery rather than a join: a person in two matching groups is listed once.
    return User.objects.filter(pk__in=User.objects.filter(staff_users_q(user, roles)).values("pk")).order_by(
        "last_name", "first_name", "username"
    )


def role_user_choices(user, role: str):
    """Guardian or student accounts: people of the district plus those not linked to anyone yet."""
    User = get_user_model()
    s = staff_of(user)
    qs = User.objects.filter(groups__name=str(role), is_staff=False)
    if s.is_system_admin:
        return qs
    if not is_staff_member(user):
        return User.objects.none()
    unlinked = Q(guardian_links__isnull=True, student_record__isnull=True)
    return User.objects.filter(
        Q(pk__in=qs.values("pk")) & (Q(pk__in=district_people_ids(s.district_id)) | Q(pk__in=User.objects.filter(unlinked).values("pk")))
    )


def _model_scopes() -> dict[str, Callable[..., Q]]:
    return {
        "students.district": district_q,
        "students.school": school_q,
        "students.academicsession": lambda u: district_q(u, "district"),
        "students.calendarday": lambda u: school_q(u, "school"),
        "students.staffprofile": lambda u: district_q(u, "district"),
        "students.student": student_q,
        "students.guardianlink": lambda u: student_q(u, "student"),
        "students.devicetoken": lambda u: people_q(u, "user"),
        "students.section": section_q,
        # Both the section and the student in scope: a teacher sees their own classes' rows,
        # not what their students do in other teachers' classes.
        "students.sectionenrollment": lambda u: section_q(u, "section") & student_q(u, "student"),
        "students.assignment": lambda u: section_q(u, "section"),
        "students.submission": lambda u: section_q(u, "assignment__section") & student_q(u, "student"),
        "students.grade": lambda u: section_q(u, "assignment__section") & student_q(u, "student"),
        "students.attendancerecord": lambda u: student_q(u, "student"),
        "students.behaviorincident": lambda u: student_q(u, "student"),
        "interventions.intervention": lambda u: student_q(u, "student"),
        "interventions.counselortask": lambda u: student_q(u, "student"),
        "interventions.studentanalytics": lambda u: student_q(u, "student"),
        "iep.iep": iep_q,
        "iep.iepteammember": lambda u: iep_q(u, "iep"),
        "iep.iepmeeting": lambda u: iep_q(u, "iep"),
        "iep.iepservice": lambda u: iep_q(u, "iep"),
        "iep.servicelog": lambda u: iep_q(u, "service__iep"),
        "iep.section504plan": plan504_q,
        "iep.accommodation": lambda u: plan504_q(u, "plan"),
        "notifications.notificationpreference": lambda u: people_q(u, "user"),
        "skillcore.accesslog": access_log_q,
    }


SCOPES = _model_scopes()


def scope_q(user, model: type[Model] | Model) -> Q:
    """The rows of ``model`` the user may see. A model without a rule is visible only to system admins."""
    rule = SCOPES.get(model._meta.label_lower)
    if rule is None:
        return Q() if staff_of(user).is_system_admin else NOTHING
    return rule(user)


def scoped(user, model: type[Model]):
    """The model's rows the user may see, as a QuerySet."""
    return model._default_manager.filter(scope_q(user, model))
