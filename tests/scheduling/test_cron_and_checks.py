"""Cron evaluation helpers (the dashboard's preview), the timeout, and the system check."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from scheduling import checks, cron
from scheduling.models import JobRun

UTC = dt.UTC
NY = ZoneInfo("America/New_York")


def test_preview_shows_the_runs_around_the_next_dst_change():
    p = cron.preview("0 2 * * *", "America/New_York", dt.datetime(2027, 2, 1, tzinfo=UTC), count=3)
    assert [s.astimezone(NY).isoformat() for s in p["next"]] == [
        "2027-02-01T02:00:00-05:00", "2027-02-02T02:00:00-05:00", "2027-02-03T02:00:00-05:00",
    ]
    assert p["transition"] == dt.datetime(2027, 3, 14, 7, 0, tzinfo=UTC)  # 02:00 EST -> 03:00 EDT
    # Two runs before the change, then the first after it (02:00 does not exist that day).
    assert [s.astimezone(NY).isoformat() for s in p["around_transition"]] == [
        "2027-03-12T02:00:00-05:00", "2027-03-13T02:00:00-05:00", "2027-03-14T03:00:00-04:00",
    ]


def test_preview_in_a_zone_without_dst():
    p = cron.preview("30 6 * * 1-5", "Asia/Kolkata", dt.datetime(2026, 12, 1, tzinfo=UTC), count=2)
    assert p["transition"] is None and p["around_transition"] == []
    assert [s.isoformat() for s in p["next"]] == ["2026-12-01T01:00:00+00:00", "2026-12-02T01:00:00+00:00"]


@pytest.mark.parametrize("expr", ["", "* * *", "61 * * * *", "0 25 * * *", "0 0 31 2 *"])
def test_bad_crons_are_refused_with_a_message(expr):
    with pytest.raises(cron.BadCron) as info:
        cron.validate(expr)
    assert repr(expr) in str(info.value)


def test_describe_and_bad_zone():
    assert cron.describe("0 10 * 1,4,7,10 MON#1").startswith("At 10:00 on the first Monday")
    with pytest.raises(cron.BadCron, match="not an IANA time zone"):
        cron.next_slot("0 2 * * *", "Mars/Olympus", dt.datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.django_db
def test_a_run_past_its_timeout_is_recorded_as_timed_out(test_jobs, new_york):
    with pytest.raises(SystemExit):
        call_command("jobs", "run", "t-slow", "--district", str(new_york.pk))
    run = JobRun.objects.get()
    assert run.status == "timed_out" and "maximum timeout value (1 seconds)" in run.error
    assert run.duration_seconds < 3


def test_system_check_warns_when_redelivery_comes_before_the_deadline(settings, test_jobs):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "orm": "default", "retry": 600}
    assert [w.id for w in checks.redelivery_after_deadline(None)] == ["scheduling.W001"]
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 4000}
    assert checks.redelivery_after_deadline(None) == []
