"""The archive's key ring (skillcore/archives.py): the key's form, ids derived from keys,
rotation's ring, and the demo's generated key (one key even when processes start together)."""
from __future__ import annotations

import base64
import multiprocessing

import pytest

from skillcore import archives


def test_a_key_is_32_bytes_of_url_safe_base64_and_its_id_is_derived_from_it():
    text = archives.new_key()
    key = archives.parse_key(text)
    assert len(key.secret) == 32 and key.id == archives.key_id(key.secret) and len(key.id) == 16
    assert archives.parse_key(text.rstrip("=")) == key  # padding optional
    assert text not in repr(key) and key.id in repr(key)
    for bad in ("", "short", base64.urlsafe_b64encode(b"x" * 16).decode(), "!" * 44):
        with pytest.raises(archives.ArchiveKeyError, match="32 bytes"):
            archives.parse_key(bad)


def test_the_ring_seals_with_the_current_key_and_opens_with_every_configured_one():
    old, new = archives.new_key(), archives.new_key()
    ring = archives.KeyRing.from_text(new, [old, new, old])  # duplicates and the current one dropped
    assert ring.current == archives.parse_key(new) and ring.retired == (archives.parse_key(old),)
    sealed_before = archives.seal(b"rows", name="n", key=archives.parse_key(old))
    assert archives.open_sealed(sealed_before, name="n", ring=ring) == (b"rows", archives.parse_key(old).id)
    assert archives.sealed_key_id(archives.seal(b"rows", name="n", key=ring.current)) == ring.current.id
    with pytest.raises(archives.ArchiveKeyError, match="not a sealed archive object"):
        archives.open_sealed(b"\x1f\x8b plain gzip", name="n", ring=ring)


def _demo_key(path, queue):
    queue.put(archives.demo_key(path))


def test_the_demo_key_is_generated_once_private_and_shared_by_processes_starting_together(tmp_path):
    path = tmp_path / "var" / "demo-archive.key"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_demo_key, args=(path, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    keys = {queue.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(timeout=30)
    assert len(keys) == 1
    (key,) = keys
    archives.parse_key(key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert archives.demo_key(path) == key  # kept across restarts
    assert [p.name for p in path.parent.iterdir()] == ["demo-archive.key"]  # no temporary file left
