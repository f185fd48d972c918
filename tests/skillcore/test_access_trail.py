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


def test_tables_one_hop_from_students_are_logged_with_their_parents_students():
    member = f.IEPTeamMemberFactory()
    with access_trail(purpose="p", actor_label="t"):
        list(IEPTeamMember.objects.all())
    row = _log("iep.IEPTeamMember", "read")
    assert row.row_count == 1 and row.student_ids == [member.iep.student_id] and row.student_count == 1


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


def test_a_read_with_a_subquery_in_its_select_list_is_recorded_as_the_read_of_its_own_table(school):
    """grade-posting-digest streams grades with ``muted``, an EXISTS on the student's
    enrollment, in the select list: the rows returned are grades, and the trail says so."""
    from django.db.models import Exists, OuterRef

    from students.models import Grade, SectionEnrollment

    a, b = f.StudentFactory.create_batch(2, school=school)
    grades = [f.GradeFactory(student=a), f.GradeFactory(student=a), f.GradeFactory(student=b)]
    muted = SectionEnrollment.objects.filter(student_id=OuterRef("student_id"), notifications_muted=True)
    with access_trail(purpose="p", actor_label="t"):
        rows = list(Grade.objects.filter(pk__in=[g.pk for g in grades]).annotate(muted=Exists(muted))
                    .values("id", "student_id", "muted"))
    assert len(rows) == 3
    read = _log("students.Grade", "read")
    assert (read.row_count, read.student_ids) == (3, sorted([a.id, b.id]))
    through_subquery = _log("students.SectionEnrollment", "read")
    assert (through_subquery.query_count, through_subquery.row_count) == (1, 0)


def test_bulk_create_ignoring_conflicts_is_recorded(school):
    a, b = f.StudentFactory.create_batch(2, school=school)
    with access_trail(purpose="p", actor_label="t"):
        AttendanceRecord.objects.bulk_create(
            [AttendanceRecord(student=s, date=dt.date(2026, 9, 3), status="present") for s in (a, b)],
            ignore_conflicts=True,
        )
    assert _log("students.AttendanceRecord", "create").student_ids == sorted([a.id, b.id])


# -- writes commit with their trail; reads flush at checkpoints ------------------------------
def test_a_write_has_its_trail_row_at_once_and_a_rolled_back_savepoint_takes_both_away(school):
    kept, dropped = f.StudentFactory.create_batch(2, school=school)
    f.AttendanceRecordFactory(student=kept, date=dt.date(2026, 9, 1))
    f.AttendanceRecordFactory(student=dropped, date=dt.date(2026, 9, 1))
    with access_trail(purpose="p", actor_label="t"):
        with pytest.raises(RuntimeError), transaction.atomic():
            AttendanceRecord.objects.filter(student=dropped).delete()
            assert AccessLog.objects.filter(operation="delete", student_ids=[dropped.id]).exists()
            raise RuntimeError("the batch fails")
        AttendanceRecord.objects.filter(student=kept).delete()
        # Written with the statement, not when the block ends.
        written = AccessLog.objects.get(operation="delete")
    assert written.student_ids == [kept.id] and written.model == "students.AttendanceRecord"
    assert AttendanceRecord.objects.filter(student=dropped).exists()
    assert list(AccessLog.objects.filter(operation="delete").values_list("student_ids", flat=True)) == [[kept.id]]


def test_each_write_statement_gets_one_row_and_its_own_results_stay_readable(school):
    a, b = f.StudentFactory.create_batch(2, school=school)
    with access_trail(purpose="p", actor_label="t"):
        record = AttendanceRecord.objects.create(student=a, date=dt.date(2026, 9, 2), status="present")
        assert record.pk and AttendanceRecord.objects.filter(pk=record.pk).exists()  # INSERT ... RETURNING id
        assert AttendanceRecord.objects.filter(student__in=[a, b]).update(status="tardy") == 1
        assert AttendanceRecord.objects.filter(student=b).update(status="absent") == 0
    rows = AccessLog.objects.filter(model="students.AttendanceRecord").order_by("id")
    assert [(r.operation, r.query_count, r.row_count, r.student_ids) for r in rows] == [
        ("create", 1, 1, [a.id]), ("update", 1, 1, [a.id]),
        # the read of the block, and the UPDATE that matched nothing: no row of its own
        ("read", 1, 1, []), ("update", 1, 0, []),
    ]


