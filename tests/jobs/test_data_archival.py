"""data-archival: every age rule at its boundary, archive format (gzip JSON Lines, manifest,
SHA-256), delete only after a verified read-back, idempotency, resume after a crash with no
row lost or duplicated, storage down (file system and a real S3 API: moto in server mode
on localhost), flat query counts, the CLI."""
from __future__ import annotations

import datetime as dt
import errno
import gzip
import hashlib
import io
import json
import socket

import pytest
import time_machine
from django.core.files.storage import FileSystemStorage, storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from interventions.models import CounselorTask, Intervention
from notifications.models import Channel, Message, Notification, Status
from scheduling import runner
from scheduling.jobs import data_archival as archival
from scheduling.models import JobRun
from skillcore import archives
from skillcore.models import AccessLog
from students.models import AttendanceRecord, Grade
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

SLUG = "data-archival"


def at(district, y, m, d, h=0, mi=0):
    return dt.datetime(y, m, d, h, mi, tzinfo=district.zone)


def slot_of(district):
    return local_slot(district, 2026, 12, 1, 3)


def run_archival(district, *, retry_of=None, trigger=JobRun.Trigger.SCHEDULE):
    slot = slot_of(district)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        if retry_of is not None:
            # The retry the runner queued after the failure (services.after_failure): it
            # carries the failed attempt's checkpoint.
            retry = JobRun.objects.get(retry_of=retry_of, status=JobRun.Status.QUEUED)
            return runner.execute(retry.pk)
        return run_slot(SLUG, district, slot, trigger=trigger)


@pytest.fixture
def fs_archive(settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "archive": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "archive"), "allow_overwrite": True}}}
    return tmp_path / "archive"


class FullDiskStorage(FileSystemStorage):
    """A file system that fills up after ``allowed`` writes (ENOSPC), as a full disk does."""

    allowed = 0

    def _save(self, name, content):
        if FullDiskStorage.allowed <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        FullDiskStorage.allowed -= 1
        return super()._save(name, content)


