"""The per-customer access log, and isolation between customers.

* every read and write through the API and the CLI appends a record to the
  customer's own log (counted before and after each operation);
* records are hash-chained: ``seq`` runs 1..n, ``prev`` is the previous
  record's ``hash``, ``hash`` is the SHA-256 of the canonical record without it;
* ``gitstore audit CUSTOMER -o json`` lists them; ``audit --verify`` exits 0 on
  an intact log and 7 naming the record when one is edited, deleted from the
  middle, cut off the end (the head file tells), or inserted;
* isolation: with two customers, a request naming one never reaches the other's
  data whatever the name (hostile names are refused, a symlink
  ``<root>/evil -> <root>/other`` is refused and not followed, the other's commit
  ids are unknown), and each customer's log records only its own accesses.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    ROOT,
    Clock,
    git,
    load_example,
    record_example_session,
    repo_state,
)
from conftest import CliResult as Result
from conftest import run_cli as run

from gitstore import InvalidNameError, NotFoundError, StorageError, Store
from gitstore.core import canonical
from gitstore.ops import verify as health
from gitstore.store.audit import GENESIS, HEAD_NAME, LOG_NAME

ALPHA = "alpha-co"
BETA = "beta-co"




def log_path(store: Store, customer: str) -> Path:
    return store.root / customer / LOG_NAME


def records(store: Store, customer: str) -> list[dict[str, Any]]:
    path = log_path(store, customer)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def ops_of(store: Store, customer: str, action: Callable[[], Any]) -> list[str]:
    """The ops of the records ``action`` appended to ``customer``'s log."""
    before = len(records(store, customer))
    action()
    after = records(store, customer)
    assert after[:before] == records(store, customer)[:before]
    return [r["op"] for r in after[before:]]


def turn(n: int) -> Any:
    return load_example("session" if n <= 5 else "follow_up", "turns", f"turn-{n:02d}.json")


# =========================================================================== every access

def test_every_api_read_and_write_appends_a_record(finalized: Any) -> None:
    store = finalized.customer.store
    cust = store.customer(CUSTOMER)
    session = cust.session()
    tag_commit = git(cust.path, "rev-parse", "v1.0.0^{commit}").strip()
    cases: list[tuple[str, Callable[[], Any], list[str]]] = [
        ("read", lambda: cust.read("v1.0.0"), ["read"]),
        ("read HEAD", lambda: cust.read(), ["read"]),
        ("session.read", lambda: session.read(), ["read"]),
        ("document", lambda: cust.read("v1").document("conversation.json"), ["read"]),
        ("versions", lambda: cust.versions(), ["versions"]),
        ("log", lambda: cust.log(), ["log"]),
        ("log filtered", lambda: cust.log(document="sow", limit=1), ["log"]),
        ("diff", lambda: cust.diff("v1.0.0"), ["read", "read", "diff"]),
        ("history", lambda: session.history(2), ["history"]),
        ("history all", lambda: session.history(), ["history"]),
        ("read_at", lambda: cust.read_at("v1", store.now()), ["read"]),
        ("verify", lambda: health.check_customer(cust), ["verify"]),
        ("follow-up", lambda: session.follow_up(), ["write:follow-up"]),
        ("turn", lambda: session.append_turn(turn(6)), ["write:turn"]),
        ("put", lambda: session.put("deployment_context.json",
                                    load_example("session", "deployment_context.json")
                                    | {"notes": "x"}), ["write:update"]),
        ("summary", lambda: session.set_summary(
            load_example("session", "conversation.json")["conversation_summary"]
            | {"total_turns": 6, "total_duration_minutes": 230}), ["write:update"]),
        ("new scenario", lambda: cust.new_session(allow_open=True), ["write:create"]),
    ]
    for label, action, expected in cases:
        assert ops_of(store, CUSTOMER, action) == expected, label
    recs = records(store, CUSTOMER)
    first_read = next(r for r in recs if r["op"] == "read")
    assert first_read["rev"] == "v1.0.0" and first_read["commit"] == tag_commit
    hist = next(r for r in recs if r["op"] == "history")
    assert hist["document"] == "conversation.json" and hist["rev"] == "v1"
    diff = next(r for r in recs if r["op"] == "diff")
    assert diff["rev"] == "v1.0.0..v1" and ".." in diff["commit"]
    assert {r["customer"] for r in recs} == {CUSTOMER}


