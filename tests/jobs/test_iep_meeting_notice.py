"""iep-review-reminders: the family notice of a scheduled IEP meeting (34 CFR 300.322(b),
300.520) — who is told, in which language, what it says, the recorded date, the lead-time
boundary and the flag raised at once, exactly once."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from iep.models import IEPMeeting, IEPTeamMember
from notifications.models import Notification
from notifications.rendering import render_email
from scheduling.models import JobRun
from students.models import GuardianLink, Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

SLUG = "iep-review-reminders"
TODAY = dt.date(2026, 10, 5)  # far from the review (due 2027-03-01): only the notice is at stake


@pytest.fixture
def family(district, school):
    coordinator = f.StaffFactory(username="coord", roles=[Role.SPED_COORDINATOR], schools=[school])
    manager = f.StaffFactory(username="cm", first_name="Carla", last_name="Mendez", roles=[Role.CASE_MANAGER], schools=[school])
    teacher = f.StaffFactory(username="teach", first_name="Tom", last_name="Lee", roles=[Role.TEACHER], schools=[school])
    student = f.StudentFactory(school=school, first_name="Ana", last_name="Ruiz", birth_date=dt.date(2012, 5, 1))
    iep = f.IEPFactory(student=student, last_annual_review=dt.date(2026, 3, 1), case_manager=manager)
    f.IEPTeamMemberFactory(iep=iep, user=teacher, role=IEPTeamMember.TeamRole.GENERAL_EDUCATION_TEACHER)
    mother = f.GuardianLinkFactory(student=student, guardian=f.UserFactory(username="mama", roles=[Role.GUARDIAN]),
                                   preferred_language=GuardianLink.Language.SPANISH).guardian
    father = f.GuardianLinkFactory(student=student, guardian=f.UserFactory(username="papa", roles=[Role.GUARDIAN])).guardian
    f.GuardianLinkFactory(student=student, guardian=f.UserFactory(username="barred", roles=[Role.GUARDIAN]), access_revoked=True)
    return {"coordinator": coordinator, "manager": manager, "iep": iep, "student": student, "mother": mother, "father": father}


def run_on(district, day: dt.date) -> JobRun:
    slot = local_slot(district, day.year, day.month, day.day, 7)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def meeting_in(district, family, days: int, **kw) -> IEPMeeting:
    day = TODAY + dt.timedelta(days=days)
    return f.IEPMeetingFactory(iep=family["iep"], status="scheduled", location="Room 12, Lincoln High",
                               scheduled_for=local_slot(district, day.year, day.month, day.day, 15, 30), **kw)


def notices(meeting) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for user, channel in Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:").values_list(
        "recipient__username", "channel"
    ):
        out.setdefault(user, set()).add(channel)
    return out


def test_guardians_with_access_get_the_notice_in_their_language_once(district, family):
    meeting = meeting_in(district, family, 20)
    run = run_on(district, TODAY)
    assert run.result["meeting_notices_sent"] == 1
    assert notices(meeting) == {"mama": {"email", "push"}, "papa": {"email", "push"}}  # never the revoked guardian
    mail = Notification.objects.get(dedupe_key=f"iep-meeting-notice:{meeting.id}:{family['mother'].id}:email")
    assert (mail.language, mail.priority, mail.student_id) == ("es", "high", family["student"].id)
    assert mail.context["attendees"] == [{"name": "Carla Mendez", "role": "case-manager"}, {"name": "Tom Lee", "role": "gen-teacher"}]
    text = render_email(mail).text
    for said in ("reunión del IEP de Ana Ruiz", "revisión anual del IEP", "Fecha: 2026-10-25", "Hora: 15:30",
                 "Lugar: Room 12, Lincoln High", "Carla Mendez (coordinador del caso)", "Tom Lee (maestro de educación general)"):
        assert said in text, said
    english = Notification.objects.get(dedupe_key=f"iep-meeting-notice:{meeting.id}:{family['father'].id}:email")
    assert english.language == "en" and "Place: Room 12, Lincoln High" in render_email(english).text
    meeting.refresh_from_db()
    assert (meeting.guardian_notice_sent_on, meeting.notice_flagged_late) == (TODAY, False)
    # The next day's run and a re-run of the same slot send nothing and keep the date.
    count = Notification.objects.count()
    assert run_on(district, TODAY + dt.timedelta(days=1)).result["meeting_notices_sent"] == 0
    assert Notification.objects.count() == count
    meeting.refresh_from_db()
    assert meeting.guardian_notice_sent_on == TODAY


@pytest.mark.parametrize(("days", "late"), [(11, False), (10, False), (9, True), (0, True)])
def test_lead_time_boundary_flags_at_once(district, family, days, late):
    meeting = meeting_in(district, family, days)
    run = run_on(district, TODAY)
    meeting.refresh_from_db()
    assert meeting.guardian_notice_sent_on == TODAY  # a late notice still goes out
    assert meeting.notice_flagged_late is late
    assert run.result["notices_flagged"] == int(late)
    told = set(Notification.objects.filter(dedupe_key__startswith=f"iep-notice-late:{meeting.id}:").values_list(
        "recipient__username", flat=True))
    assert told == ({"cm", "coord"} if late else set())
    if late:  # once: the 7-day confirmation and later runs add nothing
        count = Notification.objects.count()
        run_on(district, TODAY + dt.timedelta(days=1))
        assert Notification.objects.count() == count


def test_at_eighteen_the_student_is_told_and_parents_only_with_consent_or_dependency(district, family):
    student = family["student"]
    student.birth_date = dt.date(2008, 10, 5)  # 18 on TODAY
    student.user = f.UserFactory(username="ana", roles=[Role.STUDENT])
    student.save()
    GuardianLink.objects.filter(guardian=family["father"]).update(is_dependent_claim=True)
    meeting = meeting_in(district, family, 15)
    run_on(district, TODAY)
    assert notices(meeting) == {"ana": {"email", "push"}, "papa": {"email", "push"}}


def test_the_day_before_eighteen_the_parents_are_told(district, family):
    student = family["student"]
    student.birth_date = dt.date(2008, 10, 6)  # 18 tomorrow
    student.user = f.UserFactory(username="ana", roles=[Role.STUDENT])
    student.save()
    meeting = meeting_in(district, family, 15)
    run_on(district, TODAY)
    assert notices(meeting) == {"mama": {"email", "push"}, "papa": {"email", "push"}}


def test_only_scheduled_upcoming_meetings_are_noticed(district, family):
    proposed = f.IEPMeetingFactory(iep=family["iep"], status="proposed")
    past = meeting_in(district, family, -1, purpose=IEPMeeting.Purpose.AMENDMENT)
    run = run_on(district, TODAY)
    assert run.result["meeting_notices_sent"] == 0
    assert notices(proposed) == {} and notices(past) == {}
    past.refresh_from_db()
    assert past.guardian_notice_sent_on is None


def test_the_notice_date_cannot_be_typed_in_admin(admin_client, district, family):
    meeting = meeting_in(district, family, 20)
    page = admin_client.get(f"/admin/iep/iepmeeting/{meeting.pk}/change/")
    assert page.status_code == 200
    assert 'name="guardian_notice_sent_on"' not in page.content.decode()


# --- a legal notice, not a reminder: no preference delays or silences it --------------------

def test_the_notice_goes_out_at_once_to_a_guardian_who_chose_never_and_one_who_chose_weekly(district, family):
    from notifications.models import DigestItem, NotificationPreference

    for guardian, frequency in ((family["mother"], "never"), (family["father"], "weekly")):
        f.DeviceTokenFactory(user=guardian)
        f.NotificationPreferenceFactory(user=guardian, category="iep-reminder", channel="email", frequency=frequency)
        f.NotificationPreferenceFactory(user=guardian, category="iep-reminder", channel="push", frequency=frequency)
    meeting = meeting_in(district, family, 20)
    assert run_on(district, TODAY).result["meeting_notices_sent"] == 1
    rows = Notification.objects.filter(dedupe_key__startswith=f"iep-meeting-notice:{meeting.id}:")
    assert sorted(rows.values_list("recipient__username", "channel", "category")) == [
        ("mama", "email", "legal-notice"), ("mama", "push", "legal-notice"),
        ("papa", "email", "legal-notice"), ("papa", "push", "legal-notice"),
    ]
    # Queued to send (quiet hours may hold a family message to the window's start), never
    # suppressed, never a digest line.
    assert set(rows.values_list("status", flat=True)) <= {"pending", "deferred"}
    assert not DigestItem.objects.exists()
    assert NotificationPreference.objects.filter(frequency__in=["never", "weekly"]).count() == 4  # untouched


def test_other_iep_reminders_still_obey_the_preference(district, family):
    """The same run: the coordinator's 90-day review reminder follows their "never", and
    the family's meeting notice goes out although the family chose "never" too."""
    f.NotificationPreferenceFactory(user=family["coordinator"], category="iep-reminder", channel="email", frequency="never")
    f.NotificationPreferenceFactory(user=family["mother"], category="iep-reminder", channel="email", frequency="never")
    day = dt.date(2026, 12, 1)  # 90 days before the review due 2027-03-01: the coordinator's rung
    meeting = f.IEPMeetingFactory(iep=family["iep"], status="scheduled", location="Room 12",
                                  scheduled_for=local_slot(district, 2026, 12, 21, 15, 30))
    run_on(district, day)
    reminder = Notification.objects.get(dedupe_key__startswith=f"iep-reminder:{family['iep'].id}:",
                                        recipient=family["coordinator"])
    assert (reminder.category, reminder.status, reminder.status_reason) == ("iep-reminder", "suppressed", "preference-never")
    notice = Notification.objects.get(dedupe_key=f"iep-meeting-notice:{meeting.id}:{family['mother'].id}:email")
    assert notice.status in ("pending", "deferred")


