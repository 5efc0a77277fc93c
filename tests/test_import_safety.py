"""Import under fire: a concurrent writer, a crash, a failure (issue 11, items 1-2).

* an import racing an ordinary writer that creates the same customer never
  deletes or overwrites the writer's acknowledged data: one of them wins, the
  other gets a clear error;
* an import killed with SIGKILL at a random moment leaves no customer at all
  (only a staging directory), ``verify`` stays clean, and running the import
  again finishes the job;
* an import that fails leaves nothing in place, and never deletes a repository
  it did not create.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CUSTOMER, ROOT, build_history, git, run_cli

from gitstore import ConflictError, Store
from gitstore.ops import exporting, importing

KILL_ROUNDS = 8


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("export")
    source = build_history(base / "source")
    out = base / "all.json"
    with out.open("w", encoding="utf-8") as f:
        exporting.write_json_export(source, f, source.customers())
    return out


def test_import_never_touches_a_customer_created_meanwhile(
        export_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The customer appears (a writer opens it) after the import's first check:
    the import refuses at publication, and the writer's data is intact."""
    target = Store.init(tmp_path / "target")
    data = json.loads(export_file.read_text())
    original = importing._publish  # the moment between staging and publishing

    def writer_wins(store: Store, staged: list[importing.StagingCustomer], what: str) -> None:
        session = store.customer(CUSTOMER).new_session(session_id="concurrent-writer",
                                                       created="2025-02-01T10:00:00Z")
        for n in range(5):
            session.append_turn({"timestamp": f"2025-02-01T10:0{n}:00Z",
                                 "user_input": {"query": f"q{n}"},
                                 "agent_response": {"orchestrator_response": "ok"}})
        original(store, staged, what)

    monkeypatch.setattr(importing, "_publish", writer_wins)
    with pytest.raises(ConflictError, match="already exist"):
        importing.import_json(target, data)
    session = target.customer(CUSTOMER).session()
    assert session.session_id == "concurrent-writer"
    assert len(session.history()) == 5
    git(target.root / CUSTOMER, "fsck", "--strict")
    assert list((target.root / ".gitstore" / "staging").iterdir()) == []


def test_concurrent_imports_and_writers_lose_nothing(export_file: Path,
                                                     tmp_path: Path) -> None:
    """Real processes: an import and a `new` + 5 turns race for the same
    customer, many times; whoever wins keeps everything it acknowledged."""
    for round_ in range(6):
        root = tmp_path / f"r{round_}"
        Store.init(root)
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), CUSTOMER], env=_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        importer = subprocess.run(
            [sys.executable, "-m", "gitstore", "--root", str(root), "import", str(export_file)],
            env=_env(), capture_output=True, timeout=180, check=False)
        out, err = writer.communicate(timeout=180)
        acked = out.decode().split()
        assert importer.returncode in (0, 6), importer.stderr.decode()
        assert writer.returncode == 0, err.decode()
        assert b"Traceback" not in importer.stderr
        customer = Store(root).customer(CUSTOMER)
        mine = [s for s in customer.sessions() if s.session_id == "racing-writer"]
        assert len(mine) == 1  # the writer's scenario, whoever came first
        assert [t["user_input"]["query"] for t in mine[0].history()] == acked
        imported = [s for s in customer.sessions() if s.session_id != "racing-writer"]
        assert len(imported) == (2 if importer.returncode == 0 else 0)
        git(root / CUSTOMER, "fsck", "--strict")


WRITER = r"""
import sys
from gitstore import Store, GitStoreError
root, name = sys.argv[1], sys.argv[2]
try:
    s = Store(root).customer(name).new_session(session_id="racing-writer",
                                               created="2025-02-01T10:00:00Z")
except GitStoreError as exc:
    print(exc, file=sys.stderr); sys.exit(exc.exit_code)
for n in range(5):
    s.append_turn({"timestamp": f"2025-02-01T10:0{n}:00Z", "user_input": {"query": f"q{n}"},
                   "agent_response": {"orchestrator_response": "ok"}})
    print(f"q{n}", flush=True)
"""


def test_import_killed_at_random_leaves_nothing_and_reruns(export_file: Path,
                                                          tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("GITSTORE_CRASH_SEED", "0")) or None)
    for round_ in range(KILL_ROUNDS):
        root = tmp_path / f"k{round_}"
        Store.init(root)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gitstore", "--root", str(root), "import", str(export_file)],
            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        store = Store(root)
        placed = store.customers()
        assert placed in ([], [CUSTOMER])  # all or nothing
        if placed:  # it finished before the kill
            git(root / CUSTOMER, "fsck", "--strict")
            continue
        assert not (root / CUSTOMER).exists()
        assert run_cli(root, "verify").code == 0
        again = run_cli(root, "import", str(export_file))
        assert again.code == 0, again.err
        assert store.customers() == [CUSTOMER]
        git(root / CUSTOMER, "fsck", "--strict")
        assert run_cli(root, "verify").code == 0
        assert list((root / ".gitstore" / "staging").iterdir()) == []
