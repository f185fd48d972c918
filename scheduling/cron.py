"""Cron slots in a district's own time zone, with Debian cron's DST rules (cronsim).

Every function takes and returns *aware* datetimes; slots are returned in UTC (what the
database stores) unless said otherwise. Why cronsim and not croniter: see docs/decisions/cron-and-dst.md
(croniter runs ``0 1 1 * *`` twice on a fall-back day; cronsim runs a repeated-hour slot
once and a skipped-hour slot once, right after the jump).
"""
from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterator

from cronsim import CronSim, CronSimError

UTC = dt.UTC


class BadCron(ValueError):
    """A cron expression or time zone we cannot evaluate; the message says which."""


def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadCron(f"{name!r} is not an IANA time zone (for example America/New_York)") from None


def validate(expr: str) -> str:
    """Return the expression normalised to single spaces, or raise BadCron."""
    normalized = " ".join((expr or "").split())
    if len(normalized.split()) != 5:
        raise BadCron(f"{expr!r} is not a cron expression: it needs 5 fields (minute hour day month weekday)")
    try:
        CronSim(normalized, dt.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")))
    except CronSimError as exc:
        raise BadCron(f"{expr!r} is not a valid cron expression: {exc}") from None
    return normalized


@functools.lru_cache(maxsize=1024)
def describe(expr: str) -> str:
    """The cron in plain words ("At 02:00 every day")."""
    try:
        return CronSim(validate(expr), dt.datetime(2026, 1, 1, tzinfo=UTC)).explain()
    except (BadCron, Exception):  # explain() is best-effort text; never break a page for it
        return expr


def _iterate(expr: str, tz: zoneinfo.ZoneInfo, after: dt.datetime) -> Iterator[dt.datetime]:
    """Slots strictly after ``after``, as UTC datetimes, forever.

    cronsim walks *wall-clock* time for fixed-time expressions (to mimic Debian cron), so
    starting it inside a repeated fall-back hour can yield a wall time whose first (fold=0)
    instant is before ``after``: those are the slots that already ran in the first pass of
    the hour, and are dropped here. That is what makes a repeated-hour slot run once.
    """
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    after_utc = after.astimezone(UTC)
    start = after_utc.astimezone(tz)
    try:
        sim = CronSim(expr, start)
    except CronSimError as exc:
        raise BadCron(f"{expr!r} is not a valid cron expression: {exc}") from None
    for local in sim:
        slot = local.astimezone(UTC)
        if slot > after_utc:
            yield slot


def next_slot(expr: str, tz_name: str, after: dt.datetime) -> dt.datetime:
    """The first slot strictly after ``after`` (UTC)."""
    return next(_iterate(validate(expr), zone(tz_name), after))


def next_slots(expr: str, tz_name: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next ``count`` slots after ``after`` (UTC)."""
    it = _iterate(validate(expr), zone(tz_name), after)
    return [next(it) for _ in range(count)]


def slots_between(expr: str, tz_name: str, after: dt.datetime, until: dt.datetime, limit: int = 1000) -> list[dt.datetime]:
    """Slots s with after < s <= until (UTC), at most the last ``limit`` of them."""
    out: list[dt.datetime] = []
    until_utc = until.astimezone(UTC)
    for slot in _iterate(validate(expr), zone(tz_name), after):
        if slot > until_utc:
            break
        out.append(slot)
        if len(out) > limit:
            out.pop(0)
    return out


def parse_instant(text: str, tz_name: str) -> dt.datetime:
    """An ISO-8601 date or time; without an offset it is local time in ``tz_name``.

    Raises BadCron with a one-line message on anything else.
    """
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise BadCron(f"{text!r} is not an ISO-8601 date or time (for example 2026-11-01T01:00-04:00)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz_name))
    return value


def next_transition(tz_name: str, after: dt.datetime, horizon_days: int = 400) -> dt.datetime | None:
    """The first instant after ``after`` at which the zone's UTC offset changes (a DST
    change), in UTC; None if there is none within the horizon (e.g. Asia/Kolkata or UTC).
    Day steps, then bisection to the second: exact, in ~420 offset lookups."""
    tz = zone(tz_name)
    start = after.astimezone(UTC)
    offset = start.astimezone(tz).utcoffset()
    lo = start
    for day in range(1, horizon_days + 1):
        hi = start + dt.timedelta(days=day)
        if hi.astimezone(tz).utcoffset() != offset:
            while hi - lo > dt.timedelta(seconds=1):  # the change is in (lo, hi]
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            return hi.replace(microsecond=0)
        lo = hi
    return None


def preview(expr: str, tz_name: str, now: dt.datetime, count: int = 5) -> dict:
    """What the cron editor shows: the next ``count`` runs, the zone's next DST change, and
    ``count`` runs across it (two before the change, the rest after), so staff see what the
    change does to this cron.

    Returns {"next": [...], "transition": datetime | None, "around_transition": [...]}, all UTC;
    raises BadCron for a bad cron or zone.
    """
    expr = validate(expr)
    upcoming = next_slots(expr, tz_name, now, count)
    change = next_transition(tz_name, now)
    if change is None:
        return {"next": upcoming, "transition": None, "around_transition": []}
    # Instants, not wall-clock arithmetic: one second before the change is still the old
    # offset. cronsim walks back two slots from there in local time; then the engine walks
    # forward from just before the earlier one (Debian's DST rules applied once, as the
    # scheduler will).
    back = CronSim(expr, (change - dt.timedelta(seconds=1)).astimezone(zone(tz_name)), reverse=True)
    start = min(next(back).astimezone(UTC) for _ in range(2)) - dt.timedelta(seconds=1)
    around = next_slots(expr, tz_name, max(start, now), count)
    return {"next": upcoming, "transition": change, "around_transition": around}
