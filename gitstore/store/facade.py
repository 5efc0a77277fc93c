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
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.core import canonical
from gitstore.core.commits import CommitInfo, Identity, TagInfo
from gitstore.core.names import JSON_DOCUMENTS, MANIFEST, check_customer, check_document
from gitstore.core.versions import Scenario, Version, parse_branch_ref, parse_tag_ref
from gitstore.errors import InvalidNameError, NotFoundError, StorageError, UsageError
from gitstore.git import repo as backend
from gitstore.rules.pipeline import Hook, Pipeline
from gitstore.store import config as config_mod
from gitstore.store.audit import AuditLog

if TYPE_CHECKING:
    from pydantic import BaseModel

    from gitstore.core.diff import Diff
    from gitstore.store.session import Session

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
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
        from gitstore.rules.pipeline import load_hook

        self.pipeline = Pipeline([*(load_hook(h) for h in self.config.hooks), *hooks])
        self.clock: Clock = clock or _utcnow

    @cached_property
    def secrets_policy(self) -> Any:
        """The credentials/personal-data policy (:class:`gitstore.rules.secrets.Policy`)."""
        from gitstore.rules.secrets import DEFAULT_POLICY, Policy

        return Policy.from_json(self.config.secrets) if self.config.secrets else DEFAULT_POLICY

    @classmethod
    def init(cls, root: str | os.PathLike[str] = "sessions", **kwargs: Any) -> Store:
        """Create (if needed) and open a store; idempotent."""
        store = cls(root, create=True, **kwargs)
        try:
            (store.root / config_mod.CONFIG_DIR / "locks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot initialise {store.root}: {exc.strerror}") from None
        if not os.access(store.root, os.W_OK):
            raise StorageError(f"store root {store.root} is not writable")
        return store

    @cached_property
    def signer(self) -> Callable[[bytes], bytes] | None:
        """Signs commit and tag payloads when the store has a signing key."""
        from gitstore.git import signing

        key = self.config.signing_key
        return signing.signer(key) if key is not None else None

    def configure_signing(self, key: str | Path) -> None:
        """Sign every future commit and tag with SSH ``key``; trust it for verification.

        Saves the setting, writes the allowed-signers file and points every
        customer repository's git config at it, so ``git verify-tag`` works there."""
        from dataclasses import replace

        from gitstore.git import signing

        key_path = Path(key).resolve()
        allowed = (self.root / config_mod.CONFIG_DIR / "allowed_signers").resolve()
        signing.write_allowed_signers(allowed, self.config.committer.email, key_path)
        self.config = replace(self.config, signing_key=key_path, allowed_signers=allowed)
        self.__dict__.pop("signer", None)
        config_mod.save(self.root, self.config)
        for customer in self:
            customer._configure_repo()

    @property
    def lock_dir(self) -> Path:
        return self.root / config_mod.CONFIG_DIR / "locks"

    def customer(self, name: str) -> Customer:
        """The customer ``name`` (its api_key; the repository need not exist yet).

        Normally the name must pass the allowlist and names the repository. In a
        store with ``hash_names``, the repository is named by a keyed hash of the
        api_key instead, so the key never appears in a path, a log line, an
        error message or the history; the hash is the customer's name."""
        if self.config.hash_names:
            if isinstance(name, str) and _HASHED_NAME.fullmatch(name):
                return Customer(self, name)  # already the hash, e.g. from customers()
            return Customer(self, self._hashed_name(name), api_key=name)
        return Customer(self, check_customer(name))

    def _hashed_name(self, api_key: object) -> str:
        import hashlib
        import hmac

        if not isinstance(api_key, str) or not api_key or len(api_key) > 4096 \
                or "\x00" in api_key:
            raise InvalidNameError("invalid api_key: 1-4096 characters, no NUL "
                                   "(the key itself is not shown)")
        key_file = self.root / config_mod.CONFIG_DIR / NAME_KEY_FILE
        try:
            secret = bytes.fromhex(key_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            raise StorageError(f"store uses hashed names but its key {key_file} is missing or "
                               "unreadable") from None
        digest = hmac.new(secret, api_key.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "k" + digest.hexdigest()[:40]

    def enable_hashed_names(self) -> None:
        """Name customer repositories by a keyed hash of their api_key from now on
        (only for a store that has no customers yet: existing names would not
        match). Creates the secret key ``<root>/.gitstore/name-key``."""
        import secrets as _secrets
        from dataclasses import replace

        if self.config.hash_names:
            return
        if self.customers():
            raise UsageError("hashed names can only be enabled on a store without customers")
        key_file = self.root / config_mod.CONFIG_DIR / NAME_KEY_FILE
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_secrets.token_hex(32) + "\n")
        self.config = replace(self.config, hash_names=True)
        config_mod.save(self.root, self.config)

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
            if entry.is_dir(follow_symlinks=False) and backend.is_repository(Path(entry.path)):
                out.append(entry.name)
        return sorted(out)

    def __iter__(self) -> Iterator[Customer]:
        return (Customer(self, name) for name in self.customers())

    def now(self) -> datetime:
        now = self.clock()
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"


@dataclass(frozen=True)
class Snapshot:
    """The session files at one commit: immutable, read-only.

    ``files`` maps file names to their exact stored bytes; :meth:`document`
    parses a JSON document, :meth:`model` returns its pydantic model.
    """

    customer: str
    commit: str
    version: Version | None
    change: str | None
    files: dict[str, bytes]
    info: CommitInfo

    def raw(self, name: str) -> bytes:
        name = check_document(name, allow_manifest=True)
        try:
            return self.files[name]
        except KeyError:
            where = str(self.version) if self.version else self.commit[:12]
            hint = " (rendered at finalize)" if name == "sow_document.md" else ""
            raise NotFoundError(f"{self.customer} {where} has no {name}{hint}") from None

    def document(self, name: str) -> Any:
        name = check_document(name, allow_sow=False)
        return canonical.loads(self.raw(name))

    def model(self, name: str) -> BaseModel:
        from gitstore.core import schema

        name = check_document(name, allow_sow=False)
        return schema.parse_model(name, self.document(name))

    def documents(self) -> dict[str, Any]:
        """Every JSON document present, parsed."""
        return {n: canonical.loads(self.files[n]) for n in JSON_DOCUMENTS if n in self.files}

    @property
    def session_id(self) -> str | None:
        return self.info.trailer("Session-Id")

    def label(self) -> dict[str, Any]:
        """Identifies this snapshot in diff output."""
        return {"customer": self.customer, "commit": self.commit,
                "version": str(self.version) if self.version else None,
                "change": self.change}


@dataclass(frozen=True)
class VersionInfo:
    """A version of a scenario: finalized (tagged) or still open."""

    version: Version
    commit: str
    status: str  # "finalized" | "open" | "expired" (open, recorded as expired)
    change: str | None
    time: int
    author: Identity
    summary: str
    tag: TagInfo | None = None
    manifest: str | None = None
    completeness: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": str(self.version), "status": self.status, "commit": self.commit,
            "change": self.change, "time": _iso(self.time), "author": str(self.author),
            "summary": self.summary, "tag": self.tag.id if self.tag else None,
            "manifest": self.manifest, "completeness": self.completeness,
        }


