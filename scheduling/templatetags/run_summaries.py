"""A run's summary in the job's words for templates (scheduling/summaries.py):
``{{ run|summary_line }}`` gives "Students checked: 196; At risk: 33; ..." (run history)."""
from __future__ import annotations

from django import template

from scheduling import registry, summaries

register = template.Library()


@register.filter("summary_line")
def summary_line(run) -> str:
    if not run.result:
        return ""
    return summaries.one_line(registry.find(run.job), run.result, zone=run.zone_name, limit=3)