def test_every_cli_read_and_write_appends_a_record(finalized: Any, tmp_path: Path) -> None:
    store = finalized.customer.store
    root = store.root
    analytics = EXAMPLES / "correction" / "session_analytics.json"
    turn6 = tmp_path / "turn6.json"
    turn6.write_text(json.dumps(turn(6)), encoding="utf-8")
    cases: list[tuple[list[str], list[str]]] = [
        (["show", CUSTOMER], ["read"]),
        (["show", CUSTOMER, "v1.0.0", "conversation.json"], ["read"]),
        (["show", CUSTOMER, "v1", "--at", "2025-01-15T11:00:03Z", "-o", "json"], ["read"]),
        (["versions", CUSTOMER], ["versions"]),
        (["log", CUSTOMER, "-n", "2"], ["log"]),
        (["diff", CUSTOMER, "v1.0.0"], ["read", "read", "diff"]),
        (["render", CUSTOMER, "v1.0.0"], ["read"]),
        (["verify", CUSTOMER], ["verify"]),
        (["correct", CUSTOMER, str(analytics), "-r", "actual time known"], ["write:correction"]),
        (["follow-up", CUSTOMER], ["write:follow-up"]),
        (["turn", CUSTOMER, str(turn6)], ["write:turn"]),
    ]
    for args, expected in cases:
        got = ops_of(store, CUSTOMER, lambda a=args: _ok(run(root, *a)))
        assert got == expected, args


def _ok(r: Result) -> Result:
    assert r.code == 0, r.err
    return r


# =========================================================================== the chain

def _expected_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical.dumps(body)).hexdigest()


def test_records_are_chained(finalized: Any) -> None:
    store = finalized.customer.store
    cust = store.customer(CUSTOMER)
    for _ in range(3):
        cust.read("v1.0.0")
        cust.versions()
    recs = records(store, CUSTOMER)
    assert len(recs) >= 10
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert recs[0]["prev"] == GENESIS
    for prev, rec in itertools.pairwise(recs):
        assert rec["prev"] == prev["hash"]
    for rec in recs:
        assert rec["hash"] == _expected_hash(rec)
        assert set(rec) == {"seq", "time", "actor", "user", "pid", "op", "customer", "rev",
                            "commit", "document", "detail", "prev", "hash"}
        assert rec["actor"] == "reporter <reporter@agents.gitstore.invalid>"
        assert rec["pid"] == os.getpid() and rec["customer"] == CUSTOMER
        assert rec["time"].endswith("Z") and len(rec["time"]) == len("2025-01-15T11:00:00.000000Z")
    # one line of compact, sorted JSON per record
    lines = log_path(store, CUSTOMER).read_bytes().splitlines()
    assert lines == [json.dumps(r, sort_keys=True, ensure_ascii=False,
                                separators=(",", ":")).encode() for r in recs]
    head = (store.root / CUSTOMER / HEAD_NAME).read_text(encoding="ascii")
    assert head == f"{recs[-1]['seq']} {recs[-1]['hash']}\n"
    assert cust.audit_log.verify() == []


