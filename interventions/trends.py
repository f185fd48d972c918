"""Weekly performance trends: the rules (UP / DOWN / STABLE, when a drop alerts) and the one
write path of StudentAnalytics.

Kept apart from interventions/services.py (attendance interventions) because it is a
different state change with its own rules; reads are in interventions/selectors.py
(``student_week_figures``, ``intervention_effects``).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import transaction

from interventions.models import StudentAnalytics, Trend

TREND_BAND = Decimal("5")  # a change of more than 5 points is UP or DOWN; 5 or less is STABLE
ALERT_DROP = Decimal("10")  # a drop of more than 10 points alerts the counselor
# The figures whose drop alerts: the grade average only. Attendance is a 5-day week, so one
# absent day is a 20-point "drop" (on the demo district a third of all alerts); absences have
# their own job with the chronic-absence rules (attendance-interventions).
ALERT_METRICS = ("grade",)


def trend(current: Decimal | None, previous: Decimal | None, *, band: Decimal = TREND_BAND) -> str | None:
    """UP / DOWN / STABLE, or None when either week has no figure (no trend, never NaN)."""
    if current is None or previous is None:
        return None
    change = current - previous
    if change > band:
        return Trend.UP
    if change < -band:
        return Trend.DOWN
    return Trend.STABLE


def count_trend(current: int, previous: int) -> str:
    """Incidents are counts, not percentages: any change is a trend (more incidents is UP)."""
    return Trend.UP if current > previous else Trend.DOWN if current < previous else Trend.STABLE


def drops(row: StudentAnalytics) -> list[tuple[str, Decimal, Decimal]]:
    """The alerting figures that fell by more than 10 points: (metric, before, now)."""
    out = []
    for metric in ALERT_METRICS:
        now, before = getattr(row, f"{metric}_pct"), getattr(row, f"{metric}_pct_prev")
        if now is not None and before is not None and before - now > ALERT_DROP:
            out.append((metric, before, now))
    return out


_UPDATE_FIELDS = [
    "week_end", "grade_pct", "grade_pct_prev", "grade_count", "grade_trend", "attendance_pct", "attendance_pct_prev",
    "attendance_trend", "completion_pct", "completion_pct_prev", "completion_trend", "incidents", "incidents_prev",
    "incidents_trend", "intervention_effects", "alerted", "computed_at", "job_run_id",
]


# Which run computed a row, and when: they say where the figures came from, so they move
# only with the figures.
_PROVENANCE = {"computed_at", "job_run_id"}


@transaction.atomic
def student_analytics_upsert(*, rows: list[StudentAnalytics], batch_size: int = 1000) -> int:
    """Insert or update one row per (student, week start): one statement per 1,000 rows
    (INSERT ... ON CONFLICT DO UPDATE), so a re-run of the week never duplicates. Rows whose
    figures are already stored as computed are left alone (one read first): a re-run or a
    retry of the slot writes nothing, and each row keeps naming the run that computed it."""
    if not rows:
        return 0
    compared = [f for f in _UPDATE_FIELDS if f not in _PROVENANCE]
    stored = {
        (r["student_id"], r["week_start"]): r
        for r in StudentAnalytics.objects.filter(
            student_id__in=[r.student_id for r in rows], week_start__in={r.week_start for r in rows},
        ).values("student_id", "week_start", *compared)
    }
    rows = [
        r for r in rows
        if (old := stored.get((r.student_id, r.week_start))) is None or any(getattr(r, f) != old[f] for f in compared)
    ]
    if not rows:
        return 0
    StudentAnalytics.objects.bulk_create(
        rows, batch_size=batch_size, update_conflicts=True, unique_fields=["student", "week_start"],
        update_fields=_UPDATE_FIELDS,
    )
    return len(rows)


def week_bounds(local_date: dt.date) -> tuple[tuple[dt.date, dt.date], tuple[dt.date, dt.date]]:
    """(this week, last week): seven local days ending on ``local_date``, and the seven before."""
    this = (local_date - dt.timedelta(days=6), local_date)
    last = (local_date - dt.timedelta(days=13), local_date - dt.timedelta(days=7))
    return this, last
