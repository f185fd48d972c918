"""``manage.py alerts``: watch, deliver, status.

- ``alerts watch``: one watch pass (long runs, a stopped scheduler, due deliveries). Every
  qcluster's scheduler pass already does this; run it also from *outside* the cluster
  (cron or a Kubernetes CronJob, every minute) so a cluster that is entirely down still
  pages someone. Exit 0; prints what it did.
- ``alerts deliver``: send due alert deliveries now (retries included).
- ``alerts status [--json]``: the system status and open incidents.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from scheduling.monitoring import alerting, status


class Command(BaseCommand):
    help = "Alerting: watch (one pass), deliver (send due alerts), status."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="verb", required=True)
        sub.add_parser("watch", help="one watch pass: long runs, a stopped scheduler, due deliveries")
        sub.add_parser("deliver", help="send alert deliveries that are due")
        st = sub.add_parser("status", help="system status and open incidents")
        st.add_argument("--json", action="store_true")

    def handle(self, *args, verb: str, **options):
        if verb == "watch":
            r = alerting.watch()
            self.stdout.write(
                f"watch: {r.overdue} overdue, scheduler {'DOWN' if r.scheduler_down else 'ok'}, "
                f"long-running opened {r.long_running_opened} closed {r.long_running_closed}; "
                f"deliveries sent {r.delivered.sent} retrying {r.delivered.retrying} failed {r.delivered.failed}"
            )
        elif verb == "deliver":
            r = alerting.deliver_due()
            self.stdout.write(f"deliveries sent {r.sent} retrying {r.retrying} failed {r.failed}")
        elif verb == "status":
            s = status.system_status()
            incidents = list(status.open_incidents().order_by("-opened_at")[:100])
            if options["json"]:
                self.stdout.write(json.dumps({
                    "healthy": s.healthy, "last_heartbeat": s.last_heartbeat, "heartbeat_age_seconds": s.heartbeat_age_seconds,
                    "overdue": s.overdue, "running": s.running, "long_running": s.long_running, "failing": s.failing,
                    "open_incidents": [
                        {"id": i.pk, "kind": i.kind, "severity": i.severity, "job": i.job, "district": i.district_id,
                         "opened_at": i.opened_at, "occurrences": i.occurrences, "summary": i.summary}
                        for i in incidents
                    ],
                }, default=str, sort_keys=True))
                return
            beat = s.last_heartbeat.isoformat() if s.last_heartbeat else "never"
            self.stdout.write(
                f"{'healthy' if s.healthy else 'UNHEALTHY'}: heartbeat {beat}, {s.overdue} overdue, "
                f"{s.running} running ({s.long_running} long), {s.failing} failing"
            )
            for i in incidents:
                self.stdout.write(f"#{i.pk} {i.severity} {i.kind} {i.job} @ {i.district_id or 'global'} "
                                  f"since {i.opened_at:%Y-%m-%d %H:%M}Z x{i.occurrences}: {i.summary}")
        else:  # argparse already refuses other verbs; kept for a clear message if it changes
            raise CommandError(f"unknown verb {verb!r}", returncode=2)
