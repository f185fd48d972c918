"""Attendance interventions: 30 18 * * * (district local time).

Why then: 18:30 local: the school day's attendance is final (teachers' late corrections are in by the evening) and counselors see new interventions first thing next morning.

The body lands in its own issue; until then this module declares the job's metadata only
(``entry=None``) and ``manage.py jobs run attendance-interventions`` refuses to run it.
"""
from datetime import timedelta

from scheduling.registry import Job

JOB = Job(
    slug='attendance-interventions',
    title='Attendance interventions',
    default_cron='30 18 * * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=5),
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=6),
    overlap="skip",
    entry=None,
)
