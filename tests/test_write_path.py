"""The write path at peer speed: its caches never change what is written or read.

Laws checked against the real git binary: the state after turn k is exactly k
turns; shared parses and cached blobs never leak a failed or other write into
the next one; the catalog's incremental record equals a rebuild from git.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, Clock, git, git_conversation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import Store
from gitstore.core import layout
from gitstore.errors import InvalidDocumentError, NotFoundError, UsageError
from gitstore.git import objects, packwrite
from gitstore.git.repo import Repo


def _turn(i: int, second: int | None = None) -> dict[str, Any]:
    s = i if second is None else second
    return {"timestamp": f"2025-01-15T10:{s // 60:02d}:{s % 60:02d}Z",
            "user_input": {"query": f"question {i}"},
            "agent_response": {"orchestrator_response": f"answer {i}"}}


def _new(tmp_path: Path) -> Any:
    store = Store.init(tmp_path / "s", clock=Clock())
    return store, store.customer(CUSTOMER).new_session(created="2025-01-15T09:00:00Z")


def _git_turns(session: Any, rev: str) -> list[Any]:
    return json.loads(git_conversation(session.customer.path, rev))["conversation_turns"]


def test_after_turn_is_exactly_that_many_turns(tmp_path: Path) -> None:
    _, session = _new(tmp_path)
    commits = [session.append_turn(_turn(i)).commit for i in range(1, 13)]
    for k in (1, 5, 12):
        snap = session.after_turn(k)
        turns = snap.document("conversation.json")["conversation_turns"]
        assert [t["turn_id"] for t in turns] == list(range(1, k + 1))
        assert snap.commit == commits[k - 1]
        assert _git_turns(session, snap.commit) == turns
    with pytest.raises(NotFoundError):
        session.after_turn(13)
    for bad in (0, -1, True, "3"):
        with pytest.raises(UsageError):
            session.after_turn(bad)


def test_a_refused_turn_leaves_no_trace_in_the_next_write(tmp_path: Path) -> None:
    """The parsed conversation is shared between writes: a turn the pipeline
    refuses must not appear in the next one."""
    _, session = _new(tmp_path)
    session.append_turn(_turn(1))
    with pytest.raises(InvalidDocumentError):
        session.append_turn({**_turn(2), "timestamp": "not a time"})
    session.append_turn(_turn(3))
    turns = _git_turns(session, "v1")
    assert [t["user_input"]["query"] for t in turns] == ["question 1", "question 3"]
    assert [t["turn_id"] for t in turns] == [1, 2]


def test_a_turn_placed_by_timestamp_renumbers_copies_not_the_cache(tmp_path: Path) -> None:
    _, session = _new(tmp_path)
    first = session.append_turn(_turn(1, 10)).commit
    second = session.append_turn(_turn(2, 30)).commit
    early = dict(_turn(3, 20))  # between the two: becomes turn 2, the other turn 3
    session.append_turn(early)
    assert [t["user_input"]["query"] for t in _git_turns(session, "v1")] == \
        ["question 1", "question 3", "question 2"]
    assert [t["turn_id"] for t in _git_turns(session, "v1")] == [1, 2, 3]
    # the earlier commits are unchanged, in git and read back through the store
    assert [t["turn_id"] for t in _git_turns(session, second)] == [1, 2]
    assert [t["turn_id"] for t in session.customer.read(second).document(
        "conversation.json")["conversation_turns"]] == [1, 2]
    assert len(_git_turns(session, first)) == 1


def test_incremental_index_equals_a_rebuild(tmp_path: Path) -> None:
    store, session = _new(tmp_path)
    for i in range(1, 6):
        session.append_turn(_turn(i))
    session.append_turn(_turn(9, 2))  # placed second: renumbers the rest
    found = store.search("question", limit=50)
    store.catalog.rebuild()
    assert store.search("question", limit=50) == found
    assert len(found) == 6


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50)), min_size=1, max_size=8))
def test_writes_read_back_exactly_as_git_has_them(tmp_path_factory: Any,
                                                   steps: list[tuple[bool, int]]) -> None:
    """Whatever mix of appends (in order or placed by timestamp) and refused
    turns, the store's reads equal git's bytes at every commit."""
    _, session = _new(tmp_path_factory.mktemp("w"))
    made = []
    for n, (valid, second) in enumerate(steps):
        turn = _turn(n + 1, second) if valid else {"timestamp": 5}
        try:
            made.append(session.append_turn(turn).commit)
        except (InvalidDocumentError, UsageError):
            assert not valid
    for commit in made:
        read = session.customer.read(commit).document("conversation.json")
        assert read == json.loads(git_conversation(session.customer.path, commit))


def test_a_commit_is_read_once_and_the_cache_stays_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The git layer keeps recently read commits (an id names one content, in any
    repository): a second read is the same object, equal to what git says, and the
    cache forgets the least recently read beyond its bound."""
    monkeypatch.setattr(objects, "COMMIT_INFOS", 3)
    _, session = _new(tmp_path)
    ids = [session.append_turn(_turn(i)).commit for i in range(1, 6)]
    repo = Repo.open(tmp_path / "s" / CUSTOMER)
    first = repo.commit(ids[-1])
    assert repo.commit(ids[-1]) is first
    assert Repo.open(tmp_path / "s" / CUSTOMER).commit(ids[-1]) is first
    assert first.id == ids[-1] and first.trailer("Turn") == "5"
    for oid in ids[:4]:
        repo.commit(oid)
    assert repo.commit(ids[-1]) is not first and repo.commit(ids[-1]) == first


