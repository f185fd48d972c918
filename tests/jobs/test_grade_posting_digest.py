"""grade-posting-digest: the slot window (late, retried, missed and first runs), digest
contents, recipients and preferences, low-grade alerts, idempotency, query counts, CLI."""
from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

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

SLUG = "grade-posting-digest"


@pytest.fixture
def klass(district, school):
    section = f.SectionFactory(school=school, course_name="Algebra")
    student_user = f.UserFactory(username="ana", first_name="Ana", roles=[Role.STUDENT])
    student = f.StudentFactory(school=school, first_name="Ana", user=student_user)
    guardian = f.UserFactory(username="mom", first_name="Rosa", roles=[Role.GUARDIAN])
    f.GuardianLinkFactory(guardian=guardian, student=student)
    for user in (student_user, guardian):
        f.NotificationPreferenceFactory(user=user, category="grade-digest", channel="email", frequency="immediately")
    f.SectionEnrollmentFactory(section=section, student=student)
    return {"section": section, "student": student, "student_user": student_user, "guardian": guardian}


def grade(klass, posted_at: dt.datetime, score="8.5", max_score="10", title=None, section=None, student=None):
    assignment = f.AssignmentFactory(section=section or klass["section"], max_score=Decimal(max_score),
                                     **({"title": title} if title else {}))
    return f.GradeFactory(assignment=assignment, student=student or klass["student"], score=Decimal(score), posted_at=posted_at)


def evening(district, day: dt.date) -> dt.datetime:
    return local_slot(district, day.year, day.month, day.day, 20)


def run_at(district, slot: dt.datetime, *, now: dt.datetime | None = None, **kw) -> JobRun:
    with time_machine.travel(now or slot, tick=False):
        run = run_slot(SLUG, district, slot, **kw)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def digest_grades(user) -> list[int]:
    """Grade ids that reached ``user`` in any grade digest, with repeats."""
    ids = []
    for context in Notification.objects.filter(recipient=user, category="grade-digest").values_list("context", flat=True):
        ids += [g["grade_id"] for g in context["grades"]]
    return sorted(ids)


D1, D2, D3 = dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4)


def test_window_is_previous_slot_to_this_slot_inclusive(district, klass):
    # The previous day's run delivered up to D1 20:00.
    run_at(district, evening(district, D1))
    before = grade(klass, evening(district, D1) - dt.timedelta(seconds=1))  # already in D1's window
    at_prev = grade(klass, evening(district, D1))  # exactly the previous slot: D1's
    after_prev = grade(klass, evening(district, D1) + dt.timedelta(seconds=1))
    at_slot = grade(klass, evening(district, D2))
    late = grade(klass, evening(district, D2) + dt.timedelta(seconds=1))
    run = run_at(district, evening(district, D2))
    assert run.result["grades"] == 2
    assert run.result["window_after"] == evening(district, D1).isoformat()
    titles = {g["assignment_title"] for g in Notification.objects.get(recipient=klass["guardian"]).context["grades"]}
    assert titles == {after_prev.assignment.title, at_slot.assignment.title}
    assert before.assignment.title not in titles and at_prev.assignment.title not in titles and late.assignment.title not in titles


def test_a_late_run_neither_skips_nor_repeats(district, klass):
    run_at(district, evening(district, D1))
    g1 = grade(klass, evening(district, D2) - dt.timedelta(hours=3))
    g2 = grade(klass, evening(district, D2) + dt.timedelta(minutes=20))  # posted while the run is late
    # D2's run starts 40 minutes late (a catch-up); "the last 24 hours from now" would take g2.
    run = run_at(district, evening(district, D2), now=evening(district, D2) + dt.timedelta(minutes=40),
                 trigger=JobRun.Trigger.CATCH_UP)
    assert run.result["grades"] == 1
    run = run_at(district, evening(district, D3))
    assert run.result["grades"] == 1
    assert digest_grades(klass["guardian"]) == sorted([g1.id, g2.id])  # each exactly once


