"""Stored reports: how a job builds one (inline SVG charts, CSV, content hash), its one
write path (``report_store``) and who may read which (``reports_visible_to``).

Reports are documents a principal prints: server-side HTML with inline SVG bar charts (no
JavaScript), one CSV of the figures and, for exports, further CSV files. Nothing in a
report's content depends on the wall clock, so the same inputs give the same bytes and the
same ``content_hash`` whenever and however often the job runs.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from scheduling.charts import element, svg
from scheduling.models import Report
from skillcore.csv_export import csv_text


# -- building a report ------------------------------------------------------------------------
def pct(value) -> str:
    """A percentage for people: "87.5%", or an en dash when there is no figure (never "nan")."""
    if value is None:
        return "–"
    return f"{Decimal(value):.1f}%"


def number(value) -> str:
    """A count for people: thousands separated ("34,001"), an en dash when there is none.
    Written out here, not through the locale: a report's bytes must not depend on the
    process that rendered it (its content hash)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def bar_chart(bars: Sequence[tuple[str, float | Decimal | None]], *, title: str, maximum: float = 100.0,
              unit: str = "%") -> SafeString:
    """A horizontal bar chart as inline SVG: one bar per (label, value); None draws no bar
    and prints "no data". Sized for print (fits A4/Letter width)."""
    row, label_w, chart_w, top = 22, 240, 340, 26
    height = top + row * max(len(bars), 1) + 8
    parts = [element("text", title, x=0, y=16, font_size=13, font_weight="bold")]
    if not bars:
        parts.append(element("text", "no data", x=0, y=top + 14, font_size=12, fill="#666"))
    for i, (label, value) in enumerate(bars):
        y = top + i * row
        label = str(label) if len(str(label)) <= 36 else str(label)[:35] + "…"  # fits the 240 px label column
        parts.append(element("text", label, x=label_w - 6, y=y + 14, font_size=12, text_anchor="end"))
        if value is None:
            parts.append(element("text", "no data", x=label_w + 4, y=y + 14, font_size=12, fill="#666"))
            continue
        v = float(value)
        width = 0 if maximum <= 0 else max(0.0, min(v, maximum)) / maximum * chart_w
        parts.append(element("rect", x=label_w, y=y + 3, width=f"{width:.1f}", height=row - 8, fill="#3b6ea5"))
        shown = f"{v:.1f}{unit}" if unit == "%" else f"{v:g}{unit}"
        parts.append(element("text", shown, x=f"{label_w + width + 4:.1f}", y=y + 14, font_size=12))
    return svg(parts, xmlns="http://www.w3.org/2000/svg", role="img", aria_label=title,
               width=label_w + chart_w + 70, height=height, class_="chart")


def to_csv(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """CSV text with a header row; None becomes an empty cell, numbers print as they are and
    text that a spreadsheet would run as a formula is neutralized (skillcore.csv_export)."""
    return csv_text(header, rows)


def render_html(template: str, context: dict) -> str:
    """A full printable HTML document from templates/reports/ (extends reports/_base.html)."""
    return render_to_string(template, context)


def content_hash(*, html: str, csv_text: str, extra_csv: dict[str, str] | None = None) -> str:
    """SHA-256 over the HTML, the CSV and every extra CSV (by sorted file name), each
    length-prefixed so moving bytes between parts changes the hash."""
    h = hashlib.sha256()
    parts = [("html", html), ("csv", csv_text)] + sorted((extra_csv or {}).items())
    for name, text in parts:
        data = text.encode()
        h.update(f"{name}:{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


@dataclass
class Stored:
    report: Report
    created: bool
    changed: bool  # the content differs from what was stored (always True when created)


# -- the one write path -----------------------------------------------------------------------
@transaction.atomic
def report_store(
    *, kind: str, district_id: int | None, school_id: int | None, period_start: dt.date, period_end: dt.date,
    title: str, html: str, csv_text: str = "", extra_csv: dict[str, str] | None = None, evidence: dict,
    job_run_id: int | None, now: dt.datetime,
) -> Stored:
    """Insert or replace the report of (kind, district, school, period start).

    A re-run of the same period keeps the row (and its id, which emails link to) and
    replaces the content when it changed. When nothing but the run would change, nothing is
    written: the row keeps naming the run that produced its content, so a re-run or a retry
    of a slot that finds the same inputs leaves the report exactly as it was. Two workers
    racing on a new period: the loser's insert fails on the unique constraint inside a
    savepoint and it updates the winner's row instead.
    """
    extra_csv = dict(extra_csv or {})
    digest = content_hash(html=html, csv_text=csv_text, extra_csv=extra_csv)
    key = dict(kind=kind, district_id=district_id, school_id=school_id, period_start=period_start)
    fields = dict(
        period_end=period_end, title=title[:200], html=html, csv=csv_text, extra_csv=extra_csv,
        content_hash=digest, evidence=evidence, job_run_id=job_run_id, updated_at=now,
    )
    existing = Report.objects.select_for_update().filter(**key).first()
    if existing is None:
        try:
            with transaction.atomic():
                return Stored(Report.objects.create(**key, **fields, created_at=now), created=True, changed=True)
        except IntegrityError:
            existing = Report.objects.select_for_update().get(**key)
    changed = existing.content_hash != digest
    bookkeeping = {"job_run_id", "updated_at"}
    if all(getattr(existing, name) == value for name, value in fields.items() if name not in bookkeeping):
        return Stored(existing, created=False, changed=False)
    for name, value in fields.items():
        setattr(existing, name, value)
    existing.save(update_fields=list(fields))
    return Stored(existing, created=False, changed=changed)


# -- who reads which --------------------------------------------------------------------------
def reports_visible_to(user) -> QuerySet[Report]:
    """System admins: every report; district admins: their district's (district-wide and
    every school's); principals: their schools' reports. Nobody else."""
    from students.models import Role
    from students.roles import is_staff_member, staff_of

    s = staff_of(user)
    qs = Report.objects.select_related("district", "school")
    if s.is_system_admin:
        return qs
    if not is_staff_member(user):
        return qs.none()
    q = Q(pk__in=[])  # nothing, unless a role below adds rows
    if s.has(Role.DISTRICT_ADMIN):
        q |= Q(district_id=s.district_id)
    if s.has(Role.PRINCIPAL):
        q |= Q(school_id__in=s.school_ids)
    return qs.filter(q)


def report_url(report: Report) -> str:
    """The report's page in admin, as a link for messages (ALERTS_BASE_URL + the view)."""
    from django.conf import settings
    from django.urls import reverse

    return settings.ALERTS_BASE_URL.rstrip("/") + reverse("admin:scheduling_report_view", args=[report.pk])
