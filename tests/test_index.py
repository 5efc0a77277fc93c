"""The derived SQLite index: every query over a store of several customers, the
writer's fast path against a rebuild (Hypothesis), staleness after a plain
``git push``, damaged index files, hostile search text, and the CLI commands.

No mocks: real repositories, real git, a real SQLite file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    ROOT,
    SESSION_ID,
    CliResult,
    Clock,
    explode_packs,
    git,
    load_example,
    record_example_session,
    run_cli,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import GitStoreError, NotFoundError, StorageError, Store, UsageError
from gitstore.catalog.index import Index, fts_query, satisfaction
from gitstore.core import canonical
from gitstore.core.time import parse_duration

JAN15 = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)
NOON = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
AZURE, GCP, AWS3 = "customer-azure01", "customer-gcp02", "customer-aws03"
TURNS = sorted((EXAMPLES / "session" / "turns").glob("turn-*.json"))
FOLLOW_UP_TURNS = sorted((EXAMPLES / "follow_up" / "turns").glob("turn-*.json"))


def variant(store: Store, customer: str, *, provider: str, services: list[str],
            pattern: str, profile: str, indicators: dict[str, Any], word: str,
            success: float = 8.0, turns: int = 5, finalize: bool = True,
            session_id: str | None = None, status: str = "completed") -> Any:
    """A session like the example one, with its own provider, services,
    similarity vectors, satisfaction and a marker word in every query."""
    session = store.customer(customer).new_session(session_id=session_id,
                                                   created="2025-01-15T10:30:00Z")
    for path in TURNS[:turns]:
        turn = json.loads(path.read_text(encoding="utf-8"))
        turn["user_input"]["query"] += f" ({word})"
        session.append_turn(turn)
    summary = copy.deepcopy(load_example("session", "conversation.json")["conversation_summary"])
    del summary["total_turns"]
    summary.update(primary_cloud_provider=provider, services_discussed=services,
                   final_recommendation=f"{provider} collector")
    session.set_summary(summary)
    session.put("deployment_context.json", load_example("session", "deployment_context.json"))
    meta = load_example("session", "session_metadata.json")
    for key in ("api_key", "session_id", "session_version"):
        del meta["session_info"][key]
    meta["workflow_tracking"]["user_satisfaction_indicators"] = indicators
    meta["workflow_tracking"]["completion_status"] = status
    meta["quality_metrics"]["session_success_score"] = success
    session.put("session_metadata.json", meta)
    analytics = load_example("session", "session_analytics.json")
    analytics["similarity_vectors"].update(architecture_pattern_hash=pattern,
                                           complexity_profile=profile)
    session.put("session_analytics.json", analytics)
    if finalize:
        session.finalize(message="agreed")
    return session


def follow_up(session: Any) -> None:
    session.follow_up()
    for path in FOLLOW_UP_TURNS:
        session.append_turn(path.read_bytes())


def build(root: Path) -> Store:
    """Four customers, five sessions:

    - customer-xyz789 v1: the example, finalized v1.0.0, follow-up v1.1.0 open (recent);
    - customer-azure01 v1: azure, finalized; same complexity profile as the example;
    - customer-gcp02 v1: gcp, open, last activity on Jan 10 (old);
    - customer-aws03 v1: aws, finalized, same pattern and profile as the example;
      v2: aws, open (recent).
    """
    store = Store.init(root, clock=Clock(JAN15), fsync=False)
    follow_up(record_example_session(store))
    variant(store, AZURE, provider="azure", services=["functions", "monitor"],
            pattern="azure-functions-v1", profile="intermediate-standard-deployment",
            indicators={"explicit_positive_feedback": False, "completed_to_implementation": True,
                        "follow_up_questions_answered": 0}, word="bicep", success=7.0)
    old = Store(root, clock=Clock(datetime(2025, 1, 10, 9, 0, tzinfo=UTC)), fsync=False)
    variant(old, GCP, provider="gcp", services=["gke"], pattern="gcp-gke-v1",
            profile="expert-complex-deployment", indicators={}, word="kubernetes",
            turns=2, finalize=False, status="in_progress")
    variant(store, AWS3, provider="AWS", services=["lambda"], pattern="aws-api-gateway-lambda-v1",
            profile="intermediate-standard-deployment",
            indicators={"explicit_positive_feedback": True}, word="zebra", success=9.5)
    variant(store, AWS3, provider="aws", services=["s3"], pattern="aws-s3-v1",
            profile="beginner", indicators={"follow_up_questions_answered": 3}, word="bucket",
            turns=1, finalize=False, status="in_progress")
    return store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Index]:
    store = build(tmp_path_factory.mktemp("index") / "sessions")
    index = Index(store)
    index.refresh()  # nothing to do once the write path records every write
    assert index.dump() == rebuilt(store, tmp_path_factory.mktemp("rebuilt")).dump()
    return store, index


def keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["customer"], r["version"]) for r in rows]


# -- pure helpers --------------------------------------------------------------------

def test_satisfaction_formula() -> None:
    assert satisfaction(None) is None and satisfaction({}) is None
    assert satisfaction({"explicit_positive_feedback": True, "completed_to_implementation": True,
                         "follow_up_questions_answered": 3}) == 1.0
    assert satisfaction({"explicit_positive_feedback": False, "completed_to_implementation": True,
                         "follow_up_questions_answered": 0}) == 0.4
    assert satisfaction({"explicit_positive_feedback": True}) == 1.0
    assert satisfaction({"follow_up_questions_answered": 1}) == 0.333
    assert satisfaction({"follow_up_questions_answered": 99, "unknown": 1}) == 1.0
    assert satisfaction({"explicit_positive_feedback": "yes"}) is None


def test_parse_duration() -> None:
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration(90) == timedelta(seconds=90)  # a number (config JSON) is seconds
    # one grammar everywhere: typed text needs a unit ("90" could be minutes or seconds)
    for bad in ("", "2x", "h", "2h garbage", "-1h", "90"):
        with pytest.raises(UsageError):
            parse_duration(bad)


@given(st.text())
def test_fts_query_is_only_quoted_words(text: str) -> None:
    query = fts_query(text)
    cx = sqlite3.connect(":memory:")
    cx.execute("CREATE VIRTUAL TABLE t USING fts5(a)")
    cx.execute("INSERT INTO t VALUES ('hello world')")
    if query:
        cx.execute("SELECT * FROM t WHERE t MATCH ?", (query,)).fetchall()


# -- queries -------------------------------------------------------------------------

def test_list_shows_each_sessions_newest_version_most_recent_first(
        world: tuple[Store, Index]) -> None:
    _, index = world
    rows = index.list_sessions()
    assert keys(rows) == [(AWS3, "v2.0.0"), (AWS3, "v1.0.0"), (AZURE, "v1.0.0"),
                          (CUSTOMER, "v1.1.0"), (GCP, "v1.0.0")]
    assert [r["updated"] for r in rows] == sorted((r["updated"] for r in rows), reverse=True)
    xyz = rows[3]
    assert xyz["status"] == "open" and xyz["completion_status"] == "in_progress"
    assert xyz["turns"] == 7 and xyz["session_id"] == SESSION_ID and xyz["latest"] is True
    assert xyz["provider"] == "aws" and xyz["services"] == ["api-gateway", "cloudwatch", "iam",
                                                            "lambda"]
    assert xyz["created"] == "2025-01-15T10:30:00Z" and xyz["completed"] is None
    assert xyz["pattern_hash"] == "aws-api-gateway-lambda-v1"
    assert xyz["user_expertise"] == "intermediate" and xyz["confidence"] == 8.2
    assert isinstance(xyz["completeness"], int) and 0 < xyz["completeness"] < 100
    assert rows[2]["satisfaction"] == 0.4 and rows[2]["success"] == 7.0
    assert rows[2]["final_recommendation"] == "azure collector"
    for row in rows:
        assert row["customer"] and row["commit_id"]


def test_list_every_version(world: tuple[Store, Index]) -> None:
    _, index = world
    rows = index.list_sessions(customer=CUSTOMER, all_versions=True, sort="version",
                               descending=False)
    assert keys(rows) == [(CUSTOMER, "v1.0.0"), (CUSTOMER, "v1.1.0")]
    v100 = rows[0]
    assert v100["status"] == "finalized" and v100["tag"] and not v100["latest"]
    assert v100["turns"] == 5 and v100["completeness"] == 100
    assert v100["completed"] == "2025-01-15T10:42:00Z"
    store, _ = world
    assert v100["commit_id"] == store.customer(CUSTOMER).resolve("v1.0.0")


def test_list_filters(world: tuple[Store, Index]) -> None:
    _, index = world
    assert keys(index.list_sessions(status="open")) == \
        [(AWS3, "v2.0.0"), (CUSTOMER, "v1.1.0"), (GCP, "v1.0.0")]
    assert keys(index.list_sessions(status="finalized")) == [(AWS3, "v1.0.0"), (AZURE, "v1.0.0")]
    assert keys(index.list_sessions(status="completed")) == [(AWS3, "v1.0.0"), (AZURE, "v1.0.0")]
    assert keys(index.list_sessions(status="in_progress", limit=1)) == [(AWS3, "v2.0.0")]
    assert keys(index.list_sessions(provider="aws")) == \
        [(AWS3, "v2.0.0"), (AWS3, "v1.0.0"), (CUSTOMER, "v1.1.0")]
    assert keys(index.list_sessions(provider="AZURE")) == [(AZURE, "v1.0.0")]
    assert keys(index.list_sessions(customer=AWS3, sort="version", descending=False)) == \
        [(AWS3, "v1.0.0"), (AWS3, "v2.0.0")]
    assert keys(index.list_sessions(service="gke")) == [(GCP, "v1.0.0")]
    assert keys(index.list_sessions(until=datetime(2025, 1, 11, tzinfo=UTC))) == [(GCP, "v1.0.0")]
    assert GCP not in {c for c, _ in keys(index.list_sessions(since=JAN15))}
    assert index.list_sessions(provider="nope") == []
    with pytest.raises(NotFoundError):
        index.list_sessions(customer="customer-unknown")
    with pytest.raises(UsageError):
        index.list_sessions(sort="commit_id; DROP TABLE versions")
    for status in ("bogus", "Open", "complete", ""):  # a typo is not "no sessions"
        with pytest.raises(UsageError, match=f"unknown status '{status}': use one of open, "):
            index.list_sessions(status=status)
        with pytest.raises(UsageError):
            index.list_columns(status=status)
    assert keys(index.list_sessions(status="retained")) == []


@pytest.mark.parametrize("asked", [{}, {"all_versions": True, "sort": "version"},
                                   {"status": "open", "descending": False},
                                   {"provider": "aws", "limit": 2}, {"sort": "satisfaction"},
                                   {"customer": AWS3, "fields": ["turns", "provider"]}])
def test_list_columns_are_list_sessions_column_by_column(world: tuple[Store, Index],
                                                         asked: dict[str, Any]) -> None:
    """What the table of ``list`` reads is the listing itself, turned: same rows,
    same order, same values (services as stored JSON, latest as 0/1)."""
    _, index = world
    rows = index.list_sessions(**asked)
    cols = index.list_columns(**asked)
    assert next(iter(cols)) == "customer" and set(cols) == set(rows[0])
    for name, values in cols.items():
        want = [r[name] for r in rows]
        if name == "services":
            want = [json.dumps(v, separators=(",", ":")) for v in want]
            values = tuple(json.dumps(json.loads(v), separators=(",", ":")) for v in values)
        assert list(values) == want, name
    empty = index.list_columns(provider="nope")
    assert list(empty) == list(cols) if not asked.get("fields") else next(iter(empty)) == "customer"
    assert all(v == () for v in empty.values())


def test_cli_table_cells_are_the_json_values(world: tuple[Store, Index]) -> None:
    """Each cell of the text table is its session's value: '-' for none, the
    completion status beside a different status, 85%, 2 decimals, %g."""
    store, _ = world
    rows = cli(store.root, "list", "--sort", "satisfaction", "-o", "json").json()
    lines = cli(store.root, "list", "--sort", "satisfaction").text.splitlines()[1:]
    assert len(lines) == len(rows)
    for row, line in zip(rows, lines, strict=True):
        status = row["status"] if row["completion_status"] in (None, row["status"]) \
            else f"{row['status']} ({row['completion_status']})"

        def cell(value: Any, fmt: str = "{}") -> str:
            return "-" if value is None else fmt.format(value)

        want = [row["customer"], row["version"], *status.split(), cell(row["provider"]),
                row["updated"], cell(row["turns"]), cell(row["completeness"], "{}%"),
                cell(row["satisfaction"], "{:.2f}"), cell(row["success"], "{:g}")]
        assert line.split() == want
        assert line == line.rstrip()


@pytest.mark.parametrize("field", ["updated", "created", "completed", "customer", "version",
                                   "status", "provider", "completeness", "satisfaction",
                                   "success", "confidence", "turns"])
def test_sort_fields_sort_with_nulls_last(world: tuple[Store, Index], field: str) -> None:
    _, index = world
    for descending in (True, False):
        rows = index.list_sessions(sort=field, descending=descending)
        assert len(rows) == 5
        if field == "version":
            continue
        values = [r[field] for r in rows]
        present = [v for v in values if v is not None]
        assert values[:len(present)] == present, "nulls sort last"
        assert present == sorted(present, reverse=descending)


def test_stats(world: tuple[Store, Index]) -> None:
    _, index = world
    data = index.stats()
    rows = index.list_sessions()
    assert data["customers"] == 4 and data["sessions"] == 5 and data["versions"] == 6
    assert data["finalized_versions"] == 3
    assert data["turns"] == 7 + 5 + 2 + 5 + 1
    assert data["by_status"] == {"finalized": 2, "open": 3}
    assert data["by_completion_status"] == {"completed": 2, "in_progress": 3}
    assert data["by_provider"] == {"AWS": 1, "aws": 2, "azure": 1, "gcp": 1}
    sats = [r["satisfaction"] for r in rows if r["satisfaction"] is not None]
    assert data["average_satisfaction"] == round(sum(sats) / len(sats), 3)
    assert data["average_success_score"] == round(sum(r["success"] for r in rows) / 5, 3)
    assert data["average_completeness"] == round(sum(r["completeness"] for r in rows) / 5, 3)


def test_search(world: tuple[Store, Index]) -> None:
    store, index = world
    before = len(store.customer(AZURE).audit_log.history())
    hits = index.search("bicep")
    assert {(h["customer"], h["version"]) for h in hits} == {(AZURE, "v1.0.0")}
    assert sorted(h["turn_id"] for h in hits) == [1, 2, 3, 4, 5]
    assert all("[bicep]" in h["snippet"] for h in hits)
    assert len(store.customer(AZURE).audit_log.history()) == before + 1, "search audited"
    alarms = index.search("CloudWatch alarms X-Ray")
    assert [(h["customer"], h["version"], h["turn_id"]) for h in alarms] == \
        [(CUSTOMER, "v1.1.0", 6)]
    assert {h["customer"] for h in index.search("kube*")} == {GCP}
    assert index.search("collectors", limit=3) and len(index.search("collector", limit=3)) == 3
    assert index.search("") == [] and index.search("   ") == []


@pytest.mark.parametrize("text", ['"', '""', "*", "NEAR(", "NEAR(a b", "OR", "a OR", "AND NOT",
                                  "(", ")", "((a)", "collector)", "^", "-", "a:b", "col:x",
                                  "'", "\\", "\x00", "🙂", "NOT collector", "{a b}", "a + b"])
def test_search_with_hostile_text_never_errors(world: tuple[Store, Index], text: str) -> None:
    _, index = world
    assert isinstance(index.search(text), list)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_search_any_text(world: tuple[Store, Index], text: str) -> None:
    _, index = world
    assert isinstance(index.search(text), list)


def test_similar_ranks_both_matches_first_and_excludes_itself(
        world: tuple[Store, Index]) -> None:
    _, index = world
    rows = index.similar(CUSTOMER, "v1.0.0")
    assert [(r["customer"], r["version"], r["score"]) for r in rows] == \
        [(AWS3, "v1.0.0", 2), (AZURE, "v1.0.0", 1)]
    assert rows[0]["matched"] == ["pattern_hash", "complexity_profile"]
    assert rows[1]["matched"] == ["complexity_profile"]
    assert keys(index.similar(CUSTOMER, "v1")) == keys(rows)
    assert keys(index.similar(AWS3, "v1.0.0")) == [(CUSTOMER, "v1.1.0"), (AZURE, "v1.0.0")]
    assert index.similar(GCP, "v1.0.0") == []
    with pytest.raises(NotFoundError):
        index.similar(CUSTOMER, "v9.0.0")


def test_active_sessions_with_a_configurable_timeout(world: tuple[Store, Index],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store, index = world
    assert keys(index.active(now=NOON)) == [(AWS3, "v2.0.0"), (CUSTOMER, "v1.1.0")]
    assert index.active("2h", now=NOON)[0]["idle_seconds"] > 3000
    assert keys(index.active(timedelta(days=7), now=NOON)) == \
        [(AWS3, "v2.0.0"), (CUSTOMER, "v1.1.0"), (GCP, "v1.0.0")]
    assert index.active("30m", now=NOON) == []
    assert index.active(now=NOON + timedelta(hours=3)) == []
    monkeypatch.setenv("GITSTORE_ACTIVE_TIMEOUT", "7d")
    assert len(Index(store).active(now=NOON)) == 3
    assert Index(store, active_timeout="1m").active_timeout == timedelta(minutes=1)


def test_find_session(world: tuple[Store, Index]) -> None:
    _, index = world
    assert index.find_session(SESSION_ID) == (CUSTOMER, "v1")
    sid = index.list_sessions(customer=AWS3, sort="version")[0]["session_id"]
    assert index.find_session(sid) == (AWS3, "v2")
    with pytest.raises(NotFoundError):
        index.find_session("orchestrator-session-nope")


def test_a_session_id_in_two_customers_needs_the_customer(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), fsync=False)
    record_example_session(store)
    # `new` refuses a used id; a copy made behind the store's back still has it
    shutil.copytree(store.root / CUSTOMER, store.root / "customer-other")
    index = Index(store)
    with pytest.raises(UsageError, match="2 scenarios") as caught:
        index.find_session(SESSION_ID)
    assert CUSTOMER not in str(caught.value) and "customer-other" not in str(caught.value)
    assert index.find_session(SESSION_ID, "customer-other") == ("customer-other", "v1")


# -- staleness -----------------------------------------------------------------------

def test_refresh_does_nothing_when_no_ref_moved(tmp_path: Path) -> None:
    store = build(tmp_path / "s")
    index = Index(store, tmp_path / "own.sqlite")  # not kept current by the write path
    assert index.refresh() == 4
    assert index.refresh() == 0
    session = store.customer(AZURE).session()
    session.follow_up()
    assert index.refresh() == 1
    assert keys(index.list_sessions(customer=AZURE)) == [(AZURE, "v1.1.0")]


def test_a_plain_git_push_is_seen_by_the_next_query(finalized: Any, tmp_path: Path) -> None:
    store = finalized.customer.store
    index = Index(store)
    assert keys(index.list_sessions()) == [(CUSTOMER, "v1.0.0")]
    assert index.search("alarms") == []
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(finalized.customer.path), str(clone))
    meta = json.loads((clone / "session_metadata.json").read_text())
    meta["session_info"].update(session_version="v1.1.0", completed_timestamp=None,
                                session_duration_minutes=None)
    meta["workflow_tracking"]["completion_status"] = "in_progress"
    (clone / "session_metadata.json").write_bytes(canonical.dumps(meta))
    conv = json.loads((clone / "conversation.json").read_text())
    conv["conversation_turns"].append(json.loads(FOLLOW_UP_TURNS[0].read_text()))
    conv["conversation_summary"]["total_turns"] = 6
    (clone / "conversation.json").write_bytes(canonical.dumps(conv))
    (clone / "sow_document.md").unlink()
    names = sorted(p.name for p in clone.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    subprocess.run("sha256sum " + " ".join(names) + " > SHA256SUMS", shell=True, cwd=clone,
                   check=True)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "follow-up by hand")
    git(clone, "push", "-q", "origin", "HEAD:refs/heads/v1")
    rows = index.list_sessions()
    assert keys(rows) == [(CUSTOMER, "v1.1.0")]
    assert rows[0]["status"] == "open" and rows[0]["turns"] == 6
    assert rows[0]["commit_id"] == git(clone, "rev-parse", "HEAD").strip()
    assert [(h["version"], h["turn_id"]) for h in index.search("alarms")] == [("v1.1.0", 6)]
    assert index.dump() == rebuilt(store, tmp_path).dump()


def test_removed_customers_disappear(tmp_path: Path) -> None:
    store = build(tmp_path / "s")
    index = Index(store)
    assert index.stats()["customers"] == 4
    shutil.rmtree(store.root / GCP)
    assert GCP not in {r["customer"] for r in index.list_sessions()}
    assert index.search("kubernetes") == []
    assert index.stats()["customers"] == 3
    assert not [row for rows in index.dump().values() for row in rows if GCP in row]


def test_a_damaged_customer_is_left_out_and_named(tmp_path: Path) -> None:
    store = build(tmp_path / "s")
    index = Index(store, tmp_path / "own.sqlite")  # not kept current by the write path
    index.refresh()
    store.customer(GCP).session().append_turn(TURNS[2].read_bytes())
    tip = store.customer(GCP).repo.ref_target("refs/heads/v1")
    assert tip is not None
    explode_packs(store.root / GCP)
    (store.root / GCP / "objects" / tip[:2] / tip[2:]).unlink()  # the new tip commit is gone
    rows = index.list_sessions()
    assert GCP not in {r["customer"] for r in rows} and len(rows) == 4
    assert any(GCP in p and "not indexed" in p for p in index.problems)
    assert index.search("kubernetes") == []


def test_a_corrupt_branch_file_drops_the_scenario(tmp_path: Path) -> None:
    store = build(tmp_path / "s")
    index = Index(store)
    index.refresh()
    (store.root / GCP / "refs" / "heads" / "v1").write_text("not a ref at all\n")
    assert GCP not in {r["customer"] for r in index.list_sessions()}
    assert index.search("kubernetes") == []


# -- the index file --------------------------------------------------------------------

def rebuilt(store: Store, where: Path) -> Index:
    index = Index(store, where / f"rebuilt-{time.monotonic_ns()}.sqlite")
    index.rebuild()
    return index


@pytest.mark.parametrize("damage", ["garbage", "truncated", "schema", "foreign", "missing"])
def test_an_unusable_index_file_is_moved_aside_and_rebuilt(tmp_path: Path, damage: str) -> None:
    store = build(tmp_path / "s")
    index = Index(store)
    expected = index.list_sessions()
    index.close()
    path = index.path
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] + b"\xff" * 4096)
    elif damage == "schema":
        with sqlite3.connect(path) as cx:
            cx.execute("PRAGMA user_version = 99")
    elif damage == "foreign":
        path.unlink()
        with sqlite3.connect(path) as cx:
            cx.execute("CREATE TABLE other (x)")
    else:
        path.unlink()
    before = path.read_bytes() if path.exists() else None
    fresh = Index(store)
    assert fresh.list_sessions() == expected
    assert fresh.search("bicep")
    if damage == "missing":
        assert fresh.moved_aside == []
    else:
        assert len(fresh.moved_aside) == 1 and fresh.moved_aside[0].read_bytes() == before
        assert fresh.moved_aside[0].parent == path.parent
        assert any("moved aside" in p for p in fresh.problems)
    assert fresh.dump() == rebuilt(store, tmp_path).dump()


def test_a_version_3_index_gets_the_list_index_in_place(tmp_path: Path) -> None:
    """Schema 4 differs from 3 only by the covering index of ``gitstore list``: a
    version-3 file is upgraded where it is (nothing moved aside or rebuilt), and the
    list query then reads that one index in order (no row lookups, no sort)."""
    store = build(tmp_path / "s")
    index = Index(store)
    expected = index.list_sessions()
    index.close()
    with contextlib.closing(sqlite3.connect(index.path)) as cx:
        cx.execute("DROP INDEX versions_listed")
        cx.execute("CREATE INDEX versions_updated ON versions (latest, updated)")
        cx.execute("PRAGMA user_version = 3")
        cx.commit()
    upgraded = Index(store)
    assert upgraded.list_sessions() == expected
    assert upgraded.moved_aside == [] and upgraded.problems == []
    with contextlib.closing(sqlite3.connect(index.path)) as cx:
        assert cx.execute("PRAGMA user_version").fetchone()[0] == 4
        names = {r[0] for r in cx.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "versions_listed" in names and "versions_updated" not in names
        plan = " ".join(r[3] for r in cx.execute(
            "EXPLAIN QUERY PLAN SELECT customer, version, status, completion_status, updated, "
            "provider, completeness, success, satisfaction, turns FROM versions "
            "WHERE latest = 1 ORDER BY updated DESC, customer, major, minor, patch"))
    assert "COVERING INDEX versions_listed" in plan and "TEMP B-TREE" not in plan, plan


def test_damage_found_after_opening_is_repaired(tmp_path: Path) -> None:
    store = build(tmp_path / "s")
    index = Index(store)
    expected = index.list_sessions()
    index.cx.execute("DROP TABLE versions")
    assert index.list_sessions() == expected
    assert len(index.moved_aside) == 1


# -- the writer's fast path against a rebuild ------------------------------------------

def written_files(store: Store, customer: str, commit: str) -> dict[str, bytes]:
    return store.customer(customer).repo.read_tree(commit)


def record(index: Index, store: Store, customer: str, commit: str) -> None:
    """What the lead's write path does after each write."""
    cust = store.customer(customer)
    info = cust.repo.commit(commit)
    version = info.trailer("Session-Version")
    assert version is not None
    scenario = version.split(".")[0]
    assert index.record(customer, scenario, commit, written_files(store, customer, commit))


