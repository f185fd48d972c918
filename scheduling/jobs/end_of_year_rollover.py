"""End-of-year rollover: ad hoc (no cron) (district local time).

Why then: Ad hoc: the rollover runs once a year when the district closes the school year, never on a timer; staff start it with run now.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run end-of-year-rollover`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='end-of-year-rollover',
    title='End-of-year rollover',
    default_cron=None,
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=30),
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(0),
    overlap="skip",
    entry=None,
)
