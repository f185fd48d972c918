"""``manage.py purge_access_log`` deletes the trail rows past the retention, and only those
(on PostgreSQL through the append-only trigger's one opening)."""
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

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


def test_a_retention_shorter_than_the_triggers_seven_years_stops_start_up_with_one_line():
    """7 x 365 days is two days short of 7 calendar years: the purge would only be refused."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "skillcore.settings", "SECRET_KEY": "x",
           "ACCESS_LOG_RETENTION_DAYS": str(7 * 365)}
    done = subprocess.run([sys.executable, "-c", "import skillcore.settings"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"SkillCore: environment variable ACCESS_LOG_RETENTION_DAYS must be at least {7 * 365 + 2}, got {7 * 365}"
    ), done.stderr
