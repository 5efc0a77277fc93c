"""Expiry and retention on real stores, checked with plain git.

A template store is recorded once (scenario v1: v1.0.0 and correction v1.0.1,
finalized in January 2025; scenario v2: open, one turn) and copied for each
test. Time is the store's clock: a store opened on the copy with a later clock
sees the sessions as old.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

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

from gitstore import ConflictError, Store, UsageError
from gitstore.git.locking import writer_lock
from gitstore.ops import hub as hub_ops
from gitstore.ops import retention as rt
from gitstore.ops import syncing, tracking
from gitstore.ops.verify import check_customer
from gitstore.store import config as config_mod

START = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)


def at(root: Path, days: float) -> Store:
    """The store at ``root`` with a clock ``days`` after the recording."""
    return Store(root, clock=Clock(START + timedelta(days=days)))


def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, gitstore.cli.app, gitstore.cli.data; "
         "gitstore.cli.app.main(sys.argv[1:])", *args],
        capture_output=True, env=env, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert proc.returncode == code, f"exit {proc.returncode}: {proc.stderr.decode()}"
    return proc


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "sessions"
    store = Store.init(root, clock=Clock(START))
    session = record_example_session(store)
    session.correct({"session_analytics.json": load_example("correction",
                                                            "session_analytics.json")},
                    reason="actual implementation time came in")
    v2 = store.customer(CUSTOMER).new_session(created="2025-01-15T12:00:00Z")
    v2.append_turn({"timestamp": "2025-01-15T12:01:00Z",
                    "user_input": {"query": "What about the staging stage?"},
                    "agent_response": {"orchestrator_response": "Same collector."}})
    return root


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "sessions"
    shutil.copytree(template, copy)
    return copy


def write_policy(root: Path, data: object) -> None:
    (root / ".gitstore" / "policy.json").write_text(json.dumps(data))


# -- policy ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2h", timedelta(hours=2)), ("7d", timedelta(days=7)), ("30 days", timedelta(days=30)),
    ("2_year_retention", timedelta(days=730)), ("1w", timedelta(weeks=1)),
    ("90min", timedelta(minutes=90)), ("indefinite_retention", None), (None, None),
    ("2m", timedelta(minutes=2)),  # one duration grammar everywhere: m is minutes
])
def test_durations(text: str | None, expected: timedelta | None) -> None:
    assert rt.parse_period(text) == expected


@pytest.mark.parametrize("text", ["", "7", "0d", "-1d", "3 fortnights", "1.5y", 7])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(UsageError):
        rt.parse_period(text)


def test_policy_file(tmp_path: Path) -> None:
    (tmp_path / ".gitstore").mkdir()
    assert rt.load_policy(tmp_path) == rt.Policy()  # seed 000's values, no expiry
    assert rt.Policy().to_json()["retention_policies"] == {
        "active_customer_sessions": "indefinite", "completed_sessions": "2y",
        "error_logs": "1y", "analytics_summaries": "5y"}
    write_policy(tmp_path, {"expiry": "2h", "retention_policies": {
        "completed_sessions": "2_year_retention", "analytics_summaries": "indefinite"}})
    policy = rt.load_policy(tmp_path)
    assert policy.expiry == timedelta(hours=2) and policy.analytics_summaries is None
    for bad in ({"expiry": "soon"}, {"retention": {}},
                {"retention_policies": {"complete_sessions": "2y"}}):
        write_policy(tmp_path, bad)
        with pytest.raises(UsageError):
            rt.load_policy(tmp_path)


# -- expiry ------------------------------------------------------------------------

def test_expire_records_expiry_with_a_commit(root: Path) -> None:
    repo = root / CUSTOMER
    before = repo_state(repo)
    store = at(root, 8)
    found = rt.expire(store, older_than=timedelta(days=7), dry_run=True)
    assert [(e.scenario, e.version) for e in found] == [("v2", "v2.0.0")]
    assert repo_state(repo) == before  # a dry run writes nothing
    assert rt.expire(at(root, 6), older_than=timedelta(days=7)) == []  # not idle long enough
    (done,) = rt.expire(store, older_than=timedelta(days=7))
    assert done.commit == git(repo, "rev-parse", "v2").strip()
    assert git(repo, "log", "-1", "--format=%(trailers:key=Change,valueonly)", "v2").strip() \
        == "expire"
    meta = json.loads(git(repo, "show", "v2:session_metadata.json"))
    assert meta["workflow_tracking"] == {"completion_status": "expired"}  # created
    assert git(repo, "rev-parse", "v2~1").strip() == found[0].last_commit
    assert git(repo, "tag", "-l", "v2*") == ""  # still open: nothing finalized
    assert store.customer(CUSTOMER).session("v2").is_open
    assert repo_state(repo)[1].count("\n") > before[1].count("\n")  # nothing deleted
    assert rt.expire(at(root, 30), older_than=timedelta(days=7)) == []  # once only
    assert not check_customer(store.customer(CUSTOMER)).problems
    git(repo, "fsck", "--strict")


def test_expire_timeout_comes_from_the_policy(root: Path) -> None:
    with pytest.raises(UsageError, match="no expiry timeout"):
        rt.expire(at(root, 8))
    write_policy(root, {"expiry": "7d"})
    assert [e.version for e in rt.expire(at(root, 8))] == ["v2.0.0"]


def test_expire_cli(root: Path) -> None:
    out = cli("--root", str(root), "expire", "--older-than", "1d", "--dry-run",
              "-o", "json").stdout
    assert [e["version"] for e in json.loads(out)] == ["v2.0.0"]  # real clock: long idle
    cli("--root", str(root), "expire", "--older-than", "forever", code=2)
    text = cli("--root", str(root), "expire", CUSTOMER, "--older-than", "1d").stdout.decode()
    assert "v2.0.0" in text and "expired in" in text


# -- retention ---------------------------------------------------------------------

def test_plan_shows_what_goes_and_changes_nothing(root: Path) -> None:
    before = repo_state(root / CUSTOMER)
    assert [i for i in rt.plan(at(root, 700)) if i.goes] == []  # under two years
    items = {i.target: i for i in rt.plan(at(root, 800))}
    v1, v2 = items["v1"], items["v2"]
    assert (v1.action, v1.status, v1.policy) == \
        ("purge-keep-analytics", "completed", "completed_sessions")
    assert v1.versions == ("v1.0.0", "v1.0.1") and v1.basis == "tag v1.0.1"
    assert v1.keep_until is not None and v1.keep_until - v1.since == timedelta(days=5 * 365)
    assert (v2.action, v2.status) == ("keep", "active")
    assert repo_state(root / CUSTOMER) == before


def test_apply_purges_for_real_and_keeps_the_analytics(root: Path) -> None:
    repo = root / CUSTOMER
    gone = {git(repo, "rev-parse", f"v1.0.0:{n}").strip()
            for n in ("conversation.json", "deployment_context.json", "sow_document.md")}
    old_commits = git(repo, "rev-list", "v1").split()
    v2_before = git(repo, "rev-list", "--objects", "v2")
    analytics = git(repo, "show", "v1.0.1:session_analytics.json")
    analytics_id = git(repo, "rev-parse", "v1.0.1:session_analytics.json").strip()
    done = rt.apply(at(root, 800))
    assert [(i.target, i.action) for i in done] == [("v1", "purge-keep-analytics")]
    for oid in [*gone, *old_commits]:
        assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", oid],
                              capture_output=True, check=False).returncode != 0, oid
    fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--unreachable"],
                          capture_output=True, text=True, check=False)
    assert fsck.returncode == 0 and fsck.stdout == "", fsck.stdout + fsck.stderr
    log = git(repo, "log", "--all", "--format=%H")
    assert not set(old_commits) & set(log.split())
    assert git(repo, "tag", "-l") == ""
    assert git(repo, "rev-list", "--objects", "v2") == v2_before  # untouched
    assert git(repo, "ls-tree", "--name-only", "v1").split() == \
        ["SHA256SUMS", "session_analytics.json"]
    assert git(repo, "show", "v1:session_analytics.json") == analytics
    assert git(repo, "rev-list", "--count", "v1").strip() == "1"  # a new root commit
    trailers = git(repo, "log", "-1", "--format=%(trailers)", "v1")
    assert "Change: retention" in trailers and "Retention-Policy: completed_sessions" \
        in trailers and "Purged-Versions: v1.0.0, v1.0.1" in trailers
    assert "Session-Version" not in trailers
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/v2"
    log_ = Store(root).customer(CUSTOMER).audit_log
    (stone,) = [r for r in log_.records() if r["op"] == "retention:purge"]
    detail = json.loads(stone["detail"])
    assert detail["versions"] == ["v1.0.0", "v1.0.1"] and detail["policy"] == "completed_sessions"
    assert "API Gateway" not in stone["detail"]  # what, when, why: no content
    assert not log_.verify()
    assert not check_customer(Store(root).customer(CUSTOMER)).problems
    assert rt.apply(at(root, 801)) == []  # nothing else is due
    # five years on, the analytics summary goes too
    later = [(i.target, i.action) for i in rt.apply(at(root, 5 * 365 + 1))]
    assert later == [("v1", "purge-analytics")]
    assert git(repo, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/v2"]
    git(repo, "fsck", "--strict")
    assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", analytics_id],
                          capture_output=True, check=False).returncode != 0


def test_the_purge_runs_under_the_writer_lock(root: Path) -> None:
    store = Store(root, clock=Clock(START + timedelta(days=800)), lock_timeout=0.2)
    before = repo_state(root / CUSTOMER)
    with writer_lock(store.lock_dir, CUSTOMER, 1), pytest.raises(ConflictError):
        rt.apply(store)  # a writer holds the lock: the purge waits, then gives up
    assert repo_state(root / CUSTOMER) == before
    assert rt.apply(store)


def test_without_analytics_retention_the_scenario_goes_entirely(root: Path) -> None:
    write_policy(root, {"retention_policies": {"completed_sessions": "1y",
                                               "active_customer_sessions": "1y",
                                               "analytics_summaries": "1y"}})
    repo = root / CUSTOMER
    done = rt.apply(at(root, 400))
    assert sorted((i.target, i.action) for i in done) == [("v1", "purge"), ("v2", "purge")]
    assert git(repo, "for-each-ref") == "" and git(repo, "log", "--all") == ""
    counts = git(repo, "count-objects", "-v")
    assert "count: 0\n" in counts and "in-pack: 0\n" in counts  # no object left
    git(repo, "fsck", "--strict")
    assert not check_customer(Store(root).customer(CUSTOMER)).problems
    assert len([r for r in Store(root).customer(CUSTOMER).audit_log.records()
                if r["op"] == "retention:purge"]) == 2


def test_an_expired_session_ends_like_a_completed_one(root: Path) -> None:
    rt.expire(at(root, 10), older_than=timedelta(days=7))
    # the expiry commit starts the clock (2y); v2 has no analytics, so nothing is kept
    items = {i.target: i for i in rt.plan(at(root, 10 + 729))}
    assert (items["v2"].status, items["v2"].action) == ("expired", "keep")
    items = {i.target: i for i in rt.plan(at(root, 10 + 731))}
    assert (items["v2"].status, items["v2"].action) == ("expired", "purge")


def test_a_follow_up_in_progress_keeps_the_scenario(root: Path) -> None:
    Store(root, clock=Clock(START + timedelta(days=1))).customer(CUSTOMER).session("v1") \
        .follow_up()
    items = {i.target: i for i in rt.plan(at(root, 3000))}
    assert (items["v1"].status, items["v1"].action) == ("active", "keep")


def test_error_logs_are_the_damaged_objects_repair_set_aside(root: Path) -> None:
    damaged = root / CUSTOMER / "gitstore-damaged"
    for stamp in ("20250101T000000000000Z", "20260301T000000000000Z"):
        (damaged / stamp / "objects" / "ab").mkdir(parents=True)
        (damaged / stamp / "objects" / "ab" / "cdef").write_bytes(b"damaged")
    store = Store(root, clock=Clock(datetime(2026, 6, 1, tzinfo=UTC)))
    plan = [(i.target, i.action) for i in rt.plan(store) if i.status == "error-log"]
    assert plan == [("gitstore-damaged/20250101T000000000000Z", "delete"),
                    ("gitstore-damaged/20260301T000000000000Z", "keep")]
    before = repo_state(root / CUSTOMER)
    assert [i.target for i in rt.apply(store)] == ["gitstore-damaged/20250101T000000000000Z"]
    assert [p.name for p in damaged.iterdir()] == ["20260301T000000000000Z"]
    assert repo_state(root / CUSTOMER) == before  # sessions untouched


def test_retention_cli(root: Path) -> None:
    write_policy(root, {"retention_policies": {"completed_sessions": "1y"}})
    plan = json.loads(cli("--root", str(root), "retention", "plan", "-o", "json").stdout)
    assert [(i["target"], i["action"]) for i in plan] == [("v1", "purge-keep-analytics")]
    shown = cli("--root", str(root), "retention", "plan", "--all").stdout.decode()
    assert "keep" in shown and "active_customer_sessions=indefinite" in shown
    before = repo_state(root / CUSTOMER)
    cli("--root", str(root), "retention", "apply", code=2)  # not a terminal, no --yes
    assert repo_state(root / CUSTOMER) == before
    done = json.loads(cli("--root", str(root), "retention", "apply", "--yes",
                          "-o", "json").stdout)
    assert [i["target"] for i in done] == ["v1"]
    assert git(root / CUSTOMER, "tag", "-l") == ""
    cli("--root", str(root), "verify")


def test_a_run_killed_between_purge_and_prune_is_finished_by_the_next(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refs go first, the objects with the prune. A run killed between the
    two leaves nothing for the plan to find; the mark it left makes the next
    run prune, so the purged data does not stay readable."""
    repo = root / CUSTOMER
    gone = git(repo, "rev-parse", "v1.0.0:conversation.json").strip()

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed before the prune")

    monkeypatch.setattr(rt, "maintain_locked", killed)
    with pytest.raises(KeyboardInterrupt):
        rt.apply(at(root, 800))
    monkeypatch.undo()
    assert (repo / rt.PRUNE_PENDING).exists()
    assert git(repo, "tag", "-l") == ""  # purged: the refs are gone ...
    assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", gone]).returncode == 0
    assert rt.apply(at(root, 800)) == []  # ... nothing left to plan, and yet:
    assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", gone],
                          capture_output=True).returncode != 0
    assert not (repo / rt.PRUNE_PENDING).exists()
    git(repo, "fsck", "--strict", "--no-dangling")
    assert check_customer(at(root, 800).customer(CUSTOMER)).problems == []


