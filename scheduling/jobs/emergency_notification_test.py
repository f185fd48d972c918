"""Emergency notification test: 0 10 * 1,4,7,10 MON#1 (district local time).

Why then: 10:00 local on the first Monday of each quarter: school hours, staff are expecting it, and only the district's test group receives it.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run emergency-notification-test`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='emergency-notification-test',
    title='Emergency notification test',
    default_cron='0 10 * 1,4,7,10 MON#1',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=2),
    timeout=600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=4),
    overlap="skip",
    entry=None,
)
