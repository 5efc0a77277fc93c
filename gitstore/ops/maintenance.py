"""Keeping customer repositories small: packing, pruning what packs hold, packed refs.

A conversation that grows turn by turn stores a full new copy of
``conversation.json`` with every commit; as loose objects that is hundreds of
times the data. Maintenance packs objects with deltas (libgit2's pack
builder), which brings a repository to about the size ``git gc --aggressive``
reaches.

Invariants:

* it runs under the customer's writer lock, so no gitstore writer is between
  writing objects and moving a ref; readers take no lock and are never blocked
  (libgit2 rescans packs when an object it expected loose has moved);
* nothing is removed before the pack that holds it is complete on disk: a loose
  object is deleted only if the new pack lists it, an old pack only if the new
  pack lists every object in it. A crash at any point leaves at worst redundant
  copies (and temp files, cleared by the next run);
* automatic maintenance runs after a write once the data written since the last
  run exceeds ``maintenance_bytes`` (default 16 MiB, uncompressed); so between
  runs the loose objects of a repository hold at most that much data plus one
  write (barring a crash, which can lose the count but not data). An
  incremental run packs just the loose objects; once there are more than
  ``MAX_PACKS`` packs (or with ``full``), everything reachable is repacked into
  one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.git import repo as backend
from gitstore.git.locking import writer_lock

if TYPE_CHECKING:
    from gitstore.store.facade import Customer

STATE_FILE = "gitstore-maintenance"
MAX_PACKS = 8
TEMP_MAX_AGE = 3600.0


@dataclass
class MaintenanceReport:
    customer: str
    kind: str  # "incremental" | "full" | "none"
    objects_packed: int = 0
    loose_removed: int = 0
    packs_removed: int = 0
    temp_removed: list[str] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "kind": self.kind,
                "objects_packed": self.objects_packed, "loose_removed": self.loose_removed,
                "packs_removed": self.packs_removed, "temp_removed": self.temp_removed,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "seconds": round(self.seconds, 3)}


def repo_bytes(path: Path) -> int:
    """Bytes used by a repository's object database and refs."""
    total = 0
    for sub in ("objects", "refs", "packed-refs"):
        p = path / sub
        if p.is_file():
            total += p.stat().st_size
        for dirpath, _dirs, files in os.walk(p):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:
                    continue
    return total


def maintain(customer: Customer, *, full: bool = False,
             prune: bool = False) -> MaintenanceReport:
    """Pack, prune packed loose objects, pack refs, clear stale temp files.

    ``prune`` (implies ``full``) also deletes every object that no ref reaches:
    the step that makes purged data unrecoverable (retention). Only use it when
    nothing unreferenced should survive; ordinary maintenance never prunes."""
    store = customer.store
    with writer_lock(store.lock_dir, customer.name, store.config.lock_timeout):
        return _maintain_locked(customer, full=full or prune, prune=prune)


def _maintain_locked(customer: Customer, *, full: bool,
                     prune: bool = False) -> MaintenanceReport:
    start = time.monotonic()
    repo = customer.repo
    report = MaintenanceReport(customer.name, "none", bytes_before=repo_bytes(customer.path))
    report.temp_removed = _clear_temp_files(customer.path)
    if prune:  # reflog entries must not name what pruning deletes (git fsck checks them)
        repo.drop_unreachable_reflog_entries()
    loose = repo.loose_objects()
    old_packs = repo.packs()
    full = full or len(old_packs) >= MAX_PACKS
    if full or loose:
        report.kind = "full" if full else "incremental"
        idx, report.objects_packed = repo.write_pack(None if full else sorted(loose))
        held = backend.pack_ids(idx) if idx is not None else set()
        # prune only what is provably unreachable: with refs, a pack must exist
        prune = prune and (idx is not None or not customer.repo.refs())
        for oid, path in loose.items():
            if oid in held or prune:
                _unlink(path)
                report.loose_removed += 1
        if full:
            for old in old_packs:
                if old != idx and (prune or backend.pack_ids(old) <= held):
                    for sibling in old.parent.glob(old.stem + ".*"):
                        _unlink(sibling)
                    report.packs_removed += 1
        if prune:
            report.kind = "prune"
    repo.compress_refs()
    for fanout in (customer.path / "objects").glob("??"):
        with contextlib.suppress(OSError):  # only empty directories go
            fanout.rmdir()
    _save_state(customer.path, 0)
    report.bytes_after = repo_bytes(customer.path)
    report.seconds = time.monotonic() - start
    customer._audit("maintain", detail=f"{report.kind}: {report.objects_packed} packed, "
                    f"{report.loose_removed} loose removed, {report.packs_removed} pack(s) "
                    f"removed, {report.bytes_before} -> {report.bytes_after} bytes")
    return report


def note_write(customer: Customer, nbytes: int) -> MaintenanceReport | None:
    """Count ``nbytes`` written; run maintenance when the threshold is passed.

    Call with the customer's writer lock held."""
    limit = customer.store.config.maintenance_bytes
    if limit <= 0:
        return None
    pending = _load_state(customer.path) + nbytes
    if pending < limit:
        _save_state(customer.path, pending)
        return None
    return _maintain_locked(customer, full=False)


def _load_state(path: Path) -> int:
    try:
        return int((path / STATE_FILE).read_bytes().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _save_state(path: Path, pending: int) -> None:
    """Overwrite the counter in place with one small write (this runs on every
    write to the store; a crash can at worst lose the count, never data)."""
    fd = os.open(path / STATE_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        line = f"{pending}\n".encode("ascii")
        os.pwrite(fd, line, 0)
        os.ftruncate(fd, len(line))
    finally:
        os.close(fd)


def _clear_temp_files(path: Path) -> list[str]:
    """Temp files libgit2 or gitstore left behind (crashed writers), older than an hour."""
    now = time.time()
    removed = []
    for staging in path.glob("objects/pack/tmp-gitstore-*"):
        if staging.is_dir() and now - staging.stat().st_mtime > TEMP_MAX_AGE:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(str(staging.relative_to(path)))
    candidates = [*path.glob("objects/??/tmp_*"), *path.glob("objects/pack/pack_git2_*"),
                  *path.glob("objects/pack/tmp_*"), *path.glob("*.gitstore-tmp"),
                  *path.glob("gitstore-audit.head.tmp")]
    for p in candidates:
        try:
            if now - p.stat().st_mtime > TEMP_MAX_AGE:
                p.unlink()
                removed.append(str(p.relative_to(path)))
        except FileNotFoundError:
            continue
    return removed


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
