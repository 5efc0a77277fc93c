"""Three-way merge of session states (pure: parsed documents in, data out).

``merge(base, ours, theirs)`` merges per JSON path, on the same path model as
:mod:`gitstore.core.diff`:

* a value changed on one side only, or changed the same way on both, merges by
  itself; different changes to the same path are a :class:`Conflict`
  ``{document, pointer, base, ours, theirs}`` (the merged value holds *ours*
  there until a person decides);
* arrays of records with a natural key (``turn_id``, ``id``, ``collector_type``,
  ``decision``: :data:`gitstore.core.diff.NATURAL_KEYS`) merge as records, not
  as positions: a record added on either side is kept, one removed on a side
  that the other left alone goes, one removed on one side and changed on the
  other is a conflict;
* conversation turns from both sides are united: a turn both sides hold (the
  same content, whatever its ``turn_id``) is kept once; base turns merge field
  by field; the result is ordered by timestamp (the spec's
  ``timestamp_based_ordering``), ties broken by the turn's canonical bytes, and
  renumbered 1..n;
* store-managed fields (``conversation_summary.total_turns``, the session id,
  ``session_info.session_version`` and ``api_key``) are recomputed or taken
  from *ours* (the target), never conflicts.

Laws (tested with Hypothesis): ``merge(b, x, b) == x``, ``merge(b, b, x) == x``,
``merge(b, x, x) == x`` (documents), and the conflict set of
``merge(b, x, y)`` is that of ``merge(b, y, x)`` with ours and theirs swapped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitstore.core import canonical
from gitstore.core.diff import MISSING, NATURAL_KEYS, pointer
from gitstore.core.names import CONV, META

TURNS = "conversation_turns"
MANAGED = {
    CONV: (("session_id",), ("conversation_summary", "total_turns")),
    META: (("session_info", "session_id"), ("session_info", "session_version"),
           ("session_info", "api_key")),
}


@dataclass(frozen=True)
class Conflict:
    """Different changes to the same path of a document. ``base``, ``ours`` and
    ``theirs`` are the values (``None`` where a side has no value: see the
    ``*_present`` flags). ``label`` is stable: the same conflict gets the same
    label in every process."""

    document: str
    pointer: str
    base: Any
    ours: Any
    theirs: Any
    base_present: bool = True
    ours_present: bool = True
    theirs_present: bool = True
    path: tuple[Any, ...] = ()

    @property
    def label(self) -> str:
        digest = hashlib.sha256(f"{self.document}\0{self.pointer}".encode()).hexdigest()
        return f"{self.document.split('.')[0]}:{digest[:8]}"

    def swapped(self) -> Conflict:
        return Conflict(self.document, self.pointer, self.base, self.theirs, self.ours,
                        self.base_present, self.theirs_present, self.ours_present, self.path)

    def side(self, which: str) -> Any:
        """The value of ``base``, ``ours`` or ``theirs`` (MISSING where that side has none)."""
        value, present = {"base": (self.base, self.base_present),
                          "ours": (self.ours, self.ours_present),
                          "theirs": (self.theirs, self.theirs_present)}[which]
        return value if present else MISSING

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "document": self.document, "pointer": self.pointer,
                "base": self.base, "ours": self.ours, "theirs": self.theirs,
                "present": {"base": self.base_present, "ours": self.ours_present,
                            "theirs": self.theirs_present},
                "path": [list(p) if isinstance(p, tuple) else p for p in self.path]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Conflict:
        present = data["present"]
        return cls(data["document"], data["pointer"], data["base"], data["ours"],
                   data["theirs"], bool(present["base"]), bool(present["ours"]),
                   bool(present["theirs"]),
                   tuple(tuple(p) if isinstance(p, list) else p for p in data["path"]))


@dataclass(frozen=True)
class MergeResult:
    """The merged documents (by name; a document merged away is absent) and the
    conflicts a person must resolve (empty: the merge is complete)."""

    documents: dict[str, Any]
    conflicts: tuple[Conflict, ...] = field(default=())


class _Found:
    """Collects conflicts; a conflict a person already decided takes their value."""

    def __init__(self, decisions: Mapping[tuple[str, str], Any]) -> None:
        self.conflicts: list[Conflict] = []
        self.decisions = decisions

    def conflict(self, doc: str, path: tuple[Any, ...], b: Any, o: Any, t: Any) -> Any:
        at = (doc, pointer(path))
        if at in self.decisions:
            return self.decisions[at]
        self.conflicts.append(_conflict(doc, path, b, o, t))
        return o


def merge(base: Mapping[str, Any], ours: Mapping[str, Any], theirs: Mapping[str, Any],
          decisions: Mapping[tuple[str, str], Any] | None = None) -> MergeResult:
    """Merge three session states given as ``{document name: parsed JSON}``.

    ``decisions`` maps ``(document, pointer)`` of conflicts a person resolved to
    the value to take there (:data:`~gitstore.core.diff.MISSING`: no value);
    those are no longer conflicts."""
    documents: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    for name in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(name, MISSING), ours.get(name, MISSING), theirs.get(name, MISSING)
        found = _Found(decisions or {})
        if name == CONV and all(isinstance(x, dict) or x is MISSING for x in (b, o, t)) \
                and not (_same(o, t) or _same(o, b) or _same(t, b)):
            value = _merge_conversation(name, b, o, t, found)
        else:
            value = _merge_value(name, (), b, o, t, found)
        if value is not MISSING:
            documents[name] = _managed_from_ours(name, value, o)
        conflicts.extend(c for c in found.conflicts if not _is_managed(name, c.pointer))
    return MergeResult(documents, tuple(sorted(conflicts, key=lambda c: (c.document,
                                                                          c.pointer))))


# -- values ------------------------------------------------------------------------

def _merge_value(doc: str, path: tuple[Any, ...], b: Any, o: Any, t: Any,
                 found: _Found) -> Any:
    if _same(o, t):
        return o
    if _same(o, b):
        return t
    if _same(t, b):
        return o
    if all(isinstance(x, dict) for x in (o, t)) and (b is MISSING or isinstance(b, dict)):
        base = b if isinstance(b, dict) else {}
        out = {}
        for key in sorted(set(base) | set(o) | set(t)):
            v = _merge_value(doc, (*path, key), base.get(key, MISSING), o.get(key, MISSING),
                             t.get(key, MISSING), found)
            if v is not MISSING:
                out[key] = v
        return out
    if all(isinstance(x, list) for x in (o, t)) and (b is MISSING or isinstance(b, list)):
        key = _record_key([*(b if isinstance(b, list) else []), *o, *t], b, o, t)
        if key is not None:
            return _merge_records(doc, path, key, b if isinstance(b, list) else [], o, t, found)
    return found.conflict(doc, path, b, o, t)


def _merge_records(doc: str, path: tuple[Any, ...], key: str, b: list[Any], o: list[Any],
                   t: list[Any], found: _Found) -> list[Any]:
    by_b, by_o, by_t = (_index(x, key) for x in (b, o, t))
    order = [k for k in by_o] + [k for k in by_t if k not in by_o]
    out = []
    for k in order:
        if k not in by_o and k in by_b and _same(by_b[k], by_t.get(k, MISSING)):
            continue  # removed on our side, untouched on theirs
        if k not in by_t and k in by_b and _same(by_b[k], by_o.get(k, MISSING)):
            continue  # removed on their side, untouched on ours
        v = _merge_value(doc, (*path, (key, k[1])), by_b.get(k, MISSING),
                         by_o.get(k, MISSING), by_t.get(k, MISSING), found)
        if v is not MISSING:
            out.append(v)
    return out


def _record_key(items: list[Any], *sides: Any) -> str | None:
    if not items or not all(isinstance(x, dict) for x in items):
        return None
    for key in NATURAL_KEYS:
        if all(key in x and _scalar(x[key]) for x in items) and all(
                len({_hk(x[key]) for x in side}) == len(side)
                for side in sides if isinstance(side, list)):
            return key
    return None


def _index(items: list[Any], key: str) -> dict[tuple[str, Any], Any]:
    return {_hk(x[key]): x for x in items}


# -- the conversation ------------------------------------------------------------------

def _merge_conversation(doc: str, b: Any, o: Any, t: Any, found: _Found) -> Any:
    base = b if isinstance(b, dict) else {}
    ours = o if isinstance(o, dict) else {}
    theirs = t if isinstance(t, dict) else {}
    rest = _merge_value(doc, (), {k: v for k, v in base.items() if k != TURNS},
                        {k: v for k, v in ours.items() if k != TURNS},
                        {k: v for k, v in theirs.items() if k != TURNS}, found)
    turns = _merge_turns(doc, _turns(base), _turns(ours), _turns(theirs), found)
    out = dict(rest) if isinstance(rest, dict) else {}
    out[TURNS] = turns
    summary = out.get("conversation_summary")
    if isinstance(summary, dict) and "total_turns" in summary:
        out["conversation_summary"] = {**summary, "total_turns": len(turns)}
    return out


def _turns(doc: Mapping[str, Any]) -> list[Any]:
    turns = doc.get(TURNS)
    return list(turns) if isinstance(turns, list) else []


def _content(turn: Any) -> bytes:
    """A turn's identity apart from its position: its content without turn_id."""
    body = {k: v for k, v in turn.items() if k != "turn_id"} if isinstance(turn, dict) else turn
    return canonical.dumps(body)


