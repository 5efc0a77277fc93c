"""Semantic diff of two session states (pure: bytes in, data out).

A :class:`Diff` lists, per document that differs:

* for JSON documents, every changed JSON path with its old and new value.
  Arrays of records are matched by their natural key where one exists
  (``turn_id``, ``id``, ``collector_type``, ``decision``: the first key that
  every element of both sides has, with unique values), so inserting a record
  shows as one added record, not as every later record changed. Other arrays
  are compared by position;
* for ``conversation.json``, the same changes grouped as turns added, removed
  and changed (by ``turn_id``, with the changed fields of a changed turn);
* for ``sow_document.md`` and other text, line edits (and a unified diff view).

Laws (proved by the tests with Hypothesis):

* ``compute(a, a).empty``;
* ``apply(a, compute(a, b)) == b`` byte for byte, for any two states ``a``
  and ``b`` (JSON that is not in canonical form is diffed as text).

Speed: a JSON side is checked canonical by making the canonical text of each of
its containers (:mod:`gitstore.core.jsontexts`), and the new side is read guided by
the old one, so what both versions share (the turns of a growing conversation) is
parsed and checked once, and compared by identity; the diff is the one the plain
route (parse both, check both) gives, which the tests prove with Hypothesis.

Writers (text, JSON, patch, stat) live in :mod:`gitstore.core.diffformat`; nothing
here formats for people.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from gitstore.core import canonical, jsontexts, lazy
from gitstore.core.names import MANIFEST

if TYPE_CHECKING:
    import difflib
else:  # only a text diff needs it (gitstore.core.lazy)
    difflib = lazy.module("difflib")

#: Keys that identify a record inside an array, in order of preference.
NATURAL_KEYS: tuple[str, ...] = ("turn_id", "id", "collector_type", "decision")
TURNS_PATH = ("conversation_turns",)

PathElem = str | int | tuple[str, Any]  # key, index, or (natural key, value)


class _Missing:
    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class Change(NamedTuple):
    """One JSON value that differs: added, removed or changed at ``path``.

    A path element is an object key (``str``), an array index (``int``) or a
    record selected by natural key (``("turn_id", 3)``). ``old``/``new`` are
    :data:`MISSING` for additions/removals. On a ``reorder`` change, ``new`` is
    the new order of the keyed array's records by their ``key`` values.
    """

    op: str  # "add" | "remove" | "change" | "reorder"
    path: tuple[PathElem, ...]
    old: Any = MISSING
    new: Any = MISSING
    key: str | None = None  # the natural key a "reorder" orders by

    @property
    def pointer(self) -> str:
        return pointer(self.path)


def pointer(path: Sequence[PathElem]) -> str:
    """A readable JSON-pointer-like rendering: ``/conversation_turns/[turn_id=3]/timestamp``."""
    parts = []
    for elem in path:
        if isinstance(elem, tuple):
            parts.append(f"[{elem[0]}={elem[1]}]")
        else:
            parts.append(str(elem).replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(parts) if parts else ""


class TurnChange(NamedTuple):
    """A conversation turn added, removed or changed (``changes`` relative to the turn)."""

    turn_id: Any
    op: str  # "added" | "removed" | "changed"
    old: Any = MISSING
    new: Any = MISSING
    changes: tuple[Change, ...] = ()


class TextEdit(NamedTuple):
    """Replace ``old[a_start:a_end]`` (lines) with ``lines``."""

    a_start: int
    a_end: int
    b_start: int
    lines: tuple[str, ...]


class DocumentDiff(NamedTuple):
    """How one file differs. ``status`` is ``added``, ``removed`` or ``modified``.

    JSON documents carry ``changes`` (``turns`` too for the conversation); text
    files carry ``edits``. ``old``/``new`` hold the raw bytes of each side.
    """

    name: str
    status: str
    old: bytes | None
    new: bytes | None
    kind: str  # "json" | "text"
    changes: tuple[Change, ...] = ()
    turns: tuple[TurnChange, ...] = ()
    edits: tuple[TextEdit, ...] = ()


class Diff(NamedTuple):
    """The differences between two session states, one entry per differing file.

    ``manifest`` is how ``SHA256SUMS`` differs when :func:`compute` left it out of
    ``documents`` (the default): it says nothing of its own, so the text, JSON
    and stat formats do not show it, but a patch carries it so that the patched
    tree verifies with ``sha256sum -c``, and :func:`apply` applies it."""

    documents: tuple[DocumentDiff, ...] = ()
    manifest: DocumentDiff | None = None

    @property
    def empty(self) -> bool:
        return not self.documents

    def document(self, name: str) -> DocumentDiff | None:
        for d in self.documents:
            if d.name == name:
                return d
        return None


# -- computing -----------------------------------------------------------------

def compute(a: Mapping[str, bytes], b: Mapping[str, bytes], *,
            include_manifest: bool = False) -> Diff:
    """Diff two states given as ``{file name: bytes}``.

    The manifest is left out of ``documents`` unless ``include_manifest``: it
    changes whenever anything does, and says nothing of its own. Its change is
    kept in :attr:`Diff.manifest` (for patches) all the same.
    """
    names = sorted(set(a) | set(b))
    docs = []
    manifest = None
    for name in names:
        old, new = a.get(name), b.get(name)
        if old == new:
            continue
        if name == MANIFEST and not include_manifest:
            manifest = _diff_file(name, old, new)
            continue
        docs.append(_diff_file(name, old, new))
    return Diff(tuple(docs), manifest)


def _diff_file(name: str, old: bytes | None, new: bytes | None) -> DocumentDiff:
    status = "added" if old is None else "removed" if new is None else "modified"
    if name.endswith(".json"):
        json_diff = _json_diff(name, old, new)
        if json_diff is not None:
            changes, turns = json_diff
            return DocumentDiff(name, status, old, new, "json", changes, turns)
    return DocumentDiff(name, status, old, new, "text",
                        edits=tuple(_text_edits(_lines(old), _lines(new))))


def _json_diff(name: str, old: bytes | None, new: bytes | None
               ) -> tuple[tuple[Change, ...], tuple[TurnChange, ...]] | None:
    """The changes (and turns) from ``old`` to ``new`` when both are canonical JSON
    (a missing side counts as canonical); None when either is not.

    Each side's texts (:mod:`gitstore.core.jsontexts`) tell equal containers at the
    same place apart from unequal ones without comparing them again. The new side is
    read guided by the old one: its parts that hold the old text of the container at
    the same place are that very container, neither parsed nor checked again (the
    result is the same as parsing it, a test proves it)."""
    old_v = _parsed(old)
    if old_v is _NOT_JSON:
        return None
    old_t = jsontexts.texts(old, old_v) if old is not None else {}
    if old_t is None:
        return None
    read = jsontexts.guided(new, old_v, old_t) \
        if new is not None and type(old_v) in (dict, list) else None
    if read is None:
        new_v = _parsed(new)
        new_texts = None if new_v is _NOT_JSON else \
            jsontexts.texts(new, new_v) if new is not None else {}
        if new_texts is None:
            return None
        read = new_v, new_texts
    new_v, new_t = read

    def same(a: Any, b: Any) -> bool:
        if a is b:  # a container of the old side that the new side reuses
            return True
        text = old_t.get(id(a))
        return text is not None and text == (new_t.get(id(b)) or old_t.get(id(b)))

    changes = tuple(_diff_values((), old_v, new_v, same))
    return changes, _turns(changes, old_v, new_v) if name == "conversation.json" else ()


_NOT_JSON = object()


def _parsed(data: bytes | None) -> Any:
    """``data`` parsed (MISSING for no file; ``_NOT_JSON`` if it is not JSON). Plain
    ``json``: whatever it accepts that :func:`gitstore.core.canonical.loads` would
    refuse (a duplicate key, ``NaN``, ``1e400``) has no canonical text equal to
    ``data``, so :func:`_texts` sends it to the text diff all the same."""
    if data is None:
        return MISSING
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _diff_values(path: tuple[PathElem, ...], old: Any, new: Any,
                 same: Callable[[Any, Any], bool] | None = None) -> list[Change]:
    """The changes from ``old`` to ``new`` at ``path``; ``same(a, b)`` may tell
    that two arrays or objects at the same place are equal (see :func:`_texts`)."""
    if old is MISSING and new is MISSING:
        return []
    if old is MISSING:
        return [Change("add", path, MISSING, new)]
    if new is MISSING:
        return [Change("remove", path, old, MISSING)]
    if isinstance(old, dict) and isinstance(new, dict):
        if same is not None and same(old, new):
            return []
        out: list[Change] = []
        for key in sorted(set(old) | set(new)):
            out.extend(_diff_values((*path, key), old.get(key, MISSING), new.get(key, MISSING),
                                    same))
        return out
    if isinstance(old, list) and isinstance(new, list):
        if same is not None and same(old, new):
            return []
        keyed = _natural_keys(old, new)
        if keyed is not None:
            return _diff_keyed(path, keyed, old, new, same)
        out = []
        for i in range(max(len(old), len(new))):
            out.extend(_diff_values((*path, i), old[i] if i < len(old) else MISSING,
                                    new[i] if i < len(new) else MISSING, same))
        # whole elements removed from the end must go last-first, after every
        # change inside surviving elements, so indices stay valid while applying
        depth = len(path) + 1
        dropped = [c for c in out if c.op == "remove" and len(c.path) == depth]
        kept = [c for c in out if not (c.op == "remove" and len(c.path) == depth)]
        return kept + dropped[::-1]
    if _same(old, new):
        return []
    return [Change("change", path, old, new)]


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0 differ, as do true and 1, and 0.0 and -0.0
    (their bytes differ)."""
    if type(a) is not type(b) or a != b:
        return False
    return not isinstance(a, float) or math.copysign(1.0, a) == math.copysign(1.0, b)


