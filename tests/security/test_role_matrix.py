"""Who may open what: every registered ModelAdmin's changelist and add page, the
scheduled-jobs dashboard's pages and actions, /metrics and /health, for every role and
for anonymous visitors.

The matrix is generated from the admin registry and students.models.Role, so a new
ModelAdmin or role fails ``test_the_table_names_every_registered_admin`` until its row
is written here. The expectations are written out by hand on purpose (not derived from
students/roles.py): a permission granted by mistake there shows up as a mismatch.
"""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from scheduling import periodic_tasks, services
from scheduling.models import JobRun, JobSchedule
from students.models import Role
from tests import factories as f

pytestmark = pytest.mark.django_db

# Short codes, in the order the issue lists the roles.
ROLES = {
    "SA": Role.SYSTEM_ADMIN, "DA": Role.DISTRICT_ADMIN, "PR": Role.PRINCIPAL, "CO": Role.COUNSELOR,
    "SC": Role.SPED_COORDINATOR, "CM": Role.CASE_MANAGER, "TE": Role.TEACHER, "GU": Role.GUARDIAN,
    "ST": Role.STUDENT,
}
STAFF = {"DA", "PR", "CO", "SC", "CM", "TE"}
PERSONAS = [*ROLES, "GU+staff", "ANON"]  # GU+staff: a guardian account given is_staff by mistake

# model label: (roles that may open the changelist, roles that may open the add page).
# Everyone else logged in as staff gets 403; guardians, students and anonymous visitors
# are sent to the login page (302) for every admin URL.
EXPECTED: dict[str, tuple[str, str]] = {
    "auth.group": ("SA", "SA"),
    "axes.accessfailurelog": ("SA", ""),  # the admin login's attempt log, read-only
    "auth.user": ("SA", "SA"),
    "django_q.failure": ("SA", ""),
    "django_q.ormq": ("SA", ""),
    "django_q.schedule": ("SA", "SA"),
    "django_q.success": ("SA", ""),
    "iep.accommodation": ("SA DA PR CO SC CM TE", "SA DA SC"),
    "iep.iep": ("SA DA PR SC CM TE", "SA DA SC"),
    "iep.iepmeeting": ("SA DA PR SC CM TE", "SA DA SC CM"),
    "iep.iepservice": ("SA DA PR SC CM TE", "SA DA SC"),
    "iep.iepteammember": ("SA DA PR SC CM TE", "SA DA SC"),
    "iep.section504plan": ("SA DA PR CO SC CM TE", "SA DA SC"),
    "iep.servicelog": ("SA DA PR SC CM", "SA DA SC CM"),
    "interventions.counselortask": ("SA DA PR CO", "SA DA"),
    "interventions.intervention": ("SA DA PR CO", "SA DA CO"),
    "interventions.studentanalytics": ("SA DA PR CO", ""),
    "notifications.digestitem": ("SA DA", ""),
    "notifications.notification": ("SA DA", ""),
    "notifications.notificationpreference": ("SA DA", "SA DA"),
    "notifications.recipientprofile": ("SA DA", "SA DA"),
    "scheduling.alertdelivery": ("SA", ""),
    "scheduling.blastradiuslimit": ("SA", "SA"),
    "scheduling.emergencybroadcast": ("SA DA", "SA DA"),
    "scheduling.incident": ("SA", ""),
    "scheduling.jobrun": ("SA", ""),
    "scheduling.jobschedule": ("SA", ""),
    "scheduling.report": ("SA DA PR", ""),
    "scheduling.rolloverrequest": ("SA", "SA"),
    "scheduling.runhold": ("SA", ""),
    "scheduling.schedulechange": ("SA", ""),
    "scheduling.schedulerheartbeat": ("SA", ""),
    "scheduling.userlifecyclechange": ("SA DA", ""),
    "skillcore.accesslog": ("SA DA PR", ""),  # the trail is read-only for everyone
    "students.academicsession": ("SA DA PR CO SC CM", "SA DA"),
    "students.assignment": ("SA DA PR CO TE", "SA DA TE"),
    "students.attendancerecord": ("SA DA PR CO TE", "SA DA TE"),
    "students.behaviorincident": ("SA DA PR CO TE", "SA DA TE"),
    "students.calendarday": ("SA DA PR CO SC CM", "SA DA"),
    "students.devicetoken": ("SA DA", "SA"),
    "students.district": ("SA DA PR CO SC CM", "SA"),
    "students.grade": ("SA DA PR CO TE", "SA DA TE"),
    "students.guardianlink": ("SA DA PR CO SC CM", "SA DA"),
    "students.school": ("SA DA PR CO SC CM TE", "SA DA"),
    "students.section": ("SA DA PR CO TE", "SA DA"),
    "students.sectionenrollment": ("SA DA PR CO TE", "SA DA"),
    "students.staffprofile": ("SA DA", "SA DA"),
    "students.student": ("SA DA PR CO SC CM TE", "SA DA"),
    "students.submission": ("SA DA PR CO TE", "SA DA TE"),
}


def registered_admin_urls() -> dict[str, tuple[str, str]]:
    urls = {}
    for model in admin.site._registry:
        o = model._meta
        urls[o.label_lower] = (
            reverse(f"admin:{o.app_label}_{o.model_name}_changelist"), reverse(f"admin:{o.app_label}_{o.model_name}_add"),
        )
    return urls


