"""Writes for special education: annual-review meetings proposed by the reminder job, late
guardian notices flagged, and the reminder bookkeeping on the IEP (annual review and
reevaluation). All set-based."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F

from iep.models import IEP, IEPMeeting, IEPMeetingMinutes


@transaction.atomic
def iep_meetings_propose(*, iep_ids: Iterable[int]) -> list[int]:
    """Propose an annual-review meeting for each IEP that has no open one. Returns the ids of
    the IEPs that got a new meeting.

    The partial unique constraint (one proposed/scheduled meeting per IEP and purpose) keeps
    this single even when two runs race: the loser's insert is ignored (ON CONFLICT DO
    NOTHING), and the ids are read back from what exists.
    """
    iep_ids = list(iep_ids)
    if not iep_ids:
        return []
    open_statuses = [IEPMeeting.Status.PROPOSED, IEPMeeting.Status.SCHEDULED]
    existing = set(
        IEPMeeting.objects.filter(
            iep_id__in=iep_ids, purpose=IEPMeeting.Purpose.ANNUAL_REVIEW, status__in=open_statuses
        ).values_list("iep_id", flat=True)
    )
    todo = [i for i in iep_ids if i not in existing]
    if not todo:
        return []
    IEPMeeting.objects.bulk_create(
        [IEPMeeting(iep_id=i, purpose=IEPMeeting.Purpose.ANNUAL_REVIEW, status=IEPMeeting.Status.PROPOSED) for i in todo],
        ignore_conflicts=True,
    )
    return todo


@transaction.atomic
def iep_meetings_flag_late_notice(*, meeting_ids: Iterable[int]) -> int:
    """Mark meetings whose guardian notice did not go out the district's lead days before.
    Only unflagged rows change, so a re-run flags nothing twice. Returns how many changed."""
    meeting_ids = list(meeting_ids)
    if not meeting_ids:
        return 0
    return IEPMeeting.objects.filter(id__in=meeting_ids, notice_flagged_late=False).update(notice_flagged_late=True)


@transaction.atomic
def iep_reminders_record(*, sent: dict[int, list[int]], at: dt.datetime) -> int:
    """Record the reminder each IEP got: ``sent`` maps an offset to IEP ids. One UPDATE per
    offset (a handful, whatever the number of IEPs). Returns the number of IEPs updated."""
    updated = 0
    for offset, iep_ids in sorted(sent.items()):
        if iep_ids:
            updated += IEP.objects.filter(id__in=iep_ids).update(
                last_reminder_sent_at=at, last_reminder_offset=offset, reminders_sent_count=F("reminders_sent_count") + 1,
            )
    return updated


@transaction.atomic
def iep_reevaluation_reminders_record(*, sent: dict[int, list[int]], at: dt.datetime) -> int:
    """Record the reevaluation reminder each IEP got (its own bookkeeping beside the annual
    review's): ``sent`` maps an offset to IEP ids. One UPDATE per offset. Returns the number of
    IEPs updated."""
    updated = 0
    for offset, iep_ids in sorted(sent.items()):
        if iep_ids:
            updated += IEP.objects.filter(id__in=iep_ids).update(
                last_reevaluation_reminder_sent_at=at, last_reevaluation_reminder_offset=offset,
            )
    return updated


@transaction.atomic
def iep_meetings_record_notice(*, meeting_ids: Iterable[int], sent_on: dt.date) -> int:
    """Record the day the family notice went out (the run's local date) and the meeting time
    and place it announced, only where no notice of the meeting's current time and place is recorded: the date
    is the sending, never typed, and a re-run changes nothing. A meeting noticed again after
    it moved loses its late flag; the run flags it again if the new notice is late too."""
    meeting_ids = list(meeting_ids)
    if not meeting_ids:
        return 0
    return IEPMeeting.objects.filter(id__in=meeting_ids).filter(IEPMeeting.notice_outstanding()).update(
        guardian_notice_sent_on=sent_on, guardian_notice_for=F("scheduled_for"), guardian_notice_location=F("location"),
        notice_flagged_late=False)


@transaction.atomic
def iep_meeting_record_held(
    *, meeting: IEPMeeting, attendees: list[dict], decisions: str, next_steps: str, author, written_at: dt.datetime | None = None
) -> IEPMeetingMinutes:
    """Record a meeting as held with its minutes, both or neither (a held meeting always has
    minutes). The meeting row is locked so two clerks cannot write two sets of minutes."""
    meeting = IEPMeeting.objects.select_for_update().get(pk=meeting.pk)
    minutes = IEPMeetingMinutes(meeting=meeting, attendees=attendees, decisions=decisions, next_steps=next_steps, author=author)
    if written_at is not None:
        minutes.written_at = written_at
    minutes.full_clean()
    minutes.save()
    meeting.status = IEPMeeting.Status.HELD
    meeting.full_clean()
    meeting.save(update_fields=["status"])
    return minutes

