"""The IEP meeting notice beside the happy path: the local-date boundary of the lead time in
the evening (UTC already the next day), a meeting moved after its notice went out, a student
of 18 with no account and no one else who may be told, and another district's run."""
from __future__ import annotations

import datetime as dt

import pytest

from iep.models import IEPMeeting
from notifications.models import Notification
from notifications.rendering import render_email
from tests import factories as f
from tests.jobs.slot_runs import local_slot
from tests.jobs.test_iep_meeting_notice import TODAY, family, notices, run_on  # noqa: F401 (fixture)


def meeting_at(district, family, days: int, hour: int, minute: int = 0) -> IEPMeeting:  # noqa: F811
    day = TODAY + dt.timedelta(days=days)
    return f.IEPMeetingFactory(iep=family["iep"], status="scheduled", location="Room 12",
                               scheduled_for=local_slot(district, day.year, day.month, day.day, hour, minute))


@pytest.mark.parametrize(("days", "hour", "late"), [
    (9, 21, True),   # 21:00 New York on day 9 is day 10 in UTC: still 9 days in the district
    (10, 0, False),  # 00:00 local on day 10: exactly the lead time
    (10, 23, False),
])
def test_the_lead_time_counts_the_districts_days_not_utcs(district, family, days, hour, late):  # noqa: F811
    meeting = meeting_at(district, family, days, hour)
    run_on(district, TODAY)
    meeting.refresh_from_db()
    assert meeting.guardian_notice_sent_on == TODAY and meeting.notice_flagged_late is late


def test_a_meeting_moved_after_its_notice_is_noticed_again_with_the_new_date(district, family):  # noqa: F811
    """34 CFR 300.322(b): the notice states the time and place. A meeting moved to another
    day after the family was told must be told again; the family's copy of the old date is
    not a notice of the new one."""
    meeting = meeting_at(district, family, 20, 15)
    run_on(district, TODAY)
    first = Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:").count()
    assert first == 4
    new_day = TODAY + dt.timedelta(days=25)
    meeting.refresh_from_db()  # as the admin edits it: the row as the run left it
    meeting.scheduled_for = local_slot(district, new_day.year, new_day.month, new_day.day, 9, 0)
    meeting.save()
    tomorrow = TODAY + dt.timedelta(days=1)
    run_on(district, tomorrow)
    meeting.refresh_from_db()
    rows = Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:")
    assert rows.count() == 8
    again = rows.filter(dedupe_key__contains=":moved-20261030T0900-")
    assert {(r.context["meeting_date"], r.context["meeting_time"]) for r in again} == {(new_day.isoformat(), "09:00")}
    assert set(again.values_list("recipient__username", "channel")) == {
        ("mama", "email"), ("mama", "push"), ("papa", "email"), ("papa", "push")}
    assert (meeting.guardian_notice_sent_on, meeting.guardian_notice_for) == (tomorrow, meeting.scheduled_for)
    # Told once of the new time: the next run adds nothing.
    run_on(district, tomorrow + dt.timedelta(days=1))
    assert rows.count() == 8


def test_a_meeting_moved_too_close_is_noticed_again_and_flagged_late(district, family):  # noqa: F811
    meeting = meeting_at(district, family, 20, 15)
    run_on(district, TODAY)
    meeting.refresh_from_db()
    assert meeting.notice_flagged_late is False
    soon = TODAY + dt.timedelta(days=5)
    meeting.scheduled_for = local_slot(district, soon.year, soon.month, soon.day, 15, 0)
    meeting.save()
    run = run_on(district, TODAY + dt.timedelta(days=1))
    meeting.refresh_from_db()
    assert run.result["meeting_notices_sent"] == 1 and meeting.notice_flagged_late is True
    assert set(Notification.objects.filter(dedupe_key__startswith=f"iep-notice-late:{meeting.id}:").values_list(
        "recipient__username", flat=True)) == {"cm", "coord"}


def test_a_meeting_moved_to_another_room_is_noticed_again_with_the_new_place(district, family):  # noqa: F811
    meeting = meeting_at(district, family, 20, 15)
    run_on(district, TODAY)
    meeting.refresh_from_db()
    meeting.location = "Library, Lincoln High"
    meeting.save()
    run_on(district, TODAY + dt.timedelta(days=1))
    rows = Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:moved-")
    assert rows.count() == 4 and {r.context["location"] for r in rows} == {"Library, Lincoln High"}
    # Back to the first room: told again (the family's last notice named the library).
    meeting.refresh_from_db()
    meeting.location = "Room 12"
    meeting.save()
    run_on(district, TODAY + dt.timedelta(days=2))
    meeting.refresh_from_db()
    assert Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:moved-").count() == 8
    assert (meeting.guardian_notice_location, meeting.guardian_notice_sent_on) == ("Room 12", TODAY + dt.timedelta(days=2))


