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

import importlib as _importlib
import typing as _typing

from gitstore.errors import (
    ConflictError,
    GitStoreError,
    InputTooLargeError,
    IntegrityError,
    InvalidDocumentError,
    InvalidNameError,
    KeyUnavailableError,
    NotFoundError,
    RejectedError,
    RemoteError,
    RenderError,
    ShreddedError,
    StorageError,
    UsageError,
    VersionRuleError,
    Violation,
)
from gitstore.version import __version__

if _typing.TYPE_CHECKING:
    from gitstore.core.commits import Identity
    from gitstore.core.versions import Scenario, Version
    from gitstore.rules.pipeline import Pipeline
    from gitstore.rules.proposal import Hook, Proposal
    from gitstore.store.facade import Customer, Resumed, Store
    from gitstore.store.history import LogEntry, Snapshot, VersionInfo
    from gitstore.store.merges import PendingMerge
    from gitstore.store.session import Session
    from gitstore.store.writer import Authorship, Plan, Writer, Written

#: Where each lazily imported public name lives: ``import gitstore`` (and so the
#: CLI's start-up) loads none of the library until a name is first used.
_LAZY = {
    "Identity": "gitstore.core.commits",
    "Scenario": "gitstore.core.versions",
    "Version": "gitstore.core.versions",
    "Pipeline": "gitstore.rules.pipeline",
    "Hook": "gitstore.rules.proposal",
    "Proposal": "gitstore.rules.proposal",
    "Customer": "gitstore.store.facade",
    "Resumed": "gitstore.store.facade",
    "PendingMerge": "gitstore.store.merges",
    "LogEntry": "gitstore.store.history",
    "Snapshot": "gitstore.store.history",
    "Store": "gitstore.store.facade",
    "VersionInfo": "gitstore.store.history",
    "Session": "gitstore.store.session",
    "Authorship": "gitstore.store.writer",
    "Plan": "gitstore.store.writer",
    "Writer": "gitstore.store.writer",
    "Written": "gitstore.store.writer",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gitstore' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Authorship",
    "ConflictError",
    "Customer",
    "GitStoreError",
    "Hook",
    "Identity",
    "InputTooLargeError",
    "IntegrityError",
    "InvalidDocumentError",
    "InvalidNameError",
    "KeyUnavailableError",
    "LogEntry",
    "NotFoundError",
    "PendingMerge",
    "Pipeline",
    "Plan",
    "Proposal",
    "RejectedError",
    "RemoteError",
    "RenderError",
    "Resumed",
    "Scenario",
    "Session",
    "ShreddedError",
    "Snapshot",
    "StorageError",
    "Store",
    "UsageError",
    "Version",
    "VersionInfo",
    "VersionRuleError",
    "Violation",
    "Writer",
    "Written",
    "__version__",
]
