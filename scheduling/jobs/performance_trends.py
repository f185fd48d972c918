"""Performance trends: 0 3 * * 0 (district local time).

Why then: Sunday 03:00 local: a week of grades is complete and the heavy aggregation runs when nobody uses the system.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run performance-trends`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='performance-trends',
    title='Performance trends',
    default_cron='0 3 * * 0',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=20),
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=12),
    overlap="skip",
    entry=None,
)
