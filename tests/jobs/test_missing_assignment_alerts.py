"""missing-assignment-alerts: offsets per slot (7 major-only, 3, 1 in the evening, due today
in the morning), overdue daily for 14 days, who is skipped, recipients, idempotency, query
counts, CLI."""
from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications.models import DigestItem, Notification
from notifications.rendering import render
from scheduling.models import JobRun
from skillcore.models import AccessLog
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot, statements

SLUG = "missing-assignment-alerts"
TODAY = dt.date(2026, 11, 10)


@pytest.fixture
def klass(district, school):
    section = f.SectionFactory(school=school, course_name="Biology")
    user = f.UserFactory(username="leo", first_name="Leo", roles=[Role.STUDENT])
    f.DeviceTokenFactory(user=user)
    student = f.StudentFactory(school=school, first_name="Leo", user=user)
    guardian = f.UserFactory(username="dad", roles=[Role.GUARDIAN])
    f.GuardianLinkFactory(guardian=guardian, student=student)
    f.SectionEnrollmentFactory(section=section, student=student)
    return {"section": section, "student": student, "user": user, "guardian": guardian}


def due(klass, days: int, *, major=False, **kw):
    return f.AssignmentFactory(section=kw.pop("section", klass["section"]), due_date=TODAY + dt.timedelta(days=days),
                               is_major=major, **kw)


def run_on(district, day: dt.date, hour: int, **kw) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, hour)
    with time_machine.travel(slot, tick=False):
        run = run_slot(SLUG, district, slot, **kw)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def reminded(assignment) -> dict[str, set[str]]:
    """offset label -> {username:channel} for this assignment."""
    out: dict[str, set[str]] = {}
    for key, user, channel in Notification.objects.filter(dedupe_key__startswith=f"assignment-reminder:{assignment.id}:").values_list(
        "dedupe_key", "recipient__username", "channel"
    ):
        out.setdefault(key.split(":")[3], set()).add(f"{user}:{channel}")
    return out


def test_evening_sends_seven_major_only_three_and_one(district, klass):
    major7, minor7 = due(klass, 7, major=True), due(klass, 7)
    d3, d1, d2, d0 = due(klass, 3), due(klass, 1), due(klass, 2), due(klass, 0)
    run = run_on(district, TODAY, 19)
    both = {"leo:push", "dad:email"}
    assert reminded(major7) == {"7": both}
    assert reminded(minor7) == {}
    assert reminded(d3) == {"3": both} and reminded(d1) == {"1": both}
    assert reminded(d2) == {} and reminded(d0) == {}  # no 2-day offset; due today is the morning's
    assert run.result["reminders"] == {"7": 1, "3": 1, "1": 1}
    assert run.result["slot"] == "evening" and run.result["assignments_checked"] == 3
    assert run.result["students_notified"] == 1 and run.result["notifications_queued"] == 6


def test_batches_of_assignments_give_the_same_messages(district, school, klass, monkeypatch):
    from scheduling.jobs import missing_assignment_alerts as job

    classmate = f.StudentFactory(school=school, user=f.UserFactory(username="mia"))
    f.SectionEnrollmentFactory(section=klass["section"], student=classmate)
    work = [due(klass, d, major=True) for d in (7, 3, 1, -1, -3)]
    f.SubmissionFactory(assignment=work[1], student=classmate)
    monkeypatch.setattr(job, "REQUEST_CHUNK", 2)
    run = run_on(district, TODAY, 19)
    assert run.result["reminders"] == {"7": 2, "3": 1, "1": 2} and run.result["overdue"] == 4
    # Mia has no device and no guardian: reminded, but nobody could be told.
    assert run.result["assignments_checked"] == 5 and run.result["students_notified"] == 1
    assert run.result["suppressed"] == {"no-active-device": 4}
    assert {u.split(":")[0] for u in reminded(work[1])["3"]} == {"leo", "dad"}


def test_morning_sends_due_today_only(district, klass):
    d0, d1, late = due(klass, 0), due(klass, 1), due(klass, -1)
    run = run_on(district, TODAY, 7)
    assert reminded(d0) == {"0": {"leo:push", "dad:email"}}
    assert reminded(d1) == {} and reminded(late) == {}
    assert run.result["slot"] == "morning" and run.result["reminders"] == {"0": 1} and run.result["overdue"] == 0


