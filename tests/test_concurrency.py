"""Concurrent writers, with real processes.

* 8 processes x 200 turns appended to one customer's open scenario, each turn
  stamped by its own process's clock and placed by timestamp: every turn lands
  exactly once, ids run 1..1600, timestamps never go backwards, ``git fsck``
  and ``gitstore verify`` are clean.
* Writers to different customers never wait on each other; writers to one
  customer do, and time out with :class:`ConflictError` (exit 6).
* A compare-and-swap lost to a plain-git ref update is re-applied on the new
  tip: neither lost nor forced.
* Turns appended out of timestamp order end up sorted; a turn older than the
  turns of the last finalized version is refused (exit 4) and nothing is written.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, ROOT, Clock, git, load_example, record_example_session, repo_state

from gitstore import ConflictError, InvalidDocumentError, Store, Violation
from gitstore.core import canonical
from gitstore.core import manifest as manifest_mod
from gitstore.ops import verify as health

CREATED = "2020-01-01T00:00:00Z"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(root: Path, *args: str, stdin: bytes | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gitstore", "--root", str(root), *args],
                          input=stdin if stdin is not None else b"", capture_output=True,
                          env=_env(), timeout=timeout, check=False)


def fsck(repo: Path) -> None:
    proc = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, check=False)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert "error" not in out.lower() and "missing" not in out.lower(), out


def small_turn(query: str, timestamp: str) -> dict[str, Any]:
    return {"timestamp": timestamp, "user_input": {"query": query},
            "agent_response": {"orchestrator_response": "ok"}}


def conversation(store: Store, customer: str, rev: str = "v1") -> dict[str, Any]:
    return Store(store.root).customer(customer).read(rev).document("conversation.json")


# =========================================================================== stress

STRESS_WORKER = r"""
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from gitstore import Store

root, customer, proc_id, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), Path(sys.argv[5])
store = Store(root)
session = store.customer(customer).session("v1")
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
pad = "x" * 200
slowest = 0.0
for seq in range(count):
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    turn = {"timestamp": stamp,
            "user_input": {"query": f"p{proc_id}-s{seq:04d} {pad}"},
            "agent_response": {"orchestrator_response": f"answer p{proc_id}-s{seq:04d}"}}
    t0 = time.monotonic()
    try:
        written = session.append_turn(turn)
    except Exception as exc:
        sys.exit(f"p{proc_id}: turn {seq} failed after {time.monotonic() - t0:.1f}s "
                 f"({type(exc).__name__}: {exc})")
    slowest = max(slowest, time.monotonic() - t0)
    print(f"{written.commit} p{proc_id}-s{seq:04d}", flush=True)
