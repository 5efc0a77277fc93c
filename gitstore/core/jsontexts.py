"""The canonical text of every array and object of a parsed JSON document, checked
against the document's bytes (pure; the semantic diff's fast equality).

:func:`texts` makes, for a value parsed from ``data``, the canonical text
(:func:`gitstore.core.canonical.dumps`, at the indentation where it stands) of each
container in it, keyed by ``id``, and returns them only when they add up to exactly
``data``: so ``data`` is canonical, and two containers at the same place in two such
documents are equal JSON exactly when their texts are equal (``1``, ``1.0`` and
``true`` differ, as do ``0.0`` and ``-0.0``, which Python's ``==`` does not tell
apart). :func:`guided` reads a second version of a document the same way, but
guided by the first: a part whose bytes are the first version's text of the
container at the same place *is* that container (returned as the same object, not
parsed again), and only the rest is parsed and checked.

Invariants (the tests prove them against ``canonical.dumps`` and a plain parse):

* ``texts(data, v)`` is not None exactly when ``data == canonical.dumps(v)``, for
  ``v`` parsed from ``data`` (``json.loads``); each text is then the slice of ``data``
  the container was parsed from;
* ``guided(data, old, old_texts)`` (``old_texts = texts(old_data, old)``) is None or
  ``(value, new_texts)`` with ``data == canonical.dumps(value)``, ``value`` equal, as
  JSON, to ``json.loads(data)``, and a text in ``new_texts`` or ``old_texts`` for every
  container of ``value`` that :func:`texts` would give one; None means only that this
  route does not apply (the caller parses ``data`` and calls :func:`texts`), never
  that ``data`` is not canonical. Containers of ``old`` reused in ``value`` are never
  changed by anyone: both values are read only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from json.decoder import JSONDecoder
from json.encoder import encode_basestring as _escape  # the C escaper where there is one
from json.scanner import make_scanner
from typing import Any, cast

from gitstore.core import canonical

__all__ = ["guided", "texts"]

#: The deepest indentation a canonical text has (:data:`canonical.MAX_DEPTH` levels).
MAX_INDENT = 1 + 2 * canonical.MAX_DEPTH


def _scalar(v: Any) -> str:
    """The canonical text of a scalar other than a string."""
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if type(v) is int:
        return int.__repr__(v)
    if type(v) is float and math.isfinite(v):
        return float.__repr__(v)
    raise canonical.JSONParseError(f"not canonical JSON: {v!r}")


def _plain(v: Any, ind: str, found: dict[int, str], keys: dict[str, str]) -> str:
    """The canonical text of the array or object ``v`` at indentation ``ind`` (a
    newline and spaces); the text of every container in it goes into ``found``.
    ``keys`` remembers each object key's text with its ``": "``."""
    t = type(v)
    if not v:
        out = "{}" if t is dict else "[]"
    elif len(ind) >= MAX_INDENT:
        raise canonical.JSONParseError("nested too deep")
    else:
        esc = _escape
        inner = ind + "  "
        parts: list[str] = []
        add = parts.append
        if t is dict:
            order: Any = v
            last = None
            for k in v:  # parsed canonical text is in key order: sort only when it is not
                if last is not None and not k > last:
                    order = sorted(v)
                    break
                last = k
            for k in order:
                x = v[k]
                key = keys.get(k)
                if key is None:
                    key = keys[k] = esc(k) + ": "
                tx = type(x)
                if tx is str:
                    add(key + esc(x))
                elif tx is dict or tx is list:
                    add(key + _plain(x, inner, found, keys))
                elif tx is int:
                    add(key + int.__repr__(x))
                elif tx is float and x - x == 0.0:  # finite
                    add(key + float.__repr__(x))
                else:
                    add(key + _scalar(x))
            out = f"{{{inner}{(',' + inner).join(parts)}{ind}}}"  # one copy of the parts
        else:
            for x in v:
                tx = type(x)
                if tx is str:
                    add(esc(x))
                elif tx is dict or tx is list:
                    add(_plain(x, inner, found, keys))
                elif tx is int:
                    add(int.__repr__(x))
                else:
                    add(_scalar(x))
            out = f"[{inner}{(',' + inner).join(parts)}{ind}]"
    found[id(v)] = out
    return out


def texts(data: bytes, value: Any) -> dict[int, str] | None:
    """The canonical text of every array and object in ``value`` (by ``id``), if
    ``data`` is exactly ``canonical.dumps(value)``; None if it is not (JSON written by
    other tools is diffed as text, so that applying a diff reproduces its exact
    bytes). Made here rather than by ``canonical.dumps`` (whose bytes it equals, a
    test proves it) because json's indenting encoder is pure Python and slow."""
    try:
        expected = data.decode("utf-8")  # a lone surrogate in a text never equals it
        t = type(value)
        if t is dict or t is list:
            found: dict[int, str] = {}
            whole = _plain(value, "\n", found, {})
        else:
            found, whole = {}, _escape(value) if t is str else _scalar(value)
    except (UnicodeDecodeError, canonical.JSONParseError, ValueError, RecursionError):
        return None
    return found if len(whole) + 1 == len(expected) and expected.startswith(whole) \
        and expected.endswith("\n") else None