def test_an_unmoved_meeting_is_noticed_once_even_after_an_edit_of_something_else(district, family):  # noqa: F811
    meeting = meeting_at(district, family, 20, 15)
    run_on(district, TODAY)
    meeting.refresh_from_db()
    assert meeting.guardian_notice_for == meeting.scheduled_for
    meeting.purpose = IEPMeeting.Purpose.AMENDMENT
    meeting.save()
    run_on(district, TODAY + dt.timedelta(days=1))
    assert Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:").count() == 4




def test_a_student_of_eighteen_without_an_account_and_no_one_to_tell_is_flagged_at_once(district, family):  # noqa: F811
    """Rights transferred (300.520), the student has no account and no parent may be told:
    nobody can receive the notice by the system, so the case manager and the coordinator
    must hear of it now (to deliver it by hand), not at the 7-day confirmation."""
    student = family["student"]
    student.birth_date = dt.date(2008, 10, 5)  # 18 on TODAY
    student.user = None
    student.save()
    meeting = meeting_at(district, family, 20, 15)
    assert run_on(district, TODAY).result["meeting_notices_nobody"] == 1
    assert notices(meeting) == {}
    alerts = Notification.objects.filter(dedupe_key__startswith=f"iep-notice-nobody:{meeting.id}:")
    assert set(alerts.values_list("recipient__username", "priority")) == {("cm", "high"), ("coord", "high")}
    text = render_email(alerts.get(recipient=family["manager"])).text
    assert "Ana Ruiz" in text and "2026-10-25 at 15:00" in text and "at least 10 days" in text
    meeting.refresh_from_db()
    assert meeting.guardian_notice_sent_on is None  # nothing was sent: the date is not recorded
    # Told once: the next day's run adds nothing.
    count = Notification.objects.count()
    run_on(district, TODAY + dt.timedelta(days=1))
    assert Notification.objects.count() == count


def test_a_meeting_with_someone_to_tell_raises_no_nobody_alert(district, family):  # noqa: F811
    meeting_at(district, family, 20, 15)
    assert run_on(district, TODAY).result["meeting_notices_nobody"] == 0
    assert not Notification.objects.filter(dedupe_key__startswith="iep-notice-nobody:").exists()


def test_another_districts_run_leaves_the_meeting_alone(district, family):  # noqa: F811
    other = f.DistrictFactory(name="Hillside", time_zone="America/Chicago")
    f.SchoolFactory(district=other, name="Hillside High")
    meeting = meeting_at(district, family, 20, 15)
    run_on(other, TODAY)
    meeting.refresh_from_db()
    assert meeting.guardian_notice_sent_on is None and notices(meeting) == {}


def test_a_notice_no_message_of_which_can_go_is_not_recorded_and_staff_are_told(district, family):  # noqa: F811
    """Both guardians may be told but have no email address and no device: every message is
    suppressed, so nobody was told. The meeting keeps no notice date (it would say the
    family was noticed) and the case manager and coordinator are told at once."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk__in=[family["mother"].pk, family["father"].pk]).update(email="")
    meeting = meeting_at(district, family, 20, 15)
    run = run_on(district, TODAY)
    meeting.refresh_from_db()
    assert meeting.guardian_notice_sent_on is None
    assert (run.result["meeting_notices_sent"], run.result["meeting_notices_nobody"]) == (0, 1)
    assert set(Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:").values_list(
        "status", flat=True)) == {"suppressed"}
    assert set(Notification.objects.filter(dedupe_key__startswith=f"iep-notice-nobody:{meeting.id}:").values_list(
        "recipient__username", flat=True)) == {"cm", "coord"}
    # Told once: the next run adds nothing and still records no notice (the staff's hand
    # delivery is the notice now; the 7-day confirmation flags the meeting if none is recorded).
    count = Notification.objects.count()
    run_on(district, TODAY + dt.timedelta(days=1))
    meeting.refresh_from_db()
    assert Notification.objects.count() == count and meeting.guardian_notice_sent_on is None


def test_one_guardian_reachable_is_a_notice_given(district, family):  # noqa: F811
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=family["mother"].pk).update(email="")
    meeting = meeting_at(district, family, 20, 15)
    assert run_on(district, TODAY).result["meeting_notices_nobody"] == 0
    meeting.refresh_from_db()
    assert meeting.guardian_notice_sent_on == TODAY
