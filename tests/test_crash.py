"""Crashes: writers killed with SIGKILL at random moments, and stale lock files.

Each round starts a writer process that appends turns (or publishes
corrections) in a loop and prints every acknowledged write, kills it 0-300 ms
after its first write (which warms up its caches), and then checks that

* the repository is readable and ``git fsck --strict`` is clean (dangling
  objects from the interrupted write are allowed),
* every acknowledged write is on the branch (and every acknowledged version
  has its tag),
* ``verify`` reports nothing but the traces a crash may leave (a stray lock,
  a missing tag, the access log's head one record behind), and
* the next writer succeeds within a few seconds, after which ``verify`` is clean.

The finalize-commit-without-tag repair (tag ref deleted with plain git right
after finalize) is covered by ``test_store.py``
(``test_missing_tag_after_a_crash_is_reported_and_recreated``) and
``test_cli.py`` (``test_verify_exits_7_on_damage``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, ROOT, Clock, git, load_example, record_example_session

from gitstore import Store
from gitstore.ops import verify as health

ROUNDS = 30
CORRECTION_ROUNDS = 10
CREATED = "2020-01-01T00:00:00Z"
SEED = int(os.environ.get("GITSTORE_CRASH_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)

# traces a SIGKILL may leave, which the next write clears up
CRASH_TRACES = ("stray lock file ", "does not match its head file",
                "is missing for finalize commit")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gitstore", "--root", str(root), *args],
                          input=stdin if stdin is not None else b"", capture_output=True,
                          env=_env(), timeout=120, check=False)


def fsck(repo: Path) -> None:
    # git fsck reads the pack directory unlocked: a repack this test process's own
    # writes started in the background (it replaces packs) would show as missing
    # indexes and objects for a moment, as with git's own gc --auto. Killed writers
    # are dead; wait for this process's runs.
    Store.wait_for_maintenance()
    proc = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, check=False)
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out
    assert out.strip() == "", out


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def small_turn(query: str, timestamp: str | None = None) -> dict[str, Any]:
    return {"timestamp": timestamp or stamp(), "user_input": {"query": query},
            "agent_response": {"orchestrator_response": "ok"}}


def audit_records(repo: Path) -> list[dict[str, Any]]:
    path = repo / "gitstore-audit.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


# =========================================================================== the writer

TURN_WRITER = r"""
import sys
from datetime import UTC, datetime
from gitstore import Store

sys.stdin.readline()  # started early (imports done); wait for the go
root, customer, tag = sys.argv[1], sys.argv[2], sys.argv[3]
session = Store(root).customer(customer).session("v1")
i = 0
while True:
    if i == 1:  # the first write warmed up the caches: from now on, kill at any time
        print("ready", flush=True)
    marker = f"{tag}-{i}"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    w = session.append_turn({"timestamp": stamp, "user_input": {"query": marker},
                             "agent_response": {"orchestrator_response": "ok"}})
    print(f"{w.commit} {marker}", flush=True)
    i += 1
"""

CORRECTION_WRITER = r"""
import json, sys
from gitstore import Store

sys.stdin.readline()
root, customer, tag, analytics = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
doc = json.loads(open(analytics, encoding="utf-8").read())
session = Store(root).customer(customer).session("v1")
i = 0
while True:
    if i == 1:
        print("ready", flush=True)
    doc["prediction_accuracy"]["crash_test_marker"] = f"{tag}-{i}"
    w = session.correct({"session_analytics.json": doc}, reason=f"crash test {tag}-{i}")
    print(f"{w.commit} {w.version} {w.tag}", flush=True)
    i += 1
"""


class Writer:
    """A writer process; its stdout lines are collected as they arrive.

    It is started ahead of its round (so that its interpreter start-up overlaps
    the previous round's checks) and begins writing on :meth:`go`."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=_env())
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):  # a line cut short by the kill: not acknowledged
                break
            line = raw.decode().strip()
            if line == "ready":
                self.ready.set()
            else:
                self.lines.append(line)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def discard(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def kill_after(self, delay: float) -> list[str]:
        """Kill -9 ``delay`` seconds after the writer is ready; return what it
        acknowledged."""
        if not self.ready.wait(timeout=60):
            self.proc.kill()
            raise AssertionError(f"writer never got ready: {self.stderr()}")
        time.sleep(delay)
        assert self.proc.poll() is None, f"writer died on its own: {self.stderr()}"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL
        self.reader.join(timeout=30)
        return list(self.lines)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-3000:]


def crash_problems(store: Store, customer: str, seen: Counter[str]) -> list[str]:
    """verify's findings that are not traces of a crash (those are counted in ``seen``)."""
    report = health.check_customer(Store(store.root).customer(customer))
    for p in report.problems:
        seen.update(t.strip() for t in CRASH_TRACES if t in p)
    return [p for p in report.problems if not any(t in p for t in CRASH_TRACES)]


