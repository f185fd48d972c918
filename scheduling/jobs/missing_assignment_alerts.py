"""Missing assignment alerts: 0 7,19 * * * (district local time).

Why then: 07:00 and 19:00 local: a morning nudge before school and an evening one while there is still time to submit, both inside the 07:00-21:00 family window.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run missing-assignment-alerts`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='missing-assignment-alerts',
    title='Missing assignment alerts',
    default_cron='0 7,19 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=5),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=1),
    overlap="skip",
    entry=None,
)
