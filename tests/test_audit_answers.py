"""The store's answer log: one access record per answer of a store-wide query.

* ``list``, ``stats``, ``search``, ``active`` (and the API's queries) append one
  record to ``<root>/.gitstore/answers/gitstore-audit.jsonl`` whatever the number
  of customers they show, and none to the customers' own logs; the record names
  the answer set ``sets/<sha256>``, a file holding exactly the customers shown,
  shared by later answers over the same customers;
* ``gitstore audit CUSTOMER`` shows, among the customer's own records, exactly the
  answers that showed it; ``audit --verify`` checks the answer log's chain and sets;
* a sync's receipt (``AuditLog.settle``) copies into the customer's own log a count
  and digest of the answers that showed it; the receipt travels with the log (the
  hub's check accepts it) and finds an answer removed from a consistently
  re-chained answer log, the answer log cut short, deleted or replaced;
* a read-only store is handled as for any read: a warning, or refused with
  ``require_audit``;
* the index file's ``quick_check`` runs when due, not on every query.

Real stores in temp dirs, the CLI in-process (``run_cli``), the travelled log read
back with the real ``git`` binary; a Hypothesis law over random answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Clock, git, record_example_session, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import git_out, start_daemon, synced_store

from gitstore import Store
from gitstore.catalog import db as catalog_db
from gitstore.catalog.index import Index
from gitstore.ops import hub as hub_ops
from gitstore.ops import syncing
from gitstore.ops.sync import travel
from gitstore.store import answers
from gitstore.store.audit import AuditLog, record_answer
from gitstore.store.travel import GENESIS, check_travel, record_hash

ALPHA, BETA, GAMMA = "customer-alpha", "customer-beta", "customer-gamma"


def answer_log(root: Path) -> list[dict[str, Any]]:
    path = answers.log_dir(root) / "gitstore-audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def own_log(root: Path, name: str) -> list[dict[str, Any]]:
    return list(AuditLog(root / name).records())


def answer_set(root: Path, record: dict[str, Any]) -> list[str]:
    path = answers.log_dir(root) / "sets" / str(record["answered"]["set"])
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == path.name
    return data.decode().splitlines()


def audit_json(root: Path, name: str) -> list[dict[str, Any]]:
    r = run_cli(root, "audit", name, "-o", "json")
    assert r.code == 0, r.err
    result: list[dict[str, Any]] = r.json()
    return result


def rewrite_chain(path: Path, records: list[dict[str, Any]]) -> None:
    """What an attacker who can write the files does: number and chain the records
    again, hash them, and point the head file at the last."""
    prev = GENESIS
    lines = []
    for seq, rec in enumerate(records, 1):
        rec = {k: v for k, v in rec.items() if k != "hash"} | {"seq": seq, "prev": prev}
        rec["hash"] = prev = record_hash(rec)
        lines.append(json.dumps(rec, sort_keys=True, separators=(",", ":")))
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    path.with_suffix(".head").write_text(f"{len(records)} {prev}\n", encoding="ascii")


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("answers") / "sessions"
    store = Store.init(root, clock=Clock())
    for name in (ALPHA, BETA, GAMMA):
        record_example_session(store, name)
    return root


@pytest.fixture
def store3(three: Path, tmp_path: Path) -> Path:
    """A copy of ``three`` of one's own (the tests below change its logs)."""
    root = tmp_path / "sessions"
    subprocess.run(["cp", "-a", str(three), str(root)], check=True)
    return root


# -- one record per answer ----------------------------------------------------------------

@pytest.mark.parametrize("args", [["list"], ["stats"], ["list", "--all-versions"],
                                  ["list", "--status", "finalized"]])
def test_a_store_wide_answer_is_one_record_naming_every_customer(store3: Path,
                                                                 args: list[str]) -> None:
    own = {c: own_log(store3, c) for c in (ALPHA, BETA, GAMMA)}
    before = answer_log(store3)
    r = run_cli(store3, *args)
    assert r.code == 0, r.err
    new = answer_log(store3)[len(before):]
    assert [x["op"] for x in new] == [args[0]] and new[0]["customer"] is None
    assert answer_set(store3, new[0]) == [ALPHA, BETA, GAMMA]
    assert new[0]["answered"]["customers"] == 3 and new[0]["detail"]
    assert {c: own_log(store3, c) for c in own} == own  # no customer's own log grows


