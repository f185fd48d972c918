"""Inactive user cleanup: 0 2 * * 0 (district local time).

Why then: Sunday 02:00 local: deactivating accounts when nobody is signed in avoids cutting off someone mid-session.

The rules are in students/inactive_users.py (as of the slot's local date): teachers inactive 2+
years are deactivated; students who graduated or transferred 2+ years ago are archived
(and their login deactivated); guardians whose children all left 2+ years ago are
deactivated; other staff inactive 1+ year are flagged for review, not deactivated. A
teacher who still holds a current duty (students.inactive_users.current_duties) is flagged
for review with each duty named instead of deactivated, and deactivated by the first run
after the duty is reassigned. Superusers and system admins are never touched; nothing is deleted; every change writes a
scheduling.UserLifecycleChange row (before / after, rule, run).

Dry run: ``manage.py inactive_users --district ID [--as-of DATE] --dry-run`` lists what this
job would change and writes nothing (``jobs run`` takes no job options).

Idempotency: each rule selects only rows not yet changed (active users, unarchived
students, unflagged staff), one run at a time per district: a re-run of the same slot changes nothing
and audits nothing.

Student data read and written: students (graduation, transfer, exit dates; archived_at,
is_active), guardian links. Also user accounts and staff profiles.
"""
from __future__ import annotations

from datetime import timedelta

from scheduling.registry import Job


def run(ctx) -> dict:
    from students.inactive_users import inactive_users_apply, summarize

    local_date = ctx.scheduled_for.astimezone(ctx.district.zone).date()
    changes = inactive_users_apply(
        district=ctx.district, as_of=local_date, at=ctx.scheduled_for, job_run_id=ctx.run.id,
        actor_label=f"job inactive-user-cleanup run {ctx.run.id}",
    )
    for c in changes[:200]:
        ctx.logger.info("%s %s (%s)", c.action, c.label, c.rule)
    ctx.progress(len(changes), len(changes))
    return {"as_of": local_date.isoformat(), "changes": len(changes), **summarize(changes)}


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "as_of": "Inactive as of",
    "changes": "Accounts changed or flagged",
    "teachers_deactivated": "Teachers deactivated",
    "students_archived": "Students archived",
    "student_accounts_deactivated": "Student logins deactivated",
    "guardians_deactivated": "Guardians deactivated",
    "staff_flagged": ("Staff flagged for review", "inactive, or holding a current duty: never deactivated by the job"),
}


JOB = Job(
    slug='inactive-user-cleanup',
    title='Inactive user cleanup',
    default_cron='0 2 * * 0',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=5),
    # Back-office: any minute of 02:00-02:59 on Sunday night is as quiet; nobody waits for it.
    spread_minutes=60,
    timeout=1800,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=24),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="accounts",
    entry=run,
)