def test_a_retried_run_neither_skips_nor_repeats(district, klass, monkeypatch):
    from scheduling.jobs import grade_posting_digest as job

    run_at(district, evening(district, D1))
    g1 = grade(klass, evening(district, D2) - dt.timedelta(hours=1))
    # The first attempt fails after queueing: its transaction rolls back, nothing is sent.
    original = job.notifications_enqueue

    def enqueue_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        raise ConnectionError("database went away")

    monkeypatch.setattr(job, "notifications_enqueue", enqueue_then_fail)
    slot = evening(district, D2)
    with time_machine.travel(slot, tick=False):
        failed = run_slot(SLUG, district, slot)
    assert failed.status == JobRun.Status.FAILED
    assert not Notification.objects.filter(category="grade-digest").exclude(dedupe_key__contains="20261102").exists()
    monkeypatch.setattr(job, "notifications_enqueue", original)
    # A grade posted after the slot, before the retry: the retry (2 hours later) is for the slot.
    g2 = grade(klass, slot + dt.timedelta(hours=1))
    retry = JobRun.objects.get(retry_of=failed)
    JobRun.objects.filter(pk=retry.pk).update(status=JobRun.Status.CANCELLED)  # run it here instead of the queue
    run = run_at(district, slot, now=slot + dt.timedelta(hours=2), trigger=JobRun.Trigger.RETRY, retry_of=failed)
    assert run.result["grades"] == 1 and run.result["window_after"] == evening(district, D1).isoformat()
    run_at(district, evening(district, D3))
    assert digest_grades(klass["guardian"]) == sorted([g1.id, g2.id])  # each exactly once


def test_a_manual_run_earlier_in_the_day_is_not_repeated_by_the_evening_run(district, klass):
    run_at(district, evening(district, D1))
    g1 = grade(klass, evening(district, D2) - dt.timedelta(hours=6))
    run_at(district, evening(district, D2) - dt.timedelta(hours=5), trigger=JobRun.Trigger.MANUAL)
    g2 = grade(klass, evening(district, D2) - dt.timedelta(hours=1))
    run = run_at(district, evening(district, D2))
    assert run.result["grades"] == 1
    assert digest_grades(klass["guardian"]) == sorted([g1.id, g2.id])


def test_a_missed_slot_is_covered_by_the_next_run(district, klass):
    run_at(district, evening(district, D1))
    g1 = grade(klass, evening(district, D2) - dt.timedelta(hours=2))  # D2's run never happened
    JobRun.objects.create(job=SLUG, district=district, trigger="schedule", slot=evening(district, D2), status="missed")
    g2 = grade(klass, evening(district, D3) - dt.timedelta(hours=2))
    run = run_at(district, evening(district, D3))
    assert run.result["grades"] == 2 and run.result["window_after"] == evening(district, D1).isoformat()
    titles = {g["assignment_title"] for g in Notification.objects.get(recipient=klass["guardian"]).context["grades"]}
    assert titles == {g1.assignment.title, g2.assignment.title}


def test_a_run_that_committed_but_lost_its_success_counts_as_delivered(district, klass):
    # A worker killed after the commit: the run is failed, but its checkpoint says delivered.
    JobRun.objects.create(job=SLUG, district=district, trigger="schedule", slot=evening(district, D1), status="failed",
                          checkpoint={"delivered_through": evening(district, D1).isoformat()})
    grade(klass, evening(district, D1) - dt.timedelta(hours=1))
    run = run_at(district, evening(district, D2))
    assert run.result["grades"] == 0 and run.result["window_after"] == evening(district, D1).isoformat()


def test_first_run_looks_back_to_the_previous_cron_slot(district, klass):
    grade(klass, evening(district, D1) - dt.timedelta(minutes=1))
    inside = grade(klass, evening(district, D1) + dt.timedelta(minutes=1))
    run = run_at(district, evening(district, D2))
    assert run.result["window_after"] == evening(district, D1).isoformat()
    assert run.result["grades"] == 1
    assert Notification.objects.get(recipient=klass["guardian"]).context["grades"][0]["assignment_title"] == inside.assignment.title


