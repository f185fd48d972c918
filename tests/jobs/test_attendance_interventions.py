"""attendance-interventions: through the real runner, counselor notified by email and push,
escalation, no current session, idempotency per slot, constant query count, access trail, CLI.

The at-risk rules themselves are tested in tests/interventions/test_attendance_risk.py."""
from __future__ import annotations

import datetime as dt
import functools
import io
import json
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from interventions.models import CounselorTask, Intervention
from notifications.models import Notification
from scheduling import runner
from scheduling.models import JobRun
from skillcore.models import AccessLog, EventBusEntry, StoredEvent
from students.models import AttendanceRecord, CalendarDay, Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

pytestmark = pytest.mark.django_db
SLUG = "attendance-interventions"
START = dt.date(2026, 9, 1)  # a Tuesday


def school_days(school, count):
    days, day, rows = [], START, []
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
            rows.append(CalendarDay(school=school, date=day, is_instructional=True))
        day += dt.timedelta(days=1)
    CalendarDay.objects.bulk_create(rows)
    return days


def attend(students, days, absent_on):
    AttendanceRecord.objects.bulk_create([
        AttendanceRecord(student=s, date=d, status="absent-unexcused" if d in absent_on else "present",
                         fraction_present=Decimal("0") if d in absent_on else Decimal("1"))
        for s in students for d in days
    ])


def run_on(district, day: dt.date, **kw) -> JobRun:
    """The 18:30 slot of a local day; ``trigger``/``retry_of`` make it a retry of a run."""
    slot = local_slot(district, day.year, day.month, day.day, 18, 30)
    with time_machine.travel(slot + dt.timedelta(minutes=2), tick=False):
        run = run_slot(SLUG, district, slot, **kw)
    assert run.status in (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING), run.error  # warning: did nothing
    return run


@pytest.fixture
def setting(district, school, counselor):
    """20 school days; ``flagged``: 3 absences in a row (15%), ``fine``: never absent."""
    f.AcademicSessionFactory(district=district, start_date=START, end_date=dt.date(2027, 6, 18))
    f.DeviceTokenFactory(user=counselor)
    days = school_days(school, 20)
    flagged = f.StudentFactory(school=school, counselor=counselor, enrollment_date=START, first_name="Ana", last_name="Ruiz")
    fine = f.StudentFactory(school=school, counselor=counselor, enrollment_date=START)
    attend([flagged], days, absent_on=set(days[10:13]))
    attend([fine], days, absent_on=set())
    return {"days": days, "flagged": flagged, "fine": fine}


def test_it_opens_tier_1_lists_the_student_and_tells_the_counselor(district, counselor, setting):
    flagged, days = setting["flagged"], setting["days"]
    run = run_on(district, days[-1])

    assert run.result == {
        "checked": 2, "at_risk": 1, "created": 1, "escalated": 0, "tasks_created": 2,
        "notifications_queued": 2, "notifications_not_queued": 0, "without_counselor": 0,
        # Slipping: 3 absences in the last 20 days (15%) and a run of 3 in them.
        "closed_by_counselor": 0, "ready_to_review": 0, "review_marked": 0, "review_cleared": 0,
    }
    intervention = Intervention.objects.get()
    assert (intervention.student, intervention.tier, intervention.status, intervention.owner) == (flagged, 1, "active", counselor)
    assert intervention.reason == "85.0% attendance (3 absences in 20 days, 3 in a row)"
    assert intervention.opened_at == run.slot and intervention.opened_by_run_id == run.id
    tasks = {(t.kind, t.counselor, t.student, t.due_date) for t in CounselorTask.objects.all()}
    assert tasks == {
        ("priority", counselor, flagged, None),
        ("parent-conference", counselor, flagged, days[-1] + dt.timedelta(days=7)),
    }
    messages = {(n.channel, n.recipient, n.priority, n.category, n.dedupe_key) for n in Notification.objects.all()}
    assert messages == {
        (channel, counselor, "high", "attendance-intervention",
         f"attendance-intervention:{intervention.id}:{counselor.id}:{channel}")
        for channel in ("email", "push")
    }
    email = Notification.objects.get(channel="email")
    assert email.context["student_name"] == "Ana Ruiz" and email.context["absence_rate"] == "15.0%"
    assert email.context["tier"] == 1 and email.student == flagged
    # The event bus (the table here: no REDIS_URL in tests) and the durable store.
    assert list(EventBusEntry.objects.values_list("event_type", "payload__intervention_id")) == [
        ("intervention.opened", intervention.id)]
    assert StoredEvent.objects.filter(event_type="intervention.opened", payload__student_id=flagged.id).count() == 1


