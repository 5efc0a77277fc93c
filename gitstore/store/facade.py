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
repository; readers never take locks and never see a half-written commit; every
public method takes the obvious forms of its arguments (RFC 3339 strings for
times, digit strings for counts, ``"v1"`` for scenarios) and turns anything else
into a :class:`~gitstore.errors.GitStoreError` (a UsageError), never a
``TypeError`` or ``AttributeError``. The questions across customers
(:meth:`Store.list_sessions`, :meth:`Store.search`, :meth:`Store.stats`,
:meth:`Store.resume`, ...) are answered by the store's catalog
(:attr:`StoreContext.catalog`), which brings itself up to date with git first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gitstore.core import canonical, lazy
from gitstore.core.commits import Identity
from gitstore.core.documents import count, text_or_none
from gitstore.core.names import CONV, DOCUMENTS, JSON_DOCUMENTS, STORE_DIR
from gitstore.core.time import check_wait
from gitstore.core.versions import Scenario, Version
from gitstore.errors import ConflictError, NotFoundError, StorageError, UsageError
from gitstore.git.locking import private_dirs
from gitstore.store import config as config_mod
from gitstore.store.context import NAME_KEY_FILE, CustomerContext, StoreContext

if TYPE_CHECKING:
    import secrets as token_source

    from gitstore.core.diff import Diff
    from gitstore.git import signing
    from gitstore.rules.proposal import Hook
    from gitstore.store import history, merges, unsealed, upkeep
    from gitstore.store import session as session_mod
    from gitstore.store.context import Clock
    from gitstore.store.history import LogEntry, Snapshot, VersionInfo
    from gitstore.store.merges import PendingMerge
    from gitstore.store.session import Session
else:  # not needed to read (gitstore.core.lazy)
    token_source = lazy.module("secrets")
    signing = lazy.module("gitstore.git.signing")
    merges = lazy.module("gitstore.store.merges")
    upkeep = lazy.module("gitstore.store.upkeep")
    history = lazy.module("gitstore.store.history")
    unsealed = lazy.module("gitstore.store.unsealed")
    session_mod = lazy.module("gitstore.store.session")


