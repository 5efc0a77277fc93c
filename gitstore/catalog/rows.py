"""What the index keeps of a version and of a turn, derived from git data alone (pure).

Invariants: every function here is pure (no I/O, no clock) and total: a document
that is absent, unreadable or of the wrong shape, or holds values no layer should
see (a time outside years 0001..9999 in UTC, an integer too large for a float, a
lone surrogate a plain-git writer left) yields None/empty fields, never an
exception; every text is storable in SQLite. :func:`version_row` returns exactly
the keys :data:`COLUMNS`, the columns of the ``versions`` table in table order.
Equal turn text gives an equal :func:`turn_digest` (the index re-indexes a turn
exactly when its digest changes).

Satisfaction (0..1) is derived from ``user_satisfaction_indicators``: the
weighted mean, over the indicators present, of ``explicit_positive_feedback``
(weight 0.4, true = 1), ``completed_to_implementation`` (0.4, true = 1) and
``follow_up_questions_answered`` (0.2, ``min(n, 3) / 3``); null when none is
present.

Timestamps found inside documents are read leniently (:func:`iso`: any ISO 8601
text Python reads, a naive time taken as UTC, or epoch seconds), since the index
must describe whatever git holds, including documents written before the strict
RFC 3339 rule or with plain git; what it stores is always RFC 3339 UTC
(``YYYY-MM-DDTHH:MM:SSZ``), so stored values compare as text.

A scenario purged by retention whose analytics summary is kept (its branch holds one
``Change: retention`` commit) is indexed as one row of status :data:`RETAINED`, named
by :func:`retained_version`: it has no turns and no metadata, but its analytics
(pattern hash, complexity profile) still count in ``stats`` and ``similar``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gitstore.core import lazy
from gitstore.core.commits import ChangeKind, CommitInfo, Trailer
from gitstore.core.names import JSON_DOCUMENTS, SEALED_PREFIX
from gitstore.core.time import format_rfc3339, from_timestamp
from gitstore.core.versions import Version
from gitstore.errors import UsageError

if TYPE_CHECKING:
    from gitstore.core import sealed
else:  # only an encrypted session's documents need it (gitstore.core.lazy)
    sealed = lazy.module("gitstore.core.sealed")

_TOKEN = SEALED_PREFIX.encode()  # in a document's bytes: it holds sealed values

__all__ = ["ANA", "COLUMNS", "CONV", "CTX", "META", "PURGED_VERSIONS", "RETAINED",
           "SATISFACTION_WEIGHTS", "Docs", "fts_query", "iso", "parse", "retained_version",
           "satisfaction", "scenario_session_id", "turn_digest", "turn_text", "turns_of",
           "version_row"]

CONV, CTX, META, ANA = JSON_DOCUMENTS
SATISFACTION_WEIGHTS = (("explicit_positive_feedback", 0.4),
                        ("completed_to_implementation", 0.4),
                        ("follow_up_questions_answered", 0.2))
#: The columns of a version row (table ``versions``), in table order.
COLUMNS = ("customer", "scenario", "version", "major", "minor", "patch", "latest", "status",
           "completion_status", "session_id", "created", "updated", "completed", "provider",
           "services", "final_recommendation", "completeness", "confidence", "success",
           "satisfaction", "pattern_hash", "complexity_profile", "user_expertise", "turns",
           "commit_id", "tag")
#: The parsed documents of one commit, by file name (see :func:`parse`).
Docs = dict[str, dict[str, Any]]
#: The trailer of a retention commit naming the versions it purged
#: (written by :mod:`gitstore.ops.retention`).
PURGED_VERSIONS = "Purged-Versions"
#: The status of a scenario purged by retention whose analytics summary is kept.
RETAINED = "retained"


def fts_query(text: str) -> str:
    """An FTS5 query matching every word of ``text`` (AND), each as a quoted
    phrase, so no user input is FTS syntax; ``word*`` keeps a prefix search."""
    terms = []
    for word, star in re.findall(r"(\w+)(\*?)", text or "")[:32]:
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if star else ""))
    return " ".join(terms)


def satisfaction(indicators: Any) -> float | None:
    """A 0..1 score from ``user_satisfaction_indicators`` (formula in the module doc)."""
    if not isinstance(indicators, dict):
        return None
    score = weight = 0.0
    for key, w in SATISFACTION_WEIGHTS:
        value = indicators.get(key)
        if key == "follow_up_questions_answered":
            number = _number(value)
            if number is None:
                continue
            part = min(max(number, 0.0), 3.0) / 3.0
        elif isinstance(value, bool):
            part = 1.0 if value else 0.0
        else:
            continue
        score += w * part
        weight += w
    return round(score / weight, 3) if weight else None


def iso(value: Any) -> str | None:
    """A timestamp (ISO 8601 text, epoch seconds or datetime) as ``YYYY-MM-DDTHH:MM:SSZ``;
    None when ``value`` is none of these or lies outside years 0001..9999."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            dt = from_timestamp(value)
        except UsageError:
            return None
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    try:
        return format_rfc3339(dt)  # a naive time is taken as UTC
    except UsageError:
        return None


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _text(value: Any) -> str | None:
    return _storable(value) if isinstance(value, str) and value else None