@pytest.mark.django_db(transaction=True)
def test_an_autocommit_write_and_its_trail_row_commit_together(school, monkeypatch):
    from skillcore.access import AccessTrail

    a = f.StudentFactory(school=school)
    record = f.AttendanceRecordFactory(student=a, date=dt.date(2026, 9, 1), status="present")
    assert not connection.in_atomic_block
    with access_trail(purpose="p", actor_label="t"):
        AttendanceRecord.objects.filter(pk=record.pk).update(status="tardy")  # QuerySet.update: no atomic of its own
    assert AccessLog.objects.get(operation="update").student_ids == [a.id]

    def refuse(self, connection, items):
        raise DatabaseError("the trail row cannot be written")

    monkeypatch.setattr(AccessTrail, "_insert", refuse)
    with pytest.raises(DatabaseError), access_trail(purpose="p", actor_label="t"):
        AttendanceRecord.objects.filter(pk=record.pk).update(status="absent")
    # No trail row, no change: the statement rolled back with its trail row.
    record.refresh_from_db()
    assert record.status == "tardy"


def _job_context(school):
    from scheduling import registry
    from scheduling.models import JobRun
    from scheduling.runner import JobContext

    run = JobRun.objects.create(job="data-archival", district=school.district, slot=timezone.now(), status="running")
    return JobContext(run=run, job=registry.get("data-archival"))


def test_reads_are_written_with_each_checkpoint_in_its_transaction(school):
    students = f.StudentFactory.create_batch(2, school=school)
    ctx = _job_context(school)
    with access_trail(purpose="p", job_run_id=ctx.run.id):
        list(Student.objects.filter(school=school))
        with transaction.atomic():
            ctx.save_checkpoint({"after": 1})
            assert AccessLog.objects.get(operation="read").student_ids == sorted(s.id for s in students)
        list(Student.objects.filter(pk=students[0].pk))
        assert AccessLog.objects.filter(operation="read").count() == 1  # the second read waits for the next flush
    reads = list(AccessLog.objects.filter(operation="read").order_by("id").values_list("student_ids", flat=True))
    assert reads == [sorted(s.id for s in students), [students[0].id]]


def test_reads_flushed_by_a_checkpoint_that_rolls_back_are_written_again_at_the_end(school):
    student = f.StudentFactory(school=school)
    ctx = _job_context(school)
    with access_trail(purpose="p", job_run_id=ctx.run.id):
        list(Student.objects.filter(school=school))
        with pytest.raises(RuntimeError), transaction.atomic():
            ctx.save_checkpoint({"after": 1})
            raise RuntimeError("the batch fails after its checkpoint")
        assert not AccessLog.objects.exists()
        ctx.run.refresh_from_db()
        assert ctx.run.checkpoint == {}  # the checkpoint rolled back with the batch
    assert AccessLog.objects.get(operation="read").student_ids == [student.id]


# -- one-hop tables name students through their parent ---------------------------------------
def test_one_hop_reads_and_writes_name_the_parents_students(school):
    from iep.models import Accommodation, IEPMeeting, IEPService

    ieps = [f.IEPFactory(student=f.StudentFactory(school=school)) for _ in range(3)]
    plan = f.Section504PlanFactory(student=f.StudentFactory(school=school))
    for iep in ieps:
        f.IEPServiceFactory(iep=iep)
    with access_trail(purpose="p", actor_label="t"):
        IEPMeeting.objects.bulk_create([IEPMeeting(iep=i, purpose="annual-review", scheduled_for=timezone.now())
                                        for i in ieps[:2]])
        list(IEPService.objects.values("iep_id", "minutes_per_month"))
        Accommodation.objects.create(plan=plan, description="Quiet room")
        IEPMeeting.objects.filter(iep=ieps[0]).delete()
    assert _log("iep.IEPMeeting", "create").student_ids == sorted(i.student_id for i in ieps[:2])
    assert _log("iep.IEPService", "read").student_ids == sorted(i.student_id for i in ieps)
    assert _log("iep.IEPService", "read").student_count == 3
    assert _log("iep.Accommodation", "create").student_ids == [plan.student_id]
    assert _log("iep.IEPMeeting", "delete").student_ids == [ieps[0].student_id]