def test_record_inserts_only_new_turns_and_reindexes_after_renumbering(
        tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), fsync=False)
    index = Index(store)
    session = store.customer(CUSTOMER).new_session(session_id=SESSION_ID,
                                                   created="2025-01-15T10:30:00Z")
    record(index, store, CUSTOMER, session.state.tip)
    ids = []
    for path in TURNS[:3]:
        w = session.append_turn(path.read_bytes())
        record(index, store, CUSTOMER, w.commit)
        rows = index.cx.execute("SELECT id FROM turns ORDER BY turn_id").fetchall()
        ids.append([r[0] for r in rows])
    assert ids[1][:1] == ids[0] and ids[2][:2] == ids[1], "earlier turns were not re-indexed"
    late = json.loads(TURNS[3].read_text())
    early = {**json.loads(TURNS[4].read_text()), "timestamp": "2025-01-15T10:31:00Z"}
    del late["turn_id"], early["turn_id"]
    record(index, store, CUSTOMER, session.append_turn(late).commit)
    kept = [r[0] for r in index.cx.execute("SELECT id FROM turns ORDER BY turn_id")]
    w = session.append_turn(early)  # lands as turn 2; turns 2.. are renumbered
    assert w.turn == 2
    record(index, store, CUSTOMER, w.commit)
    now = [r[0] for r in index.cx.execute("SELECT id FROM turns ORDER BY turn_id")]
    assert now[0] == kept[0] and not set(now[1:]) & set(kept[1:])
    assert index.refresh() == 0
    assert index.dump() == rebuilt(store, tmp_path).dump()
    assert [h["turn_id"] for h in index.search("platform team")] == [2]
    assert [h["turn_id"] for h in index.search("validate setup")] == [5]


