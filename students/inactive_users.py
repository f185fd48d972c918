"""Inactive users: who would be deactivated, archived or flagged (``inactive_users_plan``,
a read) and the one write path that does it with an audit row per change
(``inactive_users_apply``). Used by the inactive-user-cleanup job and, for a dry run, by
``manage.py inactive_users --dry-run``.

The rules (as of a local date D in the district's zone; "2 years before" D is the same
calendar date two years earlier, 28 February for a 29 February):
1. Teachers (the teacher role and no other staff role) whose last login — or the date they
   joined, if they never logged in — is on or before D minus 2 years: deactivated.
2. Students who graduated or transferred on or before D minus 2 years: archived
   (``archived_at``, ``is_active`` False); their login account, if any, is deactivated.
3. Guardians all of whose children left (graduated, transferred or exited) on or before
   D minus 2 years: deactivated.
4. Other staff (any other staff role, or none) inactive on or before D minus 1 year:
   flagged for review (``StaffProfile.flagged_for_review_at``), never deactivated.
5. A teacher of rule 1 who holds a current duty (``current_duties``: teaches a section of a
   current session, counselor of an active student, case manager or member of an active IEP
   team, coordinator or implementer of an active 504 plan, in a district's emergency test
   group, one of the last two system admins who approve each other's rollovers) is not
   deactivated: flagged for review instead, once, with each duty named in the audit row.
   Deactivating them would silently take a class, a caseload or a team seat away from
   students; an admin reassigns the duty first, and the next run deactivates.
Never touched: superusers and system admins, and (rules 2-3) anyone with a staff profile.
Nothing is deleted.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce

from iep.models import IEP, Accommodation, IEPTeamMember, Section504Plan
from scheduling.models import UserLifecycleChange
from students.models import District, GuardianLink, Role, Section, StaffProfile, Student

User = get_user_model()
OTHER_STAFF_ROLES = [str(r) for r in (Role.DISTRICT_ADMIN, Role.PRINCIPAL, Role.COUNSELOR, Role.SPED_COORDINATOR, Role.CASE_MANAGER)]

RULE_TEACHER = "teacher-inactive-2y"
RULE_STUDENT = "student-left-2y"
RULE_STUDENT_ACCOUNT = "student-account-left-2y"
RULE_GUARDIAN = "guardian-children-left-2y"
RULE_STAFF = "staff-inactive-1y"
RULE_TEACHER_DUTIES = "teacher-inactive-2y-holds-duties"
# Two-person approval of a rollover needs a requester and a different approving system
# admin (a superuser): with two or fewer left, each one is needed.
APPROVERS_NEEDED = 2


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def _end_of(day: dt.date, zone) -> dt.datetime:
    """The first instant after ``day`` in the zone: activity before it was on or before ``day``."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)


@dataclass(frozen=True)
class Change:
    action: str
    rule: str
    label: str  # for the dry-run listing
    user_id: int | None = None
    student_id: int | None = None
    before: dict = field(default_factory=dict, compare=False)
    duties: tuple[str, ...] = field(default=(), compare=False)  # flags: the current duties held


def _never_touched() -> Q:
    return Q(is_superuser=True) | Q(groups__name=str(Role.SYSTEM_ADMIN))