def test_an_append_hashes_what_it_changed_not_the_whole_conversation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A long conversation's unchanged chunks are known by identity from write to
    write: an append hashes its last chunk, the head and the small documents, so
    what it hashes does not grow with the session (chunks that filled up and were
    cut again once were hashed on every later append)."""
    _, session = _new(tmp_path)
    big = "x" * 300
    n = layout.CHUNK * 4 + 3
    session.put("conversation.json", {
        "session_id": session.session_id,
        "conversation_turns": [{**_turn(i, i), "turn_id": i, "note": big}
                               for i in range(1, n + 1)]})
    hashed: list[int] = []
    real = packwrite.object_id

    def counting(kind: int, data: bytes) -> str:
        hashed.append(len(data))
        return real(kind, data)

    monkeypatch.setattr(packwrite, "object_id", counting)
    per_append: dict[int, int] = {}
    for i in range(n + 1, n + layout.CHUNK + 8):  # a chunk fills up, the next begins
        hashed.clear()
        session.append_turn({**_turn(i, i), "note": big})
        per_append[i] = sum(hashed)
    first = next(i for i in per_append if i % layout.CHUNK == 1)  # alone in a new chunk
    # the last chunk is all that grows: 3 turns in it cost far less than 62 did
    assert per_append[first + 2] < per_append[first - 2] / 2, per_append
    assert per_append[first + 6] < per_append[first - 2] / 2, per_append
    assert _git_turns(session, "refs/heads/v1")[-1]["turn_id"] == n + layout.CHUNK + 7


def test_the_look_back_reads_each_commit_once_per_handle(
        tmp_path: Path) -> None:
    """Repo.first_parents follows first parents newest first, equal to git's
    own list; a handle reads a commit once (the damage matrix shows a new
    handle reading from disk again)."""
    _, session = _new(tmp_path)
    ids = [session.append_turn(_turn(i)).commit for i in range(1, 6)]
    path = tmp_path / "s" / CUSTOMER
    repo = Repo.open(path)
    chain = [c.id for c in repo.first_parents(ids[-1])]
    assert chain == git(path, "rev-list", "--first-parent", ids[-1]).split()
    again = list(repo.first_parents(ids[-1]))
    assert [c.id for c in again] == chain
    assert all(a is b for a, b in zip(again, repo.first_parents(ids[-1]), strict=True))