OPS = st.lists(st.tuples(
    st.sampled_from(["new", "turn", "turn", "turn", "early-turn", "summary", "finalize",
                     "follow-up", "correct", "refresh", "lost-record"]),
    st.sampled_from(["customer-a", "customer-b"]),
    st.integers(min_value=0, max_value=119),
    st.sampled_from(["aws", "azure", "gcp"])), min_size=1, max_size=18)


def apply(store: Store, index: Index, op: str, customer: str, minute: int, provider: str,
          lost: list[bool]) -> None:
    cust = store.customer(customer)
    stamp = (datetime(2025, 1, 15, 10, 0, tzinfo=UTC) + timedelta(minutes=minute)) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    if op == "refresh":
        index.refresh()
        return

    class Recorder:
        """Each write is recorded as soon as it is made, as the write path will."""

        def append(self, commit: str) -> None:
            if op == "lost-record":
                lost.append(True)
            else:
                record(index, store, cust.name, commit)

    commits = Recorder()
    if op == "new" or not cust.exists:
        session = cust.new_session(created="2025-01-15T10:00:00Z")
        commits.append(session.state.tip)
    else:
        session = cust.session()
        if op in ("turn", "early-turn", "lost-record"):
            if not session.is_open:  # a follow-up conversation starts
                commits.append(session.follow_up().commit)
            turn = json.loads(TURNS[minute % 5].read_text())
            turn.pop("turn_id")
            turn["timestamp"] = stamp if op != "early-turn" else "2025-01-15T10:00:00Z"
            turn["user_input"]["query"] = f"{provider} question {minute}"
            written = session.append_turn(turn)
            if not written.replayed:  # a turn sent twice is the first write: nothing new
                commits.append(written.commit)
        elif op == "summary":
            commits.append(session.set_summary({"primary_cloud_provider": provider,
                                                "services_discussed": [provider, "iam"]}).commit)
        elif op in ("finalize", "correct"):
            summary = load_example("session", "conversation.json")["conversation_summary"]
            del summary["total_turns"]
            summary["primary_cloud_provider"] = provider
            meta = load_example("session", "session_metadata.json")
            for key in ("api_key", "session_id", "session_version"):
                del meta["session_info"][key]
            meta["session_info"].update(created_timestamp="2025-01-15T10:00:00Z",
                                        completed_timestamp="2025-01-15T13:00:00Z",
                                        session_duration_minutes=180)
            meta["quality_metrics"]["session_success_score"] = minute / 12
            analytics = load_example("session", "session_analytics.json")
            analytics["similarity_vectors"]["complexity_profile"] = provider
            if op == "correct" and minute % 2:
                commits.append(session.correct({"session_analytics.json": analytics},
                                                reason="fix").commit)
            elif op == "correct":  # a turn's text is corrected: same place, same timestamp
                conv = session.read().document("conversation.json")
                turns = conv["conversation_turns"]
                if turns:
                    turns[minute % len(turns)]["user_input"]["query"] += f" corrected {provider}"
                commits.append(session.correct({"conversation.json": conv},
                                               reason="typo").commit)
            else:
                if not session.history():
                    turn = json.loads(TURNS[0].read_text())
                    turn.pop("turn_id")
                    turn["timestamp"] = stamp
                    commits.append(session.append_turn(turn).commit)
                commits.append(session.set_summary(summary).commit)
                for name, doc in (("deployment_context.json",
                                   load_example("session", "deployment_context.json")),
                                  ("session_metadata.json", meta),
                                  ("session_analytics.json", analytics)):
                    commits.append(session.put(name, doc).commit)
                commits.append(session.finalize().commit)
        elif op == "follow-up":
            commits.append(session.follow_up().commit)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=OPS)