def test_the_access_trail_has_the_runs_reads(district, setting):
    run = run_on(district, setting["days"][-1])
    logs = AccessLog.objects.filter(job_run_id=run.id)
    assert logs.exists()
    attendance = logs.get(model="students.AttendanceRecord", operation="read")
    assert setting["flagged"].id in attendance.student_ids
    assert logs.filter(model="interventions.Intervention", operation="create").exists()
    assert {log.purpose for log in logs} == {f"scheduled job {SLUG}"}


def test_the_same_slot_twice_writes_and_sends_nothing_new(district, setting):
    day = setting["days"][-1]
    first = run_on(district, day)
    counts = lambda: (Intervention.objects.count(), CounselorTask.objects.count(), Notification.objects.count(),
                      EventBusEntry.objects.count(), StoredEvent.objects.count())
    before = counts()
    again = run_on(district, day, trigger=JobRun.Trigger.RETRY, retry_of=first)
    assert counts() == before
    assert again.result["notifications_queued"] == 0 and again.result["notifications_not_queued"] == 2
    # The next evening the intervention is still active: nothing new either.
    run_on(district, day + dt.timedelta(days=1))
    assert counts() == before


def test_reaching_twenty_percent_escalates_to_tier_2_and_tells_the_counselor(district, school, counselor, setting):
    flagged, days = setting["flagged"], setting["days"]
    tier_1 = f.InterventionFactory(student=flagged, type="attendance", tier=1, owner=counselor,
                                   opened_at=dt.datetime(2026, 9, 20, tzinfo=dt.UTC))
    AttendanceRecord.objects.filter(student=flagged, date=days[2]).update(status="absent-excused", fraction_present=0)
    # 4 of 20 days absent = 20% exactly.
    run = run_on(district, days[-1])
    assert (run.result["created"], run.result["escalated"], run.result["notifications_queued"]) == (0, 1, 2)
    tier_1.refresh_from_db()
    tier_2 = Intervention.objects.get(status="active")
    assert tier_1.status == "escalated" and tier_2.tier == 2 and tier_2.escalated_from == tier_1
    keys = set(Notification.objects.values_list("dedupe_key", flat=True))
    assert keys == {f"attendance-intervention:{tier_2.id}:{counselor.id}:{c}" for c in ("email", "push")}
    assert Notification.objects.get(channel="email").context["tier"] == 2
    assert EventBusEntry.objects.filter(event_type="intervention.escalated", payload__escalated_from_id=tier_1.id).exists()


def test_a_student_without_a_counselor_gets_an_intervention_but_no_message(district, school, setting):
    lone = f.StudentFactory(school=school, counselor=None, enrollment_date=START)
    attend([lone], setting["days"], absent_on=set(setting["days"][:4]))
    run = run_on(district, setting["days"][-1])
    assert run.result["created"] == 2 and run.result["without_counselor"] == 1
    assert Intervention.objects.filter(student=lone, owner=None).exists()
    assert not Notification.objects.filter(student=lone).exists()


def test_without_a_current_session_nothing_is_written(district, setting):
    district.sessions.update(is_current=False)
    run = run_on(district, setting["days"][-1])
    assert run.result["skipped"] == "no current session" and run.result["checked"] == 0
    assert run.status == "warning" and "no current session" in run.note  # succeeded with warnings
    assert not Intervention.objects.exists() and not Notification.objects.exists()


def test_today_is_the_slots_local_date(district, school, setting):
    # 18:30 in Los Angeles on Thursday is 01:30 UTC on Friday. A student enrolled ten school
    # days before Friday and absent only on Friday is at risk from Friday's run (1/10 = 10%),
    # not from Thursday's, which must not count Friday's attendance.
    district.time_zone = "America/Los_Angeles"
    district.save()
    days = setting["days"]
    thursday, friday = days[-3], days[-2]
    assert (thursday.weekday(), friday.weekday()) == (3, 4)
    AttendanceRecord.objects.filter(student=setting["flagged"]).delete()
    late = f.StudentFactory(school=school, counselor=None, enrollment_date=days[-11])
    attend([late], days[-11:-1], absent_on={friday})
    assert run_on(district, thursday).result["at_risk"] == 0
    assert run_on(district, friday).result["at_risk"] == 1


