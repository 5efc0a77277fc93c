"""The store's change journal: which customers' refs may have changed, in order.

``<root>/.gitstore/journal`` holds one customer repository name per line. Lines are
appended (``O_APPEND``, one ``write`` of one short line) by

* every gitstore write, after its refs moved (:func:`note`, from the writer's
  after-commit step through :meth:`gitstore.catalog.index.Index.changed`);
* the journal hook git runs in a customer repository after it changed any ref there
  (``reference-transaction``, state ``committed``: a push, ``update-ref``, a tag, a
  fetch): :func:`hook_script`, a POSIX shell script (no Python start-up on the push
  path) that ``gitstore hooks install`` puts into a store's bare repositories.

A warm query reads only the lines appended since the position the index keeps
(:func:`read`), instead of looking at the ref storage of every customer.

Invariants:

* a line is appended only after the ref change it announces is in the repository,
  so whoever reads the line and then the refs sees the change;
* the journal is advisory: a journal found missing, replaced or cut short
  (:func:`read` returns None), or a reboot since the last full scan (lines not yet on
  disk may be lost, :func:`boot_id`), costs one full scan, never a stale answer;
* only whole lines count (a line being written is read next time), and only lines
  that are customer names: the file is written by every pusher's hook, so anything
  else is ignored, never trusted as a path;
* the journal is never edited in place: a full scan may remove it when it has grown
  past :data:`ROTATE_BYTES` (before scanning, so nothing appended earlier is lost),
  and the next append creates it afresh.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import NamedTuple

from gitstore.core.names import STORE_DIR, check_customer
from gitstore.errors import StorageError, UsageError

__all__ = ["HOOK", "JOURNAL_FILE", "MARKER", "ROTATE_BYTES", "Position", "boot_id",
           "hook_script", "hooked", "note", "path_of", "position", "read", "rotate"]

JOURNAL_FILE = "journal"
#: The git hook that feeds the journal.
HOOK = "reference-transaction"
#: The line that marks the journal hook as gitstore's (also how :func:`hooked` knows it).
MARKER = "# gitstore-journal: installed by `gitstore hooks install`; reinstall, do not edit"
#: A full scan starts a new journal once the old one is this large.
ROTATE_BYTES = 1 << 20
_HOOKS_PATH = re.compile(rb"^\s*hookspath\s*=", re.IGNORECASE | re.MULTILINE)


def path_of(root: Path) -> Path:
    return root / STORE_DIR / JOURNAL_FILE


def note(root: Path, name: str) -> None:
    """Append ``name`` (a customer repository under ``root``) to the journal.
    Raises :class:`StorageError` when it cannot (the caller's change stands: the
    next full scan finds it)."""
    line = (check_customer(name) + "\n").encode("ascii")
    path = path_of(root)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot append to the change journal {path}: "
                           f"{exc.strerror or exc}") from None


class Position(NamedTuple):
    """How far the journal file ``(device, inode)`` has been read, in bytes, and the
    last bytes read (``tail``, hex: a file replaced under a reused inode number shows
    other bytes there). ``inode == 0``: there was no journal (all of a new one is unread)."""

    device: int
    inode: int
    offset: int
    tail: str = ""

    def __str__(self) -> str:
        return f"{self.device}:{self.inode}:{self.offset}:{self.tail}"

    @classmethod
    def parse(cls, text: str | None) -> Position | None:
        try:
            device, inode, offset, tail = str(text).split(":")
            bytes.fromhex(tail)
            return cls(int(device), int(inode), int(offset), tail)
        except ValueError:
            return None


NONE = Position(0, 0, 0)
#: How many of the last bytes read a position keeps.
TAIL = 16


def position(root: Path) -> Position:
    """The end of the last whole line of the journal now (:data:`NONE` when there is
    none, or it cannot be read: then the next :func:`read` reads all of it)."""
    try:
        fd = os.open(path_of(root), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return NONE
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return NONE
        start = max(0, st.st_size - 4096)
        data = os.pread(fd, st.st_size - start, start)
    finally:
        os.close(fd)
    end = data.rfind(b"\n") + 1
    if end == 0 and start > 0:
        return NONE  # no line end in the last 4 KiB: read it all next time
    return Position(st.st_dev, st.st_ino, start + end, data[max(0, end - TAIL):end].hex())


def read(root: Path, since: Position) -> tuple[set[str], Position] | None:
    """The customer names appended since ``since`` and the position after the last
    whole line read; None when the journal cannot say (it was replaced, removed or
    cut short since ``since``, or is not a regular file): then scan everything."""
    path = path_of(root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return (set(), NONE) if since.inode == 0 else None
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        start = 0 if since.inode == 0 else since.offset
        if since.inode and ((st.st_dev, st.st_ino) != (since.device, since.inode)
                            or st.st_size < start):
            return None
        seen = len(since.tail) // 2 if since.inode else 0
        data = os.pread(fd, st.st_size - start + seen, start - seen)
    finally:
        os.close(fd)
    if data[:seen].hex() != (since.tail if since.inode else ""):
        return None  # other bytes where we stopped: not the file we read
    whole = data[:data.rfind(b"\n") + 1]
    names = set()
    for raw in whole[seen:].split(b"\n"):
        try:
            names.add(check_customer(raw.decode("ascii").strip()))
        except (UnicodeDecodeError, UsageError):
            continue
    end = len(whole) if len(whole) > seen else seen
    return names, Position(st.st_dev, st.st_ino, start - seen + end,
                           data[max(0, end - TAIL):end].hex())


def rotate(root: Path) -> Position:
    """Remove a journal larger than :data:`ROTATE_BYTES` (a full scan is about to read
    every customer, so no line is lost); the position to keep after the scan."""
    current = position(root)
    if current.offset > ROTATE_BYTES:
        try:
            os.unlink(path_of(root))
        except FileNotFoundError:
            pass
        except OSError:
            return current
        return NONE
    return current


def boot_id() -> str:
    """This machine's boot id ("" where the system has none): lines a crash lost were
    written before the last boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def hook_script() -> str:
    """The ``reference-transaction`` hook: on ``committed``, append the repository's
    name to the journal of the store it sits in (its parent directory, when that
    has a ``.gitstore``). It never fails a ref update (git ignores its status after
    the commit, and it exits 0 before)."""
    return "\n".join([
        "#!/bin/sh",
        MARKER,
        '[ "$1" = committed ] || exit 0',
        "cat >/dev/null",
        'repo=$(pwd -P) || exit 0',
        'store=${repo%/*}',
        f'[ -d "$store/{STORE_DIR}" ] || exit 0',
        f"printf '%s\\n' \"${{repo##*/}}\" >> \"$store/{STORE_DIR}/{JOURNAL_FILE}\" 2>/dev/null",
        "exit 0",
        "",
    ])


def hooked(repo_dir: Path) -> bool:
    """Whether git runs the journal hook in ``repo_dir``: the hook is gitstore's and
    executable, and the repository's config does not move its hooks elsewhere
    (``core.hooksPath``). Conservative: when unsure, False (the customer's ref
    storage is then looked at on every query)."""
    hook = repo_dir / "hooks" / HOOK
    try:
        st = os.stat(hook)
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IXUSR:
            return False
        with open(hook, "rb") as f:
            if MARKER.encode() not in f.read(4096):
                return False
        with open(repo_dir / "config", "rb") as f:
            return _HOOKS_PATH.search(f.read(1 << 16)) is None
    except OSError:
        return False
