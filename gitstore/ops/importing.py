"""Import: customers entering the store from a JSON bundle or a git bundle.

Invariants:

* an import only creates customers that are absent; it never writes into, moves
  or deletes a repository it did not create in full;
* every customer is built in a private staging directory under
  ``<root>/.gitstore/staging/`` and moved into place with one ``rename`` under
  its writer lock, all customers of one import together (locks taken in name
  order) or none; a crash leaves at worst a staging directory, which the next
  import clears, so re-running an interrupted import finishes the job;
* a JSON bundle of format 2 is replayed commit by commit through the writer
  (:class:`~gitstore.store.writer.Writer`) with each commit's original author,
  author time and whole message, and each version's tag with its original
  tagger, time and message: every check and hook runs on every commit, and the
  writer refuses a commit whose content does not match its recorded manifest.
  Commit ids come back identical where the committer (the store's identity)
  and the signing key are the same. Format 1 bundles (versions only) are
  replayed version by version through the session API;
* a git bundle restores the exact objects and refs, and is verified before it
  is moved into place;
* a git bundle restored *as another customer* (``--customer NAME`` naming another
  customer than the ``api_key`` its metadata records) is first restored and
  verified as it is, then rewritten commit by commit through the writer into a
  second staging repository: every document, author, time, message and tag as
  before, except the store-managed ``session_info.api_key`` (now NAME) and the
  ``Manifest`` digests that follow from it; each rewritten commit and tag records
  ``Renamed-From: <old name>`` and ``Imported-From: <original commit id>``. Every
  check runs on every commit, so the result passes ``gitstore verify`` as NAME.
  Commit ids change (the content does); the statement of work is kept as it was
  rendered, naming the customer it was written for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from gitstore.core import canonical
from gitstore.core.commits import (
    ChangeKind,
    Identity,
)
from gitstore.core.names import (
    ANA,
    CONV,
    CTX,
    JSON_DOCUMENTS,
    MANIFEST,
    META,
    SOW_DOCUMENT,
    STORE_DIR,
)
from gitstore.core.time import try_parse_rfc3339
from gitstore.core.versions import (
    Scenario,
    Version,
    parse_branch_ref,
)
from gitstore.errors import (
    ConflictError,
    IntegrityError,
    InvalidDocumentError,
    NotFoundError,
    UsageError,
    Violation,
)
from gitstore.git import repo as backend
from gitstore.git.locking import private_dirs
from gitstore.ops.exporting import (
    BUNDLE_SIGNATURES,
    FORMAT,
    READABLE_VERSIONS,
    read_bundle_header,
)
from gitstore.ops.renaming import api_key_of, restore_as
from gitstore.ops.replay import replay_history
from gitstore.ops.retention import write_retained
from gitstore.ops.verify import check_customer
from gitstore.store.facade import Customer, Store

STAGING_DIR = "staging"


class StagingCustomer(Customer):
    """A customer being built in a private staging directory: no other process
    knows it, so it takes no writer lock and is not catalogued until it is moved
    into place."""

    catalogued = False

    def __init__(self, store: Store, name: str, path: Path, api_key: str | None = None) -> None:
        super().__init__(store, name, api_key)
        self.path = path

    shared = False

    @contextmanager
    def locked(self, timeout: float | None = None,
               until: Callable[[], Any] | None = None) -> Iterator[None]:
        yield None


def import_file(store: Store, path: Path, name: str | None = None) -> list[str]:
    """Import a JSON bundle or a git bundle; returns the customers created."""
    try:
        with path.open("rb") as f:
            start = f.read(16)
    except OSError as exc:
        raise NotFoundError(f"cannot read {path}: {exc.strerror}") from None
    if start in BUNDLE_SIGNATURES:
        return [import_git_bundle(store, path, name)]
    if name is not None:
        raise UsageError("--customer applies to git bundles only")
    try:
        data = canonical.loads(path.read_bytes())
    except canonical.JSONParseError as exc:  # hostile JSON too: nested, 1e400, huge ints
        raise InvalidDocumentError([Violation(path.name, "", "is neither a git bundle nor "
                                              f"JSON gitstore reads: {exc}", "json")]) from None
    return import_json(store, data)


# -- staging -------------------------------------------------------------------------

def _staging_root(store: Store) -> Path:
    """A fresh staging directory for this import (stale ones of dead importers go)."""
    base = store.root / STORE_DIR / STAGING_DIR
    private_dirs(base, levels=2)  # 0700, like the repositories it will hold
    for old in base.iterdir():
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    mine = base / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    mine.mkdir(mode=0o700)
    return mine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(store: Store, staged: list[StagingCustomer], what: str) -> None:
    """Move every staged customer into place, all or none, under their locks."""
    targets = sorted(staged, key=lambda c: c.name)
    with ExitStack() as stack:
        for c in targets:
            stack.enter_context(store.customer_named(c.name).locked())
        present = [c.name for c in targets if (store.root / c.name).exists()
                   or (store.root / c.name).is_symlink()]
        if present:
            raise ConflictError(f"customer(s) {', '.join(present)} already exist in "
                                f"{store.root}; import only restores absent customers")
        for c in targets:
            os.rename(c.path, store.root / c.name)
    for c in targets:
        placed = store.customer_named(c.name)
        placed.configure_repo()
        placed.audit("import", detail=what)
    with contextlib.suppress(Exception):  # the catalog catches up on its next query
        store.catalog.refresh([c.name for c in targets])


# -- JSON bundles ----------------------------------------------------------------------

def import_json(store: Store, data: Any) -> list[str]:
    """Replay a JSON bundle into the store (see the module docstring)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError("not a gitstore export (format must be 'gitstore-export')")
    fmt = data.get("format_version")
    if fmt not in READABLE_VERSIONS:
        raise UsageError(f"unsupported format_version {fmt!r}; this gitstore reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    entries = data.get("customers")
    if not isinstance(entries, list):
        raise UsageError("a gitstore export needs a list of customers")
    if not all(isinstance(e, dict) and isinstance(e.get("customer"), str) for e in entries):
        raise UsageError("every customer entry needs a customer name")
    names = [store.customer_named(e["customer"]).name for e in entries]
    if len(set(names)) != len(names):
        raise UsageError("the export names a customer twice")
    present = [n for n in names if (store.root / n).exists() or (store.root / n).is_symlink()]
    if present:
        raise ConflictError(f"customer(s) {', '.join(present)} already exist in {store.root}; "
                            "import only restores absent customers")
    for entry in entries:
        _check_scenarios(entry)
    stage = _staging_root(store)
    try:
        staged = []
        for name, entry in zip(names, entries, strict=True):
            if not entry["scenarios"]:  # every scenario was purged: nothing to restore
                continue
            real = store.customer_named(entry["customer"])
            customer = StagingCustomer(store, name, stage / name, real.api_key)
            try:
                _replay_customer(customer, entry, fmt)
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise UsageError(f"malformed gitstore export ({entry['customer']}): "
                                 f"{type(exc).__name__}: {exc}") from None
            staged.append(customer)
        _publish(store, staged, f"JSON export of {data.get('exported_at')}")
        return [c.name for c in staged]
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _check_scenarios(entry: dict[str, Any]) -> None:
    scenarios = entry.get("scenarios")
    if not isinstance(scenarios, list) or not all(isinstance(s, dict) for s in scenarios):
        raise UsageError(f"{entry.get('customer')}: scenarios must be a list of objects")
    majors = sorted(Scenario.parse(str(s.get("scenario"))).major for s in scenarios)
    if majors != list(range(1, len(majors) + 1)):
        raise UsageError(f"{entry['customer']}: scenarios "
                         f"{', '.join(f'v{m}' for m in majors)} do not run v1, v2, ... "
                         "without gaps; a JSON import cannot recreate them (use a git bundle)")
    for s in scenarios:
        versions = [*s.get("versions", []), *([s["open"]] if s.get("open") else [])]
        if versions and Version.parse(versions[0]["version"]) != \
                Version(Scenario.parse(s["scenario"]).major):
            raise UsageError(f"{entry['customer']} {s['scenario']}: the export starts at "
                             f"{versions[0]['version']}; an import replays a scenario from "
                             "its first version (export the whole customer)")


def _replay_customer(customer: StagingCustomer, entry: dict[str, Any], fmt: int) -> None:
    scenarios = sorted(entry["scenarios"], key=lambda s: Scenario.parse(s["scenario"]))
    if fmt >= 2 and all("commits" in s or s.get("retained") for s in scenarios):
        replay_history(customer, scenarios, _restore_retained, _compare)
    else:  # format 1: versions only
        for scenario in scenarios:
            if scenario.get("retained"):
                _restore_retained(customer, scenario)
            else:
                _replay_versions(customer, scenario)
    repo = customer.repo
    branches = sorted(s for r in repo.refs("refs/heads/") if (s := parse_branch_ref(r)))
    repo.set_head(branches[-1].branch_ref)


def _replay_versions(customer: StagingCustomer, scenario: dict[str, Any]) -> None:
    """Format 1: versions only, replayed through the session API with each
    version's agent and time (the tag's tagger and time: retention ages survive)."""
    versions = [*scenario["versions"], *([scenario["open"]] if scenario["open"] else [])]
    for ver in sorted(versions, key=lambda v: Version.parse(v["version"])):
        who = (ver["tag"] or {}).get("tagger") or ver["author"]
        when = try_parse_rfc3339((ver["tag"] or {}).get("time") or ver["time"])
        _replay_version(customer, scenario, ver, Identity.parse(who), when)


def _replay_version(customer: StagingCustomer, scenario: dict[str, Any], ver: dict[str, Any],
                    who: Identity, when: datetime | None) -> None:
    version = Version.parse(ver["version"])
    docs = {k: v for k, v in ver["documents"].items() if k in JSON_DOCUMENTS}
    reason = ver.get("trailers", {}).get("Reason")
    finalized = ver["status"] == "finalized"
    by: dict[str, Any] = {"author": who, "at": when}
    if version.minor == 0 and version.patch == 0:
        session = customer.new_session(session_id=scenario["session_id"], metadata=docs[META],
                                       version=version, allow_open=True, **by)
    else:
        session = customer.session(version.scenario)
    if version.patch:
        before = session.read().documents()
        named = set((ver.get("trailers", {}).get("Documents") or "").replace(" ", "")
                    .split(",")) & set(JSON_DOCUMENTS)
        changed = {n for n in docs if n != META and docs[n] != before.get(n)} | (named - {META})
        if _without_version(docs.get(META)) != _without_version(before.get(META)):
            changed.add(META)
        session.correct({n: docs[n] for n in changed}, reason=reason or "correction",
                        version=version, **by)
    else:
        if version.minor:
            session.follow_up(version=version, **by)
        for name in (CONV, CTX, ANA, META):
            if name in docs:
                session.put(name, docs[name], **by)
        if finalized:
            session.finalize(message=reason, version=version, **by)
    _compare(customer, ver)


def _without_version(meta: Any) -> Any:
    if not isinstance(meta, dict) or not isinstance(meta.get("session_info"), dict):
        return meta
    return {**meta, "session_info": {**meta["session_info"], "session_version": None}}


def _compare(customer: Customer, ver: dict[str, Any]) -> None:
    """Refuse unless the replayed version equals the exported one, byte for byte."""
    snap = customer.read(ver["version"] if ver["status"] == "finalized" else
                         str(Version.parse(ver["version"]).scenario))
    want = {n: canonical.dumps(d) if n in JSON_DOCUMENTS else str(d).encode("utf-8")
            for n, d in ver["documents"].items()}
    have = {n: b for n, b in snap.files.items() if n != MANIFEST}
    differ = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
    if differ:
        hint = " (the SOW renders differently here: other templates?)" \
            if differ == [SOW_DOCUMENT] else ""
        raise IntegrityError(f"{customer.name} {ver['version']}: {', '.join(differ)} would "
                             f"not come back identical{hint}; nothing imported")


def _restore_retained(customer: Customer, scenario: dict[str, Any]) -> None:
    kept = scenario["retained"]
    when = try_parse_rfc3339(kept["time"]) or customer.store.now()
    repo = customer.ensure_repo()
    commit = write_retained(customer, repo, canonical.dumps(kept["documents"][ANA]),
                            message=kept["message"], author=Identity.parse(kept["author"]),
                            when=when, session_id=scenario.get("session_id"))
    repo.update_ref(Scenario.parse(scenario["scenario"]).branch_ref, commit, None,
                    "gitstore: import of a retained analytics summary")


# -- git bundles -----------------------------------------------------------------------

def import_git_bundle(store: Store, path: Path, name: str | None = None) -> str:
    """Restore a customer from a git bundle (same objects, refs, commit ids).

    The repository is built and verified in staging, then moved into place
    under the customer's writer lock if the customer is absent; a bundle that
    fails verification raises IntegrityError listing the problems. ``name``
    restores it as that customer: when the bundle's metadata names another, its
    history is rewritten as ``name`` (see the module docstring)."""
    refs, offset = read_bundle_header(path)
    if not any(r.startswith("refs/heads/") for r in refs):
        raise UsageError(f"{path} holds no scenario branch")
    if name is not None:
        wanted = store.customer(name)
        if wanted.path.exists() or wanted.path.is_symlink():
            raise ConflictError(f"customer {wanted.name} already exists in {store.root}; "
                                "import only restores absent customers")
    stage = _staging_root(store)
    try:
        repo = backend.Repo.create(stage / "repo", description="gitstore import",
                                   head="refs/heads/v1", committer=store.config.committer)
        with path.open("rb") as f:
            f.seek(offset)
            count = repo.index_pack(f)
        for ref, oid in sorted(refs.items()):
            repo.create_ref(ref, oid, f"gitstore: import from {path.name}")
        branches = sorted(s for r in refs if (s := parse_branch_ref(r)) is not None)
        if branches:
            repo.set_head(branches[-1].branch_ref)
        keys = _bundle_keys(repo, path)
        if name is None and len(keys) != 1:
            raise UsageError(f"cannot tell which customer {path} holds (api_keys: "
                             f"{', '.join(sorted(keys)) or 'none'}); pass --customer")
        own = store.customer_named(next(iter(keys))) if len(keys) == 1 else None
        real = store.customer(name) if name else own
        assert real is not None
        what = f"git bundle {path.name}: {len(refs)} ref(s), {count} object(s)"
        if own is None or own.name != real.name:  # restore as another customer
            staged = StagingCustomer(store, own.name if own else real.name, stage / "repo")
            if own is not None:  # the bundle as it is, first (its own name passes)
                _verified(staged, path)
            renamed = StagingCustomer(store, real.name, stage / "renamed", real.api_key)
            olds = restore_as(repo, renamed)
            del repo
            _verified(renamed, path)
            _publish(store, [renamed], f"{what}; restored as {real.name} (was "
                     f"{', '.join(olds) or 'unnamed'}), every commit rewritten")
            return real.name
        (stage / "repo" / "description").write_text(
            f"gitstore sessions of customer {real.name}\n", encoding="utf-8")
        del repo
        staged = StagingCustomer(store, real.name, stage / "repo", real.api_key)
        _verified(staged, path)
        _publish(store, [staged], what)
        return real.name
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _verified(staged: StagingCustomer, path: Path) -> None:
    report = check_customer(staged)
    if report.problems:
        raise IntegrityError(f"{path.name} failed verification ("
                             f"{'; '.join(report.problems[:3])}); nothing imported",
                             report.problems)


def _bundle_keys(repo: backend.Repo, path: Path) -> set[str]:
    """The ``api_key``s the bundle's scenario tips name (one for a sound bundle;
    a tip with unreadable metadata is refused, a retained summary names none)."""
    keys = set()
    for ref, tip in repo.refs("refs/heads/").items():
        data = repo.read_file(tip, META)
        if data is None and repo.commit(tip).change == ChangeKind.RETENTION:
            continue
        key = api_key_of({META: data}) if data is not None else None
        if key is None:
            raise UsageError(f"{path}: {ref} has unreadable metadata; pass --customer")
        keys.add(key)
    return keys