def _merge_turns(doc: str, b: list[Any], o: list[Any], t: list[Any],
                 found: _Found) -> list[Any]:
    base_content = {_content(x) for x in b}
    sides = [{_content(x): x for x in side} for side in (o, t)]
    used: set[bytes] = set()
    merged: dict[bytes, Any] = {}
    for turn in b:
        c = _content(turn)
        versions = []
        for side, contents in zip((o, t), sides, strict=True):
            if c in contents:
                versions.append(turn)  # unchanged there (perhaps renumbered)
                continue
            # changed there: the side's turn at this turn_id that is no base turn
            tid = _hk(turn.get("turn_id")) if isinstance(turn, dict) else None
            edited = next((x for x in side if isinstance(x, dict) and _hk(x.get("turn_id"))
                           == tid and _content(x) not in base_content), MISSING)
            if edited is not MISSING:
                used.add(_content(edited))
            versions.append(edited)
        at = (TURNS, ("turn_id", turn.get("turn_id") if isinstance(turn, dict) else None))
        v = _merge_value(doc, at, turn, versions[0], versions[1], found)
        if v is not MISSING:
            merged.setdefault(_content(v), v)
    for side in (o, t):  # turns new on either side, united by content
        for turn in side:
            c = _content(turn)
            if c not in base_content and c not in used and c not in merged:
                merged[c] = turn
    ordered = sorted(merged.items(), key=lambda kv: (_stamp(kv[1]), kv[0]))
    return [{**turn, "turn_id": n} if isinstance(turn, dict) else turn
            for n, (_, turn) in enumerate(ordered, start=1)]