def test_look_back_is_capped(district, klass):
    run_at(district, evening(district, dt.date(2026, 9, 1)))
    grade(klass, evening(district, D2) - dt.timedelta(days=20))
    run = run_at(district, evening(district, D2))
    assert run.result["grades"] == 0
    assert run.result["window_after"] == (evening(district, D2).astimezone(dt.UTC) - dt.timedelta(days=14)).astimezone(district.zone).isoformat()


def test_digest_lines_carry_class_assignment_score_maximum_and_percentage(district, klass):
    run_at(district, evening(district, D1))
    g = grade(klass, evening(district, D2) - dt.timedelta(hours=1), score="8.5", max_score="10", title="Quiz 3")
    grade(klass, evening(district, D2) - dt.timedelta(hours=2), score="17", max_score="20", title="Lab 1")
    run = run_at(district, evening(district, D2))
    assert run.result == {**run.result, "grades": 2, "students_notified": 1, "guardians_notified": 1, "notifications_queued": 2}
    n = Notification.objects.get(recipient=klass["guardian"])
    assert n.student_id == g.student_id
    assert {(x["course_name"], x["assignment_title"], x["score"], x["max_score"], x["percentage"]) for x in n.context["grades"]} == {
        ("Algebra", "Quiz 3", "8.5", "10", "85.0"), ("Algebra", "Lab 1", "17", "20", "85.0"),
    }
    text = render(n).text
    assert "Algebra — Quiz 3: 8.5 / 10 (85.0%)" in text and "2 new grades for Ana" == render(n).subject
    own = Notification.objects.get(recipient=klass["student_user"])
    assert len(own.context["grades"]) == 2


def test_batches_of_students_give_the_same_digests(district, klass, school, monkeypatch):
    from scheduling.jobs import grade_posting_digest as job

    monkeypatch.setattr(job, "REQUEST_CHUNK", 1)
    sibling = f.StudentFactory(school=school, first_name="Bea")
    f.GuardianLinkFactory(guardian=klass["guardian"], student=sibling)
    run_at(district, evening(district, D1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=2))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), student=sibling)
    run = run_at(district, evening(district, D2))
    assert run.result["grades"] == 3 and run.result["students_notified"] == 1 and run.result["guardians_notified"] == 1
    per_child = dict(Notification.objects.filter(recipient=klass["guardian"]).values_list("student__first_name", "context__grade_count"))
    assert per_child == {"Ana": 2, "Bea": 1}


def test_muted_class_is_left_out_of_the_students_own_digest(district, klass, school):
    run_at(district, evening(district, D1))
    art = f.SectionFactory(school=school, course_name="Art", session=klass["section"].session)
    f.SectionEnrollmentFactory(section=art, student=klass["student"], notifications_muted=True)
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), title="Sketch", section=art)
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), title="Quiz")
    run_at(district, evening(district, D2))
    own = Notification.objects.get(recipient=klass["student_user"])
    assert [x["assignment_title"] for x in own.context["grades"]] == ["Quiz"]
    family = Notification.objects.get(recipient=klass["guardian"])
    assert {x["assignment_title"] for x in family.context["grades"]} == {"Quiz", "Sketch"}


def test_only_muted_grades_send_the_student_nothing(district, klass, school):
    run_at(district, evening(district, D1))
    art = f.SectionFactory(school=school, course_name="Art", session=klass["section"].session)
    f.SectionEnrollmentFactory(section=art, student=klass["student"], notifications_muted=True)
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), section=art)
    run = run_at(district, evening(district, D2))
    assert not Notification.objects.filter(recipient=klass["student_user"]).exists()
    assert run.result["students_notified"] == 0 and run.result["guardians_notified"] == 1


