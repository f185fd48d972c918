"""IEP meeting minutes: a meeting is recorded as held only with minutes (model, service,
admin inline), the case manager is reminded 2 school days after a meeting without them
(the school's calendar), and the compliance report counts meetings without minutes."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core.exceptions import ValidationError

from iep import compliance, services
from iep.models import IEPMeeting, IEPMeetingMinutes
from notifications.models import Notification
from scheduling.models import JobRun
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

ATTENDEES = [{"name": "Carla Mendez", "role": "case manager"}, {"name": "Rosa Ruiz", "role": "parent"}]
FRIDAY = dt.date(2026, 10, 2)


@pytest.fixture
def meeting(district, school):
    manager = f.StaffFactory(username="cm", roles=[Role.CASE_MANAGER], schools=[school])
    f.StaffFactory(username="coord", roles=[Role.SPED_COORDINATOR], schools=[school])
    iep = f.IEPFactory(student=f.StudentFactory(school=school, first_name="Ana", last_name="Ruiz"), case_manager=manager)
    # Notice already recorded: these tests are about the minutes, not the notice.
    return f.IEPMeetingFactory(iep=iep, status="scheduled", scheduled_for=local_slot(district, 2026, 10, 2, 15),
                               guardian_notice_sent_on=dt.date(2026, 9, 15))


def test_held_requires_minutes_in_clean(meeting):
    meeting.status = IEPMeeting.Status.HELD
    with pytest.raises(ValidationError) as e:
        meeting.full_clean()
    assert "status" in e.value.message_dict
    IEPMeetingMinutes.objects.create(meeting=meeting, attendees=ATTENDEES, decisions="Keep speech 120 min/month.",
                                     author=meeting.iep.case_manager)
    meeting.full_clean()  # with minutes it may be held


def test_a_row_already_held_stays_editable(meeting):
    IEPMeeting.objects.filter(pk=meeting.pk).update(status="held")  # held before minutes existed
    legacy = IEPMeeting.objects.get(pk=meeting.pk)
    legacy.location = "Room 4"
    legacy.full_clean()


def test_minutes_need_attendees_with_roles_and_decisions(meeting):
    for attendees, decisions in (([], "x"), ([{"name": "A"}], "x"), (ATTENDEES, "  ")):
        with pytest.raises(ValidationError):
            IEPMeetingMinutes(meeting=meeting, attendees=attendees, decisions=decisions, author=meeting.iep.case_manager).full_clean()


def test_record_held_writes_both_or_neither(meeting):
    author = meeting.iep.case_manager
    with pytest.raises(ValidationError):
        services.iep_meeting_record_held(meeting=meeting, attendees=[], decisions="x", next_steps="", author=author)
    meeting.refresh_from_db()
    assert meeting.status == "scheduled" and not IEPMeetingMinutes.objects.exists()
    written = dt.datetime(2026, 10, 2, 20, tzinfo=dt.UTC)
    minutes = services.iep_meeting_record_held(meeting=meeting, attendees=ATTENDEES, decisions="Add OT.",
                                               next_steps="Draft goals by 10/9.", author=author, written_at=written)
    meeting.refresh_from_db()
    assert meeting.status == "held" and meeting.minutes == minutes and minutes.written_at == written


def _admin_post(client, meeting, status, minutes: dict | None, author_id: int):
    data = {
        "iep": meeting.iep_id, "purpose": meeting.purpose, "status": status,
        "scheduled_for_0": "2026-10-02", "scheduled_for_1": "15:00:00", "location": "Room 4",
        "minutes-TOTAL_FORMS": "1" if minutes else "0", "minutes-INITIAL_FORMS": "0",
        "minutes-MIN_NUM_FORMS": "0", "minutes-MAX_NUM_FORMS": "1",
    }
    if minutes:
        data.update({f"minutes-0-{k}": v for k, v in minutes.items()})
        data.update({"minutes-0-author": author_id, "minutes-0-meeting": meeting.pk,
                     "minutes-0-written_at_0": "2026-10-02", "minutes-0-written_at_1": "17:00:00"})
    return client.post(f"/admin/iep/iepmeeting/{meeting.pk}/change/", data)


def test_admin_records_held_only_with_minutes_inline(admin_client, meeting):
    author = meeting.iep.case_manager.pk
    page = _admin_post(admin_client, meeting, "held", None, author)
    assert page.status_code == 200 and "only with its minutes" in page.content.decode()
    meeting.refresh_from_db()
    assert meeting.status == "scheduled"
    page = _admin_post(admin_client, meeting, "held", {"attendees": json.dumps(ATTENDEES), "decisions": "Add OT.",
                                                       "next_steps": ""}, author)
    assert page.status_code == 302, page.content.decode()[:2000]
    meeting.refresh_from_db()
    assert meeting.status == "held" and meeting.minutes.attendees == ATTENDEES


def run_on(district, day: dt.date) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, 7)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot("iep-review-reminders", district, slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def reminded() -> set[str]:
    return set(Notification.objects.filter(dedupe_key__startswith="iep-minutes-missing:").values_list("recipient__username", flat=True))


def test_case_manager_reminded_two_school_days_after_by_the_calendar(district, school, meeting):
    # Friday's meeting; Monday is a holiday: the 2nd school day after it is Wednesday.
    for day, instructional in ((5, False), (6, True), (7, True), (8, True)):
        f.CalendarDayFactory(school=school, date=dt.date(2026, 10, day), is_instructional=instructional)
    run_on(district, dt.date(2026, 10, 6))
    assert reminded() == set()
    assert run_on(district, dt.date(2026, 10, 7)).result["minutes_missing"] == 1
    assert reminded() == {"cm"}
    count = Notification.objects.count()
    run_on(district, dt.date(2026, 10, 8))  # once per meeting
    assert Notification.objects.filter(dedupe_key__startswith="iep-minutes-missing:").count() == 1
    assert Notification.objects.count() == count


def test_without_a_calendar_school_days_are_weekdays(district, meeting):
    run_on(district, dt.date(2026, 10, 5))  # Monday: one weekday after Friday
    assert reminded() == set()
    run_on(district, dt.date(2026, 10, 6))
    assert reminded() == {"cm"}


def test_no_reminder_once_minutes_are_written(district, meeting):
    services.iep_meeting_record_held(meeting=meeting, attendees=ATTENDEES, decisions="Add OT.", next_steps="",
                                     author=meeting.iep.case_manager)
    assert run_on(district, dt.date(2026, 10, 9)).result["minutes_missing"] == 0
    assert reminded() == set()


def test_compliance_counts_meetings_of_the_month_without_minutes(district, meeting):
    iep = meeting.iep
    with_minutes = f.IEPMeetingFactory(iep=iep, purpose="amendment", status="scheduled",
                                       scheduled_for=local_slot(district, 2026, 10, 20, 9))
    services.iep_meeting_record_held(meeting=with_minutes, attendees=ATTENDEES, decisions="x", next_steps="", author=iep.case_manager)
    f.IEPMeetingFactory(iep=iep, purpose="reevaluation", status="cancelled", scheduled_for=local_slot(district, 2026, 10, 21, 9))
    f.IEPMeetingFactory(iep=iep, purpose="reevaluation", status="held", scheduled_for=local_slot(district, 2026, 10, 31, 23, 30))
    f.IEPMeetingFactory(iep=iep, purpose="amendment", status="held", scheduled_for=local_slot(district, 2026, 11, 1, 0, 30))
    # Friday's (no minutes) and the held one late on the 31st (local) count; not the cancelled, not November's.
    assert compliance.meetings_without_minutes(district=district, first=dt.date(2026, 10, 1), last=dt.date(2026, 10, 31)) == 2
