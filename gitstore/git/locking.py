"""Per-customer writer locks.

Writers to one customer repository are serialised by an exclusive ``flock`` on
``<root>/.gitstore/locks/<customer>.lock``. The kernel drops the lock when its
holder exits, however it exits (SIGKILL included), so a crashed writer never
leaves a lock that blocks the next one; the lock file itself is never deleted,
which keeps the flock protocol race-free. Writers to different customers use
different files and never wait on each other. Readers take no lock: they read
immutable objects and atomically updated refs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gitstore.errors import ConflictError, StorageError


@contextmanager
def writer_lock(lock_dir: Path, customer: str, timeout: float) -> Iterator[None]:
    """Hold the customer's writer lock for the duration of the block.

    Waits up to ``timeout`` seconds (polling with exponential backoff capped at
    4 ms, so a waiting writer takes over soon after the holder is done), then
    raises :class:`ConflictError`.
    """
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{customer}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open writer lock in {lock_dir}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StorageError(f"cannot lock {customer}: {exc.strerror}") from None
            if time.monotonic() >= deadline:
                raise ConflictError(
                    f"timed out after {timeout:g}s waiting for another writer to {customer}")
            time.sleep(delay)
            delay = min(delay * 2, 0.004)  # short: hand-offs between writers stay quick
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
