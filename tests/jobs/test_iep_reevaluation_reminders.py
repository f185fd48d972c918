"""iep-review-reminders, the 3-year reevaluation (34 CFR 300.303(b)(2)): the annual review's
ladder on its own due date. Each rung on its day and not the day before or after, catch-up,
overdue once a day, a recorded reevaluation starting a new cycle, the two ladders apart,
exactly once on a re-run, both languages, query counts."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from iep.models import IEP, IEPTeamMember
from notifications.models import Notification, RecipientProfile
from notifications.rendering import render
from scheduling.models import JobRun
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot, statements

SLUG = "iep-review-reminders"
EVALUATED = dt.date(2024, 3, 15)
DUE = dt.date(2027, 3, 15)  # EVALUATED + 3 years
# The annual review falls due far from DUE (2027-09-01), so its ladder stays quiet here.
REVIEWED = dt.date(2026, 9, 1)


@pytest.fixture
def team(district, school):
    coordinator = f.StaffFactory(username="coord", roles=[Role.SPED_COORDINATOR], schools=[school])
    principal = f.StaffFactory(username="princ", roles=[Role.PRINCIPAL], schools=[school])
    manager = f.StaffFactory(username="cm", roles=[Role.CASE_MANAGER], schools=[school])
    psychologist = f.StaffFactory(username="psych", roles=[Role.CASE_MANAGER], schools=[school])
    iep = f.IEPFactory(
        student=f.StudentFactory(school=school, first_name="Lucía", last_name="Ortega"),
        eligibility_date=dt.date(2021, 3, 10), last_reevaluation=EVALUATED, last_annual_review=REVIEWED,
        case_manager=manager,
    )
    f.IEPTeamMemberFactory(iep=iep, user=psychologist, role=IEPTeamMember.TeamRole.PSYCHOLOGIST)
    return {"coordinator": coordinator, "principal": principal, "manager": manager, "psychologist": psychologist, "iep": iep}


def run_on(district, day: dt.date, hour: int = 7, **kw) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, hour)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot, **kw)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def told(prefix: str) -> dict[str, str]:
    """username -> priority, for messages whose key starts with ``prefix``."""
    return dict(Notification.objects.filter(dedupe_key__startswith=prefix).values_list("recipient__username", "priority"))


def rung(iep, offset: int, due: dt.date = DUE) -> dict[str, str]:
    return told(f"iep-reevaluation:{iep.id}:{due.isoformat()}:{offset}:")


def test_the_due_date_is_the_last_evaluation_plus_three_years(team):
    iep = team["iep"]
    assert iep.reevaluation_due == DUE
    first = f.IEPFactory(eligibility_date=dt.date(2024, 2, 29), last_reevaluation=None, last_annual_review=dt.date(2026, 2, 1))
    assert first.reevaluation_due == dt.date(2027, 2, 28)  # never evaluated again: eligibility + 3 years, 29 Feb -> 28 Feb


def test_each_rung_goes_on_its_day_not_the_day_before_or_after(district, team):
    iep = team["iep"]
    audiences = {
        90: {"coord": "normal"},
        60: {"cm": "normal", "princ": "normal"},
        30: {"cm": "high", "psych": "high"},  # the 30-day rung and every later one: high priority
        14: {"cm": "high", "psych": "high"},
        7: {"cm": "high", "psych": "high"},
        0: {"cm": "high", "psych": "high"},
    }
    sent_before = 0
    for offset, who in audiences.items():
        before = run_on(district, DUE - dt.timedelta(days=offset + 1))
        assert before.result["reevaluation_reminders_sent"] == {}, offset
        assert Notification.objects.count() == sent_before
        on = run_on(district, DUE - dt.timedelta(days=offset))
        assert on.result["reevaluation_reminders_sent"] == {str(offset): 1}, offset
        assert rung(iep, offset) == who, offset
        iep.refresh_from_db()
        assert (iep.last_reevaluation_reminder_offset, iep.last_reevaluation_reminder_sent_at) == (offset, on.slot)
        sent_before = Notification.objects.count()
        after = run_on(district, DUE - dt.timedelta(days=offset - 1))
        assert after.result["reevaluation_reminders_sent"] == {}, offset
        assert after.result["reevaluations_overdue"] == (1 if offset == 0 else 0)
        if offset:
            assert Notification.objects.count() == sent_before
    # The annual review's ladder never moved: its own due date is months away.
    assert (iep.last_reminder_offset, iep.last_reminder_sent_at, iep.reminders_sent_count) == (None, None, 0)
    assert not Notification.objects.filter(dedupe_key__startswith="iep-reminder:").exists()
    assert set(Notification.objects.values_list("template", flat=True)) == {"iep-reevaluation", "iep-reevaluation-overdue"}


def test_no_reevaluation_reminder_before_ninety_days(district, team):
    run = run_on(district, DUE - dt.timedelta(days=91))
    assert run.result["reevaluation_reminders_sent"] == {} and run.result["reevaluations_overdue"] == 0
    assert not Notification.objects.exists()


def test_a_missed_run_is_caught_up_with_the_latest_rung_only(district, team):
    iep = team["iep"]
    run = run_on(district, DUE - dt.timedelta(days=45))  # 90 and 60 missed: 60 goes, 90 never
    assert run.result["reevaluation_reminders_sent"] == {"60": 1}
    assert rung(iep, 60) == {"cm": "normal", "princ": "normal"} and rung(iep, 90) == {}
    run = run_on(district, DUE - dt.timedelta(days=29))
    assert run.result["reevaluation_reminders_sent"] == {"30": 1}
    assert run_on(district, DUE - dt.timedelta(days=20)).result["reevaluation_reminders_sent"] == {}


def test_overdue_alerts_the_coordinator_once_a_day_and_day_zero_goes_late_once(district, team):
    iep = team["iep"]
    run_on(district, DUE - dt.timedelta(days=7))
    day = DUE + dt.timedelta(days=2)  # the day-0 run was missed
    first = run_on(district, day)
    assert first.result["reevaluation_reminders_sent"] == {"0": 1} and first.result["reevaluations_overdue"] == 1
    assert rung(iep, 0) == {"cm": "high", "psych": "high"}
    key = f"iep-reevaluation-overdue:{iep.id}:{day.isoformat()}:{team['coordinator'].id}:email"
    assert list(Notification.objects.filter(template="iep-reevaluation-overdue").values_list("dedupe_key", "priority")) == [
        (key, "high")
    ]
    # A second run the same local day (a manual run at 18:00) sends nothing new.
    again = run_on(district, day, hour=18, trigger=JobRun.Trigger.MANUAL)
    assert again.result["reevaluation_reminders_sent"] == {} and again.result["notifications_queued"] == 0
    nxt = run_on(district, day + dt.timedelta(days=1))
    assert nxt.result["reevaluation_reminders_sent"] == {} and nxt.result["reevaluations_overdue"] == 1
    assert told(f"iep-reevaluation-overdue:{iep.id}:") == {"coord": "high"}
    assert Notification.objects.filter(template="iep-reevaluation-overdue").count() == 2
    # The 7 and the late 0, once each, to the case manager and the psychologist.
    assert Notification.objects.filter(template="iep-reevaluation").count() == 4
    assert rung(iep, 7) == rung(iep, 0) == {"cm": "high", "psych": "high"}


def test_a_recorded_reevaluation_starts_a_new_cycle(district, team):
    iep = team["iep"]
    run_on(district, DUE)  # day 0 of this cycle
    iep.last_reevaluation = DUE - dt.timedelta(days=3)  # reevaluated, and recorded
    iep.save(update_fields=["last_reevaluation"])
    iep.refresh_from_db()
    new_due = dt.date(2030, 3, 12)
    assert iep.reevaluation_due == new_due
    assert run_on(district, DUE + dt.timedelta(days=1)).result["reevaluations_overdue"] == 0
    run = run_on(district, new_due - dt.timedelta(days=90))
    assert run.result["reevaluation_reminders_sent"] == {"90": 1}
    assert rung(iep, 90, new_due) == {"coord": "normal"}


def test_the_two_ladders_on_the_same_day_each_go_once(district, school, team):
    iep = team["iep"]
    IEP.objects.filter(pk=iep.pk).delete()
    # Reviewed on 2026-03-15: the annual review is due 2027-03-15 too.
    iep = f.IEPFactory(student=f.StudentFactory(school=school),
                       eligibility_date=dt.date(2021, 3, 10), last_reevaluation=EVALUATED,
                       last_annual_review=dt.date(2026, 3, 15), case_manager=team["manager"])
    assert iep.next_review_due == iep.reevaluation_due == DUE
    run = run_on(district, DUE - dt.timedelta(days=60))
    assert run.result["reminders_sent"] == {"60": 1} and run.result["reevaluation_reminders_sent"] == {"60": 1}
    assert told(f"iep-reminder:{iep.id}:{DUE.isoformat()}:60:") == rung(iep, 60) == {"cm": "normal", "princ": "normal"}
    iep.refresh_from_db()
    assert (iep.last_reminder_offset, iep.last_reevaluation_reminder_offset, iep.reminders_sent_count) == (60, 60, 1)
    # A review recorded early moves only the annual ladder; the reevaluation's keeps its rungs.
    iep.last_annual_review = DUE - dt.timedelta(days=40)
    iep.save(update_fields=["last_annual_review"])
    run = run_on(district, DUE - dt.timedelta(days=30))
    assert run.result["reminders_sent"] == {} and run.result["reevaluation_reminders_sent"] == {"30": 1}


def test_same_slot_twice_changes_nothing(district, team):
    first = run_on(district, DUE - dt.timedelta(days=30))
    state = (
        list(Notification.objects.order_by("id").values_list("id", "dedupe_key")),
        IEP.objects.values_list("last_reevaluation_reminder_offset", "last_reevaluation_reminder_sent_at").get(),
    )
    again = run_on(district, DUE - dt.timedelta(days=30), trigger=JobRun.Trigger.RETRY, retry_of=first)
    assert again.result["notifications_queued"] == 0 and again.result["reevaluation_reminders_sent"] == {}
    assert state == (
        list(Notification.objects.order_by("id").values_list("id", "dedupe_key")),
        IEP.objects.values_list("last_reevaluation_reminder_offset", "last_reevaluation_reminder_sent_at").get(),
    )


def test_an_inactive_team_member_is_named_for_reassignment(district, team):
    psych = team["psychologist"]
    psych.first_name, psych.last_name, psych.is_active = "Rosa", "Vidal", False
    psych.save()
    run_on(district, DUE - dt.timedelta(days=30))
    assert rung(team["iep"], 30) == {"cm": "high"}
    message = render(Notification.objects.get(template="iep-reevaluation"))
    assert "Reassign" in message.text and "Rosa Vidal (School psychologist)" in message.text


@pytest.mark.parametrize(("language", "words"), [("en", "3-year reevaluation"), ("es", "reevaluación trienal")])
def test_every_reevaluation_message_renders(district, team, language, words):
    for user in (team["coordinator"], team["manager"], team["principal"], team["psychologist"]):
        RecipientProfile.objects.create(user=user, language=language)
    run_on(district, DUE - dt.timedelta(days=90))
    run_on(district, DUE)
    run_on(district, DUE + dt.timedelta(days=1))
    templates = set()
    for n in Notification.objects.all():
        assert n.language == language
        out = render(n)
        assert "Ortega" in out.subject and words in out.text.lower() and out.html.startswith("<!doctype html>")
        assert DUE.isoformat() in out.subject and "300.303" in out.text
        templates.add(n.template)
    assert templates == {"iep-reevaluation", "iep-reevaluation-overdue"}


def test_query_count_does_not_grow_with_reevaluations(district, school, team, django_assert_num_queries):
    day = DUE - dt.timedelta(days=30)
    slot = local_slot(district, day.year, day.month, day.day, 7)

    def add(n: int):
        # Due 30 days on (the 30 rung), 60 days on (the 60 rung), 2 days ago (the late 0 rung, overdue).
        for i in range(n):
            evaluated = EVALUATED + dt.timedelta(days=(0, 30, -32)[i % 3])
            iep = f.IEPFactory(student=f.StudentFactory(school=school), eligibility_date=dt.date(2021, 1, 4),
                               last_reevaluation=evaluated, last_annual_review=REVIEWED, case_manager=team["manager"])
            f.IEPTeamMemberFactory(iep=iep)

    def measure():
        Notification.objects.all().delete()
        IEP.objects.update(last_reevaluation_reminder_offset=None, last_reevaluation_reminder_sent_at=None)
        with time_machine.travel(slot, tick=False), CaptureQueriesContext(connection) as ctx:
            run = run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL)
        assert run.status == "succeeded", run.error
        return run, ctx.captured_queries

    add(3)
    small_run, small = measure()
    add(27)
    large_run, large = measure()
    assert sum(large_run.result["reevaluation_reminders_sent"].values()) == 31
    assert large_run.result["reevaluations_overdue"] == 10
    assert statements(large) == statements(small)
    if connection.vendor == "postgresql":
        Notification.objects.all().delete()
        IEP.objects.update(last_reevaluation_reminder_offset=None, last_reevaluation_reminder_sent_at=None)
        with time_machine.travel(slot, tick=False), django_assert_num_queries(len(small)):
            run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL)
