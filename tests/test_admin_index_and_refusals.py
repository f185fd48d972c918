"""What staff meet first in admin: one "Scheduling" section, English names, no queue internals
for staff, and a refused page in the admin's look with the user's role."""
from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db


def sections(response) -> dict[str, list[str]]:
    """The index's sections as {section name: [entry names]}, as the page lists them."""
    return {app["name"]: [m["name"] for m in app["models"]] for app in response.context["app_list"]}


def test_system_admin_sees_one_scheduling_section_with_the_dashboard_first(client, system_admin):
    client.force_login(system_admin)
    response = client.get(reverse("admin:index"))
    found = sections(response)
    assert "Scheduled jobs" not in found  # the old second section
    scheduling = found["Scheduling"]
    assert scheduling[0] == "Scheduled jobs dashboard"
    assert {"Reports", "Job runs", "Job schedules", "Alert deliveries"} <= set(scheduling)
    html = response.content.decode()
    assert html.count('id="scheduling-scheduledjobsdashboard"') == 1  # one entry, inside the section
    assert 'id="scheduled-jobs-link"' not in html  # no box of its own above the list
    # The section's own page lists the dashboard too.
    assert "Scheduled jobs dashboard" in sections(client.get(reverse("admin:app_list", args=["scheduling"])))["Scheduling"]


def test_principal_sees_reports_under_scheduling_and_no_dashboard_or_queue(client, principal):
    client.force_login(principal)
    found = sections(client.get(reverse("admin:index")))
    assert found["Scheduling"] == ["Reports"]
    assert "Task queue" not in found


@pytest.mark.parametrize("persona", ["district_admin", "principal", "counselor", "teacher"])
def test_staff_never_see_the_task_queue(client, request, persona):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    assert "Task queue" not in sections(client.get(reverse("admin:index")))
    response = client.get(reverse("admin:django_q_schedule_changelist"))
    assert response.status_code == 403


def test_every_model_name_staff_see_reads_as_english():
    """Django derives a name from the class when none is given: "Alert deliverys", "Iep meetings"."""
    wrong = []
    for model in admin.site._registry:
        opts = model._meta
        if opts.app_label not in {"students", "interventions", "iep", "notifications", "scheduling", "skillcore"}:
            continue
        for name in (str(opts.verbose_name), str(opts.verbose_name_plural)):
            if re.search(r"\b(iep|ieps)\b|[^aeiou]ys\b|entrys\b|\bid\b", name):
                wrong.append(f"{opts.label}: {name}")
        for field in opts.get_fields():
            label = str(getattr(field, "verbose_name", ""))
            if not field.auto_created and re.search(r"\biep\b", label):
                wrong.append(f"{opts.label}.{field.name}: {label}")
    assert wrong == []
    assert str(apps.get_model("scheduling", "AlertDelivery")._meta.verbose_name_plural) == "alert deliveries"
    assert str(apps.get_model("iep", "IEPMeeting")._meta.verbose_name_plural) == "IEP meetings"
    assert str(apps.get_model("students", "Student")._meta.get_field("local_id").verbose_name) == "student number"


def test_index_shows_the_corrected_names(client, system_admin):
    client.force_login(system_admin)
    html = client.get(reverse("admin:index")).content.decode()
    for right in ("Alert deliveries", "IEP meetings", "IEP services", "IEP team members"):
        assert right in html
    for wrong in ("deliverys", "Iep meetings", "Iep services"):
        assert wrong not in html


def test_teacher_opening_reports_gets_the_admin_styled_403(client, teacher):
    client.force_login(teacher)
    response = client.get(reverse("admin:scheduling_report_changelist"))
    assert response.status_code == 403
    html = response.content.decode()
    assert "SkillCore district administration" in html  # the admin's header, not a bare page
    assert "403 · Not allowed" in html
    assert "Reports are not part of your role (Teacher)" in html
    assert f'href="{reverse("admin:index")}"' in html
    assert "Log out" in html or "logout" in html


def test_counselor_refused_a_model_page_gets_the_styled_403(client, counselor):
    client.force_login(counselor)
    response = client.get(reverse("admin:students_staffprofile_add"))
    assert response.status_code == 403
    html = response.content.decode()
    assert "403 · Not allowed" in html and "(Counselor)" in html
    assert "SkillCore district administration" in html


def test_the_dashboards_own_403_is_unchanged(client, counselor):
    client.force_login(counselor)
    response = client.get(reverse("admin:scheduled_jobs"))
    assert response.status_code == 403
    assert "The scheduled-jobs dashboard is for system administrators" in response.content.decode()


def test_anonymous_visitors_still_go_to_the_login_page(client):
    response = client.get(reverse("admin:scheduling_report_changelist"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