def test_one_hop_ids_are_resolved_in_one_statement_per_table_per_flush(school, monkeypatch):
    from iep.models import IEPService

    for _ in range(30):
        f.IEPServiceFactory(iep=f.IEPFactory(student=f.StudentFactory(school=school)))
    from django.db import connections

    statements = []
    wrapper = type(connections["default"])
    real = wrapper.create_cursor

    def counting(self, name=None):
        cursor = real(self, name)
        execute = cursor.execute

        def spy(sql, params=None):
            statements.append(sql)
            return execute(sql, params)

        cursor.execute = spy
        return cursor

    monkeypatch.setattr(wrapper, "create_cursor", counting)
    with access_trail(purpose="p", actor_label="t"):
        for service in IEPService.objects.all():
            assert service.iep_id
        list(IEPService.objects.filter(minutes_per_month__gt=0))
        statements.clear()
    trail = [s for s in statements if "skillcore_accesslog" in s]
    assert len(trail) == 1 and len(statements) == 1
    assert _log("iep.IEPService", "read").student_count == 30


def test_a_job_reading_iep_team_members_and_meetings_names_their_students(district, school):
    from tests.jobs.test_iep_review_reminders import DUE, REVIEWED, run_on

    manager = f.StaffFactory(roles=["case_manager"], schools=[school])
    iep = f.IEPFactory(student=f.StudentFactory(school=school), last_annual_review=REVIEWED, case_manager=manager)
    f.IEPTeamMemberFactory(iep=iep, user=f.StaffFactory(roles=["teacher"], schools=[school]))
    run = run_on(district, DUE - dt.timedelta(days=14))
    one_hop = AccessLog.objects.filter(job_run_id=run.id, model__in=["iep.IEPTeamMember", "iep.IEPMeeting"])
    assert {r.model for r in one_hop} == {"iep.IEPTeamMember", "iep.IEPMeeting"}
    assert all(r.student_ids == [iep.student_id] for r in one_hop if r.row_count), [(r.model, r.operation, r.student_ids) for r in one_hop]
    assert one_hop.filter(model="iep.IEPMeeting", operation="create", student_ids=[iep.student_id]).exists()


# -- The read's own table (f54a64f), in statements its test did not write -------------------


def _graded(school):
    from students.models import Grade

    a, b = f.StudentFactory.create_batch(2, school=school)
    grades = [f.GradeFactory(student=a), f.GradeFactory(student=a), f.GradeFactory(student=b)]
    return a, b, Grade.objects.filter(pk__in=[g.pk for g in grades])


def _muted():
    from django.db.models import Exists, OuterRef

    from students.models import SectionEnrollment

    return Exists(SectionEnrollment.objects.filter(student_id=OuterRef("student_id"), notifications_muted=True))


def test_a_count_over_a_distinct_annotated_read_is_a_read_of_its_inner_table(school):
    """``.count()`` of a distinct queryset wraps it: SELECT COUNT(*) FROM (SELECT ..., EXISTS(
    ... FROM enrollment) ... FROM grade) subquery. Grades are counted, enrollments only probed."""
    a, b, grades = _graded(school)
    with access_trail(purpose="p", actor_label="t"):
        n = grades.annotate(muted=_muted()).values("student_id", "muted").distinct().count()
    assert n == 2
    assert _log("students.Grade", "read").row_count == 1
    probed = _log("students.SectionEnrollment", "read")
    assert (probed.query_count, probed.row_count) == (1, 0)


