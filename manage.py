#!/usr/bin/env python
import os
import sys
from pathlib import Path


def main() -> None:
    # A .env beside this file (django-environ's convention; `make demo` writes one with
    # DEBUG=1 and a generated SECRET_KEY) fills in what the shell did not export, so every
    # documented command works in the demo checkout. Variables already set win.
    from skillcore.env import read_dotenv

    read_dotenv(Path(__file__).resolve().parent / ".env")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillcore.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
