"""``manage.py inactive_users --district ID [--as-of DATE] [--dry-run]``.

With ``--dry-run``: list what inactive-user-cleanup would change as of the date (default:
today in the district's zone), one line per change, and write nothing but the FERPA
access-trail row of the read. Without: run the job now through the runner (a JobRun, the
access trail, the audit rows) and print its summary. Bad input exits 2 with one line.
"""
from __future__ import annotations

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from scheduling import runner
from scheduling.models import JobRun
from skillcore.access import access_trail
from students import inactive_users
from students.models import District

SLUG = "inactive-user-cleanup"


class Command(BaseCommand):
    help = "Deactivate, archive or flag inactive users of a district (or list what would change with --dry-run)."

    def add_arguments(self, parser):
        parser.add_argument("--district", type=int, required=True)
        parser.add_argument("--as-of", dest="as_of", help="local date YYYY-MM-DD (default: today in the district's zone)")
        parser.add_argument("--dry-run", action="store_true", help="list the changes, write nothing")

    def handle(self, *args, district, as_of, dry_run, **options):
        found = District.objects.filter(pk=district).first()
        if found is None:
            raise CommandError(f"unknown district {district}", returncode=2)
        zone = found.zone
        if as_of:
            try:
                day = dt.date.fromisoformat(as_of)
            except ValueError:
                raise CommandError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)", returncode=2) from None
        else:
            day = timezone.now().astimezone(zone).date()
        if dry_run:
            with access_trail(actor_label="manage.py inactive_users --dry-run", purpose="inactive-user cleanup: dry run"):
                changes = inactive_users.inactive_users_plan(district=found, as_of=day)
            for c in changes:
                self.stdout.write(f"would {c.action}: {c.label} [{c.rule}]")
            counts = ", ".join(f"{k} {v}" for k, v in inactive_users.summarize(changes).items())
            self.stdout.write(f"dry run as of {day}: {len(changes)} changes ({counts}); nothing written")
            return
        # The job's slot is 02:00 local on that date, as the scheduler would run it.
        slot = dt.datetime.combine(day, dt.time(2, 0), tzinfo=zone)
        run = runner.run_sync(job_slug=SLUG, district=found, as_of=slot)
        if run is None or run.status != JobRun.Status.SUCCEEDED:
            raise CommandError(f"run {getattr(run, 'pk', '?')} did not succeed: {getattr(run, 'error', '')}", returncode=1)
        self.stdout.write(json.dumps(run.result, sort_keys=True))
