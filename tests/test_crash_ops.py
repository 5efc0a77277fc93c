"""SIGKILL during the long operations: retention apply and maintenance.

Each round copies a prepared store, starts the operation in a process of its
own, kills it at a random moment, and checks that nothing acknowledged before
is lost, the repository is whole (``git fsck --strict``), ``verify`` reports at
most the traces a crash may leave, and running the operation again finishes
it with ``verify`` clean. (Turns and corrections: ``test_crash.py``; import:
``test_import_safety.py``.)
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import CUSTOMER, ROOT, git, record_example_session

from gitstore import Store
from gitstore.ops import retention
from gitstore.ops import verify as health
from gitstore.ops.maintenance import maintain

ROUNDS = 6
SEED = int(os.environ.get("GITSTORE_CRASH_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
CRASH_TRACES = ("stray lock file ", "does not match its head file")

RETENTION = r"""
import sys
from datetime import UTC, datetime, timedelta
from gitstore import Store
from gitstore.ops import retention
later = datetime.now(UTC) + timedelta(days=3 * 365)
store = Store(sys.argv[1], clock=lambda: later)
print("go", flush=True)
retention.apply(store)
print("done", flush=True)
"""

MAINTAIN = r"""
import sys
from gitstore import Store
from gitstore.ops.maintenance import maintain
store = Store(sys.argv[1])
print("go", flush=True)
maintain(store.customer(sys.argv[2]), full=True)
print("done", flush=True)
"""


def _run_killed(script: str, *args: str, rng: random.Random) -> bool:
    """Run ``script``, kill it at a random moment after it started working;
    return whether it had finished."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"go"
    time.sleep(rng.uniform(0.0, 0.4))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    return b"done" in out


def _fsck(repo: Path) -> None:
    # what this test process's writes started in the background (repack, pack-refs)
    # must be done first: git fsck and the health check read the repository unlocked
    Store.wait_for_maintenance()
    proc = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def _problems(store: Store) -> list[str]:
    return [p for p in health.check_customer(store.customer(CUSTOMER)).problems
            if not p.startswith(CRASH_TRACES) and not any(t in p for t in CRASH_TRACES)]


@pytest.fixture(scope="module")
def aged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finalized scenario (purgeable three years on) and an open one (kept)."""
    root = tmp_path_factory.mktemp("aged") / "sessions"
    store = Store.init(root, maintenance_bytes=0)
    record_example_session(store)
    second = store.customer(CUSTOMER).new_session(created="2025-01-15T12:00:00Z")
    for n in range(40):
        second.append_turn({"timestamp": f"2025-01-15T12:{n:02d}:00Z",
                            "user_input": {"query": f"question {n}"},
                            "agent_response": {"orchestrator_response": "answer"}})
    return root


def test_retention_apply_killed_at_random(aged: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    keep = git(aged / CUSTOMER, "rev-parse", "v2").strip()
    for n in range(ROUNDS):
        root = tmp_path / f"r{n}"
        shutil.copytree(aged, root)
        _run_killed(RETENTION, str(root), rng=rng)
        repo = root / CUSTOMER
        _fsck(repo)
        assert git(repo, "rev-parse", "v2").strip() == keep, f"seed {SEED}"  # never purged
        assert _problems(Store(root)) == [], f"seed {SEED}"
        # running it again finishes the purge
        later = datetime.now(UTC) + timedelta(days=3 * 365)
        store = Store(root, clock=lambda later=later: later)
        retention.apply(store)
        _fsck(repo)
        assert git(repo, "tag", "-l") == ""
        assert git(repo, "rev-parse", "v2").strip() == keep
        Store.wait_for_maintenance()
        assert health.check_customer(Store(root).customer(CUSTOMER)).problems == []


def test_maintenance_killed_at_random(aged: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    refs = git(aged / CUSTOMER, "for-each-ref")
    for n in range(ROUNDS):
        root = tmp_path / f"m{n}"
        shutil.copytree(aged, root)
        _run_killed(MAINTAIN, str(root), CUSTOMER, rng=rng)
        repo = root / CUSTOMER
        _fsck(repo)
        assert git(repo, "for-each-ref") == refs, f"seed {SEED}"
        assert _problems(Store(root)) == [], f"seed {SEED}"
        store = Store(root)
        store.customer(CUSTOMER).session("v2").append_turn({
            "timestamp": "2025-01-15T13:00:00Z", "user_input": {"query": "after the crash"},
            "agent_response": {"orchestrator_response": "still here"}})
        maintain(store.customer(CUSTOMER), full=True)
        _fsck(repo)
        assert health.check_customer(store.customer(CUSTOMER)).problems == []
