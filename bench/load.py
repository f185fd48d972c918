"""Benchmark: staff browsing the admin while the daily jobs run.

    python -m bench load [--students 50000] [--users 50] [--seconds 60] [--think 5.0]
                         [--server gunicorn|runserver] [--workers 4] [--warmup 20] [--job-runs 3]
    BENCH_LOAD_STUDENTS / _USERS / _SECONDS / _THINK set the same for ``make bench``.

PostgreSQL only: BENCH_DATABASE_URL (default a database skillcore_bench_load on the local
server) is created if missing and migrated. The district is "Load Bench <N>", or a
"Daily Jobs Bench <N>" already there (bench/daily_jobs.py seeds that one; a database
copied from it with CREATE DATABASE ... TEMPLATE saves the seeding), else seeded here.

What runs, all on localhost:
- the web server: gunicorn with ``--workers`` sync worker processes (default 4), as
  docs/deployment.md runs it in production; ``--server runserver`` measures Django's
  threaded development server (one process) instead;
- ``--users`` staff sessions (10 % system admins on the scheduled-jobs dashboard and the
  run list, the others district admins, principals, counselors and teachers on the
  changelists their role opens), each a thread with its own logged-in session, starting
  at a random moment within the first ``--think`` seconds, then one page every ``--think``
  seconds (jittered 0.5-1.5x), in a client process of its own;
- the daily jobs, each through the real runner (JobRun, access trail, notifications),
  rolled back afterwards so every run sees the same data, in this process.

Phases: (1) each daily job alone (idle); then ``--warmup`` seconds of browsing, not measured;
(2) the users alone for ``--seconds``; (3) the
users again while the daily jobs run one after the other (the set ``--job-runs`` times in
each phase; each job's time is its median). Reported: admin p50/p95/max per phase and per
page, errors, and each job's time under load / idle. Writes
var/bench-load.json. Bounded: the client stops at --seconds (phase 2) or when the jobs are
done (phase 3, at most 30 minutes), and each user makes at most 2,000 requests.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load-bench-password-1"
MAX_REQUESTS_PER_USER = 2000
MAX_PHASE_SECONDS = 1800

# Pages per persona kind (admin URLs); every one opens for that role (tests/security/test_role_matrix.py).
PAGES = {
    "system-admin": ["/admin/scheduled-jobs/", "/admin/scheduling/jobrun/", "/admin/students/student/",
                     "/admin/skillcore/accesslog/"],
    "district-admin": ["/admin/students/student/", "/admin/students/attendancerecord/", "/admin/interventions/intervention/",
                       "/admin/students/section/", "/admin/students/staffprofile/"],
    "principal": ["/admin/students/student/", "/admin/students/attendancerecord/", "/admin/interventions/intervention/",
                  "/admin/scheduling/report/"],
    "counselor": ["/admin/students/student/", "/admin/interventions/intervention/", "/admin/interventions/counselortask/",
                  "/admin/students/attendancerecord/"],
    "teacher": ["/admin/students/student/", "/admin/students/grade/", "/admin/students/assignment/",
                "/admin/students/attendancerecord/"],
}
MIX = ["district-admin", "principal", "counselor", "counselor", "teacher", "teacher", "teacher", "principal", "district-admin"]


# -- the client (a process of its own: no Django) ---------------------------------------------------

def _login(session, base: str, username: str) -> None:
    page = session.get(f"{base}/admin/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(f"{base}/admin/login/?next=/admin/", timeout=30, allow_redirects=False,
                            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
                            headers={"Referer": f"{base}/admin/login/"})
    if response.status_code != 302:
        raise RuntimeError(f"login of {username} failed: HTTP {response.status_code}")


def client(base: str, users: list[tuple[str, str]], seconds: float, think: float, stop_file: str, out: str) -> int:
    import requests

    records: list[tuple[str, int, float, float]] = []  # page, status, seconds, at
    lock = threading.Lock()
    errors: list[str] = []
    started = threading.Event()
    logged_in = [0]
    deadline = [time.monotonic() + (seconds if seconds > 0 else MAX_PHASE_SECONDS)]

    def user(username: str, kind: str, seed: int):
        rng = random.Random(seed)
        session = requests.Session()
        try:
            _login(session, base, username)
        except Exception as exc:  # reported, the others go on
            errors.append(f"{username}: {exc}")
            return
        finally:
            with lock:
                logged_in[0] += 1
        started.wait()
        # Staff do not all click at the same instant: each starts within one think time (a
        # ramp-up, as load tools do), else the first wave of --users requests queues at once.
        time.sleep(think * rng.random())
        for _ in range(MAX_REQUESTS_PER_USER):
            if time.monotonic() > deadline[0] or os.path.exists(stop_file):
                return
            page = rng.choice(PAGES[kind])
            t0 = time.perf_counter()
            try:
                status = session.get(base + page, timeout=60, allow_redirects=False).status_code
            except requests.RequestException as exc:
                status = 0
                errors.append(f"{page}: {type(exc).__name__}")
            with lock:
                records.append((page, status, time.perf_counter() - t0, time.monotonic()))
            time.sleep(think * rng.uniform(0.5, 1.5))

    threads = [threading.Thread(target=user, args=(u, k, i), daemon=True) for i, (u, k) in enumerate(users)]
    for t in threads:
        t.start()
    # Log in everyone first (not measured: each login hashes a password, a second of server CPU),
    # then start the clock for all at once.
    while logged_in[0] < len(users):
        time.sleep(0.1)
    deadline[0] = time.monotonic() + (seconds if seconds > 0 else MAX_PHASE_SECONDS)
    t_start = time.monotonic()
    Path(out + ".ready").write_text("ready")
    started.set()
    for t in threads:
        t.join()
    Path(out).write_text(json.dumps({"records": [(p, s, d, a - t_start) for p, s, d, a in records], "errors": errors[:50],
                                     "error_count": len(errors), "wall": time.monotonic() - t_start}))
    return 0


# -- the orchestrator (Django, PostgreSQL) ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _district(students: int, seed: int):
    from skillcore.seed import seed_district
    from students.models import District

    for name in (f"Load Bench {students}", f"Daily Jobs Bench {students}"):
        district = District.objects.filter(name=name).first()
        if district is not None:
            return district
    name = f"Load Bench {students}"
    print(f"seeding {name!r} ({students:,} students, a whole session); this takes a while ...", flush=True)
    return seed_district(name=name, students=students, seed=seed, time_zone="America/New_York",
                         as_of=dt.date(2027, 6, 30)).district


def _users(district, count: int) -> list[tuple[str, str]]:
    """``count`` staff accounts (idempotent), 10 % system admins, the rest by MIX.

    Principals, counselors and teachers are the district's own seeded staff (their schools,
    sections, caseloads and IEP teams are what make their pages cost what they cost; a made-up
    teacher with no sections would see nothing), spread over the schools, given the benchmark's
    password. System and district admins are accounts of the benchmark's own."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User

    from students.models import School, StaffProfile

    hashed = make_password(PASSWORD)
    groups = {g.name: g for g in Group.objects.all()}
    schools = list(School.objects.filter(district=district).order_by("pk"))
    seeded: dict[str, list[str]] = {}
    for kind in ("principal", "counselor", "teacher"):
        names = list(User.objects.filter(groups__name=kind, staff_profile__district=district)
                     .order_by("staff_profile__schools__pk", "pk").values_list("username", flat=True).distinct())
        # Every n-th, so that the accounts fall in different schools.
        step = max(1, len(names) // max(1, sum(1 for i in range(count) if MIX[i % len(MIX)] == kind)))
        seeded[kind] = names[::step]
    wanted, taken = [], {k: 0 for k in seeded}
    for i in range(count):
        kind = "system-admin" if i % 10 == 0 else MIX[i % len(MIX)]
        if kind in seeded and seeded[kind]:
            wanted.append((seeded[kind][taken[kind] % len(seeded[kind])], kind))
            taken[kind] += 1
        else:
            wanted.append((f"load-{district.pk}-{i:03d}", kind))
    User.objects.filter(username__in=[u for u, _ in wanted]).update(password=hashed)
    existing = set(User.objects.filter(username__in=[u for u, _ in wanted]).values_list("username", flat=True))
    for username, kind in wanted:
        if username in existing:
            continue
        user = User.objects.create(username=username, email=f"{username}@bench.invalid", password=hashed, is_staff=True,
                                   is_superuser=kind == "system-admin")
        user.groups.add(groups[kind])
        profile = StaffProfile.objects.create(user=user, district=district)
        profile.schools.set(schools if kind == "district-admin" else [])
        existing.add(username)
    return wanted


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"n": len(values), "p50_ms": round(q[49] * 1000), "p95_ms": round(q[94] * 1000), "max_ms": round(values[-1] * 1000)}


