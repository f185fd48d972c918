"""The access trail under faults, with a real ``manage.py qcluster`` on PostgreSQL.

data-archival deletes old grades in batches (40 rows here), each batch's DELETE and its
checkpoint in one transaction. The test holds a row lock on a grade of the third batch from
a connection of its own, so the worker commits batches 1 and 2 and then waits inside batch
3's transaction: a deterministic "mid-run" at which the fault is injected.

- kill -9 of the worker: every grade deleted so far has its student on a delete row of the
  run's trail (model students.Grade), before the run is recovered and after its retry ends.
- the test database's backends terminated (what a PostgreSQL restart does to each
  session): the same.

The expected ids are captured before the run (grade id -> student id); grades are made
student by student so each batch holds different students, and the committed batches name
exactly theirs, no more.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from scheduling import services
from scheduling.models import JobRun
from skillcore.models import AccessLog
from students.models import Grade
from tests import factories as f
from tests.scheduling.conftest import postgres_only  # noqa: F401
from tests.support.qcluster import cluster_env, database_url, qcluster, wait

BATCH = 40
STUDENTS, ASSIGNMENTS = 20, 10  # 200 old grades: 5 batches of 4 students each
GRADE = "students.Grade"


@pytest.fixture
def old_grades(db):
    district = f.DistrictFactory(name="Archive Falls", time_zone="America/Chicago")
    school = f.SchoolFactory(district=district)
    section = f.SectionFactory(school=school)
    assignments = [f.AssignmentFactory(section=section) for _ in range(ASSIGNMENTS)]
    students = [f.StudentFactory(school=school, enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
                for _ in range(STUDENTS)]
    posted = dt.datetime(2015, 3, 1, 12, tzinfo=district.zone)
    Grade.objects.bulk_create([Grade(student=s, assignment=a, score=Decimal("90"), posted_at=posted)
                               for s in students for a in assignments])
    student_of = dict(Grade.objects.order_by("id").values_list("id", "student_id"))
    return district, student_of


def _start(district, tmp_path):
    slot = dt.datetime(2026, 12, 1, 3, tzinfo=district.zone)
    env = cluster_env(SCHEDULING_EXTRA_JOB_MODULES="tests.guarantees.archival_batches",
                      ARCHIVAL_TEST_BATCH=str(BATCH), MEDIA_ROOT=str(tmp_path / "media"))
    return slot, env


def _lock(grade_id: int) -> psycopg.Connection:
    """Hold a row lock on one grade from a connection of the test's own (not Django's)."""
    locker = psycopg.connect(database_url())
    locker.execute("SELECT id FROM students_grade WHERE id = %s FOR UPDATE", [grade_id])
    return locker


def _worker_waits_on_the_lock() -> bool:
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND wait_event_type = 'Lock' AND query LIKE 'SELECT \"students_grade\".%%'")
        return c.fetchone()[0] > 0


def _deleted_students(student_of: dict[int, int]) -> set[int]:
    left = set(Grade.objects.values_list("id", flat=True))
    return {student for grade, student in student_of.items() if grade not in left}


def _trail_deletes(*run_ids: int) -> set[int]:
    ids: set[int] = set()
    for row in AccessLog.objects.filter(job_run_id__in=run_ids, model=GRADE, operation="delete"):
        ids.update(row.student_ids)
    return ids


def _mid_run(district, student_of, slot):
    """Run the job until it has committed two batches and waits inside the third."""
    grade_ids = sorted(student_of)
    locker = _lock(grade_ids[2 * BATCH])
    try:
        run = services.run_now(job_slug="data-archival", district=district, acting_user=None, as_of=slot)
        wait(lambda: JobRun.objects.filter(pk=run.pk, status="running",
                                           checkpoint__after__grades=grade_ids[2 * BATCH - 1]).exists(), 60, "two batches")
        wait(_worker_waits_on_the_lock, 30, "the worker inside batch 3")
    except BaseException:
        locker.close()  # or the test database's flush waits for the lock forever
        raise
    return JobRun.objects.get(pk=run.pk), locker


def _recover_and_finish(run: JobRun) -> JobRun:
    """The lost-run recovery an hour later (the job's timeout): the run's deadline is moved
    to now instead of waiting, then the scheduler pass's reaper queues the retry for the
    cluster, which resumes from the checkpoint."""
    JobRun.objects.filter(pk=run.pk, status="running").update(deadline=timezone.now() - dt.timedelta(seconds=1))
    services.reap_lost_runs()
    retry = JobRun.objects.get(retry_of=run.pk)
    if retry.status == JobRun.Status.QUEUED and not retry.task_id:
        # A failed run's retry waits for its backoff as a one-off schedule: due now.
        from django_q.models import Schedule

        Schedule.objects.filter(name=f"skillcore:retry:{retry.pk}").update(next_run=timezone.now())
    return wait(lambda: JobRun.objects.filter(pk=retry.pk, status__in=["succeeded", "failed"]).first(),
                120, "the retry to finish")


def _assert_trail_after_recovery(run, retry, student_of, log):
    assert retry.status == "succeeded", (retry.error, log[-3000:])
    assert not Grade.objects.exists()
    every = set(student_of.values())
    assert _trail_deletes(run.pk, retry.pk) == every
    assert len(_trail_deletes(retry.pk)) == STUDENTS - 8  # the retry resumed after the two batches


@pytest.mark.django_db(transaction=True)
def test_a_sigkilled_worker_leaves_every_committed_delete_on_the_trail(postgres_only, old_grades, tmp_path):  # noqa: F811
    district, student_of = old_grades
    slot, env = _start(district, tmp_path)
    with qcluster(env, tmp_path / "qcluster.log"):
        run, locker = _mid_run(district, student_of, slot)
        os.kill(int(run.worker.rsplit(":", 1)[1]), signal.SIGKILL)
        locker.close()  # the dead worker's transaction (batch 3) never commits
        deleted = _deleted_students(student_of)
        assert len(deleted) == 8  # two batches of four students
        # Before recovery: every committed delete is on the run's trail, and the reads
        # of each committed batch were flushed with its checkpoint.
        assert _trail_deletes(run.pk) == deleted
        assert AccessLog.objects.filter(job_run_id=run.pk, model=GRADE, operation="read").exists()
        retry = _recover_and_finish(run)
        assert _trail_deletes(run.pk) == deleted  # after recovery: unchanged, and nothing twice
    _assert_trail_after_recovery(run, retry, student_of, (tmp_path / "qcluster.log").read_text())


@pytest.mark.django_db(transaction=True)
def test_terminated_database_sessions_leave_every_committed_delete_on_the_trail(postgres_only, old_grades, tmp_path):  # noqa: F811
    district, student_of = old_grades
    slot, env = _start(district, tmp_path)
    with qcluster(env, tmp_path / "qcluster.log"):
        run, locker = _mid_run(district, student_of, slot)
        with connection.cursor() as c:
            # Every session of the test database but this one: the worker's (waiting inside
            # batch 3), the locker's, the scheduler's.
            c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            assert c.fetchone()[0] >= 2
        locker.close()
        deleted = _deleted_students(student_of)
        assert len(deleted) == 8
        assert _trail_deletes(run.pk) == deleted
        retry = _recover_and_finish(run)
        assert _trail_deletes(run.pk) == deleted
    _assert_trail_after_recovery(run, retry, student_of, (tmp_path / "qcluster.log").read_text())