def _path(value: object, what: str) -> str | os.PathLike[str]:
    """A path argument: a str or an os.PathLike naming a str path, without NUL."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a path (a str or a pathlib.Path), not "
                         f"{type(value).__name__}")
    if "\x00" in value or not value:
        raise UsageError(f"{what} must be a non-empty path without NUL characters")
    return value


class Resumed(NamedTuple):
    """What an agent needs to carry on a session found by its id alone.

    ``documents`` holds every document of the scenario's newest state (JSON
    parsed, the SOW as text), with the conversation's ``conversation_turns`` cut
    to the last turns asked for (all by default): :attr:`turns`, oldest first, of
    ``total_turns``."""

    customer: str
    scenario: Scenario
    session_id: str
    version: Version | None
    status: str
    completion_status: str | None
    commit: str
    updated: str
    total_turns: int
    documents: dict[str, Any]

    @property
    def turns(self) -> list[Any]:
        """The conversation turns returned (the last ones), oldest first."""
        turns = self.documents.get(CONV, {}).get("conversation_turns")
        return turns if isinstance(turns, list) else []

    @property
    def summary(self) -> dict[str, Any]:
        """The conversation summary (empty if the session has none yet)."""
        summary = self.documents.get(CONV, {}).get("conversation_summary")
        return summary if isinstance(summary, dict) else {}

    @property
    def turns_omitted(self) -> int:
        return self.total_turns - len(self.turns)

    def head(self) -> dict[str, Any]:
        """The identifying fields, as ``gitstore resume`` prints them."""
        return {"customer": self.customer, "scenario": str(self.scenario),
                "session_id": self.session_id,
                "version": str(self.version) if self.version else None,
                "status": self.status, "completion_status": self.completion_status,
                "commit": self.commit, "updated": self.updated, "turns": self.total_turns}

    def to_json(self) -> dict[str, Any]:
        return {**self.head(), "turns_omitted": self.turns_omitted,
                "documents": self.documents}


class Store(StoreContext):
    """A directory of customer repositories.

    ``Store(root)`` opens an existing store; ``Store(root, create=True)`` (or
    :meth:`Store.init`) creates the directory first. Keyword arguments override
    the store's configuration (see :class:`gitstore.store.config.Config`); ``hooks``
    are extra pre-commit checks run after the built-in ones.
    """

    def __init__(self, root: str | os.PathLike[str] = "sessions", *, create: bool = False,
                 agent: str | Identity | None = None, templates: str | Path | None = None,
                 max_document_bytes: int | None = None, lock_timeout: float | None = None,
                 fsync: bool | None = None, signing_key: str | Path | None = None,
                 maintenance_bytes: int | None = None, hooks: Iterable[Hook] = (),
                 clock: Clock | None = None) -> None:
        root = _path(root, "the store root")
        if templates is not None:
            templates = Path(_path(templates, "templates"))
        if signing_key is not None:
            signing_key = Path(_path(signing_key, "signing_key"))
        if agent is not None and not (isinstance(agent, Identity) or (
                isinstance(agent, str) and agent.isprintable())):
            raise UsageError("agent must be a printable 'Name <email>' or an Identity")
        if isinstance(hooks, str | bytes) or not isinstance(hooks, Iterable):
            raise UsageError(f"hooks must be a list of callables, not {type(hooks).__name__}")
        hooks = list(hooks)
        if not all(callable(h) for h in hooks):
            raise UsageError("every hook must be a callable taking a Proposal")
        for flag, value in (("create", create), ("fsync", fsync)):
            if value is not None and not isinstance(value, bool):
                raise UsageError(f"{flag} must be True or False, not {type(value).__name__}")
        if clock is not None and not callable(clock):
            raise UsageError(f"clock must be a callable returning a datetime, not "
                             f"{type(clock).__name__}")
        super().__init__(root, create=create, agent=agent, templates=templates,
                         max_document_bytes=max_document_bytes, lock_timeout=lock_timeout,
                         fsync=fsync, signing_key=signing_key,
                         maintenance_bytes=maintenance_bytes, hooks=hooks, clock=clock)

    @classmethod
    def init(cls, root: str | os.PathLike[str] = "sessions", **kwargs: Any) -> Store:
        """Create (if needed) and open a store; idempotent."""
        store = cls(root, create=True, **kwargs)
        try:
            private_dirs(store.root / STORE_DIR / "locks", levels=2)
        except OSError as exc:
            raise StorageError(f"cannot initialise {store.root}: {exc.strerror}") from None
        if not os.access(store.root, os.W_OK):
            raise StorageError(f"store root {store.root} is not writable")
        return store

    def configure_signing(self, key: str | Path) -> None:
        """Sign every future commit and tag with SSH ``key``; trust it for verification.

        Saves the setting, writes the allowed-signers file and points every
        customer repository's git config at it, so ``git verify-tag`` works there."""
        key_path = Path(_path(key, "the signing key")).resolve()
        allowed = (self.root / STORE_DIR / "allowed_signers").resolve()
        signing.write_allowed_signers(allowed, self.config.committer.email, key_path)
        self.config = self.config._replace(signing_key=key_path, allowed_signers=allowed)
        self.__dict__.pop("signer", None)
        config_mod.save(self.root, self.config)
        for customer in self:
            customer.configure_repo()

    @staticmethod
    def wait_for_maintenance(timeout: float | None = None) -> bool:
        """Wait for the automatic maintenance runs this process started in the
        background (see :mod:`gitstore.store.upkeep`); True when none is left.
        Never needed for correctness: a process waits for them when it exits.
        ``timeout`` is seconds (a number >= 0) or None (as long as it takes)."""
        return upkeep.wait(check_wait(timeout))

    def customer(self, name: str) -> Customer:
        """The customer ``name`` (see :meth:`StoreContext.customer`)."""
        found = super().customer(name)
        assert isinstance(found, Customer)
        return found

    def customer_named(self, name: str) -> Customer:
        """The customer whose repository is ``name`` (the hash with hashed names;
        see :meth:`StoreContext.customer_named`)."""
        found = super().customer_named(name)
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
        private_dirs(key_file.parent)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token_source.token_hex(32) + "\n")
        self.config = self.config._replace(hash_names=True)
        config_mod.save(self.root, self.config)

    def __iter__(self) -> Iterator[Customer]:
        return (Customer(self, name) for name in self.customers())

    # -- across customers: the catalog ---------------------------------------------
    def list_sessions(self, *, customer: str | None = None, status: str | None = None,
                      provider: str | None = None, service: str | None = None,
                      since: datetime | str | None = None, until: datetime | str | None = None,
                      sort: str = "updated", descending: bool = True,
                      limit: int | str | None = None,
                      all_versions: bool = False) -> list[dict[str, Any]]:
        """Sessions (each scenario's newest version; every version with
        ``all_versions``) across customers, filtered and sorted, as ``gitstore
        list`` shows them. ``status`` is ``open``/``finalized`` or a
        ``completion_status``; ``since``/``until`` (datetimes or RFC 3339 strings)
        bound the last activity; ``sort`` is a field name (see ``gitstore list
        --help``)."""
        for what, value in (("customer", customer), ("status", status),
                            ("provider", provider), ("service", service), ("sort", sort)):
            text_or_none(value, what)
        _flag(descending, "descending")
        _flag(all_versions, "all_versions")
        lo = history.moment(since, "since") if since is not None else None
        hi = history.moment(until, "until") if until is not None else None
        return self.catalog.list_sessions(
            customer=customer, status=status, provider=provider, since=lo, until=hi,
            sort=sort, descending=descending, limit=count(limit, "limit"), service=service,
            all_versions=all_versions)

    def stats(self) -> dict[str, Any]:
        """Totals, averages and breakdowns over every session (``gitstore stats``)."""
        return self.catalog.stats()

    def search(self, text: str, *, limit: int | str = 20) -> list[dict[str, Any]]:
        """Conversation turns matching every word of ``text`` (``word*`` matches a
        prefix), best first, each naming its customer, version and turn."""
        if not isinstance(text, str):
            raise UsageError(f"search text must be a str, not {type(text).__name__}")
        wanted = count(limit, "limit") or 0
        found = self.catalog.search(text, limit=wanted)
        if self.keys.dir.is_dir() and len(found) < wanted:  # encrypted sessions: scanned
            more, skipped = unsealed.search(self, text, wanted - len(found))
            found += more
            if skipped:
                self.say(f"{skipped} encrypted session(s) not searched: their keys are "
                           "not at hand (no master key, or shredded)")
        return found

    def similar(self, customer: str, version: str | Version | Scenario, *,
                limit: int | str = 10) -> list[dict[str, Any]]:
        """Sessions sharing ``customer`` ``version``'s architecture pattern or
        complexity profile (``version`` may be a scenario, ``"v1"``: its newest)."""
        if isinstance(version, Version | Scenario):
            version = str(version)
        if not isinstance(version, str):
            raise UsageError(f"a version is a str like 'v1.0.0', not {type(version).__name__}")
        if text_or_none(customer, "customer") is None:
            raise UsageError("similar needs a customer")
        return self.catalog.similar(customer, version, limit=count(limit, "limit") or 0)

    def active(self, timeout: str | timedelta | None = None) -> list[dict[str, Any]]:
        """Open sessions with activity within ``timeout`` (``"2h"``, a timedelta;
        default: the store's ``active_timeout``), most recent first."""
        if timeout is not None and not isinstance(timeout, str | timedelta):
            raise UsageError(f"timeout must be a duration like '2h' or a timedelta, not "
                             f"{type(timeout).__name__}")
        return self.catalog.active(timeout)

    def find_session(self, session_id: str, *, customer: str | None = None,
                     scenario: str | Scenario | None = None) -> Session:
        """The session whose id is ``session_id``, looked for in every customer
        (or in ``customer`` and ``scenario`` when given). An error never names a
        customer the caller did not name; the customer found records the lookup
        in its access log."""
        text_or_none(customer, "customer")
        name, found = self.catalog.find_session(session_id, customer, scenario)
        session = session_mod.Session(self.customer_named(name), Scenario.parse(found))
        session.customer.audit("find-session", rev=found, detail=f"session {session_id}")
        return session

    def resume(self, session_id: str, *, customer: str | None = None,
               scenario: str | Scenario | None = None,
               turns: int | str | None = None) -> Resumed:
        """Everything needed to carry on the session ``session_id``: where it is,
        its status, every document of its newest state and its last ``turns``
        conversation turns (all when None). See :meth:`find_session`."""
        limit = count(turns, "turns")
        session = self.find_session(session_id, customer=customer, scenario=scenario)
        name, chosen = session.customer.name, str(session.scenario)
        rows = [r for r in self.catalog.list_sessions(customer=session.customer)
                if r["scenario"] == chosen]
        if not rows:
            raise NotFoundError(f"session {session_id!r} of {name} changed while being read; "
                                "retry")
        info = rows[0]
        snap = session.read()
        docs: dict[str, Any] = {}
        for doc in DOCUMENTS:
            if doc in snap.files:
                docs[doc] = canonical.loads_cached(snap.files[doc]) if doc in JSON_DOCUMENTS \
                    else snap.files[doc].decode("utf-8")
        conv = docs.get(CONV)
        every = conv.get("conversation_turns") if isinstance(conv, dict) else None
        total = len(every) if isinstance(every, list) else 0
        if isinstance(conv, dict) and isinstance(every, list) and limit is not None:
            docs[CONV] = {**conv, "conversation_turns": every[total - limit:] if limit else []}
        return Resumed(
            customer=name, scenario=session.scenario, session_id=session_id,
            version=snap.version, status=info["status"],
            completion_status=info["completion_status"], commit=snap.commit,
            updated=info["updated"], total_turns=total, documents=docs)