@pytest.mark.parametrize("days", [800, 5 * 365 + 800])  # analytics kept; all gone
def test_a_purge_leaves_no_copy_a_sync_fetched_and_no_sync_fetches_it_back(
        root: Path, tmp_path: Path, days: float) -> None:
    """The hub's copy of a purged scenario as the last sync fetched it (the
    ``refs/remotes/hub/`` refs) goes with the purge, and later syncs do not fetch
    it back: retention purges do not travel, the hub keeps its copy until its own
    ``retention apply``."""
    made = hub_ops.init(tmp_path / "hub")
    hub_ops.add(made, CUSTOMER)
    store = at(root, 1)
    store.config = store.config._replace(remote=f"file://{made.path}/{{customer}}")
    config_mod.save(root, store.config)
    assert syncing.sync(store)[0].error is None
    repo, on_hub = root / CUSTOMER, made.path / CUSTOMER
    purged = git(on_hub, "rev-list", "v1").split()
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/remotes/hub/tags/")
    done = rt.apply(at(root, days))
    assert ("v1", "purge-keep-analytics" if days == 800 else "purge") in \
        [(i.target, i.action) for i in done]
    for when in ("after the purge", "after a sync", "after another sync"):
        refs = git(repo, "for-each-ref", "--format=%(refname)").split()
        assert not [r for r in refs if r.startswith(("refs/remotes/hub/heads/v1",
                                                     "refs/remotes/hub/tags/v1."))], when
        for oid in purged:
            assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", oid],
                                  capture_output=True, check=False).returncode != 0, when
        outcome = syncing.sync(at(root, days))[0]
        assert outcome.error is None, outcome.error
    assert git(on_hub, "rev-list", "v1").split() == purged  # the hub's own: untouched
    assert not check_customer(Store(root).customer(CUSTOMER)).problems