print(f"slowest {slowest:.2f}", file=sys.stderr, flush=True)
"""

PROCESSES = 8
TURNS_EACH = 200


@pytest.mark.slow
def test_eight_processes_append_1600_turns_to_one_scenario(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "sessions")
    store.customer(CUSTOMER).new_session(created=CREATED)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", STRESS_WORKER, str(store.root), CUSTOMER,
                               str(p), str(TURNS_EACH), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
             for p in range(PROCESSES)]
    try:
        for p in procs:  # every worker has imported gitstore and opened the store
            assert p.stdout is not None
            assert p.stdout.readline().strip() == b"ready"
        started = time.monotonic()
        go.touch()
        outputs = [p.communicate(timeout=1800) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed = time.monotonic() - started
    print(f"\n{PROCESSES}x{TURNS_EACH} turns appended in {elapsed:.1f}s; "
          + "; ".join(err.decode(errors="replace").strip().splitlines()[-1] if err else "-"
                      for _out, err in outputs))
    failed = [err.decode(errors="replace").strip().splitlines()[-1]
              for p, (_out, err) in zip(procs, outputs, strict=True) if p.returncode != 0]
    landed = sum(len(out.splitlines()) for out, _err in outputs)
    assert not failed, f"{len(failed)} writer(s) failed ({landed} turns acknowledged in " \
        f"{elapsed:.0f}s): {failed}"

    acknowledged: dict[str, str] = {}
    for out, _err in outputs:
        for line in out.decode().splitlines():
            commit, marker = line.split()
            acknowledged[marker] = commit
    assert len(acknowledged) == PROCESSES * TURNS_EACH

    repo = store.root / CUSTOMER
    conv = conversation(store, CUSTOMER)
    turns = conv["conversation_turns"]
    total = PROCESSES * TURNS_EACH
    assert len(turns) == total
    assert conv["conversation_summary"]["total_turns"] == total
    assert [t["turn_id"] for t in turns] == list(range(1, total + 1))
    stamps = [datetime.fromisoformat(t["timestamp"].replace("Z", "+00:00")) for t in turns]
    assert all(a <= b for a, b in itertools.pairwise(stamps)), \
        "timestamps go backwards"
    markers = [t["user_input"]["query"].split()[0] for t in turns]
    assert Counter(markers) == Counter(acknowledged.keys()), "a turn was lost or duplicated"
    for p in range(PROCESSES):  # each process's own clock orders its own turns
        mine = [m for m in markers if m.startswith(f"p{p}-")]
        assert mine == [f"p{p}-s{s:04d}" for s in range(TURNS_EACH)]
    # one commit per turn on a single line of history: no writer overwrote another
    assert int(git(repo, "rev-list", "--count", "v1").strip()) == total + 1
    assert git(repo, "rev-list", "--merges", "v1").strip() == ""
    tip = git(repo, "rev-parse", "v1").strip()
    for commit in set(acknowledged.values()):
        assert subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit,
                               tip], check=False).returncode == 0, commit
    fsck(repo)
    proc = cli(store.root, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# =========================================================================== lock scope

HOLDER = r"""
import sys
from pathlib import Path
from gitstore.git.locking import writer_lock

with writer_lock(Path(sys.argv[1]), sys.argv[2], 10):
    print("locked", flush=True)
    sys.stdin.read()          # hold the lock until the test closes our stdin
