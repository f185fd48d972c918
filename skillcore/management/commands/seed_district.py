"""``manage.py seed_district``: generate a synthetic district (see skillcore.seed).

Bad input (a count that is not a positive number, an unknown time zone, a malformed date, a
district name already in use) exits with status 2 and one line, before anything is written.
There is deliberately no ``--replace``: deleting millions of rows of a district is a job for
a fresh database, not a side effect of a seeding command.
"""
from __future__ import annotations

import datetime as dt
import time
import zoneinfo

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from skillcore.cli import one_line_errors
from skillcore.seed import MAX_STUDENTS, SeedError, seed_district
from students.zones import zone_problem


def parse_count(value: str, option: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CommandError(f"{option} must be a whole number, not {value!r}.", returncode=2) from None
    if number < 1 or number > MAX_STUDENTS:
        raise CommandError(f"{option} must be from 1 to {MAX_STUDENTS:,}, not {number}.", returncode=2)
    return number


def parse_date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise CommandError(f"{option} must be a date as YYYY-MM-DD, not {value!r}.", returncode=2) from None


class Progress:
    """A plain-text progress bar on stderr: rewritten in place on a terminal, one line per
    step otherwise (so logs stay readable). ``stream`` is a command's ``self.stderr``."""

    def __init__(self, stream, enabled: bool = True):
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.started = time.monotonic()

    def __call__(self, done: int, total: int, detail: str) -> None:
        if not self.enabled:
            return
        filled = 30 * done // max(total, 1)
        line = f"seeding [{'#' * filled}{'.' * (30 - filled)}] {100 * done // max(total, 1):3d}% {detail} ({time.monotonic() - self.started:.0f}s)"
        plain = lambda text: text  # noqa: E731 - not the red "error" style of stderr
        self.stream.write(("\r" + line + "\033[K") if self.tty else line, style_func=plain, ending="" if self.tty else "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("", style_func=lambda text: text, ending="\n")


class Command(BaseCommand):
    help = "Generate a realistic, deterministic synthetic district (students, calendar, attendance, grades, IEPs)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        one_line_errors(parser)  # argparse's errors: one line, exit 2
        return parser

    def add_arguments(self, parser):
        # Counts and dates are parsed here rather than by argparse so that bad input gives
        # one line and exit status 2, from the shell and from call_command alike.
        parser.add_argument("--students", required=True, help="Number of students (about 500 a school).")
        parser.add_argument("--seed", default="1", help="Random seed: the same seed gives the same rows (default 1).")
        parser.add_argument("--timezone", default="America/New_York", help="The district's IANA time zone.")
        parser.add_argument("--as-of", help="Generate attendance and grades up to this date, YYYY-MM-DD (default: today in the district's zone).")
        parser.add_argument("--name", help='District name (default "Synthetic District <seed>").')
        parser.add_argument("--no-progress", action="store_true", help="Do not print progress on stderr.")

    def handle(self, *args, **options):
        students = parse_count(options["students"], "--students")
        try:
            seed = int(options["seed"])
        except (TypeError, ValueError):
            raise CommandError(f"--seed must be a whole number, not {options['seed']!r}.", returncode=2) from None
        zone = options["timezone"]
        if zone_problem(zone):  # the districts' rule (no "localtime" or "Factory")
            raise CommandError(f"--timezone {zone_problem(zone)}.", returncode=2)
        tz = zoneinfo.ZoneInfo(zone)
        as_of = parse_date(options["as_of"], "--as-of") if options["as_of"] is not None else timezone.now().astimezone(tz).date()
        name = options["name"] or f"Synthetic District {seed}"

        progress = Progress(self.stderr, enabled=not options["no_progress"] and options["verbosity"] > 0)
        try:
            result = seed_district(name=name, students=students, seed=seed, time_zone=zone, as_of=as_of, progress=progress)
        except SeedError as e:
            raise CommandError(str(e), returncode=2) from None
        finally:
            progress.done()
        self.report(result)

    def report(self, result) -> None:
        d = result.district
        session = d.sessions.get(is_current=True)
        self.stdout.write(
            f"Seeded {d.name!r} (id {d.pk}, {d.time_zone}), session {session.name} "
            f"{session.start_date}..{session.end_date}, in {result.elapsed:.1f}s."
        )
        width = max(len(label) for label in result.counts)
        for label, n in result.counts.items():
            self.stdout.write(f"  {label:<{width}}  {n:>12,}")
        self.stdout.write(f"  {'total':<{width}}  {sum(result.counts.values()):>12,}")
