"""Ops entry points: ``manage.py notifications drain`` and ``... assemble --frequency daily``."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from notifications import delivery, services


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise CommandError(f"expected a whole number >= 1, got {value!r}", returncode=2)
    return n


class Command(BaseCommand):
    help = "Drain the notification outbox or assemble digests."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        drain = sub.add_parser("drain", help="send due notifications")
        drain.add_argument("--batch-size", default="100")
        drain.add_argument("--max-batches", default=None)
        assemble = sub.add_parser("assemble", help="assemble daily or weekly digests of closed periods")
        assemble.add_argument("--frequency", default="daily")

    def handle(self, *args, action: str, **options):
        if action == "drain":
            batch = _positive(options["batch_size"])
            max_batches = _positive(options["max_batches"]) if options["max_batches"] is not None else None
            summary = delivery.drain(batch_size=batch, max_batches=max_batches)
            self.stdout.write(str(summary.as_dict()))
        else:
            frequency = options["frequency"]
            if frequency not in ("daily", "weekly"):
                raise CommandError(f"--frequency must be daily or weekly, not {frequency!r}", returncode=2)
            s = services.digests_assemble(frequency=frequency)
            self.stdout.write(f"digests={s.digests} items={s.items} dropped_revoked={s.dropped_revoked} dropped_no_consent={s.dropped_no_consent}")