def test_incremental_updates_equal_a_rebuild(tmp_path_factory: pytest.TempPathFactory,
                                             ops: list[tuple[str, str, int, str]]) -> None:
    where = tmp_path_factory.mktemp("prop")
    store = Store.init(where / "s", clock=Clock(), fsync=False)
    index = Index(store)
    lost: list[bool] = []
    for op in ops:
        with contextlib.suppress(GitStoreError):  # refused by the store's rules: no write
            apply(store, index, *op, lost=lost)
    if not lost:
        assert index.refresh() == 0, "record() left the index stale"
    else:
        index.refresh()
    assert index.dump() == rebuilt(store, where).dump()
    fresh = Index(store, where / "by-refresh.sqlite")
    fresh.refresh()
    assert fresh.dump() == index.dump()
    assert index.cx.execute("INSERT INTO turns_fts (turns_fts) VALUES ('integrity-check')")


def test_a_corrected_turn_is_reindexed(finalized: Any, tmp_path: Path) -> None:
    store = finalized.customer.store
    index = Index(store, tmp_path / "own.sqlite")
    index.refresh()
    conv = finalized.read().document("conversation.json")
    conv["conversation_turns"][1]["user_input"]["query"] = "A REST API called quokka-api."
    w = finalized.correct({"conversation.json": conv}, reason="the API name was misheard")
    record(index, store, CUSTOMER, w.commit)
    assert [(h["version"], h["turn_id"]) for h in index.search("quokka")] == [("v1.0.0", 2)]
    assert index.search("production-api single stage") == []
    assert index.refresh() == 0
    assert index.dump() == rebuilt(store, tmp_path).dump()


