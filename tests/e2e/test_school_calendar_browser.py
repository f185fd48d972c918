"""The school calendar on the dashboard in a real browser (Debian's Chromium driven by
Playwright, against pytest-django's live server, on PostgreSQL and on SQLite).

Before the winter break a system admin opens the attendance job's schedule page: the next
runs in the break are marked "skipped: Winter break" and the weekend's "skipped: Weekend";
the cron editor's preview marks them too. The district's calendar ends on 6 January, so the
dashboard's "School calendar missing" card names it once the coming weeks leave it.
Screenshots go to test-artifacts/ (docs/school-calendar.png is a copy of one).
"""
from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo

import pytest
import time_machine

from scheduling import services
from scheduling.models import JobSchedule
from students.models import CalendarDay, Role
from tests import factories as f
from tests.e2e.test_dashboard_browser import CHROMIUM, _login, _shot, browser  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]
NY = ZoneInfo("America/New_York")


def _calendar(school) -> None:
    """School days 14-18 Dec 2026 and 4-6 Jan 2027, the break's weekdays closed between."""
    rows, day = [], dt.date(2026, 12, 14)
    while day <= dt.date(2027, 1, 6):
        if day.weekday() < 5:
            closed = dt.date(2026, 12, 21) <= day <= dt.date(2027, 1, 1)
            rows.append(CalendarDay(school=school, date=day, is_instructional=not closed,
                                    note="Winter break" if closed else ""))
        day += dt.timedelta(days=1)
    CalendarDay.objects.bulk_create(rows)


def test_a_system_admin_sees_the_days_the_calendar_skips_and_a_missing_calendar(live_server, browser):  # noqa: F811
    district = f.DistrictFactory(name="Lakeside Unified", time_zone="America/New_York")
    _calendar(f.SchoolFactory(district=district, name="Lakeside High"))
    f.UserFactory(username="sysadmin", is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN])
    # The server renders "now" from the clock: pinned (ticking) to Friday 18 Dec 2026, noon.
    with time_machine.travel(dt.datetime(2026, 12, 18, 12, tzinfo=NY), tick=True):
        services.sync_schedules()
        schedule = JobSchedule.objects.get(job="attendance-interventions", district=district)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(15_000)
        _login(page, live_server.url, "sysadmin", f"/admin/scheduled-jobs/{schedule.pk}/")

        upcoming = page.locator("ul.sj-upcoming li").all_inner_texts()
        assert [line.split(" — ")[-1] if " — " in line else "runs" for line in upcoming] == [
            "runs", "skipped: Weekend", "skipped: Weekend", "skipped: Winter break", "skipped: Winter break"]
        assert upcoming[3].startswith("Mon 2026-12-21 18:30")
        assert "school days" in page.locator(".sj-facts").inner_text()
        _shot(page, "school-calendar-schedule")

        page.goto(f"{live_server.url}/admin/scheduled-jobs/{schedule.pk}/cron/")
        preview = page.locator("#cron-preview tr.next-run.skipped").all_inner_texts()
        assert len(preview) == 4 and "skipped: Winter break" in preview[-1]

        # The next 21 days from 18 Dec reach 7 Jan, past the calendar's last row (6 Jan).
        page.goto(f"{live_server.url}/admin/scheduled-jobs/")
        card = page.locator("#calendar-missing")
        assert card.is_visible()
        assert "Lakeside Unified: no school calendar from Thu 2027-01-07" in card.inner_text()
        _shot(page, "school-calendar-dashboard")
