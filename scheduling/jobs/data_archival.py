"""Data archival: 0 3 1 * * (district local time).

Why then: 03:00 local on the 1st: after the compliance report (01:00) has captured the month, old records move to the archive.

Rules (below, as of the slot's local date): grades and attendance older than
7 years, completed (closed or escalated) interventions older than 3 years (with their
counselor tasks) and chat messages older than 2 years are written to the archive storage
(STORAGES["archive"]: MEDIA_ROOT/archive, or S3 when ARCHIVE_S3_BUCKET is set) as gzip JSON
Lines sealed with AES-256-GCM (ARCHIVE_ENCRYPTION_KEY; skillcore/archives.py), 10,000 rows a
file, read back, decrypted and verified (SHA-256, the exact bytes, row count, ids), and only
then deleted; a manifest per run lists every file with its rows, SHA-256 and key id, the
cutoffs and the run. Sent outbox notifications older than 90 days are deleted, and digest dedupe keys older
than 60 days are forgotten (notifications.services.digest_dedupe_keys_prune; global, not per
district, and idempotent). The access trail is never archived or deleted here.

Idempotency: the cutoffs come from the slot; each batch's object is named by its id range
(a retry rewrites the same object); each batch's delete and the checkpoint (last id per
dataset, the files so far) commit together, so a retry resumes after the last verified
batch, and a re-run finds nothing left to archive.

Student data read and written: grades, attendance records, interventions and counselor
tasks, chat messages about students (read, archived, deleted); notifications (deleted).

Data archival (the data-archival job): old rows go to object storage as gzip JSON Lines
with a manifest, and are deleted only once their archive object reads back intact.

What is archived, per district, as of the slot's local date:
- grades posted more than 7 years ago, attendance records dated more than 7 years ago;
- completed interventions (closed or escalated) closed more than 3 years ago, each with its
  counselor tasks nested (the tasks cascade with the intervention);
- chat messages (notifications.Message) sent more than 2 years ago.
Deleted without an archive: sent outbox notifications (notifications.Notification, status
sent) whose ``sent_at`` is more than 90 days old — a delivered notice is delivery history,
not a record (``notifications_sent_total`` on /metrics is kept apart, in
NotificationCounter, so the purge does not lower it). Chat messages are *not* deleted at 90 days even when read: they are the
conversation, kept two years. The FERPA access trail (skillcore.AccessLog) is never touched
here: it is append-only, kept 7 years, and purged only by
``skillcore.services.access_log_purge``.

The algorithm, per dataset (numbered because the order is the guarantee):
1. Read the next batch (``BATCH_SIZE`` rows, keyset: id > the checkpoint's last id).
2. Serialise it to JSON Lines and gzip it deterministically (mtime 0), so the same rows give
   the same bytes on every attempt (step 5 compares them), then seal it with the current key
   (a random nonce per object; the object's name is bound in, so a moved object won't open).
3. Write it to the archive storage under a name derived from the batch's id range
   (``<dataset>/<dataset>-<first id>-<last id>.jsonl.gz``): a retry rewrites the same
   object instead of adding a second copy.
4. Read the object back; compare its SHA-256, open it with the configured keys (as a restore
   will) and compare the plaintext, row count and ids with what was written. Any difference
   (or any storage error) raises: nothing is deleted.
5. In ONE transaction: lock the batch's rows and read them again (a row edited or no
   longer due since step 1 stops the run: nothing is deleted, the retry archives the row as
   it is now), delete exactly those ids and save the checkpoint (last id, the file's
   manifest entry). A crash before the commit leaves the rows and the old checkpoint (the
   retry rewrites the same object); after it, the rows are gone and the checkpoint says so.
6. Rewrite this run's manifest (every verified file so far: name, rows, sha256, key id, id
   range, the cutoff and the run), read it back and verify it. The manifest is not sealed: it
   holds no student data, and it tells a restore which key each file needs.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Q

from interventions.models import CounselorTask, Intervention
from notifications.models import Message, Notification, Status
from scheduling.registry import Job
from skillcore import archives
from students.inactive_users import years_before
from students.models import AttendanceRecord, District, Grade

BATCH_SIZE = 10_000
STORAGE_ALIAS = "archive"
NOTIFICATION_RETENTION_DAYS = 90


class ArchiveVerificationError(RuntimeError):
    """The object read back differs from what was written: nothing is deleted."""


@dataclass(frozen=True)
class Dataset:
    name: str
    model: type[models.Model]
    years: int
    fields: tuple[str, ...]
    # (district, cutoff date, cutoff instant) -> the rows due.
    due: Callable[[District, dt.date, dt.datetime], Q]


def _student_in(district: District) -> Q:
    return Q(student__school__district_id=district.id)


DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "grades", Grade, 7,
        ("id", "student_id", "assignment_id", "assignment__title", "assignment__max_score", "assignment__section_id",
         "score", "posted_at"),
        lambda d, day, instant: _student_in(d) & Q(posted_at__lt=instant),
    ),
    Dataset(
        "attendance", AttendanceRecord, 7,
        ("id", "student_id", "date", "status", "fraction_present", "recorded_at"),
        lambda d, day, instant: _student_in(d) & Q(date__lt=day),
    ),
    Dataset(
        "interventions", Intervention, 3,
        ("id", "student_id", "type", "tier", "status", "reason", "recommended_strategies", "opened_at", "closed_at",
         "closed_reason", "owner_id", "escalated_from_id", "opened_by_run_id"),
        lambda d, day, instant: _student_in(d) & Q(status__in=[Intervention.Status.CLOSED, Intervention.Status.ESCALATED],
                                                   closed_at__lt=instant),
    ),
    Dataset(
        "messages", Message, 2,
        ("id", "sender_id", "recipient_id", "student_id", "body", "sent_at", "read_at"),
        # A message about a student belongs to the student's district; one about nobody, to
        # the district of the staff member who sent or received it.
        lambda d, day, instant: (
            (_student_in(d) | Q(student__isnull=True, sender__staff_profile__district_id=d.id)
             | Q(student__isnull=True, recipient__staff_profile__district_id=d.id))
            & Q(sent_at__lt=instant)
        ),
    ),
)


def archive_storage() -> Storage:
    return storages[STORAGE_ALIAS]


def cutoff(as_of: dt.date, years: int, zone) -> tuple[dt.date, dt.datetime]:
    """Rows strictly before local midnight of the same date ``years`` earlier are due."""
    day = years_before(as_of, years)
    return day, dt.datetime.combine(day, dt.time.min, tzinfo=zone)


def encode_batch(rows: list[dict]) -> bytes:
    """JSON Lines, gzip with mtime 0: the same rows always give the same bytes."""
    text = "".join(json.dumps(r, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":")) + "\n" for r in rows)
    return gzip.compress(text.encode(), mtime=0)


def _write(storage: Storage, name: str, data: bytes) -> None:
    # FileSystemStorage.save picks another name when the file exists unless allow_overwrite
    # is set; deleting first makes any backend overwrite, which a retry relies on.
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, ContentFile(data))
    if saved != name:
        raise ArchiveVerificationError(f"storage saved {name!r} as {saved!r}")


def _read_back(storage: Storage, name: str) -> bytes:
    with storage.open(name, "rb") as fh:
        return fh.read()


def write_verified(storage: Storage, name: str, data: bytes, *, ids: list[int] | None = None,
                   plaintext: bytes | None = None, ring: archives.KeyRing | None = None) -> str:
    """Steps 3-4: write, read back, compare SHA-256; for a batch (``plaintext`` and ``ids``),
    open what was read back with ``ring`` and compare the plaintext and the ids in order.
    Returns the SHA-256. Raises on any difference or storage error."""
    digest = hashlib.sha256(data).hexdigest()
    _write(storage, name, data)
    back = _read_back(storage, name)
    if hashlib.sha256(back).hexdigest() != digest:
        raise ArchiveVerificationError(f"{name}: checksum of the object read back differs")
    if plaintext is not None:
        try:
            opened, _ = archives.open_sealed(back, name=name, ring=ring)
        except archives.ArchiveKeyError as error:
            raise ArchiveVerificationError(f"{name}: {error}") from error
        if opened != plaintext:
            raise ArchiveVerificationError(f"{name}: the object read back decrypts to other bytes than were written")
        read_ids = [row["id"] for row in archives.decode_rows(opened)]
        if read_ids != ids:
            raise ArchiveVerificationError(f"{name}: {len(read_ids)} rows read back, {len(ids or [])} written")
    return digest


def _nest_tasks(rows: list[dict]) -> None:
    """Interventions carry their counselor tasks (deleted with them by the cascade)."""
    tasks = defaultdict(list)
    for t in CounselorTask.objects.filter(intervention_id__in=[r["id"] for r in rows]).order_by("id").values(
        "id", "intervention_id", "counselor_id", "student_id", "kind", "status", "note", "due_date", "created_at"
    ):
        tasks[t["intervention_id"]].append(t)
    for r in rows:
        r["counselor_tasks"] = tasks.get(r["id"], [])


def archive_prefix(district: District, as_of: dt.date) -> str:
    return f"district-{district.id}/{as_of.isoformat()}"


def manifest_name(district: District, as_of: dt.date, run_id: int) -> str:
    return f"{archive_prefix(district, as_of)}/manifest-run-{run_id}.json"


def _manifest(*, district, as_of, run_id, slot, cutoffs, files, complete: bool) -> bytes:
    body = {
        "district_id": district.id, "as_of": as_of.isoformat(), "job_run_id": run_id, "slot": slot.isoformat(),
        "cutoffs": cutoffs, "format": "gzip JSON Lines, one row per line, sorted by id", "complete": complete,
        # Each file names its key (files[].key_id); a file without one predates encryption.
        "encryption": {"algorithm": archives.ALGORITHM, "format": archives.FORMAT,
                       "key_ids": sorted({f["key_id"] for f in files if f.get("key_id")})},
        "files": files, "rows": {ds.name: sum(f["rows"] for f in files if f["dataset"] == ds.name) for ds in DATASETS},
    }
    return json.dumps(body, indent=2, sort_keys=True).encode()


def archive_district(*, district: District, as_of: dt.date, slot: dt.datetime, run_id: int, checkpoint: dict,
                     save_checkpoint: Callable[[dict], None], logger=None,
                     progress: Callable[[int, int | None], None] | None = None,
                     batch_size: int | None = None) -> dict:
    """Archive and delete what is due in ``district`` as of ``as_of``; resume from
    ``checkpoint`` (a previous attempt's). Returns the summary counts."""
    storage = archive_storage()
    # Read once per run: every batch of this run is sealed with the same current key.
    ring = archives.keyring()
    batch_size = batch_size or BATCH_SIZE
    zone = district.zone
    cp = {"after": {}, "done": [], "files": [], **(checkpoint or {})}
    cutoffs = {ds.name: cutoff(as_of, ds.years, zone)[0].isoformat() for ds in DATASETS}
    prefix = archive_prefix(district, as_of)
    mname = manifest_name(district, as_of, run_id)
    archived = 0
    for ds in DATASETS:
        if ds.name in cp["done"]:
            continue
        day, instant = cutoff(as_of, ds.years, zone)
        due = ds.model.objects.filter(ds.due(district, day, instant))
        while True:
            after = cp["after"].get(ds.name, 0)
            # 1. The next batch by id (keyset: the index on the primary key).
            rows = list(due.filter(id__gt=after).order_by("id").values(*ds.fields)[:batch_size])
            if not rows:
                break
            if ds.model is Intervention:
                _nest_tasks(rows)
            ids = [r["id"] for r in rows]
            name = f"{prefix}/{ds.name}/{ds.name}-{ids[0]:012d}-{ids[-1]:012d}.jsonl.gz"
            # 2-4. Encode, seal, write, read back, open and verify. Raises before anything is deleted.
            data = encode_batch(rows)
            sealed = archives.seal(data, name=name, key=ring.current)
            digest = write_verified(storage, name, sealed, ids=ids, plaintext=data, ring=ring)
            entry = {"name": name, "dataset": ds.name, "rows": len(rows), "sha256": digest,
                     "key_id": ring.current.id, "model": ds.model._meta.label, "first_id": ids[0], "last_id": ids[-1]}
            # 5. Delete exactly the verified ids and move the checkpoint, together. The rows
            # are locked and read again first: one edited (or no longer due) since step 1
            # would be deleted without its archived state, so the batch stops here and the
            # retry archives what is there now.
            with transaction.atomic():
                now_rows = list(due.filter(id__in=ids).select_for_update(of=("self",)).order_by("id").values(*ds.fields))
                if ds.model is Intervention:
                    _nest_tasks(now_rows)
                if encode_batch(now_rows) != data:
                    raise ArchiveVerificationError(f"{name}: rows changed while they were archived; the retry archives them again")
                ds.model.objects.filter(id__in=ids).delete()
                cp["after"][ds.name] = ids[-1]
                cp["files"] = [f for f in cp["files"] if f["name"] != name] + [entry]
                save_checkpoint(cp)
            archived += len(rows)
            if logger:
                logger.info("archived %s %s rows to %s (sha256 %s)", len(rows), ds.name, name, digest[:12])
            if progress:
                progress(archived, None)
            # 6. The manifest lists every verified file so far (a crash leaves a usable one).
            write_verified(storage, mname, _manifest(district=district, as_of=as_of, run_id=run_id, slot=slot,
                                                     cutoffs=cutoffs, files=cp["files"], complete=False))
            if len(rows) < batch_size:
                break
        cp["done"].append(ds.name)
        save_checkpoint(cp)
    manifest_sha = write_verified(storage, mname, _manifest(district=district, as_of=as_of, run_id=run_id, slot=slot,
                                                            cutoffs=cutoffs, files=cp["files"], complete=True))
    notifications_deleted = notifications_purge(district=district, now=slot, batch_size=batch_size)
    rows = {ds.name: sum(f["rows"] for f in cp["files"] if f["dataset"] == ds.name) for ds in DATASETS}
    return {
        "as_of": as_of.isoformat(), "cutoffs": cutoffs, "archived": rows, "rows_archived": sum(rows.values()),
        "files": len(cp["files"]), "manifest": mname, "manifest_sha256": manifest_sha,
        "key_id": ring.current.id,
        "notifications_deleted": notifications_deleted, "storage": type(storage).__name__,
    }


def notifications_purge(*, district: District, now: dt.datetime, batch_size: int = BATCH_SIZE) -> int:
    """Delete the district's sent outbox notifications older than 90 days, a batch per
    transaction (no archive: delivery history, not a record). Failed rows stay for support."""
    old = Notification.objects.filter(
        district_id=district.id, status=Status.SENT, sent_at__lt=now - dt.timedelta(days=NOTIFICATION_RETENTION_DAYS)
    )
    total = 0
    while True:
        ids = list(old.order_by("id").values_list("id", flat=True)[:batch_size])
        if not ids:
            return total
        with transaction.atomic():
            deleted, _ = Notification.objects.filter(id__in=ids).delete()
        total += len(ids)
        if len(ids) < batch_size:
            return total


def run(ctx) -> dict:
    from notifications.services import digest_dedupe_keys_prune

    as_of = ctx.scheduled_for.astimezone(ctx.district.zone).date()
    result = archive_district(
        district=ctx.district, as_of=as_of, slot=ctx.scheduled_for, run_id=ctx.run.id, checkpoint=ctx.checkpoint,
        save_checkpoint=ctx.save_checkpoint, logger=ctx.logger, progress=ctx.progress,
    )
    result["digest_keys_deleted"] = digest_dedupe_keys_prune(now=ctx.scheduled_for)
    return result

# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "as_of": "Archived as of",
    "cutoffs": ("Archived when older than", "each kind of record's retention cut-off"),
    "archived": "Rows archived, by kind",
    "rows_archived": "Rows archived",
    "files": "Archive files written",
    "manifest": "Manifest file",
    "manifest_sha256": ("Manifest fingerprint", "SHA-256 of the manifest, to check the archive later"),
    "key_id": "Encryption key",
    "notifications_deleted": "Old notifications deleted",
    "digest_keys_deleted": "Old digest keys deleted",
    "storage": "Stored in",
    "grades": "grades", "attendance": "attendance", "interventions": "interventions", "messages": "messages",
}


JOB = Job(
    slug='data-archival',
    title='Data archival',
    default_cron='0 3 1 * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=30),
    # Back-office: 03:00-03:59, still after compliance-audit-report's window (01:00-01:59).
    spread_minutes=60,
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(days=1),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="rows",
    entry=run,
)
