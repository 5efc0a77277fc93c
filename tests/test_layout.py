"""The conversation in parts (layout 2) and whole (layout 1): laws of the codec,
what an auditor sees with plain git, damage, and old stores that migrate."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, SESSION_ID, Clock, git, git_conversation, load_example, run_cli
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gitstore import Store
from gitstore.core import canonical, layout, manifest
from gitstore.core import files as sessionfiles
from gitstore.errors import IntegrityError
from gitstore.ops import githooks, migrate
from gitstore.ops.verify import check_customer
from gitstore.store import tip

# -- the codec ---------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                     st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)
_turns = st.lists(st.dictionaries(st.text(min_size=1, max_size=8), _values, min_size=1,
                                  max_size=4), max_size=150)


def _doc(turns: list[Any], extra: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"session_id": "s-1", "conversation_turns": turns,
                           "conversation_summary": {"total_turns": len(turns)}}
    if extra is not None:
        doc["zz_extra"] = extra
    return doc


@settings(max_examples=60, deadline=None)
@given(_turns, _values)
def test_parts_are_canonical_and_join_back_exactly(turns: list[Any], extra: Any) -> None:
    doc = _doc(turns, extra)
    data = canonical.dumps(doc)
    parts = layout.split(data)
    assert parts is not None
    assert parts.head == canonical.dumps({**doc, "conversation_turns": []})
    assert len(parts.chunks) == -(-len(turns) // layout.CHUNK)
    for i, chunk in enumerate(parts.chunks):
        assert chunk == canonical.dumps(turns[i * layout.CHUNK:(i + 1) * layout.CHUNK])
    joined = layout.join(parts.head, parts.chunks)
    assert joined is not None and joined[0] == data and joined[1] == parts


@settings(max_examples=60, deadline=None)
@given(_turns, _values)
def test_a_conversation_parsed_part_by_part_is_the_document(turns: list[Any],
                                                            extra: Any) -> None:
    """What ``load_shared`` parses from a tip's parts (the head, then each chunk,
    a chunk seen before from its cache) is what parsing the whole gives, in
    the same key order."""
    doc = _doc(turns, extra)
    parts = layout.split(canonical.dumps(doc))
    assert parts is not None
    for _ in range(2):  # the second time every chunk comes from the cache
        state = tip.State("0" * 40, None, None, "s-1", False,  # type: ignore[arg-type]
                          {"conversation.json": layout.Joined(parts)}, ())
        got = tip.load_shared(state, "conversation.json")
        whole = json.loads(canonical.dumps(doc))
        assert got == whole and list(got) == list(whole)
        assert not state.files["conversation.json"].assembled or not parts.chunks


@settings(max_examples=60, deadline=None)
@given(_turns, _values, st.booleans())
@example([{"n": i, "t": "a\nb"} for i in range(130)], None, False)  # in three parts
def test_a_lazy_decode_is_the_decode_unassembled(turns: list[Any], extra: Any,
                                                 materialise: bool) -> None:
    """What a writer reads of a tip another process wrote (``decode_lazy``): the
    same files as ``decode``, the conversation of sound parts a ``Joined`` not
    yet assembled (whole where materialised); ``measure`` finds the split
    ``join`` does, without the bytes."""
    doc = _doc(turns, extra)
    data = canonical.dumps(doc)
    files = {"conversation.json": data, "session_metadata.json": b"{}\n"}
    files["SHA256SUMS"] = manifest.build(files)
    stored, _ = layout.encode(files, materialise=materialise)
    eager, eager_parts = layout.decode(stored)
    lazy, lazy_parts = layout.decode_lazy(stored)
    assert eager_parts == lazy_parts and set(eager) == set(lazy)
    conv = lazy["conversation.json"]
    assert isinstance(conv, layout.Joined) != (materialise or eager_parts is None)
    if len(turns) == 130:
        assert isinstance(conv, layout.Joined)
    if isinstance(conv, layout.Joined):
        assert not conv.assembled and conv.size == len(data) and conv.data() == data
    assert {n: d.data() if isinstance(d, layout.Joined) else d for n, d in lazy.items()} == eager
    parts = layout.split(data)
    assert parts is not None
    joined = layout.join(parts.head, parts.chunks)
    assert joined is not None and layout.measure(parts.head, parts.chunks) == joined[1] == parts


_trailing = st.one_of(st.none(), _values, st.lists(st.dictionaries(
    st.text(min_size=1, max_size=4), _values, min_size=1, max_size=2), min_size=1, max_size=3))


@settings(max_examples=60, deadline=None)
@given(_turns, st.lists(st.tuples(st.integers(0, 200), st.booleans()), max_size=5),
       _trailing)
def test_a_split_from_an_earlier_one_equals_a_fresh_split(
        turns: list[Any], edits: list[tuple[int, bool]], added: Any) -> None:
    """Appends, changed turns and removed turns, and a key added after the turns
    (an array of objects looks like turns): reusing the earlier split never
    changes the result, it only saves the work."""
    before = canonical.dumps(_doc(turns))
    base = layout.split(before)
    assert base is not None
    after_turns = list(turns)
    for at, append in edits:
        if append or not after_turns:
            after_turns.append({"n": at})
        else:
            after_turns[at % len(after_turns)] = {"changed": at}
    after = canonical.dumps(_doc(after_turns, added))
    assert layout.split(after, (before, base)) == layout.split(after)


@settings(max_examples=40, deadline=None)
@given(_turns, st.booleans())
def test_encode_then_decode_gives_the_documents_back(turns: list[Any], asked: bool) -> None:
    files = {"conversation.json": canonical.dumps(_doc(turns)),
             "session_metadata.json": b"{}\n"}
    files["SHA256SUMS"] = manifest.build(files)
    stored, parts = layout.encode(files, materialise=asked)
    whole = asked or len(turns) <= layout.CHUNK * (layout.MIN_CHUNKS - 1)
    assert (parts is None) is whole
    assert manifest.verify(stored) == []  # the stored manifest lists exactly the tree
    assert ("conversation.json" in stored) is whole
    assert (layout.HEAD in stored) is not whole
    logical, _ = layout.decode(stored)
    assert logical.pop("SHA256SUMS") == stored["SHA256SUMS"]
    assert logical == {n: d for n, d in files.items() if n != "SHA256SUMS"}
    assert manifest.verify({**logical, "SHA256SUMS": stored["SHA256SUMS"]}) == []


def test_what_cannot_be_split_is_stored_whole() -> None:
    for data in (b'{"conversation_turns": [1, 2]}\n',
                 canonical.dumps(_doc([1, 2])),  # turns that are not objects
                 canonical.dumps({"session_id": "x"})):
        files = {"conversation.json": data}
        assert layout.encode(files, materialise=False) == (files, None)


_some_turns = st.lists(st.dictionaries(st.text(min_size=1, max_size=8), _values, min_size=1,
                                       max_size=4), max_size=6)


@settings(max_examples=80, deadline=None)
@given(st.integers(layout.CHUNK + 1, 260), _some_turns, st.integers(0, 70), _some_turns,
       _trailing)
def test_appending_to_the_parts_equals_splitting_the_whole(
        n: int, turns: list[Any], filler: int, more: list[Any], extra: Any) -> None:
    """``appended`` builds the next split from the parts alone (a chunk filling up
    and a new one starting included, and total_turns growing a digit): always the
    split of the whole document so changed, and a ``Joined`` of it assembles to
    exactly that document, its size known before."""
    added = [{"n": i, "text": "line\nbreak"} for i in range(filler)] + more
    if not added:
        added = [{"n": 0}]
    doc = _doc([*turns, *({"n": i} for i in range(n - len(turns)))], extra)
    parts = layout.split(canonical.dumps(doc))
    assert parts is not None
    for item in added:
        doc["conversation_turns"].append(item)
        doc["conversation_summary"]["total_turns"] = len(doc["conversation_turns"])
        grown = layout.appended(parts, item, len(doc["conversation_turns"]))
        whole = canonical.dumps(doc)
        assert grown == layout.split(whole)
        assert grown is not None and grown.chunks[:-2] == parts.chunks[:len(grown.chunks) - 2]
        assert all(a is b for a, b in zip(grown.chunks[:-2], parts.chunks, strict=False))
        joined = layout.Joined(grown)
        assert joined.size == len(whole) and not joined.assembled
        assert joined.data() == whole and joined.data() is joined.data()
        parts = grown


def test_appended_refuses_parts_it_cannot_extend() -> None:
    doc = _doc([{"n": i} for i in range(layout.CHUNK + 3)])
    parts = layout.split(canonical.dumps(doc))
    assert parts is not None
    n = len(doc["conversation_turns"])
    assert layout.appended(parts, ["not", "an", "object"], n + 1) is None
    no_total = layout.split(canonical.dumps({**doc, "conversation_summary": {}}))
    assert no_total is not None and layout.appended(no_total, {"n": 0}, n + 1) is None
    bad = layout.Split(parts.head, (*parts.chunks[:-1], b"[]\n"), parts.ends, parts.body)
    assert layout.appended(bad, {"n": 0}, n + 1) is None
    assert layout.appended(layout.Split(parts.head, ()), {"n": 0}, n + 1) is None


def test_files_read_like_a_dict_and_assemble_only_when_read() -> None:
    doc = _doc([{"n": i} for i in range(layout.CHUNK * 2 + 1)])
    parts = layout.split(canonical.dumps(doc))
    assert parts is not None
    joined = layout.Joined(parts)
    files = sessionfiles.updated({"a.json": b"{}", "conversation.json": b"old"},
                                 {"conversation.json": joined})
    assert isinstance(files, sessionfiles.Files)
    assert sessionfiles.size(files, "conversation.json") == len(canonical.dumps(doc))
    assert sessionfiles.raw(files, "conversation.json") is joined
    assert sessionfiles.same(files, sessionfiles.updated(files, {}), "SHA256SUMS")
    assert not sessionfiles.same(files, sessionfiles.updated(files, {"a.json": b"[]"}),
                                 "SHA256SUMS")
    assert not joined.assembled  # nothing above read the conversation
    assert files["conversation.json"] == canonical.dumps(doc) and joined.assembled
    assert dict(files) == {"a.json": b"{}", "conversation.json": canonical.dumps(doc)}
    assert files.copy() == dict(files) == files | {}  # what a hook written for a dict does
    assert sessionfiles.updated({"a.json": b"1"}, {"b.json": b"2"}) == {"a.json": b"1",
                                                                         "b.json": b"2"}


# -- a store, seen with plain git ----------------------------------------------

def _turn(i: int) -> dict[str, Any]:
    """Turn ``i``, stamped ``i`` seconds after 10:30 (the example's session runs
    10:30-10:42)."""
    return {"timestamp": f"2025-01-15T10:{30 + i // 60:02d}:{i % 60:02d}Z",
            "user_input": {"query": f"question {i}"},
            "agent_response": {"orchestrator_response": f"answer {i}"}}


def _finalize(session: Any) -> None:
    """Complete the session with the example's other documents, and finalize it."""
    summary = load_example("session", "conversation.json")["conversation_summary"]
    summary.pop("total_turns", None)  # the store keeps it
    session.set_summary(summary)
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name == "session_metadata.json":
            doc["session_info"]["api_key"] = CUSTOMER
            doc["session_info"]["session_id"] = SESSION_ID
        session.put(name, doc)
    session.finalize(message="deployment plan agreed")