def test_an_answer_over_the_same_customers_shares_its_set(store3: Path) -> None:
    for _ in range(3):
        assert run_cli(store3, "list").code == 0
    assert run_cli(store3, "list", "--customer", BETA).code == 0
    lists = [x for x in answer_log(store3) if x["op"] == "list"]
    assert len(lists) == 4 and len({x["answered"]["set"] for x in lists[:3]}) == 1
    assert answer_set(store3, lists[3]) == [BETA]
    assert "customer=customer-beta" in lists[3]["detail"]
    assert len(list((answers.log_dir(store3) / "sets").iterdir())) == 2


def test_an_answer_that_shows_nobody_is_not_recorded(store3: Path) -> None:
    assert run_cli(store3, "search", "nothing-matches-this").code == 0
    assert answer_log(store3) == []


def test_the_api_records_one_answer_too(store3: Path) -> None:
    store = Store(store3)
    assert len(store.catalog.list_sessions()) == 3
    assert store.catalog.stats()["customers"] == 3
    assert [x["op"] for x in answer_log(store3)] == ["list", "stats"]


# -- what `gitstore audit` shows ----------------------------------------------------------

def test_audit_shows_the_answers_that_showed_the_customer_and_no_others(store3: Path) -> None:
    assert run_cli(store3, "list", "--customer", ALPHA).code == 0
    assert run_cli(store3, "show", BETA).code == 0
    assert run_cli(store3, "stats").code == 0
    alpha, beta = audit_json(store3, ALPHA), audit_json(store3, BETA)
    shown = [(r["op"], r["seq"]) for r in alpha if r.get("log") == "answers"]
    assert shown == [("list", 1), ("stats", 2)]
    assert [(r["op"], r["seq"]) for r in beta if r.get("log") == "answers"] == [("stats", 2)]
    # merged by time with the customer's own records: the read of BETA comes between
    ops = [r["op"] for r in beta]
    assert ops.index("read") < ops.index("stats") == len(ops) - 1
    text = run_cli(store3, "audit", ALPHA).out.decode()
    assert "a1  " in text and "a2  " in text and "counted in store-wide totals" in text
    assert run_cli(store3, "audit", ALPHA, "-n", "1", "-o", "json").json()[0]["op"] == "stats"


def test_audit_verify_checks_the_answer_log(store3: Path) -> None:
    assert run_cli(store3, "list").code == 0
    assert run_cli(store3, "stats").code == 0
    assert run_cli(store3, "audit", GAMMA, "--verify").code == 0
    path = answers.log_dir(store3) / "gitstore-audit.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[0])
    edited["detail"] = "nothing to see"
    path.write_bytes(json.dumps(edited).encode() + b"\n" + lines[1])
    r = run_cli(store3, "audit", GAMMA, "--verify")
    assert r.code == 7 and "the store's answer log: record 1" in r.out.decode(), r.text
    assert "hash mismatch" in r.out.decode()


@pytest.mark.parametrize("damage", ["deleted", "edited"])
def test_an_answer_set_deleted_or_edited_is_found(store3: Path, damage: str) -> None:
    assert run_cli(store3, "list").code == 0
    (path,) = (answers.log_dir(store3) / "sets").iterdir()
    if damage == "deleted":
        path.unlink()
    else:
        path.write_text(f"{ALPHA}\n{BETA}\n", encoding="utf-8")  # GAMMA hidden
    r = run_cli(store3, "audit", GAMMA, "--verify")
    assert r.code == 7 and "answer set" in r.out.decode() and "missing or changed" in \
        r.out.decode(), r.text
    assert run_cli(store3, "verify", GAMMA).code == 7


# -- receipts: the answers in each customer's own log, and travelling -------------------

