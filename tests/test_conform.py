"""The fast accept path (:mod:`gitstore.core.conform`) against the jsonschema path.

The law: ``conforms(schema, doc)`` implies that jsonschema (``validate_full``) reports
nothing, for every document. On the committed schemas the converse holds too (their
enums are all strings, and no keyword there descends into free-form values), so the
fast path fires on every valid document: checked on the examples and on random
mutations of them (deleted keys, wrong types, bools, whole floats, huge ints, trailing
newlines, unknown keys, bad timestamps) and on random JSON. Then the conservative
side: an unimplemented keyword anywhere in a schema means False, and the edge cases
of jsonschema's equality and strict types. Last, in a fresh process: a valid document
is validated without importing jsonschema; an invalid one imports it and gets
jsonschema's violations.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from gitstore.core import canonical
from gitstore.core.conform import compile_pattern, conforms, is_integer, is_number
from gitstore.core.schema import load, validate, validate_full

DOCS = ["conversation.json", "deployment_context.json", "session_analytics.json",
        "session_metadata.json"]
#: Every example of each document (the session's, the correction's, the follow-up's).
EXAMPLE_PATHS = {name: sorted(EXAMPLES.rglob(name)) for name in DOCS}
TURNS = sorted(EXAMPLES.rglob("turns/turn-*.json"))


def read(path: Path) -> Any:
    return canonical.loads(path.read_bytes())


def agree(filename: str, doc: Any) -> bool:
    """Check the law on ``doc``; returns whether it is valid."""
    full = validate_full(filename, doc)
    fast = conforms(load(filename), doc)
    assert not fast or full == [], (fast, full)  # sound: the law itself
    assert fast == (full == []), (fast, full)  # complete on the committed schemas
    assert validate(filename, doc) == full  # the composition answers as jsonschema does
    return fast


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("filename", DOCS)
def test_the_fast_path_accepts_every_example(filename: str) -> None:
    assert EXAMPLE_PATHS[filename]
    for path in EXAMPLE_PATHS[filename]:
        doc = read(path)
        assert conforms(load(filename), doc), path
        assert validate_full(filename, doc) == []


def test_the_fast_path_accepts_every_example_turn() -> None:
    conversation = read(EXAMPLES / "session" / "conversation.json")
    conversation["conversation_turns"] = [read(path) for path in TURNS]
    assert agree("conversation.json", conversation)


# --------------------------------------------------------------------------- the law

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)
TRICKY = st.sampled_from([
    True, False, 0, 1, -1, 5.0, 0.5, -0.5, 10.5, 1e308, -1e-9, 2**53 + 1, 2**1100, -(2**1100),
    "", "x\n", "v1.0.0\n", "v1.0.0", "v01.0.0", "in_progress", "completed\n", "COMPLETED",
    "2025-01-15T10:30:00Z", "2025-01-15T10:30:00", "2025-01-15 10:30:00Z",
    "2025-02-29T00:00:00Z", "0001-01-01T00:00:00+14:00", "2025-01-15T10:30:00Z\n",
    None, [], {}, [1], ["a"], {"k": 1},
])
KEYS = st.from_regex(r"x_[a-z]{1,8}", fullmatch=True) | st.text(max_size=6)


def paths(doc: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place in ``doc``, the root included."""
    found = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += paths(value, (*path, i))
    return found


#: The objects whose unknown keys have a schema (``additionalProperties``: integer >= 0).
COUNTS = ("sub_agent_invocations",)


