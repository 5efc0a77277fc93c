"""The semantic diff: its laws (Hypothesis), its matching, and ``gitstore diff``.

* ``compute(a, a).empty`` and ``apply(a, compute(a, b)) == b`` byte for byte,
  for generated session states: canonical JSON documents with conversation
  turns keyed by ``turn_id``, records keyed by ``id``/``collector_type``/
  ``decision``, duplicate keys that force positional matching, nested arrays,
  reordered records, added and removed documents, JSON that is not canonical
  and the SOW as arbitrary text;
* records are matched by natural key: a turn inserted in the middle is one
  added turn, a changed turn lists its changed fields; other documents show
  JSON paths with old and new values;
* the CLI on a real store holding v1.0.0, v1.1.0, v1.1.1 and a second scenario
  v2.0.0: text, the documented JSON format, a patch that ``git apply`` accepts
  on a checkout of A, ``--stat``, ``--exit-code``, the default B, ``-d`` and
  colour (only on a terminal or with ``--color always``, never with NO_COLOR).
"""

from __future__ import annotations

import copy
import json
import os
import pty
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    ROOT,
    SESSION_2,
    build_history,
    example_turn,
    git,
    load_example,
)
from conftest import CliResult as Result
from conftest import run_cli as run
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gitstore import Store
from gitstore.core import canonical, diffformat
from gitstore.core.diff import (
    MISSING,
    NATURAL_KEYS,
    Change,
    Diff,
    DocumentDiff,
    apply,
    compute,
    natural_key,
    pointer,
)
from gitstore.core.names import MANIFEST


def laws(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# Known counterexamples, run first (and so reported at once if they fail).
NEG_ZERO_A = {"session_analytics.json": b'{\n  "score": 0.0\n}\n'}
NEG_ZERO_B = {"session_analytics.json": b'{\n  "score": -0.0\n}\n'}
GAINED_KEY_OLD = [{"collector_type": 0, "turn_id": 0}]
GAINED_KEY_NEW = [{"id": 0, "collector_type": 1}, {"id": 1, "collector_type": 0}]
ESC = b"\x1b["


# =========================================================================== strategies

# Scalars on purpose include the values JSON tells apart and Python does not:
# True/1/1.0, 0.0/-0.0, and text with newlines and Unicode line separators.
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=12)
           | st.sampled_from(["", "a\nb", "x\u2028y", "tab\there", "é", "    {", "\n  ]"]))
small_keys = st.sampled_from(["a", "b", "c", "value", "nested", *NATURAL_KEYS])
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(small_keys | st.text(max_size=4),
                                                                inner, max_size=4),
    max_leaves=20)
key_values = st.integers(0, 6) | st.sampled_from(["a", "b", "c"])


@st.composite
def record_arrays(draw: st.DrawFn, *, unique: bool = True) -> list[dict[str, Any]]:
    """An array of records. Each side picks which natural-key fields its records
    carry, so both sides may share a key or not; ``unique=False`` allows
    duplicate key values (forcing positional matching)."""
    fields = draw(st.sets(st.sampled_from(NATURAL_KEYS), min_size=1, max_size=3))
    ids = draw(st.lists(key_values, max_size=5, unique=unique))
    out = []
    for ident in ids:
        record: dict[str, Any] = {}
        for k in fields:
            record[k] = ident if draw(st.booleans()) else draw(key_values)
        record.update(draw(st.dictionaries(st.sampled_from(["payload", "note", "steps"]),
                                           json_values, max_size=2)))
        out.append(record)
    return out


@st.composite
def turn(draw: st.DrawFn, turn_id: Any) -> dict[str, Any]:
    return {
        "turn_id": turn_id,
        "timestamp": draw(st.sampled_from(["2025-01-15T10:30:00Z", "2025-01-15T10:31:00Z"])),
        "user_input": {"query": draw(st.text(max_size=20)), "parameters": {}},
        "agent_response": {"confidence_score": draw(st.integers(0, 10)),
                           "sub_agents_invoked": draw(st.lists(st.sampled_from(
                               ["deployment-advisor", "data-extractor", "validator"]),
                               max_size=3))},
        "decision_points": draw(st.lists(st.fixed_dictionaries(
            {"decision": st.sampled_from(["cloud", "service", "alarm"]),
             "value": scalars, "confidence": st.sampled_from([0.5, 0.9, 1])}), max_size=3)),
    }


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(st.integers(1, 12), unique=True, max_size=6))
    turns = [draw(turn(i)) for i in ids]
    return {"session_id": "orchestrator-session-x", "conversation_turns": turns,
            "conversation_summary": {"total_turns": len(turns),
                                     "services": draw(st.lists(st.text(max_size=5),
                                                               max_size=3))}}


@st.composite
def edited_conversation(draw: st.DrawFn, conv: dict[str, Any]) -> dict[str, Any]:
    """``conv`` after a few edits an agent or a correction might make."""
    new = copy.deepcopy(conv)
    turns = new["conversation_turns"]
    used = {t["turn_id"] for t in turns}
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["insert", "delete", "change", "reorder", "summary"]))
        if op == "insert":
            free = [i for i in range(1, 20) if i not in used]
            tid = draw(st.sampled_from(free))
            used.add(tid)
            turns.insert(draw(st.integers(0, len(turns))), draw(turn(tid)))
        elif op == "delete" and turns:
            turns.pop(draw(st.integers(0, len(turns) - 1)))
        elif op == "change" and turns:
            t = turns[draw(st.integers(0, len(turns) - 1))]
            field = draw(st.sampled_from(["timestamp", "user_input", "decision_points",
                                          "extra"]))
            if field == "user_input":
                t["user_input"]["query"] = draw(st.text(max_size=10))
            elif field == "decision_points":
                t["decision_points"] = draw(turn(0))["decision_points"]
            else:
                t[field] = draw(json_values)
        elif op == "reorder":
            draw(st.randoms()).shuffle(turns)
        elif op == "summary":
            new["conversation_summary"]["total_turns"] = len(turns)
    return new


