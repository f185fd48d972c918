"""Digest requests are idempotent by dedupe key even after assembly: the digest items are
deleted when their digest is built, the accepted keys (DigestDedupeKey) are not."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection, connections, transaction

from notifications.models import DigestDedupeKey, DigestItem, Notification, NotificationPreference
from notifications.services import (
    NotificationRequest,
    digest_dedupe_keys_prune,
    digests_assemble,
    notifications_enqueue,
)
from students.models import Role
from tests import factories as f

UTC = dt.UTC
DAY1 = dt.datetime(2026, 10, 14, 16, 0, tzinfo=UTC)  # Wednesday noon in New York
NEXT_MORNING = dt.datetime(2026, 10, 15, 4, 5, tzinfo=UTC)  # Thursday 00:05 EDT


def grade(user, student, *, grade_id, score=12):
    return NotificationRequest(
        recipient_id=user.pk, category="grade-digest", channel="email", template="grade-posted",
        context={"course_name": "Algebra", "assignment_title": f"Quiz {grade_id}", "score": score, "max_score": 20},
        dedupe_key=f"grade:{grade_id}:posted:{user.pk}:email", student_id=student.pk,
        object_key=f"grade:{grade_id}", event="posted",
    )


def digest_titles(user) -> list[str]:
    """Assignment titles in every digest ``user`` got, with repeats."""
    return sorted(
        item["assignment_title"]
        for context in Notification.objects.filter(recipient=user, template="digest").values_list("context", flat=True)
        for child in context["children"] for item in child["items"]
    )


@pytest.fixture
def guardian(family):
    f.NotificationPreferenceFactory(user=family["guardian"], category="grade-digest", channel="email", frequency="daily")
    return family["guardian"]


def test_a_rerun_after_assembly_adds_nothing_to_the_next_daily_digest(family, guardian):
    maria = family["student"]
    with time_machine.travel(DAY1, tick=False):
        first = notifications_enqueue([grade(guardian, maria, grade_id=1)])
    with time_machine.travel(NEXT_MORNING, tick=False):
        assert digests_assemble(frequency="daily").digests == 1
        # The same job slot re-run after assembly (its items are gone): nothing new.
        again = notifications_enqueue([grade(guardian, maria, grade_id=1)])
    assert (first.digested, again.digested, again.duplicates) == (1, 0, 1)
    assert not DigestItem.objects.exists()

    # The next day's digest has the next day's grade only, not Quiz 1 again.
    with time_machine.travel(NEXT_MORNING + dt.timedelta(hours=12), tick=False):
        notifications_enqueue([grade(guardian, maria, grade_id=1), grade(guardian, maria, grade_id=2)])
    with time_machine.travel(NEXT_MORNING + dt.timedelta(days=1), tick=False):
        assert digests_assemble(frequency="daily").digests == 1
    assert digest_titles(guardian) == ["Quiz 1", "Quiz 2"]  # each exactly once
    assert DigestDedupeKey.objects.count() == 2


def test_a_retry_across_local_midnight_stays_in_the_first_period(family, guardian):
    maria = family["student"]
    with time_machine.travel(dt.datetime(2026, 10, 15, 3, 50, tzinfo=UTC), tick=False):  # 23:50 EDT
        notifications_enqueue([grade(guardian, maria, grade_id=1)])
    with time_machine.travel(dt.datetime(2026, 10, 15, 4, 10, tzinfo=UTC), tick=False):  # 00:10 EDT, next period
        again = notifications_enqueue([grade(guardian, maria, grade_id=1)])
    assert (again.digested, again.duplicates) == (0, 1)
    assert list(DigestItem.objects.values_list("period_start", flat=True)) == [dt.date(2026, 10, 14)]
    with time_machine.travel(dt.datetime(2026, 10, 17, 4, 10, tzinfo=UTC), tick=False):
        assert digests_assemble(frequency="daily").digests == 1
    assert digest_titles(guardian) == ["Quiz 1"]


def test_a_rerun_after_the_weekly_assembly_adds_nothing_to_the_next_week(family, guardian):
    maria = family["student"]
    NotificationPreference.objects.filter(user=guardian).update(frequency="weekly")
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(guardian, maria, grade_id=1)])
    monday = dt.datetime(2026, 10, 19, 4, 30, tzinfo=UTC)  # Monday 00:30 EDT
    with time_machine.travel(monday, tick=False):
        assert digests_assemble(frequency="weekly").digests == 1
        again = notifications_enqueue([grade(guardian, maria, grade_id=1), grade(guardian, maria, grade_id=2)])
    assert (again.digested, again.duplicates) == (1, 1)
    assert list(DigestItem.objects.values_list("object_key", "period_start")) == [("grade:2", dt.date(2026, 10, 19))]
    with time_machine.travel(monday + dt.timedelta(days=7), tick=False):
        assert digests_assemble(frequency="weekly").digests == 1
    assert digest_titles(guardian) == ["Quiz 1", "Quiz 2"]


def test_a_key_moves_neither_way_between_digest_and_outbox(family, guardian):
    """A preference changed between a run and its re-run does not send the message twice."""
    maria = family["student"]
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(guardian, maria, grade_id=1)])
        NotificationPreference.objects.filter(user=guardian).update(frequency="immediately")
        again = notifications_enqueue([grade(guardian, maria, grade_id=1)])
    assert (again.inserted, again.duplicates) == (0, 1)
    assert not Notification.objects.exists()


def _guardians(school, n):
    reqs = []
    for i in range(n):
        s = f.StudentFactory(school=school)
        g = f.UserFactory(roles=[Role.GUARDIAN])
        f.GuardianLinkFactory(guardian=g, student=s)
        f.NotificationPreferenceFactory(user=g, category="grade-digest", channel="email", frequency="daily")
        reqs.append(grade(g, s, grade_id=i))
    return reqs


def test_query_count_of_a_rerun_after_assembly_is_flat_in_the_batch(school, django_assert_num_queries):
    from django.test.utils import CaptureQueriesContext

    small, large = _guardians(school, 2), _guardians(school, 25)
    with time_machine.travel(DAY1, tick=False):
        with CaptureQueriesContext(connection) as first_small:
            notifications_enqueue(small)
        with django_assert_num_queries(len(first_small)):
            s = notifications_enqueue(large)
    assert s.digested == 25
    with time_machine.travel(NEXT_MORNING, tick=False):
        assert digests_assemble(frequency="daily").digests == 27
        # Every key is known: one savepoint, one UNION lookup, release; no write at all.
        with django_assert_num_queries(3):
            assert notifications_enqueue(small).duplicates == 2
        with django_assert_num_queries(3):
            assert notifications_enqueue(large).duplicates == 25
    assert not DigestItem.objects.exists()


def test_prune_forgets_keys_older_than_60_days_in_batches(db):
    now = dt.datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    DigestDedupeKey.objects.bulk_create(
        [DigestDedupeKey(dedupe_key=f"old:{i}", created_at=now - dt.timedelta(days=61, minutes=i)) for i in range(5)]
        + [DigestDedupeKey(dedupe_key="edge", created_at=now - dt.timedelta(days=60)),
           DigestDedupeKey(dedupe_key="new", created_at=now - dt.timedelta(days=2))]
    )
    assert digest_dedupe_keys_prune(now=now, batch_size=2) == 5
    assert sorted(DigestDedupeKey.objects.values_list("dedupe_key", flat=True)) == ["edge", "new"]
    assert digest_dedupe_keys_prune(now=now) == 0


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_enqueue_of_the_same_key_adds_no_second_item(pg_only, family, guardian, monkeypatch):
    """PostgreSQL: another transaction accepts the key after this chunk's lookup but before its
    insert; ON CONFLICT waits for it, RETURNING leaves the key out, and no item is written."""
    from notifications import services

    request = grade(guardian, family["student"], grade_id=1)
    inserted, release = threading.Event(), threading.Event()

    def other_worker():
        try:
            with transaction.atomic():
                DigestDedupeKey.objects.create(dedupe_key=request.dedupe_key, created_at=DAY1)
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()

    original = services._accept_digest_keys

    def accept_while_the_other_commits(keys, *, now):
        # Step 1 has run and saw no key; the other transaction commits while our INSERT waits.
        threading.Timer(0.3, release.set).start()
        return original(keys, now=now)

    worker = threading.Thread(target=other_worker)
    worker.start()
    try:
        assert inserted.wait(10)
        monkeypatch.setattr(services, "_accept_digest_keys", accept_while_the_other_commits)
        with time_machine.travel(DAY1, tick=False):
            summary = services.notifications_enqueue([request])
    finally:
        release.set()
        worker.join(10)
    assert (summary.digested, summary.duplicates) == (0, 1)
    assert not DigestItem.objects.exists()
    assert DigestDedupeKey.objects.count() == 1


def test_the_data_archival_job_prunes_old_digest_keys(district, settings, tmp_path):
    from scheduling.models import JobRun
    from tests.jobs.slot_runs import local_slot, run_slot

    settings.STORAGES = {**settings.STORAGES, "archive": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    slot = local_slot(district, 2026, 12, 1, 3)
    DigestDedupeKey.objects.bulk_create([
        DigestDedupeKey(dedupe_key="october", created_at=slot - dt.timedelta(days=61)),
        DigestDedupeKey(dedupe_key="november", created_at=slot - dt.timedelta(days=20)),
    ])
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot("data-archival", district, slot)
    assert run.status == JobRun.Status.SUCCEEDED and run.result["digest_keys_deleted"] == 1
    assert list(DigestDedupeKey.objects.values_list("dedupe_key", flat=True)) == ["november"]
