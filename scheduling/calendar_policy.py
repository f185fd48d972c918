"""The one place the engine applies a job's calendar policy (``Job.calendar``): which slots
of a "school days" job the district's school calendar skips, and why.

Called where a slot's run row is decided (``services.claim_slot``, at run time, so a snow
day entered in the morning applies to that evening's slot with no resync) and by the
previews that show staff what will happen (``jobs next``, the dashboard's next runs), so
the preview and the decision are the same function. The calendar's rule itself (covered
spans, closures, a missing calendar) is the district's: students/calendar.py.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from scheduling import cron, registry
from students.calendar import district_calendar, first_uncovered_dates
from students.models import District

# The dashboard warns when the calendar is missing for any date this far ahead.
MISSING_CALENDAR_HORIZON = dt.timedelta(days=21)


def calendar_skips(job: registry.Job, *, district_id: int | None, zone_name: str,
                   slots: Iterable[dt.datetime]) -> dict[dt.datetime, str]:
    """The slots (aware datetimes) the school calendar skips, each with the calendar's
    reason ("Winter break", "Snow day", "Weekend"). Empty for an "any day" or global job.
    Two queries whatever the number of slots (none for an "any day" job)."""
    slots = list(slots)
    if not job.on_school_days or district_id is None or not slots:
        return {}
    zone = cron.zone(zone_name)
    local = {slot: slot.astimezone(zone).date() for slot in slots}
    days = district_calendar(district_id=district_id, first=min(local.values()), last=max(local.values()))
    skips = {}
    for slot, day in local.items():
        reason = days.closed_reason(day)
        if reason is not None:
            skips[slot] = reason
    return skips


def skip_note(reason: str) -> str:
    """The run row's note for a slot the calendar skipped (the run history shows it)."""
    return f"skipped: {reason} (school calendar; the job runs on school days)"


@dataclass(frozen=True)
class MissingCalendar:
    district_id: int
    district_name: str
    first_date: dt.date  # the first local date, within the horizon, a school's calendar does not cover
    schools: list[str]  # the schools whose calendar does not cover it
    every_school: bool  # none of the district's schools' calendars covers it


def missing_calendars(*, now: dt.datetime) -> list[MissingCalendar]:
    """Districts where a school's calendar stops covering some date of the coming weeks
    (``MISSING_CALENDAR_HORIZON``), naming those schools: there their "school days" jobs run
    every day their cron names, as before calendars existed (one school not covered is
    enough: it acts), until someone enters next year's calendar. Only districts with a live
    schedule of a "school days" job are listed. Two queries."""
    slugs = [job.slug for job in registry.all_jobs() if job.on_school_days]
    if not slugs:
        return []
    districts = {
        pk: (name, now.astimezone(cron.zone(tz)).date())
        for pk, name, tz in District.objects.filter(
            job_schedules__job__in=slugs, job_schedules__removed_at__isnull=True,
        ).distinct().order_by("name", "pk").values_list("pk", "name", "time_zone")
    }
    first = first_uncovered_dates(today_by_district={pk: today for pk, (_, today) in districts.items()},
                                  days=MISSING_CALENDAR_HORIZON.days)
    return [MissingCalendar(pk, name, first[pk].first_date, first[pk].schools, first[pk].every_school)
            for pk, (name, _) in districts.items() if pk in first]