def test_a_weekly_choice_still_puts_other_iep_reminders_in_the_digest(district, family):
    from notifications.models import DigestItem

    f.NotificationPreferenceFactory(user=family["coordinator"], category="iep-reminder", channel="email", frequency="weekly")
    run_on(district, dt.date(2026, 12, 1))
    assert not Notification.objects.filter(recipient=family["coordinator"], category="iep-reminder").exists()
    assert DigestItem.objects.filter(recipient=family["coordinator"], category="iep-reminder", frequency="weekly").count() == 1


@pytest.mark.parametrize("frequency", ["never", "daily", "weekly"])
def test_a_legal_notice_preference_other_than_immediately_is_refused(db, frequency):
    from django.core.exceptions import ValidationError

    from notifications.models import NotificationPreference

    pref = NotificationPreference(user=f.UserFactory(roles=[Role.GUARDIAN]), category="legal-notice", channel="email",
                                  frequency=frequency)
    with pytest.raises(ValidationError) as info:
        pref.full_clean()
    assert info.value.message_dict["frequency"] == [
        "Legal notice (always sent at once) always goes out at once: it cannot be set to a digest or never."]


def test_the_admin_refuses_a_never_legal_notice_preference_with_a_form_error(admin_client):
    from notifications.models import NotificationPreference

    guardian = f.UserFactory(roles=[Role.GUARDIAN])
    response = admin_client.post("/admin/notifications/notificationpreference/add/", {
        "user": guardian.pk, "category": "legal-notice", "channel": "email", "frequency": "never"})
    assert response.status_code == 200
    assert "it cannot be set to a digest or never" in response.content.decode()
    assert not NotificationPreference.objects.exists()
