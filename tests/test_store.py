"""The Python API end to end, checked with the real git binary.

The example session is recorded turn by turn and finalized as v1.0.0, continued
as the follow-up v1.1.0 (by another agent) and finalized, then corrected as
v1.1.1. Everything the store wrote is then inspected with plain ``git``:
``fsck --strict``, trailers in ``git log``, ``git show``, annotated tags,
``git archive | tar -x && sha256sum -c``, HEAD, author and committer.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    ROOT,
    SESSION_ID,
    Clock,
    git,
    load_example,
    record_example_session,
    repo_state,
)

from gitstore import (
    GitStoreError,
    InvalidDocumentError,
    Store,
    Version,
    VersionRuleError,
    Violation,
    Written,
)
from gitstore.core import canonical
from gitstore.core.models import Conversation, SessionMetadata
from gitstore.core.names import DOCUMENTS, MANIFEST
from gitstore.ops import verify as health

ADVISOR = "advisor <advisor@agents.example.invalid>"
COMMITTER = "gitstore <gitstore@gitstore.invalid>"
REPORTER = "reporter <reporter@agents.gitstore.invalid>"


def raw_git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, input=input,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def turn(n: int) -> Any:
    folder = "session" if n <= 5 else "follow_up"
    return load_example(folder, "turns", f"turn-{n:02d}.json")


def follow_up_v110(store: Store, customer: str = CUSTOMER) -> list[Written]:
    """Turns 6-7 and the new metadata as v1.1.0, finalized."""
    session = store.customer(customer).session()
    out = [session.follow_up(message="alarms and tracing")]
    for n in (6, 7):
        out.append(session.append_turn(turn(n)))
    meta = load_example("follow_up", "session_metadata.json")
    meta["session_info"]["api_key"] = customer
    out.append(session.put("session_metadata.json", meta))
    out.append(session.finalize(message="follow-up answered"))
    return out


# --------------------------------------------------------------------------- the scenario

@dataclass
class History:
    store: Store
    repo: Path
    written: dict[str, Written]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("e2e") / "sessions"
    store = Store.init(root, clock=Clock())
    record_example_session(store)
    # the follow-up is done by another agent, through another Store object
    advisor = Store(root, agent=ADVISOR, clock=Clock(Clock().start.replace(hour=15)))
    steps = follow_up_v110(advisor)
    correction = advisor.customer(CUSTOMER).session().correct(
        {"session_analytics.json": EXAMPLES / "correction" / "session_analytics.json"},
        reason="actual outcome known: deployed in 4 hours", base="v1.1.0")
    return History(store, root / CUSTOMER,
                   {"follow-up": steps[0], "v1.1.0": steps[-1], "v1.1.1": correction})


def test_versions_of_the_scenario(history: History) -> None:
    cust = history.store.customer(CUSTOMER)
    versions = cust.versions()
    assert [str(v.version) for v in versions] == ["v1.0.0", "v1.1.0", "v1.1.1"]
    assert all(v.status == "finalized" and v.tag is not None for v in versions)
    assert [v.change for v in versions] == ["finalize", "finalize", "correction"]
    assert [v.completeness for v in versions] == [100, 100, 100]
    w = history.written
    assert w["follow-up"].version == Version(1, 1, 0) and w["follow-up"].change == "follow-up"
    assert w["v1.1.0"].tag is not None and w["v1.1.1"].tag is not None
    assert w["v1.1.1"].version == Version(1, 1, 1) and w["v1.1.1"].change == "correction"
    assert cust.session().version == Version(1, 1, 1)
    assert not cust.session().is_open


def test_git_fsck_strict_is_clean(history: History) -> None:
    proc = subprocess.run(["git", "-C", str(history.repo), "fsck", "--strict", "--full",
                           "--no-dangling"], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"" and b"error" not in proc.stderr and b"warning" not in proc.stderr


def _log(repo: Path, *keys: str) -> list[dict[str, str]]:
    fmt = "%H%x01%an <%ae>%x01%cn <%ce>%x01%s" + "".join(
        f"%x01%(trailers:key={k},valueonly,separator=%x02)" for k in keys) + "%x00"
    out = raw_git(repo, "log", "--reverse", "--topo-order", f"--format={fmt}", "v1")
    rows = []
    for record in out.decode().split("\0"):
        record = record.strip("\n")
        if not record:
            continue
        commit, author, committer, subject, *values = record.split("\x01")
        row = {"commit": commit, "author": author, "committer": committer, "subject": subject}
        row.update({k: v.strip() for k, v in zip(keys, values, strict=True)})
        rows.append(row)
    return rows


def test_git_log_shows_the_trailers(history: History) -> None:
    rows = _log(history.repo, "Session-Id", "Session-Version", "Change", "Turn", "Agent",
                "Completeness", "Manifest")
    assert [r["Change"] for r in rows] == [
        "create", "turn", "turn", "turn", "turn", "turn", "update", "update", "update",
        "update", "finalize", "follow-up", "turn", "turn", "update", "finalize", "correction"]
    assert {r["Session-Id"] for r in rows} == {SESSION_ID}
    assert [r["Session-Version"] for r in rows] == \
        ["v1.0.0"] * 11 + ["v1.1.0"] * 5 + ["v1.1.1"]
    assert [r["Turn"] for r in rows if r["Change"] == "turn"] == [str(n) for n in range(1, 8)]
    assert all(r["Turn"] == "" for r in rows if r["Change"] != "turn")
    assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", r["Manifest"]) for r in rows)
    # Completeness is on every commit, a percentage, 100 on every finalized version
    for r in rows:
        assert r["Completeness"].isdigit() and 0 <= int(r["Completeness"]) <= 100, r
    assert [int(r["Completeness"]) for r in rows if r["Change"] in ("finalize", "correction")] \
        == [100, 100, 100]
    # git itself parses them as trailers (interpret-trailers agrees with %(trailers))
    msg = raw_git(history.repo, "log", "-1", "--format=%B", "v1.0.0")
    parsed = raw_git(history.repo, "interpret-trailers", "--parse", input=msg).decode()
    assert f"Session-Id: {SESSION_ID}" in parsed and "Change: finalize" in parsed


def test_author_is_the_agent_committer_is_gitstore(history: History) -> None:
    rows = _log(history.repo, "Agent", "Change")
    assert {r["committer"] for r in rows} == {COMMITTER}
    split = [r["Change"] for r in rows].index("follow-up")
    assert {r["author"] for r in rows[:split]} == {REPORTER}
    assert {r["author"] for r in rows[split:]} == {ADVISOR}
    for r in rows:
        assert r["author"].startswith(r["Agent"] + " <"), r
    # the tagger of a version is the agent that finalized it
    assert f"tagger {REPORTER} " in raw_git(history.repo, "cat-file", "-p", "v1.0.0").decode()
    assert f"tagger {ADVISOR} " in raw_git(history.repo, "cat-file", "-p", "v1.1.1").decode()


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0", "v1.1.1"])
def test_git_show_prints_exactly_the_stored_documents(history: History, version: str) -> None:
    snap = history.store.customer(CUSTOMER).read(version)
    assert sorted(snap.files) == sorted([*DOCUMENTS, MANIFEST])
    for name, data in snap.files.items():
        assert raw_git(history.repo, "show", f"{version}:{name}") == data, name
        if name.endswith(".json"):
            assert canonical.dumps(canonical.loads(data)) == data, f"{name} is not canonical"
    conv = raw_git(history.repo, "show", f"{version}:conversation.json")
    assert conv == canonical.dumps(snap.document("conversation.json"))


def test_annotated_tags_carry_the_manifest_digest(history: History) -> None:
    repo = history.repo
    for version in ("v1.0.0", "v1.1.0", "v1.1.1"):
        assert raw_git(repo, "cat-file", "-t", version).strip() == b"tag"
        body = raw_git(repo, "cat-file", "-p", version).decode()
        commit = raw_git(repo, "rev-parse", f"{version}^{{commit}}").decode().strip()
        assert f"object {commit}\ntype commit\ntag {version}\n" in body
        sums = raw_git(repo, "show", f"{version}:SHA256SUMS")
        digest = "sha256:" + hashlib.sha256(sums).hexdigest()
        assert f"Manifest: {digest}" in body
        assert f"Session-Version: {version}" in body and f"Commit: {commit}" in body
        tag = history.store.customer(CUSTOMER).versions()
        assert {str(v.version): v.manifest for v in tag}[version] == digest
    assert history.written["v1.1.1"].manifest == \
        "sha256:" + hashlib.sha256(raw_git(repo, "show", "v1.1.1:SHA256SUMS")).hexdigest()
    correction = raw_git(repo, "cat-file", "-p", "v1.1.1").decode()
    assert "data correction" in correction
    assert "actual outcome known: deployed in 4 hours" in correction


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.1"])
def test_git_archive_passes_sha256sum_check(history: History, version: str,
                                           tmp_path: Path) -> None:
    proc = subprocess.run(f"git -C '{history.repo}' archive {version} | tar -x "
                          "&& sha256sum -c SHA256SUMS", shell=True, cwd=tmp_path,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    ok_lines = proc.stdout.decode().splitlines()
    assert sorted(ok_lines) == sorted(f"{name}: OK" for name in DOCUMENTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*DOCUMENTS, MANIFEST])


def test_head_points_at_the_newest_scenario(history: History) -> None:
    assert raw_git(history.repo, "symbolic-ref", "HEAD").strip() == b"refs/heads/v1"
    assert raw_git(history.repo, "rev-parse", "HEAD") == \
        raw_git(history.repo, "rev-parse", "v1.1.1^{commit}")


# --------------------------------------------------------------------------- reads

def test_reads(history: History) -> None:
    cust = history.store.customer(CUSTOMER)
    snap = cust.read("v1.0.0")
    assert snap.version == Version(1, 0, 0) and snap.change == "finalize"
    assert snap.session_id == SESSION_ID
    # whole snapshot, one document (by name and by alias), raw bytes, model
    assert set(snap.documents()) == {n for n in DOCUMENTS if n.endswith(".json")}
    assert snap.document("metadata") == snap.document("session_metadata.json")
    assert snap.document("conversation") == load_example("session", "conversation.json")
    assert snap.raw("sow").decode("utf-8").startswith("#")
    assert snap.raw("SHA256SUMS").count(b"\n") == 5
    model = snap.model("conversation.json")
    assert isinstance(model, Conversation)
    assert [t.turn_id for t in model.conversation_turns] == [1, 2, 3, 4, 5]
    meta = cust.read("v1.1.1").model("metadata")
    assert isinstance(meta, SessionMetadata)
    assert meta.session_info.session_version == "v1.1.1"
    assert meta.session_info.api_key == CUSTOMER
    # revisions: scenario, HEAD, HEAD~n, commit id
    assert cust.read("v1").commit == cust.read().commit == cust.read("v1.1.1").commit
    assert cust.read("HEAD~1").commit == cust.read("v1.1.0").commit
    assert cust.read(snap.commit[:12]).commit == snap.commit
    # the correction replaced the analytics and nothing else but metadata/SOW/manifest
    before, after = cust.read("v1.1.0").files, cust.read("v1.1.1").files
    assert {n for n in before if before[n] != after[n]} == {
        "session_analytics.json", "session_metadata.json", "sow_document.md", MANIFEST}
    assert cust.read("v1.1.1").document("analytics") == \
        load_example("correction", "session_analytics.json")


def test_history_and_log(history: History) -> None:
    cust = history.store.customer(CUSTOMER)
    session = cust.session()
    turns = session.history()
    assert [t["turn_id"] for t in turns] == list(range(1, 8))
    assert turns[:5] == load_example("session", "conversation.json")["conversation_turns"]
    for n in range(0, 9):
        assert session.history(n) == (turns[-n:] if n else []), n
    log = cust.log()
    assert len(log) == 17
    assert [e.change for e in log[:3]] == ["correction", "finalize", "update"]
    assert log[0].tags == ("v1.1.1",) and log[0].version == Version(1, 1, 1)
    assert [e.turn for e in log if e.change == "turn"] == [7, 6, 5, 4, 3, 2, 1]
    assert cust.log(limit=3) == log[:3]
    assert all(dict(e.trailers)["Session-Id"] == SESSION_ID for e in log)
    assert cust.log("v1.0.0") == [e for e in log if e.version == Version(1, 0, 0)]


# --------------------------------------------------------------------------- version rules

def _tags(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/tags")
    return dict(line.split() for line in out.splitlines())


def test_second_new_session_is_v2_and_moves_head(finalized: Any, store: Store) -> None:
    repo = store.root / CUSTOMER
    v1_tip = git(repo, "rev-parse", "refs/heads/v1").strip()
    tags = _tags(repo)
    session = store.customer(CUSTOMER).new_session(created="2025-02-01T09:00:00Z")
    assert session.version == Version(2, 0, 0) and session.is_open
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/v2"
    assert git(repo, "rev-parse", "refs/heads/v1").strip() == v1_tip
    assert _tags(repo) == tags
    assert store.customer(CUSTOMER).session().scenario == session.scenario
    assert [str(s) for s in store.customer(CUSTOMER).scenarios()] == ["v1", "v2"]
    # the new scenario is a new line of history with its own session id
    assert git(repo, "rev-list", "--count", "refs/heads/v2").strip() == "1"
    assert session.session_id != SESSION_ID
    assert session.read().document("metadata")["session_info"]["session_version"] == "v2.0.0"


def test_follow_up_while_open_is_refused(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    session.append_turn(turn(1))
    before = repo_state(store.root / CUSTOMER)
    with pytest.raises(VersionRuleError, match="still open"):
        session.follow_up()
    assert repo_state(store.root / CUSTOMER) == before


@pytest.mark.parametrize("write", ["turn", "put", "summary", "finalize"])
def test_writes_to_a_finalized_version_are_refused(finalized: Any, store: Store,
                                                   write: str) -> None:
    session = store.customer(CUSTOMER).session()
    before = repo_state(store.root / CUSTOMER)
    calls = {
        "turn": lambda: session.append_turn(turn(6)),
        "put": lambda: session.put("deployment_context.json",
                                   load_example("session", "deployment_context.json")),
        "summary": lambda: session.set_summary({"final_recommendation": "something else"}),
        "finalize": lambda: session.finalize(),
    }
    with pytest.raises(VersionRuleError, match="finalized"):
        calls[write]()
    assert repo_state(store.root / CUSTOMER) == before


def test_correction_of_an_older_minor_names_the_version_to_correct(finalized: Any,
                                                                   store: Store) -> None:
    follow_up_v110(store)
    before = repo_state(store.root / CUSTOMER)
    fix = {"session_analytics.json": load_example("correction", "session_analytics.json")}
    with pytest.raises(VersionRuleError) as info:
        store.customer(CUSTOMER).session().correct(fix, reason="fix", base="v1.0.0")
    assert "correct v1.1.0" in str(info.value) and "v1.1.1" in str(info.value)
    assert repo_state(store.root / CUSTOMER) == before
    # correcting the newest version works and gives the next patch
    w = store.customer(CUSTOMER).session().correct(fix, reason="fix", base="v1.1.0")
    assert w.version == Version(1, 1, 1)


@pytest.mark.parametrize(("op", "requested", "why"), [
    ("new", "v3.0.0", "skip"),
    ("new", "v1.0.0", "already exists"),
    ("follow_up", "v1.2.0", "skip"),
    ("follow_up", "v1.0.0", "already exists"),
    ("follow_up", "v1.0.5", "backwards"),
    ("correct", "v1.0.2", "skip"),
    ("correct", "v1.0.0", "already exists"),
    ("finalize_v2", "v2.1.0", "skip"),
    ("finalize_v2", "v1.9.0", "backwards"),
])
def test_explicit_versions_that_skip_reuse_or_go_backwards(finalized: Any, store: Store,
                                                           op: str, requested: str,
                                                           why: str) -> None:
    cust = store.customer(CUSTOMER)
    if op == "finalize_v2":
        cust.new_session(created="2025-02-01T09:00:00Z")
    before = repo_state(store.root / CUSTOMER)
    fix = {"session_analytics.json": load_example("correction", "session_analytics.json")}
    calls: dict[str, Callable[[], Any]] = {
        "new": lambda: cust.new_session(version=requested),
        "follow_up": lambda: cust.session().follow_up(version=requested),
        "correct": lambda: cust.session().correct(fix, reason="r", version=requested),
        "finalize_v2": lambda: cust.session().finalize(version=requested),
    }
    with pytest.raises(VersionRuleError) as info:
        calls[op]()
    assert why in str(info.value) and requested in str(info.value)
    assert repo_state(store.root / CUSTOMER) == before


def test_explicit_version_that_matches_is_accepted(finalized: Any, store: Store) -> None:
    cust = store.customer(CUSTOMER)
    assert cust.session().follow_up(version="v1.1.0").version == Version(1, 1, 0)
    assert cust.new_session(version="v2.0.0", allow_open=True).version == Version(2, 0, 0)


def test_tags_are_never_moved(finalized: Any, store: Store) -> None:
    repo = store.root / CUSTOMER
    seen = _tags(repo)
    follow_up_v110(store)
    fix = {"session_analytics.json": load_example("correction", "session_analytics.json")}
    store.customer(CUSTOMER).session().correct(fix, reason="fix")
    store.customer(CUSTOMER).new_session(created="2025-02-01T09:00:00Z")
    now = _tags(repo)
    assert set(now) == {"refs/tags/v1.0.0", "refs/tags/v1.1.0", "refs/tags/v1.1.1"}
    assert {k: now[k] for k in seen} == seen
    # no tag was ever rewritten: every tag ref has exactly one reflog entry, if any
    for ref in now:
        log = git(repo, "reflog", "show", "--format=%H", ref, check=False)
        assert len(log.splitlines()) <= 1, (ref, log)


# --------------------------------------------------------------------------- canonical JSON

def test_same_data_gives_same_bytes_and_no_new_commit(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    ctx = load_example("session", "deployment_context.json")
    first = session.put("deployment_context.json", ctx)
    reordered = dict(reversed(list(copy.deepcopy(ctx).items())))
    assert list(reordered) != list(ctx)
    repo = store.root / CUSTOMER
    count = git(repo, "rev-list", "--count", "--all")
    for same in (reordered, canonical.dumps(ctx), b'\n' + canonical.dumps(ctx).replace(
            b"\n", b" ") + b'\n\n'):
        again = session.put("deployment_context.json", same)
        assert again.change == "unchanged"
        assert again.commit == first.commit
    assert git(repo, "rev-list", "--count", "--all") == count
    stored = raw_git(repo, "show", "v1:deployment_context.json")
    assert stored == canonical.dumps(ctx)
    assert stored.endswith(b"}\n") and b"\n  \"" in stored  # two-space indent, one newline
    assert list(canonical.loads(stored)) == sorted(ctx)


# --------------------------------------------------------------------------- hooks

def test_custom_hook_runs_and_its_violation_refuses_the_write(tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []

    def no_secrets(proposal: Any) -> list[Violation]:
        seen.append((proposal.change, proposal.version))
        conv = proposal.documents.get("conversation.json", {})
        return [Violation("conversation.json", f"/conversation_turns/{i}/user_input/query",
                          "looks like a password")
                for i, t in enumerate(conv.get("conversation_turns", []))
                if "password" in t["user_input"]["query"].lower()]

    store = Store.init(tmp_path / "sessions", clock=Clock(), hooks=[no_secrets])
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    assert seen == [("create", Version(1, 0, 0))]
    session.append_turn(turn(1))
    assert seen[-1] == ("turn", Version(1, 0, 0))
    before = repo_state(store.root / CUSTOMER)
    leaky = turn(2)
    leaky["user_input"]["query"] = "my Password is hunter2"
    with pytest.raises(InvalidDocumentError) as info:
        session.append_turn(leaky)
    (v,) = info.value.violations
    assert (v.file, v.pointer, v.hook) == \
        ("conversation.json", "/conversation_turns/1/user_input/query", "no_secrets")
    assert "looks like a password" in str(info.value)
    assert repo_state(store.root / CUSTOMER) == before
    # a store opened without the hook does not run it
    plain = Store(store.root, clock=Clock())
    assert plain.customer(CUSTOMER).session().append_turn(leaky).turn == 2
    assert len(seen) == 3


def test_a_hook_that_crashes_refuses_the_write(tmp_path: Path) -> None:
    def broken(proposal: Any) -> list[Violation]:
        raise RuntimeError("boom")

    plain = Store.init(tmp_path / "sessions", clock=Clock())
    plain.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    before = repo_state(plain.root / CUSTOMER)
    store = Store(plain.root, clock=Clock(), hooks=[broken])
    with pytest.raises(InvalidDocumentError, match="hook 'broken' failed: RuntimeError: boom"):
        store.customer(CUSTOMER).session().append_turn(turn(1))
    assert repo_state(plain.root / CUSTOMER) == before


# --------------------------------------------------------------------------- completeness

def _open_with(store: Store, edits: dict[str, Callable[[Any], Any]]) -> Any:
    """The example session as v1.0.0, open, with ``edits`` applied to documents."""
    session = store.customer(CUSTOMER).new_session(
        session_id=SESSION_ID, created="2025-01-15T10:30:00Z")
    for n in range(1, 6):
        session.append_turn(turn(n))
    session.set_summary(load_example("session", "conversation.json")["conversation_summary"])
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name in edits:
            edits[name](doc)
        session.put(name, doc)
    return session


def test_finalize_lists_every_missing_document_and_field(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    session.append_turn(turn(1))
    before = repo_state(store.root / CUSTOMER)
    with pytest.raises(InvalidDocumentError) as info:
        session.finalize()
    found = {(v.file, v.pointer) for v in info.value.violations}
    for missing in ("deployment_context.json", "session_analytics.json"):
        assert (missing, "") in found
    for pointer in ("/conversation_summary/total_duration_minutes",
                    "/conversation_summary/primary_cloud_provider",
                    "/conversation_summary/services_discussed",
                    "/conversation_summary/final_recommendation"):
        assert ("conversation.json", pointer) in found
    for pointer in ("/session_info/completed_timestamp", "/session_info/session_duration_minutes",
                    "/workflow_tracking/completion_status", "/agent_performance",
                    "/quality_metrics"):
        assert ("session_metadata.json", pointer) in found
    assert all(v.file and (v.pointer == "" or v.pointer.startswith("/"))
               for v in info.value.violations)
    assert repo_state(store.root / CUSTOMER) == before
    assert session.is_open


def test_finalize_names_the_one_unfilled_field(store: Store) -> None:
    session = _open_with(store, {
        "session_analytics.json": lambda d: d.pop("similarity_vectors")})
    before = repo_state(store.root / CUSTOMER)
    with pytest.raises(InvalidDocumentError) as info:
        session.finalize()
    assert [(v.file, v.pointer) for v in info.value.violations] == \
        [("session_analytics.json", "/similarity_vectors")]
    assert repo_state(store.root / CUSTOMER) == before


def test_finalize_refuses_in_progress(store: Store) -> None:
    def in_progress(doc: Any) -> None:
        doc["workflow_tracking"]["completion_status"] = "in_progress"
    session = _open_with(store, {"session_metadata.json": in_progress})
    before = repo_state(store.root / CUSTOMER)
    with pytest.raises(InvalidDocumentError) as info:
        session.finalize()
    assert [(v.file, v.pointer) for v in info.value.violations] == \
        [("session_metadata.json", "/workflow_tracking/completion_status")]
    assert "in_progress" in str(info.value)
    assert repo_state(store.root / CUSTOMER) == before


def test_follow_up_reopens_and_must_be_completed_again(finalized: Any, store: Store) -> None:
    session = store.customer(CUSTOMER).session()
    session.follow_up()
    meta = session.read().document("metadata")
    assert meta["workflow_tracking"]["completion_status"] == "in_progress"
    assert meta["session_info"]["completed_timestamp"] is None
    assert "sow_document.md" not in session.read().files
    with pytest.raises(InvalidDocumentError):
        session.finalize()


# --------------------------------------------------------------------------- crash repair

def test_missing_tag_after_a_crash_is_reported_and_recreated(finalized: Any,
                                                             store: Store) -> None:
    repo = store.root / CUSTOMER
    tag_id = git(repo, "rev-parse", "refs/tags/v1.0.0").strip()
    tip = git(repo, "rev-parse", "refs/heads/v1").strip()
    # a crash between the branch update and the tag: the tag ref never got written
    git(repo, "update-ref", "-d", "refs/tags/v1.0.0")
    report = health.check_customer(store.customer(CUSTOMER))
    assert any("tag v1.0.0 is missing" in p for p in report.problems), report.problems
    # the version is still known to be finalized, so no write can reopen it
    (info,) = store.customer(CUSTOMER).versions()
    assert (str(info.version), info.status) == ("v1.0.0", "finalized")
    with pytest.raises(VersionRuleError):
        store.customer(CUSTOMER).session().append_turn(turn(6))
    store.customer(CUSTOMER).session().follow_up()
    assert git(repo, "rev-parse", "refs/tags/v1.0.0").strip() == tag_id
    assert git(repo, "rev-parse", "v1.0.0^{commit}").strip() == tip
    assert health.check_customer(store.customer(CUSTOMER)).problems == []
    git(repo, "fsck", "--strict")


# --------------------------------------------------------------------------- verify

def _tamper(repo: Path, name: str = "conversation.json") -> str:
    """Commit a changed document on v1 with plain git, leaving SHA256SUMS alone."""
    old = git(repo, "rev-parse", "refs/heads/v1").strip()
    data = raw_git(repo, "show", f"v1:{name}")
    changed = data.replace(b"AWS API Gateway Enhanced Collector", b"Some Other Collector", 1)
    assert changed != data
    blob = git(repo, "hash-object", "-w", "--stdin", input=changed).strip()
    entries = []
    for line in git(repo, "ls-tree", "v1").splitlines():
        meta, path = line.split("\t")
        mode, kind, oid = meta.split()
        entries.append(f"{mode} {kind} {blob if path == name else oid}\t{path}")
    tree = git(repo, "mktree", input=("\n".join(entries) + "\n").encode()).strip()
    commit = git(repo, "commit-tree", tree, "-p", old, "-m", "edit outside gitstore").strip()
    git(repo, "update-ref", "refs/heads/v1", commit, old)
    return commit


def test_verify_detects_a_manifest_mismatch_made_with_plain_git(finalized: Any,
                                                                store: Store) -> None:
    repo = store.root / CUSTOMER
    env_py = [sys.executable, "-m", "gitstore", "--root", str(store.root)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    clean = subprocess.run([*env_py, "verify"], capture_output=True, env=env, check=False)
    assert clean.returncode == 0, clean.stderr
    commit = _tamper(repo)
    git(repo, "fsck", "--strict")  # git itself is fine: only the manifest disagrees
    proc = subprocess.run([*env_py, "verify", CUSTOMER], capture_output=True, env=env,
                          check=False)
    assert proc.returncode == 7, proc.stderr
    out = proc.stdout.decode()
    assert f"{CUSTOMER}: v1 tip {commit[:12]}: conversation.json: checksum does not match " \
           "SHA256SUMS" in out, out
    assert "deployment_context.json" not in out
    err = proc.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("gitstore: error: "), err


def test_no_write_builds_on_a_tampered_tree(finalized: Any, store: Store) -> None:
    """A write on top of a commit whose files disagree with its SHA256SUMS would
    re-checksum the tampered data and hide it from verify; it must be refused."""
    repo = store.root / CUSTOMER
    _tamper(repo)
    before = repo_state(repo)
    with pytest.raises(GitStoreError) as info:
        store.customer(CUSTOMER).session().follow_up()
    assert info.value.exit_code in (4, 7)
    assert "conversation.json" in str(info.value)
    assert repo_state(repo) == before
    assert any("conversation.json" in p
               for p in health.check_customer(store.customer(CUSTOMER)).problems)
