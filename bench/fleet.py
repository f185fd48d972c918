"""Benchmark: a night of a hosted fleet, fired and run by K real qclusters on this machine.

    python -m bench fleet [--districts 10000] [--clusters 1,2,4] [--workers 2]
                          [--night 2026-12-13T02:00] [--zone America/New_York]
                          [--window 60] [--compress 10] [--drain 600]

PostgreSQL only, on a database of its own (BENCH_DATABASE_URL, default
skillcore_bench_fleet on the local server; created and migrated). Steps:

1. ``--districts`` districts across the US zone mix (bench/firing.py's ZONE_MIX), 13 jobs
   each, through ``jobs sync`` (once; reused afterwards).
2. The night: every engine schedule's slots from ``--night`` (local time in ``--zone``)
   for ``--window`` minutes, computed from each schedule's cron in its district's zone.
   The window is replayed starting a few seconds from now, its gaps divided by
   ``--compress`` (slots at one instant stay at one instant: a burst stays a burst; only
   the quiet minutes between bursts shrink). Every other schedule is moved a day ahead.
3. For each K in ``--clusters``: the run history and the queue emptied, the night armed,
   K ``manage.py qcluster`` processes started (``Q_WORKERS=--workers`` each; the ORM
   broker on the same database), each logging what its scheduler's batch firing did
   (bench/_fleet_cluster.py). The real jobs run in the fleet's districts, which hold no
   students: each run is the engine's whole path (claim, run row, access trail,
   heartbeat, counters, settle) plus the job's own reads that find nothing; the
   weekly, monthly and "school days" rules apply as in production. The clusters stop once
   every slot of the night has a settled run (or after ``--drain`` seconds).
4. Per burst (the slots due at one instant): slots, fire time and statements per fired
   slot (from the schedulers' logs), and each run's start lateness (started_at - slot:
   p50, p95, p99, max), catch-up and missed counts; for the whole night: slots without a
   run, duplicate claims (a slot's run row is unique, so a second delivery of one slot
   shows up as a task that returned ``claimed: False``), and the load average.

Prints a table per K and writes var/bench-fleet.json. Exits 1 if, for any K, a slot has no
run or two runs, a slot was missed, or the p99 start lateness over the whole window passes
``--p99-goal`` (60 s). ``--compress 1`` replays the night in real time: with spread jobs
(scheduling/registry.py ``spread_minutes``) a compressed replay packs an hour's sixty small
bursts into six minutes, ten times the real arrival rate.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import zoneinfo
from collections import Counter, defaultdict
from pathlib import Path

from bench._django import setup

ROOT = Path(__file__).resolve().parent.parent
LEAD = 45.0  # seconds between the clusters' start and the night's first slot (their start-up)


def _percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a lateness that happened)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


def _night_slots(night_utc: dt.datetime, window: dt.timedelta) -> dict[int, dt.datetime]:
    """Each engine schedule's first slot in [night, night + window): {q schedule id: slot}.
    One cron evaluation per (cron, zone): a fleet shares a few dozen of those."""
    from django_q.models import Schedule

    from scheduling import cron
    from scheduling.services import q_row_zone

    rows = (Schedule.objects.filter(name__startswith="skillcore:", schedule_type=Schedule.CRON).exclude(repeats=0)
            .only("id", "cron", "kwargs"))
    first: dict[tuple[str, str], dt.datetime | None] = {}
    slots = {}
    for row in rows.iterator(chunk_size=5000):
        key = (row.cron, q_row_zone(row) or "UTC")
        if key not in first:
            slot = cron.next_slot(key[0], key[1], night_utc - dt.timedelta(seconds=1))
            first[key] = slot if slot < night_utc + window else None
        if first[key] is not None:
            slots[row.pk] = first[key]
    return slots


def _arm(slots: dict[int, dt.datetime], night_utc: dt.datetime, start: dt.datetime, compress: float) -> dict:
    """Empty the history and the queue; due times of the night replayed from ``start``."""
    from django.db import connection

    with connection.cursor() as c:
        # Not TRUNCATE ... CASCADE on the runs: the schedules refer to their last run.
        c.execute("UPDATE scheduling_jobschedule SET last_run_id = NULL, last_slot = NULL")
        c.execute("TRUNCATE scheduling_alertdelivery, scheduling_incident, scheduling_runhold, django_q_ormq, django_q_task")
        c.execute("DELETE FROM scheduling_jobrun")
        c.execute("UPDATE django_q_schedule SET next_run = now() + interval '1 day' WHERE name LIKE 'skillcore:%%'")
        replay = {pk: start + (slot - night_utc) / compress for pk, slot in slots.items()}
        by_time = defaultdict(list)
        for pk, at in replay.items():
            by_time[at].append(pk)
        for at, ids in by_time.items():
            c.execute("UPDATE django_q_schedule SET next_run = %s WHERE id = ANY(%s)", [at, ids])
        c.execute("ANALYZE django_q_schedule")
    return {at: len(ids) for at, ids in by_time.items()}


def _settled(expected: int) -> int:
    from scheduling.models import JobRun

    return JobRun.objects.exclude(status__in=[JobRun.Status.QUEUED, JobRun.Status.RUNNING]).count()


def _night(k: int, workers: int, slots, night_utc, compress: float, drain: float, logdir: Path) -> dict:
    from django.db import connection
    from django.utils import timezone

    start = timezone.now().replace(microsecond=0) + dt.timedelta(seconds=LEAD)
    bursts = _arm(slots, night_utc, start, compress)
    connection.close()
    logs = [logdir / f"k{k}-cluster{i}.jsonl" for i in range(k)]
    for log in logs:
        log.unlink(missing_ok=True)
    env = {**os.environ, "Q_WORKERS": str(workers), "LOG_LEVEL": "ERROR"}
    procs = [subprocess.Popen([sys.executable, "-m", "bench._fleet_cluster", str(log)], cwd=ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=open(f"{log}.err", "w"))
             for log in logs]
    last = max(bursts)
    loads, done_at = [], None
    try:
        while True:
            time.sleep(5)
            loads.append(os.getloadavg()[0])
            now = timezone.now()
            if now > last and _settled(len(slots)) >= len(slots):
                done_at = now
                break
            if (now - last).total_seconds() > drain:
                break
    finally:
        for p in procs:  # the processes this benchmark started, and their children (own session)
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    return {"start": start, "bursts": bursts, "loads": loads, "done_at": done_at, "logs": logs}


def _report(k: int, workers: int, slots, night: dict, compress: float) -> dict:
    from django_q.models import Task

    from scheduling.models import JobRun

    runs = list(JobRun.objects.values_list("job", "district_id", "slot", "status", "trigger", "started_at", "finished_at"))
    ran = [r for r in runs if r[5] is not None and r[6] is not None]
    claimed_twice = sum(1 for r in Task.objects.values_list("result", flat=True) if isinstance(r, dict) and r.get("claimed") is False)
    per_slot = Counter((j, d, s) for j, d, s, *_ in runs)
    fires = [json.loads(line) for log in night["logs"] if log.exists() for line in log.read_text().splitlines()]
    out_bursts = []
    bursts = sorted(night["bursts"].items())
    for i, (at, count) in enumerate(bursts):
        until = bursts[i + 1][0] if i + 1 < len(bursts) else None
        mine = [r for r in runs if r[2] == at]
        late = [(r[5] - r[2]).total_seconds() for r in mine if r[5] is not None]
        fired_here = [f for f in fires if at.timestamp() <= f["start"] + 1 and (until is None or f["start"] < until.timestamp())]
        fired = sum(f["fired"] for f in fired_here)
        out_bursts.append({
            "at_replayed": at.isoformat(), "slots": count, "runs": len(mine),
            "fire_seconds": round(sum(f["seconds"] for f in fired_here), 3),
            "fire_passes": len(fired_here),
            "queries_per_fired_slot": round(sum(f["queries"] for f in fired_here) / fired, 4) if fired else None,
            "late_p50": _percentile(late, 50), "late_p95": _percentile(late, 95), "late_p99": _percentile(late, 99),
            "late_max": max(late, default=0.0),
            "catch_up": sum(1 for r in mine if r[4] == JobRun.Trigger.CATCH_UP),
            "missed": sum(1 for r in mine if r[3] == JobRun.Status.MISSED),
            "statuses": dict(Counter(r[3] for r in mine)),
        })
    loads = night["loads"]
    # The whole window at once: with spread, a job's 02:00 burst is sixty small ones, and
    # what a district sees is every run's lateness, whichever minute it fell on.
    late_all = [(r[5] - r[2]).total_seconds() for r in runs if r[5] is not None]
    return {
        "clusters": k, "workers": workers, "slots": len(slots), "runs": len(runs),
        "slots_without_run": len(slots) - len(per_slot), "duplicate_runs": sum(n - 1 for n in per_slot.values()),
        "deliveries_that_lost_the_claim": claimed_twice,
        "settled_after_s": round((night["done_at"] - night["start"]).total_seconds(), 1) if night["done_at"] else None,
        # What the workers got through: runs finished per second from the first start to the
        # last finish, and a run's median duration (the job's own work plus the engine's).
        "runs_per_second": round(len(ran) / max(1e-9, (max(r[6] for r in ran) - min(r[5] for r in ran)).total_seconds()), 2)
        if ran else None,
        "run_seconds_median": round(statistics.median((r[6] - r[5]).total_seconds() for r in ran), 3) if ran else None,
        "load_mean": round(statistics.mean(loads), 2) if loads else None, "load_max": round(max(loads), 2) if loads else None,
        "night": {"late_p50": _percentile(late_all, 50), "late_p95": _percentile(late_all, 95),
                  "late_p99": _percentile(late_all, 99), "late_max": max(late_all, default=0.0),
                  "catch_up": sum(1 for r in runs if r[4] == JobRun.Trigger.CATCH_UP),
                  "missed": sum(1 for r in runs if r[3] == JobRun.Status.MISSED)},
        "bursts": out_bursts,
    }


def _print(r: dict) -> None:
    print(f"\n{r['clusters']} qcluster(s) x {r['workers']} workers: {r['slots']:,} slots, {r['runs']:,} runs, "
          f"{r['slots_without_run']} without a run, {r['duplicate_runs']} duplicate runs, "
          f"{r['deliveries_that_lost_the_claim']} deliveries lost the claim; all settled after "
          f"{r['settled_after_s']} s; {r['runs_per_second']} runs/s, a run's median {r['run_seconds_median']} s; "
          f"load average mean {r['load_mean']}, max {r['load_max']}")
    n = r["night"]
    print(f"  every run of the window: start lateness p50 {n['late_p50']:.1f} s, p95 {n['late_p95']:.1f} s, "
          f"p99 {n['late_p99']:.1f} s, max {n['late_max']:.1f} s; {n['catch_up']} catch-up, {n['missed']} missed")
    print(f"  {'burst (replayed)':20} {'slots':>6} {'fire s':>7} {'q/slot':>7} {'p50 s':>6} {'p95 s':>6} "
          f"{'p99 s':>6} {'max s':>6} {'catch-up':>8} {'missed':>6}")
    for b in r["bursts"]:
        if b["slots"] < 10:
            continue
        q = f"{b['queries_per_fired_slot']:.3f}" if b["queries_per_fired_slot"] is not None else "-"
        print(f"  {b['at_replayed'][11:19]:20} {b['slots']:>6} {b['fire_seconds']:>7.2f} {q:>7} {b['late_p50']:>6.1f} "
              f"{b['late_p95']:>6.1f} {b['late_p99']:>6.1f} {b['late_max']:>6.1f} {b['catch_up']:>8} {b['missed']:>6}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fleet")
    parser.add_argument("--districts", type=int, default=10_000)
    parser.add_argument("--clusters", default="1,2,4", help="comma-separated numbers of qclusters to try")
    parser.add_argument("--workers", type=int, default=2, help="workers per qcluster (Q_WORKERS)")
    parser.add_argument("--night", default="2026-12-13T02:00", help="the night's start, local time in --zone (a Sunday: weekly jobs too)")
    parser.add_argument("--zone", default="America/New_York")
    parser.add_argument("--window", type=int, default=60, help="minutes of the night replayed")
    parser.add_argument("--compress", type=float, default=10.0, help="the window's gaps divided by this")
    parser.add_argument("--drain", type=int, default=600, help="seconds after the last slot to wait for the runs")
    parser.add_argument("--p99-goal", type=float, default=60.0,
                        help="exit 1 when a K's p99 start lateness over the window passes this many seconds")
    args = parser.parse_args(argv)
    try:
        clusters = [int(k) for k in args.clusters.split(",")]
        night_local = dt.datetime.fromisoformat(args.night).replace(tzinfo=zoneinfo.ZoneInfo(args.zone))
    except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
        print(f"bench fleet: {exc}", file=sys.stderr)
        return 2
    if args.districts < 1 or args.workers < 1 or args.window < 1 or args.compress < 1 or min(clusters) < 1:
        print("bench fleet: --districts, --workers, --window, --compress and each cluster count must be >= 1", file=sys.stderr)
        return 2
    setup(os.environ.get("BENCH_FLEET_DATABASE", "skillcore_bench_fleet"))
    from bench.firing import _grow
    from scheduling import services
    from students.models import District

    if District.objects.count() != args.districts:
        from bench.firing import _truncate

        _truncate("scheduling_schedulechange", "scheduling_jobrun", "scheduling_jobschedule", "django_q_schedule", "students_district")
        _grow(args.districts)
    services.sync_schedules()  # creates the schedules the first time; then in line, it changes nothing
    night_utc = night_local.astimezone(dt.UTC)
    slots = _night_slots(night_utc, dt.timedelta(minutes=args.window))
    logdir = ROOT / "var" / "bench-fleet"
    logdir.mkdir(parents=True, exist_ok=True)
    out = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
           "districts": args.districts, "night": night_local.isoformat(), "window_minutes": args.window,
           "compress": args.compress, "load_before": os.getloadavg()[0], "results": []}
    print(f"Fleet night (PostgreSQL, ORM broker): {args.districts:,} districts x 13 jobs; {len(slots):,} slots from "
          f"{night_local:%Y-%m-%d %H:%M} {args.zone} for {args.window} min, replayed {args.compress:g}x faster; "
          f"{os.cpu_count()} cores, load average {out['load_before']:.1f}")
    ok = True
    for k in clusters:
        night = _night(k, args.workers, slots, night_utc, args.compress, args.drain, logdir)
        result = _report(k, args.workers, slots, night, args.compress)
        out["results"].append(result)
        _print(result)
        ok = (ok and result["slots_without_run"] == 0 and result["duplicate_runs"] == 0
              and result["night"]["missed"] == 0 and result["night"]["late_p99"] <= args.p99_goal)
    target = ROOT / "var" / "bench-fleet.json"
    target.write_text(json.dumps(out, indent=2, default=str))
    print(f"wrote {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
