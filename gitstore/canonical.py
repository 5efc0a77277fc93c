"""Canonical JSON: the one byte representation gitstore stores.

Invariants:

* ``dumps(loads(dumps(x))) == dumps(x)`` for every JSON value ``x``;
* keys are sorted, indentation is two spaces, non-ASCII is kept as UTF-8, the
  text ends with exactly one newline; so equal data always gives equal bytes
  and ``git diff`` shows one change per line;
* ``loads`` is strict: invalid UTF-8, a byte-order mark, duplicate object keys,
  ``NaN``/``Infinity`` and trailing garbage are all refused with the line and
  column of the problem.
"""

from __future__ import annotations

import json
from typing import Any


class JSONParseError(ValueError):
    """Raised by :func:`loads`; ``str()`` is a one-line description with position."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONParseError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise JSONParseError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Parse JSON strictly (see module docstring)."""
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            raise JSONParseError("starts with a UTF-8 byte-order mark")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONParseError(f"invalid UTF-8 at byte {exc.start}") from None
    else:
        text = data
    if not text.strip():
        raise JSONParseError("empty document")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise JSONParseError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JSONParseError("nested too deeply") from None


def dumps(value: Any) -> bytes:
    """Serialise ``value`` canonically (see module docstring)."""
    try:
        text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False,
                          allow_nan=False, separators=(",", ": "))
    except ValueError as exc:
        raise JSONParseError(str(exc)) from None
    return (text + "\n").encode("utf-8")
