"""The dashboard's held card and its two actions, through Django's test client: what the
card shows, a missing note is a form error (400, nothing written), only system admins, and
each action audited."""
from __future__ import annotations

import pytest
from django.urls import reverse

from notifications.models import Notification, Status
from scheduling.models import JobRun, RunHold
from students.models import Role
from tests import factories as f
from tests.blast_radius.conftest import STUDENTS, run_attendance, seed_history

pytestmark = pytest.mark.django_db


@pytest.fixture
def hold(district, all_absent, limits):
    seed_history(district, staff=2)
    run = run_attendance(district, all_absent["days"][-1])
    assert run.status == JobRun.Status.HELD
    return run.hold


def url(hold, decision):
    return reverse("admin:scheduled_jobs_hold_decide", args=[hold.pk, decision])


def test_the_card_shows_counts_baseline_breakdown_and_samples(client, system_admin, hold, counselor):
    client.force_login(system_admin)
    page = client.get(reverse("admin:scheduled_jobs")).content.decode()
    assert f'id="hold-{hold.pk}"' in page
    assert "Attendance interventions — Lakeside Unified" in page
    assert f'<h3>To staff</h3><div class="big">{STUDENTS}</div>' in page
    assert "baseline 2 (median of the last 3 successful runs)" in page
    assert "&gt; 5× and &gt; 10" in page
    assert "<td>attendance-intervention</td><td>Lakeside High</td><td>staff</td><td>30</td>" in page
    assert page.count(f"<td>{counselor.get_full_name()}</td>") == 20
    # The run's page says it is held and links to the card.
    run_page = client.get(reverse("admin:scheduled_jobs_run", args=[hold.run_id])).content.decode()
    assert 'id="run-hold"' in run_page and "undecided: release or discard" in run_page


@pytest.mark.parametrize("decision", ["release", "discard"])
def test_a_decision_without_a_note_is_a_form_error_and_writes_nothing(client, system_admin, hold, decision):
    client.force_login(system_admin)
    response = client.post(url(hold, decision), {"note": "  "})
    assert response.status_code == 400
    assert "A note is required" in response.content.decode()
    hold.refresh_from_db()
    assert hold.decision == "" and JobRun.objects.get(pk=hold.run_id).status == JobRun.Status.HELD


def test_release_from_the_dashboard(client, system_admin, hold):
    client.force_login(system_admin)
    response = client.post(url(hold, "release"), {"note": "Checked with the attendance office"})
    assert response.status_code == 302
    hold.refresh_from_db()
    assert (hold.decision, hold.decided_by, hold.note) == ("released", system_admin, "Checked with the attendance office")
    # The slot runs again, approved (queued for a worker), and opens the proposals.
    retry = JobRun.objects.get(retry_of_id=hold.run_id, status=JobRun.Status.QUEUED)
    assert retry.triggered_by == system_admin and retry.checkpoint
    # Decided: the card is gone.
    assert f'id="hold-{hold.pk}"' not in client.get(reverse("admin:scheduled_jobs")).content.decode()


def test_discard_from_the_dashboard(client, system_admin, hold):
    client.force_login(system_admin)
    client.post(url(hold, "discard"), {"note": "Bad import"})
    assert RunHold.objects.get(pk=hold.pk).decision == "discarded"
    assert not Notification.objects.filter(job_run_id=hold.run_id, status__in=[Status.PENDING, Status.HELD]).exists()


@pytest.mark.parametrize("role", [Role.DISTRICT_ADMIN, Role.COUNSELOR])
def test_only_system_admins_may_decide(client, school, hold, role):
    user = f.StaffFactory(roles=[role], schools=[school])
    client.force_login(user)
    assert client.post(url(hold, "release"), {"note": "please"}).status_code == 403
    assert RunHold.objects.get(pk=hold.pk).decision == ""


def test_an_unknown_hold_or_action_is_404(client, system_admin, hold):
    client.force_login(system_admin)
    assert client.post(reverse("admin:scheduled_jobs_hold_decide", args=[hold.pk + 99, "release"]), {"note": "x"}).status_code == 404
    assert client.post(url(hold, "send-everything"), {"note": "x"}).status_code == 404
    assert client.get(url(hold, "release")).status_code == 405


def test_a_system_admin_sets_a_districts_limit_in_the_admin(client, system_admin, district, school):
    from scheduling.models import BlastRadiusLimit

    client.force_login(system_admin)
    add = reverse("admin:scheduling_blastradiuslimit_add")
    form = {"district": district.pk, "job": "attendance-interventions", "multiplier": 4, "floor": 150, "cap": 8000}
    assert client.post(add, form).status_code == 302
    assert BlastRadiusLimit.objects.filter(district=district, job="attendance-interventions", multiplier=4).exists()
    # A job that is not registered is a form error, never a 500; nothing written.
    response = client.post(add, {**form, "job": "send-everyone-everything"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    # The same district and job twice is refused by the form (the unique constraint).
    assert client.post(add, form).status_code == 200
    assert BlastRadiusLimit.objects.count() == 1
    # Other staff cannot see it.
    client.force_login(f.StaffFactory(roles=[Role.DISTRICT_ADMIN], schools=[school]))
    assert client.get(add).status_code == 403
