"""IEP review reminders: 0 7 * * * (district local time).

Why then: 07:00 local: case managers read the reminders at the start of the school day, with time to schedule the meeting and notify guardians (34 CFR 300.322).

Rules (docs/decisions/domain-rules.md): an annual review is due last review + 365 days (IEP.next_review_due, leap
years included). The district's offsets (default 90/60/30/14/7/0 days before) each send one
reminder per IEP: 90 the sped coordinator(s); 60 the case manager and the principal; 30 and
later the whole team. At 14 (or a later offset reached without it) an annual-review meeting
is proposed if none is open. At 7 (or later) the meeting is confirmed: the guardians' notice
must have gone out at least ``District.meeting_notice_lead_days`` before the meeting's local
date, otherwise the meeting is flagged (IEPMeeting.notice_flagged_late) and the case manager
and coordinator are told. A missed day is caught up: the next run sends the offset crossed
most recently, never an earlier one after a later one (iep.selectors.due_offset). Overdue
IEPs (past due, no review recorded) alert the coordinator once per local day. A scheduled
meeting's family notice (34 CFR 300.322(b)) goes out on the first run after it is scheduled,
to the guardians the family rule lets be told and to the student at 18 (300.520), in their
language, by email and push, as a legal notice (category "legal-notice": at once, whatever the
family chose for IEP reminders, never in a digest; quiet hours still apply); the run's local
date is recorded as the notice date, and a
meeting fewer than the lead days away is flagged to the case manager and coordinator at once.
A meeting whose date passed without minutes (a meeting is recorded as held only with them)
reminds the case manager once, 2 school days after it (the school's instructional calendar). Priority is
high from 30 days on (the 30-day rung and every later one). The IEP records the last reminder (time, offset) and the count.
The 3-year reevaluation (34 CFR 300.303(b)(2); due = last evaluation, or the eligibility date,
+ 3 years: IEP.reevaluation_due) climbs the same ladder on its own due date: the same offsets,
audiences, catch-up and priority, its own bookkeeping (last_reevaluation_reminder_sent_at/offset),
and once overdue (no reevaluation recorded) the coordinator is alerted once per local day. No
meeting is proposed for it: a reevaluation begins with a review of existing data (300.305(a)),
which may be held without a meeting (300.305(b)); a reevaluation meeting the team schedules gets
the family notice above.

Idempotency: "today" is the slot's local date; the dedupe keys are
``iep-reminder:<iep>:<due date>:<offset>:<recipient>:email`` (the due date names the review
cycle, so next year's reminders are new), ``iep-overdue:<iep>:<local date>:<recipient>:email``,
``iep-meeting-notice:<meeting>:<recipient>:<channel>`` (a meeting moved after its notice:
``iep-meeting-notice:<meeting>:moved-<local start YYYYMMDDTHHMM>-<place tag>:<recipient>:<channel>``), ``iep-minutes-missing:<meeting>:<recipient>:email``
``iep-notice-late:<meeting>:<recipient>:email``, ``iep-reevaluation:<iep>:<reevaluation due>:<offset>:<recipient>:email``
and ``iep-reevaluation-overdue:<iep>:<local date>:<recipient>:email``. Everything the run writes (messages,
meetings, flags, IEP bookkeeping) is one transaction, so a failed run leaves nothing and a
re-run of the slot finds the offset recorded and sends nothing new.

Student data read: active IEPs whose review or reevaluation is due within the largest offset
(student name, school, review and reevaluation dates, reminder bookkeeping), their team members, case managers and annual-review meetings.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from iep import selectors, services
from notifications.models import Category, Channel, Priority
from notifications.selectors import dedupe_keys_not_suppressed
from notifications.services import NotificationRequest, notifications_enqueue
from notifications.summary_labels import ENQUEUE_FIGURES
from scheduling.registry import Job

PROPOSE_AT = 14  # days before due: a meeting is proposed from this offset on
CONFIRM_AT = 7  # days before due: the meeting and the guardians' notice are checked
HIGH_PRIORITY_AT = 30  # days before due: from the 30-day rung on, reminders are high priority


def _place(location: str) -> str:
    """A short stable tag of a meeting's place, for the key of a moved meeting's notice."""
    return hashlib.sha256(location.encode()).hexdigest()[:8]


def _email(recipient_id: int, template: str, context: dict, key: str, *, high: bool, student_id: int) -> NotificationRequest:
    return NotificationRequest(
        recipient_id=recipient_id, category=Category.IEP_REMINDER, channel=Channel.EMAIL, template=template,
        context=context, dedupe_key=f"{key}:{recipient_id}:{Channel.EMAIL}",
        priority=Priority.HIGH if high else Priority.NORMAL, student_id=student_id,
    )


def _ladder_emails(rungs, recipients: dict, requests: list, *, template: str, context_of) -> tuple[Counter, dict]:
    """Append one email per audience member for each rung due to ``requests``. The annual
    review's ladder and the reevaluation's share the audiences and the priority; each has its
    template, whose name is also its key prefix (``<template>:<iep>:<due>:<offset>``). Returns
    the count per offset (the summary) and the IEP ids per offset (the bookkeeping)."""
    per_offset: Counter = Counter()
    sent: dict[int, list[int]] = {}
    for r in rungs:
        who = recipients[r.iep_id]
        users: set[int] = set()
        for audience in selectors.audience_for(r.offset):
            users |= who[audience]
        context = context_of(r)
        key = f"{template}:{r.iep_id}:{r.due.isoformat()}:{r.offset}"
        requests += [
            _email(u, template, context, key, high=r.offset <= HIGH_PRIORITY_AT, student_id=r.student_id)
            for u in sorted(users)
        ]
        per_offset[str(r.offset)] += 1
        sent.setdefault(r.offset, []).append(r.iep_id)
    return per_offset, sent


def run(ctx) -> dict:
    district = ctx.district
    zone = district.zone
    today = ctx.scheduled_for.astimezone(zone).date()
    lead_days = district.meeting_notice_lead_days

    # 1. Which IEPs get which reminder today, and which are overdue (one query).
    due, overdue = selectors.reminders_due(district=district, today=today)
    checked = selectors.active_ieps_within(
        district=district, today=today, horizon_days=max(district.iep_reminder_offsets)
    ).count()
    # The 3-year reevaluation (34 CFR 300.303): the same ladder on its own due date (one query).
    re_due, re_overdue = selectors.reevaluations_due(district=district, today=today)
    total = len(due) + len(overdue) + len(re_due) + len(re_overdue)
    ctx.progress(0, total)
    # Family notices of scheduled meetings (34 CFR 300.322(b)): sent on the first run after
    # the meeting is scheduled; one that cannot leave the lead time is flagged at once.
    to_notice = selectors.meetings_to_notice(district=district, today=today)
    notices = [n for n in to_notice if n.recipients]
    # Nobody the system may tell (the student is 18 without an account and no parent keeps
    # the right, or no guardian has access): the notice has to go by hand, so the case
    # manager and the coordinator hear of it now, not at the 7-day confirmation.
    unreachable = [n for n in to_notice if not n.recipients]
    late_notices = [
        n for n in notices
        if selectors.notice_late(sent_on=today, meeting_day=n.starts_at.astimezone(zone).date(), lead_days=lead_days)
    ]
    # Minutes missing 2 school days after a meeting: the case manager is reminded, once.
    no_minutes = selectors.meetings_missing_minutes(district=district, today=today)
    staff_for = [selectors.ReminderDue(n.iep_id, n.student_id, n.school_id, n.review_due, 0, 0)
                 for n in late_notices + no_minutes + to_notice]
    recipients = selectors.reminder_recipients(district=district, reminders=due + overdue + re_due + re_overdue + staff_for)
    # Inactive accounts are never told; the reminder names them instead ("reassign").
    inactive = selectors.inactive_team_members(iep_ids=[r.iep_id for r in due + re_due])

    with transaction.atomic():
        # 2a. The notices first, so the confirmation below sees them recorded (same transaction).
        requests: list[NotificationRequest] = []
        for n in notices:
            local = n.starts_at.astimezone(zone)
            context = {
                "iep_id": n.iep_id, "meeting_id": n.meeting_id, "student_name": n.student_name, "purpose": n.purpose,
                "meeting_date": local.date().isoformat(), "meeting_time": local.strftime("%H:%M"),
                "location": n.location, "attendees": list(n.attendees),
            }
            requests += [
                NotificationRequest(
                    # A legal notice, not a reminder: it goes out at once whatever the family chose
                    # for IEP reminders ("never" or a digest included); quiet hours still hold it.
                    recipient_id=u, category=Category.LEGAL_NOTICE, channel=channel, template="iep-meeting-notice",
                    context=context, dedupe_key=f"iep-meeting-notice:{n.meeting_id}:{u}:{channel}" if not n.moved
                    # A moved meeting's notice: the new time and place in the key, so it is sent once more.
                    else f"iep-meeting-notice:{n.meeting_id}:moved-{local:%Y%m%dT%H%M}-{_place(n.location)}:{u}:{channel}",
                    priority=Priority.HIGH, student_id=n.student_id,
                )
                for u in n.recipients for channel in (Channel.EMAIL, Channel.PUSH)
            ]
        # A notice is given only when one of its messages can go: with every row suppressed
        # (no email address, no device, on every recipient) nobody was told, so no date is
        # recorded and the staff are told to deliver it by hand, as when nobody may be told.
        notice_queued = notifications_enqueue(requests, job_run_id=ctx.run.id, district_id=district.id,
                                              now=timezone.now()) if requests else None
        reached = {int(key.split(":")[1]) for key in dedupe_keys_not_suppressed([r.dedupe_key for r in requests])}
        unreachable += [n for n in notices if n.meeting_id not in reached]
        notices = [n for n in notices if n.meeting_id in reached]
        late_notices = [n for n in late_notices if n.meeting_id in reached]
        requests = []
        noticed = services.iep_meetings_record_notice(meeting_ids=[n.meeting_id for n in notices], sent_on=today)
        flagged_at_once = services.iep_meetings_flag_late_notice(meeting_ids=[n.meeting_id for n in late_notices])
        for n in late_notices:
            context = {
                "iep_id": n.iep_id, "meeting_id": n.meeting_id, "student_name": n.student_name,
                "review_due": n.review_due.isoformat(), "meeting_date": n.starts_at.astimezone(zone).date().isoformat(),
                "lead_days": lead_days,
            }
            who = recipients[n.iep_id]
            requests += [
                _email(u, "iep-notice-late", context, f"iep-notice-late:{n.meeting_id}", high=True, student_id=n.student_id)
                for u in sorted(who["case-manager"] | who["coordinator"])
            ]

        for n in unreachable:
            local = n.starts_at.astimezone(zone)
            context = {
                "iep_id": n.iep_id, "meeting_id": n.meeting_id, "student_name": n.student_name,
                "meeting_date": local.date().isoformat(), "meeting_time": local.strftime("%H:%M"), "lead_days": lead_days,
            }
            who = recipients[n.iep_id]
            requests += [
                _email(u, "iep-notice-nobody", context, f"iep-notice-nobody:{n.meeting_id}", high=True, student_id=n.student_id)
                for u in sorted(who["case-manager"] | who["coordinator"])
            ]

        for m in no_minutes:
            context = {"iep_id": m.iep_id, "meeting_id": m.meeting_id, "student_name": m.student_name,
                       "meeting_date": m.meeting_day.isoformat()}
            requests += [
                _email(u, "iep-minutes-missing", context, f"iep-minutes-missing:{m.meeting_id}", high=False, student_id=m.student_id)
                for u in sorted(recipients[m.iep_id]["case-manager"])
            ]

        # 2b. Meetings: propose one from 14 days on, then confirm the guardians' notice from 7.
        proposed = services.iep_meetings_propose(iep_ids=[r.iep_id for r in due if r.offset <= PROPOSE_AT])
        meetings: dict[int, tuple] = {}
        for row in selectors.annual_review_meetings(iep_ids=[r.iep_id for r in due if r.offset <= CONFIRM_AT]).values_list(
            "iep_id", "id", "status", "scheduled_for", "guardian_notice_sent_on", "notice_flagged_late"
        ):
            meetings.setdefault(row[0], []).append(row)
        late: list[tuple[selectors.ReminderDue, int, dt.date | None]] = []
        for r in due:
            if r.offset > CONFIRM_AT:
                continue
            rows = meetings.get(r.iep_id, [])
            open_ = [m for m in rows if m[2] != "held"]
            held = [m for m in rows if m[2] == "held" and m[3] and m[3].astimezone(zone).date() > r.last_annual_review]
            if held or not open_:
                continue  # the review meeting already took place this cycle
            _, meeting_id, _, when, notice_on, flagged = open_[0]
            meeting_day = when.astimezone(zone).date() if when else None
            if not flagged and not selectors.notice_on_time(notice_sent_on=notice_on, meeting_day=meeting_day, lead_days=lead_days):
                late.append((r, meeting_id, meeting_day))
        flagged = services.iep_meetings_flag_late_notice(meeting_ids=[m for _, m, _ in late])

        # 3. The messages, by audience (set-based: the recipients were read in 4 queries).
        per_offset, sent = _ladder_emails(due, recipients, requests, template="iep-reminder", context_of=lambda r: {
            "iep_id": r.iep_id, "student_name": r.student_name, "review_due": r.due.isoformat(),
            "days_until_due": r.days_until_due, "offset": r.offset,
            "meeting_proposed": r.offset <= PROPOSE_AT, "meeting_day": r.days_until_due == 0,
            "inactive_members": inactive.get(r.iep_id, []),
        })
        # 3b. The reevaluation's rungs: the same audiences and priority, their own keys.
        re_per_offset, re_sent = _ladder_emails(re_due, recipients, requests, template="iep-reevaluation", context_of=lambda r: {
            "iep_id": r.iep_id, "student_name": r.student_name, "reevaluation_due": r.due.isoformat(),
            "days_until_due": r.days_until_due, "offset": r.offset, "inactive_members": inactive.get(r.iep_id, []),
        })
        for r in re_overdue:
            context = {
                "iep_id": r.iep_id, "student_name": r.student_name, "reevaluation_due": r.due.isoformat(),
                "days_overdue": -r.days_until_due,
            }
            key = f"iep-reevaluation-overdue:{r.iep_id}:{today.isoformat()}"
            requests += [
                _email(u, "iep-reevaluation-overdue", context, key, high=True, student_id=r.student_id)
                for u in sorted(recipients[r.iep_id]["coordinator"])
            ]
        for r, meeting_id, meeting_day in late:
            who = recipients[r.iep_id]
            context = {
                "iep_id": r.iep_id, "meeting_id": meeting_id, "student_name": r.student_name,
                "review_due": r.due.isoformat(), "meeting_date": meeting_day.isoformat() if meeting_day else "",
                "lead_days": lead_days,
            }
            requests += [
                _email(u, "iep-notice-late", context, f"iep-notice-late:{meeting_id}", high=True, student_id=r.student_id)
                for u in sorted(who["case-manager"] | who["coordinator"])
            ]
        for r in overdue:
            context = {
                "iep_id": r.iep_id, "student_name": r.student_name, "review_due": r.due.isoformat(),
                "days_overdue": -r.days_until_due,
            }
            requests += [
                _email(u, "iep-overdue", context, f"iep-overdue:{r.iep_id}:{today.isoformat()}", high=True, student_id=r.student_id)
                for u in sorted(recipients[r.iep_id]["coordinator"])
            ]
        queued = notifications_enqueue(requests, job_run_id=ctx.run.id, district_id=district.id, now=timezone.now())

        # 4. Bookkeeping on the IEP, one UPDATE per offset, in the same transaction as the
        #    messages: a crash leaves neither, and a re-run finds the offset recorded.
        services.iep_reminders_record(sent=sent, at=ctx.scheduled_for)
        services.iep_reevaluation_reminders_record(sent=re_sent, at=ctx.scheduled_for)
    ctx.progress(total, total)
    ctx.logger.info("%s reminders, %s overdue, %s reevaluation reminders, %s reevaluations overdue, %s queued",
                    len(due), len(overdue), len(re_due), len(re_overdue), queued.inserted)
    return {
        "ieps_checked": checked,
        "reminders_sent": dict(per_offset),
        "overdue": len(overdue),
        "reevaluation_reminders_sent": dict(re_per_offset),
        "reevaluations_overdue": len(re_overdue),
        "meetings_proposed": len(proposed),
        "notices_flagged": flagged + flagged_at_once,
        "meeting_notices_sent": noticed,
        "meeting_notices_nobody": len(unreachable),
        "minutes_missing": len(no_minutes),
        "notifications_queued": queued.inserted + (notice_queued.inserted if notice_queued else 0),
        "digest_items": queued.digested + (notice_queued.digested if notice_queued else 0),
    }


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "ieps_checked": "IEPs checked",
    "reminders_sent": ("Review reminders, by days before due", "the district's reminder ladder (90, 60, 30, 14, 7, 0)"),
    "overdue": "Reviews overdue",
    "reevaluation_reminders_sent": ("Reevaluation reminders, by days before due", "the same ladder, for the 3-year reevaluation"),
    "reevaluations_overdue": "Reevaluations overdue",
    "meetings_proposed": "Review meetings proposed",
    "notices_flagged": ("Meeting notices flagged late", "the family notice is due before the meeting's lead time"),
    "meeting_notices_sent": "Family meeting notices sent",
    "meeting_notices_nobody": ("Meetings with nobody to notice", "no guardian with access and no student account at 18: staff are told"),
    "minutes_missing": ("Meetings without minutes", "held 2 school days ago or more; the case manager is reminded"),
    **{str(days): ("due today" if days == 0 else f"{days} days before") for days in range(0, 366)},
    **ENQUEUE_FIGURES,  # the outbox's figures, the same words on every job
}


JOB = Job(
    slug='iep-review-reminders',
    title='IEP review reminders',
    default_cron='0 7 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=2),
    timeout=900,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=8),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="IEPs",
    entry=run,
)
