"""Quarantine and repair of damaged customer repositories.

Nothing here deletes data:

* :func:`quarantine` moves a whole repository directory aside, intact, to
  ``<root>/.gitstore/quarantine/<customer>-<UTC time>``; the customer then
  reads as unknown and a new repository can be started or the copy repaired
  and moved back by hand;
* :func:`repair` moves damaged object files (corrupt loose objects, damaged
  packs), a damaged ``packed-refs`` (its valid lines are kept) and an
  unreadable ``HEAD`` aside into ``<repo>/gitstore-damaged/<UTC time>/``, copies
  every missing reachable object from a source that still has it (another
  clone, a quarantined copy, or a git bundle made by ``gitstore export``),
  restores broken refs and missing ones (every scenario branch and version tag
  the source has, except those the access log records as purged by retention)
  from the source, recreates a finalized version's tag from its commit where
  no source has it, points ``HEAD`` at the newest scenario, and checks the
  result. Objects are copied by content and their ids re-checked, so a source
  cannot smuggle in different data under a known id.

A repair source must be a copy of the same customer: a source whose sessions
name another ``api_key``, or whose scenario has another session id than the
customer's, is refused before anything changes. A repository directory whose
``objects/`` or ``refs/`` is gone gets them back (empty, then filled from the
source); an empty or plain directory is not a repository to repair.

Both run under the customer's writer lock and leave a record in its audit log;
neither writes through a symbolic link (``gitstore-damaged`` included).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitstore.core import canonical, manifest
from gitstore.core.commits import version_of
from gitstore.core.names import META
from gitstore.core.versions import Scenario, parse_branch_ref, parse_tag_ref
from gitstore.errors import (
    GitStoreError,
    IntegrityError,
    NotFoundError,
    StorageError,
    UsageError,
)
from gitstore.git import binary
from gitstore.git.integrity import repository_problem
from gitstore.git.repo import Repo
from gitstore.ops.verify import check_customer
from gitstore.store import config as config_mod
from gitstore.store.audit import recorded_refs
from gitstore.store.facade import Customer
from gitstore.store.tip import cut_tag


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def quarantine(customer: Customer) -> Path:
    """Move the customer's repository aside intact; returns where it went."""
    store = customer.store
    with customer.locked():
        if customer.path.is_symlink() or not customer.path.is_dir():
            customer.require()  # NotFoundError; a damaged directory may be moved aside too
        customer.audit("quarantine", detail="repository moved aside intact")
        dest_dir = store.root / config_mod.CONFIG_DIR / "quarantine"
        dest = dest_dir / f"{customer.name}-{_stamp()}"
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            os.rename(customer.path, dest)
        except OSError as exc:
            raise StorageError(f"cannot quarantine {customer.name}: {exc.strerror}") from None
        customer.reopen()
    return dest


@dataclass
class RepairReport:
    customer: str
    source: str
    set_aside: list[str] = field(default_factory=list)
    copied: int = 0
    refs_restored: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.remaining

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "source": self.source, "set_aside": self.set_aside,
                "objects_copied": self.copied, "refs_restored": self.refs_restored,
                "remaining_problems": self.remaining, "ok": self.ok}


