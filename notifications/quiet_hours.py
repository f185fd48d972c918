"""The family quiet-hours window, in the district's local time.

Non-emergency messages to guardians and students go out only between the district's
``notify_window_start`` and ``notify_window_end`` (default 07:00-21:00 local). A message
outside the window waits for the next window start; it is never dropped. Staff messages
(counselors, case managers, administrators) are work notices and are not held: the window
protects families' evenings, and a staff member's own preferences choose digest vs immediate.

Everything is computed as local wall time and then converted to UTC with zoneinfo, so the
window follows DST: on 2026-11-01 (America/New_York falls back) 07:00 local is 12:00 UTC,
the day before it was 11:00 UTC.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo

UTC = dt.UTC


def _local_instant(day: dt.date, at: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """``day`` at wall time ``at`` in ``zone``, as UTC. With fold=0 (PEP 495) a wall time in a
    spring-forward gap takes the offset from before the jump, i.e. the instant just after
    it (02:30 on 2027-03-14 in New York is 03:30 EDT); a repeated fall-back time is its
    first occurrence."""
    return dt.datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(UTC)


def in_window(moment: dt.datetime, zone: zoneinfo.ZoneInfo, start: dt.time, end: dt.time) -> bool:
    local = moment.astimezone(zone).time()
    return start <= local < end


def next_window_start(moment: dt.datetime, zone: zoneinfo.ZoneInfo, start: dt.time, end: dt.time) -> dt.datetime:
    """The earliest instant >= ``moment`` inside the window (``moment`` itself if inside)."""
    if in_window(moment, zone, start, end):
        return moment
    local_day = moment.astimezone(zone).date()
    today_start = _local_instant(local_day, start, zone)
    if moment < today_start:
        return today_start
    return _local_instant(local_day + dt.timedelta(days=1), start, zone)


def local_date(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.date:
    return moment.astimezone(zone).date()
