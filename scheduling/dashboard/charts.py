"""The run-duration chart of the schedule and run pages, drawn by the engine's one SVG chart
helper (scheduling/charts.py)."""
from __future__ import annotations

import datetime as dt

from django.utils.safestring import SafeString

from scheduling.charts import element, svg
from scheduling.templatetags.times_and_durations import duration_text, utc_text


def duration_chart(points: list[tuple[dt.datetime, float]], *, highlight: dt.datetime | None = None,
                   width: int = 600, height: int = 140) -> SafeString | str:
    """Bars of the latest runs' durations, oldest left; the y axis tops at the slowest ("" when
    there is no finished run). ``highlight``: the start time of the run whose page this is
    (its bar is coloured)."""
    if not points:
        return ""
    top = max(s for _, s in points) or 1
    plot_h, left, gap = height - 30, 50, 2
    bar_w = max(4, min(40, (width - left) // len(points) - gap))
    bars = []
    for i, (started, seconds) in enumerate(points):
        h = max(1, round(seconds / top * plot_h))
        bars.append(element(
            "rect", element("title", f"{utc_text(started)}: {duration_text(seconds)}"),
            class_="bar current" if highlight is not None and started == highlight else "bar",
            x=left + i * (bar_w + gap), y=10 + plot_h - h, width=bar_w, height=h, rx=1,
        ))
    # A short history: the axis ends after the last bar, so "latest" sits next to it.
    width = max(240, left + (len(points) - 1) * (bar_w + gap) + bar_w + 40)
    base = height - 20
    axes = [
        element("line", x1=48, y1=10, x2=48, y2=base, stroke="#bbb"),
        element("line", x1=48, y1=base, x2=width, y2=base, stroke="#bbb"),
        element("text", duration_text(top), x=44, y=16, text_anchor="end"),
        element("text", "0", x=44, y=base, text_anchor="end"),
        element("text", "older", x=50, y=height - 5),
        element("text", "latest", x=width - 2, y=height - 5, text_anchor="end"),
    ]
    return svg([*axes, *bars], class_="sj-chart", role="img", aria_label="Durations of recent runs",
               width=width, height=height, viewBox=f"0 0 {width} {height}")
