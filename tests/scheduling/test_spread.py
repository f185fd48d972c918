"""Spread by design: a back-office job's districts each take a stable minute of the job's
window, seeded into their schedule's cron by sync, so the cron the dashboard and ``jobs next``
show is the real local time; a cron staff edited and a job without spread keep their minute."""
from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse
from django_q.models import Schedule

from scheduling import cron, registry, services
from scheduling.models import JobSchedule
from tests import factories as f
from tests.scheduling import jobs_for_tests

UTC = dt.UTC
NOW = dt.datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 10:00 in New York: the next 02:xx is tomorrow's
SPREAD = registry.Job(slug="t-spread", title="Test spread", default_cron="0 2 * * *", why="test",
                      entry=jobs_for_tests.record, spread_minutes=60)
EXACT = registry.Job(slug="t-exact", title="Test exact", default_cron="30 18 * * *", why="test",
                     entry=jobs_for_tests.record)
PEOPLE_FACING = ["attendance-interventions", "iep-review-reminders", "missing-assignment-alerts",
                 "grade-posting-digest", "emergency-notification-test"]


@pytest.fixture
def spread_jobs(monkeypatch):
    """Only the two jobs above, so sync creates their schedules and nothing else."""
    for job in (EXACT, SPREAD):
        registry.register(job)
    monkeypatch.setattr(registry, "all_jobs", lambda: [EXACT, SPREAD])
    yield
    for job in (EXACT, SPREAD):
        registry.unregister(job.slug)


def sync() -> services.SyncReport:
    with time_machine.travel(NOW, tick=False):
        return services.sync_schedules()


def off_the_hour(zone: str):
    """A district whose minute is not the window's first (1 in 60 is): a test that the
    minute moved must not pass by chance."""
    while not SPREAD.spread_offset((district := f.DistrictFactory(time_zone=zone)).pk):
        pass
    return district


def schedules(slug: str) -> dict[int, tuple[str, dt.datetime]]:
    return {s.district_id: (s.cron, s.q_schedule.next_run)
            for s in JobSchedule.objects.select_related("q_schedule").filter(job=slug)}


def test_every_district_takes_a_minute_inside_the_window_and_they_differ():
    minutes = [SPREAD.spread_offset(district_id) for district_id in range(1, 5001)]
    assert set(minutes) <= set(range(60))
    # 5,000 districts over 60 minutes: every minute used, none holding more than twice its share.
    assert set(minutes) == set(range(60))
    assert max(minutes.count(m) for m in range(60)) < 2 * 5000 / 60
    assert {SPREAD.cron_for(d) for d in (1, 2, 3)} <= {f"{m} 2 * * *" for m in range(60)}


def test_a_window_that_starts_inside_the_hour_stays_inside_it():
    job = registry.Job(slug="t-half", title="t", default_cron="30 3 * * 0", why="t", spread_minutes=30)
    crons = {job.cron_for(d) for d in range(1, 1001)}
    assert crons == {f"{m} 3 * * 0" for m in range(30, 60)}


def test_the_offset_is_the_same_in_another_process():
    """crc32, not hash(): another process (another qcluster, a later sync) has another hash
    seed and must still pick the same minute."""
    ids = list(range(1, 200, 7))
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'skillcore.settings_test'); django.setup()\n"
        "from scheduling.registry import Job\n"
        "job = Job(slug='t-spread', title='t', default_cron='0 2 * * *', why='t', spread_minutes=60)\n"
        f"print(' '.join(str(job.spread_offset(d)) for d in {ids!r}))\n"
    )
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
        assert out.split() == [str(SPREAD.spread_offset(d)) for d in ids]


def test_a_job_without_spread_keeps_its_exact_minute():
    assert {EXACT.cron_for(d) for d in range(1, 500)} == {"30 18 * * *"}
    assert EXACT.spread_offset(7) == 0
    assert registry.Job(slug="t-adhoc", title="t", default_cron=None, why="t").cron_for(3) == ""


def test_the_jobs_people_wait_for_declare_no_spread():
    for slug in PEOPLE_FACING:
        assert registry.get(slug).spread_minutes == 0, slug
    spread = {j.slug for j in registry.all_jobs() if j.spread_minutes}
    assert spread and not spread & set(PEOPLE_FACING)


@pytest.mark.parametrize("kwargs, message", [
    ({"scope": "global"}, "a global job has one schedule"),
    ({"default_cron": "*/5 2 * * *"}, "one fixed minute"),
    ({"default_cron": None}, "one fixed minute"),
    ({"default_cron": "30 2 * * *"}, "inside the hour (1 to 30)"),
    ({"spread_minutes": 61, "default_cron": "0 2 * * *"}, "inside the hour (1 to 60)"),
    ({"spread_minutes": -5}, "inside the hour"),
])
def test_a_spread_the_window_cannot_hold_is_refused(kwargs, message):
    args = {"slug": "t-bad", "title": "t", "default_cron": "0 2 * * *", "why": "t", "spread_minutes": 60} | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        registry.Job(**args)