def at(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def retyped(value: Any) -> list[Any]:
    """Near misses of ``value``: the same content under another JSON type, or just off."""
    if isinstance(value, bool):
        return [int(value), float(value), str(value).lower()]
    if isinstance(value, int):
        whole = float(value) if is_number(value) else 1e308
        return [whole, value != 0, str(value), -value - 1, value + 10**9, value * 2**1100]
    if isinstance(value, float):
        return [int(value), value > 0, str(value), -value - 1e-9, value + 1e9]
    if isinstance(value, str):
        return [value + "\n", "", " " + value, value.upper(), [value], len(value)]
    if isinstance(value, list):
        return [[], [*value, value[0]] if value else [None], {}, tuple(value)]
    if isinstance(value, dict):
        return [{}, list(value.values()), dict.fromkeys(value)]
    return ["", 0, False, {}]


@st.composite
def mutated(draw: st.DrawFn, filename: str) -> Any:
    """An example of ``filename`` after one to three random mutations."""
    doc = read(draw(st.sampled_from(EXAMPLE_PATHS[filename])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(doc)))
        parent: Any = None
        node: Any = doc
        for part in path:
            parent, node = node, node[part]
        kind = draw(st.sampled_from(["delete", "unknown_key", "tricky", "retype", "random"]))
        if kind in ("delete", "unknown_key") and isinstance(node, dict):
            if kind == "delete" and node:
                del node[draw(st.sampled_from(sorted(node)))]
            else:
                node[draw(KEYS)] = copy.deepcopy(draw(JSON | TRICKY))
            continue
        if kind == "retype":
            new = draw(st.sampled_from(retyped(node)))
        else:
            new = draw(JSON if kind == "random" else TRICKY)
        new = copy.deepcopy(new)  # never share: a later mutation must not reach the sample
        if parent is None:
            doc = new
        else:
            parent[path[-1]] = new
    return doc


LAW = settings(max_examples=300, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("filename", DOCS)
@LAW
@given(data=st.data())
def test_conforms_implies_jsonschema_finds_nothing(filename: str, data: st.DataObject) -> None:
    event("valid" if agree(filename, data.draw(mutated(filename))) else "invalid")


@pytest.mark.parametrize("filename", DOCS)
@LAW
@given(doc=JSON | TRICKY)
def test_the_law_on_arbitrary_json(filename: str, doc: Any) -> None:
    assert not agree(filename, doc) or isinstance(doc, dict)


@pytest.mark.parametrize("filename", DOCS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_unknown_keys_are_accepted_everywhere(filename: str, data: st.DataObject) -> None:
    """Every object of these schemas allows unknown fields (those of ``COUNTS`` only
    counts): the fast path must accept them too, ``additionalProperties`` or not."""
    doc = read(data.draw(st.sampled_from(EXAMPLE_PATHS[filename])))
    objects = [p for p in paths(doc) if isinstance(at(doc, p), dict)]
    for path in data.draw(st.lists(st.sampled_from(objects), min_size=1, max_size=4)):
        value = st.integers(0, 10**30) if path and path[-1] in COUNTS else JSON
        at(doc, path)[data.draw(KEYS)] = copy.deepcopy(data.draw(value))
    assert agree(filename, doc)


# --------------------------------------------------------------------------- unsupported


BASE: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "string"}},
                        "$defs": {"A": {"type": "integer"}}}


@pytest.mark.parametrize(("where", "keyword"), [
    ("a", {"oneOf": [{"type": "string"}]}),
    ("a", {"allOf": [{"type": "string"}]}),
    ("a", {"not": {"type": "integer"}}),
    ("root", {"patternProperties": {"^a": {"type": "string"}}}),
    ("root", {"unevaluatedProperties": False}),
    ("root", {"dependentRequired": {"a": ["b"]}}),
    ("a", {"uniqueItems": True}),
    ("a", {"minItems": 0}),
    ("a", {"prefixItems": [{"type": "string"}]}),
    ("a", {"format": "email"}),
    ("a", {"type": "text"}),
    ("a", {"pattern": "("}),
    ("a", {"pattern": 5}),
    ("root", {"$id": "urn:x#here"}),
    ("a", {"$ref": "#/definitions/A"}),
    ("a", {"$ref": "other.json#/$defs/A"}),
    ("a", {"$ref": "#/$defs/Missing"}),
    ("a", {"$id": "urn:elsewhere"}),
    ("a", {"$schema": "https://json-schema.org/draft/2020-12/schema"}),
    ("root", {"$schema": "http://json-schema.org/draft-07/schema#"}),
    ("anyof", {"if": {"type": "string"}}),
    ("defs", {"multipleOf": 2}),
])
def test_an_unimplemented_keyword_anywhere_means_false(where: str, keyword: dict[str, Any]
                                                       ) -> None:
    """Even where the data never reaches it (``a`` is absent; ``anyOf``'s first branch
    already passes; the ``$defs`` entry is reached through an absent property)."""
    schema = copy.deepcopy(BASE)
    schema["properties"]["b"] = {"anyOf": [{"type": "object"}, {"type": "null"}]}
    schema["properties"]["c"] = {"$ref": "#/$defs/A"}
    target = {"root": schema, "a": schema["properties"]["a"], "defs": schema["$defs"]["A"],
              "anyof": schema["properties"]["b"]["anyOf"][1]}[where]
    data = {"b": {}}
    assert conforms(copy.deepcopy(schema), data)  # as it was: accepted
    target.update(keyword)
    assert not conforms(schema, data)


def test_annotations_are_ignored() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:x",
              "title": "t", "description": "d", "$comment": "c", "examples": [1],
              "type": "object", "properties": {"a": {"type": "integer", "default": 0,
                                                     "deprecated": True, "readOnly": False}}}
    assert conforms(schema, {"a": 1})
    assert not conforms(schema, {"a": "1"})