def _users(qs: QuerySet) -> QuerySet:
    """Candidates once each (``pk__in``: a join through groups or links would repeat them)."""
    return User.objects.filter(pk__in=qs.values("pk")).annotate(last_activity=Coalesce("last_login", "date_joined")).order_by("pk")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def current_duties(users: QuerySet) -> dict[int, list[str]]:
    """user id -> the current duties each of ``users`` holds, named for an admin (users with
    none are left out). A fixed number of queries (one per kind of duty), whatever the
    number of users: each kind is one grouped read over ``users`` as a subquery.

    Current means: a section of a session marked current; an active, unarchived student;
    an active IEP or 504 plan; a membership of any district's emergency test group; an
    active superuser while no more than two are active (two-person rollover approval).
    """
    ids = users.values("pk")
    duties: dict[int, list[str]] = {}

    def add(user_id: int, text: str) -> None:
        duties.setdefault(user_id, []).append(text)

    sections: dict[int, list[str]] = {}
    for teacher_id, course, period, session in (
        Section.objects.filter(teacher_id__in=ids, session__is_current=True)
        .order_by("teacher_id", "course_name", "period", "pk").values_list("teacher_id", "course_name", "period", "session__name")
    ):
        sections.setdefault(teacher_id, []).append(f"{course} ({period}, {session})" if period else f"{course} ({session})")
    for teacher_id, names in sections.items():
        add(teacher_id, f"teaches current-session sections: {', '.join(names)}")
    # (rows, user column, what is counted, wording): one grouped count per kind.
    counted = [
        (Student.objects.filter(counselor_id__in=ids, is_active=True, archived_at__isnull=True), "counselor_id", "pk",
         "counselor of", "active student"),
        (IEP.objects.filter(case_manager_id__in=ids, status=IEP.Status.ACTIVE), "case_manager_id", "pk",
         "case manager of", "active IEP"),
        (IEPTeamMember.objects.filter(user_id__in=ids, iep__status=IEP.Status.ACTIVE), "user_id", "pk",
         "member of", "active IEP team"),
        (Section504Plan.objects.filter(coordinator_id__in=ids, status=Section504Plan.Status.ACTIVE), "coordinator_id", "pk",
         "coordinator of", "active 504 plan"),
        # Plans, not accommodations: one plan has several.
        (Accommodation.implementers.through.objects.filter(user_id__in=ids, accommodation__plan__status=Section504Plan.Status.ACTIVE),
         "user_id", "accommodation__plan_id", "implements accommodations of", "active 504 plan"),
    ]
    for qs, column, unit, what, noun in counted:
        for user_id, n in qs.values_list(column).annotate(n=Count(unit, distinct=True)).order_by(column):
            add(user_id, f"{what} {_plural(n, noun)}")
    groups: dict[int, list[str]] = {}
    for user_id, district_name in (
        District.emergency_test_group.through.objects.filter(user_id__in=ids)
        .order_by("user_id", "district__name").values_list("user_id", "district__name")
    ):
        groups.setdefault(user_id, []).append(district_name)
    for user_id, names in groups.items():
        add(user_id, f"in the emergency test group of {', '.join(names)}")
    approvers = list(User.objects.filter(is_active=True, is_superuser=True).values_list("pk", flat=True)[: APPROVERS_NEEDED + 1])
    if len(approvers) <= APPROVERS_NEEDED:
        for user_id in users.filter(pk__in=approvers).values_list("pk", flat=True):
            add(user_id, f"one of the last {APPROVERS_NEEDED} system admins (two-person rollover approval)")
    return duties


def inactive_users_plan(*, district: District, as_of: dt.date) -> list[Change]:
    """What the cleanup would change in the district as of a local date. Four queries."""
    zone = district.zone
    two_years, one_year = years_before(as_of, 2), years_before(as_of, 1)
    active = Q(is_active=True) & ~Q(pk__in=User.objects.filter(_never_touched()).values("pk"))
    activity = Coalesce("last_login", "date_joined")
    in_district = Q(staff_profile__district=district)
    others = User.objects.filter(groups__name__in=OTHER_STAFF_ROLES).values("pk")
    changes: list[Change] = []

    # 1. Teachers only (teacher role, no other staff role), inactive 2+ years; 5. those who
    #    hold a current duty are flagged (once) instead. Other staff of rule 4 get their
    #    duties named too: one read of the duties for both sets.
    teachers = User.objects.filter(active, in_district, groups__name=str(Role.TEACHER)).exclude(pk__in=others)
    teachers = teachers.alias(activity=activity).filter(activity__lt=_end_of(two_years, zone))
    teacher_only = User.objects.filter(groups__name=str(Role.TEACHER)).exclude(pk__in=others).values("pk")
    staff = User.objects.filter(active, in_district, staff_profile__flagged_for_review_at__isnull=True).exclude(pk__in=teacher_only)
    staff = staff.alias(activity=activity).filter(activity__lt=_end_of(one_year, zone))
    duties = current_duties(User.objects.filter(Q(pk__in=teachers.values("pk")) | Q(pk__in=staff.values("pk"))))
    for u in _users(teachers).annotate(flagged_at=F("staff_profile__flagged_for_review_at")):
        before = {"is_active": True, "last_activity": u.last_activity.isoformat()}
        if u.pk not in duties:
            changes.append(Change(UserLifecycleChange.Action.DEACTIVATE, RULE_TEACHER, f"teacher {u.get_username()}",
                                  user_id=u.pk, before=before))
        elif u.flagged_at is None:
            changes.append(Change(UserLifecycleChange.Action.FLAG, RULE_TEACHER_DUTIES,
                                  f"teacher {u.get_username()} (holds: {'; '.join(duties[u.pk])})", user_id=u.pk,
                                  before={**before, "flagged_for_review_at": None}, duties=tuple(duties[u.pk])))

    # 2. Students who left 2+ years ago: archived, and their login deactivated.
    left = Q(graduated_on__lte=two_years) | Q(transferred_on__lte=two_years)
    students = Student.objects.filter(left, school__district=district, archived_at__isnull=True)
    student_users = []
    for s in students.order_by("pk").values("pk", "local_id", "is_active", "user_id", "user__is_active", "user__is_superuser",
                                            "user__staff_profile", "graduated_on", "transferred_on"):
        left_on = s["graduated_on"] or s["transferred_on"]
        changes.append(Change(UserLifecycleChange.Action.ARCHIVE, RULE_STUDENT, f"student {s['local_id']} (left {left_on})",
                              student_id=s["pk"], before={"is_active": s["is_active"], "archived_at": None}))
        if s["user_id"] and s["user__is_active"] and not s["user__is_superuser"] and s["user__staff_profile"] is None:
            student_users.append(s)
    for s in student_users:
        changes.append(Change(UserLifecycleChange.Action.DEACTIVATE, RULE_STUDENT_ACCOUNT, f"account of student {s['local_id']}",
                              user_id=s["user_id"], student_id=s["pk"], before={"is_active": True}))

    # 3. Guardians linked in this district all of whose children (anywhere) left 2+ years ago.
    child_left_on = Coalesce("student__graduated_on", "student__transferred_on", "student__exit_date")
    still_here = GuardianLink.objects.alias(left_on=child_left_on).filter(
        Q(left_on__isnull=True) | Q(left_on__gt=two_years), guardian_id=OuterRef("pk"),
    )
    guardians = User.objects.filter(active, guardian_links__student__school__district=district, staff_profile__isnull=True)
    guardians = guardians.filter(~Exists(still_here))
    for u in _users(guardians):
        changes.append(Change(UserLifecycleChange.Action.DEACTIVATE, RULE_GUARDIAN, f"guardian {u.get_username()}", user_id=u.pk,
                              before={"is_active": True, "last_activity": u.last_activity.isoformat()}))

    # 4. Other staff inactive 1+ year: flagged for review once, with any duties named.
    for u in _users(staff):
        changes.append(Change(UserLifecycleChange.Action.FLAG, RULE_STAFF, f"staff {u.get_username()}", user_id=u.pk,
                              before={"flagged_for_review_at": None, "last_activity": u.last_activity.isoformat()},
                              duties=tuple(duties.get(u.pk, ()))))
    return changes