def _summary(result: dict) -> dict:
    records = result["records"]
    ok = [r for r in records if r[1] == 200]
    pages = {}
    for page in sorted({r[0] for r in records}):
        pages[page] = _percentiles([r[2] for r in ok if r[0] == page])
    return {"all": _percentiles([r[2] for r in ok]), "non_200": sum(1 for r in records if r[1] != 200),
            "errors": result["error_count"], "first_errors": result["errors"][:5], "wall_s": round(result["wall"], 1),
            "req_per_s": round(len(records) / result["wall"], 1) if result["wall"] else 0, "pages": pages}


def _start_client(base, users, seconds, think, tmp: Path, tag: str):
    out = tmp / f"load-{tag}.json"
    stop = tmp / f"load-{tag}.stop"
    for p in (out, stop, Path(str(out) + ".ready")):
        p.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "bench.load", "--client", base, "--seconds", str(seconds),
                             "--think", str(think), "--out", str(out), "--stop-file", str(stop),
                             "--user-list", json.dumps(users)], cwd=ROOT)
    deadline = time.monotonic() + 300
    while not Path(str(out) + ".ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the load client did not start")
        time.sleep(0.2)
    return proc, out, stop


def main(argv: list[str]) -> int:
    env = lambda name, default: os.environ.get(f"BENCH_LOAD_{name}", default)  # noqa: E731
    parser = argparse.ArgumentParser(prog="python -m bench load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=int(env("STUDENTS", 50_000)))
    parser.add_argument("--users", type=int, default=int(env("USERS", 50)))
    parser.add_argument("--seconds", type=float, default=float(env("SECONDS", 60)), help="phase 2's length")
    parser.add_argument("--think", type=float, default=float(env("THINK", 5.0)),
                        help="seconds between a user's pages (5: a member of staff reading a page; 1: a stress test)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--job-runs", type=int, default=int(env("JOB_RUNS", 3)), help="runs of each job per phase (median)")
    parser.add_argument("--warmup", type=float, default=float(env("WARMUP", 20)), help="seconds of unmeasured browsing first")
    parser.add_argument("--server", choices=["gunicorn", "runserver"], default=env("SERVER", "gunicorn"))
    parser.add_argument("--workers", type=int, default=int(env("WORKERS", 4)), help="gunicorn worker processes")
    # client mode (started by the orchestrator)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", help=argparse.SUPPRESS)
    parser.add_argument("--user-list", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return client(args.client, json.loads(args.user_list), args.seconds, args.think, args.stop_file, args.out)
    if (args.students < 1 or not 1 <= args.users <= 500 or args.seconds <= 0 or args.think < 0 or not 1 <= args.workers <= 32
            or args.warmup < 0 or not 1 <= args.job_runs <= 9):
        print("bench load: --students >= 1, --users 1..500, --seconds > 0, --think >= 0, --workers 1..32, --warmup >= 0, --job-runs 1..9.",
              file=sys.stderr)
        return 2

    from bench._django import setup

    setup("skillcore_bench_load")
    import functools
    import logging

    from django.db import connection

    from bench.daily_jobs import ATTENDANCE, OTHER_JOBS, run_job
    from scheduling import runner
    from students.selectors import current_session

    logging.getLogger("scheduling.jobs").propagate = False
    runner.JobContext = functools.partial(runner.JobContext, progress_interval=3600)
    district = _district(args.students, args.seed)
    users = _users(district, args.users)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    session = current_session(district)
    day = min(dt.date(2027, 6, 30), session.end_date)
    jobs = [(ATTENDANCE, 18, 30), *OTHER_JOBS]
    slots = {slug: dt.datetime(day.year, day.month, day.day, h, m, tzinfo=district.zone) for slug, h, m in jobs}

    # 1. Each daily job alone (after one warm-up run of the whole set).
    # A job's time varies by 10-25 % from one run to the next on a quiet machine, so each time
    # is the median of --job-runs runs (the set run one after another, --job-runs times), idle
    # and under load alike.
    for slug in slots:
        run_job(slug, district, slots[slug])
    idle_runs: dict[str, list[float]] = {slug: [] for slug in slots}
    for _ in range(args.job_runs):
        for slug in slots:
            idle_runs[slug].append(run_job(slug, district, slots[slug])[0]["seconds"])
    idle = {slug: statistics.median(t) for slug, t in idle_runs.items()}
    print("idle:", {k: round(v, 2) for k, v in idle.items()}, flush=True)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {**os.environ, "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "false",
                  "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false", "LOG_LEVEL": "ERROR",
                  }
    if args.server == "runserver":
        # Each runserver thread holds a connection; the pool must cover the users.
        server_env.update(DATABASE_POOL_MAX=str(min(args.users + 5, 60)), DATABASE_POOL="true")
        command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        server_name = "manage.py runserver --noreload (threaded, 1 process)"
    else:
        # A sync worker serves one request at a time: one pooled connection each is enough.
        server_env.update(DATABASE_POOL_MAX="2", DATABASE_POOL="true")
        command = [str(Path(sys.executable).with_name("gunicorn")), "skillcore.wsgi", "--workers", str(args.workers),
                   "--bind", f"127.0.0.1:{port}", "--timeout", "120", "--backlog", "512"]
        server_name = f"gunicorn, {args.workers} sync workers"
    tmp = ROOT / "var"
    tmp.mkdir(exist_ok=True)
    server_log = (tmp / "bench-load-server.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=server_env, stdout=server_log, stderr=subprocess.STDOUT)
    report: dict = {"students": args.students, "district": district.name, "users": args.users, "think_s": args.think,
                    "server": server_name, "warmup_s": args.warmup, "idle_job_s": idle}
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except Exception as exc:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start; see var/bench-load-server.log") from exc
                time.sleep(0.5)
        # Warm-up, not measured: each gunicorn worker compiles the admin templates, opens its
        # database connection and fills its caches on its first requests, as a server that has
        # been up for a while has long done.
        if args.warmup > 0:
            proc, _, _ = _start_client(base, users, args.warmup, args.think, tmp, "warmup")
            proc.wait()
        # 2. The users alone.
        proc, out, _ = _start_client(base, users, args.seconds, args.think, tmp, "browse")
        proc.wait()
        report["browse_only"] = _summary(json.loads(out.read_text()))
        print("browse only:", report["browse_only"]["all"], flush=True)
        # 3. The users while the daily jobs run.
        proc, out, stop = _start_client(base, users, 0, args.think, tmp, "jobs")
        time.sleep(min(5.0, args.seconds / 4))  # the users are browsing when the first job starts
        loaded = {}
        try:
            loaded_runs: dict[str, list[float]] = {slug: [] for slug in slots}
            for _ in range(args.job_runs):
                for slug in slots:
                    loaded_runs[slug].append(run_job(slug, district, slots[slug])[0]["seconds"])
            loaded = {slug: statistics.median(t) for slug, t in loaded_runs.items()}
            time.sleep(min(5.0, args.seconds / 4))
        finally:
            stop.write_text("stop")
            proc.wait()
        report["browse_during_jobs"] = _summary(json.loads(out.read_text()))
        report["loaded_job_s"] = loaded
        report["job_ratio"] = {slug: round(loaded[slug] / idle[slug], 2) for slug in slots}
        report["idle_job_runs_s"], report["loaded_job_runs_s"] = idle_runs, loaded_runs
    finally:
        server.terminate()
        server.wait(20)
        server_log.close()

    print(f"\n{args.students:,} students, {args.users} users ({args.think}s think), {report['server']}")
    print(f"{'phase':<22}{'requests':>9}{'req/s':>7}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'non-200':>8}")
    for phase in ("browse_only", "browse_during_jobs"):
        s = report[phase]
        print(f"{phase:<22}{s['all'].get('n', 0):>9}{s['req_per_s']:>7}{s['all'].get('p50_ms', '-'):>8}"
              f"{s['all'].get('p95_ms', '-'):>8}{s['all'].get('max_ms', '-'):>8}{s['non_200']:>8}")
    print(f"\n{'page (during jobs)':<40}{'n':>6}{'p50 ms':>8}{'p95 ms':>8}")
    for page, p in report["browse_during_jobs"]["pages"].items():
        print(f"{page:<40}{p.get('n', 0):>6}{p.get('p50_ms', '-'):>8}{p.get('p95_ms', '-'):>8}")
    print(f"\n{'job':<28}{'idle s':>8}{'loaded s':>9}{'ratio':>7}")
    for slug in slots:
        print(f"{slug:<28}{idle[slug]:>8.2f}{loaded[slug]:>9.2f}{report['job_ratio'][slug]:>7.2f}")
    (ROOT / "var" / "bench-load.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
