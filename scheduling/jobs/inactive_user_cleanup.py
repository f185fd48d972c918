"""Inactive user cleanup: 0 2 * * 0 (district local time).

Why then: Sunday 02:00 local: deactivating accounts when nobody is signed in avoids cutting off someone mid-session.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run inactive-user-cleanup`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='inactive-user-cleanup',
    title='Inactive user cleanup',
    default_cron='0 2 * * 0',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=5),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=24),
    overlap="skip",
    entry=None,
)