def natural_key(old: list[Any], new: list[Any]) -> str | None:
    """The natural key shared by every record of both arrays, if any (and unique)."""
    keyed = _natural_keys(old, new)
    return keyed[0] if keyed is not None else None


_Keyed = tuple[str, list[tuple[str, Any]], list[tuple[str, Any]]]


def _natural_keys(old: list[Any], new: list[Any]) -> _Keyed | None:
    """:func:`natural_key` and each record's value of it (as :func:`_hk`), old and new."""
    items = old + new
    if not items or not all(map(isinstance, items, repeat(dict))):
        return None
    for key in NATURAL_KEYS:
        values = [x[key] for x in items if key in x]
        if len(values) < len(items) or not (set(map(type, values)) <= _KEY_TYPES
                                             or all(map(_hashable, values))):
            continue
        keys = [(type(v).__name__, v) for v in values]  # as _hk
        old_keys, new_keys = keys[:len(old)], keys[len(old):]
        if len(set(old_keys)) == len(old) and len(set(new_keys)) == len(new):
            return key, old_keys, new_keys
    return None


_KEY_TYPES = frozenset({str, int, float, bool, type(None)})


def _hashable(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) or v is None


def _hk(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v)


def _diff_keyed(path: tuple[PathElem, ...], keyed: _Keyed, old: list[Any],
                new: list[Any], same: Callable[[Any, Any], bool] | None = None
                ) -> list[Change]:
    key, old_keys, new_keys = keyed
    old_by = dict(zip(old_keys, old, strict=True))
    new_by = set(new_keys)
    out: list[Change] = []
    for k, x in zip(old_keys, old, strict=True):
        if k not in new_by:
            out.append(Change("remove", (*path, (key, x[key])), x, MISSING))
    for k, x in zip(new_keys, new, strict=True):
        was = old_by.get(k, MISSING)
        if was is x:  # the new side reuses the old container: nothing changed in it
            continue
        if was is not MISSING:
            out.extend(_diff_values((*path, (key, x[key])), was, x, same))
        else:
            out.append(Change("add", (*path, (key, x[key])), MISSING, x))
    surviving = [k for k in old_keys if k in new_by]
    if len(surviving) < len(new_keys):
        surviving += [k for k in new_keys if k not in old_by]
    if surviving != new_keys:
        out.append(Change("reorder", path, MISSING, [x[key] for x in new], key=key))
    return out


