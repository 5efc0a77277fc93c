"""What every store-layer module works with: the store's settings and one
customer's repository, audit log and writer lock.

:class:`StoreContext` holds a store's root, configuration, pipeline, clock,
signer and catalog; :class:`CustomerContext` one customer's repository. The
facades (:mod:`gitstore.store.facade`) extend both with the session and read
API; the writer, history and session modules depend only on these contexts.

Invariants: a customer name always passes :func:`gitstore.core.names.check_customer`
(or is the keyed hash of an api_key) before it is joined to the root, so no
request can reach outside its own repository; api_keys (:meth:`StoreContext.customer`)
and repository names (:meth:`StoreContext.customer_named`) are separate namespaces:
with hashed names every key is hashed, and a hash is never taken as a key; every
repository access goes through :attr:`CustomerContext.repo`, opened once and reopened
only through
:meth:`CustomerContext.reopen`; every access that reveals or changes session
data appends a record with :meth:`CustomerContext.audit`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from gitstore.core import lazy
from gitstore.core.names import KEYS_DIR, SEALED_TRAILER, STORE_DIR, check_customer
from gitstore.core.time import check_wait
from gitstore.core.versions import Scenario, parse_branch_ref
from gitstore.errors import (
    GitStoreError,
    GitStoreWarning,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    StorageError,
    UsageError,
)
from gitstore.git import repo as backend
from gitstore.git.locking import writer_lock
from gitstore.store import audit as audit_mod
from gitstore.store import config as config_mod
from gitstore.store.audit import AuditLog

if TYPE_CHECKING:
    import hmac
    import shlex

    from gitstore.catalog import index as index_mod
    from gitstore.catalog.index import Index
    from gitstore.core.commits import Identity
    from gitstore.git import integrity, signing
    from gitstore.rules import pipeline as pipeline_mod
    from gitstore.rules import policy as policy_mod
    from gitstore.rules.pipeline import Pipeline
    from gitstore.rules.policy import Policy
    from gitstore.rules.proposal import Hook
    from gitstore.store import keys as keys_mod
    from gitstore.store.keys import KeyStore, Sealer
else:  # not needed to read (gitstore.core.lazy)
    pipeline_mod = lazy.module("gitstore.rules.pipeline")
    keys_mod = lazy.module("gitstore.store.keys")
    hmac = lazy.module("hmac")
    shlex = lazy.module("shlex")
    index_mod = lazy.module("gitstore.catalog.index")
    policy_mod = lazy.module("gitstore.rules.policy")
    signing = lazy.module("gitstore.git.signing")
    integrity = lazy.module("gitstore.git.integrity")

Clock = Callable[[], datetime]
T = TypeVar("T")

NAME_KEY_FILE = "name-key"
ENCRYPTED_KEY = "gitstore.encrypted"
"""Repository config: ``true`` for a customer whose sessions are encrypted."""
TEXTCONV_DRIVER = "gitstore-sealed"
"""The git diff driver whose textconv shows an encrypted customer's files in clear."""
TEXTCONV_ATTRIBUTES = "*.json diff=gitstore-sealed\n*.md diff=gitstore-sealed\n"
HASHED_NAME = re.compile(r"k[0-9a-f]{40}")


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreContext:
    """A directory of customer repositories and its settings.

    ``StoreContext(root)`` opens an existing store; with ``create=True`` it
    creates the directory first. Keyword arguments override the store's
    configuration (see :class:`gitstore.store.config.Config`); ``hooks`` are
    extra pre-commit checks run after the built-in ones.
    """

    customer_class: type[CustomerContext]
    #: Whether :meth:`customer` takes repository names instead of api_keys (the
    #: CLI's ``--by-name``; the two are separate namespaces, never guessed).
    by_name: bool = False
    #: Called once with the customer's name when a writer has waited a second for
    #: another writer's lock (the CLI says so on stderr; the library never prints).
    lock_wait: Callable[[str], None] | None = None
    #: Called with a warning the caller should see (a read that went unrecorded on a
    #: read-only store); None: a :class:`~gitstore.errors.GitStoreWarning` is issued.
    warn: Callable[[str], None] | None = None

    def __init__(self, root: str | os.PathLike[str] = "sessions", *, create: bool = False,
                 agent: str | Identity | None = None, templates: str | Path | None = None,
                 max_document_bytes: int | None = None, lock_timeout: float | None = None,
                 fsync: bool | None = None, signing_key: str | Path | None = None,
                 maintenance_bytes: int | None = None, hooks: Iterable[Hook] = (),
                 clock: Clock | None = None) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"store root {self.root} exists and is not a directory")
        if not self.root.exists():
            if not create:
                raise NotFoundError(f"no store at {self.root}; create it with `gitstore init`")
            try:
                self.root.mkdir(parents=True)
            except OSError as exc:
                raise StorageError(f"cannot create store root {self.root}: {exc.strerror}") \
                    from None
        self.config = config_mod.load(
            self.root, agent=agent, templates=templates, max_document_bytes=max_document_bytes,
            lock_timeout=lock_timeout, fsync=fsync, signing_key=signing_key,
            maintenance_bytes=maintenance_bytes)
        if self.config.fsync:
            backend.enable_fsync()
        self._hooks = tuple(hooks)
        if self.config.hooks or self._hooks:
            self.pipeline  # noqa: B018  (a configured hook that cannot load fails the open)
        self.clock: Clock = clock or utcnow

    @cached_property
    def pipeline(self) -> Pipeline:
        """The checks every write runs: the configured hooks, then those passed in
        (made when first needed, or at open when there are hooks to load)."""
        return pipeline_mod.Pipeline([*(pipeline_mod.load_hook(h) for h in self.config.hooks),
                                      *self._hooks])

    @property
    def profile(self) -> str | None:
        """What every write of this handle depends on besides its own input (the
        configuration as it is now, but the agent and the lock timeout), as a
        digest: writers with equal profiles may write each other's turns (a group
        commit, :mod:`gitstore.store.groupcommit`). None when hooks or a clock
        passed in make this handle's writes its own."""
        if self._hooks or self.clock is not utcnow:
            return None
        settings = {**self.config.to_json(), "agent": None, "lock_timeout": None}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()
                              ).hexdigest()[:16]

    @cached_property
    def secrets_policy(self) -> Policy:
        """The credentials/personal-data policy of this store."""
        return policy_mod.Policy.from_json(self.config.secrets) if self.config.secrets \
            else policy_mod.DEFAULT_POLICY

    @cached_property
    def signer(self) -> Callable[[bytes], bytes] | None:
        """Signs commit and tag payloads when the store has a signing key."""
        key = self.config.signing_key
        return signing.signer(key) if key is not None else None

    def say(self, message: str) -> None:
        """Tell the caller something that did not stop the operation: to
        :attr:`warn` (the CLI prints it on stderr), else as a warning."""
        if self.warn is not None:
            self.warn(message)
        else:
            warnings.warn(GitStoreWarning(message), stacklevel=3)

    @cached_property
    def keys(self) -> KeyStore:
        """The store's key store (its master key is read when first needed:
        environment, then config)."""
        cfg = self.config
        return keys_mod.KeyStore(self.root, lambda: keys_mod.master_key(
            cfg.master_key_file, cfg.master_key_command))

    @cached_property
    def catalog(self) -> Index:
        """The store's catalog (the SQLite index), shared by this object's writes
        and queries."""
        return index_mod.Index(self)

    def record_answer(self, op: str, customers: Collection[str], detail: str) -> None:
        """Record one answer of a store-wide query (the catalog's) that showed the
        data of ``customers`` (repository names): one record in the store's answer
        log, however many they are (see :func:`gitstore.store.audit.record_answer`)."""
        audit_mod.record_answer(self.root, required=self.config.require_audit,
                                actor=str(self.config.agent), op=op, customers=customers,
                                detail=detail, notify=self.warn)

    @property
    def lock_dir(self) -> Path:
        return self.root / STORE_DIR / "locks"

    @property
    def spool_dir(self) -> Path:
        """Where turns wait to be written together (:mod:`gitstore.store.groupcommit`)."""
        return self.root / STORE_DIR / "spool"

    def now(self) -> datetime:
        now = self.clock()
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    def hashed_name(self, api_key: object) -> str:
        """The repository name of ``api_key`` in a store with hashed names."""
        if not isinstance(api_key, str) or not api_key or len(api_key) > 4096 \
                or "\x00" in api_key:
            raise InvalidNameError("invalid api_key: 1-4096 characters, no NUL "
                                   "(the key itself is not shown)")
        key_file = self.root / STORE_DIR / NAME_KEY_FILE
        try:
            secret = bytes.fromhex(key_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            raise StorageError(f"store uses hashed names but its key {key_file} is missing or "
                               "unreadable") from None
        digest = hmac.new(secret, api_key.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "k" + digest.hexdigest()[:40]

    def customer(self, name: str) -> CustomerContext:
        """The customer whose api_key is ``name`` (the repository need not exist yet).

        Normally the name must pass the allowlist and names the repository. In a
        store with ``hash_names``, the repository is named by a keyed hash of the
        api_key instead, so the key never appears in a path, a lock, a log line,
        an error message, the index or the history; the hash is the customer's
        name. *Every* key is hashed, one shaped like a hash too: a hash that
        ``customers`` lists is not an api_key (reach it with
        :meth:`customer_named`). With :attr:`by_name` set (``gitstore
        --by-name``), ``name`` is a repository name instead, as for
        :meth:`customer_named`."""
        if self.config.hash_names and not self.by_name:
            return self.customer_class(self, self.hashed_name(name), api_key=name)
        return self.customer_named(name)

    def customer_named(self, name: str) -> CustomerContext:
        """The customer whose repository is ``name``, as :meth:`customers` lists it
        and the catalog, the audit log and exports record it: the api_key in a
        plain store; in a store with hashed names the hash (``k`` and 40 hex
        digits), never a key. The api_key stays unknown (None)."""
        if self.config.hash_names:
            if not isinstance(name, str) or not HASHED_NAME.fullmatch(name):
                raise InvalidNameError("not a repository name of this store: with hashed "
                                       "names, one is k and 40 hex digits, as `gitstore "
                                       "customers` lists them (the value is not shown)")
            return self.customer_class(self, name)
        return self.customer_class(self, check_customer(name))

    def customers(self) -> list[str]:
        """Names of all customers that have a repository, sorted."""
        out = []
        try:
            entries = list(os.scandir(self.root))
        except OSError as exc:
            raise StorageError(f"cannot list {self.root}: {exc.strerror}") from None
        for entry in entries:
            try:
                check_customer(entry.name)
            except UsageError:
                continue
            if self.config.hash_names and not HASHED_NAME.fullmatch(entry.name):
                continue  # not a repository of a store with hashed names
            if entry.is_dir(follow_symlinks=False) and backend.is_repository(Path(entry.path)):
                out.append(entry.name)
        return sorted(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"


class CustomerContext:
    """One customer: a bare repository ``<root>/<name>``, created on first write.

    ``api_key`` is the real key when the store hashes names (then ``name`` is
    the hash), else None. It is kept in memory only. ``catalogued`` is false
    for a repository not yet in place (an import being staged)."""

    catalogued = True

    def __init__(self, store: StoreContext, name: str, api_key: str | None = None) -> None:
        self.store = store
        self.name = name
        self.path = store.root / name
        self.api_key = api_key

    def __repr__(self) -> str:
        return f"Customer({self.name!r})"

    @property
    def exists(self) -> bool:
        return not self.path.is_symlink() and backend.is_repository(self.path)

    @cached_property
    def repo(self) -> backend.Repo:
        if self.path.is_symlink():
            raise StorageError(f"{self.path} is a symbolic link; a customer repository must be "
                               "a real directory inside the store")
        self.require()
        repo = backend.Repo.open(self.path)
        keys = self.store.root / STORE_DIR / KEYS_DIR / self.name
        if repo.config_get(ENCRYPTED_KEY) == "true" or keys.is_dir() or _sealed_head(self.path):
            repo.codec = self.sealer  # (no flag: a clone from a hub, or an import)
        return repo

    @property
    def encrypted(self) -> bool:
        """Whether this customer's sessions are encrypted at rest (decided when its
        repository is created: the store's ``encrypt`` setting then)."""
        if self.exists:
            return self.repo.codec is not None
        return self.store.config.encrypt

    @cached_property
    def sealer(self) -> Sealer:
        """Seals and opens this customer's files (used only when it is encrypted)."""
        return keys_mod.Sealer(self.store.keys, self.name)

    def reopen(self) -> None:
        """Forget the open repository (it was replaced, moved or removed on disk)."""
        self.__dict__.pop("repo", None)

    def require(self) -> None:
        """Raise NotFoundError unless the customer's repository exists (IntegrityError
        when its directory is there but is no longer a repository: damage)."""
        if not self.exists:
            damage = None if self.path.is_symlink() or not self.path.is_dir() \
                else integrity.repository_problem(self.path)
            if damage is not None:
                raise IntegrityError(f"customer {self.name}: its directory {damage}; run "
                                     f"`gitstore verify {self.name}`")
            raise NotFoundError(f"unknown customer {self.name!r} in {self.store.root}")

    def audit(self, op: str, *, rev: str | None = None, commit: str | None = None,
              document: str | None = None, detail: str | None = None,
              actor: str | None = None) -> None:
        """Append a record to this customer's access log (see :mod:`gitstore.store.audit`);
        the actor is the store's agent unless given (a turn another process asked for)."""
        if self.exists:  # a read-only store: see audit.record_access and require_audit
            audit_mod.record_access(self.path, required=self.store.config.require_audit,
                                    actor=actor or str(self.store.config.agent), op=op,
                                    customer=self.name, rev=rev, commit=commit,
                                    document=document, detail=detail,
                                    notify=self.store.warn)

    @property
    def audit_log(self) -> AuditLog:
        self.require()
        return AuditLog(self.path)

    shared: ClassVar[bool] = True
    """Whether other processes write to this repository under its lock (a staged
    copy's no-op lock says no: no turn of another writer is written to it)."""

    @contextmanager
    def locked(self, timeout: float | None = None,
               until: Callable[[], T | None] | None = None) -> Iterator[T | None]:
        """Hold this customer's writer lock (every change to the repository's refs
        happens under it), waiting ``timeout`` seconds at most (default: the
        store's ``lock_timeout``; ConflictError after). ``until``: stop waiting,
        without the lock, once it returns a value, which the block gets (see
        :func:`gitstore.git.locking.writer_lock`)."""
        wait = check_wait(timeout)
        if wait is None:
            wait = self.store.config.lock_timeout
        with writer_lock(self.store.lock_dir, self.name, wait, on_wait=self.store.lock_wait,
                         until=until) as found:
            yield found

    def ensure_repo(self) -> backend.Repo:
        """Create the repository if it does not exist (callers hold the writer lock)."""
        if not self.exists:
            if self.path.exists() or self.path.is_symlink():
                raise StorageError(f"{self.path} exists but is not a gitstore repository")
            self.__dict__["repo"] = backend.Repo.create(
                self.path, description=f"gitstore sessions of customer {self.name}",
                head=Scenario(1).branch_ref, committer=self.store.config.committer)
            if self.store.config.encrypt:
                self.repo.config_set(ENCRYPTED_KEY, "true")
                self.repo.codec = self.sealer
            self.configure_repo()
        return self.repo

    def configure_repo(self) -> None:
        """Point the repository's git config at the store's allowed signers; in an
        encrypted customer's, install the textconv driver (``git show --textconv``
        and ``git log -p`` print plaintext to whoever holds the keys)."""
        allowed = self.store.config.allowed_signers
        if allowed is not None:
            self.repo.config_set("gpg.format", "ssh")
            self.repo.config_set("gpg.ssh.allowedSignersFile", str(allowed.resolve()))
        if self.repo.codec is not None:
            self.repo.config_set(f"diff.{TEXTCONV_DRIVER}.textconv",
                                 f"{shlex.quote(sys.executable)} -m gitstore textconv")
            attributes = self.path / "info" / "attributes"
            attributes.parent.mkdir(exist_ok=True)
            old = attributes.read_text("utf-8") if attributes.is_file() else ""
            if TEXTCONV_ATTRIBUTES not in old:
                attributes.write_text(old + TEXTCONV_ATTRIBUTES, encoding="utf-8")

    def refs_moved(self) -> None:
        """Tell the catalog this customer's refs moved outside the writer (a purge,
        a repair, an import): one line in the store's change journal, so every
        process's next query looks at it. Never fails the caller: when the journal
        cannot be written, the catalog's next full scan catches up."""
        try:
            self.store.catalog.changed(self.name)
        except (GitStoreError, OSError) as exc:
            if self.store.warn is not None:
                self.store.warn(f"change journal not appended for {self.name} ({exc}); "
                                "the index catches up at its next full scan")

    def clear_stale_locks(self) -> None:
        """Remove lock files left by dead processes (audited); writers call it."""
        for name in self.repo.clear_stale_locks():
            self.audit("repair:stale-lock", document=name,
                       detail="removed a lock file left by a dead process")

    def scenarios(self) -> list[Scenario]:
        """All scenarios (deployment scenarios), oldest first."""
        if not self.exists:
            return []
        found = (parse_branch_ref(ref) for ref in self.repo.refs("refs/heads/"))
        return sorted(s for s in found if s is not None)

    def retired_scenarios(self) -> list[Scenario]:
        """The highest scenario number ever opened here (kept in the repository's
        config), so that numbers of scenarios removed by retention are not reused."""
        if not self.exists:
            return []
        last = self.repo.config_get("gitstore.lastScenario")
        return [Scenario(int(last))] if last and last.isdigit() and int(last) > 0 else []


def _sealed_head(path: Path) -> bool:
    """Whether the commit ``HEAD`` names is an encrypted customer's (its
    ``Sealed-Digest``): the data says so even where no setting or key does. Read
    through a handle of its own, so damage it meets is left for the caller's
    handle to report, as it would without this look."""
    try:
        repo = backend.Repo.open(path)
        head = repo.head_ref()
        tip = repo.ref_target(head) if head else None
        return tip is not None and repo.commit(tip).trailer(SEALED_TRAILER) is not None
    except GitStoreError:
        return False


StoreContext.customer_class = CustomerContext