def test_jobs_run_command(district, setting):
    slot = local_slot(district, *setting["days"][-1].timetuple()[:3], 18, 30)
    out = io.StringIO()
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.id), "--as-of", slot.isoformat(), "--json", stdout=out)
    run = JobRun.objects.get(job=SLUG)
    assert run.status == JobRun.Status.SUCCEEDED and run.slot == slot
    assert run.result["created"] == 1
    assert json.loads(out.getvalue())["result"]["created"] == 1


def _district_of(size: int, n: int):
    """A district with ``size`` at-risk students (and as many fine ones), one escalating."""
    district = f.DistrictFactory(name=f"District {n}", time_zone="America/New_York")
    school = f.SchoolFactory(district=district)
    counselor = f.StaffFactory(username=f"counselor{n}", roles=[Role.COUNSELOR], schools=[school])
    f.DeviceTokenFactory(user=counselor)
    f.AcademicSessionFactory(district=district, start_date=START, end_date=dt.date(2027, 6, 18))
    days = school_days(school, 20)
    flagged = [f.StudentFactory(school=school, counselor=counselor, enrollment_date=START) for _ in range(size)]
    fine = [f.StudentFactory(school=school, counselor=counselor, enrollment_date=START) for _ in range(size)]
    attend(flagged[:1], days, absent_on=set(days[:5]))
    attend(flagged[1:], days, absent_on=set(days[10:13]))
    attend(fine, days, absent_on={days[0]})
    f.InterventionFactory(student=flagged[0], type="attendance", tier=1, owner=counselor,
                          opened_at=dt.datetime(2026, 9, 5, tzinfo=dt.UTC))
    return district, days


def test_query_count_does_not_grow_with_the_number_of_students(django_assert_num_queries, monkeypatch):
    # Progress is written at most once a second; a long interval makes that one write.
    monkeypatch.setattr(runner, "JobContext", functools.partial(runner.JobContext, progress_interval=3600))
    small, days = _district_of(3, 1)
    # 15: SQLite splits a bulk INSERT at 999 parameters (~47 outbox rows); PostgreSQL does not.
    large, _ = _district_of(15, 2)
    with CaptureQueriesContext(connection) as measured:
        run = run_on(small, days[-1])
    assert (run.result["created"], run.result["escalated"], run.result["notifications_queued"]) == (2, 1, 6)
    with django_assert_num_queries(len(measured)):
        run = run_on(large, days[-1])
    assert (run.result["created"], run.result["escalated"], run.result["notifications_queued"]) == (14, 1, 30)


# -- the tier follows the evidence; a slot never escalates its own rows ------------------------
def test_a_new_student_at_twenty_percent_opens_at_tier_2_directly(district, counselor, setting):
    flagged, days = setting["flagged"], setting["days"]
    AttendanceRecord.objects.filter(student=flagged, date=days[2]).update(status="absent-excused", fraction_present=0)
    # 4 of 20 days absent = 20% with 20 enrolled days: the evidence supports Tier 2 now.
    run = run_on(district, days[-1])
    assert (run.result["created"], run.result["escalated"], run.result["notifications_queued"]) == (1, 0, 2)
    opened = Intervention.objects.get()
    assert (opened.tier, opened.status, opened.escalated_from_id) == (2, "active", None)
    assert opened.recommended_strategies == ["Attendance team referral", "Daily check-in/check-out", "Home visit"]
    assert {n.context["tier"] for n in Notification.objects.all()} == {2}
    assert EventBusEntry.objects.filter(event_type="intervention.opened", payload__tier=2).count() == 1
    assert not EventBusEntry.objects.filter(event_type="intervention.escalated").exists()


def test_below_the_minimum_enrolled_days_twenty_percent_opens_tier_1(district, school, setting):
    # Enrolled 5 school days (fewer than the district's minimum), absent on 3 in a row: at
    # risk by the streak, but a rate over 5 days is no evidence for Tier 2.
    days = setting["days"]
    assert district.min_enrolled_days > 5
    late = f.StudentFactory(school=school, counselor=None, enrollment_date=days[-5])
    attend([late], days[-5:], absent_on=set(days[-3:]))
    run_on(district, days[-1])
    assert Intervention.objects.get(student=late).tier == 1