def _turns(changes: tuple[Change, ...], old: Any, new: Any) -> tuple[TurnChange, ...]:
    """Group the conversation's changes under ``conversation_turns`` by turn."""
    grouped: dict[Any, list[Change]] = {}
    order: list[Any] = []
    for c in changes:
        if c.path[:1] != TURNS_PATH or len(c.path) < 2:
            continue
        sel = c.path[1]
        if sel not in grouped:
            grouped[sel] = []
            order.append(sel)
        grouped[sel].append(c)
    out = []
    for sel in order:
        items = grouped[sel]
        turn_id = sel[1] if isinstance(sel, tuple) else _turn_id_at(new, old, sel)
        if len(items) == 1 and len(items[0].path) == 2 and items[0].op in ("add", "remove"):
            c = items[0]
            op = "added" if c.op == "add" else "removed"
            out.append(TurnChange(turn_id, op, c.old, c.new))
        else:
            rel = tuple(Change(c.op, c.path[2:], c.old, c.new) for c in items)
            old_turn = _select(old, sel)
            new_turn = _select(new, sel)
            out.append(TurnChange(turn_id, "changed", old_turn, new_turn, rel))
    return tuple(out)


def _turn_id_at(new: Any, old: Any, index: Any) -> Any:
    for doc in (new, old):
        turn = _select(doc, index)
        if isinstance(turn, dict) and "turn_id" in turn:
            return turn["turn_id"]
    return index


