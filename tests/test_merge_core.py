"""The pure three-way merge of session states: laws and the cases a reviewer cares about."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gitstore.core.merge import merge

WORDS = st.text(alphabet="abcxyz ", min_size=1, max_size=6)
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | WORDS
VALUES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(WORDS, kids, max_size=3)
    | st.lists(st.fixed_dictionaries({"id": st.integers(0, 4), "v": kids}), max_size=3,
               unique_by=lambda r: r["id"]),
    max_leaves=6)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    texts = draw(st.lists(WORDS, max_size=4))
    minutes = sorted(draw(st.lists(st.integers(0, 59), min_size=len(texts),
                                   max_size=len(texts))))
    turns = [{"turn_id": n, "timestamp": f"2025-01-15T10:{m:02d}:00Z", "text": t}
             for n, (t, m) in enumerate(zip(texts, minutes, strict=True), start=1)]
    return {"session_id": "s", "conversation_turns": turns,
            "conversation_summary": {"total_turns": len(turns),
                                     "note": draw(SCALARS)}}


STATES = st.fixed_dictionaries(
    {}, optional={"conversation.json": conversations(),
                  "deployment_context.json": VALUES, "session_analytics.json": VALUES})


@given(STATES, STATES)
def test_one_side_unchanged_takes_the_other(b: dict[str, Any], x: dict[str, Any]) -> None:
    assert merge(b, x, b).documents == x
    assert merge(b, b, x).documents == x
    assert not merge(b, x, b).conflicts and not merge(b, b, x).conflicts


@given(STATES, STATES)
def test_the_same_change_on_both_sides_merges(b: dict[str, Any], x: dict[str, Any]) -> None:
    result = merge(b, x, x)
    assert result.documents == x and not result.conflicts


@given(STATES, STATES, STATES)
def test_conflicts_are_symmetric(b: dict[str, Any], x: dict[str, Any],
                                 y: dict[str, Any]) -> None:
    xy = merge(b, x, y).conflicts
    yx = merge(b, y, x).conflicts
    assert sorted((c.document, c.pointer) for c in xy) == \
        sorted((c.document, c.pointer) for c in yx)
    assert {c.label: c.swapped() for c in xy} == {c.label: c for c in yx}


@given(STATES, STATES, STATES)
def test_merged_turns_are_ordered_and_numbered(b: dict[str, Any], x: dict[str, Any],
                                               y: dict[str, Any]) -> None:
    conv = merge(b, x, y).documents.get("conversation.json")
    if isinstance(conv, dict):
        turns = conv["conversation_turns"]
        assert [t["turn_id"] for t in turns] == list(range(1, len(turns) + 1))
        stamps = [t["timestamp"] for t in turns]
        assert stamps == sorted(stamps)


def turn(n: int, minute: int, text: str) -> dict[str, Any]:
    return {"turn_id": n, "timestamp": f"2025-01-15T10:{minute:02d}:00Z", "text": text}


def conv(*turns: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": "s", "conversation_turns": list(turns),
            "conversation_summary": {"total_turns": len(turns)}}


def test_turns_of_both_sides_are_united_in_time_order() -> None:
    base = {"conversation.json": conv(turn(1, 0, "hello"))}
    ours = {"conversation.json": conv(turn(1, 0, "hello"), turn(2, 5, "ours at 5"),
                                      turn(3, 9, "ours at 9"))}
    theirs = {"conversation.json": conv(turn(1, 0, "hello"), turn(2, 7, "theirs at 7"))}
    result = merge(base, ours, theirs)
    assert not result.conflicts
    merged = result.documents["conversation.json"]
    assert [t["text"] for t in merged["conversation_turns"]] == \
        ["hello", "ours at 5", "theirs at 7", "ours at 9"]
    assert [t["turn_id"] for t in merged["conversation_turns"]] == [1, 2, 3, 4]
    assert merged["conversation_summary"]["total_turns"] == 4


def test_a_turn_both_sides_hold_is_kept_once() -> None:
    base = {"conversation.json": conv()}
    same = turn(1, 3, "the same question")
    result = merge(base, {"conversation.json": conv(same)},
                   {"conversation.json": conv(same, turn(2, 4, "more"))})
    assert [t["text"] for t in result.documents["conversation.json"]["conversation_turns"]] \
        == ["the same question", "more"]


def test_records_merge_by_natural_key_and_real_conflicts_are_reported() -> None:
    base = {"deployment_context.json": {
        "region": "eu-west-1",
        "recommendations": [{"collector_type": "otel", "reason": "standard"}]}}
    ours = {"deployment_context.json": {
        "region": "eu-west-2",
        "recommendations": [{"collector_type": "otel", "reason": "standard"},
                            {"collector_type": "xray", "reason": "tracing"}]}}
    theirs = {"deployment_context.json": {
        "region": "us-east-1",
        "recommendations": [{"collector_type": "otel", "reason": "cheapest"}]}}
    result = merge(base, ours, theirs)
    doc = result.documents["deployment_context.json"]
    assert doc["recommendations"] == [{"collector_type": "otel", "reason": "cheapest"},
                                      {"collector_type": "xray", "reason": "tracing"}]
    (conflict,) = result.conflicts
    assert (conflict.document, conflict.pointer) == ("deployment_context.json", "/region")
    assert (conflict.base, conflict.ours, conflict.theirs) == \
        ("eu-west-1", "eu-west-2", "us-east-1")
    assert doc["region"] == "eu-west-2"  # ours until a person decides
    assert conflict.label == merge(base, ours, theirs).conflicts[0].label


def test_store_managed_fields_are_never_conflicts() -> None:
    def meta(version: str, sid: str) -> dict[str, Any]:
        return {"session_metadata.json": {"session_info": {
            "session_id": sid, "session_version": version, "api_key": "c"}}}

    result = merge(meta("v1.0.0", "a"), meta("v1.1.0", "a"), meta("v2.0.0", "b"))
    assert not result.conflicts
    assert result.documents["session_metadata.json"]["session_info"] == {
        "session_id": "a", "session_version": "v1.1.0", "api_key": "c"}


def test_removed_on_one_side_and_changed_on_the_other_is_a_conflict() -> None:
    base = {"deployment_context.json": {"assets": [{"id": 1, "name": "db"}]}}
    ours = {"deployment_context.json": {"assets": []}}
    theirs = {"deployment_context.json": {"assets": [{"id": 1, "name": "primary db"}]}}
    (conflict,) = merge(base, ours, theirs).conflicts
    assert conflict.pointer == "/assets/[id=1]"
    assert not conflict.ours_present and conflict.theirs_present
