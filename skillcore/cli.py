"""Command-line conventions shared by the management commands."""
from __future__ import annotations

import sys

from django.core.management.base import CommandError


def one_line_errors(parser) -> None:
    """argparse's own errors (a missing value, an unknown option, a bad int) as ONE line
    and exit status 2, like every other bad input of our commands: from the shell it
    prints "CommandError: <message>" instead of the usage text; from call_command it
    raises CommandError(returncode=2) instead of Django's returncode 1."""
    def error(message):
        if getattr(parser, "called_from_command_line", False):
            sys.stderr.write(f"CommandError: {message}\n")
            sys.exit(2)
        raise CommandError(message, returncode=2)

    parser.error = error


def table(headers: list[str], rows: list[list], *, right: set[int] = frozenset()) -> list[str]:
    """Lines of an aligned text table: a header row, then one line per row, each column as
    wide as its widest cell (never cut: a district's full name is what an operator greps
    for). Columns whose index is in ``right`` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    return [line(values) for values in cells]
