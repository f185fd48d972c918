"""Grade posting digest: 0 20 * * * (district local time).

Why then: 20:00 local: after teachers post the day's grades and before the 21:00 end of the family messaging window.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run grade-posting-digest`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='grade-posting-digest',
    title='Grade posting digest',
    default_cron='0 20 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=5),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(minutes=50),
    overlap="skip",
    entry=None,
)
