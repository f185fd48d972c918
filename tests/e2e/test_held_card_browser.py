"""The dashboard's held card in a real browser (Debian's Chromium driven by Playwright,
against pytest-django's live server, on PostgreSQL and on SQLite).

A bad attendance import marks every student absent; the attendance-interventions run holds
its 30 interventions as proposals, with their messages. A system admin opens the dashboard and sees the card (the counts against
the baseline, the breakdown by template and school, 20 sample recipients and what each
would be told); the browser will not submit a release without a note; with one, the
card is gone and the slot's approved retry opens the interventions and queues the messages. A second held run is discarded the same
way. Screenshots go to test-artifacts/ (docs/held-card.png is a copy of one).
"""
from __future__ import annotations

import os

import pytest
from django.db import connection

from notifications.models import Notification, Status
from scheduling import runner
from scheduling.models import JobRun, RunHold
from tests.blast_radius.conftest import STUDENTS, all_absent, limits, run_attendance, seed_history  # noqa: F401  (fixtures)
from tests.e2e.test_dashboard_browser import ARTIFACTS, CHROMIUM, _login, _shot, browser  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"),
]


def test_a_system_admin_reviews_releases_and_discards_held_runs(live_server, browser, district, counselor,  # noqa: F811
                                                                 all_absent, limits, system_admin):  # noqa: F811
    seed_history(district, staff=2)
    first = run_attendance(district, all_absent["days"][-1])
    assert first.status == JobRun.Status.HELD
    hold = first.hold
    base = live_server.url

    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    _login(page, base, system_admin.username, "/admin/scheduled-jobs/")

    # 1. The card: counts against the baseline, the breakdown, 20 samples with their reason.
    card = page.locator(f"#hold-{hold.pk}")
    assert card.is_visible()
    assert "Nothing was sent" in card.inner_text()
    staff = card.locator(".sj-held-count[data-audience=staff]").inner_text()
    assert str(STUDENTS) in staff and "baseline 2" in staff
    rows = card.locator(".sj-held-breakdown tbody tr")
    assert rows.count() == 1 and rows.first.inner_text().split("\t") == [
        "attendance-intervention", "Lakeside High", "staff", str(STUDENTS)]
    samples = card.locator(".sj-held-samples tbody tr")
    assert samples.count() == 20
    assert "Attendance intervention opened" in samples.first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / f"held-card-{connection.vendor}.png"))
    _shot(page, "held-dashboard")

    # 2. Release needs a note: the browser refuses to submit an empty one.
    card.locator("button[name=release]").click()
    page.wait_for_timeout(300)
    assert RunHold.objects.get(pk=hold.pk).decision == ""
    card.locator(".sj-held-release textarea[name=note]").fill("Checked with the attendance office: the absences are real")
    card.locator("button[name=release]").click()
    page.wait_for_load_state()
    assert "30 held message(s) released" in page.locator("ul.messagelist").inner_text()
    assert page.locator(f"#hold-{hold.pk}").count() == 0
    hold.refresh_from_db()
    assert hold.decision == "released" and hold.decided_by == system_admin
    assert JobRun.objects.get(pk=first.pk).status == JobRun.Status.RELEASED
    # Nothing was written by the held run (its interventions were proposals); the release
    # queued the slot again, approved: a worker runs it and the messages go to the outbox.
    retry = JobRun.objects.get(retry_of=first, status=JobRun.Status.QUEUED)
    assert runner.execute(retry.pk).status == JobRun.Status.SUCCEEDED
    assert Notification.objects.filter(job_run_id=retry.pk, channel="email", status=Status.PENDING).count() == STUDENTS

    # 3. The run's page tells who released it, when and why.
    page.goto(f"{base}/admin/scheduled-jobs/runs/{first.pk}/")
    assert "Released" in page.locator("#run-hold").inner_text()
    assert "the absences are real" in page.locator("#run-hold").inner_text()

    # 4. A second held run (run again by hand, every student still absent) is discarded.
    Notification.objects.all().delete()
    from interventions.models import Intervention

    Intervention.objects.all().delete()
    second = run_attendance(district, all_absent["days"][-1], trigger="manual")
    assert second.status == JobRun.Status.HELD, second.note
    page.goto(f"{base}/admin/scheduled-jobs/")
    card = page.locator(f"#hold-{second.hold.pk}")
    card.locator(".sj-held-discard textarea[name=note]").fill("Bad SIS import; fixed and re-imported")
    card.locator("button[name=discard]").click()
    page.wait_for_load_state()
    assert "discarded: none will be sent" in page.locator("ul.messagelist").inner_text()
    assert JobRun.objects.get(pk=second.pk).status == JobRun.Status.DISCARDED
    assert not Notification.objects.filter(job_run_id=second.pk, status__in=[Status.PENDING, Status.HELD]).exists()
    context.close()
