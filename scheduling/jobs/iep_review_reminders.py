"""IEP review reminders: 0 7 * * * (district local time).

Why then: 07:00 local: case managers read the reminders at the start of the school day, with time to schedule the meeting and notify guardians (34 CFR 300.322).

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run iep-review-reminders`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='iep-review-reminders',
    title='IEP review reminders',
    default_cron='0 7 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=2),
    timeout=900,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=8),
    overlap="skip",
    entry=None,
)