@pytest.mark.parametrize(("frequency", "rows", "items"), [("daily", 0, 1), ("weekly", 0, 1), ("never", 1, 0), ("immediately", 1, 0)])
def test_guardian_frequency_is_honoured(district, klass, frequency, rows, items):
    from notifications.models import NotificationPreference

    NotificationPreference.objects.filter(user=klass["guardian"]).update(frequency=frequency)
    run_at(district, evening(district, D1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1))
    run = run_at(district, evening(district, D2))
    assert Notification.objects.filter(recipient=klass["guardian"]).count() == rows
    assert DigestItem.objects.filter(recipient=klass["guardian"], frequency=frequency).count() == items
    if frequency == "never":
        assert Notification.objects.get(recipient=klass["guardian"]).status == "suppressed"
        assert run.result["guardians_notified"] == 0
    else:
        assert run.result["guardians_notified"] == 1


def test_revoked_guardian_and_adult_student_are_applied(district, klass, school):
    from students.models import GuardianLink

    GuardianLink.objects.filter(guardian=klass["guardian"]).update(access_revoked=True)
    adult = f.StudentFactory(school=school, birth_date=dt.date(2008, 1, 1), consents_to_guardian_access=False)
    parent = f.UserFactory(roles=[Role.GUARDIAN])
    f.GuardianLinkFactory(guardian=parent, student=adult)
    run_at(district, evening(district, D1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), student=adult)
    run = run_at(district, evening(district, D2))
    reasons = dict(Notification.objects.filter(recipient__in=[klass["guardian"], parent]).values_list("recipient__username", "status_reason"))
    assert reasons == {"mom": "guardian-access-revoked", parent.username: "student-18-no-consent"}
    assert run.result["guardians_notified"] == 0 and run.result["students_notified"] == 1


def test_low_grade_alert_is_separate_and_immediate(district, klass):
    from notifications.models import NotificationPreference

    NotificationPreference.objects.filter(user=klass["guardian"]).update(frequency="daily", low_grade_threshold=Decimal("70"))
    f.NotificationPreferenceFactory(user=klass["guardian"], category="grade-digest", channel="push",
                                    frequency="never", low_grade_threshold=Decimal("60"))
    f.DeviceTokenFactory(user=klass["guardian"])
    run_at(district, evening(district, D1))
    low = grade(klass, evening(district, D2) - dt.timedelta(hours=1), score="13", max_score="20", title="Essay")  # 65%
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), score="7", max_score="10", title="Quiz")  # 70%: not below
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), score="5", max_score="10", title="Test")  # 50%: below both
    run = run_at(district, evening(district, D2))
    alerts = Notification.objects.filter(recipient=klass["guardian"], category="performance-alert")
    assert sorted((n.channel, n.context["assignment_title"]) for n in alerts) == [
        ("email", "Essay"), ("email", "Test"), ("push", "Test"),
    ]
    assert {n.priority for n in alerts} == {"high"} and {n.status for n in alerts} == {"pending"}
    assert run.result["low_grade_alerts"] == 3
    essay = alerts.get(channel="email", context__assignment_title="Essay")
    assert "13 / 20 (65.0%)" in render(essay).text and essay.student_id == low.student_id
    push = render(alerts.get(channel="push"))
    assert "Test" not in push.push_body and "50" not in push.push_body  # lock screens show no grades
    # The digest (daily for this guardian) still lists every grade.
    item = DigestItem.objects.get(recipient=klass["guardian"])
    assert len(item.context["grades"]) == 3


def test_spanish_digest_and_the_daily_digest_render(district, klass):
    from notifications.models import NotificationPreference
    from notifications.services import digests_assemble
    from students.models import GuardianLink

    GuardianLink.objects.filter(guardian=klass["guardian"]).update(preferred_language="es")
    NotificationPreference.objects.filter(user=klass["student_user"]).update(frequency="daily")
    run_at(district, evening(district, D1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), score="9", max_score="12", title="Ensayo")
    run_at(district, evening(district, D2))
    es = render(Notification.objects.get(recipient=klass["guardian"]))
    assert es.subject == "1 calificación nueva de Ana" and "Ensayo: 9 / 12 (75.0 %)" in es.text
    with time_machine.travel(evening(district, D3) - dt.timedelta(hours=12), tick=False):
        assembled = digests_assemble(frequency="daily")
    assert assembled.digests == 1
    daily = render(Notification.objects.get(recipient=klass["student_user"], template="digest"))
    assert "Algebra — Ensayo: 9 / 12 (75.0%)" in daily.text


