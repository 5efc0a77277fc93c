"""The corruption matrix: every kind of on-disk damage x (verify, reads, a write, repair).

A recorded store (customer-xyz789: v1.0.0 finalized, v1.1.0 open with one turn; a
second customer, other-cust, finalized) is copied and damaged in one way each. For
every kind of damage:

* ``gitstore verify`` of the whole store exits 7 with a finding that names the
  damage, and still checks the other customer (never 70, never 0, never a stop);
* two reads (``versions``, ``log``) and a write (``turn``) end in the exit code the
  table says (never 70: a damaged repository is an integrity failure or, where the
  data read is intact, a success);
* ``gitstore repair --from`` a backup made before the damage ends as the table
  says; where it succeeds the repository has the refs it had before, ``verify``
  and ``git fsck --strict`` pass and it takes writes again.

Damage that verify must find with a record that the damage itself cannot erase (a
deleted tag, a deleted ``packed-refs``) is found through the scenario history and
the access log. Also here: ``repair`` refuses a source that is another customer's
(issue 11 item 8), the three damage reports of item 9 (a stale
``packed-refs.lock`` and ``maintain``, a garbage ``HEAD`` and a write, a broken
branch ref and the reads that used to omit the open version), and item 18: the
access log anchored in git (a cut tail with its head file gone is found) and
``verify --catalog`` (forged index rows are found).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    CUSTOMER,
    Clock,
    explode_packs,
    git,
    load_example,
    record_example_session,
    run_cli,
)

from gitstore import Store
from gitstore.errors import IntegrityError

OTHER = "other-cust"
PLAIN = "plain-cust"
TURN_7 = Path(__file__).resolve().parent.parent / "examples" / "follow_up" / "turns" / \
    "turn-07.json"


@dataclass
class Pristine:
    root: Path
    mirror: Path
    bundle: Path
    refs: str


def refs_of(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    base = tmp_path_factory.mktemp("matrix")
    store = Store.init(base / "sessions", clock=Clock())
    session = record_example_session(store)  # v1.0.0
    session.follow_up()                      # v1.1.0, open
    session.append_turn(load_example("follow_up", "turns", "turn-06.json"))
    record_example_session(store, OTHER)
    repo = store.root / CUSTOMER
    assert run_cli(store.root, "verify").code == 0
    mirror = base / "backup.git"
    subprocess.run(["git", "clone", "--quiet", "--mirror", str(repo), str(mirror)], check=True)
    bundle = base / "backup.bundle"
    git(repo, "bundle", "create", str(bundle), "--all")
    return Pristine(store.root, mirror, bundle, refs_of(repo))


# -- the kinds of damage ---------------------------------------------------------------

def missing_mid_history_commit(repo: Path) -> str:
    oid = git(repo, "rev-parse", "v1~3").strip()
    explode_packs(repo)
    (repo / "objects" / oid[:2] / oid[2:]).unlink()
    return f"object {oid} (reachable from refs/heads/v1) is missing"


def ref_to_nonexistent_id(repo: Path) -> str:
    (repo / "refs" / "heads" / "v1").write_text("12" * 20 + "\n", encoding="ascii")
    return "ref refs/heads/v1 is broken"


def garbage_packed_refs(repo: Path) -> str:
    git(repo, "pack-refs", "--all")
    (repo / "packed-refs").write_bytes(b"this is not\na packed-refs file\n")
    return "packed-refs is damaged"


def deleted_tag(repo: Path) -> str:
    (repo / "refs" / "tags" / "v1.0.0").unlink()
    return "finalized version v1.0.0 has lost its tag refs/tags/v1.0.0"


def deleted_packed_refs(repo: Path) -> str:
    git(repo, "pack-refs", "--all")
    (repo / "packed-refs").unlink()
    return "scenario v1 is missing: the access log records writes to refs/heads/v1"


def no_objects_dir(repo: Path) -> str:
    shutil.rmtree(repo / "objects")
    return f"the customer directory {CUSTOMER} is a damaged git repository: objects/ is missing"


def no_refs_dir(repo: Path) -> str:
    shutil.rmtree(repo / "refs")
    return f"the customer directory {CUSTOMER} is a damaged git repository: refs/ is missing"


def no_head_file(repo: Path) -> str:
    (repo / "HEAD").unlink()
    return f"the customer directory {CUSTOMER} is a damaged git repository: HEAD is missing"


def empty_dir(repo: Path) -> str:
    shutil.rmtree(repo)
    repo.mkdir(mode=0o700)
    return f"the customer directory {CUSTOMER} is an empty directory"


def plain_dir(repo: Path) -> str:
    plain = repo.parent / PLAIN
    plain.mkdir(mode=0o700)
    (plain / "notes.txt").write_text("not a repository\n", encoding="utf-8")
    return f"the customer directory {PLAIN} is a plain directory"


def garbage_head(repo: Path) -> str:
    (repo / "HEAD").write_text("garbage\n", encoding="ascii")
    return "HEAD is unreadable"


def broken_branch_ref(repo: Path) -> str:
    (repo / "refs" / "heads" / "v1").write_text("this is not an object id\n", encoding="ascii")
    return "ref refs/heads/v1 is broken"


def stale_packed_refs_lock(repo: Path) -> str:
    lock = repo / "packed-refs.lock"
    lock.write_bytes(b"")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    return "stray lock file packed-refs.lock"


@dataclass(frozen=True)
class Row:
    damage: Callable[[Path], str]
    versions: int        # exit code of `versions CUSTOMER`
    log: int             # exit code of `log CUSTOMER`
    write: int           # exit code of `turn CUSTOMER FILE`
    repair: int          # exit code of `repair CUSTOMER --from backup`
    target: str = CUSTOMER  # the directory the reads, the write and repair address


MATRIX: dict[str, Row] = {
    # the versions read are intact (only older history is gone): listing them works
    "missing-mid-history-commit": Row(missing_mid_history_commit, 0, 7, 7, 0),
    "ref-to-nonexistent-id": Row(ref_to_nonexistent_id, 7, 7, 7, 0),
    "garbage-packed-refs": Row(garbage_packed_refs, 7, 7, 7, 0),
    # the open version is intact; the lost tag is what verify and repair are for
    "deleted-tag": Row(deleted_tag, 0, 0, 0, 0),
    # no ref is left: to a reader the customer has no sessions (verify knows better)
    "deleted-packed-refs": Row(deleted_packed_refs, 0, 0, 3, 0),
    "no-objects-dir": Row(no_objects_dir, 7, 7, 7, 0),
    "no-refs-dir": Row(no_refs_dir, 7, 7, 7, 0),
    "no-head-file": Row(no_head_file, 7, 7, 7, 0),
    "empty-dir": Row(empty_dir, 7, 7, 7, 7),
    "plain-dir": Row(plain_dir, 7, 7, 7, 7, target=PLAIN),
    # reads do not need HEAD; a write refuses before writing anything
    "garbage-head": Row(garbage_head, 0, 0, 7, 0),
    "broken-branch-ref": Row(broken_branch_ref, 7, 7, 7, 0),
    # a lock left by a dead process: the write clears it after the grace period
    "stale-packed-refs-lock": Row(stale_packed_refs_lock, 0, 0, 0, 0),
}


@dataclass
class Damaged:
    root: Path
    repo: Path
    finding: str
    row: Row
    pristine: Pristine


@pytest.fixture(params=list(MATRIX))
def damaged(request: pytest.FixtureRequest, pristine: Pristine, tmp_path: Path) -> Damaged:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    repo = root / CUSTOMER
    row = MATRIX[request.param]
    return Damaged(root, repo, row.damage(repo), row, pristine)


def no_crash(code: int, err: str) -> None:
    assert code != 70 and "internal error" not in err and "Traceback" not in err, err


def test_verify_names_the_damage_and_checks_every_customer(damaged: Damaged) -> None:
    r = run_cli(damaged.root, "verify")
    no_crash(r.code, r.err)
    assert r.code == 7, (r.code, r.text, r.err)
    assert damaged.finding in r.text, r.text
    assert f"{OTHER}: ok" in r.text, r.text  # the store-wide verify went on past the damage
    # the one-customer verify says the same
    r = run_cli(damaged.root, "verify", damaged.row.target)
    no_crash(r.code, r.err)
    assert r.code == 7 and damaged.finding in r.text, (r.code, r.text, r.err)


def test_reads_and_a_write_end_as_the_matrix_says(damaged: Damaged) -> None:
    row, target = damaged.row, damaged.row.target
    for args, expected in ((["versions", target], row.versions), (["log", target], row.log),
                           (["turn", target, str(TURN_7)], row.write)):
        r = run_cli(damaged.root, *args)
        no_crash(r.code, r.err)
        assert r.code == expected, (args, r.code, r.err)
        if expected == 7:  # one line, naming the damage and what to run
            assert r.err.startswith("gitstore: error: ") and r.err.count("\n") == 1, r.err
            assert "gitstore verify" in r.err or "damaged" in r.err, r.err


def test_repair_from_a_backup_ends_as_the_matrix_says(damaged: Damaged) -> None:
    row = damaged.row
    r = run_cli(damaged.root, "repair", row.target, "--from", str(damaged.pristine.mirror))
    no_crash(r.code, r.err)
    assert r.code == row.repair, (r.code, r.text, r.err)
    if row.repair != 0:
        return
    r = run_cli(damaged.root, "verify")
    assert r.code == 0, (r.text, r.err)
    fsck = subprocess.run(["git", "-C", str(damaged.repo), "fsck", "--strict"],
                          capture_output=True, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert refs_of(damaged.repo) == damaged.pristine.refs
    assert git(damaged.repo, "symbolic-ref", "HEAD").strip() == "refs/heads/v1"
    r = run_cli(damaged.root, "turn", CUSTOMER, str(TURN_7))
    assert r.code == 0, r.err
    assert run_cli(damaged.root, "verify").code == 0


def test_repair_from_a_bundle_restores_missing_refs(pristine: Pristine, tmp_path: Path) -> None:
    """Missing refs (not only broken ones) come back from a bundle too, and a
    finalized version's tag whose source lacks it is recreated from its commit."""
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    repo = root / CUSTOMER
    deleted_packed_refs(repo)
    r = run_cli(root, "repair", CUSTOMER, "--from", str(pristine.bundle))
    assert r.code == 0, (r.text, r.err)
    assert "refs/heads/v1 (it was missing)" in r.text and "refs/tags/v1.0.0 (it was missing)" \
        in r.text
    assert refs_of(repo) == pristine.refs
    # a source without the tag: the tag is cut again from the finalize commit
    tag_commit = git(repo, "rev-parse", "v1.0.0^{commit}").strip()
    (repo / "refs" / "tags" / "v1.0.0").unlink(missing_ok=True)
    git(repo, "pack-refs", "--all")
    packed = (repo / "packed-refs").read_text(encoding="ascii").splitlines()
    keep: list[str] = []
    for line in packed:
        if line.endswith(" refs/tags/v1.0.0"):
            continue
        if line.startswith("^") and keep and keep[-1].endswith(" refs/tags/v1.0.0"):
            continue
        keep.append(line)
    (repo / "packed-refs").write_text("\n".join(keep) + "\n", encoding="ascii")
    source = tmp_path / "no-tag.git"
    subprocess.run(["git", "clone", "--quiet", "--mirror", str(pristine.mirror), str(source)],
                   check=True)
    git(source, "tag", "-d", "v1.0.0")
    assert run_cli(root, "verify", CUSTOMER).code == 7
    r = run_cli(root, "repair", CUSTOMER, "--from", str(source))
    assert r.code == 0, (r.text, r.err)
    assert "refs/tags/v1.0.0 (recreated from its commit" in r.text
    assert git(repo, "rev-parse", "v1.0.0^{commit}").strip() == tag_commit
    assert git(repo, "cat-file", "-t", "v1.0.0").strip() == "tag"
    assert run_cli(root, "verify").code == 0


