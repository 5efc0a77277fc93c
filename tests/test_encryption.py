"""Encryption at rest and crypto-shredding (issue 15), through the library.

Every test checks what is on disk with the real ``git`` binary and plain bytes:
the markers written into an encrypted session appear nowhere under the store
root (objects unpacked and packed, the index, the access log, reflogs, the key
store), and the same test finds them in a plaintext store, so it can fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    Clock,
    example_session_id,
    git,
    load_example,
    run_cli,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import start_daemon, synced_store, turn
from starlette.testclient import TestClient

from gitstore import IntegrityError, KeyUnavailableError, NotFoundError, ShreddedError, Store
from gitstore.core import canonical, sealed
from gitstore.core.names import CONV
from gitstore.ops import encryption, githooks, retention, syncing
from gitstore.ops import hub as hub_ops
from gitstore.ops.verify import check_customer
from gitstore.store.keys import master_key, new_master_key_file
from gitstore.web.app import create_app
from gitstore.web.tokens import TokenFile

MARKERS = ("ZEBRAQUOKKA", "MARMOSETVIOLET", "PANGOLINAMBER", "NARWHALCOPPER", "OCELOTMAUVE")


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> str:
    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("GITSTORE_MASTER_KEY", key)
    return key


def make_store(root: Path, *, encrypt: bool) -> Store:
    store = Store.init(root, clock=Clock())
    if encrypt:
        encryption.enable(store)
    return Store(root, clock=Clock())


def record(store: Store, customer: str = CUSTOMER, turns: int = 5) -> Any:
    """The example session with a marker in every kind of sealed field."""
    sid = example_session_id(customer)
    session = store.customer(customer).new_session(session_id=sid,
                                                   created="2025-01-15T10:30:00Z")
    for i, path in enumerate(sorted((EXAMPLES / "session" / "turns").glob("turn-*.json"))):
        turn = json.loads(path.read_bytes())
        turn["user_input"]["query"] += f" about {MARKERS[0]}"
        turn["agent_response"]["orchestrator_response"] += f" {MARKERS[1]}"
        session.append_turn(turn)
        if i + 1 >= turns:
            break
    summary = load_example("session", "conversation.json")["conversation_summary"]
    summary["final_recommendation"] = f"{MARKERS[2]} collector"
    session.set_summary({k: v for k, v in summary.items() if k != "total_turns"})
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name == "session_metadata.json":
            doc["session_info"].update(api_key=customer, session_id=sid)
        if name == "deployment_context.json":
            doc["deployment_recommendations"][0]["implementation_steps"].append(
                f"ask {MARKERS[3]}")
        if name == "session_analytics.json":
            doc["learning_insights"]["successful_patterns"].append(MARKERS[4])
        session.put(name, doc)
    return session


def found_markers(root: Path) -> set[str]:
    """Every marker found in any byte under ``root``: raw files (packs, index,
    access log, reflogs, key store) and every git object, decompressed."""
    blobs = [p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    for head in root.rglob("HEAD"):
        repo = head.parent
        if (repo / "objects").is_dir():
            blobs.append(subprocess.run(
                ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
                capture_output=True, check=True).stdout)
            blobs.append(subprocess.run(["git", "-C", str(repo), "log", "-g", "--all"],
                                        capture_output=True).stdout)
    return {m for m in MARKERS for b in blobs if m.encode() in b}


@pytest.fixture
def encrypted(tmp_path: Path, master: str) -> Iterator[tuple[Store, Any]]:
    store = make_store(tmp_path / "enc", encrypt=True)
    session = record(store)
    session.finalize(message="plan agreed")
    session.follow_up()
    session.append_turn({"timestamp": "2025-01-15T12:00:00Z",
                         "user_input": {"query": f"follow-up on {MARKERS[0]}"},
                         "agent_response": {"orchestrator_response": "sure"}})
    store.search(MARKERS[0])  # the index has had every chance to learn the text
    yield store, session


# -- what is on disk ---------------------------------------------------------------

def test_no_marker_is_anywhere_under_an_encrypted_root(encrypted: Any, tmp_path: Path) -> None:
    store, _ = encrypted
    assert found_markers(store.root) == set()
    git(store.root / CUSTOMER, "gc", "-q")  # packed too
    assert found_markers(store.root) == set()


def test_the_index_catching_up_on_a_missed_write_learns_no_clear_text(
        tmp_path: Path, master: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer records each write in the index; when one was missed (SQLite
    busy, say), the next write's record reads the missed version from git too.
    It must read it sealed, as a rebuild does: the index holds only clear fields."""
    from gitstore.catalog import sync as sync_mod

    store = make_store(tmp_path / "enc", encrypt=True)
    session = record(store)
    real = sync_mod.Sync.record
    missed = {"on": True}

    def busy_once(self: Any, *args: Any, **kwargs: Any) -> bool:
        return False if missed["on"] else real(self, *args, **kwargs)

    monkeypatch.setattr(sync_mod.Sync, "record", busy_once)
    session.finalize(message="plan agreed")  # the index misses this version
    missed["on"] = False
    session.follow_up()
    session.append_turn({"timestamp": "2025-01-15T12:00:00Z",
                         "user_input": {"query": "follow-up"},
                         "agent_response": {"orchestrator_response": "sure"}})
    versions = {r[2] for r in store.catalog.dump()["versions"]}
    assert {"v1.0.0", "v1.1.0"} <= versions, versions  # the missed version is indexed
    assert found_markers(store.root / ".gitstore") == set()


