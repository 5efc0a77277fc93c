"""Canonical JSON: the one byte representation gitstore stores.

Invariants:

* ``dumps(loads(dumps(x))) == dumps(x)`` for every JSON value ``x``;
* keys are sorted, indentation is two spaces, non-ASCII is kept as UTF-8, the
  text ends with exactly one newline; so equal data always gives equal bytes
  and ``git diff`` shows one change per line;
* ``loads`` is strict: invalid UTF-8, a byte-order mark, duplicate object keys,
  ``NaN``/``Infinity`` and trailing garbage are all refused with the line and
  column of the problem;
* ``loads`` is bounded, so every layer above can handle what it returns: arrays
  and objects nest at most ``max_depth`` levels (:data:`MAX_DEPTH` for anything
  gitstore reads, such as an export bundle; :data:`MAX_DOCUMENT_DEPTH` for a session
  document, counted as it is stored, so a turn may nest two levels less than
  ``conversation.json``), a number must be a finite double (``1e400`` is refused, not turned into
  infinity) and an integer has at most :data:`MAX_INT_DIGITS` digits; ``dumps``
  refuses the same values. Every refusal is a one-line :class:`JSONParseError`,
  never ``RecursionError``, ``OverflowError`` or a bare ``ValueError``;
* ``loads_cached`` returns what ``loads`` would, a new value every call: it
  keeps a bounded, process-wide copy of what it parsed (never an error), so a
  version read again, by the web viewer, the MCP server or a diff, is not parsed
  again.
"""

from __future__ import annotations

import json
import marshal
import math
import re
import threading
from collections import OrderedDict
from typing import Any

MAX_DEPTH = 128
"""How deeply arrays and objects may nest in any JSON gitstore parses."""
MAX_DOCUMENT_DEPTH = 64
"""How deeply arrays and objects may nest in a session document (as stored)."""
MAX_INT_DIGITS = 4300
"""The most digits a JSON integer may have (Python's own conversion limit)."""


class JSONParseError(ValueError):
    """Raised by :func:`loads`; ``str()`` is a one-line description with position."""


_SURROGATE_ESCAPE = re.compile(r"\\[uU][dD][89a-fA-F]")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONParseError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise JSONParseError(f"{name} is not valid JSON")


