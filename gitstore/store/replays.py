"""A write whose idempotency key is already on a commit: the same write again (a
replay: the first result is returned, nothing is written) or the key reused for
another write (refused).

Invariant: a replay is reported only when the commit that holds the key made this
very write: the same change kind (its ``Change`` trailer), the same document for an
update, and, where the write carries content, the same content as the store stored
it then (the fields the store fills in filled as they were at that commit). A turn
sent again may be stamped anew: its ``timestamp`` and ``turn_id`` aside, it must be
the same. Anything else is a :class:`~gitstore.errors.UsageError`
naming the commit, and nothing is written.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gitstore.core import canonical
from gitstore.core.commits import ChangeKind, CommitInfo, Trailer
from gitstore.core.documents import fill, fill_derived
from gitstore.core.names import CONV, META
from gitstore.core.versions import Version
from gitstore.errors import UsageError
from gitstore.git.repo import Repo

__all__ = ["SUMMARY", "Intent", "Read", "reader", "require_same", "reused", "same_turn",
           "turn_key"]

SUMMARY = "/conversation_summary"
"""``Intent.part`` of a summary update: only that member of the conversation."""


def turn_key(turn: Mapping[str, Any]) -> str:
    """The default idempotency key of a turn: the SHA-256 of its canonical JSON
    without ``turn_id`` (the store may renumber it)."""
    body = {k: v for k, v in turn.items() if k != "turn_id"}
    return "turn-sha256:" + hashlib.sha256(canonical.dumps(body)).hexdigest()


class Intent(NamedTuple):
    """What a write under an idempotency key does: its change kind; for an update,
    the document it replaces (and ``part``, :data:`SUMMARY` for the summary alone);
    and ``content``, what it writes as the caller gave it, once screened (a turn, a
    document, a summary, or a correction's ``{name: document}``), None where the
    write carries none (finalize, follow-up, a new scenario)."""

    change: str
    document: str | None = None
    content: Any = None
    part: str | None = None
    same_as: tuple[str, str] | None = None
    """``(trailer, value)``: a commit that records it is this write, whatever it did
    (a sync rebuilding a local commit: a turn may come back as a put)."""


Read = Callable[[str], Any]
"""A document of the commit that holds the key, parsed (None if it has none)."""


def require_same(intent: Intent, key: str, info: CommitInfo, version: Version, read: Read,
                 customer: str, api_key: str | None = None) -> None:
    """Refuse (UsageError) ``key``, which commit ``info`` of ``version`` recorded, unless
    that commit made the write ``intent`` describes (``customer``, ``api_key``: the
    store-managed fields it filled in)."""
    if intent.same_as is not None and info.trailer(intent.same_as[0]) == intent.same_as[1]:
        return
    done = info.change or "write"
    documents = (info.trailer(Trailer.DOCUMENTS) or "").split(", ")
    what = f"{done} of {', '.join(documents)}" if done == ChangeKind.UPDATE else done
    if done == intent.change and (intent.document is None or intent.document in documents):
        if intent.content is None or _same_content(intent, info, version, read, customer,
                                                   api_key):
            return
        what += " with other content"
    raise reused(key, what, info.id, version)


def reused(key: str, what: str, commit: str, version: Version | str) -> UsageError:
    """The error for ``key`` sent for another write than ``what`` made (``commit``)."""
    return UsageError(f"idempotency key {key!r} was used for another write (the {what} "
                      f"that made commit {commit[:12]} of {version}); a key names one "
                      "write: use a new key")


def same_turn(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two turns are one turn sent twice (``timestamp`` and ``turn_id`` aside)."""
    return _equal(_unstamped(a), _unstamped(b))


def _same_content(intent: Intent, info: CommitInfo, version: Version, read: Read,
                  customer: str, api_key: str | None) -> bool:
    content = intent.content
    if intent.change == ChangeKind.TURN:
        n = info.trailer(Trailer.TURN)
        turns = (read(CONV) or {}).get("conversation_turns")
        if not (n and n.isdigit() and isinstance(turns, list) and 0 < int(n) <= len(turns)):
            return False
        stored = turns[int(n) - 1]
        return isinstance(stored, dict) and same_turn(stored, content)
    if intent.part == SUMMARY:
        stored = (read(CONV) or {}).get("conversation_summary")
        expected = copy.deepcopy(content)
        if isinstance(expected, dict) and isinstance(stored, dict) and \
                "total_turns" in stored:
            expected.setdefault("total_turns", stored["total_turns"])
        return _equal(expected, stored)
    docs = content if intent.change == ChangeKind.CORRECTION else \
        {str(intent.document): content}
    session_id = info.session_id or ""
    try:
        files = {name: canonical.dumps(fill(name, copy.deepcopy(doc), customer, session_id,
                                            version, api_key)) for name, doc in docs.items()}
    except (canonical.JSONParseError, ValueError, TypeError, RecursionError):
        return False
    if intent.change == ChangeKind.CORRECTION:  # as Session.correct: derived fields filled
        if META not in files and read(META) is not None:
            files[META] = canonical.dumps(read(META))
        fill_derived(files)
    return all(_equal(canonical.loads(files[name]), read(name)) for name in docs)


def _unstamped(turn: Mapping[str, Any]) -> dict[str, Any]:
    """A turn without what a retry may change: its ``turn_id`` and ``timestamp``."""
    return {k: v for k, v in turn.items() if k not in ("turn_id", "timestamp")}


def reader(repo: Repo, commit: str) -> Read:
    """:data:`Read` for ``commit`` (opened for an encrypted customer), each document
    read and parsed once."""
    @functools.cache
    def read(name: str) -> Any:
        data = repo.read_file(commit, name)
        return canonical.loads(data) if data is not None else None
    return read


def _equal(a: Any, b: Any) -> bool:
    """Equal as JSON exactly (``1`` and ``1.0``, ``true`` and ``1`` differ)."""
    try:
        return canonical.dumps(a) == canonical.dumps(b)
    except (canonical.JSONParseError, ValueError, TypeError, RecursionError):
        return False
