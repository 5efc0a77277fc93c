"""Per-customer writer locks.

Writers to one customer repository are serialised by an exclusive ``flock`` on
``<root>/.gitstore/locks/<customer>.lock``. The kernel drops the lock when its
holder exits, however it exits (SIGKILL included), so a crashed writer never
leaves a lock that blocks the next one; the lock file itself is never deleted,
which keeps the flock protocol race-free. Writers to different customers use
different files and never wait on each other. Readers take no lock: they read
immutable objects and atomically updated refs.

The lock directory is created 0700 and lock files 0600 (a stricter umask wins), like
everything gitstore creates under the store root. A writer that has waited
:data:`WAIT_NOTICE` seconds calls its ``on_wait`` callback once (the CLI says so on
stderr); this module itself never prints.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from gitstore.errors import ConflictError, StorageError

#: Seconds a writer waits for the lock before ``on_wait`` is called.
WAIT_NOTICE = 1.0

T = TypeVar("T")


def private_dirs(path: Path, levels: int = 1) -> None:
    """Create ``path`` and up to ``levels - 1`` missing parents with mode 0700 (less
    under a stricter umask); parents above those get the default mode."""
    missing = [p for p in [path, *path.parents][:levels] if not p.exists()]
    if missing:
        missing[-1].parent.mkdir(parents=True, exist_ok=True)
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)


@contextmanager
def writer_lock(lock_dir: Path, customer: str, timeout: float,
                on_wait: Callable[[str], None] | None = None,
                until: Callable[[], T | None] | None = None) -> Iterator[T | None]:
    """Hold the customer's writer lock for the duration of the block.

    Waits up to ``timeout`` seconds (polling with exponential backoff capped at
    1 ms, so a waiting writer takes over soon after the holder is done), then
    raises :class:`ConflictError`. ``on_wait(customer)`` is called once if the
    lock is still held by another writer after :data:`WAIT_NOTICE` seconds.
    ``until`` is asked between tries: once it returns a value, the wait ends
    without the lock and the block gets that value (holding the lock, it gets
    None). One open file serves every try.
    """
    try:
        private_dirs(lock_dir, levels=2)  # <root>/.gitstore/locks
        fd = os.open(lock_dir / f"{customer}.lock",  # never through a symbolic link
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open writer lock in {lock_dir}: {exc.strerror}") from None
    try:
        start = time.monotonic()
        deadline = start + timeout
        notice = start + WAIT_NOTICE if on_wait is not None else None
        delay = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StorageError(f"cannot lock {customer}: {exc.strerror}") from None
            if until is not None and (found := until()) is not None:
                yield found
                return
            now = time.monotonic()
            if now >= deadline:
                raise ConflictError(
                    f"timed out after {timeout:g}s waiting for another writer to {customer}")
            if notice is not None and now >= notice and on_wait is not None:
                notice = None
                on_wait(customer)
            time.sleep(delay)
            delay = min(delay * 2, 0.001)  # short: hand-offs between writers stay quick
        try:
            yield None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
