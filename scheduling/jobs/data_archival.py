"""Data archival: 0 3 1 * * (district local time).

Why then: 03:00 local on the 1st: after the compliance report (01:00) has captured the month, old records move to the archive.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run data-archival`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='data-archival',
    title='Data archival',
    default_cron='0 3 1 * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=30),
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(days=1),
    overlap="skip",
    entry=None,
)
