"""Damage on disk: ``verify`` names it, ``quarantine`` sets it aside, ``repair`` fixes it.

Six kinds of damage are made by hand to a copy of a recorded store (v1.0.0
finalized, v1.1.0 open): a corrupted loose object, a missing loose object, a
damaged pack, a document that no longer matches ``SHA256SUMS`` (committed with
plain git plumbing), a broken ref and a stray ref lock. For each:

* ``gitstore verify`` exits 7 and names exactly what is damaged, one line per
  problem, and changes nothing;
* ``gitstore quarantine`` moves the repository aside byte for byte;
* ``gitstore repair --from`` a backup made before the damage (a ``git clone
  --mirror`` and a ``git bundle create --all``) gives back a repository with
  the refs it had before, that ``verify`` and ``git fsck --strict`` pass, and
  nothing is deleted on the way: every file it replaced or removed is still on
  disk, byte for byte, under ``gitstore-damaged/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    CUSTOMER,
    ROOT,
    Clock,
    explode_packs,
    git,
    load_example,
    record_example_session,
)

from gitstore import Store

AUDIT_FILES = ("gitstore-audit.jsonl", "gitstore-audit.head")


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gitstore", "--root", str(root), *args],
                          capture_output=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
                          check=False)


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def files_of(directory: Path) -> dict[str, bytes]:
    """Every regular file under ``directory``, by relative path."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def flip_middle(path: Path, count: int = 8) -> int:
    """Invert ``count`` bytes in the middle of ``path``; returns the offset."""
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return middle


def loose(repo: Path, oid: str) -> Path:
    """``oid``'s object file, the repository's packs made loose first."""
    explode_packs(repo)
    path = repo / "objects" / oid[:2] / oid[2:]
    assert path.is_file(), f"{oid} is not a loose object"
    return path


# =========================================================================== the pristine store

@dataclass
class Pristine:
    root: Path
    mirror: Path
    bundle: Path
    refs: str


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    base = tmp_path_factory.mktemp("pristine")
    store = Store.init(base / "sessions", clock=Clock())
    session = record_example_session(store)  # v1.0.0
    session.follow_up()                      # v1.1.0, open
    session.append_turn(load_example("follow_up", "turns", "turn-06.json"))
    repo = store.root / CUSTOMER
    assert cli(store.root, "verify").returncode == 0
    git(repo, "fsck", "--strict")
    # the backups, made before any damage
    mirror = base / "backup.git"
    subprocess.run(["git", "clone", "--quiet", "--mirror", str(repo), str(mirror)], check=True)
    bundle = base / "backup.bundle"
    git(repo, "bundle", "create", str(bundle), "--all")
    return Pristine(store.root, mirror, bundle, refs(repo))


@dataclass
class Damage:
    """What was damaged, and what verify must say about it."""

    names: list[str]                 # substrings verify's output must contain
    anchors: list[str]               # every problem line names one of these
    holder: str | None = None        # the damaged file, relative to the repository


def corrupt_loose_object(repo: Path) -> Damage:
    oid = git(repo, "rev-parse", "v1:deployment_context.json").strip()
    path = loose(repo, oid)
    flip_middle(path)
    rel = str(path.relative_to(repo))
    return Damage([f"object {oid} (reachable from refs/", "is corrupt"], [oid], rel)


def missing_loose_object(repo: Path) -> Damage:
    oid = git(repo, "rev-parse", "v1:session_analytics.json").strip()
    loose(repo, oid).unlink()
    return Damage([f"object {oid} (reachable from refs/", "is missing"], [oid])


def damaged_pack(repo: Path) -> Damage:
    git(repo, "gc", "--quiet")
    (pack,) = (repo / "objects" / "pack").glob("*.pack")
    assert not list((repo / "objects").glob("??/*")), "gc left loose objects"
    # where each object's packed data lies (read before the damage)
    rows = []
    for line in git(repo, "verify-pack", "-v", str(pack.with_suffix(".idx"))).splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.fullmatch(r"[0-9a-f]{40}", parts[0]):
            rows.append((parts[0], int(parts[3]), int(parts[4])))
    offset = flip_middle(pack)
    # the object whose packed data holds the flipped bytes
    hit = [oid for oid, size, start in rows if start <= offset < start + size]
    assert len(hit) == 1, (offset, rows)
    return Damage([f"object {hit[0]} (reachable from refs/", "is corrupt"],
                  [oid for oid, _, _ in rows], str(pack.relative_to(repo)))