def test_same_slot_twice_changes_nothing(district, klass):
    run_at(district, evening(district, D1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), score="1")
    from notifications.models import NotificationPreference

    NotificationPreference.objects.filter(user=klass["guardian"]).update(low_grade_threshold=Decimal("50"))
    NotificationPreference.objects.filter(user=klass["student_user"]).update(frequency="daily")
    first = run_at(district, evening(district, D2))
    assert first.result["digest_items"] == 1 and DigestItem.objects.count() == 1
    state = (list(Notification.objects.values_list("id", "dedupe_key", "status")), list(DigestItem.objects.values_list("id")))
    again = run_at(district, evening(district, D2), trigger=JobRun.Trigger.MANUAL)
    assert again.result["notifications_queued"] == 0
    assert again.result["students_notified"] == first.result["students_notified"] == 1
    assert state == (list(Notification.objects.values_list("id", "dedupe_key", "status")), list(DigestItem.objects.values_list("id")))


def test_the_run_is_in_the_access_trail(district, klass):
    grade(klass, evening(district, D2) - dt.timedelta(hours=1))
    run = run_at(district, evening(district, D2))
    assert AccessLog.objects.filter(job_run_id=run.id, model__icontains="grade").exists()


def _students_with_grades(n: int, district, school, section, posted_at):
    for i in range(n):
        student = f.StudentFactory(school=school, user=f.UserFactory(roles=[Role.STUDENT]))
        guardian = f.UserFactory(roles=[Role.GUARDIAN])
        f.GuardianLinkFactory(guardian=guardian, student=student)
        f.NotificationPreferenceFactory(user=guardian, category="grade-digest", channel="email",
                                        frequency="immediately" if i % 2 else "daily", low_grade_threshold=Decimal("90"))
        f.SectionEnrollmentFactory(section=section, student=student, notifications_muted=i % 3 == 0)
        assignment = f.AssignmentFactory(section=section)
        f.GradeFactory(assignment=assignment, student=student, score=Decimal(60 + i), posted_at=posted_at)


def test_query_count_does_not_grow_with_students(district, school, klass, django_assert_num_queries):
    run_at(district, evening(district, D1))
    _students_with_grades(4, district, school, klass["section"], evening(district, D2) - dt.timedelta(hours=1))
    with CaptureQueriesContext(connection) as small:
        small_run = run_at(district, evening(district, D2))
    _students_with_grades(25, district, school, klass["section"], evening(district, D3) - dt.timedelta(hours=1))
    with CaptureQueriesContext(connection) as large:
        large_run = run_at(district, evening(district, D3))
    assert (small_run.result["grades"], large_run.result["grades"]) == (4, 25)
    assert statements(large.captured_queries) == statements(small.captured_queries)
    if connection.vendor == "postgresql":
        _students_with_grades(40, district, school, klass["section"], evening(district, dt.date(2026, 11, 5)) - dt.timedelta(hours=1))
        with django_assert_num_queries(len(small.captured_queries)):
            run_at(district, evening(district, dt.date(2026, 11, 5)))


def test_jobs_run_command(district, klass):
    run_at(district, evening(district, D1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1))
    out = io.StringIO()
    with time_machine.travel(evening(district, D2) + dt.timedelta(minutes=3), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.id), "--as-of", f"{D2.isoformat()}T20:00", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["status"] == "succeeded"
    assert payload["result"]["grades"] == 1 and payload["result"]["guardians_notified"] == 1


