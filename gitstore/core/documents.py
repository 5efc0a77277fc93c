"""Turning caller input into session data (pure).

Inputs may be bytes, str, paths, dicts/lists or pydantic models; all become
JSON data bounded by the store's size limit, parsed strictly. The fill
functions complete store-managed fields that a caller omitted (and leave
supplied ones alone, so that the integrity check can refuse wrong ones).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from gitstore.core import canonical
from gitstore.core.names import JSON_DOCUMENTS
from gitstore.core.versions import Version
from gitstore.errors import (
    InputTooLargeError,
    InvalidDocumentError,
    NotFoundError,
    UsageError,
    Violation,
)

CONV, CTX, META, ANA = JSON_DOCUMENTS


def to_json(data: Any, name: str, limit: int, pointer: str = "") -> Any:
    """Turn caller input (bytes, str, path, dict/list or pydantic model) into JSON data.

    Raw input is parsed strictly; every input is bounded by ``limit`` bytes."""
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
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
            return canonical.loads(bytes(data))
        except canonical.JSONParseError as exc:
            raise InvalidDocumentError([Violation(name, pointer, f"malformed JSON: {exc}",
                                                  "json")]) from None
    try:
        encoded = canonical.dumps(data)
    except (canonical.JSONParseError, TypeError) as exc:
        raise InvalidDocumentError([Violation(name, pointer, f"not JSON data: {exc}",
                                              "json")]) from None
    if len(encoded) > limit:
        raise InputTooLargeError(f"{name} is {len(encoded)} bytes; the store's limit is {limit}")
    return canonical.loads(encoded)


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
    return doc


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def check_session_id(sid: str) -> str:
    if not isinstance(sid, str) or not sid or len(sid) > 200 or not sid.isprintable() \
            or sid != sid.strip():
        raise UsageError(f"invalid session id {sid!r}: 1-200 printable characters, no "
                         "surrounding spaces")
    return sid


def as_version(value: str | Version | None) -> Version | None:
    if value is None or isinstance(value, Version):
        return value
    return Version.parse(value)



def offset_minutes(now: Any) -> int:
    off = now.utcoffset()
    return int(off.total_seconds() // 60) if off else 0


