"""The FERPA access trail records every statement a unit of work runs on student data."""
import datetime as dt
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from iep.models import IEPTeamMember
from skillcore.access import access_trail
from skillcore.models import AccessLog
from students.models import AttendanceRecord, District, Student
from tests import factories as f
from tests.conftest import TRAIL_TRUNCATE_TRIGGER

pytestmark = pytest.mark.django_db


def _log(model, operation):
    return AccessLog.objects.get(model=model, operation=operation)


def test_a_block_that_reads_students_writes_access_rows_with_their_ids(school):
    students = f.StudentFactory.create_batch(3, school=school)
    with access_trail(purpose="attendance review", actor_label="job run 7", job_run_id=7):
        list(Student.objects.filter(school=school))
    row = _log("students.Student", "read")
    assert row.student_ids == sorted(s.id for s in students)
    assert (row.row_count, row.student_count, row.query_count) == (3, 3, 1)
    assert row.job_run_id == 7 and row.purpose == "attendance review"


def test_reads_of_related_tables_record_the_student_column(school):
    a, b = f.StudentFactory.create_batch(2, school=school)
    f.AttendanceRecordFactory(student=a, date=dt.date(2026, 9, 1))
    f.AttendanceRecordFactory(student=a, date=dt.date(2026, 9, 2))
    f.AttendanceRecordFactory(student=b, date=dt.date(2026, 9, 1))
    with access_trail(purpose="p", actor_label="t"):
        # values() and iterator() are read through the same wrapper.
        list(AttendanceRecord.objects.values("student_id", "status"))
        for _ in AttendanceRecord.objects.iterator(chunk_size=1):
            pass
    row = _log("students.AttendanceRecord", "read")
    assert row.student_ids == sorted([a.id, b.id])
    assert row.query_count == 2 and row.row_count == 6


def test_bulk_create_update_and_delete_are_recorded(school):
    a, b, c = f.StudentFactory.create_batch(3, school=school)
    with access_trail(purpose="bulk", actor_label="t"):
        AttendanceRecord.objects.bulk_create(
            [AttendanceRecord(student=s, date=dt.date(2026, 9, 3), status="present") for s in (a, b, c)]
        )
        AttendanceRecord.objects.filter(student__in=[a, b]).update(status="tardy")
        AttendanceRecord.objects.filter(student=c).delete()
    assert _log("students.AttendanceRecord", "create").student_ids == sorted([a.id, b.id, c.id])
    updated = _log("students.AttendanceRecord", "update")
    assert updated.student_ids == sorted([a.id, b.id]) and updated.row_count == 2
    assert _log("students.AttendanceRecord", "delete").student_ids == [c.id]
    # The row counts Django reports are unchanged by the trail's RETURNING clause.
    with access_trail(purpose="bulk", actor_label="t"):
        assert AttendanceRecord.objects.filter(student=a).update(status="present") == 1
        assert AttendanceRecord.objects.filter(student=b).delete()[0] == 1


def test_bulk_update_and_save_are_recorded(school):
    a, b = f.StudentFactory.create_batch(2, school=school)
    with access_trail(purpose="p", actor_label="t"):
        a.grade_level, b.grade_level = 10, 10
        Student.objects.bulk_update([a, b], ["grade_level"])
        f.AttendanceRecordFactory(student=a, date=dt.date(2026, 9, 9))
    assert _log("students.Student", "update").student_ids == sorted([a.id, b.id])
    assert _log("students.AttendanceRecord", "create").student_ids == [a.id]


def test_tables_without_student_data_are_not_logged(district):
    with access_trail(purpose="p", actor_label="t"):
        list(District.objects.all())
    assert not AccessLog.objects.exists()


def test_tables_one_hop_from_students_are_logged_without_ids():
    member = f.IEPTeamMemberFactory()
    with access_trail(purpose="p", actor_label="t"):
        list(IEPTeamMember.objects.all())
    row = _log("iep.IEPTeamMember", "read")
    assert row.row_count == 1 and row.student_ids == []
    assert member.pk


def test_the_trail_is_written_when_the_block_raises(school):
    f.StudentFactory(school=school)
    with pytest.raises(RuntimeError):
        with access_trail(purpose="p", actor_label="t"):
            list(Student.objects.all())
            raise RuntimeError("job failed")
    assert _log("students.Student", "read").row_count == 1


