"""The semantic diff's fast path gives the plain path's answer (Hypothesis).

:mod:`gitstore.core.jsontexts` checks a document canonical by making the canonical
text of every container, and reads the new side of a diff guided by the old one,
reusing the old side's containers where the bytes hold their very text. Proved here:

* ``texts`` is not None exactly when ``canonical.dumps`` gives the bytes back, and
  then holds the canonical text, at its indentation, of every container;
* ``guided`` returns what parsing and checking would: a value that ``canonical.dumps``
  turns into exactly the new bytes (so equal as JSON to ``json.loads`` of them,
  ``1``/``1.0``/``true`` and ``0.0``/``-0.0`` told apart), a text for each of its
  containers, and an answer whenever the new bytes are canonical;
* :func:`gitstore.core.diff.compute` gives the same diff (compared by ``repr``, which
  tells those values apart too) with the guided reading as without it, for edited
  conversations, record arrays and arbitrary JSON, canonical or not.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

from hypothesis import example, given
from hypothesis import strategies as st
from test_diff import (
    conversations,
    edited_conversation,
    encodings,
    json_values,
    laws,
    record_arrays,
    states,
)

from gitstore.core import canonical, diff, jsontexts


def _containers(value: Any, ind: str = "\n") -> Iterator[tuple[Any, str]]:
    """Every array and object in ``value`` with the indentation it stands at."""
    if isinstance(value, dict | list):
        yield value, ind
        for child in value.values() if isinstance(value, dict) else value:
            yield from _containers(child, ind + "  ")


def _canonical_at(value: Any, ind: str) -> str:
    """``canonical.dumps`` of ``value`` as it reads at indentation ``ind``."""
    return canonical.dumps(value).decode("utf-8")[:-1].replace("\n", ind)


def _is_canonical(data: bytes) -> bool:
    try:
        return canonical.dumps(json.loads(data)) == data
    except (ValueError, RecursionError):
        return False


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """The bytes of a document, canonical mostly, also as other tools write it."""
    value: Any = draw(conversations() | st.dictionaries(st.sampled_from(["a", "records", "b"]),
                                                        json_values | record_arrays())
                      | json_values)
    return draw(encodings(value))


@st.composite
def versions(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Two versions of a document: an edited conversation, a document with some parts
    kept, or any two documents, in any of the encodings."""
    kind = draw(st.sampled_from(["conversation", "kept", "any"]))
    old: Any
    new: Any
    if kind == "conversation":
        old = draw(conversations())
        new = draw(edited_conversation(old))
    elif kind == "kept":
        old = draw(st.dictionaries(st.sampled_from(["a", "b", "c", "records"]),
                                   json_values | record_arrays(), min_size=1))
        new = copy.deepcopy(old)
        for key in draw(st.lists(st.sampled_from(sorted(old)), max_size=2)):
            new[key] = draw(json_values)
    else:
        old, new = draw(json_values), draw(json_values)
    return draw(encodings(old)), draw(encodings(new))


@example(data=b'{\n  "a": -0.0\n}\n')
@example(data=b'{\n  "a": 1e+16\n}\n')
@example(data=b'{\n  "b": 1,\n  "a": 2\n}\n')
@example(data=b'{\n  "a": "\\u00e9"\n}\n')
@laws(300)
@given(documents())
def test_texts_exactly_when_canonical(data: bytes) -> None:
    try:
        value = json.loads(data)
    except ValueError:
        return
    found = jsontexts.texts(data, value)
    assert (found is not None) == _is_canonical(data)
    if found is not None:
        for container, ind in _containers(value):
            assert found[id(container)] == _canonical_at(container, ind)


@example(pair=(b'{\n  "a": [\n    1\n  ]\n}\n', b'{\n  "a": [\n    1.0\n  ]\n}\n'))
@example(pair=(b'{\n  "a": {\n    "x": true\n  }\n}\n', b'{\n  "a": {\n    "x": 1\n  }\n}\n'))
@example(pair=(b'[\n  {\n    "id": 1\n  }\n]\n',
               b'[\n  {\n    "id": 1\n  },\n  {\n    "id": 1\n  }\n]\n'))
@example(pair=(b'{\n  "a": 1\n}\n', b'{\n  "a": 1,\n  "a": 1\n}\n'))
@example(pair=(b'{\n  "a": []\n}\n', b'{\n  "a": [\n  ]\n}\n'))
@example(pair=(b'{\n  "a": 1\n}\n', b'{\n  "a": 1.50\n}\n'))
@example(pair=(b'[\n  0.1\n]\n', b'[\n  0.10\n]\n'))
@laws(400)
@given(versions())
def test_guided_reading_is_parsing_and_checking(pair: tuple[bytes, bytes]) -> None:
    old_data, new_data = pair
    try:
        old = json.loads(old_data)
    except ValueError:
        return
    old_texts = jsontexts.texts(old_data, old)
    if old_texts is None:
        return
    read = jsontexts.guided(new_data, old, old_texts)
    assert (read is not None) == _is_canonical(new_data)
    if read is not None:
        value, new_texts = read
        assert canonical.dumps(value) == new_data
        assert value == json.loads(new_data)
        for container, ind in _containers(value):
            text = new_texts.get(id(container)) or old_texts.get(id(container))
            assert text == _canonical_at(container, ind)


def _plain_compute(a: dict[str, bytes], b: dict[str, bytes]) -> diff.Diff:
    with mock.patch.object(jsontexts, "guided", lambda *args: None):
        return diff.compute(a, b)


@laws(300)
@given(versions(), st.sampled_from(["conversation.json", "deployment_context.json"]))
def test_the_fast_diff_is_the_plain_diff(pair: tuple[bytes, bytes], name: str) -> None:
    a, b = {name: pair[0]}, {name: pair[1]}
    assert repr(diff.compute(a, b)) == repr(_plain_compute(a, b))
    assert diff.apply(a, diff.compute(a, b)) == b


@laws(100)
@given(states(), states())
def test_the_fast_diff_is_the_plain_diff_for_whole_states(a: dict[str, bytes],
                                                          b: dict[str, bytes]) -> None:
    assert repr(diff.compute(a, b)) == repr(_plain_compute(a, b))