@pytest.fixture
def grown(tmp_path: Path) -> Any:
    store = Store.init(tmp_path / "s", clock=Clock())
    session = store.customer(CUSTOMER).new_session(session_id=SESSION_ID,
                                                   created="2025-01-15T10:30:00Z")
    for i in range(1, 140):
        session.append_turn(_turn(i))
    # its background maintenance replaces packs: plain git copying the repository
    # (a local clone) must not run beside it
    Store.wait_for_maintenance()
    return store, session


def _checkout_verifies(repo: Path, rev: str, tmp_path: Path) -> list[str]:
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True,
                             check=True).stdout
    out = tmp_path / f"co-{rev.replace('/', '_')}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(out, filter="data")
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def test_an_auditor_sees_parts_at_every_commit_and_the_whole_at_tags(
        grown: Any, tmp_path: Path) -> None:
    store, session = grown
    repo = session.customer.path
    files = _checkout_verifies(repo, "v1", tmp_path)
    assert "conversation.json" not in files
    assert [f for f in files if f.startswith("conversation/")] == [
        "conversation/head.json", "conversation/turns/0000.json",
        "conversation/turns/0001.json", "conversation/turns/0002.json"]
    chunk = json.loads(git(repo, "show", "v1:conversation/turns/0002.json"))
    assert [t["turn_id"] for t in chunk] == list(range(129, 140))
    _finalize(session)
    whole = git(repo, "show", "v1.0.0:conversation.json")
    assert json.loads(whole) == session.customer.read("v1.0.0").document("conversation.json")
    assert _checkout_verifies(repo, "v1.0.0", tmp_path) == sorted([  # the spec's files
        "SHA256SUMS", "conversation.json", "deployment_context.json",
        "session_analytics.json", "session_metadata.json", "sow_document.md"])
    git(repo, "fsck", "--strict")
    assert check_customer(store.customer(CUSTOMER)).problems == []


