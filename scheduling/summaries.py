"""A run's summary as people read it: each figure under the label its job declares
(``Job.figures``), its value in words, and a one-line meaning where the label alone could
mislead. The run page, the schedule page's run history, ``manage.py jobs run`` and the Slack
run messages use it; ``--json`` and the stored ``JobRun.result`` keep the keys.

Values: whole numbers with thousands separators; True/False as yes/no; None as "none";
an ISO date as "Sun 2026-12-06"; a month "2026-11" as "November 2026"; an ISO date-time as the district's local time with its offset;
a period "2026-11-01..2026-11-30" as "2026-11-01 to 2026-11-30"; a mapping as "label value"
pairs, its keys labelled by the same job's figures; a list as its items, or its length when the
items are records. Never a Python repr.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from scheduling import cron, registry
from scheduling.templatetags.times_and_durations import local_text, utc_text

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_PERIOD = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
# A log line's leading time as the run's log handler writes it (UTC, "Z"), or as older runs
# wrote it (the worker's clock, which is UTC: Django sets the process zone to TIME_ZONE).
_LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[,.]\d+)?Z? ")


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: str
    meaning: str = ""


def label_of(job: registry.Job | None, key: str, *, parent: str = "") -> tuple[str, str]:
    """(label, meaning) of a summary key: the job's declaration ("parent.key" first, for a
    nested figure whose key means something else at the top: delivery.failed), else the key
    in words."""
    figures = job.figures if job is not None else {}
    declared = figures.get(f"{parent}.{key}") if parent else None
    declared = declared or figures.get(key)
    if isinstance(declared, tuple):
        return declared
    if declared:
        return declared, ""
    text = str(key).replace("_", " ").replace("-", " ").strip()
    return (text[:1].upper() + text[1:]) if text else str(key), ""


def value_text(value, *, zone: str, job: registry.Job | None = None, depth: int = 0, key: str = "") -> str:
    """One summary value in words (see the module's docstring)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, str):
        return _text(value, zone=zone)
    if isinstance(value, Mapping):
        if not value:
            return "none"
        if depth >= 2:
            return f"{len(value):,} entries"
        nested = any(isinstance(v, Mapping) for v in value.values())
        parts = [
            f"{label_of(job, k, parent=key)[0]}{':' if nested else ''} "
            f"{value_text(v, zone=zone, job=job, depth=depth + 1, key=key)}"
            for k, v in value.items()
        ]
        return ("; " if nested else ", ").join(parts)
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        if all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            return ", ".join(value_text(v, zone=zone, job=job, depth=depth + 1) for v in value)
        return f"{len(value):,} entries"
    return str(value)


def _text(value: str, *, zone: str) -> str:
    if _DATE.match(value):
        try:
            return f"{dt.date.fromisoformat(value):%a %Y-%m-%d}"
        except ValueError:
            return value
    if _DATETIME.match(value):
        try:
            instant = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=dt.UTC)
        return local_text(instant, zone)
    if _MONTH.match(value):
        return f"{dt.date.fromisoformat(value + '-01'):%B %Y}"
    period = _PERIOD.match(value)
    if period:
        return f"{_text(period.group(1), zone=zone)} to {_text(period.group(2), zone=zone)}"
    return value


def figures(job: registry.Job | None, result: Mapping | None, *, zone: str) -> list[Figure]:
    """The run's summary figures in the job's declared order, then any undeclared ones."""
    result = result or {}
    order = list(job.figures) if job is not None else []
    keys = [k for k in order if k in result] + [k for k in result if k not in order]
    out = []
    for key in keys:
        label, meaning = label_of(job, key)
        out.append(Figure(key=key, label=label, value=value_text(result[key], zone=zone, job=job, key=key),
                          meaning=meaning))
    return out


def one_line(job: registry.Job | None, result: Mapping | None, *, zone: str, limit: int = 4) -> str:
    """The first ``limit`` figures as "Label value; Label value" (run history, Slack)."""
    shown = figures(job, result, zone=zone)
    text = "; ".join(f"{f.label}: {f.value}" for f in shown[:limit])
    return text + (f"; and {len(shown) - limit} more" if len(shown) > limit else "")


@dataclass(frozen=True)
class LogLine:
    local: str  # the line's time in the district's zone ("" when the line has none)
    utc: str
    text: str


def log_lines(log: str, *, zone: str) -> list[LogLine]:
    """A run's log, each line's leading UTC time shown in the district's zone (UTC kept for
    the hover): the page is read in the district's time, like its slot and start."""
    lines = []
    for line in (log or "").splitlines():
        match = _LOG_TIME.match(line)
        if match is None:
            lines.append(LogLine("", "", line))
            continue
        instant = dt.datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}").replace(tzinfo=dt.UTC)
        local = instant.astimezone(cron.zone(zone))
        lines.append(LogLine(f"{local:%H:%M:%S} {local.tzname()}", utc_text(instant), line[match.end():]))
    return lines

