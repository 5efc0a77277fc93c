"""Storage maintenance: sizes against git gc --aggressive, bounds, crash safety,
readers during maintenance, and that nothing unpacked is ever removed."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, EXAMPLES, Clock, git, load_example

from gitstore import Store
from gitstore.git import housekeeping
from gitstore.git.housekeeping import (
    MAX_PACKS,
    RUN_OBJECTS,
    WRITES_PER_RUN,
    packs_to_roll_up,
    repo_bytes,
)
from gitstore.git.repo import Repo
from gitstore.ops.maintenance import maintain
from gitstore.store import upkeep

WORDS = ("collector", "gateway", "lambda", "cloudwatch", "role", "permission", "metric",
         "alarm", "trace", "deploy", "stage", "api", "log", "group", "subscription", "filter",
         "retention", "iam", "policy")


def _turn(i: int, size: int = 2000) -> dict[str, Any]:
    rng = random.Random(i)
    text = " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(size // 6))[:size]
    return {"timestamp": f"2025-01-15T{10 + i // 3600:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
            "user_input": {"query": f"question {i}: {text[:200]}"},
            "agent_response": {"orchestrator_response": text}}


def _grow(store: Store, turns: int, customer: str = CUSTOMER) -> Any:
    session = store.customer(customer).new_session(created="2025-01-15T10:00:00Z")
    for i in range(turns):
        session.append_turn(_turn(i))
    return session


def _loose_bytes(repo: Path) -> int:
    total = 0
    for fanout in (repo / "objects").glob("??"):
        total += sum(p.stat().st_size for p in fanout.iterdir())
    return total


def _refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def test_full_maintenance_is_within_1_5x_of_git_gc_aggressive(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=0)
    session = _grow(store, 120)
    repo = session.customer.path
    refs = _refs(repo)
    unpacked = repo_bytes(repo)  # one small pack of whole objects per write
    twin = tmp_path / "twin.git"
    shutil.copytree(repo, twin)
    git(twin, "gc", "--aggressive", "--prune=now", "-q")
    floor = repo_bytes(twin)

    report = maintain(session.customer, full=True)

    after = repo_bytes(repo)
    assert report.packs_removed > 0 and len(_packs(repo)) == 1 and _loose_bytes(repo) == 0
    assert after <= 1.5 * floor, (after, floor)
    assert unpacked > 8 * after  # the point of it: whole copies are many times the packed size
    assert _refs(repo) == refs
    git(repo, "fsck", "--strict", "--no-dangling")
    assert store.customer(CUSTOMER).read().document("conversation.json")[
        "conversation_summary"]["total_turns"] == 120


def test_automatic_maintenance_bounds_unpacked_data(tmp_path: Path) -> None:
    """Each write adds a small pack of whole objects; maintenance rolls them up
    (and whatever is loose) once enough bytes or writes have gathered."""
    bound = 256 * 1024
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=bound)
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:00:00Z")
    repo = session.customer.path
    ran = 0
    for i in range(80):
        before = _packs(repo)
        session.append_turn(_turn(i))
        assert store.wait_for_maintenance(60)  # it runs in the background
        packs = _packs(repo)
        ran += len(packs) < len(before)
        assert len(packs) <= WRITES_PER_RUN + MAX_PACKS, (i, len(packs))
        assert _loose_bytes(repo) == 0, i  # a gitstore write leaves no loose object
    assert ran >= 2  # maintenance really ran on its own, more than once
    git(repo, "fsck", "--strict", "--no-dangling")


def _packs(repo: Path) -> list[Path]:
    return sorted((repo / "objects" / "pack").glob("*.pack"))


def test_automatic_maintenance_runs_outside_the_writer_lock(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    """While an automatic run is packing, other writes to the same customer go
    on: the run holds the maintenance lock, not the writer lock."""
    from gitstore.git import housekeeping

    packing, release = threading.Event(), threading.Event()
    real = housekeeping.compact

    def slow_compact(*args: Any, **kwargs: Any) -> Any:
        packing.set()
        assert release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(housekeeping, "compact", slow_compact)
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=4096)
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:00:00Z")
    for i in range(3):
        session.append_turn(_turn(i))  # returns while the run waits in the background
    assert packing.wait(60)
    done = []
    writer = threading.Thread(target=lambda: done.append(session.append_turn(_turn(9))))
    writer.start()
    writer.join(30)
    assert done and done[0].turn == 4, "a write waited for maintenance"
    release.set()
    assert store.wait_for_maintenance(60)
    assert list((session.customer.path / "objects" / "pack").glob("*.pack"))
    assert "maintain" in [r["op"] for r in store.customer(CUSTOMER).audit_log.records()]
    git(session.customer.path, "fsck", "--strict")


def test_a_run_that_ends_due_again_follows_up(tmp_path: Path, monkeypatch: Any) -> None:
    """Writes made while a run packs make maintenance due again; the run goes on
    with an incremental one, so the store at rest holds none of their small
    packs and nothing is left due (before, they waited for the next write).
    (Here the whole pack already took their objects: it packs what the refs
    reach when it packs, so the follow-up finds nothing to do.)"""
    from gitstore.git import housekeeping

    packing, release = threading.Event(), threading.Event()
    real, real_clear = housekeeping.compact, housekeeping.clear_temp_files
    kinds: list[bool] = []

    def compact(*args: Any, **kwargs: Any) -> Any:
        kinds.append(kwargs["full"])
        return real(*args, **kwargs)

    def held_clear(path: Path) -> list[str]:  # inside compact: its count is taken
        packing.set()
        assert release.wait(60)
        return real_clear(path)

    monkeypatch.setattr(housekeeping, "compact", compact)
    monkeypatch.setattr(housekeeping, "clear_temp_files", held_clear)
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=4096)
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:00:00Z")
    path = session.customer.path
    for i in range(3):
        session.append_turn(_turn(i))
    assert packing.wait(60)
    for i in range(3, 9):  # while the run is held: each adds a pack, and maintenance is due
        session.append_turn(_turn(i))
    assert housekeeping.is_due(path, 4096)
    release.set()
    assert store.wait_for_maintenance(60)
    assert kinds[0] is True and kinds[1:] and not any(kinds[1:])  # whole, then incremental
    assert not housekeeping.is_due(path, 4096)
    assert len(_packs(path)) <= 2, _packs(path)
    ops = [r.get("detail") or "" for r in store.customer(CUSTOMER).audit_log.records()
           if r["op"] == "maintain"]
    assert len(ops) == 1 and ops[0].startswith("full"), ops  # an idle follow-up is quiet
    assert session.history(100)[-1]["turn_id"] == 9
    git(path, "fsck", "--strict")


_EXIT_DURING_A_RUN = """
import atexit, sys, threading
from gitstore import Store
from gitstore.git import housekeeping
packing, release, kinds = threading.Event(), threading.Event(), []
real, real_clear = housekeeping.compact, housekeeping.clear_temp_files
def compact(*a, **k):
    kinds.append(k["full"])
    return real(*a, **k)
