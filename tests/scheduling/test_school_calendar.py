"""Calendar-aware schedules: a "school days" job's slot on a day no school is in session is
recorded as skipped with the calendar's reason (never run, never missed, never alerted),
decided at run time from the database through the real django-q2 scheduler loop, shown by
``jobs next``; a date the calendar does not cover runs as before and the dashboard says so."""
from __future__ import annotations

import datetime as dt
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scheduling import registry, services
from scheduling.models import AlertDelivery, CalendarSkipCounter, Incident, JobRun
from scheduling.monitoring import metrics
from students.models import CalendarDay
from tests import factories as f
from tests.scheduling.conftest import scheduler_pass

NY = ZoneInfo("America/New_York")
JOB = "attendance-interventions"  # school days, 30 18 * * *


def weekdays(first: dt.date, last: dt.date):
    day = first
    while day <= last:
        if day.weekday() < 5:
            yield day
        day += dt.timedelta(days=1)


@pytest.fixture
def attendance_only(monkeypatch):
    """Sync only the attendance job (the real one: its policy is "school days")."""
    job = registry.get(JOB)
    assert job.calendar == registry.SCHOOL_DAYS
    monkeypatch.setattr(registry, "all_jobs", lambda: [job])
    return job


@pytest.fixture
def district(db):
    """Two schools; their calendars list 14-18 Dec 2026 and 4-8 Jan 2027 as school days and
    the winter break's weekdays between as closures (no weekend rows, as seeded)."""
    district = f.DistrictFactory(name="Hudson Valley", time_zone="America/New_York")
    f.AcademicSessionFactory(district=district)
    rows = []
    for school in (f.SchoolFactory(district=district), f.SchoolFactory(district=district)):
        rows += [CalendarDay(school=school, date=d) for d in weekdays(dt.date(2026, 12, 14), dt.date(2026, 12, 18))]
        rows += [CalendarDay(school=school, date=d, is_instructional=False, note="Winter break")
                 for d in weekdays(dt.date(2026, 12, 21), dt.date(2027, 1, 1))]
        rows += [CalendarDay(school=school, date=d) for d in weekdays(dt.date(2027, 1, 4), dt.date(2027, 1, 8))]
    CalendarDay.objects.bulk_create(rows)
    return district


def at(day: int, month: int = 12, year: int = 2026, hour: int = 18, minute: int = 30, second: int = 5) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=NY)


def slot_run(district, local: dt.datetime) -> JobRun:
    return JobRun.objects.get(job=JOB, district=district, slot=local.replace(second=0))


def scrape() -> dict:
    reg = CollectorRegistry()
    reg.register(metrics.JobMetricsCollector())
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(reg).decode()) for s in family.samples
    }