def test_audit_cli_lists_the_records(finalized: Any) -> None:
    store = finalized.customer.store
    store.customer(CUSTOMER).read("v1.0.0")
    r = _ok(run(store.root, "audit", CUSTOMER, "-o", "json"))
    listed = r.json()
    assert listed == records(store, CUSTOMER)
    last2 = _ok(run(store.root, "audit", CUSTOMER, "-n", "2", "-o", "json")).json()
    assert last2 == listed[-2:]
    text = _ok(run(store.root, "audit", CUSTOMER)).text.splitlines()
    assert len(text) == len(listed)
    assert text[-1].split()[0] == str(listed[-1]["seq"])
    assert "write:finalize" in "\n".join(text) and "v1.0.0" in text[-1]
    ok = run(store.root, "audit", CUSTOMER, "--verify")
    assert ok.code == 0 and "intact" in ok.err and ok.out == b""
    ok_json = _ok(run(store.root, "audit", CUSTOMER, "--verify", "-o", "json")).json()
    assert ok_json == {"customer": CUSTOMER, "ok": True, "problems": []}
    assert run(store.root, "audit", "nobody-here").code == 3
    assert run(store.root, "audit", "../" + CUSTOMER).code == 2


# =========================================================================== tampering

@pytest.fixture
def logged(store: Store) -> Store:
    """A customer with ten records in its log."""
    cust = store.customer(CUSTOMER)
    cust.new_session()
    for _ in range(9):
        cust.read()
    assert len(records(store, CUSTOMER)) == 10
    return store


def lines_of(store: Store) -> list[bytes]:
    return log_path(store, CUSTOMER).read_bytes().splitlines(keepends=True)


def write_lines(store: Store, lines: list[bytes]) -> None:
    log_path(store, CUSTOMER).write_bytes(b"".join(lines))


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def verify_fails(store: Store, *needles: str) -> list[str]:
    r = run(store.root, "audit", CUSTOMER, "--verify")
    assert r.code == 7, (r.code, r.text, r.err)
    out = r.text.splitlines()
    assert out and all(ln.startswith(f"{CUSTOMER}: audit ") for ln in out)
    for needle in needles:
        assert any(needle in ln for ln in out), (needle, out)
    data = run(store.root, "audit", CUSTOMER, "--verify", "-o", "json")
    assert data.code == 7 and data.json()["ok"] is False
    assert len(data.json()["problems"]) == len(out)
    return out


def test_verify_intact(logged: Store) -> None:
    r = run(logged.root, "audit", CUSTOMER, "--verify")
    assert r.code == 0, r.text


@pytest.mark.parametrize(("field", "value"), [("op", "read:nothing-to-see"),
                                              ("actor", "someone else"),
                                              ("commit", None),
                                              ("time", "2020-01-01T00:00:00.000000Z")])
def test_an_edited_record_is_named(logged: Store, field: str, value: Any) -> None:
    lines = lines_of(logged)
    rec = json.loads(lines[3])                                    # record 4
    rec[field] = value
    assert line(rec) != lines[3]
    lines[3] = line(rec)
    write_lines(logged, lines)
    out = verify_fails(logged, "record 4", "hash mismatch")
    assert len(out) == 1


def test_an_edited_and_rehashed_record_breaks_the_chain(logged: Store) -> None:
    lines = lines_of(logged)
    rec = json.loads(lines[3])
    rec["op"] = "versions"
    rec["hash"] = _expected_hash(rec)
    lines[3] = line(rec)
    write_lines(logged, lines)
    verify_fails(logged, "record 5", "does not chain")


def test_a_deleted_middle_record_is_named(logged: Store) -> None:
    lines = lines_of(logged)
    del lines[4]                                                   # record 5
    write_lines(logged, lines)
    out = verify_fails(logged, "record 5 deleted")
    assert len(out) == 1 and "record 6" in out[0]


def test_several_deleted_records_are_named(logged: Store) -> None:
    lines = lines_of(logged)
    del lines[2:6]                                                 # records 3..6
    write_lines(logged, lines)
    verify_fails(logged, "records 3..6 deleted")


