"""Benchmark: enqueue and render a district-wide digest, against the reference's loop.

    DATABASE_URL=postgres://... python -m bench.notifications [--n 100000] [--ref-n 5000] [--keep]
    (or ``python -m bench notifications``; then BENCH_NOTIFICATIONS_N / _REF_N set the sizes)

Builds a scratch database (``<name>_bench_notifications``, migrated, dropped afterwards
unless --keep) with one district, n/2 students and n guardians (two per student), then:

1. immediate path: n performance alerts through ``notifications_enqueue`` (every family
   rule applied) straight into the outbox;
2. digest path: n grade items through ``notifications_enqueue`` into digest items, then
   ``digests_assemble`` into n digest messages (one per guardian);
3. render: the n digest messages rendered (subject, text, HTML) streaming from the outbox;
4. reference: the reference's loop, one INSERT per message (``Notification.objects.create``
   in autocommit), on ``--ref-n`` messages, extrapolated linearly to n; run in slices
   alternating with step 1 so both see the same load on a shared machine, ``--rounds``
   times (default 3): the medians and the median ratio are reported;
5. memory: tracemalloc peak of the immediate enqueue at n/10 and n (input is a generator).

Prints a table and writes var/bench-notifications.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillcore.settings")
    os.environ.setdefault("DATABASE_POOL", "false")
    if not os.environ.get("SECRET_KEY") and not os.environ.get("DEBUG"):
        os.environ["SECRET_KEY"] = "bench-only-not-a-secret"
    if not os.environ.get("ARCHIVE_ENCRYPTION_KEY") and not os.environ.get("DEBUG"):
        from skillcore.archives import new_key

        os.environ["ARCHIVE_ENCRYPTION_KEY"] = new_key()  # production settings need one
    import django

    django.setup()


class QueryCounter:
    """Counts statements through an execute wrapper (no SQL kept, unlike debug cursors)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


@contextmanager
def counted():
    from django.db import connection

    counter = QueryCounter()
    started = time.perf_counter()
    with connection.execute_wrapper(counter):
        yield counter
    counter.seconds = time.perf_counter() - started


class _Measured:
    def __init__(self, count, seconds):
        self.count, self.seconds = int(count), seconds


