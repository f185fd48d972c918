"""Incident and alert-delivery admin: system admins only, read-only, one resend action."""
from __future__ import annotations

from django.utils import timezone

from scheduling.models import AlertDelivery, Incident


def _rows(district):
    now = timezone.now()
    incident = Incident.objects.create(kind="failure", severity="critical", job="obs-fail", district=district,
                                       dedup_key="k", summary="Obs fail failed", opened_at=now, last_seen_at=now)
    failed = AlertDelivery.objects.create(incident=incident, channel="pagerduty", action="trigger", payload={},
                                          status="failed", attempts=10, next_attempt_at=now, created_at=now,
                                          last_error="HTTP 400 from https://events.pagerduty.com/v2/enqueue")
    sent = AlertDelivery.objects.create(incident=incident, channel="slack", action="message", payload={},
                                        status="sent", attempts=1, next_attempt_at=now, created_at=now)
    return incident, failed, sent


def test_system_admins_see_incidents_and_deliveries_and_resend_failed_ones(client, system_admin, lakeside):
    incident, failed, sent = _rows(lakeside)
    client.force_login(system_admin)
    page = client.get("/admin/scheduling/incident/")
    assert page.status_code == 200 and "Obs fail failed" in page.content.decode()
    assert client.get(f"/admin/scheduling/incident/{incident.pk}/change/").status_code == 200
    assert client.get("/admin/scheduling/alertdelivery/").status_code == 200
    assert client.get("/admin/scheduling/incident/add/").status_code == 403
    response = client.post("/admin/scheduling/alertdelivery/", {
        "action": "resend", "_selected_action": [failed.pk, sent.pk],
    }, follow=True)
    assert response.status_code == 200
    assert "1 failed delivery queued again" in response.content.decode()
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == ("pending", 0, "")
    assert sent.status == "sent"


def test_other_staff_cannot_see_alerting(client, district_admin, district):
    _rows(district)
    client.force_login(district_admin)
    assert client.get("/admin/scheduling/incident/").status_code == 403
    assert client.get("/admin/scheduling/alertdelivery/").status_code == 403
