"""Merging sessions with manual review, as users do it: real processes, the CLI,
and plain git to check the result (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, git, record_example_session, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import ConflictError, NotFoundError, Store

C = "acme-retail"


def turn(minute: int, text: str, second: int = 0) -> dict[str, Any]:
    return {"timestamp": f"2025-01-15T10:{minute:02d}:{second:02d}Z",
            "user_input": {"query": text}, "agent_response": {"orchestrator_response": "ok"}}


def cli(root: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gitstore", "--root", str(root), *args],
                          input=stdin, capture_output=True, env=env, timeout=120, check=False)


def two_scenarios(root: Path, ctx_a: Any = None, ctx_b: Any = None) -> Store:
    store = Store.init(root)
    c = store.customer(C)
    a = c.new_session(session_id="scenario-a", created="2025-01-15T10:00:00Z")
    b = c.new_session(session_id="scenario-b", created="2025-01-15T10:00:00Z",
                      allow_open=True)
    for m in (1, 5):
        a.append_turn(turn(m, f"a{m}"))
    for m in (2, 7):
        b.append_turn(turn(m, f"b{m}"))
    if ctx_a is not None:
        a.put("deployment_context.json", ctx_a)
    if ctx_b is not None:
        b.put("deployment_context.json", ctx_b)
    return store


def refs(root: Path) -> str:
    return git(root / C, "for-each-ref", "--format=%(refname) %(objectname)")


def clean(root: Path) -> None:
    git(root / C, "fsck", "--strict")
    result = run_cli(root, "verify", C)
    assert result.code == 0, result.err


WRITER = r"""
import sys
from gitstore import Store
root, sid, tag, minutes = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
s = Store(root).customer("acme-retail").new_session(
    session_id=sid, created="2025-01-15T10:00:00Z", allow_open=True)
for m in minutes:
    s.append_turn({"timestamp": f"2025-01-15T10:{int(m):02d}:00Z",
                   "user_input": {"query": f"{tag}{m}"},
                   "agent_response": {"orchestrator_response": "ok"}})
    print(f"{tag}{m}", flush=True)
