"""django-q2's own admin ("Task queue") cannot change the engine's schedules, and only system
admins see it (scheduling/queue_admin.py).

The engine's Schedule rows change only through scheduling.services (audited, validated, with
next_run in the district's zone); a POST to django-q2's change or delete page for a
``skillcore:*`` row is refused and the row stays as it was. Staff who are not system admins
never see django-q2's models, even when given their model permissions.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django_q.models import Failure, Schedule

from scheduling import services
from scheduling.models import JobSchedule, ScheduleChange

pytestmark = pytest.mark.django_db

QUEUE_MODELS = ("schedule", "success", "failure", "ormq")


def change_url(schedule: Schedule) -> str:
    return reverse("admin:django_q_schedule_change", args=[schedule.pk])


def form_data(schedule: Schedule, **changes) -> dict:
    """A complete, valid POST of django-q2's Schedule change form."""
    data = {
        "name": schedule.name, "func": schedule.func, "hook": schedule.hook or "", "args": schedule.args or "",
        "kwargs": schedule.kwargs or "", "schedule_type": schedule.schedule_type, "minutes": "",
        "repeats": str(schedule.repeats), "next_run_0": "2027-01-04", "next_run_1": "06:00:00",
        "cron": schedule.cron or "", "cluster": "", "intended_date_kwarg": schedule.intended_date_kwarg or "",
        "_save": "Save",
    }
    data.update(changes)
    return data


def row(schedule: Schedule) -> tuple:
    return Schedule.objects.filter(pk=schedule.pk).values_list("name", "func", "cron", "repeats", "next_run", "kwargs").first()


@pytest.fixture
def engine_schedule(district) -> Schedule:
    services.sync_schedules()
    return JobSchedule.objects.filter(district=district, q_schedule__isnull=False).order_by("job").first().q_schedule


@pytest.fixture
def sa_client(system_admin) -> Client:
    client = Client()
    client.force_login(system_admin)
    return client


def test_a_post_to_change_an_engine_schedule_changes_nothing(sa_client, engine_schedule):
    before = row(engine_schedule)
    response = sa_client.post(change_url(engine_schedule), form_data(engine_schedule, cron="* * * * *", repeats="0"))
    assert response.status_code == 403
    assert row(engine_schedule) == before
    assert not ScheduleChange.objects.exists()


def test_an_engine_schedule_is_shown_read_only(sa_client, engine_schedule):
    response = sa_client.get(change_url(engine_schedule))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert 'name="_save"' not in response.content.decode()
    assert engine_schedule.name in response.content.decode()


def test_an_engine_schedule_cannot_be_deleted_one_by_one_or_in_bulk(sa_client, engine_schedule):
    delete_url = reverse("admin:django_q_schedule_delete", args=[engine_schedule.pk])
    assert sa_client.post(delete_url, {"post": "yes"}).status_code == 403
    response = sa_client.post(
        reverse("admin:django_q_schedule_changelist"),
        {"action": "delete_selected", "_selected_action": [engine_schedule.pk], "post": "yes"},
    )
    assert response.status_code == 403  # "delete selected" checks each row: refused
    assert Schedule.objects.filter(pk=engine_schedule.pk).exists()
    assert JobSchedule.objects.filter(q_schedule=engine_schedule).exists()


def test_a_retry_row_of_the_engine_is_read_only_too(sa_client):
    retry = Schedule.objects.create(name="skillcore:retry:41", func=services.EXECUTE_FUNC, kwargs="{'run_id': 41}",
                                    schedule_type=Schedule.ONCE, repeats=-1, next_run="2027-01-04T06:00:00Z")
    before = row(retry)
    assert sa_client.post(change_url(retry), form_data(retry, next_run_0="2030-01-01")).status_code == 403
    assert row(retry) == before


def test_a_system_admin_still_manages_schedules_that_are_not_the_engines(sa_client):
    own = Schedule.objects.create(name="nightly-vacuum", func="django.db.connection.close", schedule_type=Schedule.DAILY,
                                  repeats=-1, next_run="2027-01-04T03:00:00Z")
    response = sa_client.post(change_url(own), form_data(own, repeats="5"))
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    assert Schedule.objects.get(pk=own.pk).repeats == 5


@pytest.mark.parametrize("changes, field", [
    ({"name": "skillcore:attendance-interventions:1"}, "name"),
    ({"func": services.FIRE_FUNC}, "func"),
    ({"func": services.EXECUTE_FUNC}, "func"),
])
def test_no_new_row_takes_the_engines_name_or_tasks(sa_client, changes, field):
    template = Schedule(name="mine", func="django.db.connection.close", schedule_type=Schedule.DAILY, repeats=-1)
    response = sa_client.post(reverse("admin:django_q_schedule_add"), form_data(template, **changes))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not Schedule.objects.exists()


def grant_all_queue_permissions(user) -> None:
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="django_q"))


@pytest.mark.parametrize("persona", ["district_admin", "principal"])
@pytest.mark.parametrize("granted", [False, True], ids=["role-permissions", "all-django-q-permissions"])
def test_staff_never_see_the_task_queue(request, persona, granted, engine_schedule):
    user = request.getfixturevalue(persona)
    if granted:  # a permission given by mistake still opens nothing
        grant_all_queue_permissions(user)
    client = Client()
    client.force_login(user)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert "django_q" not in [app["app_label"] for app in index.context["app_list"]]
    assert "/admin/django_q/" not in index.content.decode()
    for model in QUEUE_MODELS:
        assert client.get(reverse(f"admin:django_q_{model}_changelist")).status_code == 403
    before = row(engine_schedule)
    assert client.post(change_url(engine_schedule), form_data(engine_schedule, cron="* * * * *")).status_code == 403
    assert row(engine_schedule) == before


def test_a_system_admin_sees_the_task_queue_read_only(sa_client):
    failure = Failure.objects.create(id="f" * 32, name="run-7", func="scheduling.tasks.execute_run", started="2027-01-04T06:00:00Z",
                                     stopped="2027-01-04T06:00:01Z", success=False, result="Traceback ...")
    index = sa_client.get(reverse("admin:index"))
    queue = next(app for app in index.context["app_list"] if app["app_label"] == "django_q")
    names = {m["object_name"]: m for m in queue["models"]}
    assert {"Schedule", "Success", "Failure"} <= set(names)
    assert names["Failure"]["perms"] == {"add": False, "change": False, "delete": False, "view": True}
    page = sa_client.get(reverse("admin:django_q_failure_change", args=[failure.pk]))
    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert sa_client.post(reverse("admin:django_q_failure_delete", args=[failure.pk]), {"post": "yes"}).status_code == 403
    assert Failure.objects.filter(pk=failure.pk).exists()
