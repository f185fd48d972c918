"""``manage.py purge_access_log``: delete access-trail rows past the retention.

The retention is ACCESS_LOG_RETENTION_DAYS (at least 7 years). Run it, e.g. monthly, with the
OWNER's connection (``DATABASE_URL=<owner URL> python manage.py purge_access_log``): the
application role holds no DELETE on the trail, and PostgreSQL's trigger lets only rows more
than 7 years old go (docs/deployment.md, "Two database roles"). A refused purge exits 1
with the database's message; nothing is deleted.
"""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from skillcore.services import access_log_purge


class Command(BaseCommand):
    help = "Delete access-trail rows older than ACCESS_LOG_RETENTION_DAYS (run with the owner's DATABASE_URL)."

    def handle(self, *args, **options):
        try:
            deleted = access_log_purge(now=timezone.now())
        except DatabaseError as error:
            raise CommandError(f"purge refused: {error}".strip()) from error
        self.stdout.write(f"deleted {deleted} access-trail rows older than {settings.ACCESS_LOG_RETENTION_DAYS} days")