class _Mismatch(Exception):
    """The guided route does not apply here (see :func:`guided`)."""


class _Guided:
    """Reads a canonical text top-down, guided by the containers (and their texts)
    of an earlier version of it; see :func:`guided`."""

    def __init__(self, text: str, old_texts: Mapping[int, str]) -> None:
        self.text = text
        self.old_texts = old_texts
        self.found: dict[int, str] = {}
        self.keys: dict[str, str] = {}
        self.scan = make_scanner(cast(Any, JSONDecoder()))  # the C scanner where there is one

    def value(self, was: Any, ind: str, pos: int, tried: bool = False) -> tuple[Any, int]:
        """The value whose canonical text at ``ind`` starts at ``pos``, and where it
        ends; ``was`` is the earlier version's value at the same place (if any)."""
        text = self.text
        t = type(was)
        if t is dict or t is list:
            if not tried:
                known = self.old_texts.get(id(was))
                if known is not None and text.startswith(known, pos):
                    return was, pos + len(known)
            if t is dict:
                if text.startswith("{", pos) and not text.startswith("{}", pos):
                    return self.members(was, ind, pos)
            elif text.startswith("[", pos) and not text.startswith("[]", pos):
                return self.items(was, ind, pos)
        return self.fresh(ind, pos)

    def fresh(self, ind: str, pos: int) -> tuple[Any, int]:
        """A value with no earlier counterpart: parsed, then checked canonical."""
        try:
            value, end = self.scan(self.text, pos)
            t = type(value)
            if t is dict or t is list:
                expected = _plain(value, ind, self.found, self.keys)
            else:
                expected = _escape(value) if t is str else _scalar(value)
        except (StopIteration, ValueError, RecursionError):
            raise _Mismatch from None
        if end - pos != len(expected) or not self.text.startswith(expected, pos):
            raise _Mismatch
        return value, end

    def opened(self, ind: str, pos: int, closer: str) -> tuple[str, str, str, int]:
        """The inner indent, item separator and closing text of the object or array
        opening at ``pos`` (indented ``ind``), and where its first item starts."""
        if len(ind) >= MAX_INDENT:
            raise _Mismatch
        inner = ind + "  "
        if not self.text.startswith(inner, pos + 1):
            raise _Mismatch
        return inner, "," + inner, ind + closer, pos + 1 + len(inner)

    def next_item(self, out: Any, pos: int, at: int, sep: str, close: str) -> int:
        """Past the separator before the next item, or, at the close, minus where the
        object or array (``out``, opened at ``pos``) ends, its text remembered."""
        if self.text.startswith(sep, at):
            return at + len(sep)
        if self.text.startswith(close, at):
            end = at + len(close)
            self.found[id(out)] = self.text[pos:end]
            return -end
        raise _Mismatch

    def members(self, was: dict[str, Any], ind: str, pos: int) -> tuple[Any, int]:
        text = self.text
        inner, sep, close, at = self.opened(ind, pos, "}")
        out: dict[str, Any] = {}
        last: str | None = None
        while True:
            try:
                key, after = self.scan(text, at) if text.startswith('"', at) else (None, at)
            except (StopIteration, ValueError):
                raise _Mismatch from None
            if type(key) is not str or (last is not None and not key > last):
                raise _Mismatch  # keys in order, each once
            quoted = _escape(key)
            if after - at != len(quoted) or not text.startswith(quoted, at) \
                    or not text.startswith(": ", after):
                raise _Mismatch
            out[key], at = self.value(was.get(key), inner, after + 2)
            last = key
            at = self.next_item(out, pos, at, sep, close)
            if at < 0:
                return out, -at

    def items(self, was: list[Any], ind: str, pos: int) -> tuple[Any, int]:
        text = self.text
        inner, sep, close, at = self.opened(ind, pos, "]")
        out: list[Any] = []
        n, j = len(was), 0  # was[j]: the earlier item expected next
        old_texts = self.old_texts
        while True:
            for k in (j, j + 1):  # the next earlier item, or the one after (a removal)
                x = was[k] if k < n else None
                known = old_texts.get(id(x)) if type(x) is dict or type(x) is list else None
                if known is not None and text.startswith(known, at):
                    out.append(x)
                    at += len(known)
                    j = k + 1
                    break
            else:  # changed or inserted: read it (guided by was[j]; j stays for the next)
                value, at = self.value(was[j] if j < n else None, inner, at, tried=True)
                out.append(value)
            at = self.next_item(out, pos, at, sep, close)
            if at < 0:
                return out, -at


def guided(data: bytes, old: Any, old_texts: Mapping[int, str]
           ) -> tuple[Any, dict[int, str]] | None:
    """``data`` (a later version of the document ``old`` was parsed from, whose
    :func:`texts` are ``old_texts``) parsed and checked canonical, reusing ``old``'s
    containers where ``data`` holds their very text at the same place: ``(value,
    texts of the containers not taken from old)``, or None when ``data`` cannot be read
    this way (then parse it and use :func:`texts`: None does not mean it is not
    canonical)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    reader = _Guided(text, old_texts)
    try:
        value, end = reader.value(old, "\n", 0)
    except (_Mismatch, RecursionError):
        return None
    if end != len(text) - 1 or not text.endswith("\n"):
        return None
    return value, reader.found