def repair(customer: Customer, source: Path) -> RepairReport:
    """Repair ``customer`` from ``source`` (a repository directory or a git bundle).

    In order: the source is checked to be a copy of this customer; a repository
    directory that lost ``objects/`` or ``refs/`` gets them back empty; stray lock
    files, a damaged ``packed-refs`` and damaged object files are moved aside;
    missing objects are copied from the source; broken and missing refs are
    restored from it (never one the access log records as purged); a finalized
    version whose tag is still missing gets it recreated from its commit; an
    unreadable ``HEAD`` is pointed at the newest scenario; a scenario branch
    whose tip fails its manifest (tampered with outside gitstore) is moved back
    to the source's value of it when that is an ancestor whose files pass; the
    bad tip's id is recorded in ``gitstore-damaged/<time>/refs/heads/vN`` and
    its objects stay in the database (only a retention prune removes
    unreachable objects). Then every health check runs again; whatever remains
    is reported (and the CLI exits 7)."""
    if not source.exists():
        raise NotFoundError(f"repair source {source} does not exist")
    with customer.locked(), _SourceRepo(source) as src:
        report = RepairReport(customer.name, str(source))
        _restore_skeleton(customer, report)
        repo = customer.repo
        _check_source(customer, repo, src, source)
        stamp = _stamp()
        damaged = customer.path / "gitstore-damaged"
        if damaged.is_symlink():
            raise StorageError(f"{damaged} is a symbolic link; gitstore never writes through "
                               "one: move it away first")
        aside = damaged / stamp
        for lock in repo.clear_stale_locks(aside=aside):
            report.set_aside.append(f"{lock} (a lock file left by a dead process)")
        kept = repo.salvage_packed_refs(aside)
        if kept is not None:
            report.set_aside.append(f"packed-refs (damaged; {kept} readable ref(s) kept, the "
                                    "rest restored from the source)")
        for oid, holder in repo.damaged_objects():
            if holder.is_file() and holder.exists():
                moved = _set_aside(customer.path, holder, aside)
                if holder.suffix == ".pack":
                    idx = holder.with_suffix(".idx")
                    if idx.exists():
                        _set_aside(customer.path, idx, aside)
                report.set_aside.append(f"{moved} (held damaged object {oid[:12]})")
        # a fresh handle: the old one may have the damaged pack mapped
        customer.reopen()
        repo = customer.repo
        broken = repo.broken_refs()
        missing = _missing_refs(customer, repo, src, set(broken))
        report.copied = repo.copy_reachable_from(src, also=missing.values())
        for name in broken:
            if repo.restore_ref(name, src, aside):
                report.refs_restored.append(name)
                report.set_aside.append(f"{name} (the broken ref file)")
        for name in sorted(missing):
            if repo.restore_ref(name, src, aside):
                report.refs_restored.append(f"{name} (it was missing)")
        _rollback_bad_tips(customer, repo, src, aside, report)
        _recreate_tags(customer, repo, report)
        _restore_head(repo, aside, report)
        customer.reopen()
        customer.refs_moved()
        health = check_customer(customer)
        report.remaining = list(health.problems)
        customer.audit("repair", detail=f"from {source}: {report.copied} object(s) copied, "
                       f"{len(report.set_aside)} file(s) set aside, "
                       f"{len(report.refs_restored)} ref(s) restored, "
                       f"{len(report.remaining)} problem(s) remain")
    return report


def _restore_skeleton(customer: Customer, report: RepairReport) -> None:
    """Give a repository directory that lost ``objects/`` or ``refs/`` empty ones
    (the source fills them); refuse a directory that is no repository at all."""
    path = customer.path
    if path.is_symlink() or not path.is_dir():
        raise NotFoundError(f"unknown customer {customer.name!r} in {customer.store.root}")
    problem = repository_problem(path)
    if problem is None:
        return
    left = [n for n in ("HEAD", "objects", "refs", "config") if (path / n).exists()]
    if not left or any((path / n).is_symlink() for n in ("HEAD", "objects", "refs")):
        raise IntegrityError(f"the customer directory {customer.name} {problem}; there is no "
                             "repository left to repair: move it aside by hand and restore "
                             "the customer with `gitstore import`")
    try:
        for sub in ("objects", "objects/pack", "objects/info", "refs", "refs/heads",
                    "refs/tags"):
            target = path / sub
            if not target.exists():
                target.mkdir(mode=0o755)
                if sub in ("objects", "refs"):
                    report.set_aside.append(f"{sub}/ (it was gone: recreated empty, then "
                                            "filled from the source)")
        if not (path / "HEAD").exists():  # pointed at the newest scenario once refs are back
            (path / "HEAD").write_text("ref: refs/heads/v1\n", encoding="ascii")
            report.set_aside.append("HEAD (it was gone: recreated)")
    except OSError as exc:
        raise StorageError(f"cannot restore the repository layout of {customer.name}: "
                           f"{exc.strerror}") from None
    customer.reopen()


def _identities(repo: Repo) -> dict[Scenario, tuple[str | None, str | None]]:
    """``scenario -> (session id, api_key)`` of each readable scenario branch tip."""
    out: dict[Scenario, tuple[str | None, str | None]] = {}
    try:
        tips = repo.refs("refs/heads/", strict=False)
    except GitStoreError:
        return out
    for ref, tip in tips.items():
        scenario = parse_branch_ref(ref)
        if scenario is None:
            continue
        try:
            info = repo.commit(tip)
            data = repo.read_file(tip, META)
        except GitStoreError:
            continue
        session_id, api_key = info.trailer("Session-Id"), None
        try:
            meta = canonical.loads(data)["session_info"] if data else {}
            api_key = meta.get("api_key") if isinstance(meta, dict) else None
            session_id = session_id or (meta.get("session_id") if isinstance(meta, dict)
                                        else None)
        except (canonical.JSONParseError, KeyError, TypeError):
            pass
        out[scenario] = (session_id if isinstance(session_id, str) else None,
                         api_key if isinstance(api_key, str) else None)
    return out


