"""What district staff see, in a real browser (Debian's Chromium driven by Playwright against
pytest-django's live server, on PostgreSQL and on SQLite).

- Every report prints on A4 and on Letter: the stored reports the jobs wrote (compliance audit
  with a long, grouped table of shortfalls; weekly analytics; system health; emergency test) are
  printed to PDF by Chromium on both papers; each page has the paper's size, nothing runs off
  the page's width, and the long table breaks across pages.
- The issue's flows as four people over the demo's synthetic district after one run of every
  job: a principal (reports, a school's weekly report, a student's overview, the access log
  searched by student number), a counselor (a student's overview; Reports refused in the
  admin's look), a district admin (the compliance audit; their district's scheduled jobs and a
  run, read-only; another district's run not found; a retry posted by hand refused) and a
  system admin (every district, with its actions).

PDFs and screenshots go to test-artifacts/ (gitignored); docs/images/ keeps a copy of each
page walked (the test fails when one is missing). Never ``playwright install``: the browser is
/usr/bin/chromium (apt-get install chromium).
"""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from scheduling.models import JobRun, Report
from students.models import Role
from tests import factories as f
from tests.e2e.test_dashboard_browser import ARTIFACTS, CHROMIUM, _login, browser  # noqa: F401  (fixture)
from tests.jobs.slot_runs import local_slot, run_slot

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

# Paper in PostScript points (1/72 in), as a PDF's MediaBox gives it; the printable width
# between the 12 mm margins of templates/reports/_base.html in CSS pixels (96 per inch).
PAPERS = {"A4": (595.92, 842.88), "Letter": (612, 792)}
A4_PRINTABLE_PX = round((210 - 2 * 12) / 25.4 * 96)


def _reports_of_every_kind(district) -> list[Report]:
    """The four report jobs run through the runner, as a worker runs them; the compliance
    audit over three schools and 90 IEP services short of their minutes."""
    schools = [f.SchoolFactory(district=district, name=n) for n in ("Lakeside High", "Hillcrest Middle", "Adams Elementary")]
    services = ("Speech therapy", "Occupational therapy", "Counseling")
    for n in range(90):
        student = f.StudentFactory(school=schools[n % 3], first_name=f"Student{n:02d}", last_name=f"Family{n:02d}",
                                   local_id=f"{100400 + n}")
        iep = f.IEPFactory(student=student, last_annual_review=dt.date(2026, 3, 1))
        service = f.IEPServiceFactory(iep=iep, name=services[n % len(services)], minutes_per_month=600 + 30 * (n % 20))
        f.ServiceLogFactory(service=service, delivered_on=dt.date(2026, 10, 6), minutes=60 + n)
    for slug, slot in (("compliance-audit-report", local_slot(district, 2026, 11, 1, 1)),
                       ("weekly-analytics-report", local_slot(district, 2026, 11, 8, 6)),
                       ("emergency-notification-test", local_slot(district, 2026, 10, 5, 10)),
                       ("system-health-summary", dt.datetime(2026, 11, 1, 13, tzinfo=dt.UTC))):
        with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
            run = run_slot(slug, None if slug == "system-health-summary" else district, slot)
        assert run.status in (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING), (slug, run.error)
    # One of each kind (weekly analytics also writes one per school: the district's is enough).
    reports = {r.kind: r for r in Report.objects.filter(school=None).order_by("kind")}
    assert sorted(reports) == sorted(Report.Kind.values), sorted(reports)
    return list(reports.values())


def _pdf_pages(pdf: bytes) -> list[tuple[float, float]]:
    """Each page's size in points, from the page dictionaries Chromium writes uncompressed."""
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    boxes = [tuple(float(v) for v in m.split()[2:]) for m in re.findall(rb"/MediaBox\s*\[([^\]]*)\]", pdf)]
    assert len(boxes) == pages, (pages, boxes)
    return boxes