@transaction.atomic
def inactive_users_apply(
    *, district: District, as_of: dt.date, at: dt.datetime, job_run_id: int | None, actor_label: str,
) -> list[Change]:
    """Make the plan's changes and write one UserLifecycleChange per change, in one
    transaction; a re-run finds nothing left to do.

    Two runs at once (a manual run during the scheduled one): the district row is locked
    first, so the second waits for the first to commit and then plans from what it wrote
    (each statement sees the latest commit): nobody is changed or audited twice. Locking
    candidate rows instead would not do: a waiting ``pk IN (subquery)`` is re-checked
    against the row, not the subquery, and flags live in another table.
    """
    District.objects.select_for_update().filter(pk=district.pk).values_list("pk", flat=True).first()
    changes = inactive_users_plan(district=district, as_of=as_of)
    deactivate = [c.user_id for c in changes if c.action == UserLifecycleChange.Action.DEACTIVATE]
    archive = [c.student_id for c in changes if c.action == UserLifecycleChange.Action.ARCHIVE]
    flag = [c.user_id for c in changes if c.action == UserLifecycleChange.Action.FLAG]
    if deactivate:
        User.objects.filter(pk__in=deactivate, is_active=True).update(is_active=False)
    if archive:
        Student.objects.filter(pk__in=archive, archived_at__isnull=True).update(archived_at=at, is_active=False)
    if flag:
        StaffProfile.objects.filter(user_id__in=flag, flagged_for_review_at__isnull=True).update(flagged_for_review_at=at)
    after = {
        UserLifecycleChange.Action.DEACTIVATE: {"is_active": False},
        UserLifecycleChange.Action.ARCHIVE: {"is_active": False, "archived_at": at.isoformat()},
        UserLifecycleChange.Action.FLAG: {"flagged_for_review_at": at.isoformat()},
    }
    UserLifecycleChange.objects.bulk_create([
        UserLifecycleChange(
            at=at, district=district, user_id=c.user_id, student_id=c.student_id, action=c.action, rule=c.rule,
            before=c.before, after={**after[c.action], **({"duties": list(c.duties)} if c.duties else {})},
            job_run_id=job_run_id, actor_label=actor_label[:150],
        )
        for c in changes
    ], batch_size=1000)
    return changes


def summarize(changes: list[Change]) -> dict:
    counts = {RULE_TEACHER: 0, RULE_STUDENT: 0, RULE_STUDENT_ACCOUNT: 0, RULE_GUARDIAN: 0, RULE_STAFF: 0}
    for c in changes:
        # A teacher kept for their duties is flagged staff; the audit's rule tells them apart.
        counts[RULE_STAFF if c.rule == RULE_TEACHER_DUTIES else c.rule] += 1
    return {
        "teachers_deactivated": counts[RULE_TEACHER], "students_archived": counts[RULE_STUDENT],
        "student_accounts_deactivated": counts[RULE_STUDENT_ACCOUNT], "guardians_deactivated": counts[RULE_GUARDIAN],
        "staff_flagged": counts[RULE_STAFF],
    }