@pytest.mark.parametrize("cut", [1, 3])
def test_records_cut_off_the_end_are_detected(logged: Store, cut: int) -> None:
    write_lines(logged, lines_of(logged)[:-cut])
    verify_fails(logged, f"records {10 - cut + 1}..10", "deleted from the end")


def test_records_cut_off_the_end_stay_detected_after_the_next_access(logged: Store) -> None:
    """Cutting records off the end must not be healed by the next ordinary read,
    which appends a record chained to what is left."""
    write_lines(logged, lines_of(logged)[:-3])
    logged.customer(CUSTOMER).read()
    verify_fails(logged)


def test_a_deleted_log_stays_detected_after_the_next_access(logged: Store) -> None:
    log_path(logged, CUSTOMER).unlink()
    verify_fails(logged, "deleted")
    logged.customer(CUSTOMER).read()
    verify_fails(logged)


@pytest.mark.parametrize("how", ["duplicate", "forged-in-chain", "garbage"])
def test_an_inserted_record_is_detected(logged: Store, how: str) -> None:
    lines = lines_of(logged)
    if how == "duplicate":
        lines.insert(5, lines[4])                                  # record 5 twice
        needle = "inserted"
    elif how == "forged-in-chain":
        prev = json.loads(lines[4])                               # after record 5
        forged = {**prev, "seq": 6, "op": "read", "rev": "v1", "prev": prev["hash"]}
        forged["hash"] = _expected_hash(forged)
        lines.insert(5, line(forged))
        needle = "inserted"
    else:
        lines.insert(5, b"{not json\n")
        needle = "not a valid record"
    write_lines(logged, lines)
    verify_fails(logged, needle)


def test_a_record_appended_behind_gitstores_back_is_detected(logged: Store) -> None:
    lines = lines_of(logged)
    last = json.loads(lines[-1])
    forged = {**last, "seq": 11, "op": "read", "prev": last["hash"]}
    forged["hash"] = _expected_hash(forged)
    write_lines(logged, [*lines, line(forged)])
    verify_fails(logged, "head file")


def test_damage_stays_visible_after_later_appends(logged: Store) -> None:
    lines = lines_of(logged)
    del lines[4]
    rec = json.loads(lines[1])
    rec["op"] = "write:turn"
    lines[1] = line(rec)
    write_lines(logged, lines)
    for _ in range(3):
        logged.customer(CUSTOMER).versions()
    out = verify_fails(logged, "record 2", "record 5 deleted")
    assert len(out) == 2
    assert [r["seq"] for r in records(logged, CUSTOMER)][-3:] == [11, 12, 13]


def test_gitstore_verify_reports_the_audit_log(logged: Store) -> None:
    lines = lines_of(logged)
    del lines[4]
    write_lines(logged, lines)
    r = run(logged.root, "verify", CUSTOMER)
    assert r.code == 7
    assert f"{CUSTOMER}: audit log record 6" in r.text and "record 5 deleted" in r.text