def test_every_report_prints_on_a4_and_letter(live_server, browser):  # noqa: F811
    district = f.DistrictFactory(name="Lakeside Unified", time_zone="America/New_York")
    reports = _reports_of_every_kind(district)
    f.UserFactory(username="sysadmin", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    _login(page, live_server.url, "sysadmin", "/admin/")
    ARTIFACTS.mkdir(exist_ok=True)
    printed = {}
    for report in reports:
        # The stored HTML beside its PDFs: `chromium --headless --print-to-pdf` prints it the same way.
        (ARTIFACTS / f"report-{report.kind}.html").write_text(report.html)
        page.set_viewport_size({"width": 1400, "height": 900})
        page.emulate_media(media="screen")
        response = page.goto(f"{live_server.url}/admin/scheduling/report/{report.pk}/view/")
        assert response.status == 200
        # Nothing wider than the narrower paper (A4) between its margins: no table cut off.
        page.emulate_media(media="print")
        page.set_viewport_size({"width": A4_PRINTABLE_PX, "height": 900})
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= A4_PRINTABLE_PX, (report.kind, width)
        for paper, (w, h) in PAPERS.items():
            pdf = page.pdf(format=paper, prefer_css_page_size=True, print_background=True)
            (ARTIFACTS / f"report-{report.kind}-{paper}.pdf").write_bytes(pdf)
            pages = _pdf_pages(pdf)
            assert all(abs(pw - w) < 1 and abs(ph - h) < 1 for pw, ph in pages), (report.kind, paper, pages)
            printed[(report.kind, paper)] = len(pages)
    # The compliance audit's 90 shortfalls, grouped with subtotals, run over several pages;
    # a short report fits one or two. Letter is shorter than A4: never fewer pages.
    assert 3 <= printed[("compliance-audit", "A4")] <= printed[("compliance-audit", "Letter")] <= 8, printed
    assert printed[("emergency-test", "A4")] <= 2, printed
    context.close()


# -- the walk-through: a principal, a counselor, a district admin and a system admin ------------
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WALK = ARTIFACTS / "walkthrough"


def _walk_shot(page, name: str, taken: list[str]) -> None:
    """A screenshot of the page as the person sees it, kept in test-artifacts/walkthrough/;
    docs/images/ holds a copy of each, linked from the docs page that describes it."""
    WALK.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(WALK / f"{name}.png"), full_page=True)
    taken.append(name)


def _seed_walk():
    """The demo's synthetic district (three schools, 40 students) with one run of every job,
    as after a night of the worker, and another district with a failed run."""
    from scheduling import registry, runner, services
    from skillcore.seed import seed_district
    from students.models import Student

    district = seed_district(name="Demo Unified School District", students=40, seed=3, time_zone="America/New_York",
                             as_of=timezone.localdate()).district
    far = f.DistrictFactory(name="Far Hills Schools", time_zone="America/Denver")
    services.sync_schedules()
    for job in registry.all_jobs():
        if job.has_body:
            runner.run_sync(job_slug=job.slug, district=None if job.is_global else district)
    far_run = JobRun.objects.create(job="grade-posting-digest", district=far, trigger=JobRun.Trigger.SCHEDULE,
                                    slot=timezone.now(), status=JobRun.Status.FAILED, error="OperationalError: timed out")
    student = (Student.objects.filter(school__district=district, is_active=True, ieps__status="active")
               .select_related("school").order_by("school__name", "last_name").first())
    school = student.school
    people = {
        "principal": f.StaffFactory(username="principal", first_name="Rosa", last_name="Diaz", roles=[Role.PRINCIPAL],
                                    schools=[school]),
        "counselor": f.StaffFactory(username="counselor", first_name="Emma", last_name="Allen", roles=[Role.COUNSELOR],
                                    schools=[school]),
        "district-admin": f.StaffFactory(username="district-admin", first_name="Dana", last_name="Ruiz",
                                         roles=[Role.DISTRICT_ADMIN], schools=[school]),
        "system-admin": f.UserFactory(username="sysadmin", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN]),
    }
    return district, student, far_run, people


def _follow(page, selector: str) -> None:
    """Click a link and wait for the page it opens."""
    with page.expect_navigation():
        page.locator(selector).first.click()


def _post_status(page, path: str) -> int:
    """POST to path from the page, with the session's CSRF token, as a form's button would."""
    return page.evaluate("""async (path) => {
        const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken=')).split('=')[1];
        const r = await fetch(path, {method: 'POST', headers: {'X-CSRFToken': token}, body: new URLSearchParams({note: 'x'})});
        return r.status;
    }""", path)


