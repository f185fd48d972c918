"""Access-trail overhead on a job-sized read: the same query with and without the trail.

Builds its own data (students with a term of attendance) in the configured database, reads
every attendance row of the district the way a job does (values_list and model instances),
and reports the median of several runs, with and without ``access_trail``; then updates
20,000 of them in 1,000-row batches (the write path: one trail row per write statement).
"""
from __future__ import annotations

import datetime as dt
import statistics
import time

STUDENTS = 2000
DAYS = 100
WRITE_ROWS, WRITE_BATCH = 20_000, 1_000  # the write case: 20 UPDATE statements


def _build():
    from students.models import AttendanceRecord, Student
    from tests import factories as f

    school = f.SchoolFactory()
    students = Student.objects.bulk_create([
        Student(school=school, local_id=f"B{i}", first_name="B", last_name=str(i), grade_level=9,
                birth_date=dt.date(2011, 1, 1), enrollment_date=dt.date(2026, 8, 31))
        for i in range(STUDENTS)
    ])
    start = dt.date(2026, 9, 1)
    rows = [
        AttendanceRecord(student=s, date=start + dt.timedelta(days=d), status="present")
        for s in students for d in range(DAYS)
    ]
    AttendanceRecord.objects.bulk_create(rows, batch_size=10000)
    return school


def _time(fn, repeat=5):
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def run() -> list[tuple[str, float, float]]:
    from django.db import transaction

    from skillcore.access import access_trail
    from students.models import AttendanceRecord
    with transaction.atomic():
        school = _build()
        qs = AttendanceRecord.objects.filter(student__school=school)

        def tuples():
            return sum(1 for _ in qs.values_list("student_id", "status").iterator(chunk_size=5000))

        def instances():
            return sum(1 for _ in qs.iterator(chunk_size=5000))

        def traced(fn):
            def inner():
                with access_trail(purpose="benchmark", actor_label="bench"):
                    fn()
            return inner

        ids = list(qs.order_by("id").values_list("id", flat=True)[:WRITE_ROWS])

        def batched_update():
            # A job's batched write: 1,000-row UPDATEs, each batch in its own transaction
            # (a savepoint here), so each write statement gets its trail row in it.
            for i in range(0, len(ids), WRITE_BATCH):
                with transaction.atomic():
                    AttendanceRecord.objects.filter(id__in=ids[i:i + WRITE_BATCH]).update(status="tardy")

        results = []
        for name, fn in (("values_list", tuples), ("model instances", instances), ("batched update", batched_update)):
            fn()
            plain = _time(fn)
            with_trail = _time(traced(fn))
            results.append((name, plain, with_trail))
        transaction.set_rollback(True)
    return results


def main() -> None:
    from bench import _django

    _django.setup("skillcore_bench_access")
    from django.db import connection

    rows = STUDENTS * DAYS
    print(f"access trail overhead, {rows:,} attendance rows, {connection.vendor}")
    print(f"{'case':<18}{'plain s':>10}{'trail s':>10}{'overhead':>10}")
    for name, plain, traced in run():
        print(f"{name:<18}{plain:>10.3f}{traced:>10.3f}{(traced / plain - 1) * 100:>9.1f}%")


if __name__ == "__main__":
    main()