def test_concurrent_appends_from_processes_keep_the_chain(logged: Store) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from gitstore.store.audit import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]))\n"
        "for i in range(40):\n"
        "    log.append(actor='p' + sys.argv[2], op='read', customer=sys.argv[3])\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(logged.root / CUSTOMER),
                               str(i), CUSTOMER], env=env) for i in range(3)]
    threads = [threading.Thread(target=lambda: [logged.customer(CUSTOMER).versions()
                                                for _ in range(10)]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    recs = records(logged, CUSTOMER)
    assert len(recs) == 10 + 3 * 40 + 2 * 10
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert logged.customer(CUSTOMER).audit_log.verify() == []


# =========================================================================== isolation

@dataclass
class Two:
    store: Store

    @property
    def root(self) -> Path:
        return self.store.root

    def commits(self, customer: str) -> list[str]:
        return git(self.root / customer, "rev-list", "--all").split()

    def tag_ids(self, customer: str) -> list[str]:
        return git(self.root / customer, "for-each-ref", "--format=%(objectname)",
                   "refs/tags").split()


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Two:
    store = Store.init(tmp_path_factory.mktemp("two") / "sessions", clock=Clock())
    record_example_session(store, ALPHA)
    record_example_session(store, BETA)
    return Two(store)


def beta_untouched(two: Two) -> Callable[[], None]:
    """Snapshot beta's repository and log; the returned check asserts no change."""
    state = repo_state(two.root / BETA)
    log_bytes = log_path(two.store, BETA).read_bytes()

    def check() -> None:
        assert repo_state(two.root / BETA) == state
        assert log_path(two.store, BETA).read_bytes() == log_bytes

    return check


def leaks_beta(two: Two, output: bytes | str) -> bool:
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    markers = [*two.commits(BETA), *two.tag_ids(BETA), f'"api_key": "{BETA}"']
    return any(m in text for m in markers)


HOSTILE = ["../" + BETA, f"{ALPHA}/../{BETA}", f"./{BETA}", BETA + "/", BETA + "/.",
           str(Path("/") / BETA), "..", ".", "", " " + BETA, BETA + " ", BETA + "\n",
           BETA + "\x00", "\uff42eta-co", "b\u0435ta-co", BETA + ".git", BETA + ".lock",
           "-" + BETA, "." + BETA, "beta co", "beta\\co", "%2e%2e%2f" + BETA]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(two: Two, name: str) -> None:
    untouched = beta_untouched(two)
    with pytest.raises(InvalidNameError):
        two.store.customer(name)
    r = run(two.root, "show", "--", name, "v1.0.0", "conversation.json")
    assert r.code == 2, (r.code, r.err)
    assert r.out == b"" and not leaks_beta(two, r.err)
    for args in (["log", "--", name], ["versions", "--", name], ["audit", "--", name],
                 ["diff", "--", name, "v1.0.0"], ["render", "--", name]):
        r = run(two.root, *args)
        assert r.code == 2 and r.out == b"", (args, r.code, r.err)
    untouched()


def test_a_name_that_differs_only_in_case_is_another_customer(two: Two) -> None:
    untouched = beta_untouched(two)
    r = run(two.root, "show", BETA.upper(), "v1.0.0")
    assert r.code == 3 and r.out == b"" and not leaks_beta(two, r.err)
    untouched()


@pytest.mark.parametrize("target", ["inside", "outside"])
def test_a_symlinked_customer_is_refused_not_followed(two: Two, tmp_path: Path,
                                                      target: str) -> None:
    try:
        _symlinked_customer(two, tmp_path, target)
    finally:
        (two.root / "evil").unlink(missing_ok=True)


def _symlinked_customer(two: Two, tmp_path: Path, target: str) -> None:
    if target == "inside":
        (two.root / "evil").symlink_to(two.root / BETA, target_is_directory=True)
    else:
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        (outside / "repo").symlink_to(two.root / BETA, target_is_directory=True)
        (two.root / "evil").symlink_to(outside / "repo", target_is_directory=True)
    untouched = beta_untouched(two)
    evil = two.store.customer("evil")
    assert not evil.exists
    assert "evil" not in two.store.customers()
    assert two.store.customers() == [ALPHA, BETA]
    with pytest.raises(StorageError, match="symbolic link"):
        evil.read()
    with pytest.raises(StorageError):
        evil.log()
    with pytest.raises(StorageError):
        evil.new_session()
    with pytest.raises((StorageError, NotFoundError)):
        evil.versions()
    with pytest.raises((StorageError, NotFoundError)):
        evil.session().history()
    with pytest.raises(NotFoundError):
        _ = evil.audit_log
    for args, codes in ((["show", "evil"], {9}), (["show", "evil", "v1.0.0", "sow"], {9}),
                        (["log", "evil"], {9}), (["diff", "evil", "v1.0.0"], {9}),
                        (["versions", "evil"], {3, 9}), (["audit", "evil"], {3}),
                        (["verify", "evil"], {3}), (["render", "evil"], {9}),
                        (["new", "evil"], {9})):
        r = run(two.root, *args)
        assert r.code in codes, (args, r.code, r.err)
        assert r.out == b"" and not leaks_beta(two, r.err), args
    untouched()
    # `verify` of the whole store does not wander into the link either: beta's log
    # gets exactly one record, for beta
    before = records(two.store, BETA)
    r = run(two.root, "verify")
    assert r.code == 0, r.text
    assert "evil" not in r.text and r.text.count(": ok") == 2
    after = records(two.store, BETA)
    assert after[:-1] == before and after[-1]["op"] == "verify"
    assert after[-1]["customer"] == BETA


def test_another_customers_commit_ids_are_not_found(two: Two) -> None:
    untouched = beta_untouched(two)
    alpha = two.store.customer(ALPHA)
    for oid in [*two.commits(BETA)[:3], *two.tag_ids(BETA), two.commits(BETA)[0][:12]]:
        with pytest.raises(NotFoundError):
            alpha.read(oid)
        for args in (["show", ALPHA, oid], ["show", ALPHA, oid, "conversation.json"],
                     ["diff", ALPHA, "v1.0.0", oid], ["diff", ALPHA, oid],
                     ["log", ALPHA, oid]):
            r = run(two.root, *args)
            assert r.code == 3, (args, r.code, r.err)
            assert r.out == b"" and not leaks_beta(two, r.err.replace(oid, "")), args
    # revisions shaped like paths stay inside alpha's repository too
    for rev in (f"../{BETA}/HEAD", f"refs/../../{BETA}/HEAD", str(two.root / BETA),
                f"{two.root / BETA}/refs/heads/v1"):
        r = run(two.root, "show", ALPHA, rev, "-o", "json")
        assert r.code == 3 and r.out == b"", (rev, r.code, r.err)
    untouched()


def test_each_log_records_only_its_own_customer(two: Two) -> None:
    untouched = beta_untouched(two)
    alpha = two.store.customer(ALPHA)
    alpha.read("v1.0.0")
    alpha.log()
    alpha.diff("v1.0.0")
    alpha.session().history(1)
    _ok(run(two.root, "show", ALPHA, "v1.0.0", "sow"))
    _ok(run(two.root, "verify", ALPHA))
    untouched()
    beta_before = len(records(two.store, BETA))
    two.store.customer(BETA).versions()
    assert len(records(two.store, BETA)) == beta_before + 1
    for name in (ALPHA, BETA):
        recs = records(two.store, name)
        assert {r["customer"] for r in recs} == {name}
        assert two.store.customer(name).audit_log.verify() == []
    # a store-wide verify appends one record to each customer's own log
    a, b = len(records(two.store, ALPHA)), len(records(two.store, BETA))
    _ok(run(two.root, "verify"))
    assert (len(records(two.store, ALPHA)), len(records(two.store, BETA))) == (a + 1, b + 1)
    commits_a = set(two.commits(ALPHA))
    for r in records(two.store, ALPHA):
        for oid in (r["commit"] or "").split(".."):
            assert not oid or oid in commits_a


def test_a_writer_killed_between_record_and_head_leaves_an_intact_log(tmp_path: Path) -> None:
    """A crash after the record was written but before the head caught up: the
    next append must continue the log (not the stale head), and verify stays clean."""
    from gitstore.store.audit import AuditLog

    log = AuditLog(tmp_path)
    for _ in range(3):
        log.append(actor="a", op="read", customer="c")
    second = json.loads(log.path.read_text(encoding="utf-8").splitlines()[1])
    log._write_head(2, second["hash"])  # the head as it was before record 3
    log.append(actor="a", op="read", customer="c")
    assert [r["seq"] for r in log.records()] == [1, 2, 3, 4]
    assert log.verify() == []
