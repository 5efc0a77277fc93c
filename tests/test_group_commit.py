"""Group commit: turns several writers send to one scenario at once are written
together (one pack, one branch update), each still its own commit.

Waiting writers are made deterministic by holding the customer's writer lock in
the test (a thread, or another process) until every writer has spooled its turn.
Results are checked with the real git binary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, ROOT, git, git_conversation

from gitstore import Store
from gitstore.core.commits import Identity
from gitstore.errors import ConflictError, InvalidDocumentError, UsageError
from gitstore.store import groupcommit
from gitstore.store.authorship import Authorship
from gitstore.store.session import turn_key
from gitstore.store.writer import RETRY_SCAN, RETRY_WINDOW, Written

CREATED = "2020-01-01T00:00:00Z"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def turn(query: str, second: int = 0) -> dict[str, Any]:
    return {"timestamp": f"2025-01-01T00:00:{second:02d}Z", "user_input": {"query": query},
            "agent_response": {"orchestrator_response": f"answer to {query}"}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.init(tmp_path / "sessions")
    store.customer(CUSTOMER).new_session(created=CREATED)
    git(store.root / CUSTOMER, "config", "core.logAllRefUpdates", "true")  # bare: off
    return store


def spool_dir(store: Store) -> Path:
    return store.root / ".gitstore" / "spool" / CUSTOMER / "v1"


def spooled(store: Store, state: str = "turn") -> list[str]:
    d = spool_dir(store)
    return sorted(p.name for p in d.glob(f"*.{state}")) if d.exists() else []


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextmanager
def lock_held(store: Store) -> Iterator[None]:
    """This thread holds the customer's writer lock (other threads and processes wait)."""
    with Store(store.root).customer(CUSTOMER).locked():
        yield


def waiter(store: Store, result: list[Any], data: dict[str, Any], **options: Any
           ) -> threading.Thread:
    """A thread appending ``data`` through its own handle; its result or error goes
    to ``result``. Returns once the turn is spooled (the caller holds the lock)."""
    def run() -> None:
        try:
            result.append(Store(store.root, **options).customer(CUSTOMER).session()
                          .append_turn(data))
        except Exception as exc:
            result.append(exc)

    t = threading.Thread(target=run)
    t.start()
    wait_for(lambda: len(spooled(store)) == 1, "the spooled turn")
    return t


def started_alone(store: Store, result: list[Any], data: dict[str, Any]) -> threading.Thread:
    """A thread appending ``data`` that is not to spool it; returns once it has had
    the time to (0.3 s; the caller holds the lock)."""
    t = threading.Thread(target=lambda: result.append(
        Store(store.root).customer(CUSTOMER).session().append_turn(data)))
    t.start()
    time.sleep(0.3)
    return t


def claim_the_spooled_turn(store: Store) -> None:
    """What a leader does first (and a dead one leaves behind): the claim."""
    name = spooled(store)[0]
    os.replace(spool_dir(store) / name, spool_dir(store) / name.replace(".turn", ".claimed"))


def reflog(repo: Path) -> list[str]:
    return git(repo, "reflog", "show", "--format=%gs", "refs/heads/v1").splitlines()


def trailer(repo: Path, rev: str, key: str) -> str:
    return git(repo, "log", "-1", f"--format=%(trailers:key={key},valueonly)", rev).strip()


def pack_of(repo: Path) -> dict[str, str]:
    """Object id -> the pack holding it (git's own index reader)."""
    out: dict[str, str] = {}
    for idx in (repo / "objects" / "pack").glob("*.idx"):
        with idx.open("rb") as fh:
            listing = subprocess.run(["git", "show-index"], stdin=fh, capture_output=True,
                                     check=True).stdout.decode()
        for line in listing.splitlines():
            out[line.split()[1]] = idx.name
    return out


def request(store: Store, data: dict[str, Any], *, key: str | None = None,
            profile: str | None = "same", author: str = "Spooled <spooled@example.invalid>"
            ) -> groupcommit.Request:
    """A request as a waiting writer of ``store`` would spool it."""
    by = Authorship(author=Identity.parse(author), idempotency_key=key)
    if key is None:  # as Session.append_turn: the turn's content is its key
        by = by._replace(idempotency_key=turn_key(data), idempotency_window=RETRY_WINDOW)
    return groupcommit.Request(data, None, None, by, author, time.time_ns(), 60.0,
                               store.profile if profile == "same" else profile)