def test_the_same_grep_finds_every_marker_in_a_plaintext_store(tmp_path: Path) -> None:
    store = make_store(tmp_path / "plain", encrypt=False)
    record(store).finalize()
    store.search(MARKERS[0])
    assert found_markers(store.root) == set(MARKERS)


def test_reads_are_transparent_and_equal_the_plaintext_store(encrypted: Any,
                                                             tmp_path: Path) -> None:
    store, _ = encrypted
    plain = make_store(tmp_path / "plain", encrypt=False)
    record(plain).finalize(message="plan agreed")
    for name in ("conversation.json", "deployment_context.json", "session_metadata.json",
                 "session_analytics.json", "sow_document.md"):
        assert store.customer(CUSTOMER).read("v1.0.0").raw(name) == \
            plain.customer(CUSTOMER).read("v1.0.0").raw(name)
    sealed_text = git(store.root / CUSTOMER, "show", "v1.0.0:conversation.json")
    assert sealed.PREFIX in sealed_text and '"turn_id": 1' in sealed_text
    diff = store.customer(CUSTOMER).diff("v1.0.0", "v1")
    assert "follow-up on" in json.dumps(diff.to_json() if hasattr(diff, "to_json") else str(diff))


def test_git_checks_pass_and_sha256sum_verifies_the_stored_bytes(encrypted: Any,
                                                                  tmp_path: Path) -> None:
    store, _ = encrypted
    repo = store.root / CUSTOMER
    git(repo, "fsck", "--strict")
    out = tmp_path / "out"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", "v1.0.0"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out, check=True)
    assert check_customer(store.customer(CUSTOMER)).problems == []


def test_appending_a_turn_appends_bytes_earlier_ciphertext_unchanged(encrypted: Any) -> None:
    store, session = encrypted
    repo = store.root / CUSTOMER
    before = canonical.loads(git(repo, "show", "v1:conversation.json").encode())
    session.append_turn({"timestamp": "2025-01-15T12:05:00Z",
                         "user_input": {"query": "and another"},
                         "agent_response": {"orchestrator_response": "ok"}})
    after = canonical.loads(git(repo, "show", "v1:conversation.json").encode())
    assert after["conversation_turns"][:-1] == before["conversation_turns"]


# -- tampering ------------------------------------------------------------------

def _rewrite_tip(repo: Path, edit: Any) -> None:
    """Replace the tip's conversation.json with ``edit(doc)`` and its manifest line,
    as an attacker with write access to the repository would (plain git)."""
    doc = canonical.loads(git(repo, "show", "v1:conversation.json").encode())
    data = canonical.dumps(edit(doc))
    sums = git(repo, "show", "v1:SHA256SUMS").splitlines()
    sums = [f"{hashlib.sha256(data).hexdigest()}  conversation.json" if
            line.endswith("  conversation.json") else line for line in sums]
    files = {n: git(repo, "show", f"v1:{n}").encode() for n in
             git(repo, "ls-tree", "--name-only", "v1").split()}
    files["conversation.json"], files["SHA256SUMS"] = data, ("\n".join(sums) + "\n").encode()
    entries = []
    for name, content in sorted(files.items()):
        oid = git(repo, "hash-object", "-w", "--stdin", input=content).strip()
        entries.append(f"100644 blob {oid}\t{name}")
    tree = git(repo, "mktree", input=("\n".join(entries) + "\n").encode()).strip()
    commit = git(repo, "commit-tree", tree, "-p", "v1", "-m", "tamper").strip()
    git(repo, "update-ref", "refs/heads/v1", commit)