def test_a_rerun_of_the_slot_never_escalates_what_the_slot_opened(district, counselor, setting):
    flagged, days = setting["flagged"], setting["days"]
    first = run_on(district, days[-1])
    tier_1 = Intervention.objects.get()
    assert tier_1.tier == 1
    # A late correction: one more absence, the session rate is now 20%.
    AttendanceRecord.objects.filter(student=flagged, date=days[2]).update(status="absent-excused", fraction_present=0)
    rows = lambda: sorted(Intervention.objects.values_list("id", "tier", "status", "escalated_from_id"))
    before = (rows(), CounselorTask.objects.count(), Notification.objects.count(), StoredEvent.objects.count())
    again = run_on(district, days[-1], trigger=JobRun.Trigger.MANUAL)
    retry = run_on(district, days[-1], trigger=JobRun.Trigger.RETRY, retry_of=first)
    assert (again.result["escalated"], retry.result["escalated"]) == (0, 0)
    assert (rows(), CounselorTask.objects.count(), Notification.objects.count(), StoredEvent.objects.count()) == before
    # The next evening, the Tier 1 row was opened at an earlier slot: it escalates.
    later = run_on(district, days[-1] + dt.timedelta(days=1))
    assert later.result["escalated"] == 1
    tier_1.refresh_from_db()
    assert tier_1.status == "escalated" and Intervention.objects.get(status="active", escalated_from=tier_1).tier == 2


def test_the_notification_step_failing_then_the_engine_retry_escalates_nothing(district, school, counselor, setting,
                                                                              monkeypatch):
    # The tester's realistic path: attempt 1 commits the interventions, then the notification
    # step fails; the engine's retry (services.after_failure) runs the slot again.
    flagged, days = setting["flagged"], setting["days"]
    heavy = f.StudentFactory(school=school, counselor=counselor, enrollment_date=START)
    attend([heavy], days, absent_on=set(days[:5]))  # 25%: Tier 2 on the first slot already
    from scheduling.jobs import attendance_interventions as job_module

    real_enqueue = job_module.notifications_enqueue

    def outbox_down(*args, **kwargs):
        raise ConnectionError("outbox unavailable")

    monkeypatch.setattr(job_module, "notifications_enqueue", outbox_down)
    slot = local_slot(district, *days[-1].timetuple()[:3], 18, 30)
    with time_machine.travel(slot + dt.timedelta(minutes=2), tick=False):
        failed = run_slot(SLUG, district, slot)
    assert failed.status == JobRun.Status.FAILED and "outbox unavailable" in failed.error
    assert sorted(Intervention.objects.values_list("student_id", "tier")) == sorted([(flagged.id, 1), (heavy.id, 2)])
    assert not Notification.objects.exists()

    monkeypatch.setattr(job_module, "notifications_enqueue", real_enqueue)
    retry = JobRun.objects.get(retry_of=failed, status=JobRun.Status.QUEUED)
    with time_machine.travel(slot + dt.timedelta(minutes=4), tick=False):
        done = runner.execute(retry.pk)
    assert done.status == JobRun.Status.SUCCEEDED, done.error
    assert done.result["escalated"] == 0 and done.result["notifications_queued"] == 4
    assert sorted(Intervention.objects.values_list("student_id", "tier", "status")) == sorted(
        [(flagged.id, 1, "active"), (heavy.id, 2, "active")])
    assert CounselorTask.objects.count() == 4
    assert sorted(Notification.objects.values_list("context__tier", flat=True)) == [1, 1, 2, 2]


# -- the session-wide run, a counselor's closing, ready to review --------------------------------
@pytest.fixture
def autumn(district, school, counselor):
    """60 school days (2026-09-01 .. 2026-11-23); ``student`` missed 09-02 .. 09-04 only."""
    f.AcademicSessionFactory(district=district, start_date=START, end_date=dt.date(2027, 6, 18))
    days = school_days(school, 60)
    student = f.StudentFactory(school=school, counselor=counselor, enrollment_date=START)
    attend([student], days, absent_on=set(days[1:4]))
    return {"days": days, "student": student}


