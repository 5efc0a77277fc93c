"""Turning caller input into session data (pure).

Inputs may be dicts/lists, pydantic models, JSON text (``str``, ``bytes``) or a
file (an ``os.PathLike`` such as :class:`pathlib.Path`); all become JSON data
bounded by the store's size limit, parsed strictly. The rule is by type, never by
guessing: a ``str`` is always JSON text, never a file name. A ``str`` that fails
to parse and looks like a path gets an error naming that rule. The fill
functions complete store-managed fields that a caller omitted (and leave
supplied ones alone, so that the integrity check can refuse wrong ones); the
derived durations omitted or null are computed from the session's timestamps
(:func:`fill_duration` on every metadata write, :func:`fill_derived` at finalize).

The argument checks (:func:`document_name`, :func:`count`, :func:`text_or_none`)
turn every wrongly typed argument of the public API into a
:class:`~gitstore.errors.UsageError`, never a ``TypeError`` or ``AttributeError``.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gitstore.core import canonical
from gitstore.core.names import JSON_DOCUMENTS, check_document
from gitstore.core.time import try_parse_rfc3339
from gitstore.core.versions import Version
from gitstore.errors import (
    InputTooLargeError,
    InvalidDocumentError,
    InvalidNameError,
    NotFoundError,
    UsageError,
    Violation,
)

CONV, CTX, META, ANA = JSON_DOCUMENTS


PATH_RULE = "a str is JSON text, never a file name: pass a pathlib.Path to read a file"


def looks_like_path(text: str) -> bool:
    """Whether JSON text that failed to parse was probably meant as a file name:
    one line, not starting like a JSON object or array, and with a ``/`` or
    ``\\``, a ``.json`` ending, or naming a file that exists."""
    stripped = text.strip()
    if not stripped or len(stripped) > 4096 or "\n" in stripped or "\x00" in stripped \
            or stripped[0] in "{[":
        return False
    if "/" in stripped or "\\" in stripped or stripped.lower().endswith(".json"):
        return True
    try:
        return os.path.isfile(stripped)
    except (OSError, ValueError):
        return False


def to_json(data: Any, name: str, limit: int, pointer: str = "") -> Any:
    """Turn caller input into JSON data: dicts/lists and pydantic models as they
    are, ``str``/``bytes`` as JSON text, an ``os.PathLike`` as the file it names.

    Raw input is parsed strictly; every input is bounded by ``limit`` bytes, and
    nests at most as deep as the document it goes into allows at ``pointer``
    (:data:`~gitstore.core.canonical.MAX_DOCUMENT_DEPTH` for a whole document)."""
    depth = canonical.MAX_DOCUMENT_DEPTH - len([p for p in pointer.split("/") if p])
    # a pydantic model can only come from a caller that imported pydantic: look for
    # it without importing it (a CLI write never loads pydantic for this)
    pydantic = sys.modules.get("pydantic")
    text = data if isinstance(data, str) else None
    if pydantic is not None and isinstance(data, pydantic.BaseModel):
        data = data.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(data, os.PathLike):
        path = Path(data)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise NotFoundError(f"cannot read {path}: {exc.strerror}") from None
        if size > limit:
            raise InputTooLargeError(f"{path} is {size} bytes; the store's limit is {limit}")
        data = path.read_bytes()
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if isinstance(data, bytes | bytearray):
        if len(data) > limit:
            raise InputTooLargeError(f"{name} input is {len(data)} bytes; the store's limit "
                                     f"is {limit} (max_document_bytes)")
        try:
            return canonical.loads(bytes(data), max_depth=depth)
        except canonical.JSONParseError as exc:
            hint = f" ({PATH_RULE})" if text is not None and looks_like_path(text) else ""
            raise InvalidDocumentError([Violation(name, pointer, f"malformed JSON: {exc}{hint}",
                                                  "json")]) from None
    try:
        canonical.check_depth(data, depth)
        encoded = canonical.dumps(data)
    except (canonical.JSONParseError, TypeError) as exc:
        raise InvalidDocumentError([Violation(name, pointer, f"not JSON data: {exc}",
                                              "json")]) from None
    if len(encoded) > limit:
        raise InputTooLargeError(f"{name} is {len(encoded)} bytes; the store's limit is {limit}")
    try:
        return canonical.loads(encoded, max_depth=depth)
    except canonical.JSONParseError as exc:  # e.g. an integer too long to parse back
        raise InvalidDocumentError([Violation(name, pointer, f"not JSON data: {exc}",
                                              "json")]) from None


def fill(name: str, doc: Any, customer: str, session_id: str, version: Version,
         api_key: str | None = None) -> Any:
    """Fill the store-managed fields ``doc`` omits (see :func:`fill_metadata`)."""
    if name == META:
        return fill_metadata(doc, customer, session_id, version, api_key)
    if name == CONV and isinstance(doc, dict):
        doc.setdefault("session_id", session_id)
        turns = doc.get("conversation_turns")
        summary = doc.setdefault("conversation_summary", {})
        if isinstance(summary, dict) and isinstance(turns, list):
            summary.setdefault("total_turns", len(turns))
    return doc


def fill_metadata(doc: Any, customer: str, session_id: str, version: Version,
                  api_key: str | None = None) -> Any:
    """Fill omitted ``session_info`` fields. With hashed customer names,
    ``api_key`` is the customer's real key: where the document carries it, it
    is replaced by ``customer`` (the keyed hash), so the key is never stored."""
    if isinstance(doc, dict) and isinstance(doc.get("session_info"), dict):
        info = doc["session_info"]
        info.setdefault("session_id", session_id)
        info.setdefault("api_key", customer)
        info.setdefault("session_version", str(version))
        if api_key is not None and info.get("api_key") == api_key:
            info["api_key"] = customer
    return fill_duration(doc)


def session_minutes(info: Any) -> int | None:
    """Whole minutes (rounded down) from ``created_timestamp`` to
    ``completed_timestamp`` of a ``session_info``; None unless both are valid
    RFC 3339 times and completed is not before created."""
    if not isinstance(info, dict):
        return None
    created = try_parse_rfc3339(info.get("created_timestamp"))
    completed = try_parse_rfc3339(info.get("completed_timestamp"))
    if created is None or completed is None or completed < created:
        return None
    return (completed - created) // timedelta(minutes=1)


def fill_duration(meta: Any) -> Any:
    """Derived field: ``session_info.session_duration_minutes`` omitted or null
    while both timestamps are set becomes :func:`session_minutes`. A supplied
    number is left alone (the timestamps check refuses a wrong one)."""
    info = meta.get("session_info") if isinstance(meta, dict) else None
    if isinstance(info, dict) and info.get("session_duration_minutes") is None:
        minutes = session_minutes(info)
        if minutes is not None:
            info["session_duration_minutes"] = minutes
    return meta


def fill_derived(files: dict[str, bytes]) -> frozenset[str]:
    """At finalize: fill the derived fields still omitted or null in ``files``
    (canonical JSON, changed in place) and return the names of the files changed.

    ``session_info.session_duration_minutes`` as :func:`fill_duration`;
    ``conversation_summary.total_duration_minutes`` (the agent's figure for the
    time spent in conversation) defaults to the session's duration. Files that
    do not parse are left for the pipeline to report."""
    try:
        meta = canonical.loads(files[META]) if META in files else None
        conv = canonical.loads(files[CONV]) if CONV in files else None
    except canonical.JSONParseError:
        return frozenset()
    changed = set()
    if meta is not None:
        before = files[META]
        files[META] = canonical.dumps(fill_duration(meta))
        if files[META] != before:
            changed.add(META)
    minutes = session_minutes(meta.get("session_info")) if isinstance(meta, dict) else None
    summary = conv.get("conversation_summary") if isinstance(conv, dict) else None
    if minutes is not None and isinstance(summary, dict) \
            and summary.get("total_duration_minutes") is None:
        summary["total_duration_minutes"] = minutes
        files[CONV] = canonical.dumps(conv)
        changed.add(CONV)
    return frozenset(changed)


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def document_name(name: object, *, allow_sow: bool = True, allow_manifest: bool = False
                  ) -> str:
    """:func:`~gitstore.core.names.check_document` for any argument: a name that is
    not a ``str`` is a UsageError too."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a document name is a str like 'conversation.json', not "
                               f"{type(name).__name__}")
    return check_document(name, allow_sow=allow_sow, allow_manifest=allow_manifest)