@pytest.mark.django_db
def test_a_christmas_day_slot_is_skipped_with_the_calendars_reason_and_not_alerted(attendance_only, district):
    with time_machine.travel(at(25, hour=12), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(at(25))
        scheduler_pass()

    run = slot_run(district, at(25))
    assert (run.trigger, run.status, run.started_at) == ("schedule", "skipped", None)
    assert run.note == "skipped: Winter break (school calendar; the job runs on school days)"
    assert JobRun.objects.filter(job=JOB).count() == 1
    assert not Incident.objects.exists() and not AlertDelivery.objects.exists()
    assert CalendarSkipCounter.objects.get(job=JOB, reason="Winter break").skipped == 1
    found = scrape()
    assert found[("scheduled_job_skipped_total", (("job", JOB), ("reason", "Winter break")))] == 1.0
    assert found[("scheduled_job_skipped_runs_total", (("job", JOB),))] == 1.0
    assert found[("scheduled_job_missed_runs_total", (("job", JOB),))] == 0.0


@pytest.mark.django_db
def test_the_weekend_inside_the_calendar_is_no_school_day(attendance_only, district):
    with time_machine.travel(at(19, hour=12), tick=False) as traveller:  # Saturday 19 Dec: no row
        services.sync_schedules()
        traveller.move_to(at(19))
        scheduler_pass()
    assert (slot_run(district, at(19)).status, slot_run(district, at(19)).note.split(" (")[0]) == ("skipped", "skipped: Weekend")


@pytest.mark.django_db
def test_a_snow_day_entered_after_sync_skips_that_evenings_run_and_a_day_turned_back_runs(attendance_only, district):
    school = district.schools.order_by("pk").first()
    with time_machine.travel(at(16, hour=6), tick=False) as traveller:  # Wednesday 16 Dec, a school day
        services.sync_schedules()
        traveller.move_to(at(16, hour=7, minute=0))
        # The superintendent closes every school at 07:00 (the admin's edit of the rows).
        CalendarDay.objects.filter(school__district=district, date=dt.date(2026, 12, 16)).update(
            is_instructional=False, note="Snow day")
        traveller.move_to(at(16))
        scheduler_pass()
        snow = slot_run(district, at(16))
        assert (snow.status, snow.note.split(" (")[0]) == ("skipped", "skipped: Snow day")

        # Thursday: closed at 06:00 for a forecast that did not come, reopened at 09:00 (one
        # school only: a district runs when any of its schools is in session).
        traveller.move_to(at(17, hour=6, minute=0))
        CalendarDay.objects.filter(school__district=district, date=dt.date(2026, 12, 17)).update(
            is_instructional=False, note="Snow day")
        traveller.move_to(at(17, hour=9, minute=0))
        CalendarDay.objects.filter(school=school, date=dt.date(2026, 12, 17)).update(is_instructional=True, note="")
        traveller.move_to(at(17))
        scheduler_pass()

    thursday = slot_run(district, at(17))
    assert thursday.status == "succeeded" and thursday.started_at is not None
    assert thursday.result["checked"] == 0
    assert CalendarSkipCounter.objects.get(job=JOB, reason="Snow day").skipped == 1
    assert not Incident.objects.exists()


@pytest.mark.django_db
def test_after_an_outage_the_break_is_skipped_not_missed_and_only_school_day_slots_alert(attendance_only, district):
    """The scheduler was down from Friday 18 Dec to Monday 21 Dec 19:00: the Friday slot is
    missed (a school day), the weekend and Monday's break are skipped, nothing runs."""
    with time_machine.travel(at(18, hour=12), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(at(21, hour=19, minute=0))
        scheduler_pass()

    by_day = {r.slot.astimezone(NY).day: (r.status, r.note.split(" (")[0]) for r in JobRun.objects.filter(job=JOB)}
    assert by_day[19] == ("skipped", "skipped: Weekend") and by_day[20] == ("skipped", "skipped: Weekend")
    assert by_day[21] == ("skipped", "skipped: Winter break")
    assert by_day[18][0] == "missed"
    assert set(by_day) == {18, 19, 20, 21}
    assert Incident.objects.count() == 1  # the missed Friday only


@pytest.mark.django_db
def test_an_any_day_job_ignores_the_calendar(district, monkeypatch):
    job = registry.get("iep-review-reminders")
    assert job.calendar == registry.ANY_DAY
    monkeypatch.setattr(registry, "all_jobs", lambda: [job])
    with time_machine.travel(at(25, hour=6), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(at(25, hour=7, minute=0))
        scheduler_pass()
    run = JobRun.objects.get(job=job.slug)
    assert run.status != "skipped" and run.started_at is not None





@pytest.mark.django_db
def test_jobs_next_marks_the_days_the_calendar_skips(attendance_only, district):
    with time_machine.travel(at(18, hour=12), tick=False):
        services.sync_schedules()
    out = StringIO()
    call_command("jobs", "next", JOB, "--district", str(district.pk), "--after", "2026-12-18T12:00", "--count", "4",
                 stdout=out)
    assert out.getvalue().splitlines() == [
        "2026-12-18T18:30:00-05:00",
        "2026-12-19T18:30:00-05:00 — skipped: Weekend",
        "2026-12-20T18:30:00-05:00 — skipped: Weekend",
        "2026-12-21T18:30:00-05:00 — skipped: Winter break",
    ]


@pytest.mark.django_db
def test_a_date_the_calendar_does_not_cover_runs_and_the_dashboard_says_the_calendar_is_missing(
        attendance_only, district, client):
    # The calendar ends on 8 Jan 2027: next year's is not entered. Monday 11 Jan runs as before.
    with time_machine.travel(at(11, month=1, year=2027, hour=12), tick=False) as traveller:
        services.sync_schedules()
        traveller.move_to(at(11, month=1, year=2027))
        scheduler_pass()
        run = slot_run(district, at(11, month=1, year=2027))
        assert run.status == "succeeded"

        admin = f.UserFactory(username="sysadmin", is_staff=True, is_superuser=True)
        client.force_login(admin)
        page = client.get("/admin/scheduled-jobs/").content.decode()
    assert "School calendar missing" in page
    assert "Hudson Valley: no school calendar from Mon 2027-01-11" in page


@pytest.mark.django_db
def test_the_dashboard_does_not_warn_while_the_calendar_covers_the_coming_weeks(attendance_only, district, client):
    with time_machine.travel(at(14, hour=12), tick=False):
        admin = f.UserFactory(username="sysadmin", is_staff=True, is_superuser=True)
        client.force_login(admin)
        page = client.get("/admin/scheduled-jobs/").content.decode()
    assert "School calendar missing" not in page

def test_every_job_declares_its_calendar_policy():
    """No job of scheduling/jobs/ relies on the default: each says "any day" or "school days"
    in its Job(...), and docs/jobs.md gives the reason."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    undeclared = []
    for path in sorted((root / "scheduling" / "jobs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Job":
                if "calendar" not in {k.arg for k in node.keywords}:
                    undeclared.append(path.name)
    assert not undeclared
    policies = {job.slug: job.calendar for job in registry.all_jobs()}
    assert {slug for slug, p in policies.items() if p == registry.SCHOOL_DAYS} == {
        "attendance-interventions", "missing-assignment-alerts"}
    assert len(policies) >= 13


def test_a_bad_calendar_policy_is_refused_at_definition():
    with pytest.raises(ValueError, match="calendar must be one of"):
        registry.Job(slug="t-bad", title="t", default_cron=None, why="t", calendar="weekdays")
    with pytest.raises(ValueError, match="global job cannot follow the school calendar"):
        registry.Job(slug="t-bad", title="t", default_cron=None, why="t", scope="global", calendar=registry.SCHOOL_DAYS)


@pytest.mark.django_db
def test_the_schedule_page_and_the_cron_preview_mark_the_days_the_calendar_skips(attendance_only, district, client):
    with time_machine.travel(at(25, hour=12), tick=False):
        services.sync_schedules()
        schedule = district.job_schedules.get(job=JOB)
        client.force_login(f.UserFactory(username="sysadmin", is_staff=True, is_superuser=True))
        page = client.get(f"/admin/scheduled-jobs/{schedule.pk}/").content.decode()
        preview = client.get(f"/admin/scheduled-jobs/{schedule.pk}/preview/", {"cron": "30 18 * * 1-5"}).content.decode()
    assert "Fri 2026-12-25 18:30 EST (UTC−05:00) — skipped: Winter break" in page
    assert "Sat 2026-12-26 18:30 EST (UTC−05:00) — skipped: Weekend" in page
    assert "school days" in page
    # Weekdays only: the next five are the break's 25, 28, 29, 30, 31 December.
    assert preview.count("— skipped: Winter break") == 5
    assert "Mon 2026-12-28 18:30" in preview


def test_docs_jobs_md_gives_each_jobs_calendar_policy_as_the_registry_declares_it():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "jobs.md").read_text()
    section = text.split("## Calendar policy", 1)[1].split("\n## ", 1)[0]
    documented = {
        cells[1].strip("` "): cells[2].strip()
        for cells in (line.split("|") for line in section.splitlines() if line.startswith("| `"))
    }
    assert documented == {job.slug: job.calendar for job in registry.all_jobs()}
