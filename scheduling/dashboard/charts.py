"""The run-duration chart of the schedule and run pages, drawn by the engine's one SVG chart
helper (scheduling/charts.py).

Oldest run at the left, latest at the right, spread across the whole width whatever their
number; failures and timeouts in the failure colour, runs with warnings in the warning colour;
the job's expected duration as a dashed line; the page's own run outlined, marked "this run"
and named in the legend. Each bar's tooltip names the run, its start in the district's time
and its duration. Colours are inline styles so the page's stylesheet cannot repaint a failure.
"""
from __future__ import annotations

import datetime as dt

from django.utils.safestring import SafeString

from scheduling.charts import element, svg
from scheduling.selectors import DurationPoint
from scheduling.templatetags.times_and_durations import duration_text, local_text

COLOURS = {
    "succeeded": "#417690",  # the admin's secondary blue
    "warning": "#d49b00",
    "failed": "#ba2121",  # the admin's delete/error red: the failure colour
}
_STATUS_COLOUR = {"succeeded": "succeeded", "warning": "warning", "failed": "failed", "timed_out": "failed"}
_STATUS_WORDS = {"succeeded": "succeeded", "warning": "succeeded with warnings", "failed": "failed",
                 "timed_out": "timed out"}


def duration_chart(points: list[DurationPoint], *, current_run_id: int | None = None,
                   expected: dt.timedelta | None = None, zone: str = "UTC",
                   width: int = 640, height: int = 200) -> SafeString | str:
    """The chart ("" when there is no finished run). The y axis tops at the slowest run or
    the expected duration, whichever is higher, so the expected line is always inside."""
    if not points:
        return ""
    expected_s = expected.total_seconds() if expected else None
    top = max([p.seconds for p in points] + ([expected_s] if expected_s else [])) or 1
    left, right, plot_top, legend_h = 56, 10, 26, 34  # the legend: up to two rows
    base = height - 20 - legend_h  # the time axis
    plot_h = base - plot_top
    plot_w = width - left - right
    bar_w = max(3.0, min(40.0, plot_w / len(points) * 0.8))
    # The oldest bar flush left, the latest flush right, the others evenly between: the
    # time axis spans the width whatever the number of runs.
    step = (plot_w - bar_w) / (len(points) - 1) if len(points) > 1 else 0.0

    def y(seconds: float) -> float:
        return round(base - max(1.0, seconds / top * plot_h), 1)

    bars, current = [], None
    for i, p in enumerate(points):
        x = round(left + i * step, 1)
        colour = COLOURS[_STATUS_COLOUR.get(p.status, "succeeded")]
        is_current = current_run_id is not None and p.run_id == current_run_id
        tip = (f"Run #{p.run_id}{' (this run)' if is_current else ''}: {local_text(p.started, zone)}, "
               f"{duration_text(p.seconds)}, {_STATUS_WORDS.get(p.status, p.status)}")
        bars.append(element(
            "rect", element("title", tip),
            class_=f"bar {p.status}{' current' if is_current else ''}", x=x, y=y(p.seconds), width=round(bar_w, 1),
            height=round(base - y(p.seconds), 1), rx=1,
            style=f"fill: {colour}" + ("; stroke: #222; stroke-width: 2" if is_current else ""),
        ))
        if is_current:
            current = (x + bar_w / 2, y(p.seconds), p)

    parts = [
        element("line", x1=left - 2, y1=plot_top, x2=left - 2, y2=base, stroke="#bbb"),
        element("line", x1=left - 2, y1=base, x2=width - right, y2=base, stroke="#bbb"),
        element("text", duration_text(top), x=left - 6, y=plot_top + 4, text_anchor="end"),
        element("text", "0", x=left - 6, y=base, text_anchor="end"),
        element("text", f"oldest · {local_text(points[0].started, zone)}", x=left, y=base + 14),
        element("text", f"latest · {local_text(points[-1].started, zone)}", x=width - right, y=base + 14,
                text_anchor="end"),
        *bars,
    ]
    if expected_s:
        line_y = round(base - expected_s / top * plot_h, 1)
        parts += [
            element("line", element("title", f"Expected duration: {duration_text(expected_s)}"), class_="expected",
                    x1=left - 2, y1=line_y, x2=width - right, y2=line_y,
                    style="stroke: #444; stroke-width: 1.5; stroke-dasharray: 5 4"),
        ]
    if current is not None:
        cx, cy, _ = current
        parts.append(element("text", "▼ this run", class_="this-run", x=round(cx, 1), y=max(10, cy - 6),
                             text_anchor="middle", style="font-weight: bold"))
    parts += _legend(points, current[2] if current else None, expected_s, y=base + 32, left=left, right=width - right)
    return svg(parts, class_="sj-chart", role="img", width=width, height=height, viewBox=f"0 0 {width} {height}",
               aria_label=f"Durations of the last {len(points)} runs, oldest to latest")


def _legend(points, current: DurationPoint | None, expected_s: float | None, *, y: int, left: int,
            right: int) -> list:
    """Legend entries for what the chart shows: each colour present, this run, the line;
    a second row when the first is full."""
    entries = []
    shown = {_STATUS_COLOUR.get(p.status, "succeeded") for p in points}
    for key, words in (("succeeded", "succeeded"), ("warning", "with warnings"), ("failed", "failed or timed out")):
        if key in shown:
            entries.append((element("rect", width=10, height=10, y=-9, style=f"fill: {COLOURS[key]}"), words))
    if current is not None:
        entries.append((element("rect", width=10, height=10, y=-9, style="fill: none; stroke: #222; stroke-width: 2"),
                        f"this run (#{current.run_id}, {duration_text(current.seconds)})"))
    if expected_s:
        entries.append((element("line", x1=0, y1=-4, x2=14, y2=-4,
                                style="stroke: #444; stroke-width: 1.5; stroke-dasharray: 5 4"),
                        f"expected ({duration_text(expected_s)})"))
    out, x = [], left
    for mark, words in entries:
        needed = 16 + 6 * len(words) + 14  # about 6 px a character at the chart's 10 px font
        if x > left and x + needed > right:
            x, y = left, y + 14
        out.append(element("g", mark, class_="legend", transform=f"translate({x},{y})"))
        out.append(element("text", words, x=x + 16, y=y))
        x += needed
    return out
