"""The scheduled-jobs dashboard in a real browser: Debian's Chromium driven by Playwright
against pytest-django's live server, on PostgreSQL and on SQLite.

A system admin logs in, opens /admin/scheduled-jobs/, pauses a job with a note, runs
another now and watches its progress bar reach done, opens the run's log, edits a cron and
sees the next-runs preview cross the next DST change; a counselor is refused the page.

How the run executes: "run now" goes through the engine's service, which queues the run
on the ORM broker when the request commits, exactly as in production. A worker thread in
this process stands in for a qcluster worker: it takes the queued task and calls the same
function a worker calls (scheduling.tasks.execute_run -> runner.execute). A thread rather
than a qcluster subprocess because SQLite's test database is in memory (a subprocess
cannot see it) and a thread starts in no time; the qcluster path itself is proven in
tests/scheduling/test_qcluster_fault.py.

Screenshots go to test-artifacts/ (gitignored); docs/dashboard.png is a copy of one.
Never ``playwright install``: the browser is /usr/bin/chromium (apt-get install chromium).
"""
from __future__ import annotations

import datetime as dt
import os
import pydoc
import re
import threading
import traceback
from pathlib import Path

import pytest
from django.db import connection, connections
from django.utils import timezone

from scheduling import registry, services
from scheduling.models import JobRun, JobSchedule, SchedulerHeartbeat
from scheduling.registry import Job
from students.models import Role
from tests import factories as f

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery staple"  # tests/factories.py UserFactory
E2E_STEPS = 6

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def progress_job(ctx) -> dict:
    """Six steps of 0.4 s each with progress, so the browser sees the bar move."""
    import time

    for step in range(1, E2E_STEPS + 1):
        time.sleep(0.4)
        ctx.logger.info("step %s of %s: checked %s students", step, E2E_STEPS, step * 40)
        ctx.progress(step, E2E_STEPS)
    return {"students_checked": E2E_STEPS * 40, "notices_queued": 3}


E2E_JOB = Job(
    slug="e2e-progress", title="Attendance sweep (browser test)", default_cron="15 6 * * 1-5",
    why="browser test: a job with visible progress", entry=progress_job, timeout=60,
    figures={"students_checked": "Students checked", "notices_queued": ("Notices queued", "put in the outbox")},
    progress_unit="steps",
)


@pytest.fixture
def e2e_job():
    registry.register(E2E_JOB)
    yield E2E_JOB
    registry.unregister(E2E_JOB.slug)


@pytest.fixture
def worker(live_server):
    """A thread that executes what the ORM broker queues, as a qcluster worker would."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    # SQLite's in-memory test database: use the connection the live server's threads share
    # (pytest-django passes it to them); PostgreSQL: the thread opens its own.
    shared = getattr(live_server.thread, "connections_override", {}).get("default")
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop():
        if shared is not None:  # the in-memory test database exists only on this connection
            connections["default"] = shared
        try:
            while not stop.is_set():
                for row in OrmQ.objects.order_by("id")[:10]:
                    if OrmQ.objects.filter(pk=row.pk).delete()[0] != 1:
                        continue
                    task = SignedPackage.loads(row.payload)
                    func = task["func"] if callable(task["func"]) else pydoc.locate(task["func"])
                    func(*task["args"], **task["kwargs"])
                stop.wait(0.2)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            errors.append(f"{exc!r}\n{traceback.format_exc()}")
        finally:
            if shared is None:
                connection.close()

    thread = threading.Thread(target=loop, name="e2e-worker", daemon=True)
    thread.start()
    yield errors
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an asyncio loop in this thread, which Django's ORM guard
    # takes for async code; the ORM calls here are synchronous (restored after the test).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                  "--disable-gpu", "--no-first-run", "--disable-sync"],
        )
        yield chromium
        # While Playwright's event loop runs, asgiref's Local gives the ORM calls of the test
        # body their own connection; close it here, in that state, or the test database
        # cannot be dropped at the end of the session ("accessed by other users").
        connections.close_all()
        chromium.close()



def _seed(now: dt.datetime):
    """Three districts, the real jobs' schedules plus the test job, a month of history."""
    lakeside = f.DistrictFactory(name="Lakeside Unified", time_zone="America/New_York")
    f.DistrictFactory(name="Mesa Verde Schools", time_zone="America/Denver")
    f.DistrictFactory(name="Pacific Coast USD", time_zone="America/Los_Angeles")
    school = f.SchoolFactory(district=lakeside, name="Lakeside High")
    services.sync_schedules(now=now)
    SchedulerHeartbeat.objects.create(name="web-1:4242", last_beat=now - dt.timedelta(seconds=12), passes=4000)
    history = []
    for schedule in JobSchedule.objects.select_related("district").exclude(cron=""):
        for day in range(1, 8):
            started = now - dt.timedelta(days=day, hours=3)
            failed = schedule.job == "grade-posting-digest" and day == 1 and schedule.district_id == lakeside.pk
            seconds = 20 + (day * 7 + len(schedule.job)) % 25
            history.append(JobRun(
                job=schedule.job, district=schedule.district, trigger=JobRun.Trigger.SCHEDULE, slot=started,
                status=JobRun.Status.FAILED if failed else JobRun.Status.SUCCEEDED, started_at=started,
                finished_at=started + dt.timedelta(seconds=seconds), duration_seconds=seconds,
                error="OperationalError: connection to the SIS timed out" if failed else "",
            ))
    JobRun.objects.bulk_create(history)
    # What the runner maintains when a run starts: each schedule's latest run.
    for schedule in JobSchedule.objects.exclude(cron=""):
        latest = JobRun.objects.filter(job=schedule.job, district_id=schedule.district_id).order_by("-started_at").first()
        JobSchedule.objects.filter(pk=schedule.pk).update(last_run=latest)
    return lakeside, school


