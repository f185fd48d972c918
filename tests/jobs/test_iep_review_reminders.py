"""iep-review-reminders: offsets and audiences, catch-up after a missed day, meetings,
guardian-notice check, overdue once a day, bookkeeping, idempotency, query counts, CLI."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from iep.models import IEP, IEPMeeting, IEPTeamMember
from notifications.models import Notification
from scheduling.models import JobRun
from skillcore.models import AccessLog
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot, statements

SLUG = "iep-review-reminders"
REVIEWED = dt.date(2026, 3, 1)
DUE = REVIEWED + dt.timedelta(days=365)  # 2027-03-01


@pytest.fixture
def team(district, school):
    coordinator = f.StaffFactory(username="coord", roles=[Role.SPED_COORDINATOR], schools=[school])
    principal = f.StaffFactory(username="princ", roles=[Role.PRINCIPAL], schools=[school])
    manager = f.StaffFactory(username="cm", roles=[Role.CASE_MANAGER], schools=[school])
    teacher = f.StaffFactory(username="teach", roles=[Role.TEACHER], schools=[school])
    # Someone else's principal and coordinator must not hear about this IEP.
    elsewhere = f.SchoolFactory(district=f.DistrictFactory(name="Elsewhere"))
    f.StaffFactory(username="other_princ", roles=[Role.PRINCIPAL], schools=[elsewhere])
    f.StaffFactory(username="other_coord", roles=[Role.SPED_COORDINATOR], schools=[elsewhere])
    iep = f.IEPFactory(
        student=f.StudentFactory(school=school, first_name="Ana", last_name="Ruiz"),
        last_annual_review=REVIEWED, case_manager=manager,
    )
    f.IEPTeamMemberFactory(iep=iep, user=teacher, role=IEPTeamMember.TeamRole.GENERAL_EDUCATION_TEACHER)
    return {"coordinator": coordinator, "principal": principal, "manager": manager, "teacher": teacher, "iep": iep}


def run_on(district, day: dt.date, **kw) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, 7)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot, **kw)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def sent(prefix: str) -> dict[str, set[str]]:
    """username -> dedupe keys, for messages whose key starts with ``prefix``."""
    out: dict[str, set[str]] = {}
    for key, user in Notification.objects.filter(dedupe_key__startswith=prefix).values_list("dedupe_key", "recipient__username"):
        out.setdefault(user, set()).add(key)
    return out


def reminder_recipients(iep, offset) -> set[str]:
    return set(sent(f"iep-reminder:{iep.id}:{DUE.isoformat()}:{offset}:"))


def test_each_offset_reaches_its_audience_once(district, team):
    iep = team["iep"]
    expected = {
        90: {"coord"},
        60: {"cm", "princ"},
        30: {"cm", "teach"},
        14: {"cm", "teach"},
        7: {"cm", "teach"},
        0: {"cm", "teach"},
    }
    for offset, who in expected.items():
        run = run_on(district, DUE - dt.timedelta(days=offset))
        assert run.result["reminders_sent"] == {str(offset): 1}
        assert reminder_recipients(iep, offset) == who, offset
        iep.refresh_from_db()
        assert iep.last_reminder_offset == offset
        assert iep.last_reminder_sent_at == run.slot
    assert iep.reminders_sent_count == 6
    # Days between offsets send nothing.
    run = run_on(district, DUE - dt.timedelta(days=89))
    assert run.result["reminders_sent"] == {} and run.result["notifications_queued"] == 0


def test_no_reminder_before_ninety_days(district, team):
    run = run_on(district, DUE - dt.timedelta(days=91))
    assert run.result["reminders_sent"] == {}
    assert Notification.objects.count() == 0


def test_priority_is_high_from_the_thirty_day_rung(district, team):
    for offset in (60, 30, 14):
        run_on(district, DUE - dt.timedelta(days=offset))
    priorities = dict(Notification.objects.filter(recipient=team["manager"]).values_list("dedupe_key", "priority"))
    assert {k.split(":")[3]: p for k, p in priorities.items()} == {"60": "normal", "30": "high", "14": "high"}


def test_leap_year_due_date_is_365_days_not_the_anniversary(district, school, team):
    iep = team["iep"]
    IEP.objects.filter(pk=iep.pk).delete()
    iep = f.IEPFactory(student=f.StudentFactory(school=school), last_annual_review=dt.date(2027, 3, 1),
                       case_manager=team["manager"])
    assert iep.next_review_due == dt.date(2028, 2, 29)
    run_on(district, dt.date(2027, 12, 1))  # 2028-02-29 - 90 days
    assert set(sent(f"iep-reminder:{iep.id}:2028-02-29:90:")) == {"coord"}
    run_on(district, dt.date(2028, 2, 29))  # due day: the day-0 reminder, not overdue
    assert set(sent(f"iep-reminder:{iep.id}:2028-02-29:0:")) == {"cm"}
    assert not sent("iep-overdue:")
    run = run_on(district, dt.date(2028, 3, 1))  # the anniversary is already one day late
    assert run.result["overdue"] == 1
    assert set(sent(f"iep-overdue:{iep.id}:2028-03-01:")) == {"coord"}


def test_a_missed_day_is_caught_up_with_the_latest_offset_only(district, team):
    iep = team["iep"]
    run_on(district, DUE - dt.timedelta(days=60))
    # The 30-day run never happened; the next run, at 29 days, sends the 30-day reminder.
    run = run_on(district, DUE - dt.timedelta(days=29))
    assert run.result["reminders_sent"] == {"30": 1}
    assert reminder_recipients(iep, 30) == {"cm", "teach"}
    # ...and never the 60-day one again, nor anything until 14.
    run = run_on(district, DUE - dt.timedelta(days=20))
    assert run.result["reminders_sent"] == {}
    iep.refresh_from_db()
    assert (iep.last_reminder_offset, iep.reminders_sent_count) == (30, 2)


def test_skipping_ninety_and_sixty_sends_thirty_not_the_earlier_ones(district, team):
    iep = team["iep"]
    run = run_on(district, DUE - dt.timedelta(days=25))
    assert run.result["reminders_sent"] == {"30": 1}
    assert not sent(f"iep-reminder:{iep.id}:{DUE.isoformat()}:90:")
    assert not sent(f"iep-reminder:{iep.id}:{DUE.isoformat()}:60:")


def test_fourteen_days_proposes_one_meeting(district, team):
    iep = team["iep"]
    run = run_on(district, DUE - dt.timedelta(days=14))
    assert run.result["meetings_proposed"] == 1
    meeting = IEPMeeting.objects.get(iep=iep)
    assert (meeting.status, meeting.purpose) == ("proposed", "annual-review")
    # Re-running the slot (a retry) proposes nothing more.
    again = run_on(district, DUE - dt.timedelta(days=14), trigger=JobRun.Trigger.RETRY, retry_of=run)
    assert again.result["meetings_proposed"] == 0
    assert IEPMeeting.objects.filter(iep=iep).count() == 1


def test_an_open_meeting_is_not_proposed_again(district, team):
    iep = team["iep"]
    f.IEPMeetingFactory(iep=iep, status="scheduled", scheduled_for=local_slot(district, 2027, 2, 25, 15))
    run = run_on(district, DUE - dt.timedelta(days=14))
    assert run.result["meetings_proposed"] == 0
    assert IEPMeeting.objects.filter(iep=iep).count() == 1


def test_missed_fourteen_day_run_still_proposes_at_seven(district, team):
    run = run_on(district, DUE - dt.timedelta(days=7))
    assert run.result["reminders_sent"] == {"7": 1}
    assert run.result["meetings_proposed"] == 1
    # A meeting with no date a week before the due date cannot have had 10 days' notice.
    assert run.result["notices_flagged"] == 1


@pytest.mark.parametrize(
    ("notice_days_before", "lead_days", "late"),
    [(10, 10, False), (9, 10, True), (5, 5, False), (4, 5, True), (None, 10, True)],
)
def test_seven_days_checks_the_guardian_notice(district, team, notice_days_before, lead_days, late):
    district.meeting_notice_lead_days = lead_days
    district.save()
    iep = team["iep"]
    # 23:30 local on Feb 26 is Feb 27 in UTC: the local date is what counts.
    meeting_at = local_slot(district, 2027, 2, 26, 23, 30)
    notice = None if notice_days_before is None else dt.date(2027, 2, 26) - dt.timedelta(days=notice_days_before)
    meeting = f.IEPMeetingFactory(iep=iep, status="scheduled", scheduled_for=meeting_at, guardian_notice_sent_on=notice)
    run = run_on(district, DUE - dt.timedelta(days=7))
    meeting.refresh_from_db()
    assert meeting.notice_flagged_late is late
    assert run.result["notices_flagged"] == int(late)
    told = set(sent(f"iep-notice-late:{meeting.id}:"))
    assert told == ({"cm", "coord"} if late else set())
    assert reminder_recipients(iep, 7) == {"cm", "teach"}
    # The day-0 run does not flag or tell again.
    run = run_on(district, DUE)
    assert run.result["notices_flagged"] == 0
    assert set(sent(f"iep-notice-late:{meeting.id}:")) == told


def test_overdue_alerts_the_coordinator_once_a_day(district, team):
    iep = team["iep"]
    IEP.objects.filter(pk=iep.pk).update(last_reminder_offset=0, last_reminder_sent_at=local_slot(district, 2027, 3, 1, 7))
    day = DUE + dt.timedelta(days=3)
    first = run_on(district, day)
    assert first.result["overdue"] == 1
    assert sent(f"iep-overdue:{iep.id}:") == {"coord": {f"iep-overdue:{iep.id}:{day.isoformat()}:{team['coordinator'].id}:email"}}
    # A second run the same local day (a manual run at 18:00) sends nothing new.
    slot = local_slot(district, day.year, day.month, day.day, 18)
    with time_machine.travel(slot, tick=False):
        run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL)
    assert Notification.objects.filter(dedupe_key__startswith="iep-overdue:").count() == 1
    run_on(district, day + dt.timedelta(days=1))
    assert Notification.objects.filter(dedupe_key__startswith="iep-overdue:").count() == 2
    assert Notification.objects.filter(dedupe_key__startswith="iep-overdue:", priority="high").count() == 2


def test_a_missed_due_day_sends_day_zero_once_late(district, team):
    iep = team["iep"]
    run_on(district, DUE - dt.timedelta(days=7))
    run = run_on(district, DUE + dt.timedelta(days=2))
    assert run.result["reminders_sent"] == {"0": 1} and run.result["overdue"] == 1
    run = run_on(district, DUE + dt.timedelta(days=3))
    assert run.result["reminders_sent"] == {}
    iep.refresh_from_db()
    assert iep.last_reminder_offset == 0


def test_recorded_review_starts_a_new_cycle(district, team):
    iep = team["iep"]
    run_on(district, DUE)  # day 0 of this cycle
    iep.last_annual_review = DUE - dt.timedelta(days=2)  # the review was held and recorded
    iep.save()
    new_due = iep.next_review_due
    run = run_on(district, new_due - dt.timedelta(days=90))
    assert run.result["reminders_sent"] == {"90": 1}
    assert set(sent(f"iep-reminder:{iep.id}:{new_due.isoformat()}:90:")) == {"coord"}


def test_inactive_students_and_closed_ieps_are_skipped(district, school, team):
    iep = team["iep"]
    iep.student.is_active = False
    iep.student.save()
    closed = f.IEPFactory(student=f.StudentFactory(school=school), last_annual_review=REVIEWED, status=IEP.Status.CLOSED)
    run = run_on(district, DUE - dt.timedelta(days=30))
    assert run.result["ieps_checked"] == 0
    assert not Notification.objects.filter(student__in=[iep.student, closed.student]).exists()


def test_district_offsets_are_used(district, team):
    district.iep_reminder_offsets = [45, 10]
    district.save()
    assert run_on(district, DUE - dt.timedelta(days=60)).result["reminders_sent"] == {}
    run = run_on(district, DUE - dt.timedelta(days=45))
    assert run.result["reminders_sent"] == {"45": 1}
    assert reminder_recipients(team["iep"], 45) == {"cm", "princ"}


def test_same_slot_twice_changes_nothing(district, team):
    first = run_on(district, DUE - dt.timedelta(days=14))
    state = (
        list(Notification.objects.order_by("id").values_list("id", "dedupe_key")),
        list(IEPMeeting.objects.values_list("id", "status")),
        IEP.objects.values_list("reminders_sent_count", "last_reminder_offset", "last_reminder_sent_at").get(),
    )
    again = run_on(district, DUE - dt.timedelta(days=14), trigger=JobRun.Trigger.RETRY, retry_of=first)
    assert again.result["notifications_queued"] == 0 and again.result["reminders_sent"] == {}
    assert state == (
        list(Notification.objects.order_by("id").values_list("id", "dedupe_key")),
        list(IEPMeeting.objects.values_list("id", "status")),
        IEP.objects.values_list("reminders_sent_count", "last_reminder_offset", "last_reminder_sent_at").get(),
    )


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_message_renders(district, team, language):
    from notifications.models import RecipientProfile
    from notifications.rendering import render

    for user in team.values():
        if not isinstance(user, IEP):
            RecipientProfile.objects.create(user=user, language=language)
    f.IEPMeetingFactory(iep=team["iep"], status="scheduled", scheduled_for=local_slot(district, 2027, 2, 27, 15))
    run_on(district, DUE - dt.timedelta(days=7))
    run_on(district, DUE)
    run_on(district, DUE + dt.timedelta(days=1))
    templates = set()
    for n in Notification.objects.all():
        assert n.language == language
        out = render(n)
        assert "Ruiz" in out.subject and "Ruiz" in out.text and out.html.startswith("<!doctype html>")
        templates.add(n.template)
    # The meeting of 2027-02-27 has no minutes 2 school days later: its reminder renders too;
    # the student has no guardian to tell, so the staff's "nobody to notice" alert renders as well.
    assert templates == {"iep-reminder", "iep-notice-late", "iep-overdue", "iep-minutes-missing", "iep-notice-nobody"}
    today = Notification.objects.filter(dedupe_key__startswith=f"iep-reminder:{team['iep'].id}:{DUE.isoformat()}:0:").first()
    assert ("today" if language == "en" else "hoy") in render(today).text


def test_the_run_is_in_the_access_trail(district, team):
    run = run_on(district, DUE - dt.timedelta(days=30))
    assert AccessLog.objects.filter(job_run_id=run.id).exists()


def _district_with(n: int, district, school, manager, day_offsets=(90, 60, 30, 14, 7, -2)):
    for i in range(n):
        offset = day_offsets[i % len(day_offsets)]
        iep = f.IEPFactory(student=f.StudentFactory(school=school), last_annual_review=REVIEWED - dt.timedelta(days=90 - offset),
                           case_manager=manager)
        f.IEPTeamMemberFactory(iep=iep)
        if offset == 7:
            f.IEPMeetingFactory(iep=iep, status="scheduled", scheduled_for=local_slot(district, 2026, 12, 4, 15))


def test_query_count_does_not_grow_with_ieps(district, school, team, django_assert_num_queries):
    day = DUE - dt.timedelta(days=90)
    slot = local_slot(district, day.year, day.month, day.day, 7)

    def measure(n: int):
        Notification.objects.all().delete()
        IEPMeeting.objects.all().delete()
        IEP.objects.update(last_reminder_offset=None, last_reminder_sent_at=None, reminders_sent_count=0)
        _district_with(n, district, school, team["manager"])
        with time_machine.travel(slot, tick=False), CaptureQueriesContext(connection) as ctx:
            run = run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL)
        assert run.status == "succeeded"
        return run, ctx.captured_queries

    small_run, small = measure(6)
    large_run, large = measure(30)
    assert large_run.result["ieps_checked"] == 37 and sum(large_run.result["reminders_sent"].values()) > 25
    assert statements(large) == statements(small)
    if connection.vendor == "postgresql":
        measure(0)  # reset, then the exact count with 36 more IEPs
        IEP.objects.update(last_reminder_offset=None, last_reminder_sent_at=None, reminders_sent_count=0)
        Notification.objects.all().delete()
        IEPMeeting.objects.all().delete()
        _district_with(36, district, school, team["manager"])
        with time_machine.travel(slot, tick=False), django_assert_num_queries(len(small)):
            run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL)


def test_jobs_run_command(district, team):
    day = DUE - dt.timedelta(days=60)
    out = io.StringIO()
    with time_machine.travel(local_slot(district, day.year, day.month, day.day, 7, 5), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.id), "--as-of", f"{day.isoformat()}T07:00", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["status"] == "succeeded"
    assert payload["result"]["reminders_sent"] == {"60": 1}
    assert reminder_recipients(team["iep"], 60) == {"cm", "princ"}
