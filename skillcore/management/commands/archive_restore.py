"""``manage.py archive_restore MANIFEST --purpose TEXT``: read archived rows back, decrypted,
for a records request (FERPA 99.10: a parent's or eligible student's right to inspect).

MANIFEST is the manifest's name in the archive storage, as the data-archival run's result
gives it (``district-3/2026-12-01/manifest-run-41.json``); ``--district ID`` instead reads
every manifest of the district (every month's archive: what a records request needs), each
file once even when a retried run's manifest lists it again. Every file the manifest lists is
read, its SHA-256 checked against the manifest, opened with the key the manifest names
(ARCHIVE_ENCRYPTION_KEY or one of ARCHIVE_ENCRYPTION_RETIRED_KEYS) and its rows counted;
``--dataset`` and ``--student`` narrow what is written. Output: JSON Lines, each archived row
with its ``dataset`` added, to ``--output`` (written whole or not at all) or standard output.

The read is on the access trail: one row per model with the rows and students written,
the purpose given and the operating-system user who ran it.

Exit status: 2 with one line for bad input (no such manifest, a name that is a directory, a data
object or a manifest without its files' fields, neither or both of MANIFEST and
--district, a dataset the archive does not hold, a student id that is not a number, an output file that exists); 1 with one line
when the archive does not read back (a checksum that differs, a key not configured, an
object that does not open); nothing is written and nothing logged then.
"""
from __future__ import annotations

import getpass
import json
import os
import tempfile
from pathlib import Path

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from skillcore import archives
from skillcore.cli import one_line_errors
from skillcore.services import access_log_archive_read


def _bad(message: str) -> CommandError:
    return CommandError(message, returncode=2)


class Command(BaseCommand):
    help = "Read an archive back (decrypted) as JSON Lines, for a records request; the read is on the access trail."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        one_line_errors(parser)
        return parser

    def add_arguments(self, parser):
        parser.add_argument("manifest", nargs="?", help="the manifest's name in the archive storage (the run's result names it)")
        parser.add_argument("--district", type=int,
                            help="instead of MANIFEST: every manifest of this district (all its archive runs)")
        parser.add_argument("--purpose", required=True,
                            help="why the records are read, for the access trail (e.g. 'records request 2026-114')")
        parser.add_argument("--dataset", action="append", default=[],
                            help="only this dataset (grades, attendance, interventions, messages); repeatable")
        parser.add_argument("--student", type=int, help="only rows about this student id")
        parser.add_argument("--output", help="write to this new file instead of standard output")

    def handle(self, *args, manifest, district, purpose, dataset, student, output, **options):
        if (manifest is None) == (district is None):
            raise _bad("name one MANIFEST or --district ID")
        purpose = purpose.strip()
        if not purpose:
            raise _bad("--purpose must say why the records are read")
        if student is not None and student < 1:
            raise _bad(f"--student must be a student id, got {student}")
        out_path = Path(output) if output else None
        if out_path is not None and (out_path.exists() or not out_path.parent.is_dir()):
            raise _bad(f"--output {output}: " + ("exists" if out_path.exists() else "its directory does not exist"))
        storage = storages["archive"]
        try:
            if district is not None:
                names = archives.district_manifests(storage, district)
                if not names:
                    raise _bad(f"no archive manifest for district {district} in the archive storage")
            elif storage.exists(manifest):
                names = [manifest]
            else:
                raise _bad(f"no manifest {manifest!r} in the archive storage")
        except SuspiciousFileOperation as error:
            raise _bad(f"{manifest!r} is outside the archive storage") from error
        except CommandError:
            raise
        except Exception as error:  # a storage that cannot even be asked: bad configuration, not bad input
            raise CommandError(f"the archive storage is unreachable: {error}") from error
        files: dict[str, dict] = {}
        for name in names:
            try:
                body = archives.read_manifest(storage, name)
            except (ValueError, archives.ArchiveIntegrityError) as error:
                raise _bad(f"{name} is not an archive manifest ({error})") from error
            # A retried run's manifest lists the failed attempt's files again: each file once.
            for entry in body["files"]:
                files.setdefault(entry["name"], entry)
        held = sorted({f["dataset"] for f in files.values()})
        unknown = sorted(set(dataset) - set(held))
        if unknown:
            raise _bad(f"the archive holds no dataset {', '.join(unknown)} (it holds {', '.join(held) or 'none'})")
        wanted = [f for f in files.values() if not dataset or f["dataset"] in dataset]
        what = manifest if district is None else f"{len(names)} manifests of district {district}"

        try:
            ring = archives.keyring()
        except archives.ArchiveKeyError as error:
            raise CommandError(str(error)) from error
        reads: dict[str, tuple[int, list[int]]] = {}
        # Into a private temporary file first: a file that fails to read back half-way
        # leaves no partial output (and no trail row: nothing was handed over).
        with tempfile.NamedTemporaryFile("w+", dir=out_path.parent if out_path else None, delete=False,
                                         suffix=".partial") as tmp:
            try:
                for entry in wanted:
                    try:
                        rows = archives.read_file(storage, entry, ring=ring)
                    except (archives.ArchiveKeyError, archives.ArchiveIntegrityError) as error:
                        raise CommandError(str(error) if entry["name"] in str(error) else f"{entry['name']}: {error}") from error
                    if student is not None:
                        rows = [r for r in rows if r.get("student_id") == student]
                    for row in rows:
                        tmp.write(json.dumps({"dataset": entry["dataset"], **row}, sort_keys=True) + "\n")
                    count, ids = reads.get(entry.get("model", entry["dataset"]), (0, []))
                    reads[entry.get("model", entry["dataset"])] = (
                        count + len(rows), ids + [r["student_id"] for r in rows if r.get("student_id")])
                tmp.flush()
                if out_path is not None:
                    os.chmod(tmp.name, 0o600)  # student records: readable by whoever ran the restore only
                    os.link(tmp.name, out_path)  # fails rather than overwrite a file created meanwhile
                else:
                    tmp.seek(0)
                    for line in tmp:
                        self.stdout.write(line, ending="")
            finally:
                os.unlink(tmp.name)
        logged = access_log_archive_read(now=timezone.now(), actor_label=f"archive_restore ({getpass.getuser()})",
                                         purpose=purpose, reads=reads)
        total = sum(count for count, _ in reads.values())
        self.stderr.write(f"{total} rows from {len(wanted)} files of {what}"
                          f"{f' written to {output}' if output else ''}; {logged} access-trail rows written")