@dataclass(frozen=True)
class LogEntry:
    """One commit of a scenario's history, as ``gitstore log`` shows it."""

    commit: str
    version: Version | None
    change: str | None
    turn: int | None
    agent: str | None
    time: int
    summary: str
    tags: tuple[str, ...] = field(default=())
    trailers: tuple[tuple[str, str], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "version": str(self.version) if self.version else None,
            "change": self.change, "turn": self.turn, "agent": self.agent,
            "time": _iso(self.time), "summary": self.summary, "tags": list(self.tags),
            "trailers": {k: v for k, v in self.trailers},
        }


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_of(info: CommitInfo, files: dict[str, bytes] | None = None) -> Version | None:
    """The session version of a commit: its ``Session-Version`` trailer or, for a
    commit made with plain git (no trailer), ``session_info.session_version`` of
    its metadata when ``files`` are given."""
    text = info.trailer("Session-Version")
    if text and Version.is_version(text):
        return Version.parse(text)
    if files is not None:
        return metadata_version(files)
    return None


def metadata_version(files: dict[str, bytes]) -> Version | None:
    """``session_info.session_version`` of the metadata in ``files``, if readable."""
    try:
        text = canonical.loads(files["session_metadata.json"])["session_info"]["session_version"]
        return Version.parse(text) if isinstance(text, str) else None
    except (KeyError, TypeError, canonical.JSONParseError, UsageError):
        return None


