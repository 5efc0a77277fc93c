"""Maintaining a customer's repository: :func:`gitstore.git.housekeeping.compact`
under the customer's writer lock, with a record in its audit log.

The packing itself, its safety rules and the write counter live in
:mod:`gitstore.git.housekeeping`. Invariants added here:

* maintenance runs under the customer's writer lock, so no gitstore writer is
  between writing objects and moving a ref; readers take no lock and are never
  blocked;
* every run leaves one ``maintain`` record in the customer's audit log;
* a lock file a dead process left in the repository (``packed-refs.lock`` after
  a killed ``retention apply``, a ref lock) is cleared first, after the same
  grace as a writer gives it, and recorded; a lock still held by a live
  process makes the run a :class:`~gitstore.errors.ConflictError`;
* a run also holds the customer's maintenance lock, so it never overlaps the
  automatic runs of :mod:`gitstore.store.upkeep` (which start in the background
  after a write once the data written since the last run exceeds
  ``maintenance_bytes``, default 16 MiB uncompressed; ``0`` turns them off).
"""

from __future__ import annotations

from gitstore.git.housekeeping import MaintenanceReport, compact
from gitstore.git.locking import writer_lock
from gitstore.store.context import CustomerContext
from gitstore.store.upkeep import maintenance_lock_name

__all__ = ["MaintenanceReport", "maintain", "maintain_locked"]


def maintain(customer: CustomerContext, *, full: bool = False,
             prune: bool = False) -> MaintenanceReport:
    """Pack, prune packed loose objects, pack refs, clear stale temp files.

    ``prune`` (implies ``full``) also deletes every object that no ref reaches:
    the step that makes purged data unrecoverable (retention). Only use it when
    nothing unreferenced should survive; ordinary maintenance never prunes."""
    with customer.locked():
        return maintain_locked(customer, full=full or prune, prune=prune)


def maintain_locked(customer: CustomerContext, *, full: bool,
                    prune: bool = False) -> MaintenanceReport:
    """:func:`maintain` for a caller that already holds the customer's writer lock."""
    customer.clear_stale_locks()
    store = customer.store
    with writer_lock(store.lock_dir, maintenance_lock_name(customer.name),
                     store.config.lock_timeout):
        report = compact(customer.repo, customer.path, full=full, prune=prune)
    customer.audit("maintain", detail=report.summary())
    return report
