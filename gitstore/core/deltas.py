"""Compact, exact deltas between two session trees (pure), for history export.

A delta maps each file that differs (never the manifest, which the pipeline
rebuilds) to one of::

    {"removed": true}
    {"document": <JSON value>}        a JSON document in canonical form, whole
    {"text": "<str>"}                 any other file, or JSON not in canonical form
    {"turns_kept": k, "turns_added": [...], "fields": {...}}
                                      conversation.json: the first k turns of the
                                      old document, then the added ones; "fields"
                                      holds every other top-level member

so a turn-by-turn history costs about its turns, not its length squared.

Law (tested with Hypothesis): ``apply(a, encode(a, b)) == b`` byte for byte, for
any trees ``a`` and ``b`` of UTF-8 files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitstore.core import canonical
from gitstore.core.names import CONV, JSON_DOCUMENTS, MANIFEST
from gitstore.errors import UsageError

TURNS = "conversation_turns"


def encode(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> dict[str, Any]:
    """The delta that turns tree ``old`` into tree ``new``."""
    out: dict[str, Any] = {}
    for name in sorted((set(old) | set(new)) - {MANIFEST}):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if after is None:
            out[name] = {"removed": True}
            continue
        doc = _canonical_json(name, after)
        if doc is _TEXT:
            out[name] = {"text": after.decode("utf-8")}
            continue
        prior = _canonical_json(name, before) if before is not None else _TEXT
        if name == CONV and _turns_delta(prior, doc) is not None:
            out[name] = _turns_delta(prior, doc)
        else:
            out[name] = {"document": doc}
    return out


def apply(files: Mapping[str, bytes], delta: Mapping[str, Any]) -> dict[str, bytes]:
    """``files`` with ``delta`` applied; raises UsageError on a malformed delta."""
    out = {k: v for k, v in files.items() if k != MANIFEST}
    if not isinstance(delta, Mapping):
        raise UsageError("a history delta must be an object")
    for name, change in delta.items():
        if not isinstance(name, str) or name == MANIFEST or not isinstance(change, Mapping):
            raise UsageError(f"malformed history delta for {name!r}")
        if change.get("removed") is True:
            out.pop(name, None)
        elif "document" in change:
            out[name] = canonical.dumps(change["document"])
        elif isinstance(change.get("text"), str):
            out[name] = change["text"].encode("utf-8")
        elif "turns_kept" in change:
            out[name] = _apply_turns(name, out.get(name), change)
        else:
            raise UsageError(f"malformed history delta for {name}")
    return out


class _Text:
    """Marker: a file kept as text (not canonical JSON)."""


_TEXT = _Text()


def _canonical_json(name: str, data: bytes) -> Any:
    if name not in JSON_DOCUMENTS:
        return _TEXT
    try:
        doc = canonical.loads(data)
    except canonical.JSONParseError:
        return _TEXT
    return doc if canonical.dumps(doc) == data else _TEXT


def _turns_delta(old: Any, new: Any) -> dict[str, Any] | None:
    if not (isinstance(old, dict) and isinstance(new, dict)
            and isinstance(old.get(TURNS), list) and isinstance(new.get(TURNS), list)):
        return None
    a, b = old[TURNS], new[TURNS]
    kept = 0
    while kept < min(len(a), len(b)) and canonical.dumps(a[kept]) == canonical.dumps(b[kept]):
        kept += 1
    fields = {k: v for k, v in new.items() if k != TURNS}
    return {"turns_kept": kept, "turns_added": b[kept:], "fields": fields}


def _apply_turns(name: str, old: bytes | None, change: Mapping[str, Any]) -> bytes:
    kept, added, fields = change.get("turns_kept"), change.get("turns_added"), \
        change.get("fields")
    try:
        prior = canonical.loads(old) if old is not None else None
    except canonical.JSONParseError:
        prior = None
    turns = prior.get(TURNS) if isinstance(prior, dict) else None
    have = turns if isinstance(turns, list) else []
    if not (isinstance(kept, int) and not isinstance(kept, bool) and 0 <= kept <= len(have)
            and isinstance(added, list) and isinstance(fields, dict) and TURNS not in fields):
        raise UsageError(f"malformed history delta for {name}: turns do not follow on")
    doc = dict(fields)
    doc[TURNS] = [*have[:kept], *added]
    return canonical.dumps(doc)