# -- item 8: a repair source must be a copy of the same customer ------------------------

def test_repair_refuses_another_customers_repository(pristine: Pristine,
                                                     tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    repo = root / CUSTOMER
    broken_branch_ref(repo)
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    r = run_cli(root, "repair", CUSTOMER, "--from", str(root / OTHER))
    assert r.code == 2, (r.code, r.text, r.err)
    assert "is not a copy of customer customer-xyz789" in r.err and "api_key" in r.err
    after = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if "gitstore-audit" not in k.name} == \
        {k: v for k, v in before.items() if "gitstore-audit" not in k.name}
    assert not (repo / "gitstore-damaged").exists()


def test_repair_refuses_a_source_with_another_session(pristine: Pristine,
                                                      tmp_path: Path) -> None:
    """Same customer name, another session: the source is not this customer's history."""
    elsewhere = Store.init(tmp_path / "elsewhere", clock=Clock())
    impostor = elsewhere.customer(CUSTOMER).new_session(
        session_id="orchestrator-session-someone-else", created="2025-01-15T10:30:00Z")
    impostor.append_turn(load_example("session", "turns", "turn-01.json"))
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    missing_mid_history_commit(root / CUSTOMER)
    r = run_cli(root, "repair", CUSTOMER, "--from", str(elsewhere.root / CUSTOMER))
    assert r.code == 2, (r.code, r.text, r.err)
    assert "scenario v1 is session 'orchestrator-session-someone-else'" in r.err
    assert run_cli(root, "verify", CUSTOMER).code == 7  # nothing was changed


