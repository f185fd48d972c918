"""Every job's run page reads as words: each job runs for real over a seeded district (the
rollover from an approved request), then its run page is read as a system admin would.

Fails if a page shows a summary key instead of its label, a Python repr (braces, brackets,
quotes, True/False/None), a figure the job did not declare, a log line's time in UTC instead
of the district's, or progress without its unit; and if ``jobs run``'s human output does."""
from __future__ import annotations

import datetime as dt
import html
import re
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.urls import reverse

from scheduling import registry, runner, services, summaries
from scheduling.models import JobRun
from skillcore.seed import seed_district
from students import rollover
from students.models import Role
from tests import factories as f

# A Monday in term, 13:00 in New York: the daily jobs find attendance, grades and work due.
NOW = dt.datetime(2026, 11, 16, 18, 0, tzinfo=dt.UTC)
REPR = re.compile(r"[{}\[\]'\"]|\bTrue\b|\bFalse\b|\bNone\b")
pytestmark = pytest.mark.django_db


def _keys(value, parent: str = "") -> set[tuple[str, str]]:
    """(top-level key, key) of every key of a summary, nested mappings (per channel, per
    reason) included; lists of records show as a count, so their keys are not shown."""
    if not isinstance(value, dict):
        return set()
    return {(parent, k) for k in value} | {
        pair for k, v in value.items() for pair in _keys(v, parent or k)}


def _declared(job, parent: str, key: str) -> bool:
    return key in job.figures or f"{parent}.{key}" in job.figures


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _section(page: str, start: str, end: str) -> str:
    match = re.search(re.escape(start) + r"(.*?)" + re.escape(end), page, re.S)
    assert match, f"no {start!r} on the page"
    return match.group(1)


@pytest.fixture
def ran(db):
    """One finished run of every job over a seeded district."""
    with time_machine.travel(NOW, tick=False):
        district = seed_district(name="Lakeside Unified", students=40, seed=3, time_zone="America/New_York",
                                 as_of=dt.date(2026, 11, 16)).district
        services.sync_schedules()
        asker, approver = (f.UserFactory(is_staff=True, is_superuser=True, roles=[Role.SYSTEM_ADMIN]) for _ in "ab")
        target = rollover.validate(district_id=district.id, to_name="2027-2028", start=dt.date(2027, 8, 30),
                                   end=dt.date(2028, 6, 16))
        rollover.request_approve(request=rollover.request_create(target=target, requested_by=asker, run_at=NOW, now=NOW),
                                 approver=approver)
        runs = {}
        for job in registry.all_jobs():
            if job.has_body:
                runs[job.slug] = runner.run_sync(job_slug=job.slug, district=None if job.is_global else district)
    return district, runs


