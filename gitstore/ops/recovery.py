"""Quarantine and repair of damaged customer repositories.

Nothing here deletes data:

* :func:`quarantine` moves a whole repository directory aside, intact, to
  ``<root>/.gitstore/quarantine/<customer>-<UTC time>``; the customer then
  reads as unknown and a new repository can be started or the copy repaired
  and moved back by hand;
* :func:`repair` moves damaged object files (corrupt loose objects, damaged
  packs) aside into ``<repo>/gitstore-damaged/<UTC time>/``, copies every
  missing reachable object from a source that still has it (another clone, a
  quarantined copy, or a git bundle made by ``gitstore export``), restores
  broken refs from the source, and checks the result. Objects are copied by
  content and their ids re-checked, so a source cannot smuggle in different
  data under a known id.

Both run under the customer's writer lock and leave a record in its audit log.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitstore.core import manifest
from gitstore.errors import NotFoundError, StorageError, UsageError
from gitstore.git import binary
from gitstore.git.repo import Repo
from gitstore.ops.verify import check_customer
from gitstore.store import config as config_mod
from gitstore.store.facade import Customer


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def quarantine(customer: Customer) -> Path:
    """Move the customer's repository aside intact; returns where it went."""
    store = customer.store
    with customer.locked():
        customer.require()
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

    In order: stray lock files and damaged object files are moved aside; missing
    objects are copied from the source; broken refs are restored from it; a
    scenario branch whose tip fails its manifest (tampered with outside
    gitstore) is moved back to the source's value of it when that is an
    ancestor whose files pass; the bad tip's id is recorded in
    ``gitstore-damaged/<time>/refs/heads/vN`` and its objects stay in the
    database (only a retention prune removes unreachable objects). Then every
    health check runs again;
    whatever remains is reported (and the CLI exits 7)."""
    if not source.exists():
        raise NotFoundError(f"repair source {source} does not exist")
    with customer.locked(), _SourceRepo(source) as src:
        repo = customer.repo
        report = RepairReport(customer.name, str(source))
        stamp = _stamp()
        aside = customer.path / "gitstore-damaged" / stamp
        for lock in repo.clear_stale_locks(aside=aside):
            report.set_aside.append(f"{lock} (a lock file left by a dead process)")
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
        report.copied = repo.copy_reachable_from(src)
        for name in repo.broken_refs():
            if repo.restore_ref(name, src, aside):
                report.refs_restored.append(name)
                report.set_aside.append(f"{name} (the broken ref file)")
        for ref, tip in sorted(repo.refs("refs/heads/").items()):
            good = src.source_ref(ref)
            if good is None or good == tip or manifest.verify(repo.read_tree(tip)) == []:
                continue
            if repo.is_ancestor(good, tip) and not manifest.verify(repo.read_tree(good)):
                saved = aside / ref  # the ref as it was, like a ref file
                saved.parent.mkdir(parents=True, exist_ok=True)
                saved.write_text(tip + "\n", encoding="ascii")
                repo.update_ref(ref, good, tip, "gitstore: repair rolled back a bad tip")
                report.refs_restored.append(f"{ref} rolled back {tip[:12]} -> {good[:12]} "
                                            f"(the bad tip is recorded in "
                                            f"{saved.relative_to(customer.path)})")
        customer.reopen()
        health = check_customer(customer)
        report.remaining = list(health.problems)
        customer.audit("repair", detail=f"from {source}: {report.copied} object(s) copied, "
                       f"{len(report.set_aside)} file(s) set aside, "
                       f"{len(report.refs_restored)} ref(s) restored, "
                       f"{len(report.remaining)} problem(s) remain")
    return report


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
