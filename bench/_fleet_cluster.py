"""One qcluster of the fleet benchmark (bench/fleet.py starts K of these).

``python -m bench._fleet_cluster LOGFILE``: the real ``manage.py qcluster`` on the fleet's
database (DATABASE_URL and Q_WORKERS come from the parent), with one addition for the
measurement: every ``scheduling.firing.fire_due`` call of its scheduler appends one JSON
line to LOGFILE (when it started, slots fired, chunks, seconds, statements). The engine is
not changed; its function is wrapped in this process only (django-q2 forks its scheduler
and workers from here, so they inherit the wrapper).
"""
from __future__ import annotations

import json
import os
import sys
import time


def main(logfile: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillcore.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from scheduling import firing

    real = firing.fire_due

    def measured(*args, **kwargs):
        count = [0]

        def counter(execute, sql, params, many, context):
            count[0] += 1
            return execute(sql, params, many, context)

        started = time.time()
        with connection.execute_wrapper(counter):
            report = real(*args, **kwargs)
        if report.fired:
            with open(logfile, "a") as out:
                out.write(json.dumps({"pid": os.getpid(), "start": started, "fired": report.fired,
                                      "chunks": report.chunks, "seconds": report.seconds, "queries": count[0]}) + "\n")
        return report

    firing.fire_due = measured
    call_command("qcluster")


if __name__ == "__main__":
    main(sys.argv[1])