def _storable(text: str) -> str:
    """``text`` as SQLite can store it: a lone surrogate (which a document written
    with plain git may hold) becomes U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _number(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (a bool, an integer
    too large for a float, NaN or an infinity a plain-git document may hold)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def parse(files: Mapping[str, bytes], given: Mapping[str, Any] | None = None) -> Docs:
    """The JSON documents the index reads, parsed once ({} when absent or unreadable).
    The pipeline validated them strictly at write time; plain ``json`` is enough here.
    ``given`` holds documents the caller has parsed already (not parsed again)."""
    docs: Docs = {}
    for name in (CONV, META, ANA):
        if given and name in given and name in files:
            docs[name] = given[name] if isinstance(given[name], dict) else {}
            continue
        try:
            doc = json.loads(files[name])
            if _TOKEN in files[name]:  # an encrypted session: index what is clear
                doc = sealed.blank(doc)
        except (KeyError, ValueError, RecursionError):
            doc = None
        docs[name] = doc if isinstance(doc, dict) else {}
    return docs


def turns_of(docs: Docs) -> list[Any]:
    """The conversation's turns ([] when it has none)."""
    turns = docs[CONV].get("conversation_turns")
    return turns if isinstance(turns, list) else []


def scenario_session_id(info: CommitInfo, docs: Docs) -> str | None:
    """The session id of a scenario's tip: its trailer, else its metadata's."""
    return info.session_id or _text(_get(docs[META], "session_info", "session_id"))


def turn_text(turn: Any) -> tuple[str, str, str]:
    """What the index keeps of a turn: query (and command), response, raw timestamp."""
    if not isinstance(turn, dict):
        return "", "", ""
    asked, answer = turn.get("user_input"), turn.get("agent_response")
    asked = asked if isinstance(asked, dict) else {}
    query = " ".join(t for t in (asked.get("query"), asked.get("command"))
                     if isinstance(t, str) and t)
    response = answer.get("orchestrator_response") if isinstance(answer, dict) else None
    stamp = turn.get("timestamp")
    return _storable(query), _storable(response) if isinstance(response, str) else "", \
        _storable(stamp) if isinstance(stamp, str) else ""


def turn_digest(text: tuple[str, str, str]) -> str:
    """Of exactly what the index keeps of a turn: equal digests, equal rows."""
    data = "\x1f".join(text).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:24]


def retained_version(info: CommitInfo, major: int) -> Version | None:
    """The version a retention commit (``Change: retention``: a purged scenario's
    kept analytics summary) is indexed as: the newest version of scenario ``major``
    it purged, or ``vMAJOR.0.0`` when it names none. None for any other commit."""
    if info.change != ChangeKind.RETENTION:
        return None
    purged = []
    for text in (info.trailer(PURGED_VERSIONS) or "").split(","):
        if Version.is_version(text.strip()):
            v = Version.parse(text.strip())
            if v.major == major:
                purged.append(v)
    return max(purged) if purged else Version(major)


def version_row(customer: str, version: Version, info: CommitInfo, docs: Docs, status: str,
                tag: str | None) -> dict[str, Any]:
    """The index row of one version, from its commit and its parsed documents (pure)."""
    conv, meta, ana = docs[CONV], docs[META], docs[ANA]
    summary = conv.get("conversation_summary")
    services = _get(summary, "services_discussed")
    services = sorted({s for s in services if isinstance(s, str)}) \
        if isinstance(services, list) else []
    completeness = (info.trailer(Trailer.COMPLETENESS) or "").rstrip("%")
    info_doc = meta.get("session_info")
    return {
        "customer": customer, "scenario": str(version.scenario), "version": str(version),
        "major": version.major, "minor": version.minor, "patch": version.patch, "latest": 0,
        "status": status,
        "completion_status": _text(_get(meta, "workflow_tracking", "completion_status")),
        "session_id": info.session_id or _text(_get(info_doc, "session_id"))
        or _text(conv.get("session_id")),
        "created": iso(_get(info_doc, "created_timestamp")), "updated": iso(info.time),
        "completed": iso(_get(info_doc, "completed_timestamp")),
        "provider": _text(_get(summary, "primary_cloud_provider")),
        "services": json.dumps(services, ensure_ascii=False),
        "final_recommendation": _text(_get(summary, "final_recommendation")),
        "completeness": int(completeness) if completeness.isascii() and completeness.isdigit()
        and len(completeness) <= 3 else None,
        "confidence": _number(_get(meta, "quality_metrics", "recommendation_confidence_average")),
        "success": _number(_get(meta, "quality_metrics", "session_success_score")),
        "satisfaction": satisfaction(
            _get(meta, "workflow_tracking", "user_satisfaction_indicators")),
        "pattern_hash": _text(_get(ana, "similarity_vectors", "architecture_pattern_hash")),
        "complexity_profile": _text(_get(ana, "similarity_vectors", "complexity_profile")),
        "user_expertise": _text(_get(ana, "complexity_analysis", "user_expertise_inferred")),
        "turns": len(turns_of(docs)), "commit_id": info.id, "tag": tag,
    }