class Customer(CustomerContext):
    """One customer: a bare repository ``<root>/<name>``, created on first write.

    ``api_key`` is the real key when the store hashes names (then ``name`` is
    the hash), else None. It is kept in memory only."""

    store: Store

    # -- sessions ----------------------------------------------------------
    def new_session(self, **kwargs: Any) -> Session:
        """Open a new deployment scenario (the next major version). See
        :meth:`gitstore.store.session.Session.create` for the arguments."""
        return session_mod.Session.create(self, **kwargs)

    def session(self, scenario: str | int | Scenario | None = None) -> Session:
        """The session of a scenario (``"v2"``, ``2``); default: the newest one."""
        return session_mod.Session(self, history.pick_scenario(self, scenario))

    def sessions(self) -> list[Session]:
        return [session_mod.Session(self, s) for s in self.scenarios()]

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

    def read_at(self, scenario: str | Scenario | None, when: datetime | str, *,
                by: str = "session") -> Snapshot:
        """The state of a scenario as it stood at ``when`` (a datetime or RFC 3339
        string). ``by="session"`` (default, like ``show --at``): its newest commit
        whose session time (the newest timestamp its data records so far: created,
        completed, the last turn) is at or before ``when``; ``by="commit"`` (like
        ``show --as-of``): its newest commit written at or before ``when``."""
        return history.read_at(self, scenario, when, by=by)

    # -- merging -----------------------------------------------------------
    def merge(self, source: str, *, into: str | Scenario | None = None, dry_run: bool = False,
              fail_on_conflict: bool = False, reviewer: str | Identity | None = None,
              message: str | None = None) -> PendingMerge:
        """Merge ``source`` (a scenario ``"v2"``, a version or any revision) into
        the scenario ``into`` (see :mod:`gitstore.store.merges`). Without conflicts
        the merge commit is written at once (``result.written``); with conflicts
        nothing is written to the target and the merge waits for review
        (``result.conflicts``, ``resolve``, ``commit``, ``abort``), unless
        ``fail_on_conflict`` refuses it outright. ``dry_run`` only works it out."""
        _flag(dry_run, "dry_run")
        _flag(fail_on_conflict, "fail_on_conflict")
        pending = merges.prepare(self, source, into, reviewer=reviewer)
        if dry_run:
            return pending
        if pending.conflicts:
            if fail_on_conflict:
                raise ConflictError(
                    f"merging {source} into {self.name} {pending.target} has "
                    f"{len(pending.conflicts)} conflict(s) "
                    f"({', '.join(c.pointer or '/' for c in pending.conflicts[:3])}); "
                    "nothing written")
            return merges.store_pending(pending, "prepare")
        pending.written = pending.commit(reviewer=reviewer, message=message)
        return pending

    def pending_merge(self, into: str | Scenario | None = None) -> PendingMerge:
        """The merge waiting for review (into ``into``; default: the only one)."""
        return merges.load_pending(self, into)


def _flag(value: object, what: str) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{what} must be True or False, not {type(value).__name__}")


Store.customer_class = Customer

__all__ = ["Customer", "Resumed", "Store"]