# -- item 9 --------------------------------------------------------------------------------

def test_maintain_clears_a_stale_packed_refs_lock(pristine: Pristine, tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    repo = root / CUSTOMER
    stale_packed_refs_lock(repo)
    r = run_cli(root, "maintain", CUSTOMER)
    assert r.code == 0, (r.code, r.err)
    assert not (repo / "packed-refs.lock").exists()
    assert (repo / "packed-refs").is_file()  # the refs were packed after all
    log = Store(root).customer(CUSTOMER).audit_log
    assert any(rec["op"] == "repair:stale-lock" and rec["document"] == "packed-refs.lock"
               for rec in log.records())
    assert run_cli(root, "verify").code == 0


def loose_objects(repo: Path) -> set[str]:
    return {f"{d.name}{f.name}" for d in (repo / "objects").glob("??") for f in d.iterdir()}


def test_a_write_with_a_garbage_head_fails_fast_and_writes_nothing(pristine: Pristine,
                                                                  tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    repo = root / CUSTOMER
    garbage_head(repo)
    objects = loose_objects(repo)
    refs = {p: p.read_bytes() for p in (repo / "refs").rglob("*") if p.is_file()}
    start = time.monotonic()
    r = run_cli(root, "turn", CUSTOMER, str(TURN_7))
    assert r.code == 7, (r.code, r.err)
    assert "HEAD is unreadable" in r.err and "nothing was written" in r.err
    assert "another writer" not in r.err
    assert time.monotonic() - start < 10
    assert loose_objects(repo) == objects  # no orphan objects
    assert {p: p.read_bytes() for p in (repo / "refs").rglob("*") if p.is_file()} == refs
    # repair points HEAD back at the newest scenario; then the write goes through
    r = run_cli(root, "repair", CUSTOMER, "--from", str(pristine.mirror))
    assert r.code == 0, (r.text, r.err)
    assert "HEAD -> refs/heads/v1" in r.text
    assert (repo / "gitstore-damaged").is_dir()
    (aside,) = (repo / "gitstore-damaged").glob("*/HEAD")
    assert aside.read_text(encoding="ascii") == "garbage\n"  # set aside, not deleted
    assert run_cli(root, "turn", CUSTOMER, str(TURN_7)).code == 0


@pytest.mark.parametrize("command", ["versions", "log"])
def test_a_broken_branch_ref_is_reported_not_omitted(pristine: Pristine, tmp_path: Path,
                                                    command: str) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    broken_branch_ref(root / CUSTOMER)
    r = run_cli(root, command, CUSTOMER)
    assert r.code == 7, (r.code, r.text, r.err)
    assert "refs/heads/v1" in r.err and r.out == b""
    # the API says the same
    with pytest.raises(IntegrityError, match="refs/heads/v1"):
        getattr(Store(root).customer(CUSTOMER), command)()


def test_list_names_a_customer_it_cannot_read(pristine: Pristine, tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    broken_branch_ref(root / CUSTOMER)
    r = run_cli(root, "list")
    no_crash(r.code, r.err)
    assert f"{CUSTOMER}: not indexed" in r.err and "refs/heads/v1" in r.err, r.err
    assert OTHER in r.text


# -- item 18: the access log is anchored in git; the catalog is checkable ------------------

def audit_verify(root: Path) -> tuple[int, str]:
    r = run_cli(root, "audit", CUSTOMER, "--verify")
    no_crash(r.code, r.err)
    return r.code, r.text + r.err


def log_lines(repo: Path) -> list[bytes]:
    return (repo / "gitstore-audit.jsonl").read_bytes().splitlines(keepends=True)


@pytest.fixture
def audited(pristine: Pristine, tmp_path: Path) -> Path:
    """A copy of the store whose access log has reads after the last write."""
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    for _ in range(3):
        assert run_cli(root, "show", CUSTOMER).code == 0
    return root


def test_every_commit_anchors_the_access_log(audited: Path) -> None:
    repo = audited / CUSTOMER
    anchor = git(repo, "log", "-1", "--format=%(trailers:key=Audit-Head,valueonly)", "v1")
    seq, digest, log_id = anchor.split()
    records = [json.loads(line) for line in log_lines(repo)]
    assert records[int(seq) - 1]["hash"] == digest  # the head before the last write
    assert records[0]["hash"].startswith(log_id) and len(log_id) == 16
    assert records[int(seq)]["op"] == "write:turn"  # the write that carries the anchor
    assert audit_verify(audited)[0] == 0  # no false alarm on an intact log


@pytest.mark.parametrize("head", ["deleted", "garbage"])
def test_a_cut_tail_with_its_head_file_gone_is_found(audited: Path, head: str) -> None:
    repo = audited / CUSTOMER
    lines = log_lines(repo)
    anchor = git(repo, "log", "-1", "--format=%(trailers:key=Audit-Head,valueonly)", "v1")
    anchored = int(anchor.split()[0])
    keep = anchored - 2  # cut the last write's records and everything after them
    (repo / "gitstore-audit.jsonl").write_bytes(b"".join(lines[:keep]))
    if head == "deleted":
        (repo / "gitstore-audit.head").unlink()
    else:
        (repo / "gitstore-audit.head").write_text("not a head\n", encoding="ascii")
    code, out = audit_verify(audited)
    assert code == 7, out
    assert f"records {keep + 1}..{anchored} deleted from the end of the log" in out, out
    assert "in git" in out
    r = run_cli(audited, "verify", CUSTOMER)
    assert r.code == 7 and f"records {keep + 1}..{anchored}" in r.text, r.text


def test_a_deleted_head_stays_visible_after_later_accesses(audited: Path) -> None:
    """Cut only reads (after the newest anchor) and delete the head: the next access
    records that the head was gone, so the cut stays visible."""
    repo = audited / CUSTOMER
    lines = log_lines(repo)
    (repo / "gitstore-audit.jsonl").write_bytes(b"".join(lines[:-2]))
    (repo / "gitstore-audit.head").unlink()
    assert audit_verify(audited)[0] == 7  # the head file itself is missing
    for _ in range(2):
        assert run_cli(audited, "show", CUSTOMER).code == 0
    assert (repo / "gitstore-audit.head").is_file()
    code, out = audit_verify(audited)
    assert code == 7, out
    assert "the head file had been deleted or damaged before this record" in out, out


def test_verify_catalog_finds_forged_and_changed_rows(pristine: Pristine,
                                                     tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    assert run_cli(root, "list").code == 0  # the index is current
    r = run_cli(root, "verify", "--catalog")
    assert r.code == 0, (r.text, r.err)
    index = root / ".gitstore" / "index.sqlite"
    cx = sqlite3.connect(index)
    columns = [c[1] for c in cx.execute("PRAGMA table_info(versions)")]
    row = dict(zip(columns, cx.execute(
        "SELECT * FROM versions WHERE customer = ? AND version = 'v1.0.0'",
        (OTHER,)).fetchone(), strict=True))
    forged = {**row, "customer": "customer-forged", "version": "v9.9.9", "major": 9,
              "minor": 9, "patch": 9, "scenario": "v9"}
    cx.execute(f"INSERT INTO versions ({', '.join(forged)}) VALUES "
               f"({', '.join('?' * len(forged))})", list(forged.values()))
    cx.execute("UPDATE versions SET status = 'open' WHERE customer = ? AND version = 'v1.0.0'",
               (OTHER,))
    cx.commit()
    cx.close()
    listed = run_cli(root, "list", "-o", "json").json()
    assert "customer-forged" in {s["customer"] for s in listed}  # a query serves it
    r = run_cli(root, "verify", "--catalog")
    assert r.code == 7, (r.text, r.err)
    assert "catalog: index row versions('customer-forged', 'v9.9.9') is not backed by git" \
        in r.text, r.text
    assert f"catalog: index row versions('{OTHER}', 'v1.0.0') differs from git in status" \
        in r.text, r.text
    assert f"{CUSTOMER}: ok" in r.text  # the repositories themselves are sound
    assert run_cli(root, "reindex").code == 0
    assert run_cli(root, "verify", "--catalog").code == 0


@pytest.mark.parametrize("kind", ["empty-dir", "plain-dir", "no-objects-dir"])
def test_a_directory_that_is_no_repository_can_be_quarantined(pristine: Pristine,
                                                             tmp_path: Path,
                                                             kind: str) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(pristine.root, root, symlinks=True)
    row = MATRIX[kind]
    row.damage(root / CUSTOMER)
    r = run_cli(root, "quarantine", row.target)
    assert r.code == 0, (r.code, r.err)
    moved = Path(r.text.strip())
    assert moved.parent == root / ".gitstore" / "quarantine" and moved.is_dir()
    assert not (root / row.target).exists()
    if kind != "plain-dir":
        assert run_cli(root, "verify").code == 0