def test_a_receipt_counts_the_answers_and_travels(store3: Path) -> None:
    assert run_cli(store3, "list", "--customer", BETA).code == 0
    assert run_cli(store3, "list").code == 0
    assert run_cli(store3, "stats").code == 0
    log = AuditLog(store3 / ALPHA)
    receipt = log.settle(actor="tester <t@example.invalid>")
    assert receipt is not None and receipt["op"] == answers.RECEIPT
    assert receipt["customer"] == ALPHA and "list 1, stats 1" in receipt["detail"]
    fields = receipt[answers.RECEIPT]
    shown = [r for r in answer_log(store3) if ALPHA in answer_set(store3, r)]
    assert [r["seq"] for r in shown] == [2, 3]
    assert fields == {"log": log_id(store3), "after": 0, "through": 3,
                      "head": answer_log(store3)[-1]["hash"], "count": 2,
                      "digest": hashlib.sha256("".join(f"{r['hash']}\n" for r in shown)
                                               .encode()).hexdigest()}
    assert log.settle(actor="tester <t@example.invalid>") is None  # nothing new
    assert run_cli(store3, "audit", ALPHA, "--verify").code == 0
    # the sync's travel: the receipt goes with the log, and a hub would take it
    store = Store(store3)
    assert run_cli(store3, "list").code == 0
    ref = travel(store.customer(ALPHA))
    assert ref is not None
    batch = git(store3 / ALPHA, "ls-tree", "--name-only", ref).split()
    travelled = [json.loads(line) for line in
                 git(store3 / ALPHA, "show", f"{ref}:{batch[-1]}").splitlines()]
    receipts = [r[answers.RECEIPT] for r in travelled if r["op"] == answers.RECEIPT]
    assert [(r["after"], r["through"], r["count"]) for r in receipts] == [(0, 3, 2), (3, 4, 1)]
    repo = store.customer(ALPHA).repo
    assert check_travel(repo, None, repo.ref_target(ref) or "", ref.rsplit("/", 1)[-1],
                        ALPHA) == []
    assert run_cli(store3, "audit", ALPHA, "--verify").code == 0


def log_id(root: Path) -> str:
    return str(answer_log(root)[0]["hash"])[:16]


def test_a_receipt_finds_an_answer_removed_from_a_rechained_answer_log(store3: Path) -> None:
    for args in (["list"], ["list", "--customer", BETA], ["stats"]):
        assert run_cli(store3, *args).code == 0
    for name in (ALPHA, BETA, GAMMA):
        assert AuditLog(store3 / name).settle(actor="t <t@example.invalid>") is not None
    assert run_cli(store3, "audit", GAMMA, "--verify").code == 0
    # the stats answer goes, a copy of the one before takes its place: as many records
    path = answers.log_dir(store3) / "gitstore-audit.jsonl"
    first, only_beta, _ = answer_log(store3)
    rewrite_chain(path, [first, only_beta, only_beta])
    assert [str(p) for p in AuditLog(answers.log_dir(store3)).verify()] == []  # chain fine
    for name, now, then in ((ALPHA, 1, 2), (GAMMA, 1, 2), (BETA, 3, 3)):  # BETA: the digest
        r = run_cli(store3, "audit", name, "--verify")
        assert r.code == 7, r.text
        out = r.out.decode()
        assert "record 3 of the store's answer log was rewritten after this receipt" in out
        assert f"not those this receipt counted ({now} now, {then} then)" in out


@pytest.mark.parametrize("damage", ["cut", "deleted", "replaced"])
def test_a_receipt_finds_the_answer_log_cut_deleted_or_replaced(store3: Path,
                                                              damage: str) -> None:
    assert run_cli(store3, "list").code == 0
    assert run_cli(store3, "stats").code == 0
    assert AuditLog(store3 / BETA).settle(actor="t <t@example.invalid>") is not None
    directory = answers.log_dir(store3)
    if damage == "cut":
        rewrite_chain(directory / "gitstore-audit.jsonl", answer_log(store3)[:1])
        expected = "is gone: records were cut off"
    else:
        for name in ("gitstore-audit.jsonl", "gitstore-audit.head"):
            (directory / name).unlink()
        if damage == "replaced":
            assert run_cli(store3, "list").code == 0  # a new answer log begins
        expected = "which this store no longer holds"
    r = run_cli(store3, "audit", BETA, "--verify")
    assert r.code == 7 and expected in r.out.decode(), r.text


def test_receipts_follow_each_other(store3: Path) -> None:
    """Each receipt begins where the one before it ended; answers that did not show
    the customer count for nothing."""
    log = AuditLog(store3 / ALPHA)
    assert run_cli(store3, "list", "--customer", BETA).code == 0
    assert log.settle(actor="t <t@example.invalid>") is None  # no answer showed ALPHA
    assert run_cli(store3, "list", "--customer", ALPHA).code == 0
    first = log.settle(actor="t <t@example.invalid>")
    assert run_cli(store3, "list", "--customer", BETA).code == 0
    assert run_cli(store3, "stats").code == 0
    second = log.settle(actor="t <t@example.invalid>")
    assert first is not None and second is not None
    spans = [(x[answers.RECEIPT]["after"], x[answers.RECEIPT]["through"],
              x[answers.RECEIPT]["count"]) for x in (first, second)]
    assert spans == [(0, 2, 1), (2, 4, 1)]
    assert AuditLog(store3 / ALPHA).verify() == []