def _graded_in_bulk(n: int, *, with_guardian: int, school, section, posted_at) -> None:
    """``n`` students with one grade each, the first ``with_guardian`` with a guardian (and so
    a digest); bulk inserts, because the point is more students than a batch used to hold."""
    from django.contrib.auth import get_user_model

    from students.models import Grade, GuardianLink, Student

    start = Student.objects.count()
    students = Student.objects.bulk_create(
        [f.StudentFactory.build(school=school, local_id=f"bulk-{start + i}") for i in range(n)]
    )
    guardians = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"bulk-guardian-{start + i}", email=f"g{start + i}@example.org") for i in range(with_guardian)]
    )
    GuardianLink.objects.bulk_create([GuardianLink(guardian=g, student=s) for g, s in zip(guardians, students)])
    assignment = f.AssignmentFactory(section=section)
    Grade.objects.bulk_create([Grade(assignment=assignment, student=s, score=Decimal("80"), posted_at=posted_at) for s in students])


def test_query_count_does_not_grow_with_students_read(district, school, klass, django_assert_num_queries):
    # 2,100 graded students were two batches of 2,000 before, each with its own grade,
    # muted-class, guardian and threshold reads and outbox calls. One stream reads them now;
    # the only growth left is one outbox chunk per 2,000 messages written (610 here: one).
    run_at(district, evening(district, D1))
    _graded_in_bulk(3, with_guardian=3, school=school, section=klass["section"], posted_at=evening(district, D2) - dt.timedelta(hours=1))
    with CaptureQueriesContext(connection) as small:
        small_run = run_at(district, evening(district, D2))
    assert (small_run.result["grades"], small_run.result["notifications_queued"]) == (3, 3)
    _graded_in_bulk(2100, with_guardian=600, school=school, section=klass["section"], posted_at=evening(district, D3) - dt.timedelta(hours=1))
    grade(klass, evening(district, D3) - dt.timedelta(hours=1), score="5")  # Ana and her mother too
    if connection.vendor == "postgresql":
        with django_assert_num_queries(len(small.captured_queries)):
            large_run = run_at(district, evening(district, D3))
    else:
        with CaptureQueriesContext(connection) as large:  # SQLite's split bulk inserts count once
            large_run = run_at(district, evening(district, D3))
        assert statements(large.captured_queries) == statements(small.captured_queries)
    assert large_run.result["grades"] == 2101
    assert (large_run.result["guardians_notified"], large_run.result["students_notified"]) == (601, 1)
    assert large_run.result["notifications_queued"] == 602


def test_a_guardian_who_chose_texts_gets_the_digest_by_sms_until_stop(client, district, klass, settings):
    """SMS opt-in (consent + the grade-digest preference by SMS) adds a text without scores;
    a signed STOP reply to Twilio's webhook and the next digest sends no text, email as before."""
    from twilio.request_validator import RequestValidator

    from notifications.models import Status
    from notifications.services import recipient_sms_consent_record

    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "7" * 32, "hook-token"
    guardian = klass["guardian"]
    recipient_sms_consent_record(user_id=guardian.pk, mobile_number="+12025550143", method="portal")
    f.NotificationPreferenceFactory(user=guardian, category="grade-digest", channel="sms", frequency="immediately")
    run_at(district, evening(district, D1))
    grade(klass, evening(district, D2) - dt.timedelta(hours=1), score="17", max_score="20")
    run_at(district, evening(district, D2))
    text = Notification.objects.get(recipient=guardian, channel="sms")
    assert text.status == Status.PENDING and text.category == "grade-digest"
    body = render(text).sms_body
    assert "Ana" in body and not any(ch.isdigit() for ch in body)
    assert Notification.objects.filter(channel="sms").count() == 1  # the student's own account: no text

    params = {"AccountSid": settings.TWILIO_ACCOUNT_SID, "From": "+12025550143", "Body": "STOP", "To": "+15005550006"}
    signature = RequestValidator("hook-token").compute_signature("http://testserver/notifications/twilio/inbound", params)
    assert client.post("/notifications/twilio/inbound", params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200

    grade(klass, evening(district, D3) - dt.timedelta(hours=1))
    run = run_at(district, evening(district, D3))
    assert run.result["guardians_notified"] == 1  # by email
    assert Notification.objects.filter(recipient=guardian, channel="email").count() == 2
    assert Notification.objects.filter(recipient=guardian, channel="sms").count() == 1  # D2's only