def test_a_key_added_after_the_turns_never_takes_the_next_turn(grown: Any) -> None:
    """An array of objects added after the turns (a put) must not pass for the
    end of the turns: the next append goes into conversation_turns."""
    store, session = grown
    doc = session.read().document("conversation.json")
    doc["notes"] = [{"x": 1}]
    session.put("conversation.json", doc)
    session.append_turn(_turn(140))
    after = json.loads(git_conversation(session.customer.path, "v1"))
    assert len(after["conversation_turns"]) == 140 == after["conversation_summary"][
        "total_turns"]
    assert after["notes"] == [{"x": 1}]
    assert store.customer(CUSTOMER).read("v1").document("conversation.json") == after
    for name in git(session.customer.path, "ls-tree", "--name-only",
                    "v1:conversation/turns").split():  # every part is JSON on its own
        json.loads(git(session.customer.path, "show", f"v1:conversation/turns/{name}"))


def test_an_append_writes_one_chunk_not_the_conversation(grown: Any) -> None:
    _, session = grown
    repo = session.customer.path
    session.append_turn(_turn(200))
    changed = git(repo, "diff-tree", "-r", "--name-only", "--no-commit-id", "v1").split()
    assert changed == ["SHA256SUMS", "conversation/head.json", "conversation/turns/0002.json"]