def manifest_mismatch(repo: Path) -> Damage:
    """Change conversation.json on v1 with plain git plumbing, SHA256SUMS untouched."""
    old = git(repo, "rev-parse", "refs/heads/v1").strip()
    data = subprocess.run(["git", "-C", str(repo), "show", "v1:conversation.json"],
                          capture_output=True, check=True).stdout
    changed = data.replace(b"AWS API Gateway Enhanced Collector", b"Some Other Collector", 1)
    assert changed != data
    blob = git(repo, "hash-object", "-w", "--stdin", input=changed).strip()
    entries = []
    for line in git(repo, "ls-tree", "v1").splitlines():
        meta, name = line.split("\t")
        mode, kind, oid = meta.split()
        entries.append(f"{mode} {kind} {blob if name == 'conversation.json' else oid}\t{name}")
    tree = git(repo, "mktree", input=("\n".join(entries) + "\n").encode()).strip()
    commit = git(repo, "commit-tree", tree, "-p", old, "-m", "edit outside gitstore").strip()
    git(repo, "update-ref", "refs/heads/v1", commit, old)
    return Damage([f"v1 tip {commit[:12]}: conversation.json: checksum does not match "
                   "SHA256SUMS"], ["conversation.json"])


def broken_ref(repo: Path) -> Damage:
    (repo / "refs" / "heads" / "v1").write_bytes(b"this is not an object id\n")
    return Damage(["ref refs/heads/v1 is broken"], ["refs/heads/v1"], "refs/heads/v1")


def stray_lock(repo: Path) -> Damage:
    lock = repo / "refs" / "heads" / "v1.lock"
    lock.write_text(git(repo, "rev-parse", "refs/heads/v1"), encoding="ascii")
    return Damage(["stray lock file refs/heads/v1.lock"], ["refs/heads/v1.lock"],
                  "refs/heads/v1.lock")


DAMAGES: dict[str, Callable[[Path], Damage]] = {
    "corrupt-loose-object": corrupt_loose_object,
    "missing-loose-object": missing_loose_object,
    "damaged-pack": damaged_pack,
    "manifest-mismatch": manifest_mismatch,
    "broken-ref": broken_ref,
    "stray-lock": stray_lock,
}


@dataclass
class Damaged:
    root: Path
    repo: Path
    damage: Damage
    pristine: Pristine


@pytest.fixture(params=list(DAMAGES))
def damaged(request: pytest.FixtureRequest, pristine: Pristine, tmp_path: Path) -> Damaged:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    repo = root / CUSTOMER
    return Damaged(root, repo, DAMAGES[request.param](repo), pristine)


# =========================================================================== verify

def test_verify_names_the_damage_precisely_and_touches_nothing(damaged: Damaged) -> None:
    before = files_of(damaged.repo)
    proc = cli(damaged.root, "verify")
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 7, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    lines = out.splitlines()
    assert lines
    for needle in damaged.damage.names:
        assert needle in out, f"{needle!r} not in:\n{out}"
    for line in lines:
        assert line.startswith(f"{CUSTOMER}: "), line
        assert any(a in line for a in damaged.damage.anchors), \
            f"a problem line names none of {damaged.damage.anchors}: {line}"
    assert re.fullmatch(rf"gitstore: error: {len(lines)} problem\(s\) in 1 of 1 customer\(s\)\n",
                        err), err
    # the JSON report says the same
    proc = cli(damaged.root, "verify", CUSTOMER, "-o", "json")
    assert proc.returncode == 7
    (report,) = json.loads(proc.stdout)
    assert report["ok"] is False and [f"{CUSTOMER}: {p}" for p in report["problems"]] == lines
    # verify reads only (its own access-log record aside)
    after = files_of(damaged.repo)
    assert {k: v for k, v in after.items() if k not in AUDIT_FILES} == \
        {k: v for k, v in before.items() if k not in AUDIT_FILES}


