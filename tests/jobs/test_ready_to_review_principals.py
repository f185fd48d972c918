"""Ready to review, as a principal sees it in the admin: their school's intervention under the
filter, and nothing of it for the principal of another school of the district."""
from __future__ import annotations

import datetime as dt

from django.urls import reverse

from students.models import Role
from tests import factories as f
from tests.jobs.test_attendance_interventions import autumn, run_on  # noqa: F401 (fixture)


def test_a_principal_sees_their_schools_ready_to_review_and_another_school_does_not(
    district, school, other_school, principal, client, autumn,  # noqa: F811
):
    run_on(district, dt.date(2026, 11, 20))
    interventions = reverse("admin:interventions_intervention_changelist")
    client.force_login(principal)
    page = client.get(interventions, {"ready_to_review": "yes"})
    assert page.status_code == 200
    assert [i.student_id for i in page.context["cl"].result_list] == [autumn["student"].id]
    elsewhere = f.StaffFactory(username="principal2", roles=[Role.PRINCIPAL], schools=[other_school])
    client.force_login(elsewhere)
    page = client.get(interventions, {"ready_to_review": "yes"})
    assert page.status_code == 200 and list(page.context["cl"].result_list) == []