def test_a_union_of_annotated_reads_is_a_read_of_its_parts_table(school):
    """PostgreSQL parenthesizes each part of a UNION: no FROM is outside parentheses."""
    a, b, grades = _graded(school)
    with access_trail(purpose="p", actor_label="t"):
        rows = list(grades.filter(student=a).annotate(muted=_muted()).values("id", "student_id", "muted")
                    .union(grades.filter(student=b).annotate(muted=_muted()).values("id", "student_id", "muted")))
    assert len(rows) == 3
    read = _log("students.Grade", "read")
    assert (read.row_count, read.student_ids) == (3, sorted([a.id, b.id]))
    assert _log("students.SectionEnrollment", "read").row_count == 0


def test_a_cte_whose_own_from_is_a_student_table_is_a_read_of_that_table(school):
    """A raw CTE: WITH w AS (... FROM enrollment) SELECT ... FROM grade: the grades are returned."""
    from students.models import Grade, SectionEnrollment

    a, b, grades = _graded(school)
    g, e = Grade._meta.db_table, SectionEnrollment._meta.db_table
    with access_trail(purpose="p", actor_label="t"), connection.cursor() as cursor:
        cursor.execute(
            f'WITH w AS (SELECT "student_id" FROM "{e}" WHERE "notifications_muted") '
            f'SELECT "id", "student_id" FROM "{g}" WHERE "id" IN ({", ".join(["%s"] * 3)}) '
            f'AND "student_id" NOT IN (SELECT "student_id" FROM w)', [gr.pk for gr in grades])
        assert len(cursor.fetchall()) == 3
    assert _log("students.Grade", "read").student_ids == sorted([a.id, b.id])
    assert _log("students.SectionEnrollment", "read").row_count == 0


def test_a_select_list_subquery_of_another_student_table_leaves_that_table_without_rows(school):
    """Students read with a count of their grades in the select list: the rows are students."""
    from django.db.models import Count, IntegerField, OuterRef, Subquery

    from students.models import Grade

    a, b, grades = _graded(school)
    n_grades = Subquery(Grade.objects.filter(student_id=OuterRef("pk")).order_by().values("student_id")
                        .annotate(n=Count("id")).values("n"), output_field=IntegerField())
    with access_trail(purpose="p", actor_label="t"):
        rows = dict(Student.objects.filter(pk__in=[a.pk, b.pk]).annotate(n=n_grades).values_list("id", "n"))
    assert rows == {a.id: 2, b.id: 1}
    read = _log("students.Student", "read")
    assert (read.row_count, read.student_ids) == (2, sorted([a.id, b.id]))
    assert _log("students.Grade", "read").row_count == 0


def test_an_update_filtered_by_a_subquery_on_another_student_table_is_an_update_of_its_target(school):
    from students.models import Grade

    a, b, grades = _graded(school)
    with access_trail(purpose="p", actor_label="t"):
        n = Student.objects.filter(pk__in=Grade.objects.filter(pk__in=grades).values("student_id")).update(grade_level=11)
    assert n == 2
    updated = _log("students.Student", "update")
    assert (updated.row_count, updated.student_ids) == (2, sorted([a.id, b.id]))
    assert Student.objects.filter(pk__in=[a.pk, b.pk], grade_level=11).count() == 2
    assert _log("students.Grade", "read").row_count == 0


def test_an_update_of_a_table_without_student_data_filtered_by_students_runs_and_logs_no_write(school):
    """The write's target holds no student data: the statement runs as written (no RETURNING
    of a student table it does not write) and the students it read are a read."""
    s = f.StudentFactory(school=school)
    with access_trail(purpose="p", actor_label="t"):
        n = District.objects.filter(pk__in=Student.objects.filter(pk=s.pk).values("school__district_id")).update(
            name="Renamed")
    assert n == 1
    assert District.objects.get(pk=school.district_id).name == "Renamed"
    assert not AccessLog.objects.exclude(operation="read").exists()
    assert _log("students.Student", "read").row_count == 0
