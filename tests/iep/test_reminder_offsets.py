import datetime as dt

import pytest

from iep.selectors import audience_for, due_offset, reminders_due
from tests import factories as f

OFFSETS = [90, 60, 30, 14, 7, 0]


@pytest.mark.parametrize(
    ("days", "last_sent", "expected"),
    [
        (91, None, None),  # not yet
        (90, None, 90),
        (89, 90, None),  # already sent
        (60, 90, 60),
        (45, None, 60),  # 90 and 60 missed: only the most recent crossed one goes
        (29, 90, 30),  # the 60-day run was missed: 30 goes, 60 never will
        (29, 30, None),
        (50, 30, None),  # an earlier reminder never follows a later one
        (0, 7, 0),
        (-3, 7, 0),  # the meeting-day run was missed: sent late, once
        (-4, 0, None),
    ],
)
def test_due_offset(days, last_sent, expected):
    assert due_offset(days_until_due=days, offsets=OFFSETS, last_sent=last_sent) == expected


def test_audiences_follow_the_timeline():
    assert audience_for(90) == ("coordinator",)
    assert audience_for(60) == ("case-manager", "principal")
    assert audience_for(30) == audience_for(14) == audience_for(0) == ("team",)
    assert audience_for(45) == ("case-manager", "principal")  # a district's own offset


@pytest.mark.django_db
def test_reminders_due_uses_365_days_across_a_leap_year(district, school):
    # Last review 2027-03-01 -> due 2028-02-29 (leap year), not 2028-03-01.
    iep = f.IEPFactory(student=f.StudentFactory(school=school), last_annual_review=dt.date(2027, 3, 1))
    due, overdue = reminders_due(district=district, today=dt.date(2028, 2, 29) - dt.timedelta(days=90))
    assert [(r.iep_id, r.offset, r.days_until_due) for r in due] == [(iep.id, 90, 90)]
    due, overdue = reminders_due(district=district, today=dt.date(2028, 3, 1))
    assert [r.iep_id for r in overdue] == [iep.id]
