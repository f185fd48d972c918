"""``manage.py demo``: a guardian who prefers Spanish receives the IEP meeting notice in Spanish
from the demo's run of iep-review-reminders (34 CFR 300.322(b): the notice in the family's
language, in time)."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from iep.models import IEPMeeting
from notifications.models import Notification
from notifications.rendering import render
from scheduling.models import JobRun
from students.models import GuardianLink

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
TODAY = dt.date(2026, 11, 16)  # a Monday: the meeting is 12 days on, Saturday the 28th -> Monday the 30th


@pytest.mark.django_db
def test_the_demo_sends_the_spanish_speaking_family_its_meeting_notice_in_spanish(settings):
    settings.DEBUG = True
    # 10:00 in New York: inside the district's daytime window, so the notice is not held.
    with time_machine.travel(dt.datetime(2026, 11, 16, 10, 0, tzinfo=NEW_YORK), tick=True):
        call_command("demo", "--no-serve", "--students", "40", stdout=StringIO(), stderr=StringIO())

    run = JobRun.objects.get(job="iep-review-reminders")
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    meeting = IEPMeeting.objects.get(location__endswith="conference room")
    assert meeting.status == IEPMeeting.Status.SCHEDULED
    assert meeting.scheduled_for.astimezone(NEW_YORK) == dt.datetime(2026, 11, 30, 15, 30, tzinfo=NEW_YORK)
    # Sent by the demo's run, on its local date, in time: not flagged late.
    assert (meeting.guardian_notice_sent_on, meeting.notice_flagged_late) == (TODAY, False)
    assert run.result["meeting_notices_sent"] >= 1

    student = meeting.iep.student
    links = list(GuardianLink.objects.filter(student=student, access_revoked=False).select_related("guardian"))
    assert links and all(link.preferred_language == "es" for link in links)
    guardian = links[0].guardian
    email = Notification.objects.get(
        template="iep-meeting-notice", recipient=guardian, channel="email", student=student,
        dedupe_key=f"iep-meeting-notice:{meeting.id}:{guardian.id}:email",
    )
    assert (email.language, email.status, email.priority, email.job_run_id) == ("es", "pending", "high", run.id)
    message = render(email)
    assert message.subject == f"Reunión del IEP de {student.first_name} {student.last_name} el 2026-11-30 a las 15:30"
    assert "Propósito" in message.html and meeting.location in message.text
    assert "Purpose" not in message.html and "Hello" not in message.text
    # Every family message about the meeting is in the family's language.
    assert set(Notification.objects.filter(template="iep-meeting-notice", student=student).values_list("language", flat=True)) == {"es"}