def test_one_changed_byte_of_a_ciphertext_is_detected_on_read(encrypted: Any) -> None:
    store, _ = encrypted

    def flip(doc: Any) -> Any:
        token = doc["conversation_turns"][1]["user_input"]
        raw = bytearray(base64.b64decode(token[len(sealed.PREFIX):-1]))
        raw[20] ^= 1
        doc["conversation_turns"][1]["user_input"] = \
            sealed.PREFIX + base64.b64encode(bytes(raw)).decode() + "]"
        return doc

    _rewrite_tip(store.root / CUSTOMER, flip)
    with pytest.raises(IntegrityError, match="does not authenticate"):
        Store(store.root).customer(CUSTOMER).read("v1")


def test_a_ciphertext_moved_to_another_turn_is_detected_on_read(encrypted: Any) -> None:
    store, _ = encrypted

    def move(doc: Any) -> Any:
        turns = doc["conversation_turns"]
        turns[0]["user_input"], turns[2]["user_input"] = \
            turns[2]["user_input"], turns[0]["user_input"]
        return doc

    _rewrite_tip(store.root / CUSTOMER, move)
    with pytest.raises(IntegrityError, match="moved from another place"):
        Store(store.root).customer(CUSTOMER).read("v1")


# -- keys -----------------------------------------------------------------------