def _scenario(store: Store, marker: str, finalize: bool = True) -> str:
    """A new scenario of CUSTOMER holding the example session, its questions marked."""
    sid = f"orchestrator-session-{marker.lower()}-0001"
    session = store.customer(CUSTOMER).new_session(session_id=sid,
                                                   created="2025-01-15T10:30:00Z")
    for path in sorted((EXAMPLES / "session" / "turns").glob("turn-*.json")):
        data = json.loads(path.read_bytes())
        data["user_input"]["query"] = f"{marker}: {data['user_input']['query']}"
        session.append_turn(data)
    session.set_summary(load_example("session", "conversation.json")["conversation_summary"])
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name == "session_metadata.json":
            doc["session_info"].update(api_key=CUSTOMER, session_id=sid)
            doc["session_info"].pop("session_version", None)
        session.put(name, doc)
    if finalize:
        session.finalize()
    return sid


def test_a_purge_drops_what_a_sync_set_aside_of_a_renumbered_scenario(tmp_path: Path) -> None:
    """Two machines open v2 offline; the second's is rebuilt as v3 by its sync, which
    keeps its original under refs/gitstore/sync/replaced/heads/v2/... A purge of v3
    drops that copy (found by its session, not its old number) and keeps the other
    machine's v2 and everything of it."""
    made = hub_ops.init(tmp_path / "hub")
    hub_ops.add(made, CUSTOMER)
    a, b = tmp_path / "a", tmp_path / "b"
    store_a = Store.init(a, clock=Clock(START))
    config_mod.save(a, store_a.config._replace(remote=f"file://{made.path}/{{customer}}"))
    _scenario(at(a, 0), "FIRST")
    assert syncing.sync(at(a, 0))[0].error is None
    syncing.clone(Store.init(b, clock=Clock(START)), f"file://{made.path}",
                  [Store(b).customer(CUSTOMER)])
    _scenario(at(a, 0), "A-OPEN", finalize=False)
    sid_b = _scenario(at(b, 0), "B-SECRET")
    assert syncing.sync(at(a, 0))[0].error is None
    assert syncing.sync(at(b, 0))[0].error is None
    repo = b / CUSTOMER
    aside = git(repo, "for-each-ref", "--format=%(refname)", "refs/gitstore/sync/replaced/")
    assert "refs/gitstore/sync/replaced/heads/v2/" in aside, aside  # B's v2, now v3
    assert git(repo, "log", "-1", "--format=%(trailers:key=Session-Id,valueonly)",
               "v3").strip() == sid_b
    done = rt.apply(at(b, 800))
    assert ("v3", "purge-keep-analytics") in [(i.target, i.action) for i in done]
    assert git(repo, "for-each-ref", "refs/gitstore/sync/replaced/") == ""
    assert git(repo, "grep", "-c", "B-SECRET", *git(repo, "for-each-ref", "--format=%(refname)")
               .split(), check=False) == ""
    assert "A-OPEN" in git(repo, "show", "v2:conversation.json")  # the other machine's, kept


