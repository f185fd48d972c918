"""System health summary: 0 8 1 * * (UTC, global).

Why then: 08:00 UTC on the 1st: a monthly summary for IT at the start of the working day in Europe and before the US wakes.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run system-health-summary`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='system-health-summary',
    title='System health summary',
    default_cron='0 8 1 * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='global',
    critical=False,
    expected_duration=timedelta(minutes=2),
    timeout=600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(days=1),
    overlap="skip",
    entry=None,
)