def test_overdue_daily_for_fourteen_days_then_stops(district, klass):
    day14, day15 = due(klass, -14), due(klass, -15)
    one = due(klass, -1)
    run = run_on(district, TODAY, 19)
    assert reminded(day14) == {"overdue-14": {"leo:push", "dad:email"}}
    assert reminded(day15) == {}
    assert reminded(one) == {"overdue-1": {"leo:push", "dad:email"}}
    assert run.result["overdue"] == 2
    # Next evening: one is 2 days overdue (a new reminder), day14 is now 15 days: nothing.
    run_on(district, TODAY + dt.timedelta(days=1), 19)
    assert set(reminded(one)) == {"overdue-1", "overdue-2"}
    assert set(reminded(day14)) == {"overdue-14"}


def test_submitted_work_stops_the_overdue_reminders(district, klass):
    late = due(klass, -1)
    run_on(district, TODAY, 19)
    f.SubmissionFactory(assignment=late, student=klass["student"])
    run = run_on(district, TODAY + dt.timedelta(days=1), 19)
    assert set(reminded(late)) == {"overdue-1"} and run.result["overdue"] == 0


@pytest.mark.parametrize(
    ("submission", "mine", "reminded_"),
    [({"submitted_at": None, "is_exempt": True}, True, False), ({}, True, False), ({}, False, True)],
)
def test_submitted_and_exempt_students_are_skipped(district, school, klass, submission, mine, reminded_):
    a = due(klass, 3)
    # A classmate's submission does not count for this student.
    student = klass["student"] if mine else f.StudentFactory(school=school)
    f.SubmissionFactory(assignment=a, student=student, **submission)
    run_on(district, TODAY, 19)
    assert bool(reminded(a)) is reminded_


def test_only_enrolled_active_students_of_the_district(district, school, klass):
    from students.models import SectionEnrollment

    a = due(klass, 3)
    dropped = f.StudentFactory(school=school, user=f.UserFactory(username="dropped"))
    f.SectionEnrollmentFactory(section=klass["section"], student=dropped, end_date=TODAY - dt.timedelta(days=1))
    last_day = f.StudentFactory(school=school, user=f.UserFactory(username="lastday"))
    f.SectionEnrollmentFactory(section=klass["section"], student=last_day, end_date=TODAY)
    not_yet = f.StudentFactory(school=school, user=f.UserFactory(username="notyet"))
    f.SectionEnrollmentFactory(section=klass["section"], student=not_yet, start_date=TODAY + dt.timedelta(days=1))
    inactive = f.StudentFactory(school=school, is_active=False, user=f.UserFactory(username="gone"))
    f.SectionEnrollmentFactory(section=klass["section"], student=inactive)
    other = f.SectionFactory(school=f.SchoolFactory(district=f.DistrictFactory(name="Far")), course_name="Chem")
    elsewhere = f.AssignmentFactory(section=other, due_date=TODAY + dt.timedelta(days=3))
    f.SectionEnrollmentFactory(section=other, student=f.StudentFactory(school=other.school, user=f.UserFactory(username="far")))
    draft = due(klass, 3, status="draft")
    run = run_on(district, TODAY, 19)
    users = {u.split(":")[0] for u in reminded(a)["3"]}
    assert users == {"leo", "dad", "lastday"}
    assert reminded(elsewhere) == {} and reminded(draft) == {}
    assert run.result["assignments_checked"] == 1
    assert SectionEnrollment.objects.count() == 6


def test_outbox_rules_apply_muted_class_never_and_no_device(district, klass, school):
    from students.models import SectionEnrollment

    a = due(klass, 1)
    SectionEnrollment.objects.filter(student=klass["student"]).update(notifications_muted=True)
    f.NotificationPreferenceFactory(user=klass["guardian"], category="assignment-reminder", channel="email", frequency="never")
    nodevice = f.StudentFactory(school=school, user=f.UserFactory(username="nodevice"))
    f.SectionEnrollmentFactory(section=klass["section"], student=nodevice)
    run = run_on(district, TODAY, 19)
    status = dict(Notification.objects.filter(dedupe_key__startswith=f"assignment-reminder:{a.id}:").values_list("recipient__username", "status_reason"))
    assert status == {"leo": "class-muted", "dad": "preference-never", "nodevice": "no-active-device"}
    assert run.result["notifications_queued"] == 0 and run.result["students_notified"] == 0
    assert run.result["suppressed"] == {"class-muted": 1, "preference-never": 1, "no-active-device": 1}


def test_guardian_digest_preference_is_honoured(district, klass):
    f.NotificationPreferenceFactory(user=klass["guardian"], category="assignment-reminder", channel="email", frequency="daily")
    due(klass, 3)
    run = run_on(district, TODAY, 19)
    assert DigestItem.objects.filter(recipient=klass["guardian"], category="assignment-reminder").count() == 1
    assert run.result["notifications_queued"] == 1 and run.result["digest_items"] == 1
    assert run.result["students_notified"] == 1
    # A re-run of the slot (before the digest is assembled) adds no item: the upsert
    # finds the same (recipient, period, object, event).
    again = run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)
    assert again.result["notifications_queued"] == 0
    assert DigestItem.objects.filter(recipient=klass["guardian"]).count() == 1