def test_a_spring_forward_day_runs_a_spread_slot_once_right_after_the_jump():
    """The window is inside the default's hour, so cron's DST rule is the default's: 02:37 does
    not exist on 2027-03-14 in New York and runs once, at 03:00 EDT (like 02:00 does)."""
    expr = next(SPREAD.cron_for(d) for d in range(1, 100) if SPREAD.spread_offset(d) == 37)
    slots = cron.next_slots(expr, "America/New_York", dt.datetime(2027, 3, 13, 12, tzinfo=UTC), 3)
    assert slots == [dt.datetime(2027, 3, 14, 7, 0, tzinfo=UTC), dt.datetime(2027, 3, 15, 6, 37, tzinfo=UTC),
                     dt.datetime(2027, 3, 16, 6, 37, tzinfo=UTC)]


@pytest.mark.django_db
def test_sync_seeds_each_district_at_its_minute_and_a_second_sync_changes_nothing(spread_jobs):
    districts = f.DistrictFactory.create_batch(30, time_zone="America/New_York")
    first = sync()
    assert first.created == 60
    spread = schedules("t-spread")
    for d in districts:
        minute = SPREAD.spread_offset(d.pk)
        # The cron is the real local time; the q row fires at it (02:MM EST = 07:MM UTC).
        assert spread[d.pk] == (f"{minute} 2 * * *", dt.datetime(2026, 12, 2, 7, minute, tzinfo=UTC))
    assert len({cron_expr for cron_expr, _ in spread.values()}) > 10
    assert set(schedules("t-exact").values()) == {("30 18 * * *", dt.datetime(2026, 12, 1, 23, 30, tzinfo=UTC))}

    again = sync()
    assert (again.created, again.updated, again.unchanged) == (0, 0, 60)
    assert schedules("t-spread") == spread


@pytest.mark.django_db
def test_a_schedule_seeded_before_the_spread_moves_to_its_minute_and_a_staff_cron_stays(spread_jobs, system_admin):
    moved, edited = off_the_hour("America/Chicago"), f.DistrictFactory(time_zone="America/Chicago")
    sync()
    # As if both were seeded at the default minute before the job declared its spread.
    JobSchedule.objects.filter(job="t-spread").update(cron="0 2 * * *")
    Schedule.objects.filter(name__startswith="skillcore:t-spread").update(cron="0 2 * * *")
    schedule = JobSchedule.objects.get(job="t-spread", district=edited)
    with time_machine.travel(NOW, tick=False):
        services.edit_cron(schedule=schedule, acting_user=system_admin, cron_expr="15 4 * * *")

    report = sync()
    assert report.updated == 1
    after = schedules("t-spread")
    minute = SPREAD.spread_offset(moved.pk)
    assert after[moved.pk] == (f"{minute} 2 * * *", dt.datetime(2026, 12, 2, 8, minute, tzinfo=UTC))  # 02:MM CST
    assert after[edited.pk] == ("15 4 * * *", dt.datetime(2026, 12, 2, 10, 15, tzinfo=UTC))  # staff's 04:15 CST
    assert JobSchedule.objects.get(pk=schedule.pk).cron_customized


@pytest.mark.django_db
def test_jobs_next_shows_the_districts_real_time(spread_jobs):
    district = off_the_hour("America/New_York")
    minute = SPREAD.spread_offset(district.pk)

    def next_runs() -> list[str]:
        out = StringIO()
        call_command("jobs", "next", "t-spread", "--district", str(district.pk), "--after", "2026-12-01",
                     "--count", "2", stdout=out)
        return out.getvalue().splitlines()

    expected = [f"2026-12-01T02:{minute:02d}:00-05:00", f"2026-12-02T02:{minute:02d}:00-05:00"]
    assert next_runs() == expected  # before any sync: the job's cron for this district
    sync()
    assert next_runs() == expected  # after: the schedule's own cron, the same minute


@pytest.mark.django_db
def test_the_dashboard_shows_the_districts_real_time(spread_jobs, client, system_admin):
    district = off_the_hour("America/New_York")
    minute = SPREAD.spread_offset(district.pk)
    sync()
    client.force_login(system_admin)
    with time_machine.travel(NOW, tick=False):
        page = client.get(reverse("admin:scheduled_jobs")).content.decode()
    schedule = JobSchedule.objects.get(job="t-spread", district=district)
    row = re.search(rf'<tr id="schedule-{schedule.pk}".*?</tr>', page, re.S).group(0)
    assert f"At 02:{minute:02d} every day" in row
    assert f"Wed 2026-12-02 02:{minute:02d} EST (UTC\u221205:00)" in row and f"2026-12-02 07:{minute:02d}Z" in row
