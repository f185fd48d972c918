"""Inline SVG bar charts (no JavaScript), written by one helper: the dashboard's run-duration
chart (scheduling/dashboard/charts.py) and the printed reports' figures (``reports.bar_chart``).

``element`` writes one SVG element, ``svg`` the chart around them: attribute names take "-"
for "_" (``font_size`` is font-size; a trailing "_" is dropped, ``class_``), attributes that
are None are left out, and every value and text is escaped unless it is markup already
(another element), so a school's or job's name can never break out of the chart.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe


def _attrs(attrs: dict) -> str:
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{conditional_escape(value)}"'
        for name, value in attrs.items() if value is not None
    )


def element(name: str, content: str = "", /, **attrs) -> SafeString:
    """``<name attrs>content</name>``."""
    return mark_safe(f"<{name}{_attrs(attrs)}>{conditional_escape(content)}</{name}>")


def svg(elements: Iterable[str], /, **attrs) -> SafeString:
    """The ``<svg>`` element holding ``elements`` (markup from ``element``)."""
    return element("svg", mark_safe("".join(conditional_escape(e) for e in elements)), **attrs)