# -- the law --------------------------------------------------------------------------------

NAMES = [f"customer-{c}" for c in "abcde"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["list", "stats", "search"]),
                          st.sets(st.sampled_from(NAMES))), max_size=12),
       st.sets(st.integers(0, 11)))
def test_each_customer_sees_exactly_the_answers_that_showed_it(
        tmp_path_factory: pytest.TempPathFactory, shown: list[tuple[str, set[str]]],
        settle_after: set[int]) -> None:
    root = tmp_path_factory.mktemp("law")
    (root / ".gitstore").mkdir(mode=0o700)
    for name in NAMES:
        (root / name).mkdir()
    expected: dict[str, list[int]] = {n: [] for n in NAMES}
    seq = 0
    for i, (op, names) in enumerate(shown):
        record_answer(root, required=True, actor="a <a@example.invalid>", op=op,
                      customers=sorted(names), detail=f"answer {i}")
        if names:
            seq += 1
            for n in names:
                expected[n].append(seq)
        if i in settle_after:
            for n in NAMES:
                AuditLog(root / n).settle(actor="a <a@example.invalid>")
    for n in NAMES:
        log = AuditLog(root / n)
        assert [r["seq"] for r in log.history() if r.get("log") == "answers"] == expected[n]
        log.settle(actor="a <a@example.invalid>")
        counted = sum(r[answers.RECEIPT]["count"] for r in log.records()
                      if r["op"] == answers.RECEIPT)
        assert counted == len(expected[n])
        assert log.verify() == []
    assert [r["seq"] for r in answer_log(root)] == list(range(1, seq + 1))


# -- a read-only store --------------------------------------------------------------------

READ_ONLY_QUERY = """\
import sys, warnings
from gitstore import Store
from gitstore.catalog.index import Index
store = Store(sys.argv[1])
index = Index(store, sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        rows = index.list_sessions()
    except Exception as exc:
        print("refused", type(exc).__name__, exc)
    else:
        print("answered", len(rows), [str(w.message) for w in caught])
"""


