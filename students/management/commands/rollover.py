"""``manage.py rollover --district ID --to NAME --start DATE --end DATE [--dry-run]``.

Closes the district's current school year and opens NAME (students/rollover.py has the
steps). A rollover needs a second system admin's approval, whatever path runs it:

- no request for (district, NAME) yet: the command files one (waiting for approval), says
  who must approve it and where, and rolls nothing over (exit 0);
- a request still waiting for approval, or cancelled: exit 2, one line, nothing written;
- an approved request: the command runs it now (its one-off schedule then finds it done).

``--dry-run`` needs no approval: it prints the exact counts a run would produce, then each
school whose top-grade students would stay because it names no usable feeder school, and writes
nothing (but the access-trail rows of what it read). Running again after success changes
nothing; after a crash it resumes at the first unfinished step. Bad input (unknown
district, a session that exists or overlaps, end before start, a malformed date) exits 2
with one line and writes nothing.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from scheduling.models import RolloverRequest
from skillcore.access import access_trail
from skillcore.cli import one_line_errors, table
from students import rollover


class Command(BaseCommand):
    help = "End-of-year rollover of a district to a new school year (or --dry-run for the counts)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        one_line_errors(parser)  # argparse's errors: one line, exit 2
        return parser

    def add_arguments(self, parser):
        parser.add_argument("--district", required=True)
        parser.add_argument("--to", dest="to_name", required=True, help="name of the new school year, e.g. 2027-2028")
        parser.add_argument("--start", required=True, help="first day of the new year, YYYY-MM-DD")
        parser.add_argument("--end", required=True, help="last day of the new year, YYYY-MM-DD")
        parser.add_argument("--dry-run", action="store_true", help="print the counts, write nothing")

    def handle(self, *args, district, to_name, start, end, dry_run, **options):
        if "\x00" in to_name or "\x00" in str(district):  # PostgreSQL cannot even compare such text
            raise CommandError("--district and --to cannot contain NUL characters", returncode=2)
        try:
            start_d = rollover.parse_date(start, "--start")
            end_d = rollover.parse_date(end, "--end")
            existing = (RolloverRequest.objects.filter(district_id=int(district), to_name=to_name.strip()).first()
                        if str(district).isdigit() else None)
            if existing is not None and (existing.start_date, existing.end_date) != (start_d, end_d):
                raise rollover.RolloverError(
                    f"a rollover to {to_name!r} with dates {existing.start_date}..{existing.end_date} already exists")
            if existing is not None and existing.status == RolloverRequest.Status.DONE:
                self.stdout.write(f"rollover to {existing.to_name!r} already done; nothing changed")
                self.stdout.write(json.dumps({"request": existing.pk, **{k: v for k, v in existing.counts.items()
                                                                          if not k.endswith("_student_ids")}}, sort_keys=True))
                return
            if existing is not None and not dry_run:
                rollover.ensure_approved(existing)  # a pending or cancelled request: refused, nothing written
            target = rollover.validate(district_id=district, to_name=to_name, start=start_d, end=end_d, existing=existing)
        except rollover.RolloverError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if dry_run:
            with access_trail(actor_label="manage.py rollover", purpose="end-of-year rollover dry run"):
                counts = rollover.plan(target)
            schools = counts.pop("no_feeder_schools")
            self.stdout.write(f"Dry run: rollover of district {counts['district']} from {counts['closing_session']} to "
                              f"{counts['new_session']} ({counts['start']} to {counts['end']}); nothing written.")
            self.stdout.write("\n".join(table(
                ["WHAT A RUN NOW WOULD DO", "COUNT"],
                [[label, f"{counts[key]:,}"] for key, label in rollover.COUNT_LABELS.items() if key in counts],
                right={1})))
            # Named before the real run, so a district admin can set the feeder (Schools in the
            # admin) instead of transferring these students by hand afterwards.
            for s in schools:
                why = (f"feeds into {s['feeds_into']}, which cannot take them (grade not taught there, or student "
                       f"number already used there)") if s["feeds_into"] else "names no feeder school"
                self.stdout.write(f"school {s['school']} (id {s['school_id']}, highest grade {s['highest_grade']}) {why}: "
                                  f"{s['students']} student(s) would be promoted in place and listed for transfer")
            return
        now = timezone.now()
        if existing is None:
            req = rollover.request_create(target=target, requested_by=None, run_at=None, now=now)
            self.stdout.write(
                f"filed rollover request {req.pk} of district {target.district.id} to {target.to_name!r}; nothing rolled "
                f"over yet: a system admin must approve it in the admin (Scheduling > Rollover requests > Approve and "
                f"schedule), then it runs at its time or when this command is run again")
            return
        with access_trail(actor_label="manage.py rollover", purpose="end-of-year rollover"):
            try:
                result = rollover.execute(request=existing, now=now)
            except rollover.NotApproved as exc:  # cancelled since the check above: nothing ran
                raise CommandError(str(exc), returncode=2) from None
            except Exception as exc:
                rollover.mark_failed(existing, f"{type(exc).__name__}: {exc}")
                raise CommandError(f"rollover failed at a step; run the same command again to resume: {exc}", returncode=1) from exc
        self.stdout.write(json.dumps(result, sort_keys=True))