def test_without_the_master_key_reads_say_why(encrypted: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = encrypted
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    with pytest.raises(KeyUnavailableError, match="no master key"):
        Store(store.root).customer(CUSTOMER).read("v1.0.0")
    monkeypatch.setenv("GITSTORE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(KeyUnavailableError, match="wrapped by master key"):
        Store(store.root).customer(CUSTOMER).read("v1.0.0")
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    assert check_customer(Store(store.root).customer(CUSTOMER)).problems == []


def test_keys_backup_restore_and_rotation(encrypted: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = encrypted
    old = os.environ["GITSTORE_MASTER_KEY"]
    assert store.keys.backup(tmp_path / "keys.bak") == 1
    (store.keys.dir / CUSTOMER / "1.key").unlink()
    with pytest.raises(KeyUnavailableError, match="keys restore"):
        Store(store.root).customer(CUSTOMER).read("v1.0.0")
    assert Store(store.root).keys.restore(tmp_path / "keys.bak") == (1, [])
    new_file = tmp_path / "new-master"
    assert new_master_key_file(new_file)
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    new = master_key(file=new_file)
    assert new is not None
    monkeypatch.setenv("GITSTORE_MASTER_KEY", old)
    assert Store(store.root).keys.rotate(new) == 1
    with pytest.raises(KeyUnavailableError, match="wrapped by master key"):
        Store(store.root).customer(CUSTOMER).read("v1.0.0")  # the old master no longer opens
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    monkeypatch.setenv("GITSTORE_MASTER_KEY_FILE", str(new_file))
    assert "follow-up on" in Store(store.root).customer(CUSTOMER).read("v1").raw(CONV).decode()


# -- shredding ------------------------------------------------------------------

def test_shred_erases_the_session_and_keeps_history_clean(tmp_path: Path, master: str) -> None:
    store = make_store(tmp_path / "enc", encrypt=True)
    store.configure_signing(_ssh_key(tmp_path))
    record(store).finalize(message="plan agreed")
    other = store.customer(CUSTOMER).new_session(allow_open=True)
    other.append_turn({"timestamp": "2025-01-15T13:00:00Z",
                       "user_input": {"query": "second scenario"},
                       "agent_response": {"orchestrator_response": "kept"}})
    store.keys.backup(tmp_path / "keys.bak")
    repo = store.root / CUSTOMER
    refs_before = git(repo, "show-ref")

    done = encryption.shred(store, CUSTOMER, "v1")
    assert done.backups_cleaned == (str((tmp_path / "keys.bak").resolve()),)
    assert git(repo, "show-ref") == refs_before      # not one commit or tag touched
    git(repo, "fsck", "--strict")
    git(repo, "verify-tag", "v1.0.0")
    fresh = Store(store.root)
    with pytest.raises(ShreddedError, match="shredded"):
        fresh.customer(CUSTOMER).read("v1.0.0")
    assert [v.version for v in fresh.customer(CUSTOMER).versions("v1")]
    assert "second scenario" in fresh.customer(CUSTOMER).read("v2").raw(CONV).decode()
    assert check_customer(fresh.customer(CUSTOMER)).problems == []
    assert found_markers(store.root) == set()
    assert found_markers(tmp_path) == set()          # the backup holds no readable key either
    assert fresh.keys.restore(tmp_path / "keys.bak") == (0, [])
    log = [json.loads(line) for line in (repo / "gitstore-audit.jsonl").read_text().splitlines()]
    [tomb] = [r for r in log if r["op"] == "shred"]
    assert tomb["rev"] == "v1" and "data key was destroyed" in tomb["detail"]
    with pytest.raises(ShreddedError):
        encryption.shred(fresh, CUSTOMER, "v1")
    res = run_cli(store.root, "export", CUSTOMER, "-O", "-")  # the rest still leaves
    assert res.code == 0 and "v1 was crypto-shredded: not exported" in res.err
    assert [s["scenario"] for s in json.loads(res.text)["customers"][0]["scenarios"]] == ["v2"]
    assert run_cli(store.root, "export", CUSTOMER, "v1", "-O", "-").code == 14


def _ssh_key(tmp_path: Path) -> Path:
    key = tmp_path / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_retention_can_shred_instead_of_purging(encrypted: Any) -> None:
    store, _ = encrypted
    (store.root / ".gitstore" / "policy.json").write_text(json.dumps({
        "retention_policies": {"active_customer_sessions": "1d", "completed_sessions": "1d"},
        "encrypted_sessions": "shred"}))
    later = Store(store.root, clock=Clock(store.now().replace(year=2027)))
    items = retention.apply(later)
    assert [(i.target, i.action) for i in items] == [("v1", "shred")]
    assert git(store.root / CUSTOMER, "rev-parse", "v1.0.0^{commit}")  # history kept
    with pytest.raises(ShreddedError):
        Store(store.root).customer(CUSTOMER).read("v1.0.0")
    assert retention.apply(later) == []


# -- plain git writers and hubs -------------------------------------------------------

def test_plaintext_pushed_into_an_encrypted_repository_is_refused(encrypted: Any,
                                                                  tmp_path: Path) -> None:
    store, _ = encrypted
    bare = store.root / CUSTOMER
    githooks.install(bare)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    git(clone, "checkout", "-q", "v1")
    doc = canonical.loads((clone / CONV).read_bytes())
    doc["conversation_turns"][0]["user_input"] = {"query": "in clear"}
    data = canonical.dumps(doc)
    (clone / CONV).write_bytes(data)
    sums = [f"{hashlib.sha256(data).hexdigest()}  {CONV}" if line.endswith(CONV) else line
            for line in (clone / "SHA256SUMS").read_text().splitlines()]
    (clone / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    git(clone, "commit", "-qam", "edit", "--no-verify")
    proc = subprocess.run(["git", "-C", str(clone), "push", "origin", "v1"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "is in clear but an encrypted session seals it" in proc.stderr


# -- laws --------------------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                         max_size=3),
                     max_leaves=12)
_KEY = sealed.SessionKey("c", 1, bytes(range(32)))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([*sorted(sealed.PLANS), "other.json"]),
       st.dictionaries(st.text(max_size=12), _json, max_size=4))
def test_open_undoes_seal_and_sealing_is_deterministic(name: str, doc: dict[str, Any]) -> None:
    stored = sealed.seal_doc(_KEY, name, doc)
    assert sealed.open_doc(_KEY, name, stored) == doc
    assert sealed.seal_doc(_KEY, name, doc) == stored
    assert sealed.check_stored({}) or True  # manifest missing is reported, never raises
    other = sealed.SessionKey("c", 2, bytes(range(32)))  # another scenario: nothing opens
    if sealed.has_tokens(canonical.dumps(stored)):
        with pytest.raises(IntegrityError):
            sealed.open_doc(other, name, stored)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6))
def test_a_turn_appended_leaves_the_earlier_tokens_byte_identical(texts: list[str]) -> None:
    turns = [{"turn_id": i + 1, "timestamp": "2025-01-15T10:00:00Z",
              "user_input": {"query": t}} for i, t in enumerate(texts)]
    doc = {"session_id": "s", "conversation_turns": turns[:-1],
           "conversation_summary": {"total_turns": len(turns) - 1}}
    longer = {**doc, "conversation_turns": turns,
              "conversation_summary": {"total_turns": len(turns)}}
    a = sealed.seal_doc(_KEY, CONV, doc)["conversation_turns"]
    b = sealed.seal_doc(_KEY, CONV, longer)["conversation_turns"]
    assert b[:-1] == a
    assert b[-1]["turn_id"] == len(turns) and b[-1]["timestamp"] == "2025-01-15T10:00:00Z"


# -- sync through a hub that never holds a key ------------------------------------------

def test_encrypted_sessions_travel_through_a_hub_that_cannot_read_them(
        tmp_path: Path, master: str) -> None:
    made = hub_ops.init(tmp_path / "hub")
    hub_ops.add(made, CUSTOMER)
    server = start_daemon(made.path, tmp_path / "daemon.log")
    try:
        a = synced_store(tmp_path / "a", server.template)
        encryption.enable(a)
        a = Store(a.root, clock=Clock())
        record(a).finalize(message="plan agreed")
        [out] = syncing.sync(a)
        assert out.error is None, out.error            # the hub's hook took sealed trees
        assert found_markers(made.path) == set()        # and holds no plaintext
        a.keys.backup(tmp_path / "keys.bak")

        b = synced_store(tmp_path / "b", server.template)
        b.keys.restore(tmp_path / "keys.bak")           # same master key (environment)
        [out] = syncing.sync(b, [b.customer(CUSTOMER)])
        assert out.error is None, out.error
        b = Store(b.root, clock=Clock(store_later()))
        session = b.customer(CUSTOMER).session()
        session.follow_up()
        session.append_turn(turn("2025-01-16T09:00:00Z", "zephyr question"))
        [out] = syncing.sync(b)
        assert out.error is None, out.error
        [out] = syncing.sync(a)
        assert out.error is None, out.error
        fresh = Store(a.root)
        assert "zephyr question" in fresh.customer(CUSTOMER).read("v1").raw(CONV).decode()
        assert check_customer(fresh.customer(CUSTOMER)).problems == []
        assert found_markers(made.path) == set()
    finally:
        server.stop()


def store_later() -> Any:
    return datetime(2025, 1, 16, 9, 0, tzinfo=UTC)


def test_a_long_encrypted_conversation_is_stored_in_parts_and_verifies(
        tmp_path: Path, master: str) -> None:
    store = make_store(tmp_path / "enc", encrypt=True)
    session = store.customer(CUSTOMER).new_session(session_id="s-long",
                                                   created="2025-01-15T10:30:00Z")
    for n in range(70):
        session.append_turn(turn(f"2025-01-15T10:{30 + n // 60:02d}:{n % 60:02d}Z",
                                 f"question {n} {MARKERS[0]}"))
    repo = store.root / CUSTOMER
    names = git(repo, "ls-tree", "-r", "--name-only", "v1").split()
    assert "conversation/head.json" in names and "conversation/turns/0001.json" in names
    assert sealed.PREFIX in git(repo, "show", "v1:conversation/turns/0001.json")
    fresh = Store(store.root)
    turns = fresh.customer(CUSTOMER).read("v1").document(CONV)["conversation_turns"]
    assert [t["user_input"]["query"] for t in turns] == \
        [f"question {n} {MARKERS[0]}" for n in range(70)]
    assert check_customer(fresh.customer(CUSTOMER)).problems == []
    session = fresh.customer(CUSTOMER).session()
    summary = load_example("session", "conversation.json")["conversation_summary"]
    session.set_summary({k: v for k, v in summary.items() if k != "total_turns"})
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name == "session_metadata.json":
            doc["session_info"].update(api_key=CUSTOMER, session_id="s-long")
        session.put(name, doc)
    session.finalize()
    assert sealed.PREFIX in git(repo, "show", "v1.0.0:conversation.json")
    assert check_customer(Store(store.root).customer(CUSTOMER)).problems == []
    assert found_markers(store.root) == set()


def test_a_pending_merge_of_encrypted_scenarios_keeps_its_documents_sealed(
        encrypted: Any) -> None:
    store, _ = encrypted
    other = store.customer(CUSTOMER).new_session(allow_open=True)
    other.append_turn(turn("2025-01-15T13:00:00Z", f"conflicting {MARKERS[0]}"))
    conv = load_example("session", "conversation.json")["conversation_summary"]
    other.set_summary({**{k: v for k, v in conv.items() if k != "total_turns"},
                       "final_recommendation": f"{MARKERS[2]} other"})
    pending = store.customer(CUSTOMER).merge("v2", into="v1")
    assert getattr(pending, "conflicts", None), "the test needs a pending merge"
    repo = store.root / CUSTOMER
    assert sealed.PREFIX in git(repo, "show", "refs/gitstore/merges/v1:merge.json")
    assert found_markers(store.root) == set()
    again = Store(store.root).customer(CUSTOMER).pending_merge("v1")
    assert again.conflicts == pending.conflicts


def test_export_and_import_cross_the_encryption_boundary_both_ways(
        tmp_path: Path, master: str) -> None:
    plain = make_store(tmp_path / "plain", encrypt=False)
    record(plain).finalize(message="plan agreed")
    assert run_cli(plain.root, "export", CUSTOMER, "-O", str(tmp_path / "p.json")).code == 0
    enc = make_store(tmp_path / "enc", encrypt=True)
    res = run_cli(enc.root, "import", str(tmp_path / "p.json"))
    assert res.code == 0, res.err
    fresh = Store(enc.root)
    assert fresh.customer(CUSTOMER).read("v1.0.0").raw(CONV) == \
        plain.customer(CUSTOMER).read("v1.0.0").raw(CONV)
    assert sealed.PREFIX in git(enc.root / CUSTOMER, "show", "v1.0.0:conversation.json")
    assert "Replayed-Manifest:" in git(enc.root / CUSTOMER, "log", "-1", "--format=%B", "v1.0.0")
    assert check_customer(fresh.customer(CUSTOMER)).problems == []
    assert found_markers(enc.root) == set()

    assert run_cli(enc.root, "export", CUSTOMER, "-O", str(tmp_path / "e.json")).code == 0
    back = make_store(tmp_path / "back", encrypt=False)
    res = run_cli(back.root, "import", str(tmp_path / "e.json"))
    assert res.code == 0, res.err
    assert Store(back.root).customer(CUSTOMER).read("v1.0.0").raw(CONV) == \
        plain.customer(CUSTOMER).read("v1.0.0").raw(CONV)
    assert check_customer(Store(back.root).customer(CUSTOMER)).problems == []


def test_search_scans_encrypted_sessions_only_with_their_keys(
        encrypted: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = encrypted
    found = Store(store.root).search(f"{MARKERS[0].lower()} follow")
    assert [(r["customer"], r["scenario"], r["encrypted"]) for r in found] == \
        [(CUSTOMER, "v1", True)]
    said: list[str] = []
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    keyless = Store(store.root)
    keyless.warn = said.append
    assert keyless.search(MARKERS[0]) == []
    assert said == ["1 encrypted session(s) not searched: their keys are not at hand (no "
                    "master key, or shredded)"]


def test_the_web_viewer_shows_plaintext_and_says_why_it_cannot(
        encrypted: Any, master: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = encrypted
    token, _ = TokenFile(store.root).create("auditor")
    page = f"/c/{CUSTOMER}/v/v1.0.0"
    with TestClient(create_app(store.root, index_max_age=0)) as client:
        r = client.get(page, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and MARKERS[1] in r.text
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    with TestClient(create_app(store.root, index_max_age=0)) as client:
        r = client.get(page, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403 and "encrypted session" in r.text
        assert MARKERS[1] not in r.text
    monkeypatch.setenv("GITSTORE_MASTER_KEY", master)
    encryption.shred(Store(store.root), CUSTOMER, "v1")
    with TestClient(create_app(store.root, index_max_age=0)) as client:
        r = client.get(page, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 410 and "shredded" in r.text


# -- what a fresh-eyes review found ------------------------------------------------------

def test_a_shred_is_seen_by_a_process_that_already_holds_the_key(encrypted: Any) -> None:
    store, session = encrypted
    assert MARKERS[0] in store.customer(CUSTOMER).read("v1").raw(CONV).decode()  # key cached
    encryption.shred(Store(store.root), CUSTOMER, "v1")         # another process shreds
    with pytest.raises(ShreddedError):
        session.append_turn(turn("2025-01-15T12:30:00Z", "after the shred"))
    with pytest.raises(ShreddedError):
        store.customer(CUSTOMER).read("v1")                      # not from memory either


def test_an_interrupted_shred_is_finished_by_the_next_one(encrypted: Any) -> None:
    store, _ = encrypted
    key_file = store.keys.dir / CUSTOMER / "1.key"
    saved = key_file.read_bytes()
    encryption.shred(store, CUSTOMER, "v1")
    key_file.write_bytes(saved)                  # as if the shred died after its tombstone
    assert store.keys.kids() == []               # never backed up, rotated or restored
    with pytest.raises(ShreddedError, match="already shredded"):
        encryption.shred(Store(store.root), CUSTOMER, "v1")
    assert not key_file.exists()


def test_a_purge_of_an_encrypted_session_shreds_its_key(encrypted: Any) -> None:
    store, _ = encrypted
    (store.root / ".gitstore" / "policy.json").write_text(json.dumps({
        "retention_policies": {"active_customer_sessions": "1d", "completed_sessions": "1d"}}))
    later = Store(store.root, clock=Clock(store.now().replace(year=2027)))
    assert next(i.action for i in retention.apply(later)).startswith("purge")
    assert store.keys.shredded(CUSTOMER, 1) is not None
    assert not (store.keys.dir / CUSTOMER / "1.key").exists()


def test_a_store_without_the_keys_refuses_to_read_or_write_sealed_data(
        encrypted: Any, tmp_path: Path) -> None:
    store, _ = encrypted
    clone = tmp_path / "elsewhere"
    Store.init(clone)
    git(tmp_path, "clone", "-q", "--bare", str(store.root / CUSTOMER), str(clone / CUSTOMER))
    res = run_cli(clone, "show", CUSTOMER, "v1.0.0", "conversation.json")
    assert res.code == 13 and "keys restore" in res.err
    (tmp_path / "t.json").write_text(json.dumps(turn("2025-01-15T12:40:00Z", "in clear?")))
    res = run_cli(clone, "turn", CUSTOMER, str(tmp_path / "t.json"))
    assert res.code == 13, res.err
    assert "in clear?" not in git(clone / CUSTOMER, "log", "--all", "-p")


def test_a_master_key_command_that_does_not_round_trip_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path / "enc", encrypt=False)
    (store.root / ".gitstore" / "config.json").write_text(json.dumps({"encrypt": True}))
    kms = tmp_path / "kms.sh"
    kms.write_text("#!/bin/sh\ncat >/dev/null\n")   # wraps to nothing
    kms.chmod(0o700)
    monkeypatch.setenv("GITSTORE_MASTER_KEY_COMMAND", str(kms))
    with pytest.raises(KeyUnavailableError, match="did not wrap"):
        record(Store(store.root))
    assert Store(store.root).customers() == []     # no repository, no key, no scenario
    assert not (store.root / ".gitstore" / "keys" / CUSTOMER / "1.key").exists()


def test_a_shred_drops_a_merge_pending_from_the_session(tmp_path: Path, master: str) -> None:
    """A merge of v1 into v2 waiting for review holds v1's documents, sealed with v2's
    key: shredding v1 takes that pending merge along (a merge:abort record says so),
    so no copy of v1's content stays readable; v2 itself is untouched."""
    store = make_store(tmp_path / "s", encrypt=True)
    record(store).finalize()
    v2 = store.customer(CUSTOMER).new_session(created="2025-01-16T12:00:00Z")
    v2.append_turn(turn("2025-01-16T12:01:00Z", "the v2 question"))
    pending = store.customer(CUSTOMER).merge("v1", into="v2", reviewer="Rev <r@x.invalid>")
    assert pending.written is None and pending.remaining
    assert MARKERS[0] in json.dumps(store.customer(CUSTOMER).pending_merge("v2").sides)
    encryption.shred(store, CUSTOMER, "v1")
    fresh = Store(store.root)
    with pytest.raises(NotFoundError, match="no merge into"):
        fresh.customer(CUSTOMER).pending_merge("v2")
    assert git(store.root / CUSTOMER, "for-each-ref", "refs/gitstore/merges/") == ""
    records = [r for r in fresh.customer(CUSTOMER).audit_log.records()
               if r["op"] == "merge:abort"]
    assert [(r["rev"], r["detail"]) for r in records] == [("v2", "dropped by the shred of v1")]
    assert "the v2 question" in fresh.customer(CUSTOMER).read("v2").raw(CONV).decode()