def test_record_never_raises(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), fsync=False)
    index = Index(store)
    assert index.record("customer-nobody", "v1", "0" * 40, {}) is False
    assert index.record("../escape", "v1", "0" * 40, {}) is False


# -- the command line ---------------------------------------------------------------------

def cli(root: Path, *args: str, code: int = 0) -> CliResult:
    """``gitstore --root ROOT ARGS`` in this process; check the exit code."""
    # Registers the query commands (a no-op once gitstore.cli.app imports the module). Imported
    # here, not at the top, so that collecting this file leaves the group as it ships.
    import gitstore.cli.query  # noqa: F401

    result = run_cli(root, *args)
    assert "Traceback" not in result.err, result.err
    assert result.code == code, f"{args}: exit {result.code}\n{result.err}"
    return result


def test_cli_json_matches_the_api(world: tuple[Store, Index]) -> None:
    store, index = world
    root = store.root
    assert cli(root, "list", "-o", "json").json() == index.list_sessions()
    got = cli(root, "list", "--provider", "aws", "--status", "open", "--sort", "turns",
              "--asc", "-n", "1", "-o", "json").json()
    assert keys(got) == [(AWS3, "v2.0.0")]
    assert cli(root, "stats", "-o", "json").json() == index.stats()
    hits = cli(root, "search", "bicep", "-n", "2", "-o", "json").json()
    assert len(hits) == 2 and {h["customer"] for h in hits} == {AZURE}
    assert set(hits[0]) == {"customer", "scenario", "version", "turn_id", "timestamp",
                            "snippet", "score"}
    sim = cli(root, "similar", CUSTOMER, "v1.0.0", "-o", "json").json()
    assert keys(sim) == [(AWS3, "v1.0.0"), (AZURE, "v1.0.0")]
    long_ago = cli(root, "active", "--timeout", "99999d", "-o", "json").json()
    assert keys(long_ago) == [(AWS3, "v2.0.0"), (CUSTOMER, "v1.1.0"), (GCP, "v1.0.0")]
    assert cli(root, "active", "-o", "json").json() == []  # now is 2025+ years on