print("released", flush=True)
"""


class LockHolder:
    """Another process holding one customer's writer lock."""

    def __init__(self, lock_dir: Path, customer: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), customer],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=_env())
        assert self.proc.stdout is not None and self.proc.stderr is not None
        if self.proc.stdout.readline().strip() != b"locked":
            self.proc.kill()
            raise AssertionError(f"lock holder failed: {self.proc.stderr.read().decode()}")

    def release(self) -> float:
        """Release the lock; returns the moment just before it was released."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        released = time.monotonic()
        self.proc.stdin.close()
        assert self.proc.stdout.readline().strip() == b"released"
        assert self.proc.wait(timeout=10) == 0
        return released

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def two_customers(tmp_path: Path) -> Store:
    store = Store.init(tmp_path / "sessions", clock=Clock())
    for name in ("cust-a", "cust-b"):
        store.customer(name).new_session(created=CREATED)
    return store


def test_writers_to_different_customers_never_wait_on_each_other(two_customers: Store
                                                                 ) -> None:
    store = two_customers
    holder = LockHolder(store.lock_dir, "cust-a")
    try:
        b = Store(store.root, lock_timeout=30).customer("cust-b").session()
        t0 = time.monotonic()
        for i in range(3):
            b.append_turn(small_turn(f"b{i}", f"2025-01-01T00:00:0{i}Z"))
        assert time.monotonic() - t0 < 3.0, "a write to cust-b waited for cust-a's lock"
        # the CLI too: a fresh process writing to cust-b is not held up either
        t0 = time.monotonic()
        proc = cli(store.root, "turn", "cust-b", "-",
                   stdin=json.dumps(small_turn("b-cli", "2025-01-01T00:00:09Z")).encode())
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - t0 < 20
        assert len(conversation(store, "cust-b")["conversation_turns"]) == 4
    finally:
        holder.kill()


def test_writers_to_one_customer_wait_for_the_lock(two_customers: Store) -> None:
    store = two_customers
    repo_a = store.root / "cust-a"
    holder = LockHolder(store.lock_dir, "cust-a")
    done: dict[str, Any] = {}

    def write() -> None:
        try:
            session = Store(store.root, lock_timeout=60).customer("cust-a").session()
            done["written"] = session.append_turn(small_turn("a0", "2025-01-01T00:00:00Z"))
        except BaseException as exc:  # reported by the assertions below
            done["error"] = exc
        done["at"] = time.monotonic()

    thread = threading.Thread(target=write)
    try:
        before = repo_state(repo_a)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive() and not done, "the write did not wait for the lock"
        assert repo_state(repo_a) == before
        released = holder.release()
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        holder.kill()
        thread.join(timeout=30)
    assert "error" not in done, done.get("error")
    assert done["at"] >= released
    assert done["at"] - released < 5.0
    assert done["written"].turn == 1
    assert git(repo_a, "rev-parse", "v1").strip() == done["written"].commit


def test_a_writer_that_cannot_get_the_lock_times_out_with_a_conflict(two_customers: Store
                                                                     ) -> None:
    store = two_customers
    repo_a = store.root / "cust-a"
    before = repo_state(repo_a)
    turn = small_turn("a-late", "2025-01-01T00:00:00Z")
    holder = LockHolder(store.lock_dir, "cust-a")
    try:
        session = Store(store.root, lock_timeout=0.5).customer("cust-a").session()
        t0 = time.monotonic()
        with pytest.raises(ConflictError) as info:
            session.append_turn(turn)
        waited = time.monotonic() - t0
        assert 0.5 <= waited < 5.0, waited
        assert info.value.exit_code == 6
        assert "cust-a" in str(info.value)
        assert repo_state(repo_a) == before
        # the CLI: lock_timeout from the store's configuration, exit 6, one error line
        config = store.root / ".gitstore" / "config.json"
        config.write_text(json.dumps({"lock_timeout": 0.5}), encoding="utf-8")
        proc = cli(store.root, "turn", "cust-a", "-", stdin=json.dumps(turn).encode())
        stderr = proc.stderr.decode()
        assert proc.returncode == 6, stderr
        assert proc.stdout == b""
        assert stderr.startswith("gitstore: error: ") and len(stderr.splitlines()) == 1, stderr
        assert repo_state(repo_a) == before
        # meanwhile cust-b takes writes through the same short timeout
        proc = cli(store.root, "turn", "cust-b", "-", stdin=json.dumps(turn).encode())
        assert proc.returncode == 0, proc.stderr
    finally:
        holder.kill()
    # once the holder is gone (the kernel dropped its lock) the write goes through
    proc = cli(store.root, "turn", "cust-a", "-", stdin=json.dumps(turn).encode())
    assert proc.returncode == 0, proc.stderr
    assert len(conversation(store, "cust-a")["conversation_turns"]) == 1


# =========================================================================== CAS vs plain git

def _plain_git_turn(repo: Path, query: str, timestamp: str) -> str:
    """Append a turn on v1 the way a writer outside gitstore would: plain git
    plumbing, a correct SHA256SUMS, gitstore-style trailers; returns the commit."""
    old = git(repo, "rev-parse", "refs/heads/v1").strip()
    files: dict[str, bytes] = {}
    for line in git(repo, "ls-tree", old).splitlines():
        meta, name = line.split("\t")
        files[name] = subprocess.run(["git", "-C", str(repo), "cat-file", "blob",
                                      meta.split()[2]], capture_output=True,
                                     check=True).stdout
    conv = canonical.loads(files["conversation.json"])
    turns = conv["conversation_turns"]
    turns.append({**small_turn(query, timestamp), "turn_id": len(turns) + 1})
    conv["conversation_summary"]["total_turns"] = len(turns)
    files["conversation.json"] = canonical.dumps(conv)
    files["SHA256SUMS"] = manifest_mod.build(files)
    entries = []
    for name, data in sorted(files.items()):
        blob = git(repo, "hash-object", "-w", "--stdin", input=data).strip()
        entries.append(f"100644 blob {blob}\t{name}")
    tree = git(repo, "mktree", input=("\n".join(entries) + "\n").encode()).strip()
    info = git(repo, "log", "-1", "--format=%(trailers:key=Session-Id,valueonly)", old).strip()
    message = (f"v1.0.0: add turn {len(turns)} (plain git)\n\nSession-Id: {info}\n"
               f"Session-Version: v1.0.0\nChange: turn\nTurn: {len(turns)}\n")
    commit = git(repo, "commit-tree", tree, "-p", old, "-m", message).strip()
    git(repo, "update-ref", "refs/heads/v1", commit, old)
    return commit


def test_a_lost_compare_and_swap_is_reapplied_on_the_new_tip(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    repo = root / CUSTOMER
    seen: list[str] = []
    outside: list[str] = []

    def interloper(proposal: Any) -> list[Violation]:
        """Runs inside the write, after the tip was read: a plain-git writer
        moves the branch once, so the first compare-and-swap must lose."""
        seen.append(git(repo, "rev-parse", "refs/heads/v1").strip())
        if proposal.change == "turn" and not outside:
            outside.append(_plain_git_turn(repo, "from plain git", "2025-01-01T00:00:05Z"))
        return []

    Store.init(root, clock=Clock()).customer(CUSTOMER).new_session(created=CREATED)
    # a new repository keeps no reflog (git's default for a bare one); turned
    # on, libgit2 and git both log every move of the branch from here
    assert not (repo / "logs" / "refs" / "heads" / "v1").exists()
    git(repo, "config", "core.logAllRefUpdates", "true")
    store = Store(root, clock=Clock(), hooks=[interloper])
    session = store.customer(CUSTOMER).session()
    base = git(repo, "rev-parse", "refs/heads/v1").strip()
    written = session.append_turn(small_turn("from gitstore", "2025-01-01T00:00:09Z"))

    assert len(outside) == 1
    assert seen == [base, outside[0]], "the change was not rebuilt on the new tip"
    tip = git(repo, "rev-parse", "refs/heads/v1").strip()
    assert tip == written.commit
    # re-applied on the new tip, not forced over it
    assert git(repo, "rev-parse", f"{tip}^").strip() == outside[0]
    assert git(repo, "rev-parse", f"{outside[0]}^").strip() == base
    turns = conversation(store, CUSTOMER)["conversation_turns"]
    assert [(t["turn_id"], t["user_input"]["query"]) for t in turns] == \
        [(1, "from plain git"), (2, "from gitstore")]
    assert written.turn == 2
    # the reflog shows two plain fast-forwards after the create, nothing forced
    reflog = git(repo, "reflog", "show", "--format=%H %gs", "refs/heads/v1").splitlines()
    assert [line.split()[0] for line in reflog] == [tip, outside[0]]
    assert health.check_customer(Store(root).customer(CUSTOMER)).problems == []
    fsck(repo)


def test_a_lost_compare_and_swap_slots_the_turn_by_timestamp(tmp_path: Path) -> None:
    """The re-applied turn is placed among the new tip's turns by its timestamp."""
    root = tmp_path / "sessions"
    repo = root / CUSTOMER
    moved: list[str] = []

    def interloper(proposal: Any) -> list[Violation]:
        if proposal.change == "turn" and not moved:
            moved.append(_plain_git_turn(repo, "later, from plain git",
                                         "2025-01-01T00:00:30Z"))
        return []

    Store.init(root, clock=Clock()).customer(CUSTOMER).new_session(created=CREATED)
    session = Store(root, clock=Clock(), hooks=[interloper]).customer(CUSTOMER).session()
    written = session.append_turn(small_turn("earlier, from gitstore", "2025-01-01T00:00:10Z"))
    turns = conversation(Store(root), CUSTOMER)["conversation_turns"]
    assert [(t["turn_id"], t["user_input"]["query"]) for t in turns] == \
        [(1, "earlier, from gitstore"), (2, "later, from plain git")]
    assert written.turn == 1
    assert git(repo, "rev-parse", "v1^").strip() == moved[0]
    fsck(repo)


