"""Data archival: 0 3 1 * * (district local time).

Why then: 03:00 local on the 1st: after the compliance report (01:00) has captured the month, old records move to the archive.

Rules (scheduling/archival.py, as of the slot's local date): grades and attendance older than
7 years, completed (closed or escalated) interventions older than 3 years (with their
counselor tasks) and chat messages older than 2 years are written to the archive storage
(STORAGES["archive"]: MEDIA_ROOT/archive, or S3 when ARCHIVE_S3_BUCKET is set) as gzip JSON
Lines, 10,000 rows a file, read back and verified (SHA-256, row count, ids), and only then
deleted; a manifest per run lists every file with its rows and SHA-256, the cutoffs and the
run. Sent outbox notifications older than 90 days are deleted, and digest dedupe keys older
than 60 days are forgotten (notifications.services.digest_dedupe_keys_prune; global, not per
district, and idempotent). The access trail is never archived or deleted here.

Idempotency: the cutoffs come from the slot; each batch's object is named by its id range
(a retry rewrites the same object); each batch's delete and the checkpoint (last id per
dataset, the files so far) commit together, so a retry resumes after the last verified
batch, and a re-run finds nothing left to archive.

Student data read and written: grades, attendance records, interventions and counselor
tasks, chat messages about students (read, archived, deleted); notifications (deleted).
"""
from datetime import timedelta

from scheduling.registry import Job


def run(ctx) -> dict:
    from notifications.services import digest_dedupe_keys_prune
    from scheduling.archival import archive_district

    as_of = ctx.scheduled_for.astimezone(ctx.district.zone).date()
    result = archive_district(
        district=ctx.district, as_of=as_of, slot=ctx.scheduled_for, run_id=ctx.run.id, checkpoint=ctx.checkpoint,
        save_checkpoint=ctx.save_checkpoint, logger=ctx.logger, progress=ctx.progress,
    )
    result["digest_keys_deleted"] = digest_dedupe_keys_prune(now=ctx.scheduled_for)
    return result

JOB = Job(
    slug='data-archival',
    title='Data archival',
    default_cron='0 3 1 * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=30),
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(days=1),
    overlap="skip",
    entry=run,
)