def test_a_recursive_schema_and_a_deep_document() -> None:
    schema = {"$defs": {"Node": {"type": "object", "properties": {
        "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}},
        "$ref": "#/$defs/Node"}
    doc: Any = None
    for _ in range(50):
        doc = {"next": doc}
    assert conforms(schema, doc)
    assert not conforms(schema, {"next": {"next": 1}})
    for _ in range(sys.getrecursionlimit()):
        doc = {"next": doc}
    assert not conforms(schema, doc)  # too deep to decide here: jsonschema's call


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize(("schema", "value", "expected"), [
    ({"enum": [1, "a"]}, 1, True),
    ({"enum": [1, "a"]}, "a", True),
    ({"enum": [1, "a"]}, True, False),  # jsonschema: True is not 1
    ({"enum": [True]}, True, True),
    ({"enum": [True]}, 1, False),
    ({"enum": [0]}, False, False),
    ({"enum": [1]}, 1.0, False),  # valid for jsonschema (1 == 1.0): left to it
    ({"enum": [1.5]}, 1.5, True),
    ({"enum": [None]}, None, True),
    ({"enum": [None]}, 0, False),
    ({"enum": [[1]]}, [1], False),  # arrays and objects: left to jsonschema
    ({"enum": ["a"]}, "a\n", False),
    ({"const": 1}, 1, True),
    ({"const": 1}, True, False),
    ({"const": "x"}, "x", True),
])
def test_enum_and_const_equality(schema: dict[str, Any], value: Any, expected: bool) -> None:
    assert conforms(schema, value) is expected
    assert not expected or Draft202012Validator(schema).is_valid(value)


def turn_with(field: str, value: Any) -> tuple[str, dict[str, Any]]:
    doc = read(EXAMPLES / "session" / "conversation.json")
    turn = doc["conversation_turns"][0]
    if field == "confidence_score":
        turn["agent_response"][field] = value
    else:
        turn[field] = value
    return "conversation.json", doc


def summary_with(value: Any) -> tuple[str, dict[str, Any]]:
    doc = read(EXAMPLES / "session" / "conversation.json")
    doc["conversation_summary"]["total_turns"] = value
    return "conversation.json", doc


def version_with(value: str) -> tuple[str, dict[str, Any]]:
    doc = read(EXAMPLES / "session" / "session_metadata.json")
    doc["session_info"]["session_version"] = value
    return "session_metadata.json", doc


@pytest.mark.parametrize(("case", "valid"), [
    (turn_with("turn_id", 5.0), False),  # integer: no whole floats
    (turn_with("turn_id", True), False),  # integer: no bools
    (turn_with("confidence_score", True), False),  # number: no bools
    (turn_with("confidence_score", 2**1100), False),  # number: no int a float cannot hold
    (turn_with("confidence_score", 5.0), True),
    (turn_with("confidence_score", 10), True),
    (turn_with("confidence_score", 10.000001), False),
    (summary_with(2**1100), True),  # an integer, however large
    # Not a strict "number", so jsonschema skips its minimum: mirrored, not judged here.
    (summary_with(-(2**1100)), True),
    (summary_with(-1), False),
    (version_with("v1.0.0"), True),
    (version_with("v1.0.0\n"), False),  # ECMA '$': the very end
    (turn_with("timestamp", "2025-01-15T10:30:00"), False),  # no timezone
    (turn_with("timestamp", "2025-01-15T10:30:00+05:30"), True),
])
def test_strict_types_patterns_and_timestamps(case: tuple[str, dict[str, Any]], valid: bool
                                              ) -> None:
    filename, doc = case
    assert agree(filename, doc) is valid


def test_the_shared_rules() -> None:
    assert is_integer(2**1100) and not is_integer(True) and not is_integer(5.0)
    assert is_number(5.0) and is_number(2**1000) and not is_number(2**1100)
    assert not is_number(True) and not is_number(float("nan")) and not is_number(float("inf"))
    assert compile_pattern("^a$").search("a") and not compile_pattern("^a$").search("a\n")
    assert compile_pattern("^a\\$").search("a$")
    schema = {"type": "string", "pattern": "^a$"}
    assert conforms(schema, "a") and not conforms(schema, "a\n")


# --------------------------------------------------------------------------- start-up

PROBE = """\
import json, sys
from gitstore.core import schema
doc = json.load(open(sys.argv[1], encoding="utf-8"))
found = schema.validate("conversation.json", doc)
print(json.dumps({"violations": [[v.pointer, v.message] for v in found],
                  "jsonschema": "jsonschema" in sys.modules}))
"""


def _probe(tmp_path: Path, doc: Any) -> dict[str, Any]:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], cwd=tmp_path,
                          capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_a_valid_document_is_validated_without_jsonschema(tmp_path: Path) -> None:
    doc = read(EXAMPLES / "session" / "conversation.json")
    assert _probe(tmp_path, doc) == {"violations": [], "jsonschema": False}


def test_an_invalid_document_loads_jsonschema_and_gets_its_violations(tmp_path: Path) -> None:
    doc = read(EXAMPLES / "session" / "conversation.json")
    doc["conversation_turns"][0]["turn_id"] = "one"
    doc["conversation_turns"][1]["timestamp"] = "2025-01-15T10:30:00"
    del doc["conversation_turns"][2]["agent_response"]["orchestrator_response"]
    result = _probe(tmp_path, doc)
    assert result["jsonschema"] is True
    expected = [[v.pointer, v.message] for v in validate_full("conversation.json", doc)]
    assert result["violations"] == expected
    assert expected == [
        ["/conversation_turns/0/turn_id", "expected integer, got string"],
        ["/conversation_turns/1/timestamp",
         "'2025-01-15T10:30:00' is not an RFC 3339 date-time with timezone"],
        ["/conversation_turns/2/agent_response",
         "'orchestrator_response' is a required property"],
    ]