def held_clear(path):
    packing.set()
    release.wait(60)
    return real_clear(path)
housekeeping.compact, housekeeping.clear_temp_files = compact, held_clear
store = Store.init(sys.argv[1], maintenance_bytes=4096)
s = store.customer("customer-exit").new_session(created="2025-01-15T10:00:00Z")
turn = lambda i: {"timestamp": f"2025-01-15T10:00:{i:02d}Z", "user_input": {"query": f"q{i}"},
                  "agent_response": {"orchestrator_response": "a" * 400}}
for i in range(3):
    s.append_turn(turn(i))
assert packing.wait(60)
for i in range(3, 9):
    s.append_turn(turn(i))
atexit.register(lambda: print(len(kinds), housekeeping.is_due(s.customer.path, 4096)))
threading.Timer(0.2, release.set).start()  # released once the main thread has ended
"""


def test_a_process_that_exits_waits_for_its_run_but_not_for_follow_ups(
        tmp_path: Path) -> None:
    """A one-shot command (the CLI) that started a run waits for it at exit, but
    a run ending due again does not follow up once the main thread has ended:
    the next write, in whatever process, starts the next run."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", _EXIT_DURING_A_RUN, str(tmp_path / "s")],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["1", "True"], out.stdout + out.stderr
    git(tmp_path / "s" / "customer-exit", "fsck", "--strict")


