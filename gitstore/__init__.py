"""gitstore: a Git-backed versioned document store for AI-agent sessions.

Public API::

    from gitstore import Store
    store = Store.init("sessions")
    session = store.customer("customer-xyz789").new_session()
    session.append_turn({...})
    session.finalize()

Everything importable from this module is public and stable within a major
release; submodules are implementation details unless documented.
"""

from __future__ import annotations

__version__ = "0.1.0"

from gitstore.core.commits import Identity
from gitstore.core.versions import Scenario, Version
from gitstore.errors import (
    ConflictError,
    GitStoreError,
    InputTooLargeError,
    IntegrityError,
    InvalidDocumentError,
    InvalidNameError,
    NotFoundError,
    RenderError,
    StorageError,
    UsageError,
    VersionRuleError,
    Violation,
)
from gitstore.rules.pipeline import Pipeline
from gitstore.rules.proposal import Hook, Proposal
from gitstore.store.facade import Customer, LogEntry, Snapshot, Store, VersionInfo
from gitstore.store.session import Session, Written

__all__ = [
    "ConflictError",
    "Customer",
    "GitStoreError",
    "Hook",
    "Identity",
    "InputTooLargeError",
    "IntegrityError",
    "InvalidDocumentError",
    "InvalidNameError",
    "LogEntry",
    "NotFoundError",
    "Pipeline",
    "Proposal",
    "RenderError",
    "Scenario",
    "Session",
    "Snapshot",
    "StorageError",
    "Store",
    "UsageError",
    "Version",
    "VersionInfo",
    "VersionRuleError",
    "Violation",
    "Written",
    "__version__",
]