def spool(store: Store, req: groupcommit.Request) -> tuple[groupcommit.Spool, str]:
    customer = Store(store.root).customer(CUSTOMER)
    sp = groupcommit.Spool(customer, customer.session().scenario)
    return sp, sp.put(req)


# =========================================================================== a group forms

def test_waiting_writers_are_written_as_one_group_of_commits(store: Store) -> None:
    repo = store.root / CUSTOMER
    before = git(repo, "rev-parse", "v1").strip()
    results: dict[int, Any] = {}

    def writer(i: int) -> None:
        s = Store(store.root, agent=f"Writer {i} <w{i}@example.invalid>")
        try:
            results[i] = s.customer(CUSTOMER).session().append_turn(turn(f"q{i}", i))
        except Exception as exc:  # reported below
            results[i] = exc

    with lock_held(store):
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(5)]
        for n, t in enumerate(threads, start=1):  # one after another: asked in this order
            t.start()
            wait_for(lambda: len(spooled(store)) == n, f"{n} spooled turns")  # noqa: B023
    for t in threads:
        t.join(timeout=60)
    assert all(not isinstance(r, Exception) for r in results.values()), results

    # five commits, one per turn, on one line of history, moved by one ref update
    commits = git(repo, "rev-list", "--reverse", f"{before}..v1").split()
    assert len(commits) == 5
    assert sorted(r.commit for r in results.values()) == sorted(commits)
    assert reflog(repo)[0].endswith("(a group of 5 turns)")
    assert len(reflog(repo)) == 1, "the branch moved once"
    packs = pack_of(repo)
    assert len({packs[c] for c in commits}) == 1, "the group was written as one pack"
    # each commit is one turn, with its writer as author, in timestamp order
    for n, commit in enumerate(commits, start=1):
        assert trailer(repo, commit, "Turn") == str(n)
        assert git(repo, "log", "-1", "--format=%an", commit).strip() == f"Writer {n - 1}"
        conv = json.loads(git_conversation(repo, commit))
        assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == \
            [f"q{i}" for i in range(n)]
        assert conv["conversation_summary"]["total_turns"] == n
    assert {r.turn for r in results.values()} == {1, 2, 3, 4, 5}
    assert not any(r.replayed for r in results.values())
    assert os.listdir(spool_dir(store)) == [], "every outcome was collected"
    # an audit record per commit, naming the writer that asked for it
    actors = {r["commit"]: r["actor"] for r in Store(store.root).customer(CUSTOMER)
              .audit_log.records() if r.get("op") == "write:turn"}
    assert {c: actors[c] for c in commits} == {
        c: f"Writer {n} <w{n}@example.invalid>" for n, c in enumerate(commits)}
    # the catalog holds every turn, plain git and verify agree
    found = {hit["turn_id"] for q in ("q0", "q1", "q2", "q3", "q4")
             for hit in Store(store.root).search(q)}
    assert found >= {1, 2, 3, 4, 5}
    assert subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True,
                          check=False).returncode == 0
    proc = subprocess.run([sys.executable, "-m", "gitstore", "--root", str(store.root),
                           "verify"], capture_output=True, env=_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make_spool_busy(store: Store) -> None:
    """Another writer used the spool just now (a request put and taken back)."""
    sp, ticket = spool(store, request(store, turn("taken back")))
    assert sp.withdraw(ticket)


def record_lingering(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Each call of ``Spool.linger`` from now on appends its profile to the list."""
    calls: list[str | None] = []
    real = groupcommit.Spool.linger

    def linger(self: groupcommit.Spool, limit: int, profile: str | None,
               passed: set[str]) -> Any:
        calls.append(profile)
        return real(self, limit, profile, passed)

    monkeypatch.setattr(groupcommit.Spool, "linger", linger)
    return calls


def test_a_leader_finding_the_spool_busy_waits_for_the_turns_on_their_way(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = store.root / CUSTOMER
    monkeypatch.setattr(groupcommit, "LINGER", 60.0)  # it lingers until a turn comes
    monkeypatch.setattr(groupcommit, "BUSY", 60.0)  # however slow this machine is
    lingering = record_lingering(monkeypatch)
    make_spool_busy(store)
    results: list[Any] = []
    leader = threading.Thread(target=lambda: results.append(
        Store(store.root).customer(CUSTOMER).session().append_turn(turn("first", 1))))
    leader.start()
    wait_for(lambda: bool(lingering), "the leader lingering")
    # a second writer finds the lock held and spools: the lingering leader takes it
    second = Store(store.root).customer(CUSTOMER).session().append_turn(turn("second", 2))
    leader.join(timeout=60)
    assert not leader.is_alive()
    first = results[0]
    assert [first.turn, second.turn] == [1, 2]
    assert reflog(repo) == [reflog(repo)[0]] and reflog(repo)[0].endswith(
        "(a group of 2 turns)"), "both turns moved the branch once"
    assert git(repo, "rev-parse", "v1").strip() == second.commit
    assert git(repo, "rev-parse", "v1^").strip() == first.commit


def test_a_lone_writer_or_one_that_waited_never_lingers(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(groupcommit, "BUSY", 60.0)  # however slow this machine is
    lingered = record_lingering(monkeypatch)
    session = Store(store.root).customer(CUSTOMER).session()
    for i in range(3):  # no spool at all yet
        session.append_turn(turn(f"alone {i}", i))
    make_spool_busy(store)
    for moment in (time.time() - 10 * groupcommit.BUSY,  # used, but not just now
                   time.time() + 3600):  # a clock set back: not "just now" either
        os.utime(spool_dir(store), (moment, moment))
        session.append_turn(turn(f"alone at {moment}", 5))
    assert lingered == []
    # a writer that waited for the lock and then leads does not linger either
    result: list[Any] = []
    with lock_held(store):
        t = waiter(store, result, turn("waited", 6))
        sp = groupcommit.Spool(Store(store.root).customer(CUSTOMER), session.scenario)
        assert sp.busy(), "the waiter's request made the spool busy"
    t.join(timeout=60)
    assert result and result[0].turn == 6 and lingered == []
    # while the spool is busy, a fresh leader does linger (LINGER, then writes alone)
    make_spool_busy(store)
    session.append_turn(turn("after others", 7))
    assert len(lingered) == 1


def test_a_lingering_leader_reads_another_configurations_request_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(groupcommit, "LINGER", 0.05)
    monkeypatch.setattr(groupcommit, "BUSY", 60.0)
    reads: list[Any] = []
    real = groupcommit.Request.from_json

    def from_json(data: Any) -> groupcommit.Request:
        reads.append(data)
        return real(data)

    monkeypatch.setattr(groupcommit.Request, "from_json", from_json)
    lingering = record_lingering(monkeypatch)
    for n in range(3):  # three waiting writers of another configuration
        spool(store, request(store, turn(f"theirs {n}", n), profile="another"))
    mine = Store(store.root).customer(CUSTOMER).session().append_turn(turn("mine", 9))
    assert git(store.root / CUSTOMER, "rev-parse", "v1").strip() == mine.commit
    assert len(lingering) == 1, "the spool was in use: the leader lingered"
    assert len(reads) == 3, f"read {reads}: each request once, not at every look"
    assert len(spooled(store)) == 3, "their writers write them"


def test_a_group_reads_another_configurations_request_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Any] = []
    real = groupcommit.Request.from_json

    def from_json(data: Any) -> groupcommit.Request:
        reads.append(data)
        return real(data)

    for n in range(3):  # three waiting writers of another configuration
        spool(store, request(store, turn(f"theirs {n}", n), profile="another"))
    spool(store, request(store, turn("spooled with mine", 4)))
    monkeypatch.setattr(groupcommit.Request, "from_json", from_json)
    mine = Store(store.root).customer(CUSTOMER).session().append_turn(turn("mine", 9))
    assert reflog(store.root / CUSTOMER)[0].endswith("(a group of 2 turns)")
    assert git(store.root / CUSTOMER, "rev-parse", "v1").strip() == mine.commit
    assert len(reads) == 4, "each request read once, also when the group looks for more"
    assert len(spooled(store)) == 3, "their writers write them"


def test_cli_processes_waiting_for_the_lock_are_written_together(store: Store,
                                                                  tmp_path: Path) -> None:
    repo = store.root / CUSTOMER
    files = []
    for i in range(4):
        f = tmp_path / f"turn{i}.json"
        f.write_text(json.dumps(turn(f"cli{i}", i)), encoding="utf-8")
        files.append(f)
    with lock_held(store):
        procs = [subprocess.Popen([sys.executable, "-m", "gitstore", "--root", str(store.root),
                                   "turn", CUSTOMER, str(f), "-o", "json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
                 for f in files]
        wait_for(lambda: len(spooled(store)) == 4, "four spooled turns")
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in outs]
    written = [json.loads(o) for o, _ in outs]
    assert reflog(repo)[0].endswith("(a group of 4 turns)")
    conv = json.loads(git_conversation(repo, "v1"))  # placed by timestamp, whoever was first
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == \
        [f"cli{i}" for i in range(4)]
    assert {w["commit"] for w in written} == set(git(repo, "rev-list", "-4", "v1").split())


# =========================================================================== failures stay apart

def test_a_turn_that_fails_its_checks_is_refused_to_its_own_writer_only(store: Store) -> None:
    repo = store.root / CUSTOMER
    results: dict[str, Any] = {}
    bad = {**turn("bad", 2), "turn_id": 7}  # not the next turn id: the pipeline refuses it

    def writer(name: str, data: dict[str, Any]) -> None:
        try:
            results[name] = Store(store.root).customer(CUSTOMER).session().append_turn(data)
        except Exception as exc:
            results[name] = exc

    with lock_held(store):
        threads = [threading.Thread(target=writer, args=("good", turn("good", 1))),
                   threading.Thread(target=writer, args=("bad", bad))]
        for t in threads:
            t.start()
        wait_for(lambda: len(spooled(store)) == 2, "two spooled turns")
    for t in threads:
        t.join(timeout=60)
    assert isinstance(results["bad"], InvalidDocumentError), results
    assert results["bad"].exit_code == 4
    assert results["good"].turn == 1
    assert git(repo, "rev-parse", "v1").strip() == results["good"].commit
    assert os.listdir(spool_dir(store)) == []


def test_the_leaders_own_failure_does_not_lose_the_turns_it_claimed(store: Store) -> None:
    repo = store.root / CUSTOMER
    sp, ticket = spool(store, request(store, turn("waiting", 1)))
    with pytest.raises(InvalidDocumentError):
        Store(store.root).customer(CUSTOMER).session().append_turn({**turn("bad", 2),
                                                                    "turn_id": 9})
    done = sp.outcome(ticket)
    assert done is not None and done.turn == 1 and not done.replayed
    assert git(repo, "rev-parse", "v1").strip() == done.commit
    assert trailer(repo, done.commit, "Turn") == "1"
    assert os.listdir(spool_dir(store)) == []


def test_one_key_twice_in_a_group_is_one_commit(store: Store) -> None:
    repo = store.root / CUSTOMER
    sp, first = spool(store, request(store, turn("once", 1), key="k-1"))
    _, second = spool(store, request(store, turn("once", 1), key="k-1"))
    mine = Store(store.root).customer(CUSTOMER).session().append_turn(turn("leader", 2))
    a, b = sp.outcome(first), sp.outcome(second)
    assert a is not None and b is not None
    assert a.commit == b.commit and b.replayed and not a.replayed
    conv = json.loads(git_conversation(repo, "v1"))
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == ["once", "leader"]
    assert mine.turn == 2


def test_one_key_with_other_content_in_a_group_is_refused_to_its_writer(store: Store
                                                                        ) -> None:
    """A key names one turn in a group too: the same key sent with another turn
    (writers racing on one key) is refused to that writer, never taken for a replay
    of the first and dropped; a restamped copy of the first is its replay."""
    repo = store.root / CUSTOMER
    sp, first = spool(store, request(store, turn("alpha", 1), key="k-2"))
    _, other = spool(store, request(store, turn("beta", 1), key="k-2"))
    _, again = spool(store, request(store, {**turn("alpha", 1),
                                            "timestamp": "2025-01-01T00:00:09Z"}, key="k-2"))
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("leader", 2))
    a, b, c = sp.outcome(first), sp.outcome(other), sp.outcome(again)
    assert isinstance(a, Written) and not a.replayed
    assert isinstance(c, Written) and c.replayed and c.commit == a.commit
    assert b is None  # not written, not "replayed": left to its writer, who is refused
    with pytest.raises(UsageError, match="the turn with other content that made commit "
                                         f"{a.commit[:12]}"):
        Store(store.root).customer(CUSTOMER).session().append_turn(turn("beta", 1),
                                                                   idempotency_key="k-2")
    conv = json.loads(git_conversation(repo, "v1"))
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == ["alpha", "leader"]


# =========================================================================== crashes and timeouts

def test_a_turn_claimed_by_a_leader_that_died_is_written_once(store: Store) -> None:
    repo = store.root / CUSTOMER
    session = Store(store.root).customer(CUSTOMER).session()
    first = session.append_turn(turn("committed", 1), idempotency_key="k-dead")
    # the dead leader had claimed it, committed it, and died before leaving an outcome
    sp, ticket = spool(store, request(store, turn("committed", 1), key="k-dead"))
    os.replace(spool_dir(store) / f"{ticket}.turn", spool_dir(store) / f"{ticket}.claimed")
    # and another it had claimed but not written
    _, lost = spool(store, request(store, turn("claimed", 2)))
    os.replace(spool_dir(store) / f"{lost}.turn", spool_dir(store) / f"{lost}.claimed")
    session.append_turn(turn("next", 3))
    again, written = sp.outcome(ticket), sp.outcome(lost)
    assert again is not None and again.replayed and again.commit == first.commit
    assert written is not None and not written.replayed
    conv = json.loads(git_conversation(repo, "v1"))
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == \
        ["committed", "claimed", "next"]


def test_a_turn_whose_writer_died_is_written_and_its_outcome_expires(store: Store) -> None:
    repo = store.root / CUSTOMER
    _, ticket = spool(store, request(store, turn("orphan", 1)))
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("next", 2))
    conv = json.loads(git_conversation(repo, "v1"))
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == ["orphan", "next"]
    done = spool_dir(store) / f"{ticket}.done"
    assert done.exists()
    old = time.time() - groupcommit.STALE - 60
    os.utime(done, (old, old))
    spool(store, request(store, turn("later", 3)))  # a leader cleans up when it claims
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("last", 4))
    assert not done.exists()


def test_a_writer_that_times_out_withdraws_its_turn(store: Store) -> None:
    repo = store.root / CUSTOMER
    before = git(repo, "rev-parse", "v1").strip()
    with lock_held(store):
        session = Store(store.root, lock_timeout=0.3).customer(CUSTOMER).session()
        with pytest.raises(ConflictError) as info:
            session.append_turn(turn("late", 1))
        assert info.value.exit_code == 6
    assert os.listdir(spool_dir(store)) == []
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("after", 2))
    conv = json.loads(git_conversation(repo, "v1"))
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == ["after"]
    assert git(repo, "rev-parse", "v1~1").strip() == before


def test_a_writer_whose_turn_was_claimed_waits_for_the_outcome(store: Store) -> None:
    """The lock timeout passes while a leader holds the claimed turn: the writer
    waits on, and (this leader leaving no outcome) writes the turn itself."""
    repo = store.root / CUSTOMER
    result: list[Any] = []
    with lock_held(store):
        t = waiter(store, result, turn("claimed", 1), lock_timeout=0.4)
        claim_the_spooled_turn(store)
        time.sleep(0.6)  # past the writer's first timeout
    t.join(timeout=60)
    assert len(result) == 1 and not isinstance(result[0], Exception), result
    assert git(repo, "rev-parse", "v1").strip() == result[0].commit


def test_a_claimed_turn_still_unwritten_after_two_timeouts_says_so(store: Store) -> None:
    result: list[Any] = []
    with lock_held(store):
        t = waiter(store, result, turn("stuck", 1), lock_timeout=0.3)
        claim_the_spooled_turn(store)
        t.join(timeout=60)
    assert len(result) == 1 and isinstance(result[0], ConflictError), result
    assert "had taken this turn" in str(result[0]) and result[0].exit_code == 6


# =========================================================================== what is never grouped

def test_a_request_of_another_configuration_is_left_to_its_writer(store: Store) -> None:
    sp, ticket = spool(store, request(store, turn("other", 1), profile="0123456789abcdef"))
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("mine", 2))
    assert spooled(store) == [f"{ticket}.turn"]
    assert sp.withdraw(ticket)


def test_hooks_passed_in_keep_a_writer_to_itself(store: Store) -> None:
    seen: list[int] = []

    def hook(proposal: Any) -> list[Any]:
        seen.append(1)
        return []

    assert Store(store.root, hooks=[hook]).profile is None
    _, ticket = spool(store, request(store, turn("spooled", 1)))
    Store(store.root, hooks=[hook]).customer(CUSTOMER).session().append_turn(turn("mine", 2))
    assert seen == [1]
    assert spooled(store) == [f"{ticket}.turn"]


def test_a_damaged_request_file_is_removed(store: Store) -> None:
    d = spool_dir(store)
    d.mkdir(parents=True)
    (d / "00000000000000000001-1-deadbeef.turn").write_bytes(b"{not json")
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("mine", 1))
    assert os.listdir(d) == []


def test_an_encrypted_customers_turns_are_never_spooled(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "enc")
    key = tmp_path / "master.key"
    key.write_bytes(os.urandom(32))
    (store.root / ".gitstore" / "config.json").write_text(json.dumps(
        {"encrypt": True, "master_key_file": str(key)}), encoding="utf-8")
    store = Store(store.root)
    store.customer(CUSTOMER).new_session(created=CREATED)
    req = request(store, turn("x", 1))
    assert not groupcommit.batchable(store.customer(CUSTOMER), req)
    result: list[Any] = []
    with lock_held(store):
        t = started_alone(store, result, turn("enc", 1))
        assert spooled(store) == []
    t.join(timeout=60)
    assert result and result[0].turn == 1


def test_spooled_turns_are_private_and_verify_says_when_they_are_not(store: Store) -> None:
    saved = os.umask(0)  # the loosest umask: what is private was made so on purpose
    try:
        sp, ticket = spool(store, request(store, turn("private", 1)))
    finally:
        os.umask(saved)
    base = store.root / ".gitstore" / "spool"
    for path, want in ((base, 0o700), (base / CUSTOMER, 0o700), (spool_dir(store), 0o700),
                       (spool_dir(store) / f"{ticket}.turn", 0o600)):
        assert path.stat().st_mode & 0o777 == want, path
    assert sp.withdraw(ticket)
    base.chmod(0o755)
    proc = subprocess.run([sys.executable, "-m", "gitstore", "--root", str(store.root),
                           "verify"], capture_output=True, env=_env(), check=False)
    assert proc.returncode == 7 and b"turns waiting to be written" in proc.stdout + proc.stderr
    base.chmod(0o700)


# =========================================================================== review findings

def test_turns_a_dead_leader_wrote_in_a_big_group_are_not_written_again(store: Store) -> None:
    """More turns than the retry scan reaches were committed by a leader that died
    before leaving outcomes: their claims, taken again, find them deeper."""
    repo = store.root / CUSTOMER
    session = Store(store.root).customer(CUSTOMER).session()
    count = RETRY_SCAN + 4
    for i in range(count):
        session.append_turn(turn(f"g{i}", i % 60))
    sp = None
    for i in range(count):  # the dead leader's claims
        sp, ticket = spool(store, request(store, turn(f"g{i}", i % 60)))
        os.replace(spool_dir(store) / f"{ticket}.turn", spool_dir(store) / f"{ticket}.claimed")
    for n in range(3):  # each leader takes up to BATCH - 1 of them
        session.append_turn(turn(f"next{n}", 59))
    assert spooled(store, "claimed") == [] and sp is not None
    conv = json.loads(git_conversation(repo, "v1"))
    queries = [t["user_input"]["query"] for t in conv["conversation_turns"]]
    assert queries == [f"g{i}" for i in range(count)] + ["next0", "next1", "next2"]


def test_a_request_past_its_writers_wait_is_dropped_unwritten(store: Store) -> None:
    repo = store.root / CUSTOMER
    old = request(store, turn("given up", 1))._replace(stamp=time.time_ns() - 120 * 10**9)
    spool(store, old)
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("mine", 2))
    conv = json.loads(git_conversation(repo, "v1"))
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == ["mine"]
    assert os.listdir(spool_dir(store)) == []


@pytest.mark.parametrize("kind", ["bad author", "not json", "directory", "fifo", "symlink"])
def test_a_file_in_the_spool_that_is_no_request_blocks_nothing(store: Store, kind: str) -> None:
    repo = store.root / CUSTOMER
    _, good = spool(store, request(store, turn("good", 1)))
    bad = spool_dir(store) / f"{time.time_ns():020d}-1-0badf00d.turn"
    if kind == "bad author":
        data = request(store, turn("bad", 2)).to_json()
        bad.write_text(json.dumps({**data, "author": "Bot <>"}), encoding="utf-8")
    elif kind == "not json":
        bad.write_bytes(b"{not json")
    elif kind == "directory":
        bad.mkdir()
    elif kind == "fifo":
        os.mkfifo(bad)
    else:
        bad.symlink_to(spool_dir(store) / f"{good}.turn")
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(
        Store(store.root).customer(CUSTOMER).session().append_turn(turn("mine", 3))))
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), "the leader blocked on the spool"
    assert result and result[0].turn == 2
    conv = json.loads(git_conversation(repo, "v1"))
    assert [t["user_input"]["query"] for t in conv["conversation_turns"]] == ["good", "mine"]
    assert not bad.exists() and not bad.is_symlink()


def test_a_replay_is_audited_as_asked_by_the_writer_that_sent_it_again(store: Store) -> None:
    first = Store(store.root).customer(CUSTOMER).session().append_turn(turn("once", 1),
                                                                       idempotency_key="k-9")
    alice = "Alice <alice@example.invalid>"
    sp, a = spool(store, request(store, turn("once", 1), key="k-9", author=alice))
    _, b = spool(store, request(store, turn("twice", 2), key="k-10", author=alice))
    _, c = spool(store, request(store, turn("twice", 2), key="k-10", author=alice))
    Store(store.root, agent="Bob <bob@example.invalid>").customer(CUSTOMER).session() \
        .append_turn(turn("bob", 3))
    outcomes = [sp.outcome(t) for t in (a, b, c)]
    assert outcomes[0] is not None and outcomes[0].commit == first.commit
    assert outcomes[1] is not None and outcomes[2] is not None
    assert outcomes[2].replayed and outcomes[2].commit == outcomes[1].commit
    replays = [r for r in Store(store.root).customer(CUSTOMER).audit_log.records()
               if r.get("op") == "write:replayed"]
    assert sorted((r["commit"], r["actor"]) for r in replays) == sorted(
        [(first.commit, alice), (outcomes[1].commit, alice)])


def test_the_profile_follows_the_configuration_and_a_clock_keeps_writes_apart(
        store: Store) -> None:
    handle = Store(store.root)
    before = handle.profile
    assert before is not None and before == Store(store.root, agent="Other <o@x.invalid>",
                                                  lock_timeout=5).profile
    handle.config = handle.config._replace(fsync=not handle.config.fsync)
    assert handle.profile not in (None, before)
    assert Store(store.root, clock=lambda: datetime.now(UTC)).profile is None


def test_a_sealed_tip_this_store_has_no_keys_for_is_refused_in_a_group_too(
        tmp_path: Path) -> None:
    import shutil
    key = tmp_path / "master.key"
    key.write_bytes(os.urandom(32))
    a = Store.init(tmp_path / "a")
    (a.root / ".gitstore" / "config.json").write_text(json.dumps(
        {"encrypt": True, "master_key_file": str(key)}), encoding="utf-8")
    a = Store(a.root)
    a.customer(CUSTOMER).new_session(created=CREATED)
    a.customer(CUSTOMER).session().append_turn(turn("secret", 1))
    b = Store.init(tmp_path / "b")  # a copy without the flag, the keys or a sealed HEAD
    shutil.copytree(a.root / CUSTOMER, b.root / CUSTOMER)
    git(b.root / CUSTOMER, "config", "--unset", "gitstore.encrypted")
    git(b.root / CUSTOMER, "symbolic-ref", "HEAD", "refs/heads/v7")
    before = git(b.root / CUSTOMER, "rev-parse", "v1").strip()
    spool_b = groupcommit.Spool(b.customer(CUSTOMER), b.customer(CUSTOMER).session().scenario)
    ticket = spool_b.put(request(b, turn("spooled plain", 2)))
    from gitstore.errors import KeyUnavailableError
    with pytest.raises(KeyUnavailableError):
        Store(b.root).customer(CUSTOMER).session().append_turn(turn("leader plain", 3))
    assert spool_b.outcome(ticket) is None  # its writer writes it, and is refused
    assert git(b.root / CUSTOMER, "rev-parse", "v1").strip() == before


def test_a_waiter_returns_as_soon_as_its_turn_is_written_without_the_lock(store: Store
                                                                          ) -> None:
    result: list[Any] = []
    with lock_held(store):
        t = threading.Thread(target=lambda: result.append(
            Store(store.root).customer(CUSTOMER).session().append_turn(turn("quick", 1))))
        t.start()
        wait_for(lambda: len(spooled(store)) == 1, "the spooled turn")
        ticket = spooled(store)[0].removesuffix(".turn")
        # a leader (this thread, holding the lock) claims and writes it
        customer = Store(store.root).customer(CUSTOMER)
        sp = groupcommit.Spool(customer, customer.session().scenario)
        (claimed,) = sp.claim(15, Store(store.root).profile)
        assert claimed.ticket == ticket
        tip = git(store.root / CUSTOMER, "rev-parse", "v1").strip()
        from gitstore.core.versions import Version
        sp.finish(ticket, groupcommit.Written(tip, Version(1, 0, 0), "turn", "sha256:x"))
        t.join(timeout=10)
        assert not t.is_alive(), "the writer waited for the lock"
    assert result and result[0].commit == tip


def test_staged_copies_never_take_other_writers_turns() -> None:
    from gitstore.ops.importing import StagingCustomer
    from gitstore.ops.rebase import StagedCustomer
    from gitstore.store.context import CustomerContext
    assert CustomerContext.shared
    assert not StagingCustomer.shared and not StagedCustomer.shared


def test_a_waiter_with_no_lock_timeout_waits_and_is_written(store: Store) -> None:
    result: list[Any] = []
    with lock_held(store):
        t = threading.Thread(target=lambda: result.append(
            Store(store.root, lock_timeout=float("inf")).customer(CUSTOMER).session()
            .append_turn(turn("patient", 1))))
        t.start()
        wait_for(lambda: len(spooled(store)) == 1, "the spooled turn")
    t.join(timeout=30)
    assert result and result[0].turn == 1
    bad = store.root / ".gitstore" / "config.json"
    bad.write_text('{"lock_timeout": NaN}', encoding="utf-8")
    with pytest.raises(UsageError):
        Store(store.root)


def test_a_waiter_leading_alone_finds_its_turn_a_dead_leader_wrote_deep(store: Store) -> None:
    """Its leader wrote it and died; more than the retry scan's commits came after."""
    repo = store.root / CUSTOMER
    the_turn = turn("the turn", 1)
    result: list[Any] = []
    with lock_held(store):
        t = threading.Thread(target=lambda: result.append(
            Store(store.root).customer(CUSTOMER).session().append_turn(the_turn)))
        t.start()
        wait_for(lambda: len(spooled(store)) == 1, "the spooled turn")
        name = spooled(store)[0]
        os.replace(spool_dir(store) / name, spool_dir(store) / name.replace(".turn", ".claimed"))
        handle = Store(store.root)
        session = handle.customer(CUSTOMER).session()
        for data in [the_turn] + [turn(f"other {i}", 2) for i in range(RETRY_SCAN)]:
            session.writer.write_held(session.scenario, session._turn_plan(
                request(handle, data)), request(handle, data).by)
    t.join(timeout=30)
    assert result and result[0].replayed
    keys = git(repo, "log", "--format=%(trailers:key=Idempotency-Key,valueonly)", "v1").split()
    assert keys.count(turn_key(the_turn)) == 1


@pytest.mark.parametrize("field,value", [("stamp", 10 ** 400), ("stamp", -1),
                                         ("wait", -1), ("window", "x")])
def test_a_request_with_values_out_of_range_is_removed(store: Store, field: str,
                                                       value: Any) -> None:
    d = spool_dir(store)
    d.mkdir(parents=True)
    data = {**request(store, turn("odd", 1)).to_json(), field: value}
    (d / f"{time.time_ns():020d}-1-0ddba11.turn").write_text(json.dumps(data),
                                                             encoding="utf-8")
    Store(store.root).customer(CUSTOMER).session().append_turn(turn("mine", 2))
    assert os.listdir(d) == []


def test_a_spool_that_cannot_be_written_leaves_the_writer_waiting_alone(store: Store) -> None:
    (store.root / ".gitstore" / "spool").write_bytes(b"")  # a file where the directory goes
    result: list[Any] = []
    with lock_held(store):
        t = started_alone(store, result, turn("alone", 1))
        assert not result, "the writer did not wait for the lock"
    t.join(timeout=30)
    assert result and result[0].turn == 1
    assert git(store.root / CUSTOMER, "rev-parse", "v1").strip() == result[0].commit