def test_nested_blocks_fold_into_the_outer_one(school):
    f.StudentFactory(school=school)
    with access_trail(purpose="outer", actor_label="t"):
        with access_trail(purpose="inner", actor_label="t"):
            list(Student.objects.all())
        list(Student.objects.all())
    row = _log("students.Student", "read")
    assert row.purpose == "outer" and row.query_count == 2


def test_the_actor_is_recorded(counselor, school):
    f.StudentFactory(school=school)
    with access_trail(purpose="admin view", actor=counselor):
        list(Student.objects.all())
    row = _log("students.Student", "read")
    assert row.actor == counselor and row.actor_label == "counselor"


def test_update_of_the_log_fails_on_postgresql(on_postgres):
    if not on_postgres:
        pytest.skip("the append-only trigger is PostgreSQL's; SQLite is the demo database")
    row = f.AccessLogFactory()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AccessLog.objects.filter(pk=row.pk).update(purpose="changed")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AccessLog.objects.filter(pk=row.pk).delete()
    assert AccessLog.objects.get(pk=row.pk).purpose == "test"


@pytest.mark.django_db(transaction=True)
def test_truncate_of_the_log_fails_on_postgresql(on_postgres):
    if not on_postgres:
        pytest.skip("the append-only trigger is PostgreSQL's; SQLite is the demo database")
    f.AccessLogFactory()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            # The test database switches this trigger off for the flush between transactional
            # tests (tests/conftest.py); production's is always on. Re-enabled here inside the
            # transaction, which the refused TRUNCATE rolls back.
            cursor.execute(f"ALTER TABLE skillcore_accesslog ENABLE TRIGGER {TRAIL_TRUNCATE_TRIGGER}")
            cursor.execute("TRUNCATE skillcore_accesslog")
    assert AccessLog.objects.count() == 1


def test_purge_deletes_only_rows_past_the_retention(on_postgres):
    from skillcore.services import access_log_purge

    now = timezone.now()
    old = f.AccessLogFactory(at=now - dt.timedelta(days=7 * 366))
    recent = f.AccessLogFactory(at=now - dt.timedelta(days=6 * 365))
    deleted = access_log_purge(now=now)
    assert deleted == 1
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [recent.pk]
    assert old.pk != recent.pk


def test_purge_refuses_a_retention_shorter_than_seven_years():
    from skillcore.services import access_log_purge

    with pytest.raises(ValueError, match="7 years"):
        access_log_purge(now=timezone.now(), retention_days=365)


def test_query_count_of_a_job_sized_read_is_unchanged_by_the_trail(school, django_assert_num_queries):
    f.StudentFactory.create_batch(5, school=school)
    with access_trail(purpose="p", actor_label="t"):
        with django_assert_num_queries(1):
            list(Student.objects.all())
    # and one INSERT writes the whole trail on exit
    assert AccessLog.objects.count() == 1


def test_fraction_present_decimal_params_do_not_confuse_insert_parsing(school):
    s = f.StudentFactory(school=school)
    with access_trail(purpose="p", actor_label="t"):
        AttendanceRecord.objects.create(student=s, date=dt.date(2026, 9, 4), status="absent-excused",
                                        fraction_present=Decimal("0"))
    assert _log("students.AttendanceRecord", "create").student_ids == [s.id]


def test_tables_read_through_a_subquery_are_recorded(school):
    from django.db.models import Exists, OuterRef

    from students.models import Submission

    student = f.StudentFactory(school=school)
    with access_trail(purpose="p", actor_label="t"):
        list(Student.objects.filter(~Exists(Submission.objects.filter(student=OuterRef("pk")))))
    assert _log("students.Student", "read").student_ids == [student.id]
    via_subquery = _log("students.Submission", "read")
    assert via_subquery.query_count == 1 and via_subquery.row_count == 0


def test_bulk_create_ignoring_conflicts_is_recorded(school):
    a, b = f.StudentFactory.create_batch(2, school=school)
    with access_trail(purpose="p", actor_label="t"):
        AttendanceRecord.objects.bulk_create(
            [AttendanceRecord(student=s, date=dt.date(2026, 9, 3), status="present") for s in (a, b)],
            ignore_conflicts=True,
        )
    assert _log("students.AttendanceRecord", "create").student_ids == sorted([a.id, b.id])