def is_ancestor(repo: Path, commit: str, tip: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, tip],
                          check=False).returncode == 0


# =========================================================================== turns

def test_sigkill_at_random_moments_loses_no_acknowledged_turn(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"\ncrash seed {SEED} (set GITSTORE_CRASH_SEED to replay)")
    store = Store.init(tmp_path / "sessions")
    store.customer(CUSTOMER).new_session(created=CREATED)
    repo = store.root / CUSTOMER
    acked: dict[str, str] = {}  # turn marker -> commit
    next_writer: list[float] = []
    traces: Counter[str] = Counter()
    pending = [Writer(TURN_WRITER, str(store.root), CUSTOMER, "r0")]
    try:
        for n in range(ROUNDS):
            _turn_round(store, n, rng.uniform(0, 0.3), pending, acked, next_writer, traces)
    finally:
        for w in pending:
            w.discard()
    print(f"{len(acked)} acknowledged turns over {ROUNDS} kills; next write "
          f"max {max(next_writer):.2f}s; crash traces seen: {dict(traces)}")
    assert acked, "no writer ever got a write acknowledged: the kills came too early"
    fsck(repo)
    proc = cli(store.root, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _turn_round(store: Store, n: int, delay: float, pending: list[Writer],
                acked: dict[str, str], next_writer: list[float], traces: Counter[str]) -> None:
    repo = store.root / CUSTOMER
    writer = pending.pop()
    writer.go()
    for line in writer.kill_after(delay):
        commit, marker = line.split()
        acked[marker] = commit
    pending.append(Writer(TURN_WRITER, str(store.root), CUSTOMER, f"r{n + 1}"))
    where = f"round {n} (seed {SEED}, killed after {delay * 1000:.0f} ms)"

    # readable, with plain git and with gitstore
    tip = git(repo, "rev-parse", "refs/heads/v1").strip()
    git(repo, "log", "--format=%H", tip)
    conv = Store(store.root).customer(CUSTOMER).read("v1").document("conversation.json")
    fsck(repo)
    # every acknowledged turn is there
    queries = [t["user_input"]["query"] for t in conv["conversation_turns"]]
    assert len(queries) == len(set(queries)), where
    missing = sorted(set(acked) - set(queries))
    assert not missing, f"{where}: acknowledged turns lost: {missing}"
    on_branch = set(git(repo, "rev-list", tip).split())
    for marker, commit in acked.items():
        assert commit in on_branch, f"{where}: {marker} {commit} not on v1"
    assert [t["turn_id"] for t in conv["conversation_turns"]] == \
        list(range(1, len(queries) + 1)), where
    assert crash_problems(store, CUSTOMER, traces) == [], where

    # the next writer is not held up by anything the dead one left behind
    t0 = time.monotonic()
    written = Store(store.root, lock_timeout=10).customer(CUSTOMER).session().append_turn(
        small_turn(f"probe-{n}"))
    next_writer.append(time.monotonic() - t0)
    assert next_writer[-1] < 5.0, f"{where}: the next write took {next_writer[-1]:.1f}s"
    assert git(repo, "rev-parse", "refs/heads/v1").strip() == written.commit
    assert health.check_customer(Store(store.root).customer(CUSTOMER)).problems == [], where


GROUP_ROUNDS = 10
GROUP_WRITERS = 3


def test_sigkill_among_writers_written_together_loses_no_acknowledged_turn(tmp_path: Path
                                                                           ) -> None:
    """Three writers append at once, so their turns are written in groups
    (:mod:`gitstore.store.groupcommit`: a leader writes the others' spooled turns);
    each is killed at its own random moment, leader or waiter."""
    rng = random.Random(SEED)
    store = Store.init(tmp_path / "sessions")
    store.customer(CUSTOMER).new_session(created=CREATED)
    repo = store.root / CUSTOMER
    git(repo, "config", "core.logAllRefUpdates", "true")  # to count branch updates
    acked: dict[str, str] = {}
    traces: Counter[str] = Counter()
    for n in range(GROUP_ROUNDS):
        writers = [Writer(TURN_WRITER, str(store.root), CUSTOMER, f"g{n}w{w}")
                   for w in range(GROUP_WRITERS)]
        delays = [rng.uniform(0, 0.3) for _ in writers]
        got: list[list[str]] = [[] for _ in writers]
        killers = [threading.Thread(target=lambda w=w, d=d, out=out: out.extend(
            w.kill_after(d))) for w, d, out in zip(writers, delays, got, strict=True)]
        try:
            for w in writers:
                w.go()
            for k in killers:
                k.start()
            for k in killers:
                k.join(timeout=120)
        finally:
            for w in writers:
                w.discard()
        for line in (line for lines in got for line in lines):
            commit, marker = line.split()
            acked[marker] = commit
        where = f"group round {n} (seed {SEED}, kills after {[round(d, 3) for d in delays]})"
        tip = git(repo, "rev-parse", "refs/heads/v1").strip()
        conv = Store(store.root).customer(CUSTOMER).read("v1").document("conversation.json")
        fsck(repo)
        queries = [t["user_input"]["query"] for t in conv["conversation_turns"]]
        assert len(queries) == len(set(queries)), f"{where}: a turn was written twice"
        missing = sorted(set(acked) - set(queries))
        assert not missing, f"{where}: acknowledged turns lost: {missing}"
        on_branch = set(git(repo, "rev-list", tip).split())
        for marker, commit in acked.items():
            assert commit in on_branch, f"{where}: {marker} {commit} not on v1"
        assert crash_problems(store, CUSTOMER, traces) == [], where
        # the next writer writes what dead writers left spooled, and its own turn
        written = Store(store.root, lock_timeout=10).customer(CUSTOMER).session().append_turn(
            small_turn(f"gprobe-{n}"))
        assert git(repo, "rev-parse", "refs/heads/v1").strip() == written.commit, where
    print(f"\n{len(acked)} acknowledged turns over {GROUP_ROUNDS} rounds of "
          f"{GROUP_WRITERS} writers; crash traces seen: {dict(traces)}")
    assert len({m.split("w")[0] for m in acked}) > 1, "the kills came too early"
    commits = int(git(repo, "rev-list", "--count", "refs/heads/v1"))
    updates = len(git(repo, "reflog", "show", "refs/heads/v1").splitlines())
    print(f"{commits} commits in {updates} branch updates")
    assert updates < commits - 1, "no turns were written together"
    proc = cli(store.root, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# =========================================================================== corrections

def test_sigkill_during_corrections_loses_no_acknowledged_version(tmp_path: Path) -> None:
    """Corrections are a commit and a tag each: a kill between the two leaves a
    version without its tag, which the next write recreates."""
    rng = random.Random(SEED + 1)
    store = Store.init(tmp_path / "sessions")
    record_example_session(store)
    repo = store.root / CUSTOMER
    analytics = tmp_path / "analytics.json"
    analytics.write_text(json.dumps(load_example("correction", "session_analytics.json")),
                         encoding="utf-8")
    acked: dict[str, tuple[str, str]] = {}  # version -> (commit, tag object)
    traces: Counter[str] = Counter()
    pending = [Writer(CORRECTION_WRITER, str(store.root), CUSTOMER, "r0", str(analytics))]
    try:
        for n in range(CORRECTION_ROUNDS):
            _correction_round(store, n, rng.uniform(0, 0.3), pending, analytics, acked, traces)
    finally:
        for w in pending:
            w.discard()
    print(f"\n{len(acked)} acknowledged corrections over {CORRECTION_ROUNDS} kills; "
          f"crash traces seen: {dict(traces)}")
    fsck(repo)
    proc = cli(store.root, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _correction_round(store: Store, n: int, delay: float, pending: list[Writer],
                      analytics: Path, acked: dict[str, tuple[str, str]],
                      traces: Counter[str]) -> None:
    repo = store.root / CUSTOMER
    writer = pending.pop()
    writer.go()
    for line in writer.kill_after(delay):
        commit, version, tag = line.split()
        acked[version] = (commit, tag)
    pending.append(Writer(CORRECTION_WRITER, str(store.root), CUSTOMER, f"r{n + 1}",
                          str(analytics)))
    where = f"round {n} (seed {SEED + 1}, killed after {delay * 1000:.0f} ms)"
    tip = git(repo, "rev-parse", "refs/heads/v1").strip()
    fsck(repo)
    on_branch = set(git(repo, "rev-list", tip).split())
    tag_objects = dict(line.split() for line in git(
        repo, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/tags"
    ).splitlines())
    for version, (commit, tag) in acked.items():
        assert commit in on_branch, f"{where}: {version} {commit} not on v1"
        assert tag_objects.get(version) == tag, f"{where}: tag {version} lost or moved"
    assert crash_problems(store, CUSTOMER, traces) == [], where
    # the next write repairs a lost tag (if the kill left one) and goes through
    t0 = time.monotonic()
    session = Store(store.root, lock_timeout=10).customer(CUSTOMER).session()
    doc = json.loads(analytics.read_text(encoding="utf-8"))
    doc["prediction_accuracy"]["crash_test_marker"] = f"probe-{n}"
    written = session.correct({"session_analytics.json": doc}, reason=f"probe {n}")
    assert time.monotonic() - t0 < 5.0, where
    assert written.tag is not None
    # every finalize/correction commit on the branch has its tag (verify runs at the end)
    tags = dict(line.split() for line in git(
        repo, "for-each-ref", "--format=%(refname:short) %(*objectname)",
        "refs/tags").splitlines())
    for line in git(repo, "log", "--format=%H %(trailers:key=Session-Version,valueonly,"
                    "separator=)%x00%(trailers:key=Change,valueonly,separator=)",
                    "refs/heads/v1").splitlines():
        head, change = line.split("\x00")
        commit, _, version = head.partition(" ")
        if change in ("finalize", "correction"):
            assert tags.get(version) == commit, f"{where}: {version} untagged"


# =========================================================================== stale lock files

GRACE = 2.0


def _leave_lock(repo: Path, name: str) -> Path:
    lock = repo / name
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(git(repo, "rev-parse", "refs/heads/v1"), encoding="ascii")
    old = time.time() - 3600  # left by a writer that died an hour ago
    os.utime(lock, (old, old))
    return lock


def _write_turn_api(store: Store) -> None:
    Store(store.root, lock_timeout=30).customer(CUSTOMER).session().append_turn(
        small_turn("after the crash"))


def _write_turn_cli(store: Store) -> None:
    proc = cli(store.root, "turn", CUSTOMER, "-",
               stdin=json.dumps(small_turn("after the crash")).encode())
    assert proc.returncode == 0, proc.stderr


def _new_scenario_api(store: Store) -> None:
    Store(store.root, lock_timeout=30).customer(CUSTOMER).new_session(created=CREATED,
                                                                      allow_open=True)


WRITERS = {"turn-api": _write_turn_api, "turn-cli": _write_turn_cli, "new-api": _new_scenario_api}


@pytest.mark.parametrize(("lock_name", "writer"), [
    ("refs/heads/v1.lock", "turn-api"),
    ("refs/heads/v1.lock", "turn-cli"),
    ("refs/heads/v1.lock", "new-api"),
    ("HEAD.lock", "turn-api"),
    ("packed-refs.lock", "turn-api"),
])
def test_a_stale_lock_file_is_cleared_and_recorded(tmp_path: Path, lock_name: str,
                                                    writer: str) -> None:
    store = Store.init(tmp_path / "sessions", clock=Clock())
    store.customer(CUSTOMER).new_session(created=CREATED)
    repo = store.root / CUSTOMER
    tip = git(repo, "rev-parse", "refs/heads/v1").strip()
    lock = _leave_lock(repo, lock_name)
    content = lock.read_bytes()
    # verify names it meanwhile
    proc = cli(store.root, "verify", CUSTOMER)
    assert proc.returncode == 7, proc.stderr
    assert f"{CUSTOMER}: stray lock file {lock_name}" in proc.stdout.decode(), proc.stdout
    assert lock.read_bytes() == content, "verify must not touch the lock"

    t0 = time.monotonic()
    WRITERS[writer](store)
    elapsed = time.monotonic() - t0
    extra = 3.0 if writer.endswith("cli") else 1.5  # process start-up for the CLI
    assert elapsed < GRACE + extra, f"blocked {elapsed:.1f}s by a stale {lock_name}"
    assert not lock.exists()
    assert is_ancestor(repo, tip, git(repo, "rev-parse", "refs/heads/v1").strip())
    repairs = [r for r in audit_records(repo) if str(r.get("op", "")).startswith("repair:")]
    assert [r.get("document") for r in repairs] == [lock_name], \
        f"removal of {lock_name} not recorded in the audit log: {audit_records(repo)[-3:]}"
    assert repairs[0]["customer"] == CUSTOMER
    proc = cli(store.root, "verify", CUSTOMER)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fsck(repo)


def test_a_lock_file_of_a_live_git_process_is_not_stolen(tmp_path: Path) -> None:
    """A lock that goes away within the grace period (a running git process)
    is waited for, not removed, and nothing is recorded as a repair."""
    store = Store.init(tmp_path / "sessions", clock=Clock())
    store.customer(CUSTOMER).new_session(created=CREATED)
    repo = store.root / CUSTOMER
    lock = _leave_lock(repo, "refs/heads/v1.lock")
    timer = threading.Timer(0.5, lock.unlink)
    timer.start()
    try:
        t0 = time.monotonic()
        _write_turn_api(store)
        elapsed = time.monotonic() - t0
    finally:
        timer.join()
    assert 0.4 < elapsed < GRACE + 1.5, elapsed
    assert not any(str(r.get("op", "")).startswith("repair:") for r in audit_records(repo))
    fsck(repo)
