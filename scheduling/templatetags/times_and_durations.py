"""How the engine shows times and durations to people: one formatter each, used as template
filters by the dashboard (``{% load times_and_durations %}``) and as functions by the
``manage.py jobs`` output and the run notes the services write.

    {{ run.slot|local_time:tz_name }}   Wed 2026-11-04 01:30 EST (UTC−05:00)
    {{ run.slot|utc_time }}             2026-11-04 06:30Z
    {{ run.duration_seconds|duration }} 45 ms, 3.0 s, 2.5 min, 3 h, 2 d
"""
from __future__ import annotations

import datetime as dt

from django import template

from scheduling import cron

register = template.Library()
UTC = dt.UTC


def utc_offset(value: dt.datetime) -> str:
    """UTC offset as "UTC−05:00" / "UTC+10:30" (a real minus sign, as clocks print it)."""
    seconds = int(value.utcoffset().total_seconds())
    sign = "+" if seconds >= 0 else "\u2212"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


@register.filter("local_time")
def local_text(value: dt.datetime | None, tz_name: str) -> str:
    """The instant in the zone, with the zone's abbreviation and offset ("" for None)."""
    if value is None or value == "":
        return ""
    local = value.astimezone(cron.zone(tz_name))
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} ({utc_offset(local)})"


@register.filter("utc_time")
def utc_text(value: dt.datetime | None) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M}Z" if value is not None and value != "" else ""


@register.filter("duration")
def duration_text(value: float | dt.timedelta | None, *, whole: bool = False) -> str:
    """A duration for people: "45 ms", "3.0 s", "2.5 min", "3 h", "1.5 h", "2 d" ("" for None).

    Seconds keep their tenth (a run's time is read to the tenth); minutes and hours drop a
    trailing ".0" ("catch-up window of 3 h"); whole days read as days. ``whole`` rounds down
    to whole seconds or minutes ("4 s", "12 min"), for messages read at a glance (alerts).
    """
    if value is None or value == "":
        return ""
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if whole and seconds < 7200:
        return f"{int(seconds)} s" if seconds < 120 else f"{int(seconds) // 60} min"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds % 86400 == 0:
        return f"{seconds / 86400:.0f} d"
    text = f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
    return text.replace(".0 ", " ")
