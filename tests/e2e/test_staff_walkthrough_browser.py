"""What district staff see, in a real browser (Debian's Chromium driven by Playwright against
pytest-django's live server, on PostgreSQL and on SQLite).

- Every report prints on A4 and on Letter: the stored reports the jobs wrote (compliance audit
  with a long, grouped table of shortfalls; weekly analytics; system health; emergency test) are
  printed to PDF by Chromium on both papers; each page has the paper's size, nothing runs off
  the page's width, and the long table breaks across pages.

Screenshots go to test-artifacts/ (gitignored). Never ``playwright install``: the browser is
/usr/bin/chromium (apt-get install chromium).
"""
from __future__ import annotations

import datetime as dt
import os
import re

import pytest
import time_machine

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
