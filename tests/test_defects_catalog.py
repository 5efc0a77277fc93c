"""Issue 10, items 10, 11 and 20: isolation of the files under the store root,
audited reads through the catalog, and the catalog after retention.

Real stores in temp dirs; permissions checked with ``os.stat``, access logs read
back record by record, the CLI run in-process (``run_cli``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, Clock, load_example, record_example_session, run_cli

from gitstore import Store
from gitstore.ops import retention as rt
from gitstore.store.audit import AuditLog

ALPHA, BETA, GAMMA = "customer-alpha", "customer-beta", "customer-gamma"
START = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The loosest umask: whatever is private here was made private on purpose."""
    saved = os.umask(0)
    try:
        yield
    finally:
        os.umask(saved)


# -- item 10: every file gitstore creates under the root is private ---------------------

def test_files_gitstore_creates_under_the_root_are_private(tmp_path: Path,
                                                           loose_umask: None) -> None:
    root = tmp_path / "sessions"
    store = Store.init(root, clock=Clock())
    record_example_session(store)
    assert run_cli(root, "list").code == 0  # creates the index
    base = root / ".gitstore"
    expected = {
        base: 0o700,
        base / "locks": 0o700,
        base / "locks" / f"{CUSTOMER}.lock": 0o600,
        base / "index.sqlite": 0o600,
        root / CUSTOMER: 0o700,
        root / CUSTOMER / "gitstore-audit.jsonl": 0o600,
        root / CUSTOMER / "gitstore-audit.head": 0o600,
        base / "answers": 0o700,  # the answer log that recorded the list
        base / "answers" / "gitstore-audit.jsonl": 0o600,
        base / "answers" / "gitstore-audit.head": 0o600,
        base / "answers" / "sets": 0o700,
    }
    (answer_set,) = (base / "answers" / "sets").iterdir()
    expected[answer_set] = 0o600
    for suffix in ("-wal", "-shm"):  # SQLite gives them the database file's mode
        if (base / f"index.sqlite{suffix}").exists():
            expected[base / f"index.sqlite{suffix}"] = 0o600
    maintenance = root / CUSTOMER / "gitstore-maintenance"
    if maintenance.exists():
        expected[maintenance] = 0o600
    assert {p: mode(p) for p in expected} == expected
    # the config file, when gitstore writes one, and the key of hashed names
    hashed = Store.init(tmp_path / "hashed")
    hashed.enable_hashed_names()
    for path in (tmp_path / "hashed" / ".gitstore" / "config.json",
                 tmp_path / "hashed" / ".gitstore" / "name-key"):
        assert mode(path) == 0o600, path
    assert mode(tmp_path / "hashed" / ".gitstore") == 0o700


def test_a_stricter_umask_still_wins(tmp_path: Path) -> None:
    saved = os.umask(0o077)
    try:
        root = tmp_path / "sessions"
        record_example_session(Store.init(root, clock=Clock()))
        assert run_cli(root, "stats").code == 0
    finally:
        os.umask(saved)
    for path in (root / ".gitstore", root / ".gitstore" / "index.sqlite", root / CUSTOMER,
                 root / CUSTOMER / "gitstore-audit.jsonl"):
        assert not mode(path) & 0o077, path


def test_import_staging_is_private(tmp_path: Path, loose_umask: None) -> None:
    source = tmp_path / "source"
    record_example_session(Store.init(source, clock=Clock()))
    bundle = tmp_path / "x.json"
    assert run_cli(source, "export", CUSTOMER, "-O", str(bundle)).code == 0
    target = tmp_path / "target"
    Store.init(target)
    assert run_cli(target, "import", str(bundle)).code == 0
    assert mode(target / ".gitstore" / "staging") == 0o700
    assert mode(target / CUSTOMER) == 0o700


@pytest.fixture
def indexed(tmp_path: Path) -> Path:
    root = tmp_path / "sessions"
    record_example_session(Store.init(root, clock=Clock()))
    assert run_cli(root, "list").code == 0
    assert run_cli(root, "verify").code == 0
    return root


def test_verify_fails_on_a_world_readable_index(indexed: Path) -> None:
    index = indexed / ".gitstore" / "index.sqlite"
    index.chmod(0o644)
    r = run_cli(indexed, "verify")
    assert r.code == 7, r.err
    (line,) = [x for x in r.text.splitlines() if x.startswith("store: ")]
    assert str(index) in line and "0644" in line and "chmod 600" in line
    assert f"{CUSTOMER}: ok" in r.text  # the customer itself is fine
    assert "the store's shared files" in r.err
    data = run_cli(indexed, "verify", CUSTOMER, "-o", "json").json()
    assert data[0]["customer"] is None and not data[0]["ok"] and data[1]["ok"]
    index.chmod(0o640)  # group-readable is as bad
    assert run_cli(indexed, "verify").code == 7
    index.chmod(0o600)
    assert run_cli(indexed, "verify").code == 0


def test_verify_fails_on_a_shared_repository_or_key(indexed: Path, tmp_path: Path) -> None:
    (indexed / CUSTOMER).chmod(0o755)
    r = run_cli(indexed, "verify", CUSTOMER)
    assert r.code == 7
    assert f"{CUSTOMER}: {indexed / CUSTOMER} (a customer repository) has mode 0755" in r.text
    (indexed / CUSTOMER).chmod(0o700)
    assert run_cli(indexed, "verify").code == 0
    hashed = Store.init(tmp_path / "hashed")
    hashed.enable_hashed_names()
    key = tmp_path / "hashed" / ".gitstore" / "name-key"
    key.chmod(0o644)
    r = run_cli(tmp_path / "hashed", "verify")
    assert r.code == 7 and "name-key" in r.text and "hashed customer names" in r.text
    key.chmod(0o600)
    assert run_cli(tmp_path / "hashed", "verify").code == 0


