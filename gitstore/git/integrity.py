"""Finding and mending damage: unreadable objects, broken refs, stray locks,
reflog entries that would name pruned commits.

Functions here take a pygit2 repository handle and its git directory; the
:class:`gitstore.git.repo.Repo` methods of the same names are the way in from
above the git layer. Invariants:

* nothing is deleted: a damaged file, a broken ref file or a stale lock is
  moved into an ``aside`` directory when the caller gives one (only a stale
  lock without ``aside`` and a reflog entry naming an unreachable commit are
  removed);
* an object copied from a repair source is written by content and its id
  checked, so a source cannot put different data under a known id;
* every walk over the object graph is the one of :mod:`gitstore.git.walk`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pygit2

from gitstore.errors import StorageError
from gitstore.git.packs import pack_ids, pack_indexes
from gitstore.git.walk import UNREADABLE, reachable


def check_objects(repo: pygit2.Repository) -> list[str]:
    """Read every object reachable from every ref; return a line per problem.

    libgit2 verifies each object's hash as it reads it, so a corrupted or
    missing object, or a damaged pack, shows up here."""
    problems: list[str] = []
    seen: set[pygit2.Oid] = set()

    def read(oid: pygit2.Oid) -> pygit2.Object:
        obj = repo[oid]
        obj.read_raw()
        return obj

    for name in list(repo.references):
        try:
            start = repo.references[name].resolve().target
        except (pygit2.GitError, KeyError) as exc:
            problems.append(f"ref {name} is broken: {exc}")
            continue

        def report(oid: pygit2.Oid, exc: Exception, name: str = name) -> None:
            if isinstance(exc, KeyError):
                problems.append(f"object {oid} (reachable from {name}) is missing")
            else:
                problems.append(f"object {oid} (reachable from {name}) is corrupt: {exc}")

        for _ in reachable(repo, [pygit2.Oid(hex=str(start))], seen=seen, read=read,
                           fallback=report):
            pass
    return problems


def copy_reachable(repo: pygit2.Repository, source: pygit2.Repository) -> int:
    """Copy into ``repo`` every object reachable from its refs (or, for a ref
    it cannot resolve, from the source's ref of that name) that it lacks and
    ``source`` has. Returns the count."""
    starts = []
    for name in list(repo.references):
        try:
            starts.append(repo.references[name].resolve().target)
        except (pygit2.GitError, KeyError):
            ref = source.references.get(name)
            if ref is not None:
                starts.append(ref.resolve().target)
    copied = 0

    def fetch(oid: pygit2.Oid, _exc: Exception) -> pygit2.Object | None:
        nonlocal copied
        try:
            kind, data = source.odb.read(oid)
        except UNREADABLE:
            return None
        if repo.odb.write(kind, data) != oid:
            raise StorageError(f"object {oid} from the source does not hash to its id")
        copied += 1
        return repo[oid]

    for _ in reachable(repo, [pygit2.Oid(hex=str(s)) for s in starts], fallback=fetch):
        pass
    return copied


def damaged_objects(repo: pygit2.Repository, git_dir: Path) -> list[tuple[str, Path]]:
    """Objects in the database that fail to read (bad zlib, bad hash, damaged
    pack), each with the file that holds it (a loose object or a pack)."""
    damaged = []
    objects = git_dir / "objects"
    for oid in repo.odb:
        try:
            repo.odb.read(oid)
        except UNREADABLE:
            hexid = str(oid)
            loose = objects / hexid[:2] / hexid[2:]
            damaged.append((hexid, loose if loose.exists() else _pack_of(git_dir, hexid)))
    return damaged


def _pack_of(git_dir: Path, hexid: str) -> Path:
    """The pack whose index lists ``hexid`` (the pack directory if none does)."""
    for idx in pack_indexes(git_dir):
        try:
            if hexid in pack_ids(idx):
                return idx.with_suffix(".pack")
        except StorageError:  # not a version 2 index: not ours to judge
            continue
    return git_dir / "objects" / "pack"


def broken_refs(repo: pygit2.Repository, git_dir: Path) -> list[str]:
    """Refs that cannot be read or point at objects that do not exist."""
    broken = []
    names = {str(p.relative_to(git_dir)) for p in (git_dir / "refs").rglob("*")
             if p.is_file() and not p.name.endswith(".lock")}
    names |= set(repo.references)
    for name in sorted(names):
        try:
            target = repo.references[name].resolve().target
            repo[target]
        except UNREADABLE:
            broken.append(name)
    return broken


def restore_ref(repo: pygit2.Repository, git_dir: Path, name: str,
                source: pygit2.Repository, aside: Path) -> bool:
    """Set a broken ref to the source's value of it (if the source has it);
    the broken ref file is moved into ``aside``, never deleted."""
    ref = source.references.get(name)
    if ref is None:
        return False
    target = ref.resolve().target
    path = git_dir / name
    if path.is_file():
        dest = aside / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    repo.create_reference_direct(name, target, True, message="gitstore: repair")
    return True


def stray_locks(git_dir: Path) -> list[str]:
    """Lock files left in the git directory (``HEAD.lock``, ``packed-refs.lock``,
    ``refs/**.lock``, ...), relative to it. Only the top level and ``refs/``
    are searched: that is where git and libgit2 take locks."""
    found = [name for name in os.listdir(git_dir) if name.endswith(".lock")]
    for dirpath, _dirs, names in os.walk(git_dir / "refs"):
        found.extend(os.path.relpath(os.path.join(dirpath, n), git_dir)
                     for n in names if n.endswith(".lock"))
    return sorted(found)


def clear_stale_locks(git_dir: Path, grace: float = 2.0,
                      aside: Path | None = None) -> list[str]:
    """Remove lock files a dead process left behind (into ``aside`` if given);
    return their names.

    Call only while holding the customer's writer lock: gitstore's writers
    take ref locks only then, and for milliseconds. A lock that is still
    there after ``grace`` seconds was left by a process that died (a plain
    git process holds one for milliseconds too)."""
    locks = stray_locks(git_dir)
    deadline = time.monotonic() + grace
    while locks and time.monotonic() < deadline:
        time.sleep(0.02)
        locks = [rel for rel in locks if (git_dir / rel).exists()]
    removed = []
    for rel in locks:
        try:
            if aside is None:
                (git_dir / rel).unlink()
            else:
                (aside / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(git_dir / rel, aside / rel)
            removed.append(rel)
        except FileNotFoundError:
            continue
    return removed


def drop_unreachable_reflog_entries(repo: pygit2.Repository, git_dir: Path) -> int:
    """Drop every reflog entry naming an object that no ref reaches; remove
    reflogs of refs that no longer exist. Returns the entries dropped.

    After refs are deleted or moved to a new root (a retention purge), the
    old entries would keep naming commits that pruning deletes, and git
    (``fsck``, ``reflog``, ``gc``) would report them as broken."""
    targets = []
    for name in list(repo.references):
        try:
            target = repo.references[name].resolve().target
            repo[target]
        except UNREADABLE:
            continue
        targets.append(pygit2.Oid(hex=str(target)))
    kept = {str(obj.id) for obj in reachable(repo, targets, trees=False)}
    kept.add("0" * 40)
    names = set(repo.references)
    dropped = 0
    logs = git_dir / "logs"
    for dirpath, _dirs, files in os.walk(logs):
        for file in files:
            path = Path(dirpath) / file
            ref = str(path.relative_to(logs))
            lines = path.read_bytes().splitlines(keepends=True)
            keep = [line for line in lines
                    if all(part.decode("ascii", "replace") in kept
                           for part in line.split(b" ", 2)[:2])]
            if ref != "HEAD" and ref not in names:
                dropped += len(lines)
                path.unlink()
            elif len(keep) != len(lines):
                dropped += len(lines) - len(keep)
                tmp = path.with_name(path.name + ".gitstore-tmp")
                tmp.write_bytes(b"".join(keep))
                os.replace(tmp, path)
    return dropped