def test_a_first_run_in_november_flags_a_run_in_september_ready_to_review_at_once(district, autumn):
    # A district that starts running the job mid-year: the only sign is a run in September.
    student = autumn["student"]
    run = run_on(district, dt.date(2026, 11, 20))
    assert run.result["created"] == 1 and run.result["ready_to_review"] == 1 and run.result["review_marked"] == 1
    intervention = Intervention.objects.get(student=student)
    assert intervention.status == "active" and intervention.ready_to_review_since == dt.date(2026, 11, 20)
    assert intervention.reason.endswith("3 in a row)")
    # A retry of the slot: the same row (reported again as the slot's), the same mark.
    again = run_on(district, dt.date(2026, 11, 20), trigger=JobRun.Trigger.RETRY, retry_of=run)
    assert (again.result["created"], again.result["review_marked"], again.result["ready_to_review"]) == (1, 0, 1)
    assert Intervention.objects.filter(student=student).count() == 1
    assert Intervention.objects.get(student=student).ready_to_review_since == dt.date(2026, 11, 20)


def test_ready_to_review_is_set_by_one_slot_and_cleared_by_a_later_one(district, autumn):
    days, student = autumn["days"], autumn["student"]
    run_on(district, days[4])  # opened; 3 absences in 5 days: slipping
    intervention = Intervention.objects.get(student=student)
    assert intervention.ready_to_review_since is None
    run_on(district, days[33])  # the last 30 (days[4..33]) absence-free
    intervention.refresh_from_db()
    assert intervention.ready_to_review_since == days[33]
    AttendanceRecord.objects.filter(student=student, date__in=days[40:43]).update(status="absent-unexcused",
                                                                              fraction_present=0)
    run = run_on(district, days[42])
    intervention.refresh_from_db()
    assert run.result["review_cleared"] == 1 and run.result["ready_to_review"] == 0
    assert intervention.ready_to_review_since is None and intervention.status == "active"


def test_the_job_respects_a_counselors_closing_until_a_new_absence(district, autumn):
    days, student = autumn["days"], autumn["student"]
    run_on(district, days[4])
    intervention = Intervention.objects.get(student=student)
    intervention.status, intervention.closed_reason = "closed", "Family plan in place"
    intervention.closed_at = local_slot(district, days[20].year, days[20].month, days[20].day, 15)
    intervention.save()
    AttendanceRecord.objects.filter(student=student, date=days[20]).update(status="absent-unexcused", fraction_present=0)
    run = run_on(district, days[30])  # at risk (the run), but every absence is dated on or before the closing day
    assert (run.result["created"], run.result["closed_by_counselor"]) == (0, 1)
    assert not Intervention.objects.filter(student=student, status="active").exists()
    # Three more absences after the closing day: a new run, a new intervention.
    AttendanceRecord.objects.filter(student=student, date__in=days[31:34]).update(status="absent-unexcused",
                                                                              fraction_present=0)
    run = run_on(district, days[33])
    assert (run.result["created"], run.result["closed_by_counselor"]) == (1, 0)
    assert Intervention.objects.filter(student=student).count() == 2
    assert Intervention.objects.get(student=student, status="active").ready_to_review_since is None


def test_admin_lists_ready_to_review_on_the_priority_list_and_filters(district, autumn, client, counselor):
    from django.urls import reverse

    run_on(district, dt.date(2026, 11, 20))
    other = f.StudentFactory(school=autumn["student"].school, counselor=counselor, enrollment_date=START)
    f.InterventionFactory(student=other, type="attendance", tier=1, owner=counselor,
                          opened_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    client.force_login(counselor)
    tasks = reverse("admin:interventions_counselortask_changelist")
    ready = client.get(tasks, {"ready_to_review": "yes", "kind__exact": "priority"})
    assert ready.status_code == 200
    assert [t.student_id for t in ready.context["cl"].result_list] == [autumn["student"].id]
    assert "Ready to review" in ready.content.decode()
    interventions = reverse("admin:interventions_intervention_changelist")
    assert [i.student_id for i in client.get(interventions, {"ready_to_review": "yes"}).context["cl"].result_list] == [
        autumn["student"].id]
    assert [i.student_id for i in client.get(interventions, {"ready_to_review": "no"}).context["cl"].result_list] == [
        other.id]
