"""Stream cleanup: 0 2 * * * (UTC, global).

Why then: 02:00 UTC is the quietest hour for all districts at once: no staff are connected, and it runs before the 03:00 analytics jobs read the tables it trims.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run stream-cleanup`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='stream-cleanup',
    title='Stream cleanup',
    default_cron='0 2 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='global',
    critical=False,
    expected_duration=timedelta(minutes=10),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=4),
    overlap="skip",
    entry=None,
)
