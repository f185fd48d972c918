"""Counts in the printed reports (templates/reports/): ``{{ value|thousands }}`` prints
34001 as "34,001" (scheduling.reports.number)."""
from __future__ import annotations

from django import template

from scheduling.reports import number

register = template.Library()
register.filter("thousands", number)
