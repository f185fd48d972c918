"""Roles are Django groups. Permissions per role are set here, in one place, and applied
by the ``roles`` data migration and ``manage.py sync_roles``.

Row-level scope (a counselor sees the students of their own schools) is in
students.scoping; these are the model-level permissions.
"""
from __future__ import annotations

from dataclasses import dataclass

from students.models import Role

VIEW = "view"
ALL = ("view", "add", "change", "delete")

_STUDENT_DATA = [
    "students.student", "students.guardianlink", "students.attendancerecord", "students.grade",
    "students.assignment", "students.submission", "students.section", "students.sectionenrollment",
    "students.behaviorincident", "interventions.intervention", "interventions.counselortask",
    "interventions.studentanalytics",
]
_SCHOOL = ["students.district", "students.school", "students.academicsession", "students.calendarday"]
_SPED = ["iep.iep", "iep.iepteammember", "iep.iepmeeting", "iep.iepservice", "iep.servicelog",
         "iep.section504plan", "iep.accommodation"]

ROLE_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    Role.SYSTEM_ADMIN: {},  # system admins are superusers
    Role.DISTRICT_ADMIN: {
        **{m: ALL for m in _SCHOOL + _STUDENT_DATA + _SPED},
        "students.staffprofile": ALL, "students.devicetoken": (VIEW,),
        "notifications.notificationpreference": ALL, "skillcore.accesslog": (VIEW,),
    },
    Role.PRINCIPAL: {
        **{m: (VIEW,) for m in _SCHOOL + _SPED}, **{m: (VIEW, "change") for m in _STUDENT_DATA},
        "skillcore.accesslog": (VIEW,),
    },
    Role.COUNSELOR: {
        **{m: (VIEW,) for m in _SCHOOL}, **{m: (VIEW,) for m in _STUDENT_DATA},
        "interventions.intervention": ALL, "interventions.counselortask": (VIEW, "change"),
        "iep.section504plan": (VIEW,), "iep.accommodation": (VIEW,),
    },
    Role.SPED_COORDINATOR: {
        **{m: (VIEW,) for m in _SCHOOL}, "students.student": (VIEW,), "students.guardianlink": (VIEW,),
        **{m: ALL for m in _SPED},
    },
    Role.CASE_MANAGER: {
        **{m: (VIEW,) for m in _SCHOOL}, "students.student": (VIEW,), "students.guardianlink": (VIEW,),
        **{m: (VIEW, "change") for m in _SPED}, "iep.servicelog": ALL, "iep.iepmeeting": ALL,
    },
    Role.TEACHER: {
        "students.school": (VIEW,), "students.student": (VIEW,), "students.section": (VIEW,),
        "students.sectionenrollment": (VIEW,), "students.assignment": ALL, "students.grade": ALL,
        "students.submission": ALL, "students.attendancerecord": (VIEW, "add", "change"),
        "students.behaviorincident": (VIEW, "add"), "iep.iep": (VIEW,), "iep.iepservice": (VIEW,),
        # Row scope limits these to the IEPs whose team the teacher is on (students.scoping.iep_q).
        "iep.iepteammember": (VIEW,), "iep.iepmeeting": (VIEW,),
        "iep.section504plan": (VIEW,), "iep.accommodation": (VIEW,),
    },
    Role.GUARDIAN: {},  # families use the parent portal, never the staff admin
    Role.STUDENT: {},
}

STAFF_ROLES = frozenset(
    str(r) for r in (Role.DISTRICT_ADMIN, Role.PRINCIPAL, Role.COUNSELOR, Role.SPED_COORDINATOR, Role.CASE_MANAGER, Role.TEACHER)
)


def sync_roles(apps=None) -> None:
    """Create each role's group and give it exactly its permissions. Idempotent."""
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    # post_migrate reaches the students app before interventions, iep and notifications have
    # their permissions: create every app's now, or those roles would lack them on a fresh database.
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    wanted: dict[str, set[tuple[str, str]]] = {}
    for role, models in ROLE_PERMISSIONS.items():
        wanted[role] = {
            (label.split(".")[0], f"{action}_{label.split('.')[1]}") for label, actions in models.items() for action in actions
        }
    all_codes = {code for codes in wanted.values() for code in codes}
    perms = {
        (p.content_type.app_label, p.codename): p
        for p in Permission.objects.select_related("content_type").filter(codename__in={c for _, c in all_codes})
    }
    for role, codes in wanted.items():
        group, _ = Group.objects.get_or_create(name=str(role))
        group.permissions.set([perms[c] for c in codes if c in perms])


def user_roles(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_skillcore_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached.add(Role.SYSTEM_ADMIN)
        user._skillcore_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    return bool(user_roles(user) & {str(r) for r in roles})


@dataclass(frozen=True)
class Staff:
    """What the scope rules and the engine need to know about a user, read once per request
    (two queries): roles, whether a system admin, district and schools."""

    user_id: int | None
    is_system_admin: bool
    roles: frozenset[str]
    district_id: int | None
    school_ids: tuple[int, ...]

    def has(self, *roles: str) -> bool:
        return bool(self.roles & {str(r) for r in roles})

    @property
    def jobs_read_only_district(self) -> int | None:
        """The district whose scheduled jobs this user may watch and not steer: a district
        admin's own (its schedules and runs, read-only: they answer for the district's data
        but a job's timing and its retries are the system admins'). None for everyone else,
        system admins included: they see and steer every district."""
        if self.is_system_admin or self.district_id is None or not self.has(Role.DISTRICT_ADMIN):
            return None
        return self.district_id

    @property
    def may_watch_jobs(self) -> bool:
        """May open the scheduled-jobs dashboard at all: system admins, and district admins
        for their own district (``jobs_read_only_district``)."""
        return self.is_system_admin or self.jobs_read_only_district is not None


def staff_of(user) -> Staff:
    """The user's roles and workplace; cached on the user object (one per request)."""
    cached = getattr(user, "_skillcore_staff", None)
    if cached is not None:
        return cached
    from students.models import StaffProfile

    if not (user and user.is_authenticated and user.is_active):
        staff = Staff(None, False, frozenset(), None, ())
    else:
        roles = frozenset(user_roles(user)) & STAFF_ROLES
        profile = StaffProfile.objects.filter(user_id=user.pk).values_list("pk", "district_id").first()
        school_ids: tuple[int, ...] = ()
        if profile:
            school_ids = tuple(StaffProfile.schools.through.objects.filter(staffprofile_id=profile[0]).values_list("school_id", flat=True))
        staff = Staff(user.pk, bool(user.is_superuser), roles, profile[1] if profile else None, school_ids)
    user._skillcore_staff = staff
    return staff


def is_staff_member(user) -> bool:
    """May this user use the staff admin at all? Guardians and students never, even with is_staff."""
    s = staff_of(user)
    return s.is_system_admin or (bool(s.roles) and s.district_id is not None)