def test_a_run_beside_writers_leaves_their_fanout_directories(tmp_path: Path) -> None:
    """libgit2 creates objects/xx, then renames a new object into it: a run
    outside the writer lock must not remove an empty fan-out directory (that
    failed a concurrent append), a run under the lock tidies them."""
    from gitstore.git.housekeeping import compact
    from gitstore.git.repo import Repo

    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=0)
    session = _grow(store, 3)
    path = session.customer.path
    empty = path / "objects" / "ab"
    empty.mkdir(exist_ok=True)
    compact(Repo.open(path), path, full=False, refs=False)
    assert empty.is_dir()
    compact(Repo.open(path), path, full=False)
    assert not empty.exists()
    git(path, "fsck", "--strict")


def test_maintenance_never_removes_what_no_pack_holds(finalized: Any) -> None:
    repo = finalized.customer.path
    stray = git(repo, "hash-object", "-w", "--stdin", input=b"unreferenced data\n").strip()
    maintain(finalized.customer, full=True)
    assert git(repo, "cat-file", "-t", stray).strip() == "blob"  # kept: no pack holds it
    maintain(finalized.customer, prune=True)
    assert git(repo, "cat-file", "-e", stray, check=False) == ""
    assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", stray],
                          capture_output=True).returncode != 0
    git(repo, "fsck", "--strict", "--no-dangling")


def test_old_temp_files_are_cleared_and_fresh_ones_kept(finalized: Any) -> None:
    repo = finalized.customer.path
    (repo / "objects" / "ab").mkdir(exist_ok=True)
    old = repo / "objects" / "ab" / "tmp_object_git2_old"
    fresh = repo / "objects" / "ab" / "tmp_object_git2_new"
    old.write_bytes(b"half written")
    fresh.write_bytes(b"being written")
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    report = maintain(finalized.customer)
    assert "objects/ab/tmp_object_git2_old" in report.temp_removed
    assert not old.exists() and fresh.exists()


_MAINTAIN_LOOP = """
import sys
from gitstore import Store
from gitstore.ops.maintenance import maintain
from gitstore.store import upkeep
store = Store(sys.argv[1])
c = store.customer(sys.argv[2])
while True:
    maintain(c, full=True)
"""