def test_every_jobs_run_page_shows_labels_and_words_never_keys_or_reprs(ran, system_admin, client):
    district, runs = ran
    client.force_login(system_admin)
    assert len(runs) == len([j for j in registry.all_jobs() if j.has_body]) >= 13
    for slug, run in runs.items():
        job = registry.get(slug)
        assert run.status in (JobRun.Status.SUCCEEDED, JobRun.Status.WARNING), (slug, run.error)
        assert run.result, slug
        undeclared = {f"{p}.{k}" if p else k for p, k in _keys(run.result) if not _declared(job, p, k)}
        assert not undeclared, f"{slug} does not declare labels for {sorted(undeclared)}"

        page = client.get(reverse("admin:scheduled_jobs_run", args=[run.pk])).content.decode()
        table = _section(page, '<table class="sj-figures" id="run-result">', "</table>")
        result = _text(table)
        values = " | ".join(_text(v) for v in re.findall(r'<span class="figure-value">(.*?)</span>', table, re.S))
        for parent, key in _keys(run.result):
            label = summaries.label_of(job, key, parent=parent)[0]
            if key != label and ("_" in key or re.fullmatch(r"[a-z]+(-[a-z0-9]+)+", key)):
                assert key not in result, f"{slug}: raw key {key!r} on the run page"
        assert not REPR.search(values), f"{slug}: a Python repr on the run page: {REPR.search(values).group(0)!r} in {values}"
        for key in run.result:
            assert summaries.label_of(job, key)[0] in result, (slug, key)

        if run.log:  # each line's time in the district's zone, UTC only on hover
            log = _section(page, '<pre class="sj-log" id="run-log">', "</pre>")
            zone = "UTC" if job.is_global else "EST"  # a global job's page is in UTC
            assert re.search(r"<time title=\"\d{4}-\d\d-\d\d \d\d:\d\dZ\">\d\d:\d\d:\d\d " + zone + "</time>", log), slug
            assert not re.search(r"^\d{4}-\d\d-\d\d", _text(log), re.M), slug
        if run.progress_total:
            assert f"of {run.progress_total:,} {job.progress_unit}" in page or \
                f"of {run.progress_total} {job.progress_unit}" in page, slug

        out = StringIO()
        with time_machine.travel(NOW, tick=False):
            call_command("jobs", "history", slug, *(["--district", str(district.pk)] if not job.is_global else []),
                         stdout=out)
        assert "Mon 2026-11-16" in out.getvalue(), slug
        assert ("UTC (UTC+00:00)" if job.is_global else "EST (UTC−05:00)") in out.getvalue(), slug


def test_the_admins_run_record_shows_the_summary_in_words(ran, system_admin, client):
    _, runs = ran
    client.force_login(system_admin)
    page = client.get(reverse("admin:scheduling_jobrun_change", args=[runs["attendance-interventions"].pk]))
    text = page.content.decode()
    assert page.status_code == 200 and "Students checked: " in text and "Notifications not queued: " in text
    assert "notifications_not_queued" not in text and '"checked":' not in text


def test_jobs_run_prints_the_summary_in_words(ran):
    district, _ = ran
    out = StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("jobs", "run", "attendance-interventions", "--district", str(district.pk), stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("run #") and lines[0].endswith(":")
    assert "  Students checked: " in out.getvalue() and "  At risk: " in out.getvalue()
    assert "notifications_not_queued" not in out.getvalue() and not REPR.search("\n".join(lines[1:]))


def test_values_read_as_words():
    job = registry.get("data-archival")
    zone = "America/New_York"
    assert summaries.value_text({"grades": "2019-12-06", "messages": "2024-12-06"}, zone=zone, job=job) == \
        "grades Fri 2019-12-06, messages Fri 2024-12-06"
    assert summaries.value_text({}, zone=zone) == "none"
    assert summaries.value_text("2026-11", zone=zone) == "November 2026"
    assert summaries.value_text(True, zone=zone) == "yes" and summaries.value_text(None, zone=zone) == "none"
    assert summaries.value_text(34001, zone=zone) == "34,001"
    assert summaries.value_text("2026-12-06T02:01:10.902765-05:00", zone=zone) == "Sun 2026-12-06 02:01 EST (UTC−05:00)"
    assert summaries.value_text("2026-11-01..2026-11-30", zone=zone) == "Sun 2026-11-01 to Mon 2026-11-30"
    assert summaries.value_text([{"a": 1}, {"a": 2}], zone=zone) == "2 entries"
    delivery = {"email": {"total": 2, "sent": 1}, "push": {"total": 0, "sent": 0}}
    assert summaries.value_text(delivery, zone=zone, job=registry.get("emergency-notification-test")) == \
        "email: total 2, sent 1; push: total 0, sent 0"
    # A nested key is labelled for where it is: a channel's "failed" is not the outbox's.
    nested = {"email": {"failed": 1, "suppressed": 2}}
    assert summaries.value_text(nested, zone=zone, job=registry.get("emergency-notification-test"), key="delivery") == \
        "email: failed 1, not sent (a rule said no) 2"
    assert summaries.label_of(job, "no_such_figure") == ("No such figure", "")