def _shown(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONParseError(f"number {_shown(text)} is out of range (JSON numbers must "
                             "fit a 64-bit float)")
    return value


def _bounded_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise JSONParseError(f"integer with {digits} digits is too long (at most "
                             f"{MAX_INT_DIGITS})")
    return int(text)


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JSONParseError` if arrays/objects in ``value`` nest deeper
    than ``max_depth`` levels (a scalar is 0 levels, ``[]`` and ``{}`` are 1)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise JSONParseError(f"nested more than {max_depth} levels deep")
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


#: The strict decoder, made once (``json.loads`` with hooks builds one per call).
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                            parse_float=_finite, parse_int=_bounded_int)


def _may_nest_deeper(text: str, max_depth: int) -> bool:
    # Nesting is never deeper than the number of opening brackets, strings' included.
    return text.count("[") + text.count("{") > max_depth


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON strictly and within bounds (see module docstring)."""
    return _loads(data, max_depth, shallow=False)


def _loads(data: bytes | str, max_depth: int, *, shallow: bool) -> Any:
    # shallow: the caller has proved the nesting within max_depth (see tail_items)
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
        value = _DECODER.decode(text)
        if not shallow and _may_nest_deeper(text, max_depth):
            check_depth(value, max_depth)
        if _SURROGATE_ESCAPE.search(text):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise JSONParseError("contains an unpaired UTF-16 surrogate escape "
                                     "(\\ud800-\\udfff)") from None
        return value
    except json.JSONDecodeError as exc:
        raise JSONParseError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JSONParseError(f"nested more than {max_depth} levels deep") from None
    except JSONParseError:
        raise
    except ValueError as exc:  # the int/float conversions of a hostile number
        raise JSONParseError(str(exc).splitlines()[0][:120]) from None


#: The most bytes :func:`loads_cached` keeps: documents and their parsed values.
PARSED_CACHE_BYTES = 48 * 2**20
#: Documents smaller than this are parsed again, not looked up.
PARSED_CACHE_MIN = 16 * 1024

_parsed: OrderedDict[tuple[bytes, int], bytes] = OrderedDict()
_parsed_bytes = 0
_parsed_lock = threading.Lock()


def loads_cached(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """:func:`loads`, remembered: the same bytes parsed again (another read of
    the same version, in this process) come back from a compact copy of the
    checked value, several times faster than parsing, and every call returns a
    new value the caller may change. Errors are never remembered. At most
    :data:`PARSED_CACHE_BYTES` are kept, least recently used go first."""
    global _parsed_bytes
    if len(data) < PARSED_CACHE_MIN:
        return loads(data, max_depth=max_depth)
    key = (data, max_depth)
    with _parsed_lock:
        kept = _parsed.get(key)
        if kept is not None:
            _parsed.move_to_end(key)
    if kept is not None:
        return marshal.loads(kept)
    value = loads(data, max_depth=max_depth)
    kept = marshal.dumps(value)
    size = len(data) + len(kept)
    with _parsed_lock:
        if key not in _parsed and size <= PARSED_CACHE_BYTES // 4:
            _parsed[key] = kept
            _parsed_bytes += size
            while _parsed_bytes > PARSED_CACHE_BYTES:
                (old, _), dropped = _parsed.popitem(last=False)
                _parsed_bytes -= len(old) + len(dropped)
    return value


def parsed_cache_info() -> tuple[int, int]:
    """How many documents :func:`loads_cached` keeps, and their bytes (both forms)."""
    with _parsed_lock:
        return len(_parsed), _parsed_bytes


def loads_stored(data: bytes) -> Any:
    """Parse a document the store itself wrote and checked (no duplicate-key or
    constant hooks: several times faster). Never use it on input."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise JSONParseError(str(exc).splitlines()[0]) from None


def dumps(value: Any) -> bytes:
    """Serialise ``value`` canonically (see module docstring)."""
    check_depth(value)
    try:
        text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False,
                          allow_nan=False, separators=(",", ": "))
    except RecursionError:
        raise JSONParseError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # NaN/infinity, an integer too long to print
        raise JSONParseError(str(exc).splitlines()[0][:120]) from None
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        raise JSONParseError("contains an unpaired UTF-16 surrogate") from None




def tail_items(data: bytes, key: str, n: int,
               span: tuple[int, int] | None = None) -> list[Any] | None:
    """The last ``n`` items of the top-level array ``key`` of a canonical JSON
    object, parsing only those items (the rest is only scanned; nothing is, with
    ``span``, where the caller knows the array body starts and ends).

    Returns None when ``data`` is not laid out canonically or the items are not
    objects; callers then fall back to :func:`loads`. For canonical input the
    result is the last ``n`` items of ``loads(data)[key]`` (none for ``n == 0``;
    the tests prove it).
    """
    if not data.startswith(b'{\n  "'):
        return None  # not two-space indented: nested keys could sit at column 2
    quoted = json.dumps(key, ensure_ascii=False).encode("utf-8")
    marker = b"\n  " + quoted + b": [\n"
    if span is not None and n >= 0 and data[span[0] - len(marker):span[0]] == marker \
            and data[span[1]:span[1] + 4] == b"\n  ]":
        body_start, end = span
    else:
        if b"\n  " + quoted + b": []" in data:
            return []
        start = data.find(marker)
        if start < 0 or n < 0:
            return None
        body_start = start + len(marker)
        end = data.find(b"\n  ]", body_start - 1)
        if end < 0:
            return None
    body = data[body_start:end + 1]
    if not body.startswith(b"    {"):
        return None
    chosen: list[int] = []  # the last n element starts, found from the end: a line
    at = len(body)          # "    {" starts an element (nested lines are deeper)
    while len(chosen) < n:
        at = body.rfind(b"\n    {", 0, at)
        if at < 0:
            chosen.append(0)
            break
        chosen.append(at + 1)
    if not chosen:
        return []
    # The chosen elements as one array, parsed once. Its nesting is 1 + the deepest
    # element's, and no element nests deeper than it has opening brackets.
    starts = chosen[::-1]
    ends = [*starts[1:], len(body)]
    shallow = all(body.count(b"[", a, b) + body.count(b"{", a, b) < MAX_DEPTH
                  for a, b in zip(starts, ends, strict=True))
    try:
        items = _loads(b"[\n" + body[min(chosen):] + b"]", MAX_DEPTH, shallow=shallow)
    except JSONParseError:
        return None
    if not isinstance(items, list) or len(items) != len(chosen) \
            or not all(isinstance(item, dict) for item in items):
        return None
    return items


def indented(value: Any, spaces: int) -> bytes:
    """``dumps(value)`` without its final newline, every line indented by
    ``spaces``: the value as it appears nested in a canonical document."""
    pad = b" " * spaces
    body = dumps(value)[:-1]
    return b"\n".join(pad + line for line in body.split(b"\n"))


def append_item(data: bytes, key: str, item: Any, end: int | None = None) -> bytes | None:
    """``dumps(doc)`` for ``doc = loads(data)`` with ``item`` appended to the
    top-level array ``key``, made by splicing instead of re-serialising.
    ``end``, when the caller knows it, is where the array's closing line starts
    (``"\\n  ]"``; see :class:`gitstore.core.layout.Split`): then nothing is
    scanned for it.

    Returns None when ``data`` is not laid out canonically (callers then
    serialise the whole document). The tests prove the result equal to the
    full serialisation."""
    if not data.startswith(b'{\n  "'):
        return None
    if end is not None and data[end:end + 4] == b"\n  ]" and data[end - 1:end] == b"}":
        return data[:end] + b",\n" + indented(item, 4) + data[end:]
    quoted = json.dumps(key, ensure_ascii=False).encode("utf-8")
    empty = b"\n  " + quoted + b": []"
    at = data.find(empty)
    if at >= 0 and data[at + len(empty):at + len(empty) + 1] in (b",", b"\n"):
        return (data[:at] + b"\n  " + quoted + b": [\n" + indented(item, 4) + b"\n  ]"
                + data[at + len(empty):])
    marker = b"\n  " + quoted + b": [\n"
    start = data.find(marker)
    if start < 0:
        return None
    end = data.find(b"\n  ]", start + len(marker) - 1)
    if end < 0 or data[end - 1:end] != b"}":
        return None  # not an array of objects
    return data[:end] + b",\n" + indented(item, 4) + data[end:]


def append_at(data: bytes, head: bytes, body: int, end: int, item: Any) -> bytes | None:
    """:func:`append_item` where the caller knows the array: its body runs from
    ``body`` to ``end`` (where ``"\\n  ]"`` starts), and ``head`` replaces the
    bytes before ``body`` (an edited summary). One copy, nothing scanned; None
    when ``end`` is not where an array of objects closes."""
    if data[end:end + 4] != b"\n  ]" or data[end - 1:end] != b"}":
        return None
    view = memoryview(data)
    return b"".join((head, view[body:end], b",\n", indented(item, 4), view[end:]))


_INT_MEMBER = re.compile(rb'\n    "([^"\\]+)": (-?[0-9]+),?(?=\n)')


def set_int_member(data: bytes, key: str, member: str, value: int) -> bytes | None:
    """``data`` with the integer ``doc[key][member]`` set to ``value``, spliced
    (None when the layout is not canonical or the member is not an integer)."""
    if not data.startswith(b'{\n  "') or isinstance(value, bool):
        return None
    quoted = json.dumps(key, ensure_ascii=False).encode("utf-8")
    start = data.find(b"\n  " + quoted + b": {\n")
    if start < 0:
        return None
    end = data.find(b"\n  }", start)
    if end < 0:
        return None
    for m in _INT_MEMBER.finditer(data, start, end + 1):
        if m[1].decode("utf-8") == member:
            return data[:m.start(2)] + str(value).encode("ascii") + data[m.end(2):]
    return None
