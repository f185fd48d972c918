"""The last reevaluation's date is checked where it is typed (the admin form): the 3-year due
date (34 CFR 300.303(b)(2)) follows from it, so a typing error would move a legal deadline."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine

from iep.models import IEP
from tests import factories as f
from tests.test_admin_forms import errors, post_add

pytestmark = pytest.mark.django_db

# 22:30 on 2026-11-19 in New York is already 2026-11-20 in UTC: the district's date is what counts.
EVENING = dt.datetime(2026, 11, 19, 22, 30, tzinfo=zoneinfo.ZoneInfo("America/New_York"))


@pytest.fixture
def form(client, sped_coordinator, school):
    client.force_login(sped_coordinator)
    student = f.StudentFactory(school=school)
    base = {"student": student.pk, "status": "active", "eligibility_date": "2023-05-01", "last_annual_review": "2026-05-01"}
    return lambda **extra: post_add(client, IEP, {**base, **extra})


@pytest.mark.parametrize(
    ("evaluated", "error"),
    [
        ("2023-04-30", "A reevaluation cannot precede the eligibility date."),  # the day before eligibility
        ("2026-11-20", "Record a reevaluation once it has taken place (the date is in the future)."),  # tomorrow, locally
    ],
)
def test_a_reevaluation_before_eligibility_or_still_to_come_is_refused(form, evaluated, error):
    with time_machine.travel(EVENING, tick=False):
        response = form(last_reevaluation=evaluated)
    assert errors(response)["last_reevaluation"] == [error]
    assert not IEP.objects.exists()


@pytest.mark.parametrize(("evaluated", "due"), [("2023-05-01", "2026-05-01"), ("2026-11-19", "2029-11-19"), ("", "2026-05-01")])
def test_a_reevaluation_on_eligibility_or_today_is_kept_and_sets_the_due_date(form, evaluated, due):
    with time_machine.travel(EVENING, tick=False):
        response = form(last_reevaluation=evaluated)
    assert response.status_code == 302
    iep = IEP.objects.get()
    assert (iep.last_reevaluation, iep.reevaluation_due) == (
        dt.date.fromisoformat(evaluated) if evaluated else None, dt.date.fromisoformat(due))
