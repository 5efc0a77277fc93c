"""Round trips, with Hypothesis.

* arbitrary JSON values survive :func:`canonical.dumps`/:func:`canonical.loads`,
  and ``dumps`` is idempotent;
* turns and documents written through the store read back exactly, through
  ``history()`` (with and without a limit), ``read().document()`` and the raw
  bytes ``git show`` prints;
* commit-message trailers survive ``Message.format``/``Message.parse``, and git
  reads the same trailers;
* ``Version.parse(str(v)) == v``;
* a customer name that :func:`check_customer` accepts always stays inside the root.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gitstore import InvalidNameError, Scenario, Store, Version
from gitstore.core import canonical
from gitstore.core.commits import Message, _one_line
from gitstore.core.names import check_customer


def git_settings(max_examples: int) -> settings:
    """For tests that touch git: no deadline, few examples."""
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON types all the way down (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


# --------------------------------------------------------------------------- JSON values

scalars = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=25)


@settings(max_examples=300)
@given(json_values)
def test_canonical_round_trip(value: Any) -> None:
    data = canonical.dumps(value)
    assert isinstance(data, bytes) and data.endswith(b"\n") and not data.endswith(b"\n\n")
    back = canonical.loads(data)
    assert same(back, value)
    assert canonical.dumps(back) == data                 # idempotent
    assert same(canonical.loads(data.decode("utf-8")), value)  # str input too


@settings(max_examples=100)
@given(st.dictionaries(st.text(), json_values, max_size=6), st.randoms())
def test_canonical_bytes_do_not_depend_on_key_order(value: dict[str, Any], rnd: Any) -> None:
    keys = list(value)
    rnd.shuffle(keys)
    assert canonical.dumps({k: value[k] for k in keys}) == canonical.dumps(value)


# --------------------------------------------------------------------------- documents

text = st.text(max_size=30)
extra_key = st.text(max_size=8).map(lambda k: "x-" + k)
extras = st.dictionaries(extra_key, json_values, max_size=2)


def with_extras(base: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(base, extras).map(lambda pair: {**pair[1], **pair[0]})


score = st.integers(0, 10) | st.floats(0, 10)
turn_body = with_extras(st.fixed_dictionaries({
    "user_input": with_extras(st.fixed_dictionaries(
        {"query": text},
        optional={"command": st.none() | text,
                  "parameters": st.dictionaries(st.text(max_size=6), json_values, max_size=3)})),
    "agent_response": with_extras(st.fixed_dictionaries(
        {"orchestrator_response": text},
        optional={"sub_agents_invoked": st.lists(text, max_size=3),
                  "processing_time_seconds": st.integers(0, 10**6) | st.floats(0, 1e6),
                  "confidence_score": score})),
}, optional={
    "decision_points": st.lists(with_extras(st.fixed_dictionaries(
        {"decision": st.text(min_size=1, max_size=20)},
        optional={"value": json_values, "confidence": st.floats(0, 1)})), max_size=2),
}))

CREATED = datetime(2025, 1, 15, 10, 30, tzinfo=UTC)


def _stamp(seconds: int, style: int) -> str:
    t = CREATED + timedelta(seconds=seconds)
    if style == 0:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    shifted = t + timedelta(hours=5, minutes=30)   # the same instant, another zone
    return shifted.strftime("%Y-%m-%dT%H:%M:%S") + "+05:30"


@st.composite
def conversations(draw: st.DrawFn, max_turns: int = 4) -> list[dict[str, Any]]:
    bodies = draw(st.lists(turn_body, min_size=1, max_size=max_turns))
    offsets = sorted(draw(st.lists(st.integers(0, 86400 * 30), min_size=len(bodies),
                                   max_size=len(bodies))))
    turns = []
    for i, (body, offset) in enumerate(zip(bodies, offsets, strict=True), 1):
        turn = dict(body)
        turn["timestamp"] = _stamp(offset, draw(st.integers(0, 2)))
        if draw(st.booleans()):
            turn["turn_id"] = i
        turns.append(turn)
    return turns


@pytest.fixture(scope="module")
def rt_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    # Round trips are about storage, so the secrets policy allows everything here
    # (random digits are sometimes valid card numbers, which are redacted by default).
    root = tmp_path_factory.mktemp("roundtrip") / "sessions"
    (root / ".gitstore").mkdir(parents=True)
    (root / ".gitstore" / "config.json").write_text(
        '{"secrets": {"credential": "allow", "pii": "allow"}}', encoding="utf-8")
    return Store.init(root, clock=Clock(), fsync=False)


_names = (f"rt-{n}" for n in itertools.count())


@git_settings(20)
@given(turns=conversations())
def test_turns_read_back_exactly(rt_store: Store, turns: list[dict[str, Any]]) -> None:
    customer = rt_store.customer(next(_names))
    session = customer.new_session(created=CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"))
    for i, turn in enumerate(turns):  # each its own write, even two equal turns:
        session.append_turn(turn, idempotency_key=f"turn-{i}")  # (no retry to collapse)
    expected = [{**turn, "turn_id": i} for i, turn in enumerate(turns, 1)]
    assert same(session.history(), expected)
    for n in range(len(expected) + 2):
        assert same(session.history(n), expected[-n:] if n else []), n
    snap = customer.read()
    doc = snap.document("conversation.json")
    assert same(doc["conversation_turns"], expected)
    assert doc["conversation_summary"]["total_turns"] == len(expected)
    assert snap.raw("conversation.json") == canonical.dumps(doc)
    shown = subprocess.run(["git", "-C", str(customer.path), "show", "HEAD:conversation.json"],
                           capture_output=True, check=True).stdout
    assert shown == snap.raw("conversation.json")


@git_settings(15)
@given(turns=conversations(max_turns=3),
       top=st.dictionaries(st.text(max_size=8).map(lambda k: "zz-" + k), json_values,
                           max_size=2),
       summary=with_extras(st.fixed_dictionaries(
           {}, optional={"final_recommendation": st.none() | text,
                         "services_discussed": st.lists(text, max_size=3)})))
def test_whole_documents_read_back_exactly(rt_store: Store, turns: list[dict[str, Any]],
                                           top: dict[str, Any],
                                           summary: dict[str, Any]) -> None:
    """A document put as a whole (with extra fields at the top level, sorted after
    conversation_turns) reads back equal, and so does every tail of its turns."""
    customer = rt_store.customer(next(_names))
    session = customer.new_session(created=CREATED.strftime("%Y-%m-%dT%H:%M:%SZ"))
    full = [{**turn, "turn_id": i} for i, turn in enumerate(turns, 1)]
    doc = {**top, "session_id": session.session_id, "conversation_turns": full,
           "conversation_summary": {**summary, "total_turns": len(full)}}
    session.put("conversation.json", doc)
    assert same(customer.read().document("conversation"), doc)
    for n in range(len(full) + 2):
        assert same(session.history(n), full[-n:] if n else []), n


@settings(max_examples=200)
@given(doc=st.dictionaries(st.text(max_size=20), json_values, max_size=3),
       items=st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=3),
                      max_size=4),
       n=st.integers(0, 6))
def test_tail_items_agrees_with_loads(doc: dict[str, Any], items: list[dict[str, Any]],
                                      n: int) -> None:
    doc = {**doc, "conversation_turns": items}
    data = canonical.dumps(doc)
    tail = canonical.tail_items(data, "conversation_turns", n)
    assert tail is None or same(tail, items[-n:] if n else [])


@pytest.mark.parametrize("deep_at", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_tail_items_refuses_a_chosen_turn_nested_too_deep(deep_at: int, n: int) -> None:
    """Each chosen turn's nesting is bounded by its own brackets: a turn nested
    past the bound is refused when it is among the chosen, and costs nothing when
    it is not (git could hold such a file: plain git does not check depth)."""
    deep: Any = 0
    for _ in range(canonical.MAX_DEPTH + 2):
        deep = [deep]
    turns: list[Any] = [{"n": i, "v": [i, {"w": i}]} for i in range(3)]
    turns[deep_at] = {"n": deep_at, "v": deep}
    data = (json.dumps({"conversation_turns": turns}, indent=2, sort_keys=True)
            + "\n").encode()
    tail = canonical.tail_items(data, "conversation_turns", n)
    if deep_at >= 3 - n:
        assert tail is None
    else:
        assert tail == turns[-n:]


# --------------------------------------------------------------------------- trailers

trailer_keys = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,15}", fullmatch=True)
one_liners = st.text(min_size=1, max_size=40).filter(lambda s: _one_line(s) != "")


@settings(max_examples=300)
@given(summary=one_liners, body=st.text(max_size=80),
       trailers=st.lists(st.tuples(trailer_keys, one_liners), min_size=1, max_size=6))
def test_message_format_parse_round_trip(summary: str, body: str,
                                         trailers: list[tuple[str, str]]) -> None:
    message = Message(summary, tuple(trailers), body)
    parsed = Message.parse(message.format())
    assert parsed.summary == _one_line(summary)
    assert parsed.trailers == tuple((k, _one_line(v)) for k, v in trailers)
    for key, _value in trailers:
        assert parsed.get(key.upper()) is not None       # keys are case-insensitive
    assert Message.parse(parsed.format()).format() == parsed.format()


@pytest.mark.parametrize("trailers", [
    (("Reason", ""), ("Agent", "reporter")),       # an empty value in the middle
    (("Agent", "reporter"), ("Reason", "")),       # an empty value last
    (("Reason", "   "),),                          # whitespace folds to empty
])
def test_message_round_trip_with_empty_values(trailers: tuple[tuple[str, str], ...]) -> None:
    """``trailers()`` keeps empty strings (only None is dropped), so a trailer may
    be empty; it must not make the whole trailer block disappear."""
    message = Message("v1.1.0: open follow-up to v1.0.0", trailers)
    parsed = Message.parse(message.format())
    assert parsed.trailers == tuple((k, _one_line(v)) for k, v in trailers)
    assert parsed.body == ""


ascii_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,", min_size=1,
                      max_size=30).filter(lambda s: s.strip() != "")


@git_settings(25)
@given(summary=ascii_words, body=st.lists(ascii_words, max_size=3),
       trailers=st.lists(st.tuples(trailer_keys.filter(lambda k: not k[0].isdigit()),
                                   ascii_words), min_size=1, max_size=5))
def test_git_reads_the_same_trailers(summary: str, body: list[str],
                                     trailers: list[tuple[str, str]]) -> None:
    text = Message(summary, tuple(trailers), "\n\n".join(body)).format()
    proc = subprocess.run(["git", "interpret-trailers", "--parse", "--no-divider"],
                          input=text.encode(), capture_output=True, check=True)
    git_pairs = [tuple(line.split(": ", 1)) for line in proc.stdout.decode().splitlines()]
    assert git_pairs == [(k, v) for k, v in Message.parse(text).trailers]


# --------------------------------------------------------------------------- versions

components = st.integers(0, 999_999_999)


@settings(max_examples=300)
@given(major=st.integers(1, 999_999_999), minor=components, patch=components)
def test_version_parse_str_round_trip(major: int, minor: int, patch: int) -> None:
    v = Version(major, minor, patch)
    assert Version.parse(str(v)) == v
    assert not Version.is_version(v.document_version)  # one grammar: the v is required
    assert Version.parse(str(v)).tag_ref == f"refs/tags/{v}"
    assert Scenario.parse(str(v.scenario)) == v.scenario


@settings(max_examples=300)
@given(st.from_regex(r"v?[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True) | st.text(
    alphabet="v0123456789.-+ ", max_size=14))
def test_version_parse_accepts_only_canonical_spellings(text: str) -> None:
    try:
        v = Version.parse(text)
    except Exception as exc:
        assert type(exc).__name__ == "UsageError"
        return
    assert text == str(v)
    assert v.major >= 1


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 50), st.integers(0, 50)),
                min_size=2, max_size=6))
def test_versions_order_like_tuples(parts: list[tuple[int, int, int]]) -> None:
    versions = [Version(*p) for p in parts]
    assert [(v.major, v.minor, v.patch) for v in sorted(versions)] == sorted(parts)
    assert sorted(versions) == sorted(Version.parse(str(v)) for v in versions)


# --------------------------------------------------------------------------- names

hostile_alphabet = [*"aZ09._-/\\ \x00:~*?", "\u0441", "\u2024", "\uff0e", "\u2215", "\u00e9",
                    "\n"]
names = (st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,130}", fullmatch=True)
         | st.text(alphabet=hostile_alphabet, max_size=10)
         | st.text(max_size=10))


@settings(max_examples=500)
@given(names)
def test_accepted_names_stay_inside_the_root(name: str) -> None:
    root = Path("/srv/sessions")
    try:
        accepted = check_customer(name)
    except InvalidNameError:
        return
    assert accepted == name                       # accepted as given, never normalised
    assert name not in (".", "..") and "/" not in name and "\\" not in name
    assert name.isascii() and name.isprintable() and 1 <= len(name) <= 128
    path = root / name
    assert path.parent == root and path.name == name
    assert os.path.normpath(path) == str(path)    # nothing for the OS to resolve away
    assert os.path.commonpath([root, os.path.normpath(path)]) == str(root)


@git_settings(15)
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True)
       | st.text(alphabet=hostile_alphabet, min_size=1, max_size=8))
def test_creating_an_accepted_customer_writes_only_below_the_root(tmp_path_factory: Any,
                                                                  name: str) -> None:
    try:
        check_customer(name)
    except InvalidNameError:
        assume(False)
    base = tmp_path_factory.mktemp("names")
    store = Store.init(base / "sessions", fsync=False)
    store.customer(name).new_session()
    assert sorted(p.name for p in base.iterdir()) == ["sessions"]
    assert sorted(p.name for p in store.root.iterdir()) == sorted([".gitstore", name])
    assert store.customers() == [name]
    assert (store.root / name / "HEAD").is_file()