def test_sigkill_during_maintenance_leaves_a_sound_repository(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=0)
    session = _grow(store, 40)
    repo = session.customer.path
    refs = _refs(repo)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for delay in (0.05, 0.12, 0.2, 0.3, 0.45, 0.6, 0.8, 1.1):
        proc = subprocess.Popen([sys.executable, "-c", _MAINTAIN_LOOP, str(store.root), CUSTOMER],
                                env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        git(repo, "fsck", "--strict", "--no-dangling")
        assert _refs(repo) == refs
        # the next writer is not blocked, and the data is all there
        assert len(store.customer(CUSTOMER).session().history()) == 40
    session.append_turn(_turn(40))
    maintain(session.customer, full=True)
    git(repo, "fsck", "--strict", "--no-dangling")


def test_readers_are_never_blocked_or_broken_by_maintenance(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=0)
    session = _grow(store, 30)
    errors: list[BaseException] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        reader_store = Store(store.root)
        try:
            while not stop.is_set():
                snap = reader_store.customer(CUSTOMER).read("v1")
                assert len(snap.document("conversation.json")["conversation_turns"]) >= 30
                reads += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(6):
            session.append_turn(_turn(30 + i))
            maintain(session.customer, full=i % 2 == 0)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert reads > 0


def test_cli_maintain_reports_and_verify_stays_clean(finalized: Any) -> None:
    root = finalized.customer.store.root
    cmd = [sys.executable, "-m", "gitstore", "--root", str(root)]
    proc = subprocess.run([*cmd, "maintain", "-o", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '"customer": "customer-xyz789"' in proc.stdout
    assert subprocess.run([*cmd, "verify"], capture_output=True).returncode == 0
    assert subprocess.run([*cmd, "maintain", "nobody"], capture_output=True).returncode == 3


@pytest.fixture(autouse=True)
def _examples_present() -> None:
    assert (EXAMPLES / "session" / "turns").is_dir()
    assert load_example("session", "conversation.json")


# -- which packs a run merges, and what it leaves counted ------------------------------

def _fake_packs(tmp_path: Path, counts: list[int]) -> list[Path]:
    """Pack indexes (version 2) that say they list ``counts`` objects: all that
    :func:`packs_to_roll_up` reads of them (the fan-out table's last entry)."""
    out = []
    for n, count in enumerate(counts):
        idx = tmp_path / f"pack-{n:040x}.idx"
        fanout = b"".join(min(count, k * count // 255).to_bytes(4, "big") for k in range(256))
        idx.write_bytes(b"\377tOc\0\0\0\2" + fanout)
        idx.with_suffix(".pack").write_bytes(b"PACK")
        out.append(idx)
    return out


@pytest.mark.parametrize(("counts", "loose", "rolled"), [
    # the writes since the last run are merged, the history left alone
    ([5000] + [7] * 30, 0, [7] * 30),
    # the history is merged again once as much was written after it
    ([300] + [7] * 30, 0, [300] + [7] * 30),
    # a geometric progression stays as it is; loose objects go into the run's pack
    ([1, 4, 16, 64, 256], 0, []),
    ([1, 4, 16, 64, 256], 10, [1, 4, 16]),
    # a run stops at the smallest packs within its budget (at least two)
    ([500] * 20, 0, [500] * 8),
    ([9000, 9000, 9000], 0, [9000, 9000]),
    # an empty pack goes first
    ([0, 7, 7], 0, [0, 7, 7]),
    # never more than MAX_PACKS left, even when the run's budget is spent
    ([4096] * (MAX_PACKS + 4), 0, [4096] * 5),
])
def test_packs_to_roll_up_is_geometric_by_objects(tmp_path: Path, counts: list[int], loose: int,
                                                  rolled: list[int]) -> None:
    assert RUN_OBJECTS == 4096
    indexes = _fake_packs(tmp_path, counts)
    got = packs_to_roll_up(indexes, loose)
    assert sorted(counts[indexes.index(i)] for i in got) == sorted(rolled)


def test_a_pack_whose_index_cannot_be_read_is_left_alone(tmp_path: Path) -> None:
    indexes = _fake_packs(tmp_path, [7, 7, 7])
    indexes[0].write_bytes(b"not an index")
    assert sorted(packs_to_roll_up(indexes, 0)) == sorted(indexes[1:])


def test_more_than_max_packs_left_merges_the_smallest(tmp_path: Path) -> None:
    progression = [3 ** k for k in range(MAX_PACKS + 1)]  # each 2x what is below it
    indexes = _fake_packs(tmp_path, progression)
    assert packs_to_roll_up(indexes, 0) == indexes[:2]  # MAX_PACKS left, the new one too
    assert packs_to_roll_up(indexes[:MAX_PACKS - 1], 0) == []


def test_writes_made_during_a_run_stay_counted(tmp_path: Path, monkeypatch: Any) -> None:
    """A run takes off the counter what it found there when it began; writes that
    land while it packs are left for the next run, so a stream of writes during
    a long run makes the next one due at once."""
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=0)
    session = _grow(store, 3)
    path = session.customer.path
    for _ in range(5):
        assert not housekeeping.count_write(path, 100, 1 << 30)
    assert (path / housekeeping.STATE_FILE).read_text().split() == ["500", "5"]
    real = Repo.write_pack

    def writers_meanwhile(self: Any, oids: Any) -> Any:
        for _ in range(WRITES_PER_RUN + 1):
            housekeeping.count_write(path, 10, 1 << 30)
        return real(self, oids)

    monkeypatch.setattr(Repo, "write_pack", writers_meanwhile)
    housekeeping.compact(Repo.open(path), path, full=True, refs=False)
    left = (path / housekeeping.STATE_FILE).read_text().split()
    assert left == [str(10 * (WRITES_PER_RUN + 1)), str(WRITES_PER_RUN + 1)]
    assert housekeeping.count_write(path, 10, 1 << 30)  # due again: the next write starts it


def test_a_run_skips_packing_refs_rather_than_wait_for_busy_writers(tmp_path: Path) -> None:
    """The run packs objects outside the writer lock, then waits only briefly for
    it to pack refs: a writer holding it does not hold the run up."""
    store = Store.init(tmp_path / "s", clock=Clock(), maintenance_bytes=0)
    session = _grow(store, 3)
    customer = session.customer
    with customer.locked():
        started = time.monotonic()
        thread = upkeep.start(customer)
        assert thread is not None
        thread.join(60)
        assert not thread.is_alive()
        assert time.monotonic() - started < 30
    details = [r.get("detail") or "" for r in store.customer(CUSTOMER).audit_log.records()
               if r["op"] == "maintain"]
    assert details and "refs left loose" in details[-1]
    assert len(_packs(customer.path)) == 1
    git(customer.path, "fsck", "--strict")


_CTRL_C_AT_EXIT = """
import sys, threading
from gitstore import Store
from gitstore.cli.app import main
from gitstore.git import housekeeping
def held_clear(path):
    print("held", flush=True)
    threading.Event().wait(120)  # a run that takes long: Ctrl-C comes first
housekeeping.clear_temp_files = held_clear
root = sys.argv[1]
Store.init(root, maintenance_bytes=1).customer("customer-c").new_session(
    created="2025-01-15T10:00:00Z")
sys.argv = ["gitstore", "--root", root, "turn", "customer-c", "-"]
main()  # as the command: argv from sys.argv
"""


def test_ctrl_c_while_the_command_waits_for_its_run_stops_at_once_and_quietly(
        tmp_path: Path) -> None:
    """The command's write is done and reported; a Ctrl-C while the process waits for
    the background maintenance it started ends it at once (exit 130), without the
    interpreter's 'Exception ignored ... KeyboardInterrupt' report, and the store is
    whole (the run's leftovers are the next run's to clear)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    turn = b'{"timestamp": "2025-01-15T10:01:00Z", "user_input": {"query": "q"}, ' \
        b'"agent_response": {"orchestrator_response": "a"}}'
    proc = subprocess.Popen([sys.executable, "-c", _CTRL_C_AT_EXIT, str(tmp_path / "s")],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(turn)
    proc.stdin.close()
    lines = sorted(proc.stdout.readline() for _ in range(2))  # the write's line; "held"
    assert lines[1] == b"held\n" and b"turn 1" in lines[0], lines
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(20)
    finally:
        proc.kill()
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 130 and "Exception ignored" not in err and "Traceback" not in err, err
    git(tmp_path / "s" / "customer-c", "fsck", "--strict")
    turns = Store(tmp_path / "s").customer("customer-c").read().document(
        "conversation.json")["conversation_turns"]
    assert [t["user_input"]["query"] for t in turns] == ["q"]