def _diverged(tmp_path: Path, value_a: str, value_b: str) -> tuple[Path, Path]:
    """Machines a and b share v1 through a hub, then each puts its own value in the
    same field of deployment_context.json: b's sync prepares a merge for review
    (refs/gitstore/merges/v1, holding both sides) and b finalizes v1."""
    made = hub_ops.init(tmp_path / "hub")
    hub_ops.add(made, CUSTOMER)
    a, b = tmp_path / "a", tmp_path / "b"
    store_a = Store.init(a, clock=Clock(START))
    config_mod.save(a, store_a.config._replace(remote=f"file://{made.path}/{{customer}}"))
    _scenario(at(a, 0), "FIRST", finalize=False)
    assert syncing.sync(at(a, 0))[0].error is None
    syncing.clone(Store.init(b, clock=Clock(START)), f"file://{made.path}",
                  [Store(b).customer(CUSTOMER)])
    for root, value in ((a, value_a), (b, value_b)):
        doc = {**load_example("session", "deployment_context.json"), "marker": value}
        at(root, 0).customer(CUSTOMER).session().put("deployment_context.json", doc)
        assert syncing.sync(at(root, 0))[0].error is None
    at(b, 0).customer(CUSTOMER).session().finalize()
    return b / CUSTOMER, b