def _check_source(customer: Customer, repo: Repo, src: Repo, source: Path) -> None:
    """Refuse a source that is not a copy of this customer: another ``api_key`` in
    its metadata, or another session id for a scenario both have."""
    theirs = _identities(src)
    keys = sorted({key for _, key in theirs.values() if key is not None})
    if any(key != customer.name for key in keys):
        raise UsageError(f"{source} is not a copy of customer {customer.name}: its sessions "
                         "belong to another customer (their api_key differs); nothing was "
                         "changed")
    ours = _identities(repo)
    for scenario in sorted(theirs.keys() & ours.keys()):
        mine, other = ours[scenario][0], theirs[scenario][0]
        if mine is not None and other is not None and mine != other:
            raise UsageError(f"{source} is not a copy of customer {customer.name}: its "
                             f"scenario {scenario} is session {other!r}, here it is "
                             f"{mine!r}; nothing was changed")


def _missing_refs(customer: Customer, repo: Repo, src: Repo,
                  broken: set[str]) -> dict[str, str]:
    """Scenario branches and version tags the source has and this repository lacks,
    except those the access log records as purged: ``ref -> the source's id``."""
    try:
        purged = recorded_refs(customer.audit_log.records()).purged
    except GitStoreError:
        purged = set()
    ours = repo.refs(strict=False)
    return {ref: target for ref, target in src.refs(strict=False).items()
            if (parse_branch_ref(ref) is not None or parse_tag_ref(ref) is not None)
            and ref not in ours and ref not in broken and ref not in purged}


def _rollback_bad_tips(customer: Customer, repo: Repo, src: Repo, aside: Path,
                       report: RepairReport) -> None:
    for ref, tip in sorted(repo.refs("refs/heads/", strict=False).items()):
        good = src.source_ref(ref)
        if good is None or good == tip or manifest.verify(repo.read_stored(tip)) == []:
            continue
        if repo.is_ancestor(good, tip) and not manifest.verify(repo.read_stored(good)):
            saved = aside / ref  # the ref as it was, like a ref file
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(tip + "\n", encoding="ascii")
            repo.update_ref(ref, good, tip, "gitstore: repair rolled back a bad tip")
            report.refs_restored.append(f"{ref} rolled back {tip[:12]} -> {good[:12]} "
                                        f"(the bad tip is recorded in "
                                        f"{saved.relative_to(customer.path)})")


def _recreate_tags(customer: Customer, repo: Repo, report: RepairReport) -> None:
    """Cut the tag of every finalize or correction commit in a scenario's history
    that has none (no source had it): from the commit itself, as the writer does
    after a crash between commit and tag."""
    tags = repo.refs("refs/tags/", strict=False)
    for tip in repo.refs("refs/heads/", strict=False).values():
        try:
            history = list(repo.walk(tip, first_parent=True))
        except GitStoreError:
            continue
        for info in history:
            version = version_of(info)
            if not info.finalizes or version is None or version.tag_ref in tags:
                continue
            cut_tag(repo, info.id, info, info.time, info.offset, customer.store.signer)
            tags[version.tag_ref] = info.id
            report.refs_restored.append(f"{version.tag_ref} (recreated from its commit "
                                        f"{info.id[:12]})")


def _restore_head(repo: Repo, aside: Path, report: RepairReport) -> None:
    """Point an unreadable ``HEAD``, or one naming no scenario, at the newest scenario."""
    scenarios = sorted(s for ref in repo.refs("refs/heads/", strict=False)
                       if (s := parse_branch_ref(ref)) is not None)
    if not scenarios:
        return
    newest = scenarios[-1].branch_ref
    problem = repo.head_problem()
    if problem is not None:
        repo.restore_head(newest, aside)
        report.refs_restored.append(f"HEAD -> {newest} ({problem})")
        report.set_aside.append("HEAD (the damaged file)")
    elif repo.head_ref() != newest:
        repo.set_head(newest)
        report.refs_restored.append(f"HEAD -> {newest}")


def _set_aside(repo_dir: Path, path: Path, aside: Path) -> str:
    rel = path.relative_to(repo_dir)
    dest = aside / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(path, dest)
    return str(rel)


class _SourceRepo:
    """Open a repository directory, or clone a git bundle into a temp mirror."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.tmp: str | None = None

    def __enter__(self) -> Repo:
        if self.source.is_dir():
            return Repo.open_source(self.source)
        if not binary.available():
            raise UsageError("repairing from a bundle file needs git on PATH; or clone the "
                             "bundle yourself and pass the clone's directory")
        self.tmp = tempfile.mkdtemp(prefix="gitstore-repair-")
        mirror = Path(self.tmp) / "src.git"
        try:
            binary.clone_mirror(self.source, mirror, what="bundle")
            return Repo.open_source(mirror)
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