def test_appends_and_recall_never_assemble_the_conversation(grown: Any,
                                                            monkeypatch: Any) -> None:
    """Appending to a conversation in parts and reading its last turns work on
    the parts: the whole document is never assembled in the writer's process,
    and what git holds is exactly the document a full serialisation gives (the
    other tests run with GITSTORE_CHECK_SPLICE, which assembles every append
    and compares it with the full serialisation)."""
    monkeypatch.delenv("GITSTORE_CHECK_SPLICE", raising=False)
    _, session = grown
    repo = session.customer.repo
    for i in range(200, 260):  # chunk 0002 fills up (128 + 64) and 0003 starts
        session.append_turn(_turn(i))
        held = repo.split_of(repo.ref_target("refs/heads/v1"))
        assert held is not None and isinstance(held[0], layout.Joined)
        assert not held[0].assembled, i
    assert [t["turn_id"] for t in session.history(70)] == list(range(130, 200))
    for n in (0, 1, 64, 199, 200, 250, 500):  # more than there are: every turn
        assert [t["turn_id"] for t in session.history(n)] == (list(range(1, 200))[-n:]
                                                               if n else [])
    assert not held[0].assembled
    stored = json.loads(git_conversation(session.customer.path, "v1"))
    assert stored["conversation_summary"]["total_turns"] == 199
    assert [t["turn_id"] for t in stored["conversation_turns"]] == list(range(1, 200))
    assert git_conversation(session.customer.path, "v1") == canonical.dumps(stored)
    assert session.read().document("conversation.json") == stored  # a read assembles
    assert held[0].assembled


def _count_parses(monkeypatch: Any) -> list[int]:
    """The sizes of the stored documents parsed from now on (``loads_stored``)."""
    parsed: list[int] = []
    real = canonical.loads_stored

    def counting(data: bytes) -> Any:
        parsed.append(len(data))
        return real(data)

    monkeypatch.setattr(canonical, "loads_stored", counting)
    return parsed


