"""Quiet hours: deferred to the next local window start, DST-correct, never dropped."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine

from notifications import quiet_hours
from notifications.delivery import drain_batch
from notifications.models import Notification, Status
from notifications.services import NotificationRequest, notifications_enqueue

NY = zoneinfo.ZoneInfo("America/New_York")
UTC = dt.UTC
SEVEN, NINE_PM = dt.time(7), dt.time(21)


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    "now, expected",
    [
        (at(2026, 10, 14, 16, 0), at(2026, 10, 14, 16, 0)),  # 12:00 EDT: inside, now
        (at(2026, 10, 15, 1, 30), at(2026, 10, 15, 11, 0)),  # 21:30 EDT: next morning 07:00 EDT
        (at(2026, 10, 15, 10, 59), at(2026, 10, 15, 11, 0)),  # 06:59 EDT: same morning
        # The fall-back night: 22:30 EDT on Oct 31 waits for 07:00 EST on Nov 1 = 12:00 UTC.
        (at(2026, 11, 1, 2, 30), at(2026, 11, 1, 12, 0)),
        # 06:30 EST on Nov 1 (11:30 UTC) is still quiet; yesterday's offset would call it 07:30.
        (at(2026, 11, 1, 11, 30), at(2026, 11, 1, 12, 0)),
        # Spring forward (2027-03-14): 23:00 EST on the 13th waits for 07:00 EDT = 11:00 UTC.
        (at(2027, 3, 14, 4, 0), at(2027, 3, 14, 11, 0)),
    ],
)
def test_next_window_start(now, expected):
    assert quiet_hours.next_window_start(now, NY, SEVEN, NINE_PM) == expected


def test_a_window_start_in_a_dst_gap_opens_after_the_jump():
    # A district whose window opens at 02:30 on 2027-03-14 (no such wall time): 03:30 EDT.
    got = quiet_hours.next_window_start(at(2027, 3, 14, 5, 0), NY, dt.time(2, 30), NINE_PM)
    assert got == at(2027, 3, 14, 7, 30)


def _request(user, category="assignment-reminder", key="k", student=None):
    ctx = {"headline": "Closed", "message": "Snow day"} if category == "emergency" else {
        "assignment_title": "Essay", "course_name": "English", "due_date": "Nov 2"}
    return NotificationRequest(recipient_id=user.pk, category=category, channel="email",
                               template="emergency" if category == "emergency" else "assignment-reminder",
                               context=ctx, dedupe_key=key, student_id=student.pk if student else None)


def test_family_message_across_the_dst_change_is_deferred_then_sent(family, settings):
    # Enqueued at 22:30 EDT on Oct 31; the clocks fall back at 02:00.
    with time_machine.travel(at(2026, 11, 1, 2, 30), tick=False):
        summary = notifications_enqueue([_request(family["guardian"], student=family["student"])])
    assert summary.deferred == 1
    n = Notification.objects.get()
    assert (n.status, n.send_after) == (Status.DEFERRED, at(2026, 11, 1, 12, 0))
    assert n.status_reason == "quiet hours until 2026-11-01 07:00 EST"

    # 06:59 EST: still held. 07:00 EST: claimed and sent, not dropped.
    assert drain_batch(now=at(2026, 11, 1, 11, 59)).claimed == 0
    summary = drain_batch(now=at(2026, 11, 1, 12, 0))
    assert summary.sent == 1
    assert Notification.objects.get().status == Status.SENT


def test_emergencies_and_staff_are_not_held(family, counselor):
    with time_machine.travel(at(2026, 11, 1, 3, 0), tick=False):  # 23:00 EDT
        notifications_enqueue([
            _request(family["guardian"], category="emergency", key="e", student=family["student"]),
            _request(counselor, key="c", student=family["student"]),
            _request(family["student_user"], key="s", student=family["student"]),
        ])
    status = dict(Notification.objects.values_list("dedupe_key", "status"))
    assert status == {"e": Status.PENDING, "c": Status.PENDING, "s": Status.DEFERRED}


def test_a_retry_of_a_family_message_is_held_to_the_window_too(family, smtp_server):
    smtp_server.refuse["ana@example.org"] = "451 4.3.0 try again later"
    with time_machine.travel(at(2026, 11, 1, 0, 50), tick=False):  # 20:50 EDT: inside
        notifications_enqueue([_request(family["guardian"], student=family["student"])])
    drain_batch(now=at(2026, 11, 1, 0, 59))  # fails at 20:59; backoff would be 21:00
    n = Notification.objects.get()
    assert n.status == Status.PENDING and n.attempts == 1
    assert n.send_after == at(2026, 11, 1, 12, 0)  # next window, not 21:00