def _readable(repo: Path, *words: str) -> str:
    refs = git(repo, "for-each-ref", "--format=%(refname)").split()
    found = subprocess.run(["git", "-C", str(repo), "grep", "-l", *[
        a for w in words for a in ("-e", w)], *refs], capture_output=True, text=True,
        check=False)
    return found.stdout


def test_a_purge_drops_the_merge_pending_on_the_scenario(tmp_path: Path) -> None:
    repo, b = _diverged(tmp_path, "A-SECRET", "B-SECRET")
    assert git(repo, "for-each-ref", "refs/gitstore/merges/")  # pending, both sides in it
    assert "refs/gitstore/merges/v1" in _readable(repo, "A-SECRET", "B-SECRET")
    done = rt.apply(at(b, 800))
    assert [(i.target, i.action) for i in done] == [("v1", "purge-keep-analytics")]
    assert git(repo, "for-each-ref", "refs/gitstore/merges/") == ""
    assert _readable(repo, "A-SECRET", "B-SECRET") == ""
    ops = [r["op"] for r in Store(b).customer(CUSTOMER).audit_log.records()]
    assert "merge:abort" in ops


def test_a_purge_killed_after_dropping_copies_is_finished_by_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copies go first: a run killed before the purge itself leaves the scenario
    for the next run to purge, and nothing of it stays readable after that run."""
    repo, b = _diverged(tmp_path, "A-SECRET", "B-SECRET")
    real = tracking.drop_copies

    def killed(*args: object) -> int:
        real(*args)
        raise KeyboardInterrupt  # as a kill -9 right after, with nothing purged yet

    monkeypatch.setattr(tracking, "drop_copies", killed)
    with pytest.raises(KeyboardInterrupt):
        rt.apply(at(b, 800))
    monkeypatch.setattr(tracking, "drop_copies", real)
    assert [(i.target, i.action) for i in rt.apply(at(b, 800))] == \
        [("v1", "purge-keep-analytics")]
    assert syncing.sync(at(b, 800))[0].error is None
    assert _readable(repo, "A-SECRET", "B-SECRET") == ""


@pytest.mark.parametrize("damage", [None, "truncated", "null source"])
def test_a_purge_drops_a_merge_pending_from_the_scenario_whatever_its_merge_json(
        root: Path, damage: str | None) -> None:
    """A merge of v1 into v2 waiting for review holds v1's history (a parent) and its
    documents: a purge of v1 drops it, told by the pending commit's parents, so a
    damaged merge.json neither keeps v1 readable nor fails the run (it exited 70)."""
    store = at(root, 1)
    merging = store.customer(CUSTOMER).merge("v1", into="v2", reviewer="Rev <r@x.invalid>")
    repo = root / CUSTOMER
    ref = "refs/gitstore/merges/v2"
    assert merging.written is None and git(repo, "rev-parse", ref)
    if damage is not None:
        data = json.loads(git(repo, "show", f"{ref}:merge.json"))
        text = "{\"format\": \"gitstore-merge\", trunc" if damage == "truncated" else \
            json.dumps({**data, "source_commit": None})
        blob = git(repo, "hash-object", "-w", "--stdin", input=text.encode()).strip()
        tree = git(repo, "mktree", input=f"100644 blob {blob}\tmerge.json\n".encode()).strip()
        parents = git(repo, "rev-parse", f"{ref}^1", f"{ref}^2").split()
        damaged = git(repo, "commit-tree", tree, "-p", parents[0], "-p", parents[1], "-m",
                      "damaged").strip()
        git(repo, "update-ref", ref, damaged)
    v1 = git(repo, "rev-parse", "v1").strip()
    done = rt.apply(at(root, 800))
    assert ("v1", "purge-keep-analytics") in [(i.target, i.action) for i in done]
    assert git(repo, "for-each-ref", "refs/gitstore/merges/") == ""
    assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", v1],
                          capture_output=True, check=False).returncode != 0
    assert "v2" in git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/")