def test_an_append_after_a_put_parses_nothing_of_the_conversation(
        grown: Any, monkeypatch: Any) -> None:
    """A conversation put whole (an import, a seed) and then appended to: the put
    keeps what it parsed, so the append (and the next) parses no stored
    conversation (before, the first append parsed all of it: 170 ms at 5,000
    turns)."""
    monkeypatch.delenv("GITSTORE_CHECK_SPLICE", raising=False)
    _, session = grown
    conv = session.read().document("conversation.json")
    conv["conversation_turns"] = conv["conversation_turns"][:100]
    conv["conversation_summary"]["total_turns"] = 100
    session.put("conversation.json", conv)
    parsed = _count_parses(monkeypatch)
    for i in range(300, 303):
        session.append_turn(_turn(i))
    assert not [n for n in parsed if n > 4096], parsed  # nothing conversation-sized
    monkeypatch.undo()
    stored = json.loads(git_conversation(session.customer.path, "v1"))
    assert [t["turn_id"] for t in stored["conversation_turns"]] == list(range(1, 104))
    assert stored["conversation_turns"][-1]["user_input"]["query"] == "question 302"


def test_an_append_on_a_tip_another_writer_moved_parses_its_new_parts_only(
        grown: Any, monkeypatch: Any) -> None:
    """Two writers of one session (two store handles: each its own repository
    handle, as two processes): after the other's append, a writer parses the
    head and the chunk that changed, not the conversation (its earlier chunks
    it parsed once, and they are the same blobs)."""
    monkeypatch.delenv("GITSTORE_CHECK_SPLICE", raising=False)
    store, session = grown
    other = Store(store.root, clock=Clock()).customer(CUSTOMER).session()
    parsed = _count_parses(monkeypatch)
    for i in range(300, 312, 2):
        other.append_turn(_turn(i))
        session.append_turn(_turn(i + 1))
    chunk = max(len(c) for c in layout.split(
        git_conversation(session.customer.path, "v1")).chunks)
    conversation = len(git_conversation(session.customer.path, "v1"))
    assert max(parsed) <= chunk < conversation // 2
    assert sum(parsed[-4:]) < conversation // 2  # steady: the head and the last chunk each
    monkeypatch.undo()
    stored = json.loads(git_conversation(session.customer.path, "v1"))
    assert [t["turn_id"] for t in stored["conversation_turns"]] == list(range(1, 152))
    assert [t["user_input"]["query"] for t in stored["conversation_turns"][-12:]] == \
        [f"question {i}" for i in range(300, 312)]


def test_a_damaged_part_is_named_by_verify(grown: Any, tmp_path: Path) -> None:
    store, session = grown
    repo = session.customer.path
    tip = git(repo, "rev-parse", "v1").strip()
    chunk = git(repo, "show", "v1:conversation/turns/0001.json")
    bad = git(repo, "hash-object", "-w", "--stdin",
              input=chunk.replace("question 70", "question 71").encode()).strip()
    turns = git(repo, "ls-tree", "v1:conversation/turns").replace(
        git(repo, "rev-parse", "v1:conversation/turns/0001.json").strip(), bad)
    new_turns = git(repo, "mktree", input=turns.encode()).strip()
    conv = git(repo, "ls-tree", "v1:conversation").replace(
        git(repo, "rev-parse", "v1:conversation/turns").strip(), new_turns)
    new_conv = git(repo, "mktree", input=conv.encode()).strip()
    root = git(repo, "ls-tree", "v1").replace(
        git(repo, "rev-parse", "v1:conversation").strip(), new_conv)
    tree = git(repo, "mktree", input=root.encode()).strip()
    forged = git(repo, "commit-tree", tree, "-p", tip, "-m", "v1.0.0: edit a turn").strip()
    git(repo, "update-ref", "refs/heads/v1", forged, tip)
    report = check_customer(store.customer(CUSTOMER))
    assert any("conversation/turns/0001.json" in p and "checksum" in p
               for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match=r"conversation/turns/0001\.json"):
        session.append_turn(_turn(300))  # never builds on a damaged tip


# -- stores from before layouts ---------------------------------------------------

def _old_store(tmp_path: Path, monkeypatch: Any) -> tuple[Store, Any]:
    """A repository as gitstore wrote them before layouts: whole conversations, no
    gitstore.layout setting."""
    monkeypatch.setattr(layout, "LATEST", 1)
    store = Store.init(tmp_path / "old", clock=Clock())
    session = store.customer(CUSTOMER).new_session(session_id=SESSION_ID,
                                                   created="2025-01-15T10:30:00Z")
    monkeypatch.undo()
    git(session.customer.path, "config", "--unset", "gitstore.layout")
    for i in range(1, 70):
        session.append_turn(_turn(i))
    _finalize(session)
    session.follow_up()
    session.append_turn(_turn(70))
    return store, session


