"""The facade: :class:`Store` hands out :class:`Customer` objects, which hand out
:class:`~gitstore.store.session.Session` objects and read-only :class:`Snapshot` views.

Layout on disk::

    <root>/
      .gitstore/config.json        store settings (optional)
      .gitstore/locks/<name>.lock  per-customer writer locks
      <api_key>/                   one bare git repository per customer
        refs/heads/v1, v2, ...     one branch per deployment scenario (major)
        refs/tags/v1.0.0, ...      one annotated tag per finalized version
        HEAD -> refs/heads/vN      the newest scenario

Invariants: a customer name always passes :func:`gitstore.core.names.check_customer`
before it is joined to the root, so no request can reach outside its own
repository; readers never take locks and never see a half-written commit.
"""

from __future__ import annotations

import os
import secrets as token_source
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from gitstore.core.diff import Diff
from gitstore.core.names import STORE_DIR
from gitstore.core.versions import Scenario, Version
from gitstore.errors import StorageError, UsageError
from gitstore.git import signing
from gitstore.store import config as config_mod
from gitstore.store import history
from gitstore.store.context import NAME_KEY_FILE, CustomerContext, StoreContext
from gitstore.store.history import LogEntry, Snapshot, VersionInfo, pick_scenario
from gitstore.store.session import Session


class Store(StoreContext):
    """A directory of customer repositories.

    ``Store(root)`` opens an existing store; ``Store(root, create=True)`` (or
    :meth:`Store.init`) creates the directory first. Keyword arguments override
    the store's configuration (see :class:`gitstore.store.config.Config`); ``hooks``
    are extra pre-commit checks run after the built-in ones.
    """

    @classmethod
    def init(cls, root: str | os.PathLike[str] = "sessions", **kwargs: Any) -> Store:
        """Create (if needed) and open a store; idempotent."""
        store = cls(root, create=True, **kwargs)
        try:
            (store.root / STORE_DIR / "locks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot initialise {store.root}: {exc.strerror}") from None
        if not os.access(store.root, os.W_OK):
            raise StorageError(f"store root {store.root} is not writable")
        return store

    def configure_signing(self, key: str | Path) -> None:
        """Sign every future commit and tag with SSH ``key``; trust it for verification.

        Saves the setting, writes the allowed-signers file and points every
        customer repository's git config at it, so ``git verify-tag`` works there."""
        key_path = Path(key).resolve()
        allowed = (self.root / STORE_DIR / "allowed_signers").resolve()
        signing.write_allowed_signers(allowed, self.config.committer.email, key_path)
        self.config = replace(self.config, signing_key=key_path, allowed_signers=allowed)
        self.__dict__.pop("signer", None)
        config_mod.save(self.root, self.config)
        for customer in self:
            customer.configure_repo()

    def customer(self, name: str) -> Customer:
        """The customer ``name`` (see :meth:`StoreContext.customer`)."""
        found = super().customer(name)
        assert isinstance(found, Customer)
        return found

    def enable_hashed_names(self) -> None:
        """Name customer repositories by a keyed hash of their api_key from now on
        (only for a store that has no customers yet: existing names would not
        match). Creates the secret key ``<root>/.gitstore/name-key``."""
        if self.config.hash_names:
            return
        if self.customers():
            raise UsageError("hashed names can only be enabled on a store without customers")
        key_file = self.root / STORE_DIR / NAME_KEY_FILE
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token_source.token_hex(32) + "\n")
        self.config = replace(self.config, hash_names=True)
        config_mod.save(self.root, self.config)

    def __iter__(self) -> Iterator[Customer]:
        return (Customer(self, name) for name in self.customers())


class Customer(CustomerContext):
    """One customer: a bare repository ``<root>/<name>``, created on first write.

    ``api_key`` is the real key when the store hashes names (then ``name`` is
    the hash), else None. It is kept in memory only."""

    store: Store

    # -- sessions ----------------------------------------------------------
    def new_session(self, **kwargs: Any) -> Session:
        """Open a new deployment scenario (the next major version). See
        :meth:`gitstore.store.session.Session.create` for the arguments."""
        return Session.create(self, **kwargs)

    def session(self, scenario: str | int | Scenario | None = None) -> Session:
        """The session of a scenario (``"v2"``, ``2``); default: the newest one."""
        return Session(self, pick_scenario(self, scenario))

    def sessions(self) -> list[Session]:
        return [Session(self, s) for s in self.scenarios()]

    # -- reading -----------------------------------------------------------
    def resolve(self, rev: str | Version | Scenario | None = None) -> str:
        """Resolve a revision to a commit id (see :mod:`gitstore.store.history`)."""
        return history.resolve(self, rev)

    def read(self, rev: str | Version | Scenario | None = None) -> Snapshot:
        """The session files at ``rev``."""
        return history.read(self, rev)

    def diff(self, a: str | Version | Scenario, b: str | Version | Scenario | None = None, *,
             documents: Iterable[str] | None = None) -> tuple[Diff, Snapshot, Snapshot]:
        """Semantic diff from ``a`` to ``b`` (default: the newest state of ``a``'s
        scenario). Returns the diff and both snapshots. ``documents`` limits it."""
        return history.diff(self, a, b, documents=documents)

    def versions(self, scenario: str | Scenario | None = None) -> list[VersionInfo]:
        """Every finalized version, plus each scenario's open version, oldest first."""
        return history.versions(self, scenario)

    def log(self, rev: str | Scenario | None = None, *, limit: int | None = None,
            document: str | None = None, since: datetime | str | None = None,
            until: datetime | str | None = None, change: str | None = None,
            agent: str | None = None) -> list[LogEntry]:
        """Commits reachable from ``rev`` (default: every scenario), newest first.

        Filters: ``document`` (commits that changed it), ``since``/``until``
        (commit time, inclusive; datetimes or RFC 3339 strings), ``change`` (the
        Change trailer), ``agent`` (Agent trailer or author name). ``limit``
        applies after filtering."""
        return history.log(self, rev, limit=limit, document=document, since=since,
                           until=until, change=change, agent=agent)

    def read_at(self, scenario: str | Scenario | None, when: datetime | str) -> Snapshot:
        """The state of a scenario as it stood at ``when`` (a datetime or RFC 3339
        string): its newest commit made at or before that moment."""
        return history.read_at(self, scenario, when)


Store.customer_class = Customer

__all__ = ["Customer", "LogEntry", "Snapshot", "Store", "VersionInfo"]
