"""``manage.py purge_access_log`` deletes the trail rows past the retention, and only those
(on PostgreSQL through the append-only trigger's one opening)."""
import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from skillcore.models import AccessLog
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_the_command_deletes_rows_past_the_retention_and_keeps_the_rest(settings):
    now = timezone.now()
    settings.ACCESS_LOG_RETENTION_DAYS = 7 * 365 + 2
    f.AccessLogFactory(at=now - dt.timedelta(days=7 * 365 + 10))
    kept = [f.AccessLogFactory(at=now - dt.timedelta(days=7 * 365 - 1)), f.AccessLogFactory(at=now)]
    out = io.StringIO()
    call_command("purge_access_log", stdout=out)
    assert out.getvalue() == "deleted 1 access-trail rows older than 2557 days\n"
    assert sorted(AccessLog.objects.values_list("pk", flat=True)) == sorted(row.pk for row in kept)