def test_cli_text_output_is_aligned(world: tuple[Store, Index]) -> None:
    store, _ = world
    lines = cli(store.root, "list").text.splitlines()
    assert lines[0].split() == ["CUSTOMER", "VERSION", "STATUS", "PROVIDER", "UPDATED", "TURNS",
                                "COMPLETE", "SATISFACTION", "SUCCESS"]
    assert len(lines) == 6
    col = lines[0].index("VERSION")
    assert all(line[col - 2:col] == "  " and line[col] == "v" for line in lines[1:])
    assert "bicep" in cli(store.root, "search", "bicep").text
    out = cli(store.root, "stats").text
    assert "sessions" in out and "azure" in out


@pytest.mark.parametrize("text", ['"', "NEAR(", "a OR (", "*", "-x"])
def test_cli_search_hostile_text(world: tuple[Store, Index], text: str) -> None:
    store, _ = world
    assert isinstance(cli(store.root, "search", "-o", "json", "--", text).json(), list)


def test_cli_resume(world: tuple[Store, Index]) -> None:
    store, _ = world
    data = cli(store.root, "resume", SESSION_ID, "-o", "json").json()
    assert (data["customer"], data["scenario"], data["version"], data["status"]) == \
        (CUSTOMER, "v1", "v1.1.0", "open")
    snap = store.customer(CUSTOMER).read("v1")
    assert data["documents"] == snap.documents()
    assert data["commit"] == snap.commit
    text = cli(store.root, "resume", SESSION_ID).text
    assert "== conversation.json ==" in text and "v1.1.0" in text
    assert "Which CloudWatch alarms" in text
    proc = cli(store.root, "resume", "orchestrator-session-none", code=3)
    assert "no session" in proc.err