"""


def test_two_scenarios_opened_concurrently_merge_into_one(tmp_path: Path) -> None:
    root = tmp_path / "s"
    Store.init(root)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), f"sid-{tag}", tag,
                               minutes], stdout=subprocess.PIPE, env=env)
             for tag, minutes in (("x", "1,4,9,12"), ("y", "2,3,10"))]
    acked = [p.communicate(timeout=120)[0].decode().split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    before = Store(root).customer(C).scenarios()
    assert [str(s) for s in before] == ["v1", "v2"]
    result = cli(root, "merge", C, "v2", "--into", "v1")
    assert result.returncode == 0, result.stderr.decode()
    session = Store(root).customer(C).session("v1")
    queries = [t["user_input"]["query"] for t in session.history()]
    assert sorted(queries) == sorted(acked[0] + acked[1])  # every turn once
    stamps = [t["timestamp"] for t in session.history()]
    assert stamps == sorted(stamps)
    graph = git(root / C, "log", "--graph", "--format=%s%n%(trailers)", "v1")
    assert "merge v2 into v1" in graph and "Change: merge" in graph
    assert "Merged-From: v2 " in graph and graph.count("*") >= 2 and "|\\" in graph
    clean(root)
    refused = cli(root, "turn", C, "-s", "v2", "-", stdin=json.dumps(turn(30, "late")).encode())
    assert refused.returncode == 5 and b"merged away" in refused.stderr


def test_a_conflict_waits_for_a_reviewer_in_another_process(tmp_path: Path) -> None:
    root = tmp_path / "s"
    two_scenarios(root, {"region": "eu-west-1", "tier": "gold"},
                  {"region": "us-east-1", "tier": "gold"})
    branches = git(root / C, "for-each-ref", "refs/heads")
    stopped = cli(root, "merge", C, "v2", "--into", "v1")
    assert stopped.returncode == 0 and b"1 conflict(s) to review" in stopped.stderr
    assert git(root / C, "for-each-ref", "refs/heads") == branches  # nothing written
    listed = cli(root, "conflicts", C, "-o", "json")
    data = json.loads(listed.stdout)
    (conflict,) = data["conflicts"]
    assert (conflict["document"], conflict["pointer"]) == ("deployment_context.json",
                                                          "/region")
    assert (conflict["ours"], conflict["theirs"]) == ("eu-west-1", "us-east-1")
    plain = git(root / C, "show", "refs/gitstore/merges/v1:merge.json")
    assert json.loads(plain)["conflicts"][0]["label"] == conflict["label"]  # plain git
    early = cli(root, "merge", C, "--continue")
    assert early.returncode == 6 and b"unresolved" in early.stderr
    assert cli(root, "--agent", "rev <rev@example.invalid>", "resolve", C,
               conflict["label"], "--with", "theirs").returncode == 0
    done = cli(root, "--agent", "lead <lead@example.invalid>", "merge", C, "--continue")
    assert done.returncode == 0, done.stderr.decode()
    body = git(root / C, "log", "-1", "--format=%B", "v1")
    # plain git tells who decided the conflict and who wrote the merge
    assert f"Resolved: {conflict['label']}=theirs by rev <rev@example.invalid>" in body
    assert "Reviewed-By: lead <lead@example.invalid>" in body
    ctx = Store(root).customer(C).read("v1").document("deployment_context.json")
    assert ctx == {"region": "us-east-1", "tier": "gold"}
    assert git(root / C, "for-each-ref", "refs/gitstore/merges") == ""
    clean(root)


def test_abort_leaves_every_ref_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "s"
    two_scenarios(root, {"region": "eu"}, {"region": "us"})
    before = refs(root)
    assert cli(root, "merge", C, "v2").returncode == 0
    assert refs(root) != before
    assert cli(root, "merge", C, "--abort").returncode == 0
    assert refs(root) == before
    clean(root)


def test_merging_into_a_finalized_version_opens_the_next_minor(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s")
    record_example_session(store, C)  # v1.0.0, finalized
    c = store.customer(C)
    second = c.new_session(session_id="later", created="2025-01-16T09:00:00Z")
    second.append_turn({**turn(0, "one more thing"), "timestamp": "2025-01-16T09:05:00Z"})
    pending = c.merge("v2", into="v1")
    assert pending.written is None and pending.conflicts  # the metadata differ
    for conflict in pending.conflicts:
        pending = pending.resolve(conflict.label, "ours", reviewer="lead <l@example.invalid>")
    written = pending.commit(reviewer="lead <l@example.invalid>")
    assert str(written.version) == "v1.1.0" and written.tag is None
    assert [(str(v.version), v.status) for v in c.versions()] == [
        ("v1.0.0", "finalized"), ("v1.1.0", "open"), ("v2.0.0", "merged")]
    meta = c.read("v1").document("session_metadata.json")["session_info"]
    assert meta["session_version"] == "v1.1.0" and meta["completed_timestamp"] is None
    queries = [t["user_input"]["query"] for t in c.session("v1").history()]
    assert queries[-1] == "one more thing"
    clean(tmp_path / "s")


def test_divergent_histories_of_one_scenario_merge_from_their_base(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s")
    c = store.customer(C)
    s = c.new_session(session_id="one", created="2025-01-15T10:00:00Z")
    s.append_turn(turn(1, "shared"))
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "s" / C), str(other / C))
    Store.init(other)
    Store(other).customer(C).session("v1").append_turn(turn(3, "elsewhere"))
    s.append_turn(turn(2, "here"))
    git(tmp_path / "s" / C, "fetch", "-q", str(other / C), "v1:refs/remotes/other/v1")
    written = c.merge("refs/remotes/other/v1").written
    assert written is not None
    assert [t["user_input"]["query"] for t in c.session("v1").history()] == \
        ["shared", "here", "elsewhere"]
    clean(tmp_path / "s")


def test_bad_merges_are_refused_and_write_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = two_scenarios(root, {"region": "eu"}, {"region": "us"})
    Store(root).customer("other-co").new_session(created="2025-01-15T10:00:00Z")
    before = refs(root)
    assert cli(root, "merge", C, "other-co").returncode == 2  # another customer
    assert cli(root, "merge", C, "v1", "--into", "v1").returncode == 2  # into itself
    assert cli(root, "merge", C, "v9").returncode == 3
    assert cli(root, "merge", C, "--continue").returncode == 3  # nothing pending
    assert cli(root, "merge", C, "v2", "--fail-on-conflict").returncode == 6
    assert refs(root) == before
    assert cli(root, "merge", C, "v2").returncode == 0
    pending = refs(root)
    assert cli(root, "resolve", C, "nope:00000000", "--with", "ours").returncode == 3
    missing = cli(root, "resolve", C, "x", "--with", "sideways")  # no such file: as `turn`
    assert missing.returncode == 3 and b"cannot read sideways" in missing.stderr
    assert cli(root, "resolve", C, "x", "--with", str(root)).returncode == 2  # a directory
    assert refs(root) == pending
    # two reviewers on the same pending merge: the second acts on a stale state
    first = store.customer(C).pending_merge()
    second = store.customer(C).pending_merge()
    first.resolve(first.conflicts[0].label, "ours")
    with pytest.raises(ConflictError, match="changed meanwhile"):
        second.resolve(second.conflicts[0].label, "theirs")
    with pytest.raises(NotFoundError):
        store.customer(C).pending_merge("v2")
    with pytest.raises(ConflictError, match="already pending"):
        store.customer(C).merge("v2")
    assert cli(root, "merge", C, "v2").returncode == 6


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ours=st.lists(st.integers(1, 59), max_size=4, unique=True),
       theirs=st.lists(st.integers(1, 59), max_size=4, unique=True))
def test_a_merge_without_conflicts_passes_the_pipeline(
        tmp_path_factory: pytest.TempPathFactory, ours: list[int], theirs: list[int]) -> None:
    root = tmp_path_factory.mktemp("m")
    store = Store.init(root)
    c = store.customer(C)
    a = c.new_session(session_id="a", created="2025-01-15T10:00:00Z")
    b = c.new_session(session_id="b", created="2025-01-15T10:00:00Z", allow_open=True)
    for m in sorted(ours):
        a.append_turn(turn(m, f"o{m}"))
    for m in sorted(theirs):
        b.append_turn(turn(m, f"t{m}", second=1))
    result = c.merge("v2", into="v1")
    assert not result.conflicts and result.written is not None
    got = [t["user_input"]["query"] for t in c.session("v1").history()]
    assert sorted(got) == sorted([f"o{m}" for m in ours] + [f"t{m}" for m in theirs])


def test_the_pre_receive_hook_accepts_a_reviewed_merge_and_refuses_a_plain_one(
        tmp_path: Path) -> None:
    from gitstore.ops import githooks

    root = tmp_path / "s"
    two_scenarios(root, {"region": "eu"}, {"region": "eu"})
    Store(root).customer(C).merge("v2", into="v1")
    hub = tmp_path / "hub" / f"{C}.git"
    git(tmp_path, "init", "-q", "--bare", str(hub))
    githooks.install(hub)
    pushed = subprocess.run(
        ["git", "-C", str(root / C), "push", str(hub), "refs/heads/*:refs/heads/*",
         "refs/gitstore/merged/*:refs/gitstore/merged/*"], capture_output=True, check=False)
    assert pushed.returncode == 0, pushed.stderr.decode()
    assert git(hub, "rev-parse", "v1").strip() == git(root / C, "rev-parse", "v1").strip()
    # a merge commit made with plain git (no Change: merge) is refused
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", "--branch", "v1", str(hub), str(work))
    git(work, "checkout", "-q", "-b", "side", "v1~1")
    git(work, "commit", "-q", "--allow-empty", "-m", "a side commit")
    git(work, "checkout", "-q", "v1")
    git(work, "merge", "-q", "--no-ff", "side", "-m", "v1.0.0: plain merge")
    refused = subprocess.run(["git", "-C", str(work), "push", "origin", "HEAD:refs/heads/v1"],
                             capture_output=True, check=False)
    assert refused.returncode != 0
    assert b"unless `gitstore merge`" in refused.stderr


def test_after_a_merge_the_defaults_act_on_the_scenario_that_takes_writes(
        tmp_path: Path) -> None:
    root = tmp_path / "s"
    two_scenarios(root, {"region": "eu"}, {"region": "eu"})
    assert cli(root, "merge", C, "v2", "--into", "v1").returncode == 0
    assert git(root / C, "symbolic-ref", "HEAD").strip() == "refs/heads/v1"
    added = cli(root, "turn", C, "-", stdin=json.dumps(turn(40, "after the merge")).encode())
    assert added.returncode == 0, added.stderr.decode()  # no -s: the live scenario, v1
    shown = json.loads(cli(root, "show", C, "-o", "json").stdout)
    assert shown["version"].startswith("v1.")
    listed = {(r["scenario"], r["status"]) for r in
              json.loads(cli(root, "list", "--customer", C, "-o", "json").stdout)}
    assert ("v2", "merged") in listed and ("v1", "open") in listed
    assert cli(root, "reindex").returncode == 0
    listed = {(r["scenario"], r["status"]) for r in
              json.loads(cli(root, "list", "--customer", C, "-o", "json").stdout)}
    assert ("v2", "merged") in listed


def test_an_export_with_a_bad_selection_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    two_scenarios(root)
    refused = cli(root, "export", C, "1.0.0", "-O", "-")
    assert refused.returncode == 2 and refused.stdout == b""
    assert b"a version starts with v" in refused.stderr
    missing = cli(root, "export", C, "v9", "-O", "-")
    assert missing.returncode == 3 and missing.stdout == b""