MAX_COUNT = 2**62
"""Counts above this mean "no limit" and are taken as it (the catalog's integers are
64-bit)."""


def count(value: object, what: str) -> int | None:
    """A count argument (a limit): None, an int >= 0 or a string of digits; a count
    beyond :data:`MAX_COUNT` is taken as it."""
    if value is None:
        return None
    digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return int(digits)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return min(value, MAX_COUNT)
    shown = repr(value) if isinstance(value, int | str) and len(repr(value)) < 40 \
        else type(value).__name__
    raise UsageError(f"{what} must be a whole number >= 0 (an int or a string of digits), "
                     f"not {shown}")


def text_or_none(value: object, what: str) -> str | None:
    """An optional text argument (a message, a reason, a filter): None or a str
    without NUL characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{what} must be a str, not {type(value).__name__}")
    if "\x00" in value:
        raise UsageError(f"{what} must not contain NUL characters")
    return value


def check_session_id(sid: str) -> str:
    if not isinstance(sid, str) or not sid or len(sid) > 200 or not sid.isprintable() \
            or sid != sid.strip():
        raise UsageError(f"invalid session id {sid!r}: 1-200 printable characters, no "
                         "surrounding spaces")
    return sid


def as_version(value: str | Version | None) -> Version | None:
    if value is None or isinstance(value, Version):
        return value
    if not isinstance(value, str):
        raise UsageError(f"a version is a str like 'v1.2.0' or a Version, not "
                         f"{type(value).__name__}")
    return Version.parse(value)


def offset_minutes(now: Any) -> int:
    off = now.utcoffset()
    return int(off.total_seconds() // 60) if off else 0