def test_cli_errors(world: tuple[Store, Index]) -> None:
    store, _ = world
    cli(store.root, "active", "--timeout", "soon", code=2)
    cli(store.root, "list", "--sort", "nope", code=2)
    cli(store.root, "list", "--since", "yesterday", code=2)
    cli(store.root, "similar", CUSTOMER, "v7.0.0", code=3)


def test_cli_reindex_is_quiet_when_piped(tmp_path: Path) -> None:
    store = build(tmp_path / "s")
    proc = cli(store.root, "reindex")
    assert proc.out == b""
    assert proc.err.startswith("indexed 4 customer(s), 6 version(s), 20 turn(s)")
    assert len(proc.err.splitlines()) == 1
    assert Index(store).dump() == rebuilt(store, tmp_path).dump()


def test_python_m_gitstore_cli_has_the_query_commands(world: tuple[Store, Index]) -> None:
    store, index = world

    def run(*args: str) -> Any:
        proc = subprocess.run([sys.executable, "-m", "gitstore", "--root", str(store.root),
                               *args, "-o", "json"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
                              check=False)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return json.loads(proc.stdout)

    assert run("list") == index.list_sessions()
    assert run("stats") == index.stats()
    assert run("search", 'NEAR( "bicep" OR') == []
    assert {h["customer"] for h in run("search", "bicep")} == {AZURE}
    assert keys(run("similar", CUSTOMER, "v1.0.0")) == [(AWS3, "v1.0.0"), (AZURE, "v1.0.0")]
    assert run("active", "--timeout", "99999d")
    assert run("resume", SESSION_ID)["customer"] == CUSTOMER


def test_hashed_names_never_reach_the_index(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), fsync=False)
    store.enable_hashed_names()
    record_example_session(store, "customer-secret-key")
    index = Index(store)
    rows = index.list_sessions(customer="customer-secret-key")
    hashed = store.customer("customer-secret-key").name
    assert keys(rows) == [(hashed, "v1.0.0")] and hashed != "customer-secret-key"
    assert "customer-secret-key" not in repr(index.dump())
    assert "customer-secret-key" not in index.path.read_bytes().decode("latin-1")


def test_concurrent_first_queries_build_one_index(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = build(tmp_path / "s")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: Index(store).list_sessions(), range(4)))
    assert all(r == results[0] for r in results) and len(results[0]) == 5
    assert Index(store).dump() == rebuilt(store, tmp_path).dump()


def test_an_index_path_that_cannot_be_opened_is_a_storage_error(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(), fsync=False)
    (tmp_path / "dir.sqlite").mkdir()
    index = Index(store, tmp_path / "dir.sqlite")
    with pytest.raises(StorageError):
        index.list_sessions()
    assert (tmp_path / "dir.sqlite").is_dir() and index.moved_aside == []