def _read_only(root: Path, index: Path) -> str:
    proc = _run_read_only(root, [sys.executable, "-c", READ_ONLY_QUERY, str(root), str(index)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _run_read_only(root: Path, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """``cmd`` run with ``root`` read-only: a read-only bind mount (as root), else
    every file and directory without write permission."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if os.geteuid() == 0:
        script = ('mount --bind -o ro "$0" "$0" && mount -o remount,ro,bind "$0" "$0" '
                  '&& exec "$@"')
        proc = subprocess.run(["unshare", "-m", "sh", "-c", script, str(root), *cmd],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)
    else:
        modes = {p: p.stat().st_mode for p in [root, *root.rglob("*")] if not p.is_symlink()}
        try:
            for p, mode in modes.items():
                p.chmod(mode & ~0o222)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120,
                                  check=False)
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    return proc


def test_index_queries_work_on_a_read_only_store_and_leave_it_as_it_is(
        store3: Path, tmp_path: Path) -> None:
    """A read-only store answers every query through the index (on a private copy,
    brought up to date with git: here a turn the index has not seen), `verify
    --catalog` checks it, and `reindex` is refused (exit 9), not pretended."""
    assert run_cli(store3, "list").code == 0  # the index, then a write it has not seen
    Store(store3, clock=Clock()).customer(ALPHA).session().follow_up()
    Store(store3, clock=Clock()).customer(ALPHA).session().append_turn({
        "timestamp": "2025-01-16T09:00:00Z", "user_input": {"query": "ro-marker question"},
        "agent_response": {"orchestrator_response": "an answer"}})
    index = store3 / ".gitstore" / "index.sqlite"
    before = {p.name: p.read_bytes() for p in index.parent.glob("index.sqlite*")}
    state = git(store3 / ALPHA, "for-each-ref")
    gitstore = [sys.executable, "-m", "gitstore", "--root", str(store3)]
    runs = {" ".join(a): _run_read_only(store3, [*gitstore, *a]) for a in (
        ["list", "-o", "json"], ["stats"], ["search", "ro-marker"], ["active"],
        ["similar", ALPHA, "v1.0.0"], ["verify", "--catalog"], ["reindex"])}
    for args, proc in runs.items():
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, args
        assert proc.returncode == (9 if args == "reindex" else 0), (args, proc.stderr)
    assert "v1.1.0      6  [ro]-[marker] question" in runs["search ro-marker"].stdout
    listed = json.loads(runs["list -o json"].stdout)
    assert {r["customer"]: r["version"] for r in listed}[ALPHA] == "v1.1.0"
    assert "read-only" in runs["reindex"].stderr
    assert {p.name: p.read_bytes() for p in index.parent.glob("index.sqlite*")} == before
    assert git(store3 / ALPHA, "for-each-ref") == state


def test_an_answer_on_a_read_only_store_warns_or_is_refused(store3: Path,
                                                            tmp_path: Path) -> None:
    index = tmp_path / "elsewhere.sqlite"  # an index the query can write
    assert len(Index(Store(store3), index).list_sessions()) == 3
    before = answer_log(store3)
    out = _read_only(store3, index)
    assert out.startswith("answered 3") and "read-only: access is not being recorded" in out
    config = store3 / ".gitstore" / "config.json"
    data = json.loads(config.read_text(encoding="utf-8")) if config.exists() else {}
    config.write_text(json.dumps(data | {"require_audit": True}), encoding="utf-8")
    out = _read_only(store3, index)
    assert out.startswith("refused AuditNotRecorded") and "require_audit" in out, out
    assert answer_log(store3) == before


# -- the index file's quick_check -----------------------------------------------------------

def checked(path: Path) -> str | None:
    with sqlite3.connect(path) as cx:
        row = cx.execute("SELECT value FROM state WHERE key = 'checked'").fetchone()
    return None if row is None else str(row[0])


def test_quick_check_runs_when_due_not_on_every_query(store3: Path) -> None:
    index = Index(Store(store3))
    index.list_sessions()
    index.close()
    first = checked(index.path)
    assert first is not None
    Index(Store(store3)).list_sessions()
    assert checked(index.path) == first  # checked moments ago: not again
    boot, stamp = first.split(" ")
    stale = int(stamp) - (catalog_db.CHECK_SECONDS + 1) * 1_000_000_000
    for value in (f"{boot} {stale}", f"another-boot {stamp}", "garbage"):
        with sqlite3.connect(index.path) as cx:
            cx.execute("UPDATE state SET value = ? WHERE key = 'checked'", (value,))
        Index(Store(store3)).list_sessions()
        now = checked(index.path)
        assert now is not None and now != value and now.split(" ")[0] == boot
        assert 0 <= time.time_ns() - int(now.split(" ")[1]) < 60 * 1_000_000_000


# -- through a real hub ------------------------------------------------------------------

def test_a_sync_carries_the_receipt_to_the_hub_and_a_clone_verifies(tmp_path: Path) -> None:
    made = hub_ops.init(tmp_path / "hub")
    hub_ops.add(made, ALPHA)
    server = start_daemon(made.path, tmp_path / "daemon.log")
    try:
        machine = synced_store(tmp_path / "machine", server.template)
        record_example_session(machine, ALPHA)
        assert run_cli(machine.root, "list").code == 0
        assert run_cli(machine.root, "stats").code == 0
        (outcome,) = syncing.sync(machine, [machine.customer(ALPHA)])
        assert outcome.error is None, outcome.error
        own = machine.customer(ALPHA).audit_log.log_id()
        ref = f"refs/gitstore/audit/{own}"
        batches = git_out(made.path / ALPHA, "ls-tree", "--name-only", ref).split()
        on_hub = [json.loads(line) for b in batches for line in
                  git_out(made.path / ALPHA, "show", f"{ref}:{b}").splitlines()]
        (receipt,) = [r for r in on_hub if r["op"] == answers.RECEIPT]
        assert receipt[answers.RECEIPT]["count"] == 2 and receipt["customer"] == ALPHA
        auditor = tmp_path / "auditor"
        assert run_cli(auditor, "clone-from", server.template, ALPHA).code == 0
        r = run_cli(auditor, "audit", ALPHA, "--verify")
        assert r.code == 0, r.text + r.err
    finally:
        server.stop()