NAME_KEY_FILE = "name-key"
_HASHED_NAME = re.compile(r"k[0-9a-f]{40}")


class Customer:
    """One customer: a bare repository ``<root>/<name>``, created on first write.

    ``api_key`` is the real key when the store hashes names (then ``name`` is
    the hash), else None. It is kept in memory only."""

    def __init__(self, store: Store, name: str, api_key: str | None = None) -> None:
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
        if not self.exists:
            raise NotFoundError(f"unknown customer {self.name!r} in {self.store.root}")
        return backend.Repo.open(self.path)

    def _audit(self, op: str, *, rev: str | None = None, commit: str | None = None,
               document: str | None = None, detail: str | None = None) -> None:
        """Append to this customer's access log (see :mod:`gitstore.store.audit`)."""
        if self.exists:
            AuditLog(self.path).append(actor=str(self.store.config.agent), op=op,
                                       customer=self.name, rev=rev, commit=commit,
                                       document=document, detail=detail)

    @property
    def audit_log(self) -> AuditLog:
        if not self.exists:
            raise NotFoundError(f"unknown customer {self.name!r} in {self.store.root}")
        return AuditLog(self.path)

    def _ensure_repo(self) -> backend.Repo:
        """Create the repository if it does not exist (callers hold the writer lock)."""
        if not self.exists:
            if self.path.exists() or self.path.is_symlink():
                raise StorageError(f"{self.path} exists but is not a gitstore repository")
            self.__dict__["repo"] = backend.Repo.create(
                self.path, description=f"gitstore sessions of customer {self.name}",
                head=Scenario(1).branch_ref, committer=self.store.config.committer)
            self._configure_repo()
        return self.repo

    def _configure_repo(self) -> None:
        """Point the repository's git config at the store's allowed signers."""
        allowed = self.store.config.allowed_signers
        if allowed is not None:
            self.repo.config_set("gpg.format", "ssh")
            self.repo.config_set("gpg.ssh.allowedSignersFile", str(allowed.resolve()))

    # -- sessions --------------------------------------------------------
    def scenarios(self) -> list[Scenario]:
        """All scenarios (deployment scenarios), oldest first."""
        if not self.exists:
            return []
        found = (parse_branch_ref(ref) for ref in self.repo.refs("refs/heads/"))
        return sorted(s for s in found if s is not None)

    def _retired_scenarios(self) -> list[Scenario]:
        """The highest scenario number ever opened here (kept in the repository's
        config), so that numbers of scenarios removed by retention are not reused."""
        if not self.exists:
            return []
        last = self.repo.config_get("gitstore.lastScenario")
        return [Scenario(int(last))] if last and last.isdigit() and int(last) > 0 else []

    def new_session(self, **kwargs: Any) -> Session:
        """Open a new deployment scenario (the next major version). See
        :meth:`gitstore.store.session.Session.create` for the arguments."""
        from gitstore.store.session import Session

        return Session.create(self, **kwargs)

    def session(self, scenario: str | int | Scenario | None = None) -> Session:
        """The session of a scenario (``"v2"``, ``2``); default: the newest one."""
        from gitstore.store.session import Session

        scenarios = self.scenarios()
        if not self.exists:
            raise NotFoundError(f"unknown customer {self.name!r} in {self.store.root}")
        if not scenarios:
            raise NotFoundError(f"customer {self.name} has no sessions yet")
        if scenario is None:
            chosen = scenarios[-1]
        elif isinstance(scenario, Scenario):
            chosen = scenario
        elif isinstance(scenario, int):
            chosen = Scenario(scenario)
        elif Version.is_version(scenario):
            chosen = Version.parse(scenario).scenario
        else:
            chosen = Scenario.parse(scenario)
        if chosen not in scenarios:
            have = ", ".join(str(s) for s in scenarios)
            raise NotFoundError(f"customer {self.name} has no scenario {chosen} (has {have})")
        return Session(self, chosen)

    def sessions(self) -> list[Session]:
        from gitstore.store.session import Session

        return [Session(self, s) for s in self.scenarios()]

    # -- reading ---------------------------------------------------------
    def resolve(self, rev: str | Version | Scenario | None = None) -> str:
        """Resolve a revision to a commit id.

        Accepts a version (``v1.0.0``: its tag), a scenario (``v1``: its newest
        state), ``HEAD`` (default), or any git revision (``v1~2``, a commit id).
        """
        repo = self.repo
        if rev is None:
            rev = "HEAD"
        if isinstance(rev, Version):
            rev = str(rev)
        if isinstance(rev, Scenario):
            rev = str(rev)
        if Version.is_version(rev):
            version = Version.parse(rev)
            tag = repo.tag(str(version))
            if tag is None:
                known = ", ".join(str(v.version) for v in self.versions()) or "none"
                raise NotFoundError(f"customer {self.name} has no version {version} "
                                    f"(versions: {known})")
            return tag.target
        return repo.resolve(rev)

    def read(self, rev: str | Version | Scenario | None = None) -> Snapshot:
        """The session files at ``rev`` (see :meth:`resolve`)."""
        commit = self.resolve(rev)
        info = self.repo.commit(commit)
        files = self.repo.read_tree(commit)
        self._audit("read", rev=str(rev) if rev is not None else "HEAD", commit=commit)
        return Snapshot(customer=self.name, commit=commit, version=version_of(info, files),
                        change=info.trailer("Change"), files=files, info=info)

    def diff(self, a: str | Version | Scenario, b: str | Version | Scenario | None = None, *,
             documents: Iterable[str] | None = None) -> tuple[Diff, Snapshot, Snapshot]:
        """Semantic diff from ``a`` to ``b`` (default: the newest state of ``a``'s
        scenario). Returns the diff and both snapshots. ``documents`` limits it."""
        from gitstore.core.diff import compute

        snap_a = self.read(a)
        if b is None:
            b = snap_a.version.scenario if snap_a.version else "HEAD"
        snap_b = self.read(b)
        files_a, files_b = snap_a.files, snap_b.files
        manifest = False
        if documents is not None:
            keep = {check_document(d, allow_manifest=True) for d in documents}
            files_a = {k: v for k, v in files_a.items() if k in keep}
            files_b = {k: v for k, v in files_b.items() if k in keep}
            manifest = MANIFEST in keep
        self._audit("diff", rev=f"{a}..{b}", commit=f"{snap_a.commit}..{snap_b.commit}",
                    document=",".join(sorted(documents)) if documents else None)
        return compute(files_a, files_b, include_manifest=manifest), snap_a, snap_b

    def versions(self, scenario: Scenario | None = None) -> list[VersionInfo]:
        """Every finalized version, plus each scenario's open version, oldest first."""
        if not self.exists:
            raise NotFoundError(f"unknown customer {self.name!r} in {self.store.root}")
        repo = self.repo
        out: list[VersionInfo] = []
        for ref in repo.refs("refs/tags/"):
            v = parse_tag_ref(ref)
            if v is None or (scenario is not None and v.major != scenario.major):
                continue
            tag = repo.tag(str(v))
            assert tag is not None
            info = repo.commit(tag.target)
            out.append(_version_info(v, info, "finalized", tag))
        tagged = {vi.version for vi in out}
        for s in self.scenarios():
            if scenario is not None and s != scenario:
                continue
            tip = repo.ref_target(s.branch_ref)
            if tip is None:
                continue
            info = repo.commit(tip)
            v = version_of(info) or metadata_version(repo.read_tree(tip))
            if v is not None and v not in tagged:
                change = info.trailer("Change")
                status = "finalized" if change in ("finalize", "correction") else \
                    "expired" if change == "expire" else "open"
                out.append(_version_info(v, info, status, None))
        self._audit("versions", rev=str(scenario) if scenario else None)
        return sorted(out, key=lambda vi: vi.version)

    def log(self, rev: str | Scenario | None = None, *, limit: int | None = None,
            document: str | None = None, since: datetime | None = None,
            until: datetime | None = None, change: str | None = None,
            agent: str | None = None) -> list[LogEntry]:
        """Commits reachable from ``rev`` (default: every scenario), newest first.

        Filters: ``document`` (commits that changed it), ``since``/``until``
        (commit time, inclusive), ``change`` (the Change trailer: turn, update,
        create, finalize, follow-up, correction), ``agent`` (Agent trailer or
        author name). ``limit`` applies after filtering.
        """
        repo = self.repo
        starts = [self.resolve(rev)] if rev is not None else \
            [t for s in self.scenarios() if (t := repo.ref_target(s.branch_ref))]
        doc = check_document(document, allow_manifest=True) if document else None
        lo = since.timestamp() if since else None
        hi = until.timestamp() if until else None
        tags: dict[str, list[str]] = {}
        for ref in repo.refs("refs/tags/"):
            tag = repo.tag(ref[len("refs/tags/"):])
            if tag is not None:
                tags.setdefault(tag.target, []).append(tag.name)
        entries: list[LogEntry] = []
        seen: set[str] = set()
        for start in starts:
            for info in repo.walk(start):
                if info.id in seen:
                    continue
                seen.add(info.id)
                if (lo is not None and info.time < lo) or (hi is not None and info.time > hi):
                    continue
                kind = info.trailer("Change")
                if change is not None and kind != change:
                    continue
                who = info.trailer("Agent") or info.author.name
                if agent is not None and who != agent:
                    continue
                if doc is not None and doc not in repo.changed_files(info.id):
                    continue
                turn = info.trailer("Turn")
                version = version_of(info)
                if version is None:  # a plain-git commit: ask its metadata
                    version = metadata_version(repo.read_tree(info.id))
                entries.append(LogEntry(
                    commit=info.id, version=version, change=kind,
                    turn=int(turn) if turn and turn.isdigit() else None,
                    agent=who, time=info.time,
                    summary=info.parsed.summary, tags=tuple(sorted(tags.get(info.id, []))),
                    trailers=info.parsed.trailers))
        entries.sort(key=lambda e: e.time, reverse=True)
        self._audit("log", rev=str(rev) if rev is not None else None, document=doc)
        return entries[:limit] if limit is not None else entries

    def read_at(self, scenario: str | Scenario | None, when: datetime) -> Snapshot:
        """The state of a scenario as it stood at ``when``: its newest commit
        made at or before that moment."""
        session = self.session(scenario)
        tip = self.repo.ref_target(session.scenario.branch_ref)
        assert tip is not None
        ts = when.timestamp()
        for info in self.repo.walk(tip, first_parent=True):
            if info.time <= ts:
                return self.read(info.id)
        raise NotFoundError(f"scenario {session.scenario} of {self.name} did not exist yet at "
                            f"{when.isoformat()}")


def _version_info(v: Version, info: CommitInfo, status: str, tag: TagInfo | None) -> VersionInfo:
    completeness = info.trailer("Completeness")
    return VersionInfo(
        version=v, commit=info.id, status=status, change=info.trailer("Change"),
        time=tag.time if tag and tag.time else info.time,
        author=tag.tagger if tag and tag.tagger else info.author,
        summary=info.parsed.summary, tag=tag, manifest=info.trailer("Manifest"),
        completeness=int(completeness.rstrip("%")) if completeness and
        completeness.rstrip("%").isdigit() else None)


__all__ = ["MANIFEST", "Customer", "LogEntry", "Snapshot", "Store", "VersionInfo"]
