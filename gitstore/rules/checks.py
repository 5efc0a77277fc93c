"""The built-in checks of the pre-commit pipeline (pure functions).

Each check takes a :class:`~gitstore.rules.pipeline.Proposal` (the complete tree a
commit would have, plus what the store knows about the version being built)
and yields :class:`~gitstore.errors.Violation` objects, each naming a file and
an RFC 6901 JSON pointer. Checks never raise on malformed data: a document that
did not parse or failed its schema is skipped by the later, cross-file checks
(its own violations are already reported), so one run reports every problem
that can be known.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from gitstore.core import canonical, schema
from gitstore.core.names import CONV_PARTS, DOCUMENTS, JSON_DOCUMENTS, MANIFEST, SOW_DOCUMENT
from gitstore.errors import Violation
from gitstore.rules.proposal import Proposal

CONV, CTX, META, ANA = JSON_DOCUMENTS
FINAL_STATUSES = ("completed", "abandoned", "escalated", "expired", "failed")


def check_json(p: Proposal) -> Iterator[Violation]:
    """Parse every JSON document strictly; parsed values go to ``p.documents``.

    Documents the writer hands over in ``p.parsed`` (it produced their bytes
    from them) are not parsed again, and documents the change does not touch
    (they passed this check at their own commit) are parsed without the
    duplicate-key hook, which is most of the cost."""
    for name in JSON_DOCUMENTS:
        if name not in p.files:
            continue
        if name in p.parsed:
            p.documents[name] = p.parsed[name]
            continue
        try:
            if p.changed is not None and name not in p.changed:
                p.documents[name] = canonical.loads_stored(p.files[name])
            else:
                p.documents[name] = canonical.loads(p.files[name],
                                                    max_depth=canonical.MAX_DOCUMENT_DEPTH)
        except canonical.JSONParseError as exc:
            yield Violation(name, "", f"malformed JSON: {exc}", "json")
    if SOW_DOCUMENT in p.files:
        try:
            p.files[SOW_DOCUMENT].decode("utf-8")
        except UnicodeDecodeError:
            yield Violation(SOW_DOCUMENT, "", "is not valid UTF-8", "json")
    for name in sorted(p.files):
        if name.startswith(CONV_PARTS):  # handed on only when they do not join up
            yield Violation(name, "", "does not fit the conversation's other parts (missing, "
                            "extra, not in SHA256SUMS or not laid out as gitstore stores "
                            "them: see the README, 'How a store looks in git')", "manifest")
        elif name not in DOCUMENTS and name != MANIFEST:
            yield Violation(name, "", "is not a session document", "json")


def check_schema(p: Proposal) -> Iterator[Violation]:
    """Validate each parsed document that this change touches against its schema.

    Documents the change leaves as they were passed at their own commit; their
    schema is not re-checked (``p.changed``), which keeps appends cheap.
    """
    for name in JSON_DOCUMENTS:
        if name not in p.documents:
            continue
        if p.changed is not None and name not in p.changed:
            p.valid.add(name)
            continue
        if name == CONV and p.changed_turns is not None:
            found = _validate_turns(p.documents[name], p.changed_turns)
        else:
            found = schema.validate(name, p.documents[name])
        if found:
            yield from found
        else:
            p.valid.add(name)


def _validate_turns(conv: Any, indices: tuple[int, ...]) -> list[Violation]:
    """Schema-check the conversation with only the given turns in it (the
    others passed at their own commits), reporting pointers into the full one."""
    turns = conv.get("conversation_turns") if isinstance(conv, dict) else None
    if not isinstance(turns, list):
        return schema.validate(CONV, conv)
    picked = [i for i in indices if 0 <= i < len(turns)]
    reduced = {**conv, "conversation_turns": [turns[i] for i in picked]}
    out = []
    prefix = "/conversation_turns/"
    for v in schema.validate(CONV, reduced):
        if v.pointer.startswith(prefix):
            head, _, rest = v.pointer[len(prefix):].partition("/")
            if head.isdigit() and int(head) < len(picked):
                pointer = f"{prefix}{picked[int(head)]}" + (f"/{rest}" if rest else "")
                v = Violation(v.file, pointer, v.message, v.hook)
        out.append(v)
    return out


def _get(doc: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            if not isinstance(doc, list) or key >= len(doc):
                return None
            doc = doc[key]
        else:
            if not isinstance(doc, dict):
                return None
            doc = doc.get(key)
    return doc


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _first_changed(p: Proposal) -> int:
    """The first turn a change that names its changed turns may have touched (the
    writer's append path: the turns before it are the parent commit's, which
    passed every check when it was written); 0 when every turn must be checked."""
    if p.changed_turns is None or p.verify_manifest:
        return 0
    return max(0, min(p.changed_turns, default=0))


def check_integrity(p: Proposal) -> Iterator[Violation]:
    """Referential integrity across files.

    One ``session_id`` everywhere (and equal to the scenario's, when known);
    ``api_key`` equals the repository's customer; ``session_version`` equals the
    version being built; ``total_turns`` equals the number of turns; turn ids
    run 1..n without gaps or duplicates.
    """
    conv = p.documents.get(CONV) if CONV in p.valid else None
    meta = p.documents.get(META) if META in p.valid else None
    if meta is not None:
        info = meta["session_info"]
        if info["api_key"] != p.customer:
            yield Violation(META, "/session_info/api_key",
                            f"is {info['api_key']!r} but this is customer {p.customer!r}",
                            "integrity")
        if p.version is not None and info["session_version"] != str(p.version):
            yield Violation(META, "/session_info/session_version",
                            f"is {info['session_version']!r} but the version being built is "
                            f"{p.version}", "integrity")
    ids = []
    if conv is not None:
        ids.append((CONV, "/session_id", conv["session_id"]))
    if meta is not None:
        ids.append((META, "/session_info/session_id", meta["session_info"]["session_id"]))
    expected = p.session_id or (ids[0][2] if ids else None)
    for file, pointer, value in ids:
        if value != expected:
            origin = "this session" if p.session_id else f"{ids[0][0]}"
            yield Violation(file, pointer, f"is {value!r} but {origin} has session_id "
                            f"{expected!r}", "integrity")
    if conv is not None:
        turns = conv["conversation_turns"]
        total = conv["conversation_summary"]["total_turns"]
        if total != len(turns):
            yield Violation(CONV, "/conversation_summary/total_turns",
                            f"is {total} but there are {len(turns)} turns", "integrity")
        seen: set[int] = set()
        first = _first_changed(p)  # the turns before it passed this check at their commit
        for i, turn in enumerate(turns[first:], first):
            tid = turn["turn_id"]  # the turns before hold 1..first: no set of them is made
            if tid in seen or (isinstance(tid, int | float) and 1 <= tid <= first
                               and tid == int(tid)):
                yield Violation(CONV, f"/conversation_turns/{i}/turn_id",
                                f"duplicate turn_id {tid}", "integrity")
            elif tid != i + 1:
                yield Violation(CONV, f"/conversation_turns/{i}/turn_id",
                                f"is {tid} but turn ids must run 1..n; expected {i + 1}",
                                "integrity")
            seen.add(tid)


def check_timestamps(p: Proposal) -> Iterator[Violation]:
    """Chronological consistency.

    Turns are in non-decreasing timestamp order; no turn precedes the session's
    ``created_timestamp`` or follows its ``completed_timestamp``; created is not
    after completed; ``session_duration_minutes`` agrees with completed - created
    to within one minute (the store computes it when a caller omits it or sends
    null: :func:`gitstore.core.documents.fill_duration`).
    """
    conv = p.documents.get(CONV) if CONV in p.valid else None
    meta = p.documents.get(META) if META in p.valid else None
    created = completed = None
    if meta is not None:
        info = meta["session_info"]
        created = _ts(info.get("created_timestamp"))
        completed = _ts(info.get("completed_timestamp"))
        if created and completed:
            if completed < created:
                yield Violation(META, "/session_info/completed_timestamp",
                                "is before created_timestamp", "timestamps")
            duration = info.get("session_duration_minutes")
            actual = (completed - created).total_seconds() / 60
            if isinstance(duration, int | float) and abs(duration - actual) > 1:
                yield Violation(META, "/session_info/session_duration_minutes",
                                f"is {duration} but completed - created is "
                                f"{actual:g} minutes", "timestamps")
    if conv is not None:
        previous = None
        turns = conv["conversation_turns"]
        first = _first_changed(p) if p.changed is not None and META not in p.changed else 0
        if first:  # the turns before it passed this check at their commit
            previous = next((t for t in (_ts(turns[j]["timestamp"])
                                         for j in range(first - 1, -1, -1)) if t), None)
        for i, turn in enumerate(turns[first:], first):
            ts = _ts(turn["timestamp"])
            if ts is None:
                continue
            pointer = f"/conversation_turns/{i}/timestamp"
            if previous is not None and ts < previous:
                yield Violation(CONV, pointer, f"is earlier than turn {i}'s timestamp",
                                "timestamps")
            if created is not None and ts < created:
                yield Violation(CONV, pointer, "is before the session's created_timestamp",
                                "timestamps")
            if completed is not None and ts > completed:
                yield Violation(CONV, pointer, "is after the session's completed_timestamp",
                                "timestamps")
            previous = ts


#: Fields a complete session has filled, per document, as JSON pointers. Each
#: counts toward the completeness percentage; at finalize every one must be
#: filled, except those in OPTIONAL_AT_FINALIZE. The README ("Documents, schemas
#: and the pre-commit pipeline") lists them; tests/test_defects_render.py keeps the
#: two in step.
EXPECTED_FIELDS: dict[str, tuple[str, ...]] = {
    CONV: ("/conversation_turns", "/conversation_summary/total_duration_minutes",
           "/conversation_summary/primary_cloud_provider",
           "/conversation_summary/services_discussed",
           "/conversation_summary/final_recommendation"),
    CTX: ("/cloud_assets_snapshot", "/deployment_recommendations", "/validation_results",
          "/error_resolutions"),
    META: ("/session_info/completed_timestamp", "/session_info/session_duration_minutes",
           "/workflow_tracking/completion_status", "/agent_performance", "/quality_metrics"),
    ANA: ("/complexity_analysis", "/prediction_accuracy", "/learning_insights",
          "/similarity_vectors"),
}
#: Expected fields a version may be finalized without: a session need not record
#: its errors (absent reads "not recorded" in the SOW; ``[]`` records that none
#: were met), so a finalized version has completeness 100, or 95 without them.
#: Kept optional so that histories finalized so far still pass on import replay.
OPTIONAL_AT_FINALIZE = frozenset({(CTX, "/error_resolutions")})
NON_EMPTY = frozenset({(CONV, "/conversation_turns"), (CTX, "/deployment_recommendations")})


def _filled(doc: Any, file: str, pointer: str) -> bool:
    parts = [part for part in pointer.split("/")[1:]]
    value = _get(doc, *parts)
    if value is None or value == "":
        return False
    return not ((file, pointer) in NON_EMPTY and not value)


def completeness(p: Proposal) -> tuple[int, list[Violation]]:
    """The completeness percentage (0..100, rounded down) and what is missing.

    Every session file counts one point for being present, and every expected
    field one point for being filled (not absent, null or empty).
    """
    points = 0
    total = 0
    missing: list[Violation] = []
    for name in DOCUMENTS:
        total += 1
        if name in p.files:
            points += 1
        else:
            missing.append(Violation(name, "", "missing: a finalized version has all five "
                                     "session files", "completeness"))
    for name, pointers in EXPECTED_FIELDS.items():
        doc = p.documents.get(name)
        for pointer in pointers:
            total += 1
            if doc is not None and _filled(doc, name, pointer):
                points += 1
            elif doc is not None and (name, pointer) not in OPTIONAL_AT_FINALIZE:
                what = "must not be empty" if (name, pointer) in NON_EMPTY else "is not filled"
                missing.append(Violation(name, pointer, f"{what} (required to finalize)",
                                         "completeness"))
    return points * 100 // total, missing


def check_completeness(p: Proposal) -> Iterator[Violation]:
    """Compute ``p.completeness``; when finalizing, every required field must be filled."""
    percent, missing = completeness(p)
    p.completeness = percent
    if not p.finalizing:
        return
    yield from missing
    meta = p.documents.get(META)
    status = _get(meta, "workflow_tracking", "completion_status")
    if status == "in_progress":
        yield Violation(META, "/workflow_tracking/completion_status",
                        "is 'in_progress' but the session is being finalized; set one of "
                        + ", ".join(FINAL_STATUSES), "completeness")