def _stamp(turn: Any) -> str:
    value = turn.get("timestamp") if isinstance(turn, dict) else None
    return value if isinstance(value, str) else ""


# -- helpers ---------------------------------------------------------------------------

def _managed_from_ours(name: str, value: Any, ours: Any) -> Any:
    """Store-managed fields come from the target (ours), never from a merge."""
    if not isinstance(value, dict) or not isinstance(ours, dict):
        return value
    value = dict(value)  # never modify the inputs
    for path in MANAGED.get(name, ()):
        if path == ("conversation_summary", "total_turns"):
            continue  # recomputed from the merged turns
        src: Any = ours
        dst: dict[str, Any] = value
        for part in path[:-1]:
            src = src.get(part) if isinstance(src, dict) else None
            nxt = dst.get(part)
            if not isinstance(nxt, dict):
                break
            dst[part] = nxt = dict(nxt)
            dst = nxt
        else:
            if isinstance(src, dict) and path[-1] in src:
                dst[path[-1]] = src[path[-1]]
    return value


def _is_managed(name: str, at: str) -> bool:
    return any(at == pointer(path) for path in MANAGED.get(name, ()))


def _conflict(doc: str, path: tuple[Any, ...], b: Any, o: Any, t: Any) -> Conflict:
    return Conflict(doc, pointer(path), None if b is MISSING else b,
                    None if o is MISSING else o, None if t is MISSING else t,
                    b is not MISSING, o is not MISSING, t is not MISSING, path)


def _same(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    return type(a) is type(b) and canonical.dumps(a) == canonical.dumps(b)


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) or v is None


def _hk(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v)