def _login(page, base: str, username: str, next_path: str):
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}-{connection.vendor}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_system_admin_manages_jobs_in_the_browser_and_a_counselor_is_refused(live_server, browser, e2e_job, worker):
    now = timezone.now()
    lakeside, school = _seed(now)
    f.UserFactory(username="sysadmin", first_name="Sam", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])
    f.StaffFactory(username="counselor", roles=[Role.COUNSELOR], schools=[school])
    base = live_server.url
    digest = JobSchedule.objects.get(job="grade-posting-digest", district=lakeside)
    attendance = JobSchedule.objects.get(job="attendance-interventions", district=lakeside)
    e2e = JobSchedule.objects.get(job="e2e-progress", district=lakeside)

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)

    # 1. Log in, open the dashboard (linked from the admin index).
    _login(page, base, "sysadmin", "/admin/")
    page.click("#scheduling-scheduledjobsdashboard a")
    assert page.url == f"{base}/admin/scheduled-jobs/"
    assert "scheduler heartbeat" in page.locator("#system-status").inner_text().lower()
    page.click("#job-grade-posting-digest > summary")
    assert page.locator(f"#schedule-{digest.pk}").is_visible()
    _shot(page, "dashboard")

    # 2. Pause a job with a note, from its row.
    page.click("#job-attendance-interventions > summary")
    row = page.locator(f"#schedule-{attendance.pk}")
    row.locator("input[name=note]").fill("Thanksgiving break: no attendance taken")
    row.locator("button[name=pause]").click()
    page.wait_for_load_state()
    assert "Paused" in page.locator("ul.messagelist").inner_text()
    page.click("#job-attendance-interventions > summary")
    assert "Thanksgiving break" in page.locator(f"#schedule-{attendance.pk}").inner_text()
    attendance.refresh_from_db()
    assert attendance.paused and attendance.pause_note == "Thanksgiving break: no attendance taken"
    assert attendance.paused_by.username == "sysadmin"

    # 3. Run another job now and watch its progress bar reach done.
    page.click("#job-e2e-progress > summary")
    page.locator(f"#schedule-{e2e.pk} button[name=run_now]").click()
    page.wait_for_url("**/admin/scheduled-jobs/runs/*/")
    run = JobRun.objects.get(job="e2e-progress", trigger=JobRun.Trigger.MANUAL)
    assert run.triggered_by.username == "sysadmin"
    seen = set()
    deadline = timezone.now() + dt.timedelta(seconds=20)
    while timezone.now() < deadline:
        status = page.locator("#run-status").get_attribute("data-status")
        value = page.locator("#run-progress").get_attribute("aria-valuenow")
        seen.add(value)
        if value and 0 < int(value) < 100 and not (ARTIFACTS / f"run-progress-{connection.vendor}.png").exists():
            _shot(page, "run-progress")
        if status == "succeeded":
            break
        page.wait_for_timeout(150)
    assert not worker, worker
    assert page.locator("#run-status").get_attribute("data-status") == "succeeded"
    assert page.locator("#run-progress").get_attribute("aria-valuenow") == "100"
    assert any(v and 0 < int(v) < 100 for v in seen), f"the bar never showed progress in between: {seen}"
    run.refresh_from_db()
    assert (run.status, run.progress_done, run.progress_total) == ("succeeded", E2E_STEPS, E2E_STEPS)

    # 4. Open the run's log from the dashboard's last-run link.
    page.goto(f"{base}/admin/scheduled-jobs/")
    page.click("#job-e2e-progress > summary")
    page.locator(f"#schedule-{e2e.pk} a[href='/admin/scheduled-jobs/runs/{run.pk}/']").click()
    log = page.locator("#run-log").inner_text()
    assert f"step {E2E_STEPS} of {E2E_STEPS}" in log
    assert re.search(r"^\d\d:\d\d:\d\d E[SD]T INFO step 1 of", log, re.M)  # the district's time, not UTC
    result = page.locator("#run-result").inner_text()
    assert "Students checked" in result and f"{E2E_STEPS * 40}" in result and "students_checked" not in result
    assert f"{E2E_STEPS} of {E2E_STEPS} steps" in page.locator("#run-progress-text").inner_text()
    _shot(page, "run-log")

    # 5. Edit a cron: the preview follows the typing and crosses the next DST change.
    page.goto(f"{base}/admin/scheduled-jobs/{digest.pk}/cron/")
    page.fill("#id_cron", "")
    page.type("#id_cron", "30 2 * * *")
    page.wait_for_selector('#cron-preview[data-cron="30 2 * * *"]')
    preview = page.locator("#cron-preview")
    assert preview.locator("tr.next-run").count() == 5
    dst_text = preview.inner_text()
    assert "Across the next DST change" in dst_text
    assert "UTC\u221204:00" in dst_text and "UTC\u221205:00" in dst_text
    _shot(page, "edit-cron")
    page.click("input[name=_save]")
    page.wait_for_load_state()
    digest.refresh_from_db()
    assert digest.cron == "30 2 * * *" and digest.cron_customized
    assert "Edited the cron" in page.locator("#change-history").inner_text()
    _shot(page, "schedule")

    # 6. A counselor is refused the page.
    other = browser.new_context()
    counselor_page = other.new_page()
    _login(counselor_page, base, "counselor", "/admin/")
    response = counselor_page.goto(f"{base}/admin/scheduled-jobs/")
    assert response.status == 403
    assert "is for system administrators" in counselor_page.inner_text("body")
    _shot(counselor_page, "counselor-403")
    other.close()
    context.close()

