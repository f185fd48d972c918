"""The admin lists staff read most, in a real browser at 1280 px (Debian's Chromium driven by
Playwright against pytest-django's live server, on PostgreSQL and on SQLite): the reports list,
the access log and the student list keep every column inside the page, clear of the filter
sidebar, with the reports' "View / print · CSV" links visible and titles on a few lines.

Screenshots go to test-artifacts/ (gitignored). Never ``playwright install``: the browser is
/usr/bin/chromium (apt-get install chromium).
"""
from __future__ import annotations

import datetime as dt
import os

import pytest
from django.utils import timezone

from scheduling.models import Report
from students.models import Role
from tests import factories as f
from tests.e2e.test_dashboard_browser import CHROMIUM, _login, _shot, browser  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]

WIDTH = 1280


def _seed():
    district = f.DistrictFactory(name="Demo Unified School District", time_zone="America/New_York")
    school = f.SchoolFactory(district=district, name="Northside Academy of Science and Technology High School",
                             lowest_grade=9, highest_grade=12)
    principal = f.StaffFactory(username="principal", roles=[Role.PRINCIPAL], schools=[school])
    counselor = f.StaffFactory(username="demo-counselor", first_name="Emma", last_name="Allen", roles=[Role.COUNSELOR],
                               schools=[school])
    now = timezone.now()
    kinds = [Report.Kind.WEEKLY_ANALYTICS, Report.Kind.COMPLIANCE_AUDIT, Report.Kind.EMERGENCY_TEST]
    for n in range(12):
        start = dt.date(2026, 9, 7) + dt.timedelta(weeks=n)
        kind = kinds[n % 3]
        Report.objects.create(
            kind=kind, district=district, school=school if kind == Report.Kind.WEEKLY_ANALYTICS else None,
            period_start=start, period_end=start + dt.timedelta(days=6),
            # As the jobs title them (scheduling/jobs/weekly_analytics_report.py and the others).
            title=f"{Report.Kind(kind).label}: {school.name if kind == Report.Kind.WEEKLY_ANALYTICS else district.name}, "
                  f"week of {start:%B %-d, %Y}",
            html="<html><body>report</body></html>", csv="a,b\n1,2\n",
            extra_csv={"state-export-idea-b.csv": "x\n", "state-export-504.csv": "y\n"} if kind == Report.Kind.COMPLIANCE_AUDIT else {},
            content_hash="0" * 64, created_at=now, updated_at=now,
        )
    students = [
        f.StudentFactory(school=school, first_name="Maximiliano Alejandro", last_name=f"Fernández-Castellanos {n}",
                         grade_level=9 + n % 4, counselor=counselor, local_id=f"{100400 + n}")
        for n in range(20)
    ]
    for n in range(len(students)):
        f.AccessLogFactory(actor=counselor, actor_label="demo-counselor", operation="view", model="students.GuardianLink",
                           purpose="admin: changelist students.guardianlink",
                           student_ids=[s.pk for s in students[: 1 + n % 9]], row_count=1 + n % 9)
    return principal


def _fits(page, table_selector: str) -> dict:
    """Where the list's table ends, where the filter sidebar starts, and whether the table's
    own container scrolls (a column hidden off to the right)."""
    return page.evaluate(
        """(sel) => {
            const table = document.querySelector(sel);
            const results = table.closest('.results') || table.parentElement;
            const filter = document.querySelector('#changelist-filter');
            return {
                tableRight: table.getBoundingClientRect().right,
                filterLeft: filter ? filter.getBoundingClientRect().left : window.innerWidth,
                scrolls: results.scrollWidth > results.clientWidth + 1,
                pageScrolls: document.documentElement.scrollWidth > window.innerWidth + 1,
            };
        }""",
        table_selector,
    )


def test_lists_hold_at_1280_px(live_server, browser):  # noqa: F811
    _seed()
    context = browser.new_context(viewport={"width": WIDTH, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    base = live_server.url
    _login(page, base, "principal", "/admin/")

    for path, name in (("/admin/scheduling/report/", "reports"), ("/admin/skillcore/accesslog/", "access-log"),
                       ("/admin/students/student/", "students")):
        page.goto(f"{base}{path}")
        _shot(page, f"layout-{name}-{WIDTH}")
        fit = _fits(page, "#result_list")
        assert not fit["scrolls"] and not fit["pageScrolls"], (name, fit)
        assert fit["tableRight"] <= fit["filterLeft"] + 1, (name, fit)

    # Reports: every row's links visible and clickable, titles on at most two lines.
    page.goto(f"{base}/admin/scheduling/report/")
    links = page.locator("#result_list a", has_text="View / print")
    assert links.count() == page.locator("#result_list tbody tr").count() == 4  # the principal's school's reports
    filter_left = page.locator("#changelist-filter").bounding_box()["x"]
    for i in range(links.count()):
        box = links.nth(i).bounding_box()
        assert box["x"] + box["width"] <= filter_left, box
    # An inline link has one box per line it spans: a 100-character title on at most 3 lines
    # (12 lines before, squeezed by seven nowrap columns).
    lines = page.evaluate("[...document.querySelectorAll('#result_list tbody th a')].map(a => a.getClientRects().length)")
    assert lines and max(lines) <= 3, lines
    context.close()
