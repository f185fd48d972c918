"""Set-based reads for special education: which IEP reminder is due, who gets it."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from iep.models import IEP, IEPMeeting, IEPTeamMember
from students.models import AGE_OF_RIGHTS_TRANSFER, CalendarDay, District, GuardianLink, Role, age_on

# Who is told at each offset (days before the review is due). Offsets a district adds
# beyond these get the widest audience of the nearest standard offset at or above it.
RECIPIENTS_BY_OFFSET = {
    90: ("coordinator",),
    60: ("case-manager", "principal"),
    30: ("team",),
    14: ("team",),
    7: ("team",),
    0: ("team",),
}


def audience_for(offset: int) -> tuple[str, ...]:
    standard = sorted(RECIPIENTS_BY_OFFSET)
    for o in standard:
        if offset <= o:
            return RECIPIENTS_BY_OFFSET[o]
    return RECIPIENTS_BY_OFFSET[standard[-1]]


def due_offset(*, days_until_due: int, offsets: list[int], last_sent: int | None) -> int | None:
    """The reminder to send today, if any.

    The reminder is the offset crossed most recently (the smallest offset >= days left), so
    a missed day is caught up by the next run; an offset is never sent twice and an earlier
    reminder never follows a later one (offsets only go down).
    """
    crossed = [o for o in offsets if days_until_due <= o]
    if not crossed:
        return None
    latest = min(crossed)
    if last_sent is not None and latest >= last_sent:
        return None
    return latest


@dataclass(frozen=True)
class ReminderDue:
    iep_id: int
    student_id: int
    school_id: int
    due: dt.date
    days_until_due: int
    offset: int
    student_name: str = ""
    last_annual_review: dt.date | None = None


def active_ieps_within(*, district: District, today: dt.date, horizon_days: int) -> QuerySet[IEP]:
    return IEP.objects.filter(
        status=IEP.Status.ACTIVE, student__school__district=district, student__is_active=True,
        next_review_due__lte=today + dt.timedelta(days=horizon_days),
    )


def last_sent_this_cycle(
    *, last_offset: int | None, last_sent_on: dt.date | None, due: dt.date, offsets: list[int]
) -> int | None:
    """The last reminder offset sent for *this* review cycle, or None.

    ``last_reminder_offset`` survives a new annual review (the row is the same IEP), so a
    0-day reminder of last year would otherwise block every reminder of the new cycle. A
    reminder of the current cycle is never sent before ``due - max(offsets)`` days; one sent
    earlier belongs to a previous cycle and is ignored.
    """
    if last_offset is None or last_sent_on is None:
        return last_offset
    if last_sent_on < due - dt.timedelta(days=max(offsets)):
        return None
    return last_offset


def _ladder(rows, *, today: dt.date, offsets: list[int], zone) -> tuple[list[ReminderDue], list[ReminderDue]]:
    """(reminders to send today, overdue) for rows of (iep, student, school, due date, last
    offset sent, when it was sent, first name, last name, last annual review): the one ladder
    the annual review and the reevaluation both climb, each on its own due date and bookkeeping."""
    due, overdue = [], []
    for iep_id, student_id, school_id, due_on, last_offset, last_at, first, last, reviewed in rows:
        days = (due_on - today).days
        name = f"{first} {last}".strip()
        if days < 0:
            overdue.append(ReminderDue(iep_id, student_id, school_id, due_on, days, -1, name, reviewed))
        last_sent = last_sent_this_cycle(
            last_offset=last_offset, last_sent_on=last_at.astimezone(zone).date() if last_at else None,
            due=due_on, offsets=offsets,
        )
        # Past due, the day-0 reminder is still sent once if its run was missed.
        offset = due_offset(days_until_due=days, offsets=offsets, last_sent=last_sent)
        if offset is not None:
            due.append(ReminderDue(iep_id, student_id, school_id, due_on, days, offset, name, reviewed))
    return due, overdue


def reminders_due(*, district: District, today: dt.date) -> tuple[list[ReminderDue], list[ReminderDue]]:
    """(reminders to send today, overdue IEPs), in one query.

    ``today`` is the district's local date. Overdue means past due with no review recorded
    (recording the review moves ``next_review_due`` a year on). The reminder's own cycle is
    told from the date the last reminder went out (see ``last_sent_this_cycle``).
    """
    offsets = sorted(set(district.iep_reminder_offsets), reverse=True)
    rows = active_ieps_within(district=district, today=today, horizon_days=max(offsets)).values_list(
        "id", "student_id", "student__school_id", "next_review_due", "last_reminder_offset",
        "last_reminder_sent_at", "student__first_name", "student__last_name", "last_annual_review",
    )
    return _ladder(rows, today=today, offsets=offsets, zone=district.zone)


def active_ieps_reevaluation_within(*, district: District, today: dt.date, horizon_days: int) -> QuerySet[IEP]:
    return IEP.objects.filter(
        status=IEP.Status.ACTIVE, student__school__district=district, student__is_active=True,
        reevaluation_due__lte=today + dt.timedelta(days=horizon_days),
    )


def reevaluations_due(*, district: District, today: dt.date) -> tuple[list[ReminderDue], list[ReminderDue]]:
    """(reevaluation reminders to send today, IEPs whose reevaluation is overdue), in one query.

    The 3-year reevaluation (34 CFR 300.303(b)(2)) climbs the annual review's ladder (the
    district's offsets, the same audiences, a missed day caught up with the latest rung) on
    its own due date, ``IEP.reevaluation_due``, with its own bookkeeping
    (``last_reevaluation_reminder_sent_at/offset``), so one ladder never holds back the other.
    Recording the reevaluation (``IEP.last_reevaluation``) moves the due date 3 years on and
    starts a new cycle, told apart as in ``last_sent_this_cycle``.
    """
    offsets = sorted(set(district.iep_reminder_offsets), reverse=True)
    rows = active_ieps_reevaluation_within(district=district, today=today, horizon_days=max(offsets)).values_list(
        "id", "student_id", "student__school_id", "reevaluation_due", "last_reevaluation_reminder_offset",
        "last_reevaluation_reminder_sent_at", "student__first_name", "student__last_name", "last_annual_review",
    )
    return _ladder(rows, today=today, offsets=offsets, zone=district.zone)


def annual_review_meetings(*, iep_ids: list[int]) -> QuerySet[IEPMeeting]:
    """Open (proposed or scheduled) annual-review meetings of these IEPs, and held ones
    (the caller keeps those of the current cycle), in one query."""
    return IEPMeeting.objects.filter(
        iep_id__in=iep_ids, purpose=IEPMeeting.Purpose.ANNUAL_REVIEW,
        status__in=[IEPMeeting.Status.PROPOSED, IEPMeeting.Status.SCHEDULED, IEPMeeting.Status.HELD],
    )


def notice_on_time(*, notice_sent_on: dt.date | None, meeting_day: dt.date | None, lead_days: int) -> bool:
    """Guardians must be told at least ``lead_days`` before the meeting (34 CFR 300.322;
    states set 5 or 10 days). No date or no notice yet, a week before the due date, is late."""
    if meeting_day is None or notice_sent_on is None:
        return False
    return notice_sent_on <= meeting_day - dt.timedelta(days=lead_days)


def reminder_recipients(*, district: District, reminders: list[ReminderDue]) -> dict[int, dict[str, set[int]]]:
    """For each IEP, user ids by audience (coordinator, case-manager, principal, team).

    Three queries for any number of IEPs.
    """
    User = get_user_model()
    iep_ids = [r.iep_id for r in reminders]
    school_ids = {r.school_id for r in reminders}
    coordinators = set(
        User.objects.filter(is_active=True, groups__name=Role.SPED_COORDINATOR, staff_profile__district=district)
        .values_list("id", flat=True)
    )
    principals: dict[int, set[int]] = {}
    for user_id, school_id in User.objects.filter(
        is_active=True, groups__name=Role.PRINCIPAL, staff_profile__schools__in=school_ids
    ).values_list("id", "staff_profile__schools"):
        principals.setdefault(school_id, set()).add(user_id)
    team: dict[int, set[int]] = {}
    case_managers: dict[int, set[int]] = {}
    for iep_id, user_id, role in IEPTeamMember.objects.filter(iep_id__in=iep_ids, user__is_active=True).values_list(
        "iep_id", "user_id", "role"
    ):
        team.setdefault(iep_id, set()).add(user_id)
        if role == IEPTeamMember.TeamRole.CASE_MANAGER:
            case_managers.setdefault(iep_id, set()).add(user_id)
    for iep_id, manager_id in IEP.objects.filter(id__in=iep_ids, case_manager__is_active=True).values_list(
        "id", "case_manager_id"
    ):
        case_managers.setdefault(iep_id, set()).add(manager_id)
        team.setdefault(iep_id, set()).add(manager_id)
    result: dict[int, dict[str, set[int]]] = {}
    for r in reminders:
        result[r.iep_id] = {
            "coordinator": coordinators,
            "case-manager": case_managers.get(r.iep_id, set()),
            "principal": principals.get(r.school_id, set()),
            "team": team.get(r.iep_id, set()),
        }
    return result


def inactive_team_members(*, iep_ids: list[int]) -> dict[int, list[dict]]:
    """For each IEP, its team members and case manager whose accounts are inactive:
    ``{"name", "role"}``, in the order they joined. They receive no reminder (an inactive
    account is never told), so the reminder names them for the case manager to reassign:
    a team never loses a member without anyone being told. Two queries for any number of IEPs.
    """
    out: dict[int, list[dict]] = {}
    seen: set[tuple[int, int]] = set()
    for iep_id, user_id, first, last, username, role in IEPTeamMember.objects.filter(
        iep_id__in=iep_ids, user__is_active=False
    ).order_by("iep_id", "id").values_list("iep_id", "user_id", "user__first_name", "user__last_name", "user__username", "role"):
        seen.add((iep_id, user_id))
        out.setdefault(iep_id, []).append({"name": f"{first} {last}".strip() or username,
                                           "role": IEPTeamMember.TeamRole(role).label})
    for iep_id, user_id, first, last, username in IEP.objects.filter(id__in=iep_ids, case_manager__is_active=False).values_list(
        "id", "case_manager_id", "case_manager__first_name", "case_manager__last_name", "case_manager__username"
    ):
        if (iep_id, user_id) not in seen:
            out.setdefault(iep_id, []).insert(0, {"name": f"{first} {last}".strip() or username,
                                                  "role": IEPTeamMember.TeamRole.CASE_MANAGER.label})
    return out


@dataclass(frozen=True)
class MeetingNotice:
    """A scheduled meeting whose family notice has not gone out, with what the notice says."""

    meeting_id: int
    iep_id: int
    student_id: int
    school_id: int
    student_name: str
    purpose: str
    starts_at: dt.datetime
    location: str
    review_due: dt.date
    recipients: tuple[int, ...]  # guardians who may be told, and the student once 18
    attendees: tuple[dict, ...]  # {"name", "role"}: the IEP team and the case manager
    moved: bool = False  # noticed before, at another time: this notice gives the new one


def meetings_to_notice(*, district: District, today: dt.date) -> list[MeetingNotice]:
    """Scheduled meetings of the district's active IEPs, on ``today`` (local) or later, whose
    notice has not been sent for their current time (never, or the meeting moved since). Four queries whatever the number of meetings.

    Who is told (34 CFR 300.322(b), 300.520): every guardian the family rule
    (``GuardianLink.notice_bar``) lets be told on ``today``, and the student once 18, when the
    rights have transferred (the parents keep getting notices only if the student consents
    or is their tax dependent, which is the same rule). Enqueue applies it again, with
    preferences, channels and quiet hours.
    """
    zone = district.zone
    start_of_today = dt.datetime.combine(today, dt.time.min, tzinfo=zone)
    rows = list(
        IEPMeeting.objects.filter(
            IEPMeeting.notice_outstanding(),
            status=IEPMeeting.Status.SCHEDULED, scheduled_for__gte=start_of_today,
            iep__status=IEP.Status.ACTIVE, iep__student__is_active=True, iep__student__school__district=district,
        ).order_by("scheduled_for", "id").values_list(
            "id", "iep_id", "iep__student_id", "iep__student__school_id", "iep__student__first_name",
            "iep__student__last_name", "purpose", "scheduled_for", "location", "iep__next_review_due",
            "iep__student__user_id", "iep__student__birth_date", "iep__student__consents_to_guardian_access",
            "iep__case_manager__first_name", "iep__case_manager__last_name", "iep__case_manager__username",
            "guardian_notice_sent_on",
        )
    )
    if not rows:
        return []
    student_ids = {r[2] for r in rows}
    iep_ids = {r[1] for r in rows}
    guardians: dict[int, list[tuple]] = {}
    for student_id, guardian_id, revoked, dependent in GuardianLink.objects.filter(
        student_id__in=student_ids, guardian__is_active=True
    ).values_list("student_id", "guardian_id", "access_revoked", "is_dependent_claim"):
        guardians.setdefault(student_id, []).append((guardian_id, revoked, dependent))
    team: dict[int, list[dict]] = {}
    for iep_id, first, last, username, role in IEPTeamMember.objects.filter(iep_id__in=iep_ids).order_by("id").values_list(
        "iep_id", "user__first_name", "user__last_name", "user__username", "role"
    ):
        team.setdefault(iep_id, []).append({"name": f"{first} {last}".strip() or username, "role": role})
    out = []
    for (meeting_id, iep_id, student_id, school_id, first, last, purpose, starts_at, location, review_due,
         student_user, birth_date, consents, cm_first, cm_last, cm_username, noticed_on) in rows:
        told = [
            g for g, revoked, dependent in guardians.get(student_id, [])
            if GuardianLink.notice_bar(access_revoked=revoked, is_dependent_claim=dependent, birth_date=birth_date,
                                       student_consents=consents, day=today) is None
        ]
        if student_user and age_on(birth_date, today) >= AGE_OF_RIGHTS_TRANSFER:
            told.append(student_user)
        attendees = list(team.get(iep_id, []))
        manager = f"{cm_first or ''} {cm_last or ''}".strip() or cm_username
        if manager and not any(a["role"] == IEPTeamMember.TeamRole.CASE_MANAGER and a["name"] == manager for a in attendees):
            attendees.insert(0, {"name": manager, "role": IEPTeamMember.TeamRole.CASE_MANAGER})
        out.append(MeetingNotice(
            meeting_id, iep_id, student_id, school_id, f"{first} {last}".strip(), purpose, starts_at, location or "",
            review_due, tuple(sorted(set(told))), tuple(attendees), moved=noticed_on is not None,
        ))
    return out


def notice_late(*, sent_on: dt.date, meeting_day: dt.date, lead_days: int) -> bool:
    """A notice sent on ``sent_on`` is late when fewer than ``lead_days`` days remain."""
    return not notice_on_time(notice_sent_on=sent_on, meeting_day=meeting_day, lead_days=lead_days)


MINUTES_DUE_SCHOOL_DAYS = 2
MINUTES_LOOKBACK_DAYS = 45  # older meetings are the compliance report's, not a daily reminder's


@dataclass(frozen=True)
class MinutesMissing:
    meeting_id: int
    iep_id: int
    student_id: int
    school_id: int
    student_name: str
    meeting_day: dt.date
    review_due: dt.date


def school_days_after(*, day: dt.date, until: dt.date, instructional: set[dt.date] | None) -> int:
    """School days in (day, until]: the school's instructional calendar days, or Monday to
    Friday for a school with no calendar rows in that span (never silently zero)."""
    if instructional is None:
        return sum(1 for n in range(1, (until - day).days + 1) if (day + dt.timedelta(days=n)).weekday() < 5)
    return sum(1 for d in instructional if day < d <= until)


def meetings_missing_minutes(*, district: District, today: dt.date) -> list[MinutesMissing]:
    """Meetings of active IEPs whose date has passed (local), not cancelled, without minutes,
    at least ``MINUTES_DUE_SCHOOL_DAYS`` school days (the school's calendar) before ``today``.
    Three queries."""
    zone = district.zone
    start_of_today = dt.datetime.combine(today, dt.time.min, tzinfo=zone)
    rows = IEPMeeting.objects.filter(
        status__in=[IEPMeeting.Status.SCHEDULED, IEPMeeting.Status.HELD], minutes__isnull=True,
        scheduled_for__lt=start_of_today, scheduled_for__gte=start_of_today - dt.timedelta(days=MINUTES_LOOKBACK_DAYS),
        iep__status=IEP.Status.ACTIVE, iep__student__is_active=True, iep__student__school__district=district,
    ).order_by("scheduled_for", "id").values_list(
        "id", "iep_id", "iep__student_id", "iep__student__school_id", "iep__student__first_name", "iep__student__last_name",
        "scheduled_for", "iep__next_review_due",
    )
    rows = [(*r[:6], r[6].astimezone(zone).date(), r[7]) for r in rows]
    if not rows:
        return []
    calendars: dict[int, set[dt.date]] = {}
    for school_id, day in CalendarDay.objects.filter(
        school_id__in={r[3] for r in rows}, date__gt=min(r[6] for r in rows), date__lte=today, is_instructional=True
    ).values_list("school_id", "date"):
        calendars.setdefault(school_id, set()).add(day)
    # A school with rows in the span but none instructional (a holiday week) has days, all off.
    with_rows = set(CalendarDay.objects.filter(
        school_id__in={r[3] for r in rows}, date__gt=min(r[6] for r in rows), date__lte=today
    ).values_list("school_id", flat=True).distinct())
    return [
        MinutesMissing(mid, iep_id, student_id, school_id, f"{first} {last}".strip(), day, review_due)
        for mid, iep_id, student_id, school_id, first, last, day, review_due in rows
        if school_days_after(day=day, until=today, instructional=calendars.get(school_id, set()) if school_id in with_rows else None)
        >= MINUTES_DUE_SCHOOL_DAYS
    ]