def test_staff_walk_through_their_pages(live_server, browser):  # noqa: F811
    district, student, far_run, people = _seed_walk()
    base, taken = live_server.url, []
    compliance = Report.objects.get(kind="compliance-audit", district=district)
    weekly = Report.objects.get(kind="weekly-analytics", school=student.school)

    def session(username: str):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(15_000)
        _login(page, base, username, "/admin/")
        return context, page

    # 1. A principal: reports, the compliance audit, a student's overview, the access log.
    context, page = session("principal")
    assert "Scheduled jobs dashboard" not in page.inner_text("#content-main")
    _follow(page, "#content-main a:text-is('Reports')")
    assert f"/admin/scheduling/report/{weekly.pk}/view/" in page.content()  # their school's; not the district's
    assert f"/admin/scheduling/report/{compliance.pk}/view/" not in page.content()
    _walk_shot(page, "principal-reports", taken)
    page.goto(f"{base}/admin/scheduling/report/{weekly.pk}/view/")
    assert student.school.name in page.inner_text("h1")
    _walk_shot(page, "principal-weekly-report", taken)
    page.goto(f"{base}/admin/students/student/{student.pk}/change/")
    overview = page.locator("#student-overview")
    assert overview.is_visible() and page.locator("#overview-attendance").is_visible()
    _walk_shot(page, "principal-student", taken)
    page.goto(f"{base}/admin/skillcore/accesslog/?q={student.local_id}")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() >= 1 and student.local_id in page.inner_text("#result_list")
    _walk_shot(page, "principal-access-log", taken)
    context.close()

    # 2. A counselor: the student list and a student's overview; Reports are refused in the admin's look.
    context, page = session("counselor")
    page.goto(f"{base}/admin/students/student/")
    _follow(page, f"#result_list a[href$='/{student.pk}/change/']")
    page.wait_for_selector("#student-overview")
    _walk_shot(page, "counselor-student", taken)
    response = page.goto(f"{base}/admin/scheduling/report/")
    assert response.status == 403 and "403 · Not allowed" in page.inner_text("body") and "(Counselor)" in page.inner_text("body")
    _walk_shot(page, "counselor-reports-refused", taken)
    context.close()

    # 3. A district admin: the compliance audit; their district's scheduled jobs, read-only;
    #    another district's run is not found, an action refused.
    context, page = session("district-admin")
    page.goto(f"{base}/admin/scheduling/report/{compliance.pk}/view/")
    assert page.locator("#evidence p").count() >= 5
    assert not re.findall(r"\b[a-z0-9]+_[a-z0-9_]+\b", page.inner_text("body"))  # no key like access_log_rows
    _walk_shot(page, "district-admin-compliance-audit", taken)
    page.goto(f"{base}/admin/")
    _follow(page, "#scheduling-scheduledjobsdashboard a")
    assert page.url == f"{base}/admin/scheduled-jobs/"
    assert page.locator("#district-status").is_visible() and page.locator("#system-status").count() == 0
    assert "Far Hills" not in page.inner_text("body") and page.locator("#content-main form[method=post]").count() == 0
    _walk_shot(page, "district-admin-dashboard", taken)
    page.click("#job-attendance-interventions > summary")
    _follow(page, "#job-attendance-interventions a[href*='/admin/scheduled-jobs/runs/']")
    assert page.locator("#run-result").is_visible() and page.locator("button[name=retry]").count() == 0
    _walk_shot(page, "district-admin-run", taken)
    response = page.goto(f"{base}/admin/scheduled-jobs/runs/{far_run.pk}/")
    assert response.status == 404 and "404 · Not found" in page.inner_text("body")
    run = JobRun.objects.filter(district=district, job="attendance-interventions").first()
    assert _post_status(page, f"/admin/scheduled-jobs/runs/{run.pk}/retry/") == 403
    assert not JobRun.objects.filter(retry_of=run).exists()
    context.close()

    # 4. A system admin: every district, with the actions, a run in words.
    context, page = session("sysadmin")
    _follow(page, "#scheduling-scheduledjobsdashboard a")
    # The job's districts, opened: a closed row names only the district whose next run comes
    # first, which is Far Hills at some hours of the day and not at others.
    page.click("#job-grade-posting-digest summary")
    assert page.locator("#system-status").is_visible() and "Far Hills" in page.inner_text("body")
    _walk_shot(page, "system-admin-dashboard", taken)
    page.goto(f"{base}/admin/scheduled-jobs/runs/{run.pk}/")
    assert page.locator("#run-result").is_visible() and page.locator("button[name=retry]").count() == 0  # it succeeded
    _walk_shot(page, "system-admin-run", taken)
    context.close()

    # Each page walked has its screenshot in docs/images/ (copied from test-artifacts/walkthrough/).
    missing = [name for name in taken if not (DOC_IMAGES / f"{name}.png").exists()]
    assert not missing, f"copy test-artifacts/walkthrough/{{{','.join(missing)}}}.png to docs/images/"
