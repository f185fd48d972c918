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