def test_an_old_store_reads_diffs_verifies_and_migrates(tmp_path: Path,
                                                         monkeypatch: Any) -> None:
    store, session = _old_store(tmp_path, monkeypatch)
    repo = session.customer.path
    assert "conversation.json" in git(repo, "ls-tree", "--name-only", "v1").split()
    before = {v: store.customer(CUSTOMER).read(v).documents() for v in ("v1.0.0", "v1")}
    assert check_customer(store.customer(CUSTOMER)).problems == []
    result = run_cli(store.root, "migrate", "-o", "json")
    assert result.code == 0, result.err
    assert result.json() == [
        {"customer": CUSTOMER, "layout_before": 1, "layout": 2, "changed": True}]
    assert migrate.migrate(store)[0].changed is False  # idempotent
    assert git(repo, "config", "gitstore.layout").strip() == "2"
    after = {v: store.customer(CUSTOMER).read(v).documents() for v in ("v1.0.0", "v1")}
    assert after == before  # migrating changes nothing a reader sees
    session.append_turn(_turn(71))  # the next write stores the conversation in parts
    names = git(repo, "ls-tree", "-r", "--name-only", "v1").split()
    assert "conversation.json" not in names and "conversation/head.json" in names
    assert json.loads(git(repo, "show", "v1.0.0:conversation.json"))["conversation_turns"]
    diff, _, _ = store.customer(CUSTOMER).diff("v1.0.0", "v1")  # across the two layouts
    conv = diff.document("conversation.json")
    assert conv is not None and not diff.empty
    assert conv.status == "modified" and conv.old is not None and conv.new is not None
    assert len(json.loads(conv.new)["conversation_turns"]) == \
        len(json.loads(conv.old)["conversation_turns"]) + 2
    git(repo, "fsck", "--strict")
    assert check_customer(store.customer(CUSTOMER)).problems == []
    assert "conversation/head.json" in _checkout_verifies(repo, "v1", tmp_path)


# -- a writer with plain git, through the hook -------------------------------------

def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_a_plain_git_writer_appends_to_parts_and_the_hook_checks_them(
        grown: Any, tmp_path: Path) -> None:
    store, session = grown
    bare = session.customer.path
    githooks.install(bare)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--branch", "v1", str(bare), str(clone))
    chunk_path = clone / "conversation" / "turns" / "0002.json"
    chunk = json.loads(chunk_path.read_text())
    chunk.append({**_turn(140), "turn_id": 140})
    chunk_path.write_text(_dump(chunk))
    head_path = clone / "conversation" / "head.json"
    head = json.loads(head_path.read_text())
    head["conversation_summary"]["total_turns"] = 140
    head_path.write_text(_dump(head))
    message = ("v1.0.0: add turn 140 (plain git)\n\nSession-Version: v1.0.0\n"
               "Change: turn\nTurn: 140\n")

    # a manifest that does not list the new bytes of the parts: refused, by name
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--no-verify", "-m", message)
    refused = subprocess.run(["git", "-C", str(clone), "push", "origin", "HEAD:v1"],
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "conversation/turns/0002.json" in refused.stderr, refused.stderr

    # the README's recipe lists every file, parts included: accepted
    recipe = ("find . -path ./.git -prune -o -type f ! -name SHA256SUMS -printf '%P\\n' "
              "| sort | xargs sha256sum > SHA256SUMS")
    subprocess.run(["sh", "-c", recipe], cwd=clone, check=True)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--no-verify", "--amend", "-m", message)
    pushed = subprocess.run(["git", "-C", str(clone), "push", "origin", "HEAD:v1"],
                            capture_output=True, text=True, check=False)
    assert pushed.returncode == 0, pushed.stderr
    turns = store.customer(CUSTOMER).read("v1").document("conversation.json")[
        "conversation_turns"]
    assert len(turns) == 140 and turns[-1]["user_input"]["query"] == "question 140"
    assert check_customer(store.customer(CUSTOMER)).problems == []
    session.append_turn(_turn(141))  # gitstore goes on from the plain-git commit
    assert json.loads(git_conversation(bare, "v1"))["conversation_summary"]["total_turns"] == 141