def test_push_is_generic_and_email_names_the_work(district, klass):
    due(klass, 1, title="Cell diagram")
    run_on(district, TODAY, 19)
    push = render(Notification.objects.get(channel="push"))
    assert "Cell diagram" not in push.push_title + push.push_body
    email = render(Notification.objects.get(channel="email"))
    assert "Cell diagram" in email.subject and "Biology" in email.text


def test_same_slot_twice_changes_nothing(district, klass):
    due(klass, 3), due(klass, -2)
    first = run_on(district, TODAY, 19)
    rows = list(Notification.objects.order_by("id").values_list("id", "dedupe_key", "status"))
    again = run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)
    assert again.result["notifications_queued"] == 0 and first.result["notifications_queued"] == 4
    assert again.result["students_notified"] == 1
    assert rows == list(Notification.objects.order_by("id").values_list("id", "dedupe_key", "status"))


def test_the_run_is_in_the_access_trail(district, klass):
    due(klass, 3)
    run = run_on(district, TODAY, 19)
    assert {"students.SectionEnrollment", "students.GuardianLink"} <= set(AccessLog.objects.filter(job_run_id=run.id).values_list("model", flat=True))


def test_the_streamed_read_names_its_students_in_the_access_trail(district, school, klass):
    # The missing work is read through a server-side cursor on PostgreSQL, in chunks: the
    # trail still sees the statement and the student of every row fetched.
    due(klass, 3)
    other = f.StudentFactory(school=school)
    f.SectionEnrollmentFactory(section=klass["section"], student=other)
    run = run_on(district, TODAY, 19)
    enrollments = AccessLog.objects.get(job_run_id=run.id, model="students.SectionEnrollment", operation="read")
    assert {klass["student"].id, other.id} <= set(enrollments.student_ids)


def _class_of(n: int, section, school):
    students = []
    for i in range(n):
        user = f.UserFactory(roles=[Role.STUDENT])
        f.DeviceTokenFactory(user=user)
        student = f.StudentFactory(school=school, user=user)
        f.GuardianLinkFactory(student=student)
        f.SectionEnrollmentFactory(section=section, student=student, notifications_muted=i % 4 == 0)
        students.append(student)
    for a in section.assignments.all()[:2]:
        for student in students[: n // 3]:
            f.SubmissionFactory(assignment=a, student=student, is_exempt=bool(student.id % 2))


def test_query_count_does_not_grow_with_students(district, school, klass, django_assert_num_queries):
    session = klass["section"].session
    small_section = f.SectionFactory(school=school, session=session)
    large_section = f.SectionFactory(school=school, session=session)
    for section in (small_section, large_section):
        for days in (7, 3, 1, -1, -5):
            due(klass, days, major=True, section=section)
    _class_of(3, small_section, school)
    with CaptureQueriesContext(connection) as small:
        small_run = run_on(district, TODAY, 19)
    _class_of(25, large_section, school)
    Notification.objects.all().delete()
    with CaptureQueriesContext(connection) as large:
        large_run = run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)
    assert large_run.result["notifications_queued"] > 4 * small_run.result["notifications_queued"]
    assert statements(large.captured_queries) == statements(small.captured_queries)
    if connection.vendor == "postgresql":
        _class_of(40, large_section, school)
        Notification.objects.all().delete()
        with django_assert_num_queries(len(small.captured_queries)):
            run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)


def test_jobs_run_command_morning(district, klass):
    a = due(klass, 0)
    out = io.StringIO()
    with time_machine.travel(local_slot(district, 2026, 11, 10, 7, 2), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.id), "--as-of", "2026-11-10T07:00", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["status"] == "succeeded" and payload["result"]["reminders"] == {"0": 1}
    assert reminded(a) == {"0": {"leo:push", "dad:email"}}


def _work_on_every_target(klass, n: int) -> None:
    """``n`` major assignments spread over the evening's 17 target dates (7, 3, 1 days ahead
    and 1-14 days overdue)."""
    offsets = [7, 3, 1, *range(-1, -15, -1)]
    for i in range(n):
        due(klass, offsets[i % len(offsets)], major=True)


