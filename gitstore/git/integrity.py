"""Finding and mending damage: unreadable objects, broken refs, a damaged
``packed-refs`` or ``HEAD``, stray locks, symbolic links, reflog entries that
would name pruned commits.

Functions here take a pygit2 repository handle and its git directory; the
:class:`gitstore.git.repo.Repo` methods of the same names are the way in from
above the git layer. Invariants:

* nothing is deleted: a damaged file, a broken ref file or a stale lock is
  moved into an ``aside`` directory when the caller gives one (only a stale
  lock without ``aside`` and a reflog entry naming an unreachable commit are
  removed);
* an object copied from a repair source is written by content and its id
  checked, so a source cannot put different data under a known id;
* every walk over the object graph is the one of :mod:`gitstore.git.walk`;
* nothing here follows a symbolic link inside a repository: :func:`symlinks`
  names them, and files are moved aside as links, never through them;
* a ``packed-refs`` file that does not parse is never trusted in part by
  libgit2 (it refuses every ref): :func:`packed_refs_problems` names the bad
  lines and :func:`salvage_packed_refs` keeps the good ones (the original goes
  aside).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gitstore.core import lazy
from gitstore.errors import StorageError
from gitstore.git.packs import pack_ids, pack_indexes
from gitstore.git.refs import loose_ref_files
from gitstore.git.walk import reachable, unreadable

if TYPE_CHECKING:
    import pygit2
else:
    pygit2 = lazy.module("pygit2")


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

    try:
        names = list(repo.references)
    except pygit2.GitError as exc:  # a damaged packed-refs: no ref can be listed
        return [f"refs cannot be listed ({exc}): no object was checked"]
    for name in names:
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


def copy_reachable(repo: pygit2.Repository, source: pygit2.Repository,
                   also: Iterable[str] = ()) -> int:
    """Copy into ``repo`` every object reachable from its refs (or, for a ref
    it cannot resolve, from the source's ref of that name) and from the ids in
    ``also`` that it lacks and ``source`` has. Returns the count."""
    starts: list[pygit2.Oid | str] = list(also)
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
        except unreadable():
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
        except unreadable():
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
    """Refs that cannot be read or point at objects that do not exist (with a
    damaged ``packed-refs``, only loose refs can be judged)."""
    broken = []
    names = set(loose_ref_files(git_dir))
    with contextlib.suppress(pygit2.GitError):  # a damaged packed-refs: named elsewhere
        names |= set(repo.references)
    for name in sorted(names):
        try:
            target = repo.references[name].resolve().target
            repo[target]
        except unreadable():
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
    if path.is_file() or path.is_symlink():
        dest = aside / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    repo.create_reference_direct(name, target, True, message="gitstore: repair")
    return True


# -- packed-refs and HEAD ---------------------------------------------------------

_PACKED_LINE = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64}) (refs/[^\x00- \x7f~^:?*\[\\]+)")
_PEELED_LINE = re.compile(rb"\^([0-9a-f]{40}|[0-9a-f]{64})")


def _packed_lines(git_dir: Path) -> list[tuple[bytes, bool]] | None:
    """Each line of ``packed-refs`` with whether it is valid; None without the file."""
    path = git_dir / "packed-refs"
    try:
        data = path.read_bytes() if not path.is_symlink() else b"\x00"
    except FileNotFoundError:
        return None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out: list[tuple[bytes, bool]] = []
    after_ref = False
    for n, line in enumerate(lines):
        if n == 0 and line.startswith(b"# pack-refs with:"):
            ok, after_ref = True, False
        elif _PACKED_LINE.fullmatch(line):
            ok, after_ref = True, True
        elif _PEELED_LINE.fullmatch(line) and after_ref:
            ok, after_ref = True, False
        else:
            ok, after_ref = False, False
        out.append((line, ok))
    if data and not data.endswith(b"\n"):
        out[-1] = (out[-1][0], False)  # a cut-off last line
    return out


def packed_refs_problems(git_dir: Path) -> list[str]:
    """One line per damaged line of ``packed-refs`` (empty if it parses or is absent)."""
    if (git_dir / "packed-refs").is_symlink():
        return ["packed-refs is a symbolic link"]
    lines = _packed_lines(git_dir) or []
    bad = [n for n, (_, ok) in enumerate(lines, 1) if not ok]
    if not bad:
        return []
    shown = ", ".join(str(n) for n in bad[:5]) + (", ..." if len(bad) > 5 else "")
    return [f"packed-refs is damaged: line(s) {shown} of {len(lines)} are not refs, so git "
            "can read none of its refs"]


def salvage_packed_refs(git_dir: Path, aside: Path) -> int | None:
    """Move a damaged ``packed-refs`` into ``aside`` and write back only its valid
    ref lines; returns how many refs were kept, None if it was not damaged."""
    if not packed_refs_problems(git_dir):
        return None
    lines = [] if (git_dir / "packed-refs").is_symlink() else _packed_lines(git_dir) or []
    good: list[bytes] = []
    for line, ok in lines:
        if ok and not (line.startswith(b"^") and not good):
            good.append(line)
    dest = aside / "packed-refs"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(git_dir / "packed-refs", dest)
    if any(_PACKED_LINE.fullmatch(line) for line in good):
        tmp = git_dir / "packed-refs.gitstore-tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(line + b"\n" for line in good))
        os.replace(tmp, git_dir / "packed-refs")
    return sum(1 for line in good if _PACKED_LINE.fullmatch(line))


def head_problem(repo: pygit2.Repository, git_dir: Path) -> str | None:
    """What is wrong with ``HEAD``, if anything: unreadable, detached, or a symbolic
    link. (Pointing at a branch that does not exist yet is normal in a new
    repository; callers judge that.)"""
    if (git_dir / "HEAD").is_symlink():
        return "HEAD is a symbolic link"
    try:
        head = repo.references["HEAD"]
    except KeyError:
        return "HEAD is missing"
    except pygit2.GitError as exc:
        return f"HEAD is unreadable ({exc})"
    if not isinstance(head.target, str):
        return f"HEAD is detached at {str(head.target)[:12]} instead of naming a scenario branch"
    return None


def restore_head(git_dir: Path, ref: str, aside: Path) -> None:
    """Point ``HEAD`` at ``ref`` by writing the file itself (libgit2 refuses to
    touch an unreadable HEAD); the old file goes into ``aside``."""
    head = git_dir / "HEAD"
    if head.exists() or head.is_symlink():
        aside.mkdir(parents=True, exist_ok=True)
        os.replace(head, aside / "HEAD")
    tmp = git_dir / "HEAD.gitstore-tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(f"ref: {ref}\n")
    os.replace(tmp, head)


def repository_problem(git_dir: Path) -> str | None:
    """Why ``git_dir`` is not a usable repository (None if it looks like one)."""
    if git_dir.is_symlink():
        return "is a symbolic link, not a repository directory"
    if not git_dir.is_dir():
        return "is not a directory"
    try:
        entries = {e.name for e in os.scandir(git_dir)}
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if not entries:
        return "is an empty directory, not a git repository (its contents are gone)"
    missing = [n for n in ("HEAD", "objects", "refs") if n not in entries]
    if len(missing) == 3:
        return "is a plain directory, not a git repository (no HEAD, objects/ or refs/)"
    kinds = {"HEAD": stat.S_ISREG, "objects": stat.S_ISDIR, "refs": stat.S_ISDIR}
    wrong = [n for n in kinds if n not in missing
             and not kinds[n](os.lstat(git_dir / n).st_mode)]
    if missing or wrong:
        parts = [f"{n}{'/' if n != 'HEAD' else ''} is missing" for n in missing]
        parts += [f"{n} is not a {'file' if n == 'HEAD' else 'directory'}" for n in wrong]
        return f"is a damaged git repository: {', '.join(parts)}"
    return None


def symlinks(git_dir: Path) -> list[str]:
    """Every symbolic link inside the repository directory, relative to it
    (gitstore writes no links and follows none)."""
    found = []
    for dirpath, dirs, names in os.walk(git_dir):
        for n in [*dirs, *names]:
            path = os.path.join(dirpath, n)
            if os.path.islink(path):
                found.append(os.path.relpath(path, git_dir))
    return sorted(found)


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
        except unreadable():
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
            if path.is_symlink():  # never read or rewrite through a link
                continue
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
                tmp.unlink(missing_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(b"".join(keep))
                os.replace(tmp, path)
    return dropped
