"""The data archive's objects, encrypted at rest: the key ring, the sealed object format and
reading an archive back (the data-archival job writes it; ``manage.py archive_restore`` reads it).

Why the application encrypts, and not only the bucket: an archive holds seven-year-old grades
and attendance. Server-side encryption (S3's SSE, an encrypted disk) protects against a stolen
disk, not against anyone who can read the bucket or the directory; an object sealed here
is unreadable without ``ARCHIVE_ENCRYPTION_KEY``, wherever a copy of it ends up.

Keys: 32 random bytes (AES-256), written as URL-safe base64 (``python -m skillcore.archives``
prints a new one; it needs no settings, so it works before the first start). ``ARCHIVE_ENCRYPTION_KEY`` seals every new object;
``ARCHIVE_ENCRYPTION_RETIRED_KEYS`` (comma-separated) only open objects sealed before a
rotation. A key's id is derived from the key (``key_id``): the manifest and every object
name the key they need, so nobody can pair a key with the wrong id.

The sealed object (version 1), all in one piece so a copy carries what it needs:
1. ``SKCARC1\\n`` (8 bytes), the format;
2. one byte, the key id's length, then the key id (ASCII);
3. the 12-byte nonce, random per object (never reused with a key: 2**-96 odds per pair);
4. AES-256-GCM's ciphertext and tag. The associated data is 1-3 plus the object's name, so an
   object renamed or moved in place of another batch fails to open instead of restoring the
   wrong rows.

Plain Python apart from ``read_*`` (which take a Django storage): the settings import this
module to check the keys at start-up.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"SKCARC1\n"
ALGORITHM = "AES-256-GCM"
FORMAT = "skillcore-archive-v1"
NONCE_BYTES = 12
KEY_BYTES = 32


class ArchiveKeyError(ValueError):
    """A key is malformed, missing, or does not open the object (wrong key or tampered)."""


class ArchiveIntegrityError(ValueError):
    """An archive file differs from its manifest entry (checksum, rows)."""


@dataclass(frozen=True)
class ArchiveKey:
    id: str
    secret: bytes = b""

    def __repr__(self) -> str:  # never print the secret (error reports, logs)
        return f"ArchiveKey({self.id!r})"


def key_id(secret: bytes) -> str:
    """A short public name for a key: a hash of it under its own label (not the key, and
    not usable to guess it), stable wherever the key is configured."""
    return "k" + hashlib.sha256(b"skillcore archive key id\0" + secret).hexdigest()[:15]


def parse_key(text: str) -> ArchiveKey:
    """A key from its environment form (URL-safe base64 of 32 bytes, padding optional)."""
    raw = (text or "").strip()
    try:
        secret = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != KEY_BYTES:
        raise ArchiveKeyError("must be 32 bytes in URL-safe base64 (44 characters); "
                              "`python -m skillcore.archives` prints a new key")
    return ArchiveKey(key_id(secret), secret)


def new_key() -> str:
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


def demo_key(path) -> str:
    """The demo's key (DEBUG without ARCHIVE_ENCRYPTION_KEY): generated on first use and kept
    in ``path``, so the demo's archives stay readable after a restart. Published with
    ``os.link`` from a private temporary file: the web server and a qcluster starting at
    the same moment agree on the first key written, and never read a half-written one."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_key() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process published its key first: use that one
        finally:
            tmp.unlink()
    return path.read_text().strip()


@dataclass(frozen=True)
class KeyRing:
    """The key that seals (``current``) and every key that may open (it and the retired)."""

    current: ArchiveKey
    retired: tuple[ArchiveKey, ...] = ()

    @classmethod
    def from_text(cls, current: str, retired: list[str] | tuple[str, ...] = ()) -> KeyRing:
        cur = parse_key(current)
        old = tuple(k for k in dict.fromkeys(parse_key(t) for t in retired) if k.id != cur.id)
        return cls(cur, old)

    @property
    def ids(self) -> list[str]:
        return [self.current.id, *(k.id for k in self.retired)]

    def get(self, kid: str) -> ArchiveKey:
        for key in (self.current, *self.retired):
            if key.id == kid:
                return key
        raise ArchiveKeyError(f"sealed with key {kid}, which is neither ARCHIVE_ENCRYPTION_KEY nor in "
                              f"ARCHIVE_ENCRYPTION_RETIRED_KEYS (configured: {', '.join(self.ids)})")


def keyring() -> KeyRing:
    """The ring the settings name (read at each use, so a test may change the settings)."""
    from django.conf import settings

    if not settings.ARCHIVE_ENCRYPTION_KEY:
        raise ArchiveKeyError("ARCHIVE_ENCRYPTION_KEY is not set")
    return KeyRing.from_text(settings.ARCHIVE_ENCRYPTION_KEY, settings.ARCHIVE_ENCRYPTION_RETIRED_KEYS)


