"""The cron preview of the edit page: the next runs, and the runs across the zone's next DST
change, as ``scheduling.cron.preview`` computes them (the engine's own slot function, so the
preview is what the scheduler will do), with the slots the school calendar skips marked
(``calendar_policy.calendar_skips``, the function the slot claim applies)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.utils import timezone

from scheduling import cron
from scheduling.templatetags.times_and_durations import utc_offset

PREVIEW_COUNT = 5


@dataclass
class PreviewSlot:
    utc: dt.datetime
    after_change: bool = False


@dataclass
class Preview:
    expr: str
    tz_name: str
    words: str = ""
    error: str = ""
    next_runs: list[dt.datetime] = field(default_factory=list)
    dst_change: dt.datetime | None = None  # the instant the offset changes (UTC)
    dst_label: str = ""
    around_change: list[PreviewSlot] = field(default_factory=list)
    skipped: dict[dt.datetime, str] = field(default_factory=dict)  # next run -> the calendar's reason

    @property
    def next_rows(self) -> list[tuple[dt.datetime, str]]:
        """(slot, reason it is skipped or "") for each next run."""
        return [(s, self.skipped.get(s, "")) for s in self.next_runs]


def cron_preview(expr: str, tz_name: str, *, now: dt.datetime | None = None,
                 skips: Callable[[Iterable[dt.datetime]], dict[dt.datetime, str]] | None = None) -> Preview:
    """The next PREVIEW_COUNT runs of ``expr`` in ``tz_name`` and the runs that straddle the
    zone's next DST change (two before, three after); a bad cron or zone sets ``error``.
    ``skips(slots)``: the slots the schedule's calendar policy skips, with their reasons."""
    preview = Preview(expr=expr, tz_name=tz_name)
    try:
        expr = preview.expr = cron.validate(expr)
        preview.words = cron.describe(expr)
        slots = cron.preview(expr, tz_name, now or timezone.now(), PREVIEW_COUNT)
    except cron.BadCron as exc:
        preview.error = str(exc)
        return preview
    preview.next_runs = slots["next"]
    if skips is not None:
        preview.skipped = skips(preview.next_runs)
    change = preview.dst_change = slots["transition"]
    if change is not None:
        tz = cron.zone(tz_name)
        before, after = (change - dt.timedelta(seconds=1)).astimezone(tz), change.astimezone(tz)
        preview.dst_label = f"{after:%a %Y-%m-%d}: clocks go from {utc_offset(before)} to {utc_offset(after)}"
        preview.around_change = [PreviewSlot(s, after_change=s >= change) for s in slots["around_transition"]]
    return preview
