"""Automatic maintenance, off the writers' path.

A write counts its bytes (:func:`gitstore.git.housekeeping.count_write`)
under the writer lock; once ``maintenance_bytes`` have been written since the
last run, the write, after it has released the lock and returned its result
to nobody yet, starts one background run for that customer (:func:`start`).
Invariants:

* no writer ever waits for a repack: the run packs objects outside the writer
  lock (a run that touches no ref and removes only what it packed: see
  :mod:`gitstore.git.housekeeping`), whole for a repository under
  :data:`FULL_BELOW`, geometrically above; then it takes the writer lock only
  to pack refs, and only if it gets it within :data:`REFS_WAIT` (a stream of
  writes is never held up, and never holds the run up: the refs wait for the
  next run); the audit record has the access log's own lock;
* at most one run per customer at a time, store-wide: the run holds the
  customer's maintenance lock (:func:`maintenance_lock_name`), taken without
  waiting (a run already going is enough); ``gitstore maintain`` takes it too;
* the run works on its own repository handle, in a thread of lowered priority;
  the thread is not a daemon, so a process that exits waits for it rather than
  leaving a half-written pack (which would be harmless: temp files are cleared
  by the next run); :func:`wait` joins the runs started in this process;
* a failed run loses nothing: it is reported through the store's warning
  callback and the next write that finds maintenance due tries again;
* a run that ends with maintenance due again (writers added that much while it
  went on) goes on with an incremental run, up to :data:`FOLLOW_UPS` times, so
  a store left at rest after a stream of writes is compact: not left holding
  the small packs written during its last run until the next write; but not
  once the process's main thread has ended (a one-shot command exiting waits
  for the run it started, never for follow-ups other processes' writes call for).
"""

from __future__ import annotations

import contextlib
import os
import threading

from gitstore.errors import ConflictError, GitStoreError
from gitstore.git import housekeeping
from gitstore.git.locking import writer_lock
from gitstore.git.repo import Repo
from gitstore.store.context import CustomerContext

__all__ = ["maintenance_lock_name", "start", "wait"]

FULL_BELOW = 4 * 1024 * 1024
"""A repository smaller than this is repacked whole (deltas across all of it, about
``git gc --aggressive``'s size, in about a second); a larger one geometrically, by
what was written, so no run's time grows with the history (a whole repack of a
2,000-turn session took seconds, while every write added a pack)."""

REFS_WAIT = 0.25
"""How long a run waits for the writer lock to pack refs (it skips that step
rather than wait behind a stream of writes: refs are few, the next run packs them)."""

FOLLOW_UPS = 8
"""At most this many incremental runs follow a run in the same thread, while
maintenance stays due (a stream of writes that outpaces them waits for its next
write to start another)."""

_running: dict[str, threading.Thread] = {}
_guard = threading.Lock()


def maintenance_lock_name(customer: str) -> str:
    """The lock file name of a customer's maintenance (a leading dot: no customer
    has this name)."""
    return f".maintain-{customer}"


def start(customer: CustomerContext) -> threading.Thread | None:
    """Start a background maintenance run for ``customer`` unless one is already
    running in this process; returns the thread (None when none was started)."""
    key = str(customer.path)
    with _guard:
        running = _running.get(key)
        if running is not None and running.is_alive():
            return None
        thread = threading.Thread(target=_run, args=(customer,), daemon=False,
                                  name=f"gitstore-maintain-{customer.name}")
        _running[key] = thread
    thread.start()
    return thread


def wait(timeout: float | None = None) -> bool:
    """Join the maintenance runs this process started; True when none is left."""
    with _guard:
        threads = list(_running.values())
    for thread in threads:
        thread.join(timeout)
    with _guard:
        for key, thread in list(_running.items()):
            if not thread.is_alive():
                del _running[key]
        return not _running


def _run(customer: CustomerContext) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not every platform has it
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    limit = customer.store.config.maintenance_bytes
    for n in range(1 + FOLLOW_UPS):
        if not _once(customer, first=n == 0) or not housekeeping.is_due(customer.path, limit) \
                or not threading.main_thread().is_alive():  # exiting: the next write follows up
            return


def _once(customer: CustomerContext, *, first: bool) -> bool:
    """One run (whole when ``first`` and the repository is small); False when it
    did not run (another process holds the maintenance lock) or failed."""
    store = customer.store
    try:
        try:
            with writer_lock(store.lock_dir, maintenance_lock_name(customer.name), 0.0):
                repo = Repo.open(customer.path)  # its own handle: this is another thread
                full = first and housekeeping.repo_bytes(customer.path) < FULL_BELOW
                report = housekeeping.compact(repo, customer.path, full=full, refs=False)
        except ConflictError:
            return False  # another process is maintaining this customer now
        detail = report.summary()
        try:  # a short wait: busy writers are not held up, nor is this run held by them
            with customer.locked(REFS_WAIT):
                repo.compress_refs()
                housekeeping.remove_empty_fanouts(customer.path)
        except ConflictError:
            detail += "; refs left loose (writers busy: the next run packs them)"
        if first or report.kind != "none":  # a follow-up that found nothing to do is quiet
            customer.audit("maintain", detail=detail)
    except (GitStoreError, OSError) as exc:
        if store.warn is not None:
            store.warn(f"automatic maintenance of {customer.name} failed ({exc}); "
                       "run `gitstore maintain`")
        return False
    return True
