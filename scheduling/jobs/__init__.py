"""One module per job, each declaring ``JOB = Job(...)`` (see scheduling/registry.py).

The entry point contract, for the issues that write the job bodies::

    def run(ctx: scheduling.runner.JobContext) -> dict:
        # ctx.scheduled_for  aware UTC datetime of the slot (manual runs: --as-of or now)
        # ctx.district       the District, or None for a global job
        # ctx.run            the JobRun row
        # ctx.logger         a logger whose lines are kept on the run (last 500)
        # ctx.progress(done, total)          throttled progress writes
        # ctx.checkpoint / ctx.save_checkpoint(dict)   resume point for a retry
        # ctx.warn(reason)   did nothing it is for: ends "succeeded with warnings", alerted
        return {"students_checked": 1200, "interventions_created": 14}   # counts

Each job declares what its summary figures mean, ``Job(figures={"students_checked":
"Students checked", "at_risk": ("At risk", "a one-line meaning")}, progress_unit="students")``:
the run page, ``jobs run`` and the alerts show the labels (scheduling/summaries.py), never
the keys; ``tests/scheduling/test_run_pages_in_words.py`` fails on a figure not declared.

Until a job's body lands, its module declares only metadata (``entry=None``): sync, list
and next work, and ``jobs run`` refuses it with exit status 2.

missing-assignment-alerts has two daily slots, 07:00 and 19:00: they are one cron,
``0 7,19 * * *``, so one schedule row per district carries both and the body tells the
morning run from the evening one by the slot's local hour.
"""
