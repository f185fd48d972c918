"""Compliance audit report: 0 1 1 * * (district local time).

Why then: 01:00 local on the 1st: the previous month is closed; the report must exist exactly once per month (on 2026-11-01 01:00 happens twice in New York: it runs once).

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run compliance-audit-report`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='compliance-audit-report',
    title='Compliance audit report',
    default_cron='0 1 1 * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=30),
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(days=2),
    overlap="skip",
    entry=None,
)
