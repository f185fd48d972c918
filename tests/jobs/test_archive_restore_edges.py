"""archive_restore beside the happy path: a MANIFEST that names a directory or a data object,
a manifest whose entry lacks its fields, an object altered together with its manifest's
checksum, another batch's object put in its place, and a key ring that does not hold the key."""
from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from scheduling.models import JobRun
from skillcore import archives
from skillcore.models import AccessLog
from tests.jobs.test_data_archival import fs_archive, run_archival, world  # noqa: F401 (fixtures)


def restore(*argv):
    out = io.StringIO()
    call_command("archive_restore", *argv, "--purpose", "records request", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def refused(*argv) -> CommandError:
    before = AccessLog.objects.count()
    with pytest.raises(CommandError) as bad:
        restore(*argv)
    assert "\n" not in str(bad.value)
    assert AccessLog.objects.count() == before  # nothing handed over, nothing on the trail
    return bad.value


@pytest.fixture
def archived(world, district, fs_archive):  # noqa: F811
    run = run_archival(district)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    name = run.result["manifest"]
    return {"name": name, "path": fs_archive / name, "manifest": json.loads((fs_archive / name).read_bytes()),
            "root": fs_archive}


def test_a_manifest_that_is_a_directory_is_bad_input(archived):
    directory = archived["name"].rsplit("/", 1)[0]
    error = refused(directory)
    assert error.returncode == 2 and "not an archive manifest" in str(error)


def test_a_data_object_named_as_the_manifest_is_bad_input(archived):
    error = refused(archived["manifest"]["files"][0]["name"])
    assert error.returncode == 2 and "not an archive manifest" in str(error)


def test_a_manifest_entry_without_its_fields_is_bad_input(archived):
    archived["path"].write_text(json.dumps({"files": [{"dataset": "grades"}]}))
    error = refused(archived["name"])
    assert error.returncode == 2 and "not an archive manifest" in str(error)


def test_an_object_altered_with_its_checksum_in_the_manifest_does_not_open(archived):
    """Whoever can write the bucket can rewrite a manifest's SHA-256 too: the seal still
    catches the altered bytes."""
    manifest = archived["manifest"]
    entry = manifest["files"][0]
    victim = archived["root"] / entry["name"]
    data = bytearray(victim.read_bytes())
    data[-20] ^= 1
    victim.write_bytes(bytes(data))
    entry["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    archived["path"].write_text(json.dumps(manifest))
    error = refused(archived["name"])
    assert error.returncode == 1 and "does not open" in str(error)


def test_another_batchs_object_put_in_place_of_one_does_not_restore_its_rows(archived):
    manifest = archived["manifest"]
    first, second = manifest["files"][0], manifest["files"][1]
    swapped = (archived["root"] / second["name"]).read_bytes()
    (archived["root"] / first["name"]).write_bytes(swapped)
    first["sha256"] = hashlib.sha256(swapped).hexdigest()
    archived["path"].write_text(json.dumps(manifest))
    error = refused(archived["name"])
    assert error.returncode == 1 and "does not open" in str(error)


def test_a_ring_without_the_sealing_key_names_the_missing_key(archived, settings):
    sealed_with = archived["manifest"]["files"][0]["key_id"]
    settings.ARCHIVE_ENCRYPTION_KEY, settings.ARCHIVE_ENCRYPTION_RETIRED_KEYS = archives.new_key(), [archives.new_key()]
    error = refused(archived["name"])
    assert error.returncode == 1 and f"sealed with key {sealed_with}" in str(error)


def test_without_any_key_configured_the_restore_says_so(archived, settings):
    settings.ARCHIVE_ENCRYPTION_KEY = ""
    error = refused(archived["name"])
    assert error.returncode == 1 and "ARCHIVE_ENCRYPTION_KEY is not set" in str(error)