def test_a_branch_that_keeps_moving_gives_up_with_a_conflict_never_forces(tmp_path: Path
                                                                          ) -> None:
    root = tmp_path / "sessions"
    repo = root / CUSTOMER
    moved: list[str] = []

    def interloper(proposal: Any) -> list[Violation]:
        moved.append(_plain_git_turn(repo, f"outside {len(moved)}",
                                     f"2025-01-01T00:00:{len(moved):02d}Z"))
        return []

    Store.init(root, clock=Clock()).customer(CUSTOMER).new_session(created=CREATED)
    session = Store(root, clock=Clock(), hooks=[interloper]).customer(CUSTOMER).session()
    with pytest.raises(ConflictError) as info:
        session.append_turn(small_turn("never lands", "2025-01-01T00:01:00Z"))
    assert info.value.exit_code == 6
    # every outside commit survives, in order; gitstore's turn was never forced in
    assert git(repo, "rev-parse", "refs/heads/v1").strip() == moved[-1]
    queries = [t["user_input"]["query"] for t in conversation(Store(root), CUSTOMER)
               ["conversation_turns"]]
    assert queries == [f"outside {i}" for i in range(len(moved))]
    fsck(repo)


# =========================================================================== timestamps

def test_turns_appended_in_reverse_timestamp_order_end_up_sorted(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created=CREATED)
    late = session.append_turn(small_turn("second", "2025-01-01T10:00:02.500000Z"))
    early = session.append_turn(small_turn("first", "2025-01-01T10:00:01.250000Z"))
    assert (late.turn, early.turn) == (1, 1)
    turns = conversation(store, CUSTOMER)["conversation_turns"]
    assert [(t["turn_id"], t["user_input"]["query"]) for t in turns] == \
        [(1, "first"), (2, "second")]
    # through the CLI, one more in between
    proc = cli(store.root, "turn", CUSTOMER, "-", "-o", "json",
               stdin=json.dumps(small_turn("middle", "2025-01-01T10:00:02Z")).encode())
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["turn"] == 2
    turns = conversation(store, CUSTOMER)["conversation_turns"]
    assert [(t["turn_id"], t["user_input"]["query"]) for t in turns] == \
        [(1, "first"), (2, "middle"), (3, "second")]
    assert conversation(store, CUSTOMER)["conversation_summary"]["total_turns"] == 3


