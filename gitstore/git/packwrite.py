"""One write, one pack: the objects of a commit written as a single pack file.

Written as loose objects, a commit of two changed documents is four files,
and making it durable is eight ``fsync`` calls (each object and its fanout
directory). Written as one pack (format version 2, with its version-2 index),
it is three: the pack, its index and the pack directory. Invariants:

* the pack and index are byte-for-byte what git's formats specify (``git
  verify-pack`` and ``git fsck --strict`` accept them): objects stored whole
  (no deltas: a later repack finds those), each zlib-compressed after its
  type-and-size header, the pack closed by the SHA-1 of its bytes, the index
  holding the sorted ids, CRC-32s and offsets, closed by both checksums;
* a pack becomes visible only complete: both files are written under
  temporary names in ``objects/pack`` (``tmp_pack_*``, ``tmp_idx_*``, which
  maintenance clears when a crash leaves them), synced, then renamed, the pack
  before its index, so no reader ever sees an index without its pack; the
  directory is synced after the renames, before any ref may name the objects;
* objects the database already holds are still welcome in a pack (git allows
  an object in several packs); callers leave them out to save space;
* raw objects are built here exactly as git hashes them (:func:`object_id`),
  so the ids a caller puts in refs are the ids git computes.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["BLOB", "COMMIT", "TREE", "commit_bytes", "object_id", "tree_bytes", "write_pack"]

COMMIT, TREE, BLOB, TAG = 1, 2, 3, 4
_NAMES = {COMMIT: b"commit", TREE: b"tree", BLOB: b"blob", TAG: b"tag"}
_REGULAR = b"100644"
_DIR = b"40000"
LEVEL = 1
"""zlib level of packed objects: written once per write, recompressed with deltas
by the next repack, so speed matters more here than size."""


def object_id(kind: int, data: bytes) -> str:
    """The git object id (SHA-1) of an object of ``kind`` with content ``data``."""
    h = hashlib.sha1(_NAMES[kind] + b" %d\x00" % len(data))
    h.update(data)
    return h.hexdigest()


def tree_bytes(files: Mapping[str, str], dirs: Mapping[str, str] | None = None) -> bytes:
    """A tree of regular files and subtrees (name -> id), in git's entry order
    (names compared as bytes, a subtree's as if it ended in ``/``)."""
    entries = [(n.encode("utf-8"), _REGULAR, oid) for n, oid in files.items()]
    entries += [(n.encode("utf-8"), _DIR, oid) for n, oid in (dirs or {}).items()]
    entries.sort(key=lambda e: e[0] + (b"/" if e[1] == _DIR else b""))
    return b"".join(mode + b" " + name + b"\x00" + bytes.fromhex(oid)
                    for name, mode, oid in entries)


def commit_bytes(*, tree: str, parents: Iterable[str], author: str, committer: str,
                 message: str, signature: str | None = None) -> bytes:
    """A commit object's content; ``author``/``committer`` are git's signature
    lines (``Name <email> time +hhmm``); ``signature`` goes in a ``gpgsig``
    header, as ``git commit -S`` writes it (its payload is this without it)."""
    head = [f"tree {tree}", *(f"parent {p}" for p in parents), f"author {author}",
            f"committer {committer}"]
    if signature is not None:
        head.append("gpgsig " + signature.rstrip("\n").replace("\n", "\n "))
    return ("\n".join(head) + "\n\n" + message).encode("utf-8")


def _entry_header(kind: int, size: int) -> bytes:
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def write_pack(git_dir: Path, objects: Iterable[tuple[int, bytes]], *,
               sync: bool = True) -> tuple[Path, list[str]]:
    """Write ``objects`` ((kind, content) pairs) as one pack with its index in
    ``git_dir/objects/pack``; returns the index path and the object ids, in the
    order given. With ``sync``, both files and the directory are fsynced."""
    pack_dir = git_dir / "objects" / "pack"
    pack_dir.mkdir(parents=True, exist_ok=True)
    items = list(objects)
    body = bytearray(b"PACK" + struct.pack(">II", 2, len(items)))
    index: list[tuple[bytes, int, int]] = []  # (raw id, crc32, offset)
    ids = []
    for kind, data in items:
        oid = object_id(kind, data)
        ids.append(oid)
        entry = _entry_header(kind, len(data)) + zlib.compress(data, LEVEL)
        index.append((bytes.fromhex(oid), zlib.crc32(entry), len(body)))
        body += entry
    if len(body) >= 1 << 31:
        raise ValueError("a write of 2 GiB or more does not fit one small pack")
    checksum = hashlib.sha1(body).digest()
    body += checksum
    index.sort()
    fanout = [0] * 256
    for raw, _, _ in index:
        fanout[raw[0]] += 1
    running = 0
    for i in range(256):
        running += fanout[i]
        fanout[i] = running
    idx = bytearray(b"\xfftOc" + struct.pack(">I", 2) + struct.pack(">256I", *fanout))
    idx += b"".join(raw for raw, _, _ in index)
    idx += b"".join(struct.pack(">I", crc) for _, crc, _ in index)
    idx += b"".join(struct.pack(">I", offset) for _, _, offset in index)
    idx += checksum
    idx += hashlib.sha1(idx).digest()
    name = f"pack-{checksum.hex()}"
    pack_tmp = _write_temp(pack_dir, "tmp_pack_", bytes(body), sync)
    try:
        idx_tmp = _write_temp(pack_dir, "tmp_idx_", bytes(idx), sync)
    except BaseException:
        pack_tmp.unlink(missing_ok=True)
        raise
    os.replace(pack_tmp, pack_dir / f"{name}.pack")
    os.replace(idx_tmp, pack_dir / f"{name}.idx")
    if sync:
        fd = os.open(pack_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return pack_dir / f"{name}.idx", ids


def _write_temp(directory: Path, prefix: str, data: bytes, sync: bool) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, 0o400)  # read-only, and private like every store file
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    os.close(fd)
    return Path(name)
