"""The synthetic district's IEPs: reevaluation dates that hold (34 CFR 300.303), and the demo
family whose meeting notice the IEP job sends in Spanish (whatever the seed)."""
from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command

from iep.models import IEP, IEPMeeting, reevaluation_due_after
from notifications.models import NotificationPreference
from skillcore.seed import DEMO_MEETING_LEAD
from students.models import District, GuardianLink, age_on

AS_OF = dt.date(2026, 11, 20)  # a Friday: the meeting's 12th day is a Wednesday


def seeded(seed: int) -> District:
    call_command("seed_district", "--students", "60", "--seed", str(seed), "--as-of", AS_OF.isoformat(),
                 "--name", f"Seed {seed}", stdout=StringIO(), stderr=StringIO())
    return District.objects.get(name=f"Seed {seed}")


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_each_seed_has_one_spanish_speaking_family_with_a_meeting_to_notice(seed):
    district = seeded(seed)
    meeting = IEPMeeting.objects.get(iep__student__school__district=district, location__endswith="conference room")
    assert meeting.status == IEPMeeting.Status.SCHEDULED and meeting.guardian_notice_sent_on is None
    assert meeting.scheduled_for.astimezone(district.zone).date() == AS_OF + dt.timedelta(days=DEMO_MEETING_LEAD)
    assert meeting.scheduled_for.astimezone(district.zone).time() == dt.time(15, 30)
    # Inside the notice window: the lead time can still be kept when the job runs on as_of.
    assert DEMO_MEETING_LEAD >= district.meeting_notice_lead_days
    iep, student = meeting.iep, meeting.iep.student
    assert iep.status == IEP.Status.ACTIVE and student.is_active and age_on(student.birth_date, AS_OF) < 18
    links = GuardianLink.objects.filter(student=student).order_by("id")
    assert {link.preferred_language for link in links} == {"es"}
    first = links.first()
    assert not first.access_revoked and first.guardian.email
    # Told at once, not in a digest nor never.
    chosen = set(NotificationPreference.objects.filter(user=first.guardian, category="iep-reminder", channel="email")
                 .values_list("frequency", flat=True))
    assert chosen <= {"immediately"}
    # One open meeting per IEP and purpose still holds (the seed dropped a clashing one).
    assert IEPMeeting.objects.filter(iep=iep, purpose=meeting.purpose, status__in=["proposed", "scheduled"]).count() == 1


@pytest.mark.django_db
def test_reevaluations_are_dated_and_overdue_only_where_the_review_is_too():
    district = seeded(7)
    ieps = list(IEP.objects.filter(student__school__district=district))
    assert ieps
    for iep in ieps:
        evaluated = iep.last_reevaluation or iep.eligibility_date
        assert iep.reevaluation_due == reevaluation_due_after(evaluated), iep.pk
        assert evaluated <= AS_OF
        if iep.reevaluation_due < AS_OF:
            assert iep.next_review_due < AS_OF, iep.pk  # a caseload behind on both
    assert any(iep.last_reevaluation for iep in ieps)  # some were reevaluated since eligibility
