"""The run-duration chart: oldest to latest across the whole width, failures in the failure
colour, the page's run outlined and named in the legend, the expected duration as a line."""
from __future__ import annotations

import datetime as dt
import re

from scheduling.dashboard.charts import COLOURS, duration_chart
from scheduling.selectors import DurationPoint

START = dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC)


def points(*statuses_and_seconds) -> list[DurationPoint]:
    return [DurationPoint(run_id=i + 1, started=START + dt.timedelta(days=i), seconds=s, status=st)
            for i, (st, s) in enumerate(statuses_and_seconds)]


def bars(chart: str) -> list[dict]:
    out = []
    for tag in re.findall(r"<rect class=\"bar [^>]*>", chart):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        out.append({**attrs, "x": float(attrs["x"]), "width": float(attrs["width"]), "y": float(attrs["y"])})
    return out


def test_bars_run_oldest_to_latest_across_the_width_even_when_few():
    for n in (2, 5, 30):
        chart = str(duration_chart(points(*[("succeeded", 10.0 + i) for i in range(n)]), width=640))
        drawn = bars(chart)
        assert len(drawn) == n
        assert [b["x"] for b in drawn] == sorted(b["x"] for b in drawn)  # oldest left
        assert drawn[0]["x"] < 56 + 640 * 0.2 and drawn[-1]["x"] + drawn[-1]["width"] > 640 * 0.8  # spread out
        assert "oldest · Mon 2026-11-02" in chart and "latest ·" in chart


def test_failures_in_the_failure_colour_and_this_run_marked_and_named():
    chart = str(duration_chart(points(("succeeded", 5.0), ("failed", 9.0), ("timed_out", 30.0), ("warning", 4.0)),
                               current_run_id=2, zone="America/New_York"))
    ok, failed, timed_out, warned = bars(chart)
    assert COLOURS["failed"] in failed["style"] and COLOURS["failed"] in timed_out["style"]
    assert COLOURS["succeeded"] in ok["style"] and COLOURS["warning"] in warned["style"]
    assert "current" in failed["class"] and "stroke: #222" in failed["style"] and "current" not in ok["class"]
    assert "▼ this run" in chart and "this run (#2, 9.0 s)" in chart  # the legend names it
    assert "failed or timed out" in chart and "with warnings" in chart and ">succeeded<" in chart
    assert "Run #2 (this run): Tue 2026-11-03 02:00 EST (UTC−05:00), 9.0 s, failed" in chart  # its tooltip


def test_the_expected_duration_is_a_line_inside_the_chart():
    chart = str(duration_chart(points(("succeeded", 20.0), ("succeeded", 30.0)), expected=dt.timedelta(minutes=2)))
    line = re.search(r'<line class="expected"[^>]*y1="([\d.]+)"', chart)
    assert line and float(line.group(1)) >= 26  # at the top: 2 min is the slowest here
    assert "expected (2 min)" in chart and "Expected duration: 2 min" in chart
    assert all(b["y"] > float(line.group(1)) for b in bars(chart))  # both runs were faster
    assert duration_chart([]) == ""