def test_an_equal_timestamp_goes_after_the_turns_stamped_at_it(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created=CREATED)
    for q in ("a", "b"):
        session.append_turn(small_turn(q, "2025-01-01T10:00:00Z"))
    session.append_turn(small_turn("z", "2025-01-01T11:00:00Z"))
    session.append_turn(small_turn("c", "2025-01-01T10:00:00Z"))
    queries = [t["user_input"]["query"] for t in conversation(store, CUSTOMER)
               ["conversation_turns"]]
    assert queries == ["a", "b", "c", "z"]


def test_a_turn_older_than_the_finalized_turns_is_refused(store: Store) -> None:
    record_example_session(store)  # v1.0.0: turns 1-5, 10:30:00 .. 10:41:20
    session = store.customer(CUSTOMER).session()
    session.follow_up()
    session.append_turn(load_example("follow_up", "turns", "turn-06.json"))  # 14:00:00
    # older than turn 6 (open) but newer than turn 5 (finalized): slotted in before 6
    between = session.append_turn(small_turn("between", "2025-01-15T12:00:00Z"))
    assert between.turn == 6
    repo = store.root / CUSTOMER
    before = repo_state(repo)
    files_before = _files(store.root)
    # older than the finalized turn 5 (but after created_timestamp 10:30:00)
    old = small_turn("too old", "2025-01-15T10:40:00Z")
    with pytest.raises(InvalidDocumentError) as info:
        session.append_turn(old)
    assert any(v.file == "conversation.json" and v.pointer == "/conversation_turns/5/timestamp"
               for v in info.value.violations), info.value.violations
    assert repo_state(repo) == before
    proc = cli(store.root, "turn", CUSTOMER, "-", stdin=json.dumps(old).encode())
    stderr = proc.stderr.decode()
    assert proc.returncode == 4, stderr
    assert proc.stdout == b""
    assert "conversation.json#/conversation_turns/5/timestamp" in stderr, stderr
    assert repo_state(repo) == before
    # nothing written at all, apart from the access log's record of the attempt
    after = _files(store.root)
    assert {k: v for k, v in after.items() if "gitstore-audit" not in k} == \
        {k: v for k, v in files_before.items() if "gitstore-audit" not in k}
    turns = conversation(store, CUSTOMER)["conversation_turns"]
    assert [t["turn_id"] for t in turns] == [1, 2, 3, 4, 5, 6, 7]
    assert turns[5]["user_input"]["query"] == "between"
    # the finalized version is untouched
    assert len(conversation(store, CUSTOMER, "v1.0.0")["conversation_turns"]) == 5


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}
