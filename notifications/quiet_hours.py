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

UTC = dt.timezone.utc


def _local_instant(day: dt.date, at: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """``day`` at wall time ``at`` in ``zone``, as UTC. A wall time in a spring-forward gap
    resolves to the instant just after the jump (fold=0 then normalised), never earlier."""
    local = dt.datetime.combine(day, at).replace(tzinfo=zone)
    as_utc = local.astimezone(UTC)
    # Round-trip check: a non-existent local time comes back different; take the later
    # reading of it so a window never opens before its wall-clock start.
    if as_utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        as_utc = local.replace(fold=1).astimezone(UTC)
    return as_utc


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
