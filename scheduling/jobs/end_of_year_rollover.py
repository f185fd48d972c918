"""End-of-year rollover: ad hoc (no cron) (district local time).

Why then: Ad hoc: the rollover runs once a year when the district closes the school year, never on a timer; staff start it with run now.

How it starts: a system admin files a RolloverRequest in the admin (new year's name, dates,
when to run); a second system admin approves it, which creates a one-off django-q2
schedule at that time; the schedule runs this job for the district (or ``jobs run
end-of-year-rollover --district ID`` runs the approved request now). ``manage.py rollover``
is the direct command-line path (with --dry-run for exact counts).

Rules (students/rollover.py), in order: snapshot the closing year; create the new
session; graduate the top grade (12) — graduated, inactive, archived, not re-enrolled;
promote every other active enrollment one grade, retained students keep theirs; a
school's top grade is enrolled in the school it feeds into (School.feeds_into), or, where
it names none, promoted in place and listed for transfer; transfers and inactive students are not rolled; the new session becomes current
(the attendance jobs' counters restart); every active intervention closes with reason
"end of year".

Idempotency: each step records itself as done on the request in the same transaction as
its writes: a retry resumes at the first unfinished step; a finished request is never run
again (the job finds no approved request left).

Student data read and written: students (grade, active, graduation, archive, retention),
academic sessions, interventions.
"""
from datetime import timedelta

from scheduling.registry import Job
from students.rollover import COUNT_LABELS


def run(ctx) -> dict:
    from students import rollover

    req = rollover.next_request(ctx.district)
    if req is None:
        ctx.logger.info("no approved rollover request for %s: nothing to do", ctx.district)
        return {"requests": 0}
    try:
        return rollover.execute(request=req, now=ctx.scheduled_for, job_run_id=ctx.run.id, logger=ctx.logger)
    except Exception as exc:
        rollover.mark_failed(req, f"{type(exc).__name__}: {exc}")
        raise

# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    **COUNT_LABELS,
    "request": "Rollover request",
    "requests": ("Approved requests", "none approved and due: nothing to roll over"),
    "steps_run": "Steps run",
    "steps_skipped": ("Steps already done", "done by an earlier attempt: not repeated"),
    "no_feeder_schools": ("Schools with no usable feeder", "their top grade was promoted in place, to transfer by hand"),
    "new_session_id": "New school year's session",
}


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
    calendar="any day",
    figures=FIGURES,
    progress_unit="steps",
    entry=run,
)
