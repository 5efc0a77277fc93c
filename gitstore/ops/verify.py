"""Health checks of a customer repository (``gitstore verify``).

The seed's checks, run over what is stored: every version has all its files
(session completeness), the documents agree with each other (data
consistency), every file matches the manifest (checksum verification), the
repository belongs to its customer (isolation: ``api_key`` equals the
repository name) and every reachable git object reads back with a valid hash.
Tags are checked against their scenario branch and their commit's trailers.
Nothing here modifies the repository; each problem is one line naming exactly
what is wrong.

Damage never ends a check: whatever libgit2 raises on one ref, tag or tip is a
problem line and the other checks go on (a store-wide verify always reaches every
customer). What must exist is checked against records the damage cannot erase:
the history (every finalize or correction commit below a tip has its version's
tag, at it) and the access log (:func:`gitstore.store.audit.recorded_refs`: every
scenario branch it records writes to, with the last one in its history, and every
version tag it records cutting). The ref files themselves are read directly too:
a damaged ``packed-refs`` or ``HEAD``, a ref libgit2 skips, a symbolic link in the
repository, a directory named like a customer that is no repository
(:func:`stray_directories`). The access log is checked against the newest
``Audit-Head`` anchor in git (:func:`audit_problems`), and :func:`check_catalog`
compares the index with one rebuilt from git.

Permissions (the spec's ``access_permissions: verify_customer_isolation``): no one
but the store's owner may reach a customer's data. :func:`check_permissions` checks
the store-wide files that hold data of several customers or the secret of hashed
names (the index ``.gitstore/index.sqlite`` with its ``-wal``/``-shm`` and any copy
set aside, ``.gitstore/name-key``) and every quarantined repository;
:func:`check_customer` checks the customer's repository directory (the boundary of
everything in it: git writes its objects 0444 inside). Any group or other permission
bit on one of them is a problem.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from gitstore.catalog.db import INDEX_FILE
from gitstore.catalog.index import Index
from gitstore.catalog.rows import COLUMNS
from gitstore.core import manifest, sealed
from gitstore.core.commits import CommitInfo, version_of
from gitstore.core.names import CONV_PARTS, MANIFEST, MERGED, STORE_DIR
from gitstore.core.names import check_customer as check_name
from gitstore.core.versions import Scenario, Version, parse_branch_ref, parse_tag_ref
from gitstore.errors import GitStoreError, InvalidDocumentError, KeyUnavailableError, ShreddedError
from gitstore.git import integrity, signing
from gitstore.git import repo as backend
from gitstore.rules.proposal import Proposal
from gitstore.store.audit import ANCHOR_TRAILER, Recorded, recorded_refs
from gitstore.store.context import NAME_KEY_FILE
from gitstore.store.facade import Customer, Store


@dataclass
class Report:
    customer: str
    problems: list[str] = field(default_factory=list)
    versions: int = 0
    scenarios: int = 0

    @property
    def checked(self) -> str:
        return f"{self.scenarios} scenario(s), {self.versions} version(s)"

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "ok": not self.problems, "problems": self.problems,
                "scenarios": self.scenarios, "versions": self.versions}


def check_customer(customer: Customer) -> Report:
    """Every health check on one customer; damage found on the way is a problem
    in the report, never an exception (not even an error libgit2 raises on damage
    nobody foresaw: it becomes a problem line too, so a store-wide verify goes on
    to the next customer)."""
    report = Report(customer.name)
    report.problems.extend(check_repository_permissions(customer.path))
    try:
        _checks(customer, report)
    except GitStoreError as exc:  # damage that stops the remaining checks
        report.problems.append(str(exc))
    except Exception as exc:  # damage ends in a finding, never a crash
        report.problems.append(f"checking stopped on unreadable data: "
                               f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    try:
        customer.audit("verify", detail=f"{len(report.problems)} problem(s)")
    except GitStoreError as exc:
        if not any("audit log" in p for p in report.problems):
            report.problems.append(f"audit log: {exc}")
    return report


def stray_directories(store: Store) -> list[Report]:
    """A report for each directory in the store root named like a customer that is
    not a repository (emptied, a plain directory, ``objects/`` or ``refs/`` gone):
    ``customers()`` leaves those out, so without this they would go unseen."""
    reports = []
    try:
        entries = sorted(os.scandir(store.root), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            check_name(entry.name)
        except GitStoreError:
            continue
        problem = integrity.repository_problem(Path(entry.path))
        if problem is not None:
            reports.append(Report(entry.name, [_not_a_repository(entry.name, problem)]))
    return reports


def _not_a_repository(name: str, problem: str) -> str:
    return (f"the customer directory {name} {problem}; `gitstore quarantine` moves it aside, "
            "`gitstore repair --from` or `gitstore import` restores it")


def _guarded(problems: list[str], where: str, check: Callable[[], object]) -> None:
    """Run one check; damage it meets is one more problem line, and the other
    checks still run."""
    try:
        check()
    except GitStoreError as exc:
        problems.append(f"{where}: {exc}" if where else str(exc))


def _checks(customer: Customer, report: Report) -> None:
    problem = integrity.repository_problem(customer.path)
    if problem is not None and customer.path.is_dir() and not customer.path.is_symlink():
        report.problems.append(_not_a_repository(customer.name, problem))
        return
    try:
        repo = customer.repo
    except GitStoreError as exc:
        report.problems.append(f"repository unusable: {exc}")
        return
    problems = report.problems
    problems.extend(f"{p} is a symbolic link inside the repository (gitstore never follows "
                    "one; move it away)" for p in repo.symlinks())
    packed = repo.packed_refs_problems()
    problems.extend(packed)
    head = repo.head_problem()
    if head is not None:
        problems.append(f"{head} (`gitstore repair` points it at the newest scenario)")
    problems.extend(repo.check_objects())
    broken = repo.broken_refs()
    problems.extend(f"ref {name} is broken (unreadable, or points at a missing object)"
                    for name in broken)
    problems.extend(f"stray lock file {p} (a writer crashed? remove it if no git process "
                    "is running)" for p in repo.stray_locks())
    records: list[dict[str, Any]] = []
    _guarded(problems, "audit log", lambda: records.extend(customer.audit_log.records()))
    if not packed:  # with a damaged packed-refs git reads no ref: nothing more to check
        _guarded(problems, "", lambda: _ref_checks(customer, repo, report, head is None,
                                                  set(broken), recorded_refs(records)))
    _guarded(problems, "audit log", lambda: problems.extend(
        f"audit log {p}" for p in audit_problems(customer)))


def anchors(repo: backend.Repo) -> list[tuple[str, str]]:
    """The newest ``Audit-Head`` trailer on each scenario branch, with its commit
    (see :mod:`gitstore.store.audit`); unreadable history yields nothing (the
    object check reports it)."""
    found = []
    try:
        tips = repo.refs("refs/heads/", strict=False)
    except GitStoreError:
        return []
    for tip in tips.values():
        try:
            for n, info in enumerate(repo.walk(tip, first_parent=True)):
                value = info.trailer(ANCHOR_TRAILER)
                if value is not None:
                    found.append((info.id, value))
                    break
                if n >= ANCHOR_SCAN:
                    break
        except GitStoreError:
            continue
    return found


ANCHOR_SCAN = 1000
"""How far back from a branch tip the newest ``Audit-Head`` trailer is looked for
(plain-git commits carry none)."""


def audit_problems(customer: Customer) -> list[str]:
    """The access log's chain check, against the anchors its repository keeps (a
    customer being staged by an import has no log of its own yet: its commits'
    anchors belong to the log it was exported from)."""
    try:
        found = anchors(customer.repo) if customer.catalogued else []
    except GitStoreError:
        found = []
    return [str(p) for p in customer.audit_log.verify(found)]


def _ref_checks(customer: Customer, repo: backend.Repo, report: Report, head_ok: bool,
                broken: set[str], recorded: Recorded) -> None:
    problems = report.problems
    branches = {s: tip for ref, tip in repo.refs("refs/heads/", strict=False).items()
                if (s := parse_branch_ref(ref)) is not None}
    for ref in repo.refs("refs/heads/", strict=False):
        if parse_branch_ref(ref) is None:
            problems.append(f"unexpected branch {ref} (scenario branches are named vN)")
    report.scenarios = len(branches)
    if branches and head_ok:  # the newest scenario that takes writes (not merged away)
        merged = repo.refs(MERGED, strict=False)
        live = [s for s in branches if MERGED + str(s) not in merged]
        newest = max(live or branches)
        head = repo.head_ref()
        if head != newest.branch_ref:
            problems.append(f"HEAD points at {head} instead of the newest scenario not merged away "
                            f"{newest.branch_ref}")
    tags: dict[Version, str] = {}
    for ref in repo.refs("refs/tags/", strict=False):
        v = parse_tag_ref(ref)
        if v is None:
            problems.append(f"unexpected tag {ref} (version tags are named vX.Y.Z)")
            continue
        tags[v] = ref
    for scenario, tip in sorted(branches.items()):
        _guarded(problems, f"{scenario} tip {tip[:12]}",
                 partial(_check_tip, customer, repo, scenario, tip, tags, problems))
    for v in sorted(tags):
        report.versions += 1
        _guarded(problems, f"tag {v}", partial(_check_tag, customer, repo, v, branches,
                                                problems))
    reported = _history_checks(repo, branches, tags, broken, problems)
    _recorded_checks(repo, recorded, branches, tags, broken | reported, problems)


def _check_tip(customer: Customer, repo: backend.Repo, scenario: Scenario, tip: str,
               tags: dict[Version, str], problems: list[str]) -> None:
    try:
        info = repo.commit(tip)
        version = version_of(info, repo.read_stored(tip))
    except GitStoreError as exc:
        problems.append(f"{scenario}: tip {tip[:12]} unreadable: {exc}")
        return
    finalized = info.finalizes
    if version is not None and finalized and version not in tags:
        problems.append(f"{scenario}: tag {version} is missing for finalize commit "
                        f"{tip[:12]} (the next write recreates it)")
    if version is not None and version in tags and not finalized:
        tagged = repo.tag(str(version))
        if tagged is not None and tagged.target != tip:
            problems.append(f"{scenario}: tip {tip[:12]} changes finalized version "
                            f"{version} after its tag (a commit made outside gitstore?)")
    allowed = customer.store.config.allowed_signers
    if allowed is not None:
        # the tip's signature covers, by hash, everything beneath it
        _check_signature(repo, f"{scenario} tip {tip[:12]}", tip, allowed, problems)
    _check_tree(customer, repo, f"{scenario} tip {tip[:12]}", tip, version,
                finalized or version in tags, problems)


def _check_tag(customer: Customer, repo: backend.Repo, v: Version,
               branches: dict[Scenario, str], problems: list[str]) -> None:
    tag = repo.tag(str(v))
    if tag is None:
        return
    where = f"tag {v}"
    if not tag.annotated:
        problems.append(f"{where} is a lightweight tag; versions are annotated tags")
    try:
        info = repo.commit(tag.target)
        trailer_v = version_of(info, repo.read_stored(tag.target))
    except GitStoreError as exc:
        problems.append(f"{where} points at an unreadable commit: {exc}")
        return
    if trailer_v is not None and trailer_v != v:
        problems.append(f"{where} points at a commit of {trailer_v}")
    branch_tip = branches.get(v.scenario)
    if branch_tip is None:
        problems.append(f"{where} has no scenario branch {v.scenario.branch_ref}")
    elif not repo.is_ancestor(tag.target, branch_tip):
        problems.append(f"{where} is not on its scenario branch {v.scenario.branch_ref}")
    _check_tree(customer, repo, where, tag.target, v, True, problems)
    allowed = customer.store.config.allowed_signers
    if allowed is not None:
        _check_signature(repo, where, tag.id, allowed, problems)
        _check_signature(repo, f"{where} commit {tag.target[:12]}", tag.target, allowed,
                         problems)


def _history_checks(repo: backend.Repo, branches: dict[Scenario, str],
                    tags: dict[Version, str], broken: set[str],
                    problems: list[str]) -> set[str]:
    """Every finalize or correction commit in a scenario's history (below its tip,
    which :func:`_check_tip` judges) has its version's tag, pointing at it: the
    history itself records which versions were finalized, so a deleted tag is
    found even where the access log is gone. Returns the tag refs reported."""
    reported: set[str] = set()
    for scenario, tip in sorted(branches.items()):
        try:
            for info in repo.walk(tip, first_parent=True):
                version = version_of(info)
                if info.id == tip or not info.finalizes or version is None \
                        or version.tag_ref in broken:  # a broken tag ref: named already
                    continue
                if version not in tags:
                    reported.add(version.tag_ref)
                    problems.append(f"{scenario}: finalized version {version} has lost its "
                                    f"tag {version.tag_ref} (its commit {info.id[:12]} is in "
                                    "the history; `gitstore repair` recreates the tag)")
                    continue
                tag = repo.tag(str(version))
                if tag is not None and tag.target != info.id:
                    reported.add(version.tag_ref)
                    problems.append(f"tag {version} points at {tag.target[:12]}, not at the "
                                    f"commit that finalized {version}, {info.id[:12]}")
        except GitStoreError:
            continue  # unreadable history: the object check names the objects
    return reported


def _recorded_checks(repo: backend.Repo, recorded: Recorded, branches: dict[Scenario, str],
                     tags: dict[Version, str], reported: set[str],
                     problems: list[str]) -> None:
    """What the access log says was written must still be there: each scenario
    branch it records writes to (with the last of them in its history) and each
    version tag it records cutting (at the commit it names)."""
    heads = {s.branch_ref: tip for s, tip in branches.items()}
    for ref, commit in sorted(recorded.branches.items()):
        if ref in reported:
            continue
        tip = heads.get(ref)
        if tip is None:
            problems.append(f"scenario {ref.rsplit('/', 1)[-1]} is missing: the access log "
                            f"records writes to {ref} (the last at {commit[:12]}) but the "
                            "branch is gone (`gitstore repair --from` restores it)")
            continue
        try:
            if not repo.is_ancestor(commit, tip):
                problems.append(f"{ref} has lost acknowledged writes: commit {commit[:12]}, "
                                "recorded in the access log, is not in its history (the "
                                "branch was moved back)")
        except GitStoreError:
            continue  # a missing object: the object check names it
    present = {v.tag_ref for v in tags}
    for ref, commit in sorted(recorded.tags.items()):
        if ref in reported:
            continue
        version = ref.rsplit("/", 1)[-1]
        if ref not in present:
            problems.append(f"finalized version {version} is missing: the access log records "
                            f"its tag {ref} cut at {commit[:12]}, but the tag is gone "
                            "(`gitstore repair` restores it)")
            continue
        try:
            tag = repo.tag(version)
        except GitStoreError:
            continue
        if tag is not None and tag.target != commit:
            problems.append(f"tag {version} points at {tag.target[:12]}, but the access log "
                            f"records it cut at {commit[:12]}")


# -- the catalog -------------------------------------------------------------------

#: Columns of each table of :meth:`gitstore.catalog.index.Index.dump`, and how many of
#: them (by position) name a row.
_CATALOG_TABLES: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "refs": (("customer", "ref", "target"), (0, 1)),
    "scenarios": (("customer", "scenario", "tip", "version", "session_id", "turns"), (0, 1)),
    "versions": (COLUMNS, (0, 2)),
    "services": (("customer", "version", "service"), (0, 1, 2)),
    "turns": (("customer", "scenario", "turn_id", "timestamp", "digest", "query", "response"),
              (0, 1, 2)),
}
CATALOG_SHOWN = 50


def check_catalog(store: Store) -> list[str]:
    """The index against git: brought up to date the way every query does it, then
    compared row by row with an index rebuilt from git alone (in a temporary file).
    One line per row git does not back (forged, or left stale), per row that
    differs from git, and per row git has that the index lacks."""
    index = store.catalog
    index.refresh()
    actual = index.dump()
    private = store.root / STORE_DIR  # else (a read-only store) the system's temp
    with tempfile.TemporaryDirectory(prefix="verify-catalog-", dir=private if os.access(
            private, os.W_OK) else None) as tmp:
        fresh = Index(store, Path(tmp) / INDEX_FILE)
        try:
            fresh.rebuild()
            expected = fresh.dump()
        finally:
            fresh.close()
    problems: list[str] = []
    for table in sorted(set(actual) | set(expected)):
        have, want = actual.get(table, []), expected.get(table, [])
        if sorted(have, key=repr) == sorted(want, key=repr):
            continue
        columns, key_at = _CATALOG_TABLES.get(table, ((), ()))
        if not key_at:
            problems.append(f"index table {table} differs from git ({len(have)} row(s), git "
                            f"backs {len(want)})")
            continue
        keyed_have = {tuple(r[i] for i in key_at): r for r in have}
        keyed_want = {tuple(r[i] for i in key_at): r for r in want}
        for key in sorted(keyed_have.keys() | keyed_want.keys(), key=repr):
            row, truth = keyed_have.get(key), keyed_want.get(key)
            name = f"index row {table}{key}"
            if truth is None:
                problems.append(f"{name} is not backed by git (forged, or stale; `gitstore "
                                "reindex` rebuilds the index)")
            elif row is None:
                problems.append(f"{name} is missing (git has it)")
            elif row != truth:
                cols = [columns[i] if i < len(columns) else f"column {i}"
                        for i in range(max(len(row), len(truth)))
                        if (row[i] if i < len(row) else None)
                        != (truth[i] if i < len(truth) else None)]
                problems.append(f"{name} differs from git in {', '.join(cols)}")
    if len(problems) > CATALOG_SHOWN:
        problems = [*problems[:CATALOG_SHOWN],
                    f"... and {len(problems) - CATALOG_SHOWN} more differing row(s)"]
    return problems


def _check_tree(customer: Customer, repo: backend.Repo, where: str, commit: str,
                version: Version | None, finalized: bool, problems: list[str]) -> None:
    files: Mapping[str, bytes] | None
    try:
        stored = repo.read_stored(commit)
        files = stored if repo.codec is None else repo.codec.open_files(stored)
    except (KeyUnavailableError, ShreddedError):
        files = None  # encrypted, no key here: the stored bytes are all there is to check
    except GitStoreError as exc:
        problems.append(f"{where}: cannot read tree: {exc}")
        return
    except Exception as exc:  # a damaged object surfaces as a libgit2 error
        problems.append(f"{where}: cannot read tree: {exc}")
        return
    info = repo.commit(commit)
    for name, mode in sorted(repo.tree_modes(commit).items()):
        if mode not in (0o100644, 0o100755):
            problems.append(f"{where}: {name} is not a regular file (mode {mode:o})")
    if repo.codec is not None:  # sealed: the manifest lists the stored bytes; without the
        # key, what a hub checks too (canonical, well-formed tokens, nothing in clear)
        problems.extend(f"{where}: {v}" for v in (
            manifest.verify(stored) if files is not None else sealed.check_stored(stored)))
        if files is not None:
            problems.extend(f"{where}: {p}" for p in content_proof(customer, info, stored, files))
    if files is None:
        return
    proposal = Proposal(customer=customer.name, files=files, version=version,
                        change="verify", session_id=info.trailer("Session-Id"),
                        finalizing=finalized, verify_manifest=repo.codec is None)
    try:
        customer.store.pipeline.run(proposal)
    except InvalidDocumentError as exc:
        problems.extend(f"{where}: {v}" for v in exc.violations)


def content_proof(customer: Customer, info: CommitInfo, stored: Mapping[str, bytes],
                  files: Mapping[str, bytes]) -> list[str]:
    """With the key: the commit's ``Sealed-Digest`` is the keyed digest of the
    manifest of its plaintext files (every session file; a conversation in parts
    assembled). Without it (no master key here, or the session shredded) nothing is
    proven and nothing found: the stored bytes were checked as a hub checks them."""
    claimed = info.trailer(sealed.TRAILER)
    if claimed is None:
        return ["encrypted commit without a Sealed-Digest trailer: content not proven"]
    listed = {n: d for n, d in files.items() if n != MANIFEST and not n.startswith(CONV_PARTS)}
    try:
        version = version_of(info, stored)
        key = customer.sealer.key(version.major) if version is not None else None
    except (KeyUnavailableError, ShreddedError):
        return []  # no key here: what a hub checks is all there is to check
    except GitStoreError as exc:
        return [f"content not proven: {exc}"]
    if key is None or key.digest(manifest.build(listed)) != claimed:
        return ["decrypted content does not match its Sealed-Digest (keyed digest)"]
    return []


def _check_signature(repo: backend.Repo, where: str, oid: str, allowed: Path,
                     problems: list[str]) -> None:

    found = repo.signature(oid)
    if found is None:
        problems.append(f"{where} is not signed")
        return
    try:
        signing.verify(found[1], found[0], allowed)
    except GitStoreError as exc:
        problems.append(f"{where}: {exc}")


# -- permissions ---------------------------------------------------------------------

#: Permission bits for group and others: none may be set where session data lives.
SHARED_BITS = 0o077


def _exposed(path: Path, what: str, fix: str) -> str | None:
    """A problem line if ``path`` grants group or others any access; None if not (or
    if it does not exist)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check the permissions of {path}: {exc.strerror}"
    if stat.S_ISLNK(mode) or not mode & SHARED_BITS:
        return None
    return (f"{path} ({what}) has mode {stat.S_IMODE(mode):04o}: group or others can "
            f"reach it; run chmod {fix} {path}")


def check_repository_permissions(repo_dir: Path) -> list[str]:
    """The customer isolation check of one repository directory."""
    found = _exposed(repo_dir, "a customer repository", "700")
    return [found] if found else []


def check_permissions(store: Store) -> list[str]:
    """The store-wide isolation checks (see the module docstring): one line per
    file or directory that group or others can reach."""
    base = store.root / STORE_DIR
    index_files = [base / f"{INDEX_FILE}{suffix}" for suffix in ("", "-wal", "-shm")]
    try:
        entries = sorted(base.iterdir()) if base.is_dir() else []
    except OSError:
        entries = []
    index_files += [p for p in entries if p.name.startswith(f"{INDEX_FILE}.unusable-")]
    problems = [_exposed(p, "the index: every customer's turn text", "600")
                for p in index_files]
    problems.append(_exposed(base / NAME_KEY_FILE, "the key of hashed customer names", "600"))
    problems.append(_exposed(base / "spool", "turns waiting to be written", "700"))
    quarantine = base / "quarantine"
    if quarantine.is_dir():
        problems += [_exposed(p, "a quarantined repository", "700")
                     for p in sorted(quarantine.iterdir())]
    return [p for p in problems if p is not None]