def _header(kid: str, nonce: bytes) -> bytes:
    encoded = kid.encode("ascii")
    return MAGIC + bytes([len(encoded)]) + encoded + nonce


def seal(plaintext: bytes, *, name: str, key: ArchiveKey) -> bytes:
    """Encrypt ``plaintext`` for the object called ``name`` (see the format above)."""
    header = _header(key.id, os.urandom(NONCE_BYTES))
    return header + AESGCM(key.secret).encrypt(header[-NONCE_BYTES:], plaintext, header + name.encode())


def sealed_key_id(data: bytes) -> str:
    """The id of the key an object was sealed with (read from its header, no key needed)."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 1:
        raise ArchiveKeyError("not a sealed archive object (no SKCARC1 header)")
    n = data[len(MAGIC)]
    return data[len(MAGIC) + 1:len(MAGIC) + 1 + n].decode("ascii", "replace")


def open_sealed(data: bytes, *, name: str, ring: KeyRing) -> tuple[bytes, str]:
    """Decrypt a sealed object read from ``name``. Returns (plaintext, key id). Raises
    ArchiveKeyError when the key is not configured or the object does not open with it
    (another key under the same id is impossible: the id is the key's hash)."""
    kid = sealed_key_id(data)
    key = ring.get(kid)
    header_len = len(MAGIC) + 1 + len(kid.encode("ascii")) + NONCE_BYTES
    header = data[:header_len]
    try:
        plaintext = AESGCM(key.secret).decrypt(header[-NONCE_BYTES:], data[header_len:], header + name.encode())
    except InvalidTag:
        raise ArchiveKeyError(f"does not open with key {kid}: altered, truncated, or not stored as {name}") from None
    return plaintext, kid


def decode_rows(plaintext: bytes) -> list[dict]:
    """A batch's rows from its gzip JSON Lines."""
    return [json.loads(line) for line in gzip.decompress(plaintext).decode().splitlines()]


# -- reading an archive back (manage.py archive_restore) ------------------------------------
# What every file entry of a manifest carries (the data-archival job writes them all).
MANIFEST_ENTRY_FIELDS = ("name", "dataset", "rows", "sha256", "first_id", "last_id")


def read_manifest(storage, name: str) -> dict:
    """A manifest, checked for the shape a restore relies on: a name that is a directory, a
    data object or a JSON document without every file entry's fields raises ValueError
    (ArchiveIntegrityError) instead of failing half-way through a restore."""
    try:
        with storage.open(name, "rb") as fh:
            manifest = json.loads(fh.read())
    except IsADirectoryError:
        raise ArchiveIntegrityError("a directory") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise ArchiveIntegrityError("no list of files")
    for n, entry in enumerate(manifest["files"], 1):
        missing = [k for k in MANIFEST_ENTRY_FIELDS if k not in entry] if isinstance(entry, dict) else ["all"]
        if missing:
            raise ArchiveIntegrityError(f"file entry {n} lacks {', '.join(missing)}")
    return manifest


def district_manifests(storage, district_id: int) -> list[str]:
    """Every manifest of a district, oldest archive first. The layout is the data-archival
    job's (``district-<id>/<as-of>/manifest-run-<run>.json``)."""
    prefix = f"district-{district_id}"
    try:
        days = storage.listdir(prefix)[0]
    except FileNotFoundError:  # the file system's answer; S3 lists nothing
        return []
    names = []
    for day in sorted(days):
        names += [f"{prefix}/{day}/{f}" for f in sorted(storage.listdir(f"{prefix}/{day}")[1])
                  if f.startswith("manifest-run-") and f.endswith(".json")]
    return names


def read_file(storage, entry: dict, *, ring: KeyRing) -> list[dict]:
    """One archive file's rows, checked against its manifest entry: the stored object's
    SHA-256, the key it names, the rows and their ids."""
    name = entry["name"]
    with storage.open(name, "rb") as fh:
        data = fh.read()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ArchiveIntegrityError(f"{name}: its SHA-256 differs from the manifest's")
    if entry.get("key_id") is None:  # written before the archive was encrypted
        plaintext = data
    else:
        plaintext, kid = open_sealed(data, name=name, ring=ring)
        if kid != entry["key_id"]:
            raise ArchiveIntegrityError(f"{name}: sealed with {kid}, the manifest says {entry['key_id']}")
    rows = decode_rows(plaintext)
    if len(rows) != entry["rows"] or (rows and (rows[0]["id"], rows[-1]["id"]) != (entry["first_id"], entry["last_id"])):
        raise ArchiveIntegrityError(f"{name}: {len(rows)} rows read, the manifest lists {entry['rows']}")
    return rows


if __name__ == "__main__":  # python -m skillcore.archives: a new key, for a first install or a rotation
    print(new_key())