def test_query_count_does_not_grow_with_assignments(district, klass, django_assert_num_queries):
    # The per-district rows the runner writes on a job's first run are not this job's
    # queries: a first run to another slot, so both measured runs start alike.
    run_on(district, TODAY, 7)
    _work_on_every_target(klass, 3)
    with CaptureQueriesContext(connection) as small:
        small_run = run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)
    assert small_run.result["assignments_checked"] == 3 and small_run.result["notifications_queued"] == 6
    # 450 assignments were 3 batches of 200 before: 3 times the per-batch queries. One
    # statement now reads them all; 900 messages are still one outbox chunk.
    _work_on_every_target(klass, 447)
    Notification.objects.all().delete()
    if connection.vendor == "postgresql":
        with django_assert_num_queries(len(small.captured_queries)):
            large_run = run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)
    else:
        # SQLite: Django splits the outbox's bulk insert at 999 parameters (62 rows a
        # statement); those count once, as on PostgreSQL (see ``statements``).
        with CaptureQueriesContext(connection) as large:
            large_run = run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)
        assert statements(large.captured_queries) == statements(small.captured_queries)
    assert large_run.result["assignments_checked"] == 450
    assert large_run.result["notifications_queued"] == 900
    assert sum(large_run.result["reminders"].values()) + large_run.result["overdue"] == 450


def test_query_count_grows_only_with_outbox_chunks_of_messages_written(district, klass, monkeypatch):
    from scheduling.jobs import missing_assignment_alerts as job

    run_on(district, TODAY, 7)
    _work_on_every_target(klass, 6)  # 12 messages
    counts = {}
    for chunk in (12, 6):
        monkeypatch.setattr(job, "REQUEST_CHUNK", chunk)
        Notification.objects.all().delete()
        with CaptureQueriesContext(connection) as ctx:
            run = run_on(district, TODAY, 19, trigger=JobRun.Trigger.MANUAL)
        assert run.result["notifications_queued"] == 12
        counts[chunk] = statements(ctx.captured_queries)
    outbox_chunk = counts[6] - counts[12]  # one more chunk of messages: its fixed set of queries
    assert 0 < outbox_chunk <= 16


# Work due before the student was there: the example that went wrong was a student
# enrolled 11/13 told "overdue 14 days" about work due 11/06. Evening of 11/20: work due
# 11/06 is 14 days overdue, 11/12 is 8, 11/13 is 7.
ARRIVED = dt.date(2026, 11, 13)
EVENING = dt.date(2026, 11, 20)


def _newcomer(school, section, *, district_entry: dt.date, section_start: dt.date):
    user = f.UserFactory(username="newcomer", roles=[Role.STUDENT])
    f.DeviceTokenFactory(user=user)
    student = f.StudentFactory(school=school, user=user, enrollment_date=district_entry)
    f.SectionEnrollmentFactory(section=section, student=student, start_date=section_start)
    return student


def _work(section, *days: dt.date):
    return [f.AssignmentFactory(section=section, due_date=d, is_major=True) for d in days]


@pytest.mark.parametrize(
    ("district_entry", "section_start"),
    [(dt.date(2026, 8, 31), ARRIVED), (ARRIVED, ARRIVED), (ARRIVED, dt.date(2026, 11, 1))],
    ids=["joined-the-section-late", "joined-the-district-late", "section-dated-before-district-entry"],
)
def test_work_due_before_the_student_arrived_is_not_reminded(district, school, klass, district_entry, section_start):
    before, on_the_day, after = _work(klass["section"], ARRIVED - dt.timedelta(days=1), ARRIVED, dt.date(2026, 11, 17))
    week_old = _work(klass["section"], dt.date(2026, 11, 6))[0]
    _newcomer(school, klass["section"], district_entry=district_entry, section_start=section_start)
    run = run_on(district, EVENING, 19)
    # The day before arrival: not the newcomer's; the arrival day and later: theirs.
    assert reminded(week_old) == {"overdue-14": {"leo:push", "dad:email"}}
    assert reminded(before) == {"overdue-8": {"leo:push", "dad:email"}}
    assert reminded(on_the_day) == {"overdue-7": {"leo:push", "dad:email", "newcomer:push"}}
    assert reminded(after) == {"overdue-3": {"leo:push", "dad:email", "newcomer:push"}}
    assert run.result["overdue"] == 6 and run.result["assignments_checked"] == 4


def test_upcoming_work_of_a_new_student_is_reminded(district, school, klass):
    # Enrolled today with work due in 3 days: the due date is after arrival, reminded.
    soon = due(klass, 3)
    _newcomer(school, klass["section"], district_entry=TODAY, section_start=TODAY)
    run_on(district, TODAY, 19)
    assert reminded(soon) == {"3": {"leo:push", "dad:email", "newcomer:push"}}