def _select(doc: Any, sel: Any) -> Any:
    turns = doc.get("conversation_turns") if isinstance(doc, dict) else None
    if not isinstance(turns, list):
        return MISSING
    if isinstance(sel, tuple):
        for t in turns:
            if isinstance(t, dict) and _hk(t.get(sel[0], MISSING)) == _hk(sel[1]):
                return t
        return MISSING
    return turns[sel] if isinstance(sel, int) and sel < len(turns) else MISSING


def split_lines(text: str) -> list[str]:
    """Lines as git sees them: split at ``\n`` only (not at U+2028, form feed,
    lone CR, ...), each keeping its newline."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _lines(data: bytes | None) -> list[str]:
    if data is None:
        return []
    return split_lines(data.decode("utf-8", errors="surrogateescape"))


def _text_edits(a: list[str], b: list[str]) -> list[TextEdit]:
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return [TextEdit(i1, i2, j1, tuple(b[j1:j2]))
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


# -- applying ------------------------------------------------------------------

def apply(a: Mapping[str, bytes], diff: Diff) -> dict[str, bytes]:
    """Apply ``diff`` to state ``a``; ``apply(a, compute(a, b)) == b``.

    JSON documents are rebuilt from the changes and serialised canonically;
    text files (and the manifest, :attr:`Diff.manifest`) from their line edits.
    """
    out = dict(a)
    extra = (diff.manifest,) if diff.manifest is not None else ()
    for d in (*diff.documents, *extra):
        if d.status == "removed":
            out.pop(d.name, None)
            continue
        if d.kind == "json":
            base = canonical.loads(out[d.name]) if d.status == "modified" else MISSING
            value = base
            for c in d.changes:
                value = _apply_change(value, c.path, c)
            out[d.name] = canonical.dumps(value)
        else:
            lines = _lines(out.get(d.name)) if d.status == "modified" else []
            for e in reversed(d.edits):
                lines[e.a_start:e.a_end] = list(e.lines)
            out[d.name] = "".join(lines).encode("utf-8", errors="surrogateescape")
    return out


def _apply_change(value: Any, path: tuple[PathElem, ...], c: Change) -> Any:
    if not path:
        if c.op == "reorder":
            return _reorder(value, c.new, c.key)
        return c.new if c.op in ("add", "change") else MISSING
    head, rest = path[0], path[1:]
    if isinstance(head, tuple):
        key, kval = head
        items = list(value)
        for i, item in enumerate(items):
            if isinstance(item, dict) and _hk(item.get(key, MISSING)) == _hk(kval):
                new_item = _apply_change(item, rest, c)
                if new_item is MISSING:
                    del items[i]
                else:
                    items[i] = new_item
                return items
        if c.op == "add" and not rest:
            return [*items, c.new]
        raise ValueError(f"no record with {key}={kval!r} at {pointer(path)}")
    if isinstance(head, int):
        items = list(value)
        if head < len(items):
            new_item = _apply_change(items[head], rest, c)
            if new_item is MISSING:
                del items[head]
            else:
                items[head] = new_item
        else:
            items.append(_apply_change(MISSING, rest, c))
        return items
    obj = dict(value)
    new_child = _apply_change(obj.get(head, MISSING), rest, c)
    if new_child is MISSING:
        obj.pop(head, None)
    else:
        obj[head] = new_child
    return obj


def _reorder(items: Any, order: list[Any], key: str | None) -> Any:
    if key is None:
        return items
    by = {_hk(x[key]): x for x in items}
    return [by[_hk(k)] for k in order]
