"""canonical.loads_cached: a version read again is not parsed again, and what it
returns is exactly what a parse returns, a fresh value every time.

The law is checked against :func:`gitstore.core.canonical.loads` with
Hypothesis (values, padding that pushes them over the cache's threshold, and
hostile texts that must fail every time); the store test reads a real session
through :class:`gitstore.store.history.Snapshot` and changes what it got back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import CUSTOMER, Clock, load_example, record_example_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import Store
from gitstore.core import canonical

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12,
)

PAD = "p" * canonical.PARSED_CACHE_MIN


def padded(value: object) -> bytes:
    """A canonical document big enough to be cached, holding ``value``."""
    return canonical.dumps({"pad": PAD, "value": value})


def same(a: object, b: object) -> bool:
    """Equal as JSON values, with types (True is not 1) and -0.0 kept apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_a_cached_read_is_a_parse_and_a_fresh_value(value: object) -> None:
    data = padded(value)
    parsed = canonical.loads(data)
    first = canonical.loads_cached(data)
    second = canonical.loads_cached(data)
    third = canonical.loads_cached(bytes(bytearray(data)))  # equal bytes, another object
    for got in (first, second, third):
        assert same(got, parsed)
    assert second is not first
    if isinstance(value, dict | list):
        assert second["value"] is not first["value"]
    first["value"] = "changed by the caller"
    first["pad"] = None
    assert same(canonical.loads_cached(data), parsed)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(['{"a": 1, "a": 2}', '{"a": NaN}', '{"a": 1e400}', '{"a": [1,]}',
                        '{"a": "\\ud800"}', '{"a": 1} x']), st.integers(0, 3))
def test_errors_are_never_remembered(body: str, times: int) -> None:
    data = (body[:-1] + ', "pad": "' + PAD + '"}').encode() if body.endswith("}") \
        else (body + " " * canonical.PARSED_CACHE_MIN).encode()
    for _ in range(times + 2):
        with pytest.raises(canonical.JSONParseError):
            canonical.loads_cached(data)


def test_the_depth_bound_is_part_of_what_is_remembered() -> None:
    deep: object = "leaf"
    for _ in range(70):
        deep = [deep]
    data = padded(deep)
    assert canonical.loads_cached(data, max_depth=canonical.MAX_DEPTH)["value"] is not None
    with pytest.raises(canonical.JSONParseError, match="nested more than 64"):
        canonical.loads_cached(data, max_depth=canonical.MAX_DOCUMENT_DEPTH)


def test_the_cache_stays_within_its_bound() -> None:
    big = "b" * (canonical.PARSED_CACHE_BYTES // 16)
    for i in range(40):
        assert canonical.loads_cached(canonical.dumps({"i": i, "big": big}))["i"] == i
    entries, size = canonical.parsed_cache_info()
    assert 0 < size <= canonical.PARSED_CACHE_BYTES
    assert entries < 40
    # a document too big to keep is parsed, and not kept
    huge = canonical.dumps({"huge": "h" * (canonical.PARSED_CACHE_BYTES // 3)})
    assert canonical.loads_cached(huge)["huge"][0] == "h"
    assert canonical.parsed_cache_info()[1] <= canonical.PARSED_CACHE_BYTES


def test_a_snapshot_hands_out_documents_nobody_else_sees_changed(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "sessions", clock=Clock())
    session = record_example_session(store)
    session.follow_up()
    turn = load_example("follow_up", "turns", "turn-06.json")
    for i in range(12):  # a conversation over the cache's threshold
        turn = {**turn, "timestamp": f"2025-01-15T14:{i:02d}:00Z"}
        turn.pop("turn_id", None)
        session.append_turn(turn)
    conv = Store(store.root).customer(CUSTOMER).read("v1").document("conversation.json")
    assert len(canonical.dumps(conv)) >= canonical.PARSED_CACHE_MIN
    snap = Store(store.root).customer(CUSTOMER).read("v1")
    docs = snap.documents()
    docs["conversation.json"]["conversation_turns"].clear()
    again = Store(store.root).customer(CUSTOMER).read("v1")
    assert again.documents()["conversation.json"] == conv
    assert json.loads(again.raw("conversation.json")) == conv
