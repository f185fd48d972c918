""""May this guardian be told about the student on date D" is one rule on the model
(``GuardianLink.notice_bar_on``); the set-based enqueue applies the same rule to the facts it
reads for a whole chunk. Both are asked the same cases here and must give the same answer."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from notifications.models import Notification, Status
from notifications.services import NotificationRequest, Reason, notifications_enqueue
from students.models import GuardianLink, age_on

# 12:00 in New York on 2026-02-28 (a non-leap year) and on 2026-03-01.
FEB_28 = dt.datetime(2026, 2, 28, 17, 0, tzinfo=dt.UTC)
MAR_1 = dt.datetime(2026, 3, 1, 17, 0, tzinfo=dt.UTC)

CASES = [
    # (when, birth date, revoked, consents, dependent, bar)
    (FEB_28, dt.date(2011, 3, 15), False, False, False, None),  # 15: told
    (FEB_28, dt.date(2011, 3, 15), True, False, False, GuardianLink.REVOKED),  # court order
    (FEB_28, dt.date(2008, 3, 1), False, False, False, None),  # turns 18 tomorrow
    (FEB_28, dt.date(2008, 2, 28), False, False, False, GuardianLink.ADULT_NO_CONSENT),  # 18 today
    (FEB_28, dt.date(2008, 2, 28), False, True, False, None),  # 18, consents
    (FEB_28, dt.date(2008, 2, 28), False, False, True, None),  # 18, the guardian's tax dependent
    (FEB_28, dt.date(2008, 2, 28), True, True, True, GuardianLink.REVOKED),  # revocation wins over consent
    (FEB_28, dt.date(2008, 2, 29), False, False, False, None),  # born on 29 February: still 17 on the 28th
    (MAR_1, dt.date(2008, 2, 29), False, False, False, GuardianLink.ADULT_NO_CONSENT),  # ... 18 on 1 March
]


@pytest.mark.parametrize("when, birth_date, revoked, consents, dependent, bar", CASES)
def test_the_model_and_the_enqueue_agree_on_who_may_be_told(family, when, birth_date, revoked, consents, dependent, bar):
    student, link = family["student"], family["link"]
    student.birth_date, student.consents_to_guardian_access = birth_date, consents
    student.save()
    link.access_revoked, link.is_dependent_claim = revoked, dependent
    link.save()
    today = when.astimezone(student.school.district.zone).date()

    link = GuardianLink.objects.select_related("student").get(pk=link.pk)
    assert link.notice_bar_on(today) == bar
    assert link.may_be_told_on(today) is (bar is None)

    with time_machine.travel(when, tick=False):
        notifications_enqueue([NotificationRequest(
            recipient_id=family["guardian"].pk, category="assignment-reminder", channel="email",
            template="assignment-reminder", context={}, dedupe_key="k", student_id=student.pk,
        )])
    n = Notification.objects.get()
    assert (n.status, n.status_reason) == ((Status.PENDING, "") if bar is None else (Status.SUPPRESSED, bar))


def test_the_enqueue_reasons_are_the_models():
    assert (Reason.GUARDIAN_REVOKED, Reason.ADULT_NO_CONSENT) == (GuardianLink.REVOKED, GuardianLink.ADULT_NO_CONSENT)


def test_age_counts_whole_years_to_the_day():
    assert age_on(dt.date(2009, 2, 28), dt.date(2027, 2, 27)) == 17
    assert age_on(dt.date(2009, 2, 28), dt.date(2027, 2, 28)) == 18
    assert age_on(dt.date(2008, 2, 29), dt.date(2026, 2, 28)) == 17
    assert age_on(dt.date(2008, 2, 29), dt.date(2026, 3, 1)) == 18
