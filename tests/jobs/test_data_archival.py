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
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from interventions.models import CounselorTask, Intervention
from notifications.models import Channel, Message, Notification, Status
from scheduling import runner
from scheduling.jobs import data_archival as archival
from scheduling.models import JobRun
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
    return [json.loads(line) for line in gzip.decompress((root / name).read_bytes()).decode().splitlines()]


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

    def write_then_someone_edits(storage, name, data, *, ids=None):
        digest = real(storage, name, data, ids=ids)
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
