"""Malformed data the other tests do not already refuse: a duplicate calendar day.

Already covered elsewhere (not repeated here): attendance outside enrolment, a max score of
0, an unknown attendance status and a duplicate attendance day are refused by validation and
by database constraints in tests/students/test_constraints.py, and as admin form errors in
tests/test_admin_forms.py."""
from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from students.models import CalendarDay
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_a_duplicate_calendar_day_is_refused_by_validation_and_by_the_database(school):
    f.CalendarDayFactory(school=school, date=dt.date(2026, 11, 2))
    duplicate = CalendarDay(school=school, date=dt.date(2026, 11, 2), is_instructional=False, note="snow day")
    with pytest.raises(ValidationError) as info:
        duplicate.full_clean()
    assert "already exists" in str(info.value)
    with pytest.raises(IntegrityError), transaction.atomic():
        CalendarDay.objects.bulk_create([duplicate])  # bulk paths skip validation: the constraint holds
    assert CalendarDay.objects.filter(school=school, date=dt.date(2026, 11, 2)).count() == 1


def test_a_duplicate_calendar_day_is_a_form_error_in_the_admin(client, system_admin, school):
    f.CalendarDayFactory(school=school, date=dt.date(2026, 11, 2))
    client.force_login(system_admin)
    response = client.post("/admin/students/calendarday/add/",
                           {"school": school.pk, "date": "2026-11-02", "is_instructional": "on", "note": ""})
    assert response.status_code == 200 and b"errornote" in response.content
    assert CalendarDay.objects.count() == 1