def expected_status(persona: str, allowed: str) -> int:
    if persona in ("GU", "ST", "GU+staff", "ANON"):
        return 302
    return 200 if persona in allowed.split() else 403


@pytest.fixture
def people(school):
    users = {"SA": f.UserFactory(username="sa", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])}
    for code in STAFF:
        users[code] = f.StaffFactory(username=code.lower(), roles=[ROLES[code]], schools=[school])
    users["GU"] = f.UserFactory(username="gu", roles=[Role.GUARDIAN])
    users["ST"] = f.UserFactory(username="st", roles=[Role.STUDENT])
    users["GU+staff"] = f.UserFactory(username="gu_staff", is_staff=True, roles=[Role.GUARDIAN])
    return users


def client_for(people, persona: str) -> Client:
    client = Client()
    if persona != "ANON":
        client.force_login(people[persona])
    return client


def test_the_table_names_every_registered_admin():
    assert set(registered_admin_urls()) == set(EXPECTED)


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_changelist_and_add_page(persona, people):
    client = client_for(people, persona)
    wrong = []
    for label, (changelist, add) in sorted(registered_admin_urls().items()):
        can_view, can_add = EXPECTED[label]
        for url, _allowed in ((changelist, can_view), (add, can_add)):
            response = client.get(url)
            want = expected_status(persona, can_view if url == changelist else can_add)
            if response.status_code != want:
                wrong.append(f"{url}: {response.status_code}, expected {want}")
            elif want == 302:
                assert response["Location"].startswith("/admin/login/"), url
    assert not wrong, "\n".join(wrong)


@pytest.fixture
def dashboard_objects(district, school):
    services.sync_schedules()
    schedules = JobSchedule.objects.filter(district=district).order_by("job")
    schedule, other = schedules[0], schedules[1]
    failed = JobRun.objects.create(job=schedule.job, district=district, trigger=JobRun.Trigger.SCHEDULE,
                                   slot="2026-11-01T06:00:00Z", status=JobRun.Status.FAILED, error="boom")
    return schedule, other, failed


def dashboard_requests(schedule, other, failed) -> list[tuple[str, str, dict]]:
    """Every page and action of /admin/scheduled-jobs/ (scheduling/dashboard.py urls()),
    in an order a system admin can perform them all (delete last)."""
    def u(name, *args):
        return reverse(f"admin:scheduled_jobs{name}", args=args)

    return [
        ("GET", u(""), {}),
        ("GET", u("_schedule", schedule.pk), {}),
        ("GET", u("_cron", schedule.pk), {}),
        ("GET", u("_preview", schedule.pk) + "?cron=0+6+*+*+*", {}),
        ("GET", u("_delete", other.pk), {}),
        ("GET", u("_run", failed.pk), {}),
        ("GET", u("_run_progress", failed.pk), {}),
        ("POST", u("_pause", schedule.pk), {"note": "winter break"}),
        ("POST", u("_resume", schedule.pk), {}),
        ("POST", u("_cron", schedule.pk), {"cron": "15 6 * * 1-5", "_save": "Save"}),
        ("POST", u("_run_now", schedule.pk), {}),
        ("POST", u("_retry", failed.pk), {}),
        ("POST", u("_delete", other.pk), {}),
    ]


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_dashboard_page_and_action(persona, people, dashboard_objects):
    client = client_for(people, persona)
    wrong = []
    schedule, other, failed = dashboard_objects
    # A district admin's own district, read-only: the index, a schedule's page and a run's
    # page (with its progress) show; every change, and every page that holds a change's form, is refused.
    watched = {reverse(f"admin:scheduled_jobs{name}", args=args) for name, args in (
        ("", ()), ("_schedule", (schedule.pk,)), ("_run", (failed.pk,)), ("_run_progress", (failed.pk,)))}
    for method, url, data in dashboard_requests(*dashboard_objects):
        response = client.get(url) if method == "GET" else client.post(url, data)
        if persona == "SA":
            want = 200 if method == "GET" else 302
        elif persona == "DA":
            want = 200 if method == "GET" and url in watched else 403
        elif persona in STAFF:
            want = 403
        else:
            want = 302
        if response.status_code != want:
            wrong.append(f"{method} {url}: {response.status_code}, expected {want}")
        elif persona not in STAFF and persona != "SA":
            assert response["Location"].startswith("/admin/login/"), url
    assert not wrong, "\n".join(wrong)
    schedule, other, failed = dashboard_objects
    changed = JobSchedule.objects.filter(pk=other.pk, removed_at__isnull=False).exists()
    assert changed == (persona == "SA")  # only the system admin's delete went through
    assert JobRun.objects.filter(retry_of=failed).exists() == (persona == "SA")


@pytest.mark.parametrize("persona", PERSONAS)
def test_metrics_and_health_do_not_depend_on_the_session(persona, people, settings):
    settings.METRICS_TOKEN = "scrape-token"
    client = client_for(people, persona)
    assert client.get("/metrics").status_code == 401  # a staff session is not a scrape token
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200
    periodic_tasks.sync()  # /health also wants the outbox drain's rows `jobs sync` makes
    assert client.get("/health").status_code == 200
    assert client.get("/health/db").status_code == 200
