"""iep-review-reminders never drops a team member silently: an inactive member (or case
manager) receives nothing, and the reminder names them for the case manager to reassign."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from iep.models import IEPTeamMember
from notifications.models import Notification
from notifications.rendering import render
from scheduling.models import JobRun
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

SLUG = "iep-review-reminders"
REVIEWED = dt.date(2026, 3, 1)
DUE = REVIEWED + dt.timedelta(days=365)  # 2027-03-01


def run_on(district, day: dt.date) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, 7)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


@pytest.fixture
def iep(district, school):
    manager = f.StaffFactory(username="cm", first_name="Carla", last_name="Mendez", roles=[Role.CASE_MANAGER], schools=[school])
    iep = f.IEPFactory(student=f.StudentFactory(school=school, first_name="Ana", last_name="Ruiz"),
                       last_annual_review=REVIEWED, case_manager=manager)
    active = f.StaffFactory(username="teach", roles=[Role.TEACHER], schools=[school])
    gone = f.StaffFactory(username="gone", first_name="Tom", last_name="Hale", roles=[Role.TEACHER], schools=[school],
                          is_active=False)
    f.IEPTeamMemberFactory(iep=iep, user=active, role=IEPTeamMember.TeamRole.GENERAL_EDUCATION_TEACHER)
    f.IEPTeamMemberFactory(iep=iep, user=gone, role=IEPTeamMember.TeamRole.SPECIAL_EDUCATION_TEACHER)
    return iep


def _reminders(iep, offset):
    return {n.recipient.username: n for n in Notification.objects.filter(
        dedupe_key__startswith=f"iep-reminder:{iep.id}:{DUE.isoformat()}:{offset}:").select_related("recipient")}


def test_an_inactive_team_member_is_named_in_the_case_managers_reminder(district, iep):
    run_on(district, DUE - dt.timedelta(days=30))
    sent = _reminders(iep, 30)
    assert set(sent) == {"cm", "teach"}  # the inactive member is not told...
    named = [{"name": "Tom Hale", "role": "Special-education teacher"}]
    assert sent["cm"].context["inactive_members"] == named  # ...but named, to reassign
    text = render(sent["cm"]).text
    assert "Reassign" in text and "Tom Hale (Special-education teacher)" in text


def test_the_reminder_names_no_one_when_the_team_is_active(district, iep):
    IEPTeamMember.objects.filter(user__username="gone").delete()
    run_on(district, DUE - dt.timedelta(days=30))
    cm = _reminders(iep, 30)["cm"]
    assert cm.context["inactive_members"] == [] and "Reassign" not in render(cm).text


def test_an_inactive_case_manager_is_named_to_the_principal(district, school, iep):
    f.StaffFactory(username="princ", roles=[Role.PRINCIPAL], schools=[school])
    iep.case_manager.is_active = False
    iep.case_manager.save(update_fields=["is_active"])
    run_on(district, DUE - dt.timedelta(days=60))  # 60 days: case manager and principal
    sent = _reminders(iep, 60)
    assert set(sent) == {"princ"}
    assert [m["name"] for m in sent["princ"].context["inactive_members"]] == ["Carla Mendez", "Tom Hale"]
    assert "Carla Mendez (Case manager)" in render(sent["princ"]).text


def test_spanish_reminder_names_the_inactive_member(district, iep):
    run_on(district, DUE - dt.timedelta(days=30))
    cm = _reminders(iep, 30)["cm"]
    cm.language = "es"  # the Spanish template renders the same list
    text = render(cm).text
    assert "Reasignar" in text and "Tom Hale (Special-education teacher)" in text
