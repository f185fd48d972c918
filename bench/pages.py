"""Benchmark: each admin page the load benchmark opens, once per role, on the big district.

    python -m bench pages [--students 50000] [--repeat 3] [--slowest 1]

Uses the load benchmark's database and accounts (bench/load.py; BENCH_DATABASE_URL
overrides). For every role and page: the best of ``--repeat`` requests through Django's test
client in this process (no HTTP server, no other load), the queries the page made, and its
slowest query with its time. This is where a slow page under load is first looked at: a
page that is slow alone cannot be fast under 50 users.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=int(os.environ.get("BENCH_LOAD_STUDENTS", 50_000)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slowest", type=int, default=1, help="slowest queries shown per page")
    args = parser.parse_args(argv)
    if args.students < 1 or not 1 <= args.repeat <= 20 or not 0 <= args.slowest <= 10:
        print("bench pages: --students >= 1, --repeat 1..20, --slowest 0..10.", file=sys.stderr)
        return 2
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    from bench._django import setup

    setup("skillcore_bench_load")
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.load import PAGES, _district, _users

    district = _district(args.students, 5)
    accounts = {}
    for username, kind in _users(district, 20):
        accounts.setdefault(kind, username)
    print(f"{'role':<15}{'page':<42}{'best ms':>8}{'queries':>8}  slowest query")
    for kind, pages in PAGES.items():
        client = Client()
        client.force_login(User.objects.get(username=accounts[kind]))
        for page in pages:
            best, captured = None, None
            for _ in range(args.repeat):
                with CaptureQueriesContext(connection) as ctx:
                    t0 = time.perf_counter()
                    status = client.get(page).status_code
                    took = time.perf_counter() - t0
                if status != 200:
                    print(f"{kind:<15}{page:<42}  HTTP {status}")
                    break
                if best is None or took < best:
                    best, captured = took, list(ctx.captured_queries)
            else:
                slow = sorted(captured, key=lambda q: -float(q["time"]))[: args.slowest]
                first = " | ".join(f"{float(q['time']) * 1000:.0f} ms {q['sql'][:160]}" for q in slow)
                print(f"{kind:<15}{page:<42}{best * 1000:>8.0f}{len(captured):>8}  {first}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