def encodings(value: Any) -> st.SearchStrategy[bytes]:
    """The bytes of ``value``: canonical mostly; also as other tools write JSON,
    and damaged (not JSON at all)."""
    canon = canonical.dumps(value)
    return st.sampled_from([
        canon, canon, canon,
        json.dumps(value).encode(),                                  # compact, unsorted
        (json.dumps(value, indent=4) + "\n").encode(),               # other indentation
        canon.replace(b"\n", b"\r\n"),                               # CRLF
        canon[:-1],                                                  # no final newline
        canon[: max(1, len(canon) // 2)],                            # truncated
    ])


sow_texts = (st.text(max_size=60).map(lambda s: s.encode("utf-8"))
             | st.binary(max_size=40)
             | st.lists(st.sampled_from(["# SOW\n", "line\n", "other\n", "\n", "x\r\n",
                                         "no newline"]), max_size=8)
             .map(lambda lines: "".join(lines).encode()))
JSON_NAMES = ["conversation.json", "deployment_context.json", "session_metadata.json",
              "session_analytics.json"]


@st.composite
def states(draw: st.DrawFn) -> dict[str, bytes]:
    """A session state ``{file name: bytes}`` with any subset of the documents."""
    out: dict[str, bytes] = {}
    for name in JSON_NAMES:
        if not draw(st.booleans()):
            continue
        value = draw(conversations() if name == "conversation.json" and draw(st.booleans())
                     else st.dictionaries(small_keys, json_values | record_arrays()
                                          | record_arrays(unique=False), max_size=3)
                     | json_values)
        out[name] = draw(encodings(value))
    if draw(st.booleans()):
        out["sow_document.md"] = draw(sow_texts)
    return out


# =========================================================================== the laws

@laws(60)
@given(states())
def test_a_state_does_not_differ_from_itself(state: dict[str, bytes]) -> None:
    result = compute(state, state)
    assert result.empty and result.documents == ()
    assert apply(state, result) == state


@example(a=NEG_ZERO_A, b=NEG_ZERO_B)
@example(a={}, b={"sow_document.md": b""})
@laws(120)
@given(states(), states())
def test_apply_rebuilds_any_state_byte_for_byte(a: dict[str, bytes],
                                                b: dict[str, bytes]) -> None:
    result = compute(a, b)
    assert apply(a, result) == b
    assert apply(b, compute(b, a)) == a
    assert result.empty == (a == b)
    assert [d.name for d in result.documents] == sorted(
        n for n in {*a, *b} if a.get(n) != b.get(n))


@laws(150)
@given(st.data())
def test_apply_rebuilds_edited_conversations(data: st.DataObject) -> None:
    old = data.draw(conversations())
    new = data.draw(edited_conversation(old))
    a = {"conversation.json": canonical.dumps(old)}
    b = {"conversation.json": canonical.dumps(new)}
    result = compute(a, b)
    assert apply(a, result) == b
    if a != b:
        doc = result.document("conversation.json")
        assert doc is not None and doc.kind == "json"
        # the turns reported are exactly those whose content differs, by turn_id
        before = {t["turn_id"]: canonical.dumps(t) for t in old["conversation_turns"]}
        after = {t["turn_id"]: canonical.dumps(t) for t in new["conversation_turns"]}
        for t in doc.turns:
            assert t.op in ("added", "removed", "changed")
            if t.op == "added":
                assert t.turn_id not in before and canonical.dumps(t.new) == after[t.turn_id]
            elif t.op == "removed":
                assert t.turn_id not in after and canonical.dumps(t.old) == before[t.turn_id]
            else:
                assert before[t.turn_id] != after[t.turn_id]
        assert {t.turn_id for t in doc.turns} == {
            i for i in {*before, *after} if before.get(i) != after.get(i)}


@example(old=GAINED_KEY_OLD, new=GAINED_KEY_NEW, where="records")
@laws(200)
@given(record_arrays(), record_arrays(), st.sampled_from(["records", "nested"]))
def test_apply_rebuilds_keyed_record_arrays(old: list[Any], new: list[Any], where: str) -> None:
    def wrap(records: list[Any]) -> bytes:
        if where == "nested":
            return canonical.dumps({"outer": [{"id": "only", "records": records}]})
        return canonical.dumps({"records": records})

    a, b = {"deployment_context.json": wrap(old)}, {"deployment_context.json": wrap(new)}
    assert apply(a, compute(a, b)) == b


@example(old=[{"collector_type": "a", "id": 0}, {"collector_type": 0, "id": 0}],
         new=[{"collector_type": 0, "id": 0, "turn_id": 0},
              {"collector_type": "a", "id": 1, "turn_id": 0}])
@laws(100)
@given(record_arrays(unique=False), record_arrays(unique=False))
def test_apply_rebuilds_arrays_matched_by_position(old: list[Any], new: list[Any]) -> None:
    a = {"session_analytics.json": canonical.dumps({"items": old, "nested": [old, new]})}
    b = {"session_analytics.json": canonical.dumps({"items": new, "nested": [new]})}
    assert apply(a, compute(a, b)) == b


@example(old={"score": 0.0}, new={"score": -0.0})
@laws(300)
@given(json_values, json_values)
def test_apply_rebuilds_arbitrary_json_values(old: Any, new: Any) -> None:
    a = {"session_metadata.json": canonical.dumps(old)}
    b = {"session_metadata.json": canonical.dumps(new)}
    result = compute(a, b)
    assert apply(a, result) == b
    if a != b:
        doc = result.documents[0]
        assert doc.kind == "json" and doc.changes, "bytes differ but no change is reported"


@laws(200)
@given(sow_texts, sow_texts)
def test_apply_rebuilds_the_sow_as_text(old: bytes, new: bytes) -> None:
    a, b = {"sow_document.md": old}, {"sow_document.md": new}
    result = compute(a, b)
    assert apply(a, result) == b
    assert all(d.kind == "text" for d in result.documents)


@laws(200)
@given(json_values, json_values)
def test_json_not_in_canonical_form_is_diffed_as_text(old: Any, new: Any) -> None:
    a = {"conversation.json": json.dumps(old).encode()}         # as another tool writes it
    b = {"conversation.json": canonical.dumps(new)}
    result = compute(a, b)
    assert apply(a, result) == b
    if a != b:
        assert result.documents[0].kind == "text"


def _is_canonical(data: bytes) -> bool:
    try:
        return canonical.dumps(canonical.loads(data)) == data
    except canonical.JSONParseError:
        return False


@example(old={"n": {"x": 1}}, new={"n": {"x": 1.0}}, order=False)
@example(old={"n": [1, 2]}, new={"n": [True, 2]}, order=False)
@example(old=[{"x": 0.0}], new=[{"x": -0.0}], order=True)
@laws(300)
@given(json_values, json_values, st.booleans())
def test_json_is_diffed_as_json_exactly_when_both_sides_are_canonical(
        old: Any, new: Any, order: bool) -> None:
    """The diff's own canonical check (made fast, reusing the texts of equal parts of
    the old side) says what ``canonical.dumps`` says, also where Python's ``==``
    cannot tell the values apart (``1``/``1.0``/``true``, ``0.0``/``-0.0``)."""
    cases = [(canonical.dumps(old), canonical.dumps(new)),
             (canonical.dumps(old), json.dumps(new, indent=2, sort_keys=not order).encode()),
             (json.dumps(old, sort_keys=True).encode(), canonical.dumps(new))]
    for a_bytes, b_bytes in cases:
        a, b = {"x.json": a_bytes}, {"x.json": b_bytes}
        result = compute(a, b)
        assert apply(a, result) == b
        if a_bytes != b_bytes:
            both = _is_canonical(a_bytes) and _is_canonical(b_bytes)
            assert result.documents[0].kind == ("json" if both else "text")
            assert not both or result.documents[0].changes


@laws(50)
@given(sow_texts, sow_texts)
def test_the_manifest_is_left_out_unless_asked_for(old: bytes, new: bytes) -> None:
    a = {"sow_document.md": old, MANIFEST: b"aaaa  sow_document.md\n"}
    b = {"sow_document.md": new, MANIFEST: b"bbbb  sow_document.md\n"}
    assert compute(a, b).document(MANIFEST) is None
    full = compute(a, b, include_manifest=True)
    assert full.document(MANIFEST) is not None
    assert apply(a, full) == b


# ---------------------------------------------------------------- the laws, pinned down

def test_negative_zero_is_a_change() -> None:
    """0.0 and -0.0 are different JSON texts; the diff must say so and apply must
    rebuild B's exact bytes."""
    a = {"session_analytics.json": canonical.dumps({"score": 0.0})}
    b = {"session_analytics.json": canonical.dumps({"score": -0.0})}
    assert a != b
    result = compute(a, b)
    doc = result.document("session_analytics.json")
    assert doc is not None
    assert [(c.op, c.path) for c in doc.changes] == [("change", ("score",))]
    assert apply(a, result) == b


def test_reordered_records_that_gain_a_preferred_key() -> None:
    """The records are matched by ``id`` (the old ones have no ``turn_id``); when
    the new ones all carry a unique ``turn_id`` too, applying the reorder must
    still order them by ``id``."""
    old = [{"id": 1}, {"id": 2}]
    new = [{"id": 2, "turn_id": 1}, {"id": 1, "turn_id": 2}]
    a = {"deployment_context.json": canonical.dumps({"records": old})}
    b = {"deployment_context.json": canonical.dumps({"records": new})}
    assert natural_key(old, new) == "id"
    result = compute(a, b)
    assert apply(a, result) == b


def test_added_and_removed_documents() -> None:
    conv = canonical.dumps({"conversation_turns": [{"turn_id": 1}]})
    a = {"conversation.json": conv, "sow_document.md": b"# SOW\n"}
    b = {"conversation.json": conv, "session_analytics.json": canonical.dumps({"x": [1]})}
    result = compute(a, b)
    assert [(d.name, d.status, d.kind) for d in result.documents] == [
        ("session_analytics.json", "added", "json"), ("sow_document.md", "removed", "text")]
    added = result.document("session_analytics.json")
    assert added is not None and added.old is None and added.new == b["session_analytics.json"]
    assert [(c.op, c.path, c.new) for c in added.changes] == [("add", (), {"x": [1]})]
    assert apply(a, result) == b
    assert apply(b, compute(b, a)) == a


# =========================================================================== matching

def conv_bytes(turns: list[dict[str, Any]], **extra: Any) -> bytes:
    return canonical.dumps({"session_id": "s", "conversation_turns": turns,
                            "conversation_summary": {"total_turns": len(turns), **extra}})


def example_turns() -> list[dict[str, Any]]:
    return load_example("session", "conversation.json")["conversation_turns"]


def test_a_turn_inserted_in_the_middle_is_one_added_turn() -> None:
    turns = example_turns()                         # turn_id 1..5
    inserted = copy.deepcopy(turns[2])
    inserted["turn_id"] = 99
    inserted["user_input"]["query"] = "An extra question"
    new_turns = [*turns[:2], inserted, *turns[2:]]
    a = {"conversation.json": conv_bytes(turns)}
    b = {"conversation.json": conv_bytes(new_turns)}
    doc = compute(a, b).document("conversation.json")
    assert doc is not None
    assert [(t.turn_id, t.op) for t in doc.turns] == [(99, "added")]
    assert doc.turns[0].new == inserted
    # no change anywhere inside the later turns
    inside = [c for c in doc.changes if len(c.path) > 2]
    assert inside == []
    assert apply(a, compute(a, b)) == b


def test_a_changed_turn_lists_its_changed_fields() -> None:
    turns = example_turns()
    new_turns = copy.deepcopy(turns)
    new_turns[3]["timestamp"] = "2025-01-15T10:39:30Z"
    new_turns[3]["agent_response"]["confidence_score"] = 3
    del new_turns[3]["user_input"]["command"]
    new_turns[3]["decision_points"].append({"decision": "late", "value": 1, "confidence": 1})
    a = {"conversation.json": conv_bytes(turns)}
    b = {"conversation.json": conv_bytes(new_turns)}
    doc = compute(a, b).document("conversation.json")
    assert doc is not None
    tid = turns[3]["turn_id"]
    assert [(t.turn_id, t.op) for t in doc.turns] == [(tid, "changed")]
    changed = doc.turns[0]
    def show(v: Any) -> str:
        return "MISSING" if v is MISSING else json.dumps(v, sort_keys=True)

    got = {(c.op, pointer(c.path), show(c.old), show(c.new)) for c in changed.changes}
    assert got == {
        ("change", "/agent_response/confidence_score",
         show(turns[3]["agent_response"]["confidence_score"]), "3"),
        ("add", "/decision_points/[decision=late]", "MISSING",
         show({"decision": "late", "value": 1, "confidence": 1})),
        ("change", "/timestamp", show(turns[3]["timestamp"]), '"2025-01-15T10:39:30Z"'),
        ("remove", "/user_input/command", show(turns[3]["user_input"]["command"]), "MISSING"),
    }
    assert changed.old == turns[3] and changed.new == new_turns[3]


def test_a_removed_turn_and_a_reorder() -> None:
    turns = example_turns()
    new_turns = [turns[1], turns[0], *turns[3:]]        # turn 3 removed, 1 and 2 swapped
    a = {"conversation.json": conv_bytes(turns)}
    b = {"conversation.json": conv_bytes(new_turns)}
    result = compute(a, b)
    doc = result.document("conversation.json")
    assert doc is not None
    assert [(t.turn_id, t.op) for t in doc.turns] == [(3, "removed")]
    reorders = [c for c in doc.changes if c.op == "reorder"]
    assert [(c.path, c.new) for c in reorders] == [(("conversation_turns",), [2, 1, 4, 5])]
    assert apply(a, result) == b


def test_natural_key_preference_and_fallback_to_position() -> None:
    both = [{"id": 1, "collector_type": "x"}, {"id": 2, "collector_type": "y"}]
    assert natural_key(both, both) == "id"
    dup_ids = [{"id": 1, "collector_type": "x"}, {"id": 1, "collector_type": "y"}]
    assert natural_key(dup_ids, dup_ids) == "collector_type"
    all_dup = [{"id": 1, "decision": "d"}, {"id": 1, "decision": "d"}]
    assert natural_key(all_dup, all_dup) is None
    assert natural_key([{"id": 1}], [{"other": 1}]) is None
    assert natural_key([1, 2], [1, 2]) is None
    # with duplicates, changes are reported by index
    a = {"deployment_context.json": canonical.dumps({"r": all_dup})}
    b = {"deployment_context.json": canonical.dumps({"r": [{"id": 1, "decision": "d"},
                                                          {"id": 1, "decision": "e"}]})}
    doc = compute(a, b).documents[0]
    assert [(c.op, c.path, c.old, c.new) for c in doc.changes] == [
        ("change", ("r", 1, "decision"), "d", "e")]


def test_other_documents_show_json_paths_with_old_and_new() -> None:
    ctx = load_example("session", "deployment_context.json")
    new = copy.deepcopy(ctx)
    recs = new["deployment_recommendations"]
    first = recs[0]["collector_type"]
    recs[0]["implementation_steps"][1] = "A rewritten step"
    recs.reverse()                                          # order changed, records not
    removed_asset = new["cloud_assets_snapshot"]["assets"].pop(1)
    new["validation_results"]["gaps_identified"].append("a new gap")
    a = {"deployment_context.json": canonical.dumps(ctx)}
    b = {"deployment_context.json": canonical.dumps(new)}
    result = compute(a, b)
    doc = result.document("deployment_context.json")
    assert doc is not None and doc.kind == "json" and doc.turns == ()
    by_pointer = {c.pointer: c for c in doc.changes}
    step = by_pointer[f"/deployment_recommendations/[collector_type={first}]"
                      "/implementation_steps/1"]
    assert (step.op, step.old, step.new) == (
        "change", ctx["deployment_recommendations"][0]["implementation_steps"][1],
        "A rewritten step")
    asset = by_pointer[f"/cloud_assets_snapshot/assets/[id={removed_asset['id']}]"]
    assert (asset.op, asset.old, asset.new) == ("remove", removed_asset, MISSING)
    gaps = ctx["validation_results"]["gaps_identified"]
    gap = by_pointer[f"/validation_results/gaps_identified/{len(gaps)}"]
    assert (gap.op, gap.old, gap.new) == ("add", MISSING, "a new gap")
    assert by_pointer["/deployment_recommendations"].op == "reorder"
    assert len(doc.changes) == 4
    assert apply(a, result) == b


def test_analytics_correction_paths() -> None:
    old = load_example("session", "session_analytics.json")
    new = load_example("correction", "session_analytics.json")
    doc = compute({"session_analytics.json": canonical.dumps(old)},
                  {"session_analytics.json": canonical.dumps(new)}).documents[0]
    assert [(c.op, c.pointer, c.old, c.new) for c in doc.changes] == [
        ("change", "/prediction_accuracy/actual_success", None, True),
        ("change", "/prediction_accuracy/actual_time_hours", None, 4.0)]


def test_pointer_escapes_slash_and_tilde() -> None:
    assert pointer(("a/b", "c~d", 0, ("id", "x/y"))) == "/a~1b/c~0d/0/[id=x/y]"
    assert pointer(()) == ""


# =========================================================================== the CLI

@dataclass
class Env:
    root: Path
    store: Store

    @property
    def repo(self) -> Path:
        return self.root / CUSTOMER


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("diff") / "sessions"
    store = build_history(root)
    versions = [str(v.version) for v in store.customer(CUSTOMER).versions()]
    assert versions == ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0"]
    return Env(root, store)




def run_process(root: Path, *args: str, tty: bool = False,
                env: dict[str, str] | None = None) -> Result:
    """Run the real ``python -m gitstore``; stdout is a pty when ``tty``."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "gitstore", "--root", str(root), *args]
    if not tty:
        proc = subprocess.run(cmd, capture_output=True, env=environ, check=False, timeout=60)
        return Result(proc.returncode, proc.stdout, proc.stderr.decode())
    master, slave = pty.openpty()
    proc2 = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, env=environ)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:                       # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc2.stderr is not None
    err = proc2.stderr.read().decode()
    proc2.wait(timeout=60)
    return Result(proc2.returncode, b"".join(chunks).replace(b"\r\n", b"\n"), err)


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{path}/{k}"))
        return out
    return {path: value}


# ---------------------------------------------------------------------- text

def test_cli_text_shows_added_turns_and_metadata_paths(env: Env) -> None:
    r = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.0")
    assert r.code == 0, r.err
    text = r.text
    assert ESC not in r.out
    lines = text.splitlines()
    assert "conversation.json (modified)" in lines
    assert "session_metadata.json (modified)" in lines
    assert "sow_document.md (modified)" in lines
    assert "deployment_context.json (modified)" not in lines
    assert "session_analytics.json (modified)" not in lines
    turn_lines = [ln.strip() for ln in lines if " turn " in ln and ln.strip()[:1] in "+-~"]
    assert [ln.split()[:3] for ln in turn_lines] == [["+", "turn", "6"], ["+", "turn", "7"]]
    assert "2025-01-15T14:00:00Z" in turn_lines[0]
    assert "  ~ /conversation_summary/total_turns: 5 → 7" in lines
    # every metadata field that differs between the example files is listed, old → new
    old = flatten(load_example("session", "session_metadata.json"))
    new = flatten(load_example("follow_up", "session_metadata.json"))
    differing = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
    assert differing
    for p in differing:
        expected = f"  ~ {p}: {json.dumps(old[p])} → {json.dumps(new[p])}"
        assert expected in lines, expected
    meta_lines = lines[lines.index("session_metadata.json (modified)") + 1:
                       lines.index("sow_document.md (modified)")]
    assert len(meta_lines) == len(differing)
    # the SOW as line edits
    sow = lines[lines.index("sow_document.md (modified)") + 1:]
    assert "  -**Document Version**: 1.0.0" in sow and "  +**Document Version**: 1.1.0" in sow


def test_cli_text_for_a_correction(env: Env) -> None:
    r = run(env.root, "diff", CUSTOMER, "v1.1.0", "v1.1.1")
    assert r.code == 0, r.err
    assert "  ~ /prediction_accuracy/actual_time_hours: null → 4.0" in r.text.splitlines()
    assert "  ~ /session_info/session_version: \"v1.1.0\" → \"v1.1.1\"" in r.text.splitlines()
    assert "conversation.json" not in r.text


# ---------------------------------------------------------------------- json

STAT_KEYS = {"turns_added", "turns_removed", "turns_changed", "paths_changed",
             "lines_added", "lines_removed"}


def path_from_json(path: list[Any]) -> tuple[Any, ...]:
    out: list[Any] = []
    for e in path:
        if isinstance(e, dict):
            assert set(e) == {"key", "value"} and e["key"] in NATURAL_KEYS, e
            out.append((e["key"], e["value"]))
        else:
            assert isinstance(e, str | int) and not isinstance(e, bool), e
            out.append(e)
    return tuple(out)


def check_change_json(c: dict[str, Any]) -> Change:
    assert {"op", "path", "pointer"} <= set(c) <= {"op", "path", "pointer", "old", "new"}, c
    op = c["op"]
    assert op in ("add", "remove", "change", "reorder"), c
    has = ("old" in c, "new" in c)
    assert has == {"add": (False, True), "remove": (True, False), "change": (True, True),
                   "reorder": (False, True)}[op], c
    path = path_from_json(c["path"])
    assert c["pointer"] == pointer(path)
    if op == "reorder":
        assert isinstance(c["new"], list)
    return Change(op, path, c.get("old", MISSING), c.get("new", MISSING))


def validate_diff_json(data: Any) -> None:
    """The shape documented in gitstore.core.diffformat (format_version 1)."""
    assert isinstance(data, dict)
    assert set(data) == {"format", "format_version", "a", "b", "documents"}
    assert data["format"] == "gitstore-diff" and data["format_version"] == 1
    for side in ("a", "b"):
        label = data[side]
        assert set(label) == {"customer", "commit", "version", "change"}
        assert label["customer"] == CUSTOMER and len(label["commit"]) == 40
    names = [d["name"] for d in data["documents"]]
    assert names == sorted(set(names))
    for d in data["documents"]:
        assert d["status"] in ("added", "removed", "modified")
        assert d["kind"] in ("json", "text")
        assert set(d["stat"]) == STAT_KEYS
        assert all(isinstance(v, int) and v >= 0 for v in d["stat"].values())
        base = {"name", "status", "kind", "stat"}
        if d["kind"] == "json":
            extra = {"changes", "turns"} if d["name"] == "conversation.json" else {"changes"}
            assert set(d) == base | extra, d.keys()
            for c in d["changes"]:
                check_change_json(c)
            for t in d.get("turns", []):
                assert t["op"] in ("added", "removed", "changed")
                keys = {"added": {"new"}, "removed": {"old"}, "changed": {"changes"}}[t["op"]]
                assert set(t) == {"turn_id", "op"} | keys, t
                for c in t.get("changes", []):
                    check_change_json(c)
        else:
            assert set(d) == base | {"unified"}
            header = (f"--- {'/dev/null' if d['status'] == 'added' else 'a/' + d['name']}\n"
                      f"+++ {'/dev/null' if d['status'] == 'removed' else 'b/' + d['name']}\n")
            assert d["unified"].startswith(header)


def rebuild_json_documents(a: dict[str, bytes], data: dict[str, Any]) -> dict[str, bytes]:
    """Apply the JSON output's changes to A: the format carries the whole diff."""
    docs = []
    for d in data["documents"]:
        if d["kind"] == "json":
            changes = tuple(check_change_json(c) for c in d["changes"])
            docs.append(DocumentDiff(d["name"], d["status"], None, None, "json", changes))
    return apply(a, Diff(tuple(docs)))


@pytest.mark.parametrize(("a", "b"), [("v1.0.0", "v1.1.0"), ("v1.1.0", "v1.1.1"),
                                      ("v1.0.0", "v2.0.0"), ("v2.0.0", "v1.1.1")])
def test_cli_json_has_the_documented_shape(env: Env, a: str, b: str) -> None:
    r = run(env.root, "diff", CUSTOMER, a, b, "-o", "json")
    assert r.code == 0, r.err
    data = r.json()
    validate_diff_json(data)
    assert data["a"]["version"] == a and data["b"]["version"] == b
    assert data["a"]["commit"] == git(env.repo, "rev-parse", f"{a}^{{commit}}").strip()
    assert data["b"]["commit"] == git(env.repo, "rev-parse", f"{b}^{{commit}}").strip()
    files_a = env.store.customer(CUSTOMER).read(a).files
    files_b = env.store.customer(CUSTOMER).read(b).files
    rebuilt = rebuild_json_documents(files_a, data)
    for name in JSON_NAMES:
        assert rebuilt.get(name) == files_b.get(name), name
    # stable: the same bytes every time
    assert run(env.root, "diff", CUSTOMER, a, b, "-o", "json").out == r.out


def test_cli_json_turns_and_unified(env: Env) -> None:
    data = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.0", "-o", "json").json()
    docs = {d["name"]: d for d in data["documents"]}
    assert set(docs) == {"conversation.json", "session_metadata.json", "sow_document.md"}
    conv = docs["conversation.json"]
    assert [(t["turn_id"], t["op"]) for t in conv["turns"]] == [(6, "added"), (7, "added")]
    assert conv["turns"][0]["new"] == example_turn(6) | {"turn_id": 6}
    assert conv["stat"]["turns_added"] == 2 and conv["stat"]["turns_changed"] == 0
    assert conv["status"] == "modified" and conv["kind"] == "json"
    meta = docs["session_metadata.json"]
    change = next(c for c in meta["changes"] if c["pointer"] == "/session_info/session_version")
    assert change == {"op": "change", "path": ["session_info", "session_version"],
                      "pointer": "/session_info/session_version",
                      "old": "v1.0.0", "new": "v1.1.0"}
    sow = docs["sow_document.md"]
    assert sow["kind"] == "text" and "-**Document Version**: 1.0.0\n" in sow["unified"]
    assert "+**Document Version**: 1.1.0\n" in sow["unified"]
    # --stat in JSON keeps name/status/stat per document
    stat = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.0", "-o", "json", "--stat").json()
    assert stat["format"] == "gitstore-diff"
    assert [set(d) for d in stat["documents"]] == [{"name", "status", "stat"}] * 3


# ---------------------------------------------------------------------- patch

def checkout(repo: Path, rev: str, dest: Path) -> Path:
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    git(dest, "init", "-q")
    return dest


@pytest.mark.parametrize(("a", "b"), [("v1.0.0", "v1.1.0"), ("v1.0.0", "v1.1.1"),
                                      ("v1.0.0", "v2.0.0"), ("v1.1.1", "v1.0.0")])
def test_cli_patch_applies_with_git(env: Env, tmp_path: Path, a: str, b: str) -> None:
    r = run(env.root, "diff", CUSTOMER, a, b, "-o", "patch")
    assert r.code == 0, r.err
    assert ESC not in r.out
    patch = tmp_path / "change.patch"
    patch.write_bytes(r.out)
    assert r.text.startswith("diff --git a/")
    work = checkout(env.repo, a, tmp_path / "work")
    check = subprocess.run(["git", "-C", str(work), "apply", "--check", str(patch)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    git(work, "apply", str(patch))
    snap_b = env.store.customer(CUSTOMER).read(b)
    for name, data in snap_b.files.items():  # the manifest too (issue 10, item 6)
        assert (work / name).read_bytes() == data, name
    # git itself sees the same change between the two trees
    names = git(env.repo, "diff", "--name-only", a, b).split()
    assert MANIFEST in names and sorted(names) == sorted(
        line[len("diff --git a/"):].split(" ")[0] for line in r.text.splitlines()
        if line.startswith("diff --git a/"))


def test_cli_patch_adds_and_deletes_files(env: Env, tmp_path: Path) -> None:
    # v1.1.0's follow-up commit dropped the SOW; v1.0.0 has it
    follow_up = git(env.repo, "rev-parse", "v1.1.0~3").strip()
    assert "sow_document.md" not in git(env.repo, "ls-tree", "--name-only", follow_up)
    r = run(env.root, "diff", CUSTOMER, "v1.0.0", follow_up, "-o", "patch")
    assert r.code == 0, r.err
    assert "deleted file mode 100644" in r.text and "+++ /dev/null" in r.text
    patch = tmp_path / "p"
    patch.write_bytes(r.out)
    work = checkout(env.repo, "v1.0.0", tmp_path / "w")
    git(work, "apply", str(patch))
    assert not (work / "sow_document.md").exists()
    back = run(env.root, "diff", CUSTOMER, follow_up, "v1.0.0", "-o", "patch")
    assert "new file mode 100644" in back.text and "--- /dev/null" in back.text
    patch.write_bytes(back.out)
    git(work, "apply", str(patch))
    assert (work / "sow_document.md").read_bytes() == git(
        env.repo, "show", "v1.0.0:sow_document.md").encode()


def git_apply(old: dict[str, bytes], patch: str) -> dict[str, bytes]:
    """Apply ``patch`` with the real ``git apply`` to files ``old``; the files after."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        git(work, "init", "-q")
        for name, data in old.items():
            (work / name).write_bytes(data)
        (work / ".patch").write_bytes(patch.encode("utf-8"))
        proc = subprocess.run(["git", "-C", str(work), "apply", ".patch"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return {p.name: p.read_bytes() for p in work.iterdir()
                if p.is_file() and p.name != ".patch"}


# Text that Python splits into lines and git does not: Unicode line and paragraph
# separators and NEL (kept raw in canonical JSON), form feed, lone CR.
line_texts = st.lists(st.sampled_from(["plain\n", "x\u2028y\n", "p\u2029q\n", "n\x85l\n",
                                       "f\x0cf\n", "cr\rcr\n", "last"]), max_size=6)


@example(old=["plain\n", "plain\n"], new=["plain\n", "x\u2028y\n"])
@laws(40)
@given(line_texts, line_texts)
def test_patch_applies_with_git_for_any_text(old: list[str], new: list[str]) -> None:
    a = {"sow_document.md": "".join(old).encode()}
    b = {"sow_document.md": "".join(new).encode()}
    result = compute(a, b)
    if not result.empty:
        assert git_apply(a, diffformat.to_patch(result)) == b


def test_patch_of_a_turn_with_a_unicode_line_separator(finalized: Any, tmp_path: Path) -> None:
    """Canonical JSON keeps U+2028 raw; the patch must still be one git applies."""
    store = finalized.customer.store
    session = finalized.customer.session()
    session.follow_up()
    t6 = example_turn(6)
    t6["user_input"]["query"] = "Alarms?\u2028Also: is X-Ray worth it?"
    session.append_turn(t6)
    repo = store.root / CUSTOMER
    r = run(store.root, "diff", CUSTOMER, "v1.0.0", "v1", "-o", "patch", "-d", "conversation")
    assert r.code == 0, r.err
    work = checkout(repo, "v1.0.0", tmp_path / "w")
    (tmp_path / "p").write_bytes(r.out)
    proc = subprocess.run(["git", "-C", str(work), "apply", str(tmp_path / "p")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (work / "conversation.json").read_bytes() == git(
        repo, "show", "v1:conversation.json").encode()


# ---------------------------------------------------------------------- stat

def test_cli_stat(env: Env) -> None:
    r = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.0", "--stat")
    assert r.code == 0, r.err
    rows = r.text.splitlines()
    assert rows[-1] == " 3 document(s) changed"
    by_name = {row.split("|")[0].strip(): row.split("|", 1)[1] for row in rows[:-1]}
    assert set(by_name) == {"conversation.json", "session_metadata.json", "sow_document.md"}
    assert "2 turn(s) added" in by_name["conversation.json"]
    assert "1 path(s) changed" in by_name["conversation.json"]
    old = flatten(load_example("session", "session_metadata.json"))
    new = flatten(load_example("follow_up", "session_metadata.json"))
    n = sum(1 for p in old if old[p] != new.get(p))
    assert f"{n} path(s) changed ({n}+ {n}-)" in by_name["session_metadata.json"]
    assert ESC not in r.out


# ---------------------------------------------------------------------- exit codes

@pytest.mark.parametrize(("args", "code"), [
    (["v1.0.0", "v1.0.0", "--exit-code"], 0),
    (["v1.1.1", "--exit-code"], 0),                     # B: the tip of v1, which is v1.1.1
    (["v2.0.0", "v2", "--exit-code"], 0),
    (["v1.0.0", "v1.1.0", "--exit-code", "-d", "deployment_context.json"], 0),
    (["v1.0.0", "v1.1.0", "--exit-code"], 1),
    (["v1.0.0", "--exit-code", "--stat"], 1),
    (["v1.0.0", "v2.0.0", "--exit-code", "-o", "json"], 1),
    (["v1.0.0", "v1.1.0"], 0),                          # differences, but no --exit-code
    (["v9.0.0", "--exit-code"], 3),
    (["v1.0.0", "v1.2.0", "--exit-code"], 3),
    (["v1.0.0", "no-such-branch", "--exit-code"], 3),
    (["v3", "--exit-code"], 3),
    (["v1.0.0", "v1.1.0", "-d", "bogus.json", "--exit-code"], 2),
    (["v1.0.0", "-o", "xml", "--exit-code"], 2),
    (["v1.0.0", "--color", "sometimes"], 2),
    (["v1.0.0", "v1.1.0", "v1.1.1"], 2),
    (["v1.0.0", "-x"], 2),
])
def test_cli_exit_codes(env: Env, args: list[str], code: int) -> None:
    r = run(env.root, "diff", CUSTOMER, *args)
    assert r.code == code, (r.code, r.err)
    if code >= 2:
        assert r.out == b"" and r.err.strip()


@pytest.mark.parametrize(("customer", "code"), [("nobody", 3), ("../" + CUSTOMER, 2),
                                                ("-" + CUSTOMER, 2)])
def test_cli_exit_codes_for_customers(env: Env, customer: str, code: int) -> None:
    r = run(env.root, "diff", "--exit-code", "--", customer, "v1.0.0")
    assert r.code == code, (r.code, r.err)
    assert r.out == b""


# ---------------------------------------------------------------------- which states

def test_b_defaults_to_the_newest_state_of_a_scenario(env: Env) -> None:
    # HEAD is v2; the default for a v1 version is v1's tip, v1.1.1
    assert git(env.repo, "symbolic-ref", "HEAD").strip() == "refs/heads/v2"
    implicit = run(env.root, "diff", CUSTOMER, "v1.0.0", "-o", "json").json()
    explicit = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.1", "-o", "json").json()
    assert implicit["b"]["commit"] == git(env.repo, "rev-parse", "v1").strip()
    assert implicit["documents"] == explicit["documents"]
    assert implicit["b"]["version"] == "v1.1.1"
    # a commit id of v1 also defaults to v1's tip
    first = git(env.repo, "rev-list", "--max-parents=0", "v1").strip()
    by_commit = run(env.root, "diff", CUSTOMER, first, "-o", "json").json()
    assert by_commit["b"]["commit"] == implicit["b"]["commit"]
    # the API agrees
    result, _snap_a, snap_b = env.store.customer(CUSTOMER).diff("v1.0.0")
    assert snap_b.commit == implicit["b"]["commit"] and not result.empty


def test_versions_of_different_scenarios_compare(env: Env) -> None:
    r = run(env.root, "diff", CUSTOMER, "v1.1.1", "v2.0.0", "-o", "json")
    assert r.code == 0, r.err
    data = r.json()
    conv = next(d for d in data["documents"] if d["name"] == "conversation.json")
    # v2 has turns 1-3 of the example (same ids): 4..7 are gone
    assert sorted((t["turn_id"], t["op"]) for t in conv["turns"]) == [
        (4, "removed"), (5, "removed"), (6, "removed"), (7, "removed")]
    meta = next(d for d in data["documents"] if d["name"] == "session_metadata.json")
    ptrs = {c["pointer"]: c for c in meta["changes"]}
    assert ptrs["/session_info/session_version"]["new"] == "v2.0.0"
    assert ptrs["/session_info/session_id"]["new"] == SESSION_2
    text = run(env.root, "diff", CUSTOMER, "v2", "v1").text
    assert "  + turn 4" in text and "  + turn 7" in text


def test_document_filter(env: Env) -> None:
    only = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.1", "-d", "metadata", "-o", "json")
    assert [d["name"] for d in only.json()["documents"]] == ["session_metadata.json"]
    two = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.1", "-d", "conversation.json",
              "-d", "sow", "--stat")
    assert [row.split("|")[0].strip() for row in two.text.splitlines()[:-1]] == [
        "conversation.json", "sow_document.md"]
    assert two.text.splitlines()[-1] == " 2 document(s) changed"
    text = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.1", "-d", "analytics").text
    assert text.splitlines()[0] == "session_analytics.json (modified)"
    assert "session_metadata" not in text and "turn" not in text


def test_document_filter_on_the_manifest(env: Env) -> None:
    """``-d SHA256SUMS`` is accepted, so it must show how the manifest differs (or
    be refused): v1.0.0 and v1.1.0 have different manifests."""
    assert git(env.repo, "show", "v1.0.0:SHA256SUMS") != git(env.repo, "show",
                                                             "v1.1.0:SHA256SUMS")
    r = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.0", "-d", "SHA256SUMS", "--exit-code")
    assert r.code in (1, 2), (r.code, r.text, r.err)
    if r.code == 1:
        assert MANIFEST in r.text


# ---------------------------------------------------------------------- colour

def test_no_colour_when_piped(env: Env) -> None:
    for args in ([], ["-o", "patch"], ["--stat"], ["--color", "auto"], ["--color", "never"],
                 ["-o", "json", "--color", "always"]):
        r = run(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.0", *args)
        assert r.code == 0 and r.out and ESC not in r.out, args


def test_colour_on_a_terminal_but_never_with_no_color(env: Env) -> None:
    args = ("diff", CUSTOMER, "v1.0.0", "v1.1.0")
    on_tty = run_process(env.root, *args, tty=True)
    assert on_tty.code == 0, on_tty.err
    assert ESC in on_tty.out
    assert b"\x1b[32m  + turn 6" in on_tty.out
    no_color = run_process(env.root, *args, tty=True, env={"NO_COLOR": "1"})
    assert no_color.code == 0 and no_color.out and ESC not in no_color.out
    never = run_process(env.root, *args, "--color", "never", tty=True)
    assert never.code == 0 and never.out and ESC not in never.out
    # without colour, the terminal shows the same text a pipe gets
    piped = run_process(env.root, *args)
    assert ESC not in piped.out and piped.out == no_color.out


def test_color_always_colours_a_pipe(env: Env) -> None:
    r = run_process(env.root, "diff", CUSTOMER, "v1.0.0", "v1.1.0", "--color", "always")
    assert r.code == 0, r.err
    assert ESC in r.out, "--color always must colour output that goes to a pipe"


# ---------------------------------------------------------------------- helpers stay honest

def test_run_in_process_matches_the_real_command(env: Env) -> None:
    args = ("diff", CUSTOMER, "v1.0.0", "v1.1.1", "-o", "json")
    assert run(env.root, *args).out == run_process(env.root, *args).out