# -- item 11: reads through the catalog are audited ------------------------------------

def _gamma(store: Store) -> None:
    session = store.customer(GAMMA).new_session(created="2025-01-15T10:30:00Z")
    session.append_turn({"timestamp": "2025-01-15T10:31:00Z",
                         "user_input": {"query": "Does the quokka exporter scale?"},
                         "agent_response": {"orchestrator_response": "It does."}})
    analytics = load_example("session", "session_analytics.json")
    analytics["similarity_vectors"].update(architecture_pattern_hash="gamma-only",
                                           complexity_profile="gamma-profile")
    session.put("session_analytics.json", analytics)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ALPHA: finalized v1.0.0 and an open follow-up; BETA: finalized v1.0.0 with
    the same analytics (similar); GAMMA: open, its own analytics and a marker word."""
    root = tmp_path_factory.mktemp("three") / "sessions"
    store = Store.init(root, clock=Clock(START))
    record_example_session(store, ALPHA).follow_up()
    record_example_session(store, BETA)
    _gamma(store)
    return root


def _records(root: Path, name: str) -> list[dict[str, Any]]:
    """What ``gitstore audit`` shows of ``name``: its own records and the answers
    of the store's answer log that showed it."""
    return AuditLog(root / name).history()


@pytest.mark.parametrize(("args", "op", "shown"), [
    (["list"], "list", {ALPHA, BETA, GAMMA}),
    (["list", "--customer", ALPHA], "list", {ALPHA}),
    (["list", "--all-versions", "--customer", BETA], "list", {BETA}),
    (["list", "--all-versions"], "list", {ALPHA, BETA, GAMMA}),
    (["list", "--status", "finalized"], "list", {BETA}),
    (["stats"], "stats", {ALPHA, BETA, GAMMA}),
    (["active", "--timeout", "36500d"], "active", {ALPHA, GAMMA}),
    (["similar", ALPHA, "v1.0.0"], "similar", {ALPHA, BETA}),
    (["search", "quokka"], "search", {GAMMA}),
    (["search", "nothing-matches-this"], "search", set()),
])
def test_every_read_through_the_catalog_is_audited(three: Path, args: list[str], op: str,
                                                    shown: set[str]) -> None:
    """Each customer whose data the answer holds sees it in its audit trail (one
    answer record naming it, or for the customer ``similar`` asked about, a record
    of its own); the others see nothing."""
    before = {c: _records(three, c) for c in (ALPHA, BETA, GAMMA)}
    r = run_cli(three, *args, "-o", "json")
    assert r.code == 0, r.err
    answer = r.json()
    for c in (ALPHA, BETA, GAMMA):
        after = _records(three, c)
        assert after[:len(before[c])] == before[c]
        new = after[len(before[c]):]
        if c in shown:
            assert [x["op"] for x in new] == [op], (c, new)
            assert new[0]["detail"]
            assert new[0]["customer"] == c if "log" not in new[0] else \
                new[0]["answered"]["customers"] == len(shown - {ALPHA} if op == "similar"
                                                       else shown), (c, new)
        else:
            assert new == [], (c, new)
    if op == "list":  # the customers the answer shows are exactly the audited ones
        assert {row["customer"] for row in answer} == shown


def test_the_api_queries_are_audited_too(three: Path) -> None:
    store = Store(three)
    before = len(_records(three, GAMMA))
    assert store.catalog.list_sessions(customer=GAMMA)
    assert store.catalog.active(timeout="36500d")
    assert store.catalog.stats()["customers"] == 3
    ops = [x["op"] for x in _records(three, GAMMA)[before:]]
    assert ops == ["list", "active", "stats"]


# -- item 20: the catalog after retention ------------------------------------------------

@pytest.fixture
def purged(tmp_path: Path) -> Path:
    """The example session finalized in January 2025, purged three years later with
    its analytics summary kept (completed_sessions 2y, analytics_summaries 5y)."""
    root = tmp_path / "sessions"
    record_example_session(Store.init(root, clock=Clock(START)))
    assert run_cli(root, "stats").code == 0  # indexed before the purge, too
    later = Store(root, clock=Clock(START + timedelta(days=3 * 365)))
    (item,) = rt.apply(later)
    assert item.action == "purge-keep-analytics"
    return root


def test_stats_count_a_kept_analytics_summary(purged: Path) -> None:
    r = run_cli(purged, "stats", "-o", "json")
    assert r.code == 0 and "cannot tell" not in r.err, r.err
    data = r.json()
    assert data["customers"] == 1 and data["sessions"] == 1 and data["turns"] == 0
    assert data["by_status"] == {"retained": 1}
    rows = run_cli(purged, "list", "--status", "retained", "-o", "json").json()
    assert [(x["customer"], x["scenario"], x["version"], x["status"]) for x in rows] == \
        [(CUSTOMER, "v1", "v1.0.0", "retained")]
    assert rows[0]["pattern_hash"] == load_example("session", "session_analytics.json")[
        "similarity_vectors"]["architecture_pattern_hash"]


@pytest.mark.parametrize("args", [["reindex"], ["search", "collector"], ["list"],
                                  ["stats"]])
def test_no_warning_about_the_kept_summary(purged: Path, args: list[str]) -> None:
    for _ in range(2):  # from the kept index, and from one rebuilt from git
        r = run_cli(purged, *args)
        assert r.code == 0, r.err
        assert "warning" not in r.err and "cannot tell the version" not in r.err, r.err
        assert run_cli(purged, "reindex").code == 0