# =========================================================================== quarantine

def test_quarantine_moves_the_repository_aside_intact(damaged: Damaged) -> None:
    before = files_of(damaged.repo)
    proc = cli(damaged.root, "quarantine", CUSTOMER)
    assert proc.returncode == 0, proc.stderr
    dest = Path(proc.stdout.decode().strip())
    assert dest.is_dir() and dest.parent == damaged.root / ".gitstore" / "quarantine", dest
    assert dest.name.startswith(f"{CUSTOMER}-")
    assert not damaged.repo.exists()
    moved = files_of(dest)
    # byte for byte the same files; the access log gained the quarantine record only
    assert {k: v for k, v in moved.items() if k not in AUDIT_FILES} == \
        {k: v for k, v in before.items() if k not in AUDIT_FILES}
    old_log, new_log = before["gitstore-audit.jsonl"], moved["gitstore-audit.jsonl"]
    assert new_log.startswith(old_log)
    added = [json.loads(x) for x in new_log[len(old_log):].splitlines()]
    assert [r["op"] for r in added] == ["quarantine"]
    # the customer now reads as unknown; the store itself is fine
    proc = cli(damaged.root, "show", CUSTOMER)
    assert proc.returncode == 3, proc.stderr
    proc = cli(damaged.root, "customers")
    assert proc.returncode == 0 and CUSTOMER not in proc.stdout.decode()
    proc = cli(damaged.root, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# =========================================================================== repair

@pytest.mark.parametrize("source", ["mirror", "bundle"])
def test_repair_from_a_backup_restores_the_state_before_the_damage(damaged: Damaged,
                                                                   source: str) -> None:
    repo = damaged.repo
    src = damaged.pristine.mirror if source == "mirror" else damaged.pristine.bundle
    backup_before = files_of(src) if src.is_dir() else {"": src.read_bytes()}
    before = files_of(repo)
    proc = cli(damaged.root, "repair", CUSTOMER, "--from", str(src))
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    # the repository is whole again, as it was
    proc = cli(damaged.root, "verify")
    assert proc.returncode == 0, f"after repair:\n{proc.stdout.decode()}{proc.stderr.decode()}"
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True,
                          check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert refs(repo) == damaged.pristine.refs
    # nothing deleted: every object and ref file that repair replaced or removed is
    # under gitstore-damaged/<time>/ with the same relative path, byte for byte
    after = files_of(repo)
    aside = {rel.split("/", 2)[2]: data for rel, data in after.items()
             if rel.startswith("gitstore-damaged/")}
    kept = ("objects/", "refs/", "packed-refs")
    for rel, data in before.items():
        if not rel.startswith(kept):
            continue
        if after.get(rel) == data:
            continue
        assert aside.get(rel) == data, f"{rel} was replaced or removed, not set aside"
    if damaged.damage.holder is not None and damaged.damage.holder in aside:
        assert aside[damaged.damage.holder] == before[damaged.damage.holder]
    # the backup was only read
    assert (files_of(src) if src.is_dir() else {"": src.read_bytes()}) == backup_before
    # and the repaired repository takes writes again
    session = Store(damaged.root, clock=Clock()).customer(CUSTOMER).session()
    session.append_turn(load_example("follow_up", "turns", "turn-07.json"))
    git(repo, "fsck", "--strict")
    assert cli(damaged.root, "verify").returncode == 0


def test_repair_of_an_undamaged_repository_changes_nothing(pristine: Pristine,
                                                          tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    repo = root / CUSTOMER
    before = files_of(repo)
    proc = cli(root, "repair", CUSTOMER, "--from", str(pristine.bundle))
    assert proc.returncode == 0, proc.stderr
    after = files_of(repo)
    assert {k: v for k, v in after.items() if k not in AUDIT_FILES} == \
        {k: v for k, v in before.items() if k not in AUDIT_FILES}
    assert not (repo / "gitstore-damaged").exists()
