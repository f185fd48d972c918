"""Weekly analytics report: 0 6 * * 0 (district local time).

Why then: Sunday 06:00 local: after performance-trends (03:00) has refreshed the figures, so principals find the report on Monday morning.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run weekly-analytics-report`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='weekly-analytics-report',
    title='Weekly analytics report',
    default_cron='0 6 * * 0',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=10),
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=24),
    overlap="skip",
    entry=None,
)
