"""Keeping a repository small: packing, pruning what packs hold, packed refs,
stale temp files, and the write counter that says when that is due.

Each gitstore write adds one small pack of whole objects
(:mod:`gitstore.git.packwrite`); tags, merges and plain git add loose objects. A
conversation stored whole gets a full new copy with every commit, so
undeltified that is hundreds of times the data. :func:`compact` packs objects
with deltas (libgit2's pack builder), which brings a repository to about the
size ``git gc --aggressive`` reaches. The caller keeps the audit record
(:mod:`gitstore.ops.maintenance`, :mod:`gitstore.store.upkeep`). Invariants:

* nothing is removed before the pack that holds it is complete on disk: a loose
  object is deleted only if the new pack lists it, an old pack only if the new
  pack lists every object in it. A crash at any point leaves at worst redundant
  copies (and temp files, cleared by the next run); readers take no lock and
  are never broken (libgit2 rescans packs when an object it expected loose has
  moved);
* only ``prune`` deletes an object no pack holds, and only what no ref
  reaches (a full pack of everything reachable must exist, unless there are
  no refs at all); reflog entries naming such objects go first, so ``git
  fsck`` stays clean;
* an incremental run packs the loose objects together with the small packs
  a geometric progression calls for (:func:`packs_to_roll_up`: each pack left
  holds at least twice the objects of everything smaller), so a run costs about what was
  written since the last one (amortised: a pack is merged again only once as
  much has been written after it), packs stay logarithmic in number and no
  write ever waits for a repack of the whole history; ``full`` repacks
  everything reachable into one;
* a run without ``refs`` or ``prune`` touches no ref, no lock file and no
  directory a writer may be about to use, so it may run beside writers, outside
  their lock (objects a writer adds meanwhile are
  not among the objects and packs the run listed when it began, so nothing of
  theirs is removed); packing refs and pruning
  need the writer lock;
* :func:`count_write` keeps the bytes and writes since the last run in
  :data:`STATE_FILE`, so between runs the unpacked data is at most the limit
  plus one write and the small packs at most :data:`WRITES_PER_RUN`, plus what
  writers add while a run goes on (a crash can lose the count, never data).
  The file is opened with ``O_NOFOLLOW``: a symbolic link there is refused,
  never written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.core import lazy
from gitstore.errors import StorageError
from gitstore.git.repo import Repo

if TYPE_CHECKING:
    import shutil

    from gitstore.git import packs
else:  # only a run of maintenance needs them, not a write counting its bytes (core.lazy)
    packs = lazy.module("gitstore.git.packs")
    shutil = lazy.module("shutil")

STATE_FILE = "gitstore-maintenance"
MAX_PACKS = 16
RUN_OBJECTS = 4096
"""The most objects an incremental run merges, unless two packs already hold
more: a run that merges everything takes seconds, and every write meanwhile
adds a pack (:func:`packs_to_roll_up`)."""
WRITES_PER_RUN = 32
"""Automatic maintenance is due after this many writes at the latest."""
TEMP_MAX_AGE = 3600.0


class MaintenanceReport:
    """What one maintenance run of a repository did (filled in as it goes)."""

    __slots__ = (
        "bytes_after",
        "bytes_before",
        "customer",
        "kind",
        "loose_removed",
        "objects_packed",
        "packs_removed",
        "seconds",
        "temp_removed",
    )

    def __init__(self, customer: str, kind: str, *, bytes_before: int = 0) -> None:
        self.customer = customer
        self.kind = kind  # "incremental" | "full" | "prune" | "none"
        self.objects_packed = 0
        self.loose_removed = 0
        self.packs_removed = 0
        self.temp_removed: list[str] = []
        self.bytes_before = bytes_before
        self.bytes_after = 0
        self.seconds = 0.0

    def __repr__(self) -> str:
        return f"MaintenanceReport({self.summary()!r})"

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "kind": self.kind,
                "objects_packed": self.objects_packed, "loose_removed": self.loose_removed,
                "packs_removed": self.packs_removed, "temp_removed": self.temp_removed,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        """One line for the audit log."""
        return (f"{self.kind}: {self.objects_packed} packed, {self.loose_removed} loose "
                f"removed, {self.packs_removed} pack(s) removed, {self.bytes_before} -> "
                f"{self.bytes_after} bytes")


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


def packs_to_roll_up(indexes: list[Path], loose_objects: int) -> list[Path]:
    """The packs an incremental run merges with the loose objects (git's
    ``repack --geometric=2``, by object count, so compression does not skew it):
    from the largest down, a pack of at least twice the objects of everything
    smaller (the loose objects included) stays, and the first that is not goes,
    with everything smaller. So a run merges about what was written since the
    last, and the packs left grow geometrically (few: logarithmic in the
    history). A merge beyond :data:`RUN_OBJECTS` stops at the smallest packs
    within it (the rest wait), but never leaves more than :data:`MAX_PACKS`: the
    smallest go until it does not. A pack whose index cannot be read is left
    alone (``gitstore verify`` names it)."""
    counted = sorted((n, idx) for idx in indexes if (n := _objects_in(idx)) is not None)
    smaller = [loose_objects]  # smaller[k]: the loose objects and the packs before k
    for count, _ in counted:
        smaller.append(smaller[-1] + count)
    keep = len(counted)
    while keep > 0 and counted[keep - 1][0] >= 2 * smaller[keep - 1]:
        keep -= 1
    if keep > 2 and smaller[keep] > RUN_OBJECTS:  # a long run: writers' packs pile up
        keep = max(2, next(k for k in range(keep + 1) if smaller[k] > RUN_OBJECTS) - 1)
    keep = max(keep, len(counted) - MAX_PACKS + 1)  # packs left: len - keep + the new one
    return [idx for _, idx in counted[:keep]]


def _objects_in(idx: Path) -> int | None:
    """How many objects a pack index (version 2) lists: the last entry of its
    fan-out table; None when it cannot be read as one."""
    try:
        with idx.open("rb") as f:
            head = f.read(8 + 256 * 4)
    except OSError:
        return None
    if len(head) < 8 + 256 * 4 or head[:8] != b"\377tOc\0\0\0\2":
        return None
    return int.from_bytes(head[-4:], "big")


def compact(repo: Repo, path: Path, *, full: bool, prune: bool = False,
            refs: bool = True) -> MaintenanceReport:
    """Pack, remove packed loose objects, pack refs (with ``refs``), clear
    stale temp files; take what the write counter held when the run began off
    it (what writers add meanwhile is left for the next run). Call with the customer's writer
    lock held, except for a run without ``refs`` or ``prune`` (see above).

    ``prune`` (implies ``full``) also deletes every object that no ref reaches:
    the step that makes purged data unrecoverable (retention)."""
    start = time.monotonic()
    counted = _load_count(path)  # what this run covers; writes made meanwhile stay counted
    full = full or prune
    report = MaintenanceReport(path.name, "none", bytes_before=repo_bytes(path))
    report.temp_removed = clear_temp_files(path)
    if prune:  # reflog entries must not name what pruning deletes (git fsck checks them)
        repo.drop_unreachable_reflog_entries()
    loose = packs.loose_objects(path)
    old_packs = packs.pack_indexes(path)
    rolled = [] if full else packs_to_roll_up(old_packs, len(loose))
    if full or loose or len(rolled) > 1:
        report.kind = "full" if full else "incremental"
        wanted = None if full else sorted(set(loose).union(*(packs.pack_ids(i) for i in rolled)))
        idx, report.objects_packed = repo.write_pack(wanted)
        held = packs.pack_ids(idx) if idx is not None else set()
        # prune only what is provably unreachable: with refs, a pack must exist
        prune = prune and (idx is not None or not repo.refs())
        for oid, obj in loose.items():
            if oid in held or prune:
                _unlink(obj)
                report.loose_removed += 1
        for old in old_packs if full else rolled:
            if old != idx and (prune or packs.pack_ids(old) <= held):
                for sibling in old.parent.glob(old.stem + ".*"):
                    _unlink(sibling)
                report.packs_removed += 1
        if prune:
            report.kind = "prune"
    if refs:
        repo.compress_refs()
        remove_empty_fanouts(path)
    pending, writes = _load_count(path)
    _save_count(path, max(0, pending - counted[0]), max(0, writes - counted[1]))
    report.bytes_after = repo_bytes(path)
    report.seconds = time.monotonic() - start
    return report


def remove_empty_fanouts(path: Path) -> None:
    """Remove empty ``objects/??`` directories. Under the writer lock only: a
    writer creates the directory, then renames its object into it."""
    for fanout in (path / "objects").glob("??"):
        with contextlib.suppress(OSError):  # only empty directories go
            fanout.rmdir()


def count_write(path: Path, nbytes: int, limit: int) -> bool:
    """Count one write of ``nbytes`` to the repository at ``path``; True when
    the bytes since the last :func:`compact` reach ``limit``, or the writes reach
    :data:`WRITES_PER_RUN` (each gitstore write adds a small pack: see
    :mod:`gitstore.git.packwrite`), so maintenance is due (:func:`compact`
    takes what it covered off the count; until then every write finds it due).
    A ``limit`` of 0 or less turns counting off. Call with the customer's writer
    lock held."""
    if limit <= 0:
        return False
    pending, writes = _load_count(path)
    pending, writes = pending + nbytes, writes + 1
    _save_count(path, pending, writes)
    return _due(pending, writes, limit)


def is_due(path: Path, limit: int) -> bool:
    """Whether the writes counted since the last :func:`compact` make
    maintenance due (as :func:`count_write` would say, counting nothing)."""
    return limit > 0 and _due(*_load_count(path), limit)


def _due(pending: int, writes: int, limit: int) -> bool:
    return pending >= limit or writes >= WRITES_PER_RUN


def _load_count(path: Path) -> tuple[int, int]:
    try:
        fd = os.open(path / STATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0, 0
    try:
        fields = os.read(fd, 64).split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0, 0
    finally:
        os.close(fd)


def _save_count(path: Path, pending: int, writes: int = 0) -> None:
    """Overwrite the counter in place with one small write (this runs on every
    write to the store; a crash can at worst lose the count, never data)."""
    try:  # never through a symbolic link: it could point anywhere outside the store
        fd = os.open(path / STATE_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as exc:
        raise StorageError(f"cannot write {path / STATE_FILE}: {exc.strerror}"
                           + (" (a symbolic link?)" if exc.errno == errno.ELOOP else "")) \
            from None
    try:
        line = f"{pending} {writes}\n".encode("ascii")
        os.pwrite(fd, line, 0)
        os.ftruncate(fd, len(line))
    finally:
        os.close(fd)


def clear_temp_files(path: Path) -> list[str]:
    """Remove temp files libgit2 or gitstore left behind (crashed writers) older
    than :data:`TEMP_MAX_AGE`; returns them relative to ``path``."""
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