def _seed(n: int):
    """One district, n/2 students, n guardians; returns [(guardian_id, student_id)]."""
    from django.contrib.auth import get_user_model

    from notifications.models import NotificationPreference
    from students.models import District, GuardianLink, School, Student

    User = get_user_model()
    district = District.objects.create(name="Bench Unified", time_zone="America/New_York", state="NY")
    school = School.objects.create(district=district, name="Bench High", code="B1")
    students = Student.objects.bulk_create(
        [Student(school=school, local_id=str(i), first_name=f"Kid{i}", last_name="Bench", grade_level=9,
                 birth_date=dt.date(2011, 1, 1), enrollment_date=dt.date(2026, 8, 31)) for i in range(n // 2)],
        batch_size=5000,
    )
    guardians = User.objects.bulk_create(
        [User(username=f"guardian{i}", email=f"guardian{i}@example.org", first_name="Pat", password="!") for i in range(n)],
        batch_size=5000,
    )
    # Every guardian chose a daily digest of grade notices (the digest path below).
    NotificationPreference.objects.bulk_create(
        [NotificationPreference(user=g, category="grade-digest", channel="email", frequency="daily") for g in guardians],
        batch_size=5000,
    )
    GuardianLink.objects.bulk_create(
        [GuardianLink(guardian=g, student=students[i // 2], preferred_language="es" if i % 5 == 0 else "en")
         for i, g in enumerate(guardians)],
        batch_size=5000,
    )
    return district, [(g.pk, students[i // 2].pk) for i, g in enumerate(guardians)]


def _alerts(pairs, tag):
    from notifications.services import NotificationRequest

    for i, (guardian_id, student_id) in enumerate(pairs):
        yield NotificationRequest(
            recipient_id=guardian_id, category="performance-alert", channel="email", template="performance-alert",
            context={"course_name": "Algebra I"}, dedupe_key=f"{tag}:{guardian_id}:{i}", student_id=student_id,
        )


def _grades(pairs):
    from notifications.services import NotificationRequest

    for guardian_id, student_id in pairs:
        yield NotificationRequest(
            recipient_id=guardian_id, category="grade-digest", channel="email", template="grade-posted",
            context={"course_name": "Algebra I", "assignment_title": "Quiz 3", "score": 17, "max_score": 20},
            dedupe_key=f"grade:{student_id}:{guardian_id}", student_id=student_id,
            object_key=f"grade:{student_id}", event="posted",
        )


def run(n: int, ref_n: int, rounds: int = 3) -> dict:

    from django.db import transaction

    from notifications.models import Notification
    from notifications.rendering import render_email
    from notifications.services import digests_assemble, notifications_enqueue

    noon = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)  # inside the family window
    t0 = time.perf_counter()
    _, pairs = _seed(n)
    results: dict = {"n": n, "ref_n": ref_n, "seed_seconds": round(time.perf_counter() - t0, 1)}

    def rate(count, c):
        return {"messages": count, "seconds": round(c.seconds, 2), "per_second": round(count / c.seconds),
                "queries": c.count, "queries_per_1000": round(c.count * 1000 / count, 2)}

    # 1 and 4, interleaved: the machine is shared, so ours and the reference run in
    #    alternating slices under the same load; each side's time is the sum of its slices.
    #    Repeated ``rounds`` times (fresh keys each round, n messages ours, ref_n theirs);
    #    the figures are the medians, the ratio the median of each round's ratio.
    slices = 4
    per_slice, ref_per_slice = n // slices, ref_n // slices
    rounds_out = []
    for round_ in range(rounds):
        ours_q = ours_s = ref_q = ref_s = tx_s = 0.0
        for k in range(slices):
            part = pairs[k * per_slice:(k + 1) * per_slice if k < slices - 1 else n]
            with counted() as c:
                s = notifications_enqueue(_alerts(part, f"alert{round_}.{k}"), now=noon)
            assert s.inserted == len(part), s.as_dict()
            ours_q, ours_s = ours_q + c.count, ours_s + c.seconds
            with counted() as c:
                for i, (guardian_id, student_id) in enumerate(pairs[k * ref_per_slice:(k + 1) * ref_per_slice]):
                    # The reference's loop: one INSERT, in its own transaction, per message.
                    Notification.objects.create(
                        recipient_id=guardian_id, channel="email", category="performance-alert", template="performance-alert",
                        context={"course_name": "Algebra I"}, dedupe_key=f"ref:{round_}.{k}:{guardian_id}:{i}",
                        student_id=student_id, send_after=noon,
                    )
            ref_q, ref_s = ref_q + c.count, ref_s + c.seconds
            # The same loop inside one transaction: what the per-message statements cost
            # without a commit (a WAL flush to disk) each. Not the reference, but the floor
            # of any per-message loop: it shows how much of the ratio is the commits.
            with counted() as c, transaction.atomic():
                for i, (guardian_id, student_id) in enumerate(pairs[k * ref_per_slice:(k + 1) * ref_per_slice]):
                    Notification.objects.create(
                        recipient_id=guardian_id, channel="email", category="performance-alert", template="performance-alert",
                        context={"course_name": "Algebra I"}, dedupe_key=f"tx:{round_}.{k}:{guardian_id}:{i}",
                        student_id=student_id, send_after=noon,
                    )
            tx_s += c.seconds
        rounds_out.append((ours_q, ours_s, ref_q, ref_s, (n / ours_s) / (ref_per_slice * slices / ref_s), tx_s))
    ref_total = ref_per_slice * slices
    median = statistics.median
    ours_q, ours_s = median(r[0] for r in rounds_out), median(r[1] for r in rounds_out)
    ref_q, ref_s = median(r[2] for r in rounds_out), median(r[3] for r in rounds_out)
    results["rounds"] = rounds
    results["speedup_per_round"] = [round(r[4], 1) for r in rounds_out]
    results["enqueue_immediate"] = rate(n, _Measured(ours_q, ours_s))
    results["reference_loop"] = rate(ref_total, _Measured(ref_q, ref_s))
    results["loop_in_one_transaction"] = rate(ref_total, _Measured(ref_q, median(r[5] for r in rounds_out)))
    results["speedup_vs_loop_in_one_transaction"] = round(
        median((n / r[1]) / (ref_total / r[5]) for r in rounds_out), 1)
    results["reference_loop"]["extrapolated_seconds_for_n"] = round(ref_s * n / ref_total, 1)

    # 2. Digest path: items, then assembly into one message per guardian.
    with counted() as c:
        s = notifications_enqueue(_grades(pairs), now=noon)
    assert s.digested == n, s.as_dict()
    results["enqueue_digest_items"] = rate(n, c)
    with counted() as c:
        a = digests_assemble(frequency="daily", now=noon + dt.timedelta(days=1))
    assert a.digests == n, a
    results["assemble_digests"] = rate(n, c)

    # 3. Render the digests from the outbox, streaming.
    with counted() as c:
        rendered = 0
        for message in Notification.objects.filter(template="digest").select_related("recipient").iterator(chunk_size=2000):
            r = render_email(message)
            rendered += bool(r.subject and r.text and r.html)
    assert rendered == n
    results["render_digests"] = rate(n, c)

    ours = results["enqueue_immediate"]["per_second"]
    ref = results["reference_loop"]["per_second"]
    results["speedup_of_medians"] = round(ours / ref, 1)
    results["speedup_enqueue_vs_reference"] = round(median(r[4] for r in rounds_out), 1)
    # End to end (digest items + assembly + render) against reference insert + the same render.
    ours_e2e = sum(results[k]["seconds"] for k in ("enqueue_digest_items", "assemble_digests", "render_digests"))
    ref_e2e = results["reference_loop"]["extrapolated_seconds_for_n"] + results["render_digests"]["seconds"]
    results["end_to_end_seconds"] = {"ours": round(ours_e2e, 1), "reference_extrapolated": round(ref_e2e, 1)}

    # 5. Memory: peak traced allocation during enqueue of n/10 and n (fresh keys).
    peaks = {}
    for size in (n // 10, n):
        Notification.objects.filter(dedupe_key__startswith="mem").delete()
        tracemalloc.start()
        notifications_enqueue(_alerts(pairs[:size], f"mem{size}"), now=noon)
        peaks[size] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    results["tracemalloc_peak_bytes"] = {str(k): v for k, v in peaks.items()}
    results["memory_ratio_n_vs_n_over_10"] = round(peaks[n] / peaks[n // 10], 2)
    return results


def _print(results: dict) -> None:
    rows = [("enqueue, immediate (rules + outbox)", "enqueue_immediate"), ("enqueue, digest items", "enqueue_digest_items"),
            ("assemble digests", "assemble_digests"), ("render digests (subject+text+HTML)", "render_digests"),
            (f"reference loop (n={results['ref_n']})", "reference_loop"),
            ("the same loop in one transaction", "loop_in_one_transaction")]
    print(f"{'phase':40} {'msgs':>8} {'seconds':>8} {'msgs/s':>9} {'q/1000':>8}")
    for label, key in rows:
        r = results[key]
        print(f"{label:40} {r['messages']:>8} {r['seconds']:>8} {r['per_second']:>9} {r['queries_per_1000']:>8}")
    print(f"enqueue speed-up vs reference loop: {results['speedup_enqueue_vs_reference']}x (median of the rounds'"
          f" ratios {results['speedup_per_round']}; load average {os.getloadavg()[0]:.1f}); against the same loop"
          f" without a commit per message: {results['speedup_vs_loop_in_one_transaction']}x")
    print(f"end to end for n={results['n']}: ours {results['end_to_end_seconds']['ours']} s, "
          f"reference (extrapolated) {results['end_to_end_seconds']['reference_extrapolated']} s")
    peaks = results["tracemalloc_peak_bytes"]
    print("tracemalloc peak: " + ", ".join(f"n={k}: {v / 1e6:.1f} MB" for k, v in peaks.items())
          + f" (ratio {results['memory_ratio_n_vs_n_over_10']})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notifications")
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_NOTIFICATIONS_N", 100_000)))
    parser.add_argument("--ref-n", type=int, default=int(os.environ.get("BENCH_NOTIFICATIONS_REF_N", 5_000)))
    parser.add_argument("--rounds", type=int, default=3, help="side-by-side rounds; medians are reported")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    if args.n < 100 or args.ref_n < 10 or args.ref_n > args.n:
        print("bench notifications: --n must be >= 100 and 10 <= --ref-n <= --n", file=sys.stderr)
        return 2
    _setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        print("bench notifications: set DATABASE_URL to a PostgreSQL database (the figures are for PostgreSQL)", file=sys.stderr)
        return 2
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{connection.settings_dict['NAME']}_bench_notifications"
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        results = run(args.n, args.ref_n, max(1, args.rounds))
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    _print(results)
    out = Path(__file__).resolve().parent.parent / "var" / "bench-notifications.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
