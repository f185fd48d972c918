"""Run as ``python -m tests.reliability.fork_probe`` with DATABASE_POOL on: opens Django's
pool, forks the way django-q2's sentinel does (multiprocessing "fork", after
``connections.close_all()``), and prints one JSON line saying which server session each
process used and whether the parent's session survived the child."""
from __future__ import annotations

import json
import multiprocessing
import os
import time


def backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def child(queue) -> None:
    from django.db import connections

    try:
        first = backend_pid()
        connections.close_all()  # back to the child's pool, then out again
        queue.put({"pid": os.getpid(), "backend": first, "again": backend_pid()})
    except Exception as exc:  # reported, the parent's assertion names it
        queue.put({"pid": os.getpid(), "error": f"{type(exc).__name__}: {exc}"})
    finally:
        connections.close_all()


def main() -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections

    assert settings.DATABASES["default"]["OPTIONS"].get("pool"), "run with DATABASE_POOL on"
    before = backend_pid()
    connections.close_all()  # as django-q2 does before each fork: back into the pool, open
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = []
    for _ in range(2):
        process = context.Process(target=child, args=(queue,))
        process.start()
        children.append(queue.get(timeout=60))
        process.join(60)
    after = backend_pid()  # the parent's pool still serves, after its children used and left
    # A child's own sessions end when it exits; one it borrowed from the parent would live
    # on in the parent's pool. Termination is asynchronous: poll a few seconds.
    mine = [c["backend"] for c in children if "backend" in c] + [c["again"] for c in children if "again" in c]
    deadline = time.monotonic() + 10
    while True:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [mine + [before]])
            alive = sorted(row[0] for row in cursor.fetchall())
        if alive == [before] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(json.dumps({"parent": {"before": before, "after": after}, "children": children, "alive": alive}))


if __name__ == "__main__":
    main()