@pytest.fixture
def world(district, school):
    """Rows on both sides of every cutoff (as of 2026-12-01 local)."""
    d = district
    st = f.StudentFactory(school=school, enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
    teacher = f.StaffFactory(roles=["teacher"], schools=[school])
    guardian = f.GuardianLinkFactory(student=st).guardian
    sec = f.SectionFactory(school=school)
    w = {"student": st}
    # Grades: 7 years -> before local midnight 2019-12-01.
    w["grade_old"] = f.GradeFactory(student=st, assignment=f.AssignmentFactory(section=sec), posted_at=at(d, 2019, 11, 30, 23, 59))
    w["grade_kept"] = f.GradeFactory(student=st, assignment=f.AssignmentFactory(section=sec), posted_at=at(d, 2019, 12, 1, 0, 0))
    w["att_old"] = f.AttendanceRecordFactory(student=st, date=dt.date(2019, 11, 30), status="absent-excused")
    w["att_kept"] = f.AttendanceRecordFactory(student=st, date=dt.date(2019, 12, 1))
    # Interventions: completed (closed or escalated) before 2023-12-01; active ones never.
    w["int_closed"] = f.InterventionFactory(student=st, status="closed", opened_at=at(d, 2022, 1, 1),
                                            closed_at=at(d, 2023, 11, 30, 12), closed_reason="improved")
    w["int_escalated"] = f.InterventionFactory(student=st, type="academic", status="escalated", opened_at=at(d, 2021, 1, 1),
                                               closed_at=at(d, 2021, 6, 1))
    w["int_recent"] = f.InterventionFactory(student=st, type="behavior", status="closed", opened_at=at(d, 2023, 1, 1),
                                            closed_at=at(d, 2023, 12, 2))
    w["int_active"] = f.InterventionFactory(student=st, type="attendance", status="active", opened_at=at(d, 2015, 1, 1))
    w["task"] = f.CounselorTaskFactory(student=st, intervention=w["int_closed"], counselor=teacher, created_at=at(d, 2022, 1, 2))
    # Messages: 2 years -> before 2024-12-01.
    w["msg_old"] = Message.objects.create(sender=teacher, recipient=guardian, student=st, body="Old note",
                                          sent_at=at(d, 2024, 11, 30), read_at=at(d, 2024, 11, 30, 9))
    w["msg_kept"] = Message.objects.create(sender=teacher, recipient=guardian, student=st, body="Recent note",
                                           sent_at=at(d, 2024, 12, 2))
    w["msg_staff_old"] = Message.objects.create(sender=teacher, recipient=teacher, body="About nobody", sent_at=at(d, 2023, 1, 1))
    # Outbox: sent more than 90 days before the slot -> deleted; failed ones stay.
    slot = slot_of(d)

    def note(key, status, sent):
        return Notification.objects.create(
            recipient=guardian, channel=Channel.EMAIL, category="grade-digest", template="t", dedupe_key=key,
            status=status, send_after=sent, sent_at=sent if status == Status.SENT else None, district=d)

    w["n_old"] = note("old", Status.SENT, slot - dt.timedelta(days=90, seconds=1))
    w["n_kept"] = note("kept", Status.SENT, slot - dt.timedelta(days=89))
    w["n_failed"] = note("failed", Status.FAILED, slot - dt.timedelta(days=400))
    # Another district's old rows are not this run's.
    other = f.StudentFactory(school=f.SchoolFactory(), enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
    w["other_grade"] = f.GradeFactory(student=other, assignment=f.AssignmentFactory(section=f.SectionFactory(school=other.school)),
                                      posted_at=at(d, 2010, 1, 1))
    # The access trail: 8 years old, never touched by this job.
    w["access"] = f.AccessLogFactory(at=at(d, 2018, 1, 1))
    return w


def read_jsonl(root, name):
    """A file's rows, opened with the suite's key (settings_test's ARCHIVE_ENCRYPTION_KEY)."""
    plaintext, _ = archives.open_sealed((root / name).read_bytes(), name=name, ring=archives.keyring())
    return [json.loads(line) for line in gzip.decompress(plaintext).decode().splitlines()]


def test_archives_what_is_due_verified_and_deletes_only_that(world, district, fs_archive):
    access_before = AccessLog.objects.count()
    run = run_archival(district)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    r = run.result
    assert r["archived"] == {"grades": 1, "attendance": 1, "interventions": 2, "messages": 2}
    assert r["notifications_deleted"] == 1
    assert r["cutoffs"] == {"grades": "2019-12-01", "attendance": "2019-12-01", "interventions": "2023-12-01", "messages": "2024-12-01"}
    # Deleted exactly what is due.
    assert set(Grade.objects.values_list("id", flat=True)) == {world["grade_kept"].id, world["other_grade"].id}
    assert list(AttendanceRecord.objects.values_list("id", flat=True)) == [world["att_kept"].id]
    assert set(Intervention.objects.values_list("id", flat=True)) == {world["int_recent"].id, world["int_active"].id}
    assert not CounselorTask.objects.exists()  # cascaded with its intervention, archived nested
    assert list(Message.objects.values_list("id", flat=True)) == [world["msg_kept"].id]
    assert set(Notification.objects.values_list("dedupe_key", flat=True)) == {"kept", "failed"}
    # The access trail only grew (the run's own rows), nothing was deleted from it.
    assert AccessLog.objects.count() >= access_before
    assert AccessLog.objects.filter(pk=world["access"].pk).exists()
    # The manifest lists every file with its rows and SHA-256; each file reads back to it.
    manifest = json.loads((fs_archive / r["manifest"]).read_bytes())
    assert manifest["complete"] is True and manifest["job_run_id"] == run.id
    assert manifest["cutoffs"] == r["cutoffs"]
    assert {fl["dataset"]: fl["rows"] for fl in manifest["files"]} == r["archived"]
    for fl in manifest["files"]:
        data = (fs_archive / fl["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == fl["sha256"]
        assert len(read_jsonl(fs_archive, fl["name"])) == fl["rows"]
    ints = next(fl for fl in manifest["files"] if fl["dataset"] == "interventions")
    rows = read_jsonl(fs_archive, ints["name"])
    closed = next(x for x in rows if x["id"] == world["int_closed"].id)
    assert closed["closed_reason"] == "improved" and [t["id"] for t in closed["counselor_tasks"]] == [world["task"].id]
    grades = read_jsonl(fs_archive, next(fl["name"] for fl in manifest["files"] if fl["dataset"] == "grades"))
    assert grades[0]["id"] == world["grade_old"].id and grades[0]["score"] == "85.00"
    assert ints["name"] == (f"district-{district.id}/2026-12-01/interventions/"
                            f"interventions-{ints['first_id']:012d}-{ints['last_id']:012d}.jsonl.gz")


def test_deleting_sent_notifications_leaves_the_notification_counters(world, district, fs_archive):
    """notifications_sent_total is kept at write time (NotificationCounter): the purge of
    sent rows past 90 days must not lower it (Prometheus would read a counter reset)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from notifications import counters
    from scheduling.monitoring import metrics
    from tests.observability.test_metrics import samples

    for n in (world["n_old"], world["n_kept"], world["n_failed"]):  # as the drainer counted them
        counters.notification_settled(channel=n.channel, status=n.status)

    def notification_samples():
        registry = CollectorRegistry()
        registry.register(metrics.JobMetricsCollector())
        return {k: v for k, v in samples(generate_latest(registry).decode()).items() if k[0].startswith("notifications_")}

    before = notification_samples()
    assert before[("notifications_sent_total", (("channel", "email"),))] == 2
    assert run_archival(district).result["notifications_deleted"] == 1
    assert set(Notification.objects.values_list("dedupe_key", flat=True)) == {"kept", "failed"}
    assert notification_samples() == before


def test_rerun_of_the_same_slot_archives_and_deletes_nothing(world, district, fs_archive):
    first = run_archival(district)
    files = sorted(p.relative_to(fs_archive) for p in fs_archive.rglob("*.jsonl.gz"))
    counts = (Grade.objects.count(), AttendanceRecord.objects.count(), Intervention.objects.count(), Message.objects.count(),
              Notification.objects.count())
    again = run_archival(district, trigger=JobRun.Trigger.MANUAL)
    assert again.status == JobRun.Status.SUCCEEDED
    assert again.result["rows_archived"] == 0 and again.result["notifications_deleted"] == 0
    assert sorted(p.relative_to(fs_archive) for p in fs_archive.rglob("*.jsonl.gz")) == files
    assert (Grade.objects.count(), AttendanceRecord.objects.count(), Intervention.objects.count(), Message.objects.count(),
            Notification.objects.count()) == counts
    assert first.result["rows_archived"] == 6


def _old_attendance(student, n):
    start = dt.date(2015, 1, 1)
    return [AttendanceRecord(student=student, date=start + dt.timedelta(days=i), status="present") for i in range(n)]


def test_disk_full_mid_way_loses_no_row_and_the_retry_completes_without_duplicates(settings, tmp_path, district, school, monkeypatch):
    st = f.StudentFactory(school=school, enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
    AttendanceRecord.objects.bulk_create(_old_attendance(st, 7))
    all_ids = set(AttendanceRecord.objects.values_list("id", flat=True))
    monkeypatch.setattr(archival, "BATCH_SIZE", 3)
    settings.STORAGES = {**settings.STORAGES, "archive": {
        "BACKEND": "tests.jobs.test_data_archival.FullDiskStorage",
        "OPTIONS": {"location": str(tmp_path / "a"), "allow_overwrite": True}}}
    # Batch 1 and its manifest fit, then the disk is full while writing batch 2.
    FullDiskStorage.allowed = 2
    failed = run_archival(district)
    assert failed.status == JobRun.Status.FAILED and "No space left" in failed.error
    # Batch 1 (verified) is gone, everything else stays; the checkpoint says where to resume.
    assert AttendanceRecord.objects.count() == 4
    assert failed.checkpoint["after"]["attendance"] == sorted(all_ids)[2]
    FullDiskStorage.allowed = 100
    retry = run_archival(district, retry_of=failed)
    assert retry.status == JobRun.Status.SUCCEEDED, retry.error
    assert not AttendanceRecord.objects.exists()
    manifest = json.loads((tmp_path / "a" / retry.result["manifest"]).read_bytes())
    archived = [row["id"] for fl in manifest["files"] for row in read_jsonl(tmp_path / "a", fl["name"])]
    assert sorted(archived) == sorted(all_ids)  # every row once: none lost, none twice
    assert [fl["rows"] for fl in manifest["files"]] == [3, 3, 1]


def test_a_read_back_that_differs_deletes_nothing(district, school, fs_archive, monkeypatch):
    st = f.StudentFactory(school=school, enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
    AttendanceRecord.objects.bulk_create(_old_attendance(st, 3))
    monkeypatch.setattr(archival, "_read_back", lambda storage, name: b"corrupted")
    run = run_archival(district)
    assert run.status == JobRun.Status.FAILED and "ArchiveVerificationError" in run.error
    assert AttendanceRecord.objects.count() == 3


def test_a_row_edited_while_its_batch_is_archived_is_not_lost(district, school, fs_archive, monkeypatch):
    st = f.StudentFactory(school=school, enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
    AttendanceRecord.objects.bulk_create(_old_attendance(st, 3))
    edited = AttendanceRecord.objects.order_by("id").first()
    real = archival.write_verified

    def write_then_someone_edits(storage, name, data, *, ids=None, **kwargs):
        digest = real(storage, name, data, ids=ids, **kwargs)
        if ids is not None:  # a staff member corrects the record between read and delete
            AttendanceRecord.objects.filter(pk=edited.pk).update(status="absent-excused")
        return digest

    monkeypatch.setattr(archival, "write_verified", write_then_someone_edits)
    failed = run_archival(district)
    assert failed.status == JobRun.Status.FAILED and "rows changed" in failed.error
    assert AttendanceRecord.objects.count() == 3  # nothing deleted
    monkeypatch.setattr(archival, "write_verified", real)
    retry = run_archival(district, retry_of=failed)
    assert retry.status == JobRun.Status.SUCCEEDED and not AttendanceRecord.objects.exists()
    fl = json.loads((fs_archive / retry.result["manifest"]).read_bytes())["files"][0]
    assert read_jsonl(fs_archive, fl["name"])[0]["status"] == "absent-excused"  # the edited state is what is archived


def _count_queries(district, n, monkeypatch):
    st = f.StudentFactory(school=f.SchoolFactory(district=district), enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
    AttendanceRecord.objects.bulk_create(_old_attendance(st, n))
    with CaptureQueriesContext(connection) as ctx:
        run = run_archival(district, trigger=JobRun.Trigger.MANUAL)
    assert run.status == JobRun.Status.SUCCEEDED and run.result["archived"]["attendance"] == n
    return len(ctx.captured_queries)


def test_query_count_is_flat_in_the_rows_of_a_batch(district, fs_archive, monkeypatch):
    small = _count_queries(district, 5, monkeypatch)
    JobRun.objects.all().delete()
    large = _count_queries(district, 60, monkeypatch)
    assert small == large


def test_jobs_run_command(world, district, fs_archive):
    out = io.StringIO()
    with time_machine.travel(timezone.now(), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.id), "--as-of", slot_of(district).isoformat(), stdout=out)
    run = JobRun.objects.get(job=SLUG)
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.result["rows_archived"] == 6


# -- a real S3 API on localhost -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(settings):
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = dict(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    client = boto3.client("s3", endpoint_url=endpoint, **creds)
    client.create_bucket(Bucket="skillcore-archive")
    settings.STORAGES = {**settings.STORAGES, "archive": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "skillcore-archive", "endpoint_url": endpoint, "access_key": "test",
                    "secret_key": "test", "region_name": "us-east-1", "location": "archive", "file_overwrite": True,
                    "default_acl": None, "client_config": __import__("botocore.config").config.Config(
                        retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5)}}}
    state = {"server": server, "port": port, "client": client}
    yield state
    state["server"].stop()


def test_archives_to_s3_and_reads_back(world, district, s3):
    run = run_archival(district)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert run.result["storage"] == "S3Storage"
    listed = s3["client"].list_objects_v2(Bucket="skillcore-archive", Prefix=f"archive/district-{district.id}/")
    keys = {o["Key"] for o in listed["Contents"]}
    manifest = json.loads(s3["client"].get_object(Bucket="skillcore-archive", Key="archive/" + run.result["manifest"])["Body"].read())
    for fl in manifest["files"]:
        assert "archive/" + fl["name"] in keys
        body = s3["client"].get_object(Bucket="skillcore-archive", Key="archive/" + fl["name"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == fl["sha256"]
    assert sum(fl["rows"] for fl in manifest["files"]) == 6
    assert not Grade.objects.filter(pk=world["grade_old"].pk).exists()


def test_s3_down_fails_cleanly_keeps_every_row_and_the_retry_completes(world, district, s3):
    from moto.server import ThreadedMotoServer

    s3["server"].stop()
    before = (Grade.objects.count(), AttendanceRecord.objects.count(), Intervention.objects.count(), Message.objects.count())
    failed = run_archival(district)
    assert failed.status == JobRun.Status.FAILED
    assert "Connect" in failed.error or "Endpoint" in failed.error
    assert (Grade.objects.count(), AttendanceRecord.objects.count(), Intervention.objects.count(), Message.objects.count()) == before
    # The server comes back (moto keeps its buckets in process): the retry archives everything.
    s3["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=s3["port"])
    s3["server"].start()
    retry = run_archival(district, retry_of=failed)
    assert retry.status == JobRun.Status.SUCCEEDED, retry.error
    assert retry.result["rows_archived"] == 6
    assert not Grade.objects.filter(pk=world["grade_old"].pk).exists()
    storages._backends = None  # noqa: SLF001 - the next test builds its own storage


# -- encrypted at rest: keys, rotation, the read-back, the restore ------------------------------
def _rows_before(world):
    """The archived rows as they were in the database, keyed by (dataset, id)."""
    st = world["student"]
    return {
        ("grades", world["grade_old"].id): Grade.objects.get(pk=world["grade_old"].pk),
        ("attendance", world["att_old"].id): AttendanceRecord.objects.get(pk=world["att_old"].pk),
        ("messages", world["msg_old"].id): Message.objects.get(pk=world["msg_old"].pk),
        "student": st,
    }


def test_an_archive_object_is_not_readable_without_the_key(world, district, fs_archive):
    run = run_archival(district)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    ring = archives.keyring()
    manifest = json.loads((fs_archive / run.result["manifest"]).read_bytes())
    assert run.result["key_id"] == ring.current.id
    assert manifest["encryption"] == {"algorithm": "AES-256-GCM", "format": "skillcore-archive-v1", "key_ids": [ring.current.id]}
    for fl in manifest["files"]:
        data = (fs_archive / fl["name"]).read_bytes()
        assert fl["key_id"] == ring.current.id and fl["model"] in {
            "students.Grade", "students.AttendanceRecord", "interventions.Intervention", "notifications.Message"}
        assert data.startswith(b"SKCARC1\n")
        with pytest.raises(gzip.BadGzipFile):  # neither gzip ...
            gzip.decompress(data)
        with pytest.raises(UnicodeDecodeError):  # ... nor text, let alone JSON Lines
            data.decode()
        assert b"Old note" not in data and b"student_id" not in data
    # With any other key, nothing opens.
    other = archives.KeyRing.from_text(archives.new_key())
    fl = manifest["files"][0]
    with pytest.raises(archives.ArchiveKeyError, match="neither ARCHIVE_ENCRYPTION_KEY"):
        archives.open_sealed((fs_archive / fl["name"]).read_bytes(), name=fl["name"], ring=other)


def test_an_object_altered_or_moved_in_place_of_another_does_not_open():
    ring = archives.KeyRing.from_text(archives.new_key())
    sealed = archives.seal(b"rows", name="district-1/a.jsonl.gz", key=ring.current)
    assert archives.open_sealed(sealed, name="district-1/a.jsonl.gz", ring=ring) == (b"rows", ring.current.id)
    with pytest.raises(archives.ArchiveKeyError, match="does not open"):
        archives.open_sealed(sealed, name="district-1/b.jsonl.gz", ring=ring)  # the same bytes under another name
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(archives.ArchiveKeyError, match="does not open"):
        archives.open_sealed(flipped, name="district-1/a.jsonl.gz", ring=ring)
    # Two seals of the same rows never share a nonce (nor the bytes).
    assert archives.seal(b"rows", name="x", key=ring.current) != archives.seal(b"rows", name="x", key=ring.current)


def test_a_read_back_that_does_not_decrypt_deletes_nothing(district, school, fs_archive, monkeypatch):
    """The object reads back byte for byte but was sealed for another name: the check opens
    it as a restore would, so it fails before the delete."""
    st = f.StudentFactory(school=school, enrollment_date=dt.date(2012, 8, 1), birth_date=dt.date(2005, 1, 1))
    AttendanceRecord.objects.bulk_create(_old_attendance(st, 3))
    real_seal = archives.seal
    monkeypatch.setattr(archives, "seal", lambda data, *, name, key: real_seal(data, name=name + ".elsewhere", key=key))
    run = run_archival(district)
    assert run.status == JobRun.Status.FAILED and "does not open" in run.error
    assert AttendanceRecord.objects.count() == 3


def test_rotation_new_archives_use_the_new_key_old_ones_open_with_the_retired_key(world, district, fs_archive, settings):
    old_key = settings.ARCHIVE_ENCRYPTION_KEY
    first = run_archival(district)
    old_id = archives.keyring().current.id
    # Rotate: a new key seals; the old one moves to the retired list and only opens.
    new = archives.new_key()
    settings.ARCHIVE_ENCRYPTION_KEY, settings.ARCHIVE_ENCRYPTION_RETIRED_KEYS = new, [old_key]
    st = world["student"]
    AttendanceRecord.objects.bulk_create(_old_attendance(st, 2))
    with time_machine.travel(local_slot(district, 2027, 1, 1, 3) + dt.timedelta(minutes=1), tick=False):
        second = run_slot(SLUG, district, local_slot(district, 2027, 1, 1, 3))
    assert second.status == JobRun.Status.SUCCEEDED, second.error
    new_id = archives.keyring().current.id
    assert new_id != old_id
    m1 = json.loads((fs_archive / first.result["manifest"]).read_bytes())
    m2 = json.loads((fs_archive / second.result["manifest"]).read_bytes())
    assert {fl["key_id"] for fl in m1["files"]} == {old_id} and {fl["key_id"] for fl in m2["files"]} == {new_id}
    assert m2["encryption"]["key_ids"] == [new_id]
    # Both restore while the old key is retired-but-configured.
    for m in (first, second):
        out = io.StringIO()
        call_command("archive_restore", m.result["manifest"], "--purpose", "rotation check", stdout=out, stderr=io.StringIO())
        assert out.getvalue()
    # Once the old key is dropped, the old archive names the key it is missing.
    settings.ARCHIVE_ENCRYPTION_RETIRED_KEYS = []
    with pytest.raises(CommandError, match=f"sealed with key {old_id}") as refused:
        call_command("archive_restore", first.result["manifest"], "--purpose", "x", stdout=io.StringIO(), stderr=io.StringIO())
    assert refused.value.returncode == 1


def test_archive_restore_returns_the_original_rows_and_is_on_the_trail(world, district, fs_archive, tmp_path):
    before = _rows_before(world)
    st = before.pop("student")
    run = run_archival(district)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert not Grade.objects.filter(pk=world["grade_old"].pk).exists()
    trail_before = set(AccessLog.objects.values_list("pk", flat=True))
    out, err = io.StringIO(), io.StringIO()
    call_command("archive_restore", run.result["manifest"], "--purpose", "records request 2026-114", "--student", str(st.id),
                 stdout=out, stderr=err)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    restored = {(r["dataset"], r["id"]): r for r in lines}
    # Every archived row about the student, with the values the database held.
    assert {k for k in restored} == {
        ("grades", world["grade_old"].id), ("attendance", world["att_old"].id), ("interventions", world["int_closed"].id),
        ("interventions", world["int_escalated"].id), ("messages", world["msg_old"].id)}
    g = restored[("grades", world["grade_old"].id)]
    grade = before[("grades", world["grade_old"].id)]
    assert (g["score"], g["student_id"], g["assignment_id"], g["posted_at"]) == (
        str(grade.score), st.id, grade.assignment_id, grade.posted_at.isoformat().replace("+00:00", "Z"))
    a = restored[("attendance", world["att_old"].id)]
    assert (a["date"], a["status"]) == ("2019-11-30", "absent-excused")
    assert restored[("messages", world["msg_old"].id)]["body"] == "Old note"
    assert [t["id"] for t in restored[("interventions", world["int_closed"].id)]["counselor_tasks"]] == [world["task"].id]
    # The message about nobody is not this student's.
    assert ("messages", world["msg_staff_old"].id) not in restored
    # One trail row per model read, with the student and the purpose.
    new = AccessLog.objects.exclude(pk__in=trail_before)
    assert sorted(new.values_list("model", "operation", "row_count", "student_ids", "purpose")) == [
        ("interventions.Intervention", "read", 2, [st.id], "records request 2026-114"),
        ("notifications.Message", "read", 1, [st.id], "records request 2026-114"),
        ("students.AttendanceRecord", "read", 1, [st.id], "records request 2026-114"),
        ("students.Grade", "read", 1, [st.id], "records request 2026-114"),
    ]
    assert all(label.startswith("archive_restore (") for label in new.values_list("actor_label", flat=True))
    assert "5 rows from 4 files" in err.getvalue()
    # --dataset and --output: a new file holding only those rows.
    target = tmp_path / "request.jsonl"
    call_command("archive_restore", run.result["manifest"], "--purpose", "p", "--dataset", "grades", "--output", str(target),
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [world["grade_old"].id]
    assert target.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("argv, message", [
    (["district-1/none/manifest-run-1.json", "--purpose", "p"], "no manifest"),
    (["../../etc/passwd", "--purpose", "p"], "outside the archive storage"),
    (["MANIFEST", "--purpose", "p", "--dataset", "report-cards"], "holds no dataset report-cards"),
    (["--purpose", "p"], "name one MANIFEST or --district ID"),
    (["MANIFEST", "--district", "1", "--purpose", "p"], "name one MANIFEST or --district ID"),
    (["--district", "987654", "--purpose", "p"], "no archive manifest for district 987654"),
    (["--district", "x", "--purpose", "p"], "invalid int value"),
    (["MANIFEST", "--purpose", "p", "--student", "abc"], "invalid int value"),
    (["MANIFEST", "--purpose", "p", "--student", "0"], "--student must be a student id"),
    (["MANIFEST", "--purpose", "  "], "--purpose must say why"),
    (["MANIFEST"], "--purpose"),
    (["MANIFEST", "--purpose", "p", "--output", "EXISTING"], "exists"),
    (["MANIFEST", "--purpose", "p", "--output", "/nonexistent-dir/out.jsonl"], "its directory does not exist"),
])
def test_archive_restore_bad_input_exits_2_with_one_line_and_logs_nothing(world, district, fs_archive, tmp_path, argv, message):
    run = run_archival(district)
    existing = tmp_path / "existing.jsonl"
    existing.write_text("keep\n")
    argv = [run.result["manifest"] if a == "MANIFEST" else str(existing) if a == "EXISTING" else a for a in argv]
    trail_before = AccessLog.objects.count()
    with pytest.raises(CommandError) as bad:
        call_command("archive_restore", *argv, stdout=io.StringIO(), stderr=io.StringIO())
    assert bad.value.returncode == 2 and message in str(bad.value) and "\n" not in str(bad.value)
    assert AccessLog.objects.count() == trail_before
    assert existing.read_text() == "keep\n"


def test_archive_restore_of_an_altered_file_exits_1_and_writes_nothing(world, district, fs_archive, tmp_path):
    run = run_archival(district)
    manifest = json.loads((fs_archive / run.result["manifest"]).read_bytes())
    victim = fs_archive / manifest["files"][-1]["name"]
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    target = tmp_path / "out.jsonl"
    trail_before = AccessLog.objects.count()
    with pytest.raises(CommandError, match="SHA-256 differs") as bad:
        call_command("archive_restore", run.result["manifest"], "--purpose", "p", "--output", str(target),
                     stdout=io.StringIO(), stderr=io.StringIO())
    assert bad.value.returncode == 1
    assert not target.exists() and not list(tmp_path.glob("*.partial"))
    assert AccessLog.objects.count() == trail_before


def test_archive_restore_from_the_shell_prints_one_line_and_exits_2(settings, tmp_path):
    import subprocess
    import sys

    env = {"DJANGO_SETTINGS_MODULE": "skillcore.settings_test", "PATH": "/usr/bin:/bin", "MEDIA_ROOT": str(tmp_path),
           "DATABASE_URL": "sqlite:///" + str(tmp_path / "db.sqlite3")}
    done = subprocess.run([sys.executable, "manage.py", "archive_restore", "nope.json", "--purpose", "p"],
                          cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["CommandError: no manifest 'nope.json' in the archive storage"]


def test_s3_objects_are_sealed_and_server_side_encrypted_when_asked(world, district, s3, settings):
    options = {**settings.STORAGES["archive"]["OPTIONS"], "object_parameters": {"ServerSideEncryption": "AES256"}}
    settings.STORAGES = {**settings.STORAGES, "archive": {**settings.STORAGES["archive"], "OPTIONS": options}}
    before = Message.objects.get(pk=world["msg_old"].pk)
    run = run_archival(district)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    manifest = json.loads(s3["client"].get_object(Bucket="skillcore-archive", Key="archive/" + run.result["manifest"])["Body"].read())
    for fl in manifest["files"]:
        obj = s3["client"].get_object(Bucket="skillcore-archive", Key="archive/" + fl["name"])
        body = obj["Body"].read()
        assert obj["ServerSideEncryption"] == "AES256"
        assert body.startswith(b"SKCARC1\n") and b"Old note" not in body
        with pytest.raises(gzip.BadGzipFile):
            gzip.decompress(body)
    out = io.StringIO()
    call_command("archive_restore", run.result["manifest"], "--purpose", "p", "--dataset", "messages", stdout=out,
                 stderr=io.StringIO())
    rows = {r["id"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert rows[before.id]["body"] == "Old note" and rows[before.id]["student_id"] == before.student_id


def test_archive_restore_of_a_district_reads_every_month_and_each_file_once(world, district, fs_archive, monkeypatch):
    """A records request covers every archive: two months' runs, the first failed once and
    retried (the retry's manifest lists the failed attempt's verified file again)."""
    st = world["student"]
    monkeypatch.setattr(archival, "BATCH_SIZE", 1)
    FailingOnce.calls = 0
    real = archival.write_verified
    monkeypatch.setattr(archival, "write_verified", FailingOnce(real))
    failed = run_archival(district)
    assert failed.status == JobRun.Status.FAILED and failed.checkpoint["files"]
    monkeypatch.setattr(archival, "write_verified", real)
    retry = run_archival(district, retry_of=failed)
    assert retry.status == JobRun.Status.SUCCEEDED, retry.error
    AttendanceRecord.objects.bulk_create(_old_attendance(st, 2))
    new_days = set(AttendanceRecord.objects.filter(date__lt=dt.date(2016, 1, 1)).values_list("id", flat=True))
    assert len(new_days) == 2
    with time_machine.travel(local_slot(district, 2027, 1, 1, 3) + dt.timedelta(minutes=1), tick=False):
        january = run_slot(SLUG, district, local_slot(district, 2027, 1, 1, 3))
    assert january.status == JobRun.Status.SUCCEEDED, january.error
    out, err = io.StringIO(), io.StringIO()
    call_command("archive_restore", "--district", str(district.id), "--purpose", "records request", "--student", str(st.id),
                 stdout=out, stderr=err)
    keys = [(r["dataset"], r["id"]) for r in map(json.loads, out.getvalue().splitlines())]
    # December's five rows about the student; January's six: the two new days, and the rows
    # December kept that are now past their cutoff (a month later). Each once.
    assert len(keys) == len(set(keys)) == 11
    assert set(keys) == {
        ("grades", world["grade_old"].id), ("attendance", world["att_old"].id), ("interventions", world["int_closed"].id),
        ("interventions", world["int_escalated"].id), ("messages", world["msg_old"].id),
        ("grades", world["grade_kept"].id), ("attendance", world["att_kept"].id), ("interventions", world["int_recent"].id),
        ("messages", world["msg_kept"].id), *(("attendance", i) for i in new_days)}
    assert "3 manifests of district" in err.getvalue()  # the failed attempt's, its retry's, January's


class FailingOnce:
    """write_verified that fails on the third batch object of the first attempt."""

    calls = 0

    def __init__(self, real):
        self.real = real

    def __call__(self, storage, name, data, **kwargs):
        if kwargs.get("ids") is not None:
            FailingOnce.calls += 1
            if FailingOnce.calls == 3:
                raise OSError("storage hiccup")
        return self.real(storage, name, data, **kwargs)
