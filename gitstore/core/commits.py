"""Commit metadata: identities, messages, trailers, change kinds and versions.

The one model of what a gitstore commit says about itself. The trailer block is
the last paragraph of the message, one ``Key: value`` per line, exactly as ``git
interpret-trailers --parse`` and ``git log --format=%(trailers)`` read it. Keys
are ``Title-Case-With-Dashes`` (:class:`Trailer`); values are single lines
(newlines are folded to spaces on the way in). ``parse(format(m))`` gives back
``m``'s summary and trailers.

Invariants: a commit's change kind is its ``Change`` trailer (:class:`ChangeKind`);
a commit *finalizes* its version exactly when its kind is in :data:`FINALIZING`;
the version of a commit is its ``Session-Version`` trailer or, for a commit made
with plain git, its metadata's ``session_version`` (:func:`version_of`). Trailers
of stored commits are read with libgit2's parser (the git layer fills
:attr:`CommitInfo.trailers`), which also understands folded continuation lines
and a trailing ``(cherry picked from ...)`` line that plain-git writers produce.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import NamedTuple

from gitstore.core import canonical
from gitstore.core.names import META
from gitstore.core.versions import Version
from gitstore.errors import UsageError


class Trailer:
    """The trailer keys gitstore writes (and reads back)."""

    SESSION_ID = "Session-Id"
    SESSION_VERSION = "Session-Version"
    CHANGE = "Change"
    TURN = "Turn"
    DOCUMENTS = "Documents"
    REASON = "Reason"
    REDACTED = "Redacted"
    AGENT = "Agent"
    COMPLETENESS = "Completeness"
    SCHEMA_VERSION = "Schema-Version"
    MANIFEST = "Manifest"
    COMMIT = "Commit"
    IDEMPOTENCY_KEY = "Idempotency-Key"
    IMPORTED_FROM = "Imported-From"
    RENAMED_FROM = "Renamed-From"
    MERGED_FROM = "Merged-From"
    RESOLVED = "Resolved"
    REVIEWED_BY = "Reviewed-By"


class ChangeKind(StrEnum):
    """What a commit did (its ``Change`` trailer)."""

    CREATE = "create"
    TURN = "turn"
    UPDATE = "update"
    FINALIZE = "finalize"
    FOLLOW_UP = "follow-up"
    CORRECTION = "correction"
    EXPIRE = "expire"
    RETENTION = "retention"
    MERGE = "merge"


FINALIZING: frozenset[str] = frozenset({ChangeKind.FINALIZE, ChangeKind.CORRECTION})
"""Change kinds that conclude a version and cut its tag."""

_TRAILER_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*):[ \t]?(.*)")


MAX_NAME = 256
"""The longest name an identity may have (characters)."""
MAX_EMAIL = 254
"""The longest email an identity may have (characters, as RFC 5321 allows)."""
_IDENTITY_FORM = "expected 'Name <email>' or a bare name"


def _identity_problem(text: object, what: str, limit: int) -> str | None:
    """Why ``text`` cannot be the ``what`` (name/email) of a git identity, or None.

    As git's own ``fsck`` sees an ident line: no ``<``, ``>``, line break or NUL
    (nor any other control character, or a Unicode line/paragraph separator), not
    empty, and bounded; an email also has no whitespace."""
    if not isinstance(text, str):
        return f"the {what} is not text"
    if not text.strip():
        return f"the {what} is empty"
    if len(text) > limit:
        return f"the {what} is longer than {limit} characters"
    if text != text.strip():
        return f"the {what} has surrounding whitespace"
    for ch in text:
        if ch in "<>":
            return f"the {what} contains {ch!r}"
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            return f"the {what} contains a control character or line break"
        if what == "email" and ch.isspace():
            return "the email contains whitespace"
    return None


def _shown(text: object) -> str:
    shown = repr(text) if isinstance(text, str) else f"(a {type(text).__name__})"
    return shown if len(shown) <= 60 else shown[:57] + "..."


class Identity(NamedTuple):
    """A git identity: who authored a change (the agent) or committed it (gitstore).

    Every identity that enters from outside (``GITSTORE_AGENT``, ``--agent``,
    ``Store(agent=...)``, a write's ``author``, the store config, an import) is
    :meth:`parse`-d or :meth:`checked`, so a commit or tag gitstore writes always
    has an ident line that ``git fsck --strict`` accepts; identities read back
    from git are taken as they are."""

    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        """``"Name <email>"`` or a bare name (email derived from it), checked as
        :meth:`checked`; anything else is a UsageError."""
        if not isinstance(text, str):
            raise UsageError(f"invalid identity {_shown(text)}: {_IDENTITY_FORM}")
        m = re.fullmatch(r"[ \t]*([^<>]+?)[ \t]*<([^<>]*)>[ \t]*", text)
        if m:
            return cls(m[1], m[2]).checked(text)
        name = text.strip(" \t")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower()[:64] or "agent"
        return cls(name, f"{slug}@agents.gitstore.invalid").checked(text)

    def checked(self, given: object = None) -> Identity:
        """This identity if git can record it (see :func:`_identity_problem`);
        else a one-line UsageError showing ``given`` (default: the identity)."""
        problem = _identity_problem(self.name, "name", MAX_NAME) or \
            _identity_problem(self.email, "email", MAX_EMAIL)
        if problem:
            shown = _shown(given if given is not None else
                           f"{self.name} <{self.email}>" if isinstance(self.name, str)
                           and isinstance(self.email, str) else self.name)
            raise UsageError(f"invalid identity {shown}: {problem}; {_IDENTITY_FORM} "
                             "without <, >, line breaks or control characters")
        return self

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class Message(NamedTuple):
    summary: str
    trailers: tuple[tuple[str, str], ...] = ()
    body: str = ""

    def format(self) -> str:
        parts = [_one_line(self.summary)]
        if self.body.strip():
            parts.append(self.body.strip())
        if self.trailers:
            parts.append("\n".join(f"{k}: {_one_line(v)}" for k, v in self.trailers))
        return "\n\n".join(parts) + "\n"

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.trailers:
            if k.lower() == key.lower():
                return v
        return default

    @classmethod
    def parse(cls, text: str) -> Message:
        paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
        if not paragraphs:
            return cls("")
        summary = paragraphs[0].splitlines()[0] if paragraphs[0] else ""
        trailers: tuple[tuple[str, str], ...] = ()
        rest = paragraphs[1:]
        if rest:
            lines = rest[-1].splitlines()
            matched = [_TRAILER_RE.fullmatch(line) for line in lines]
            if lines and all(matched):
                trailers = tuple((m[1], m[2].strip()) for m in matched if m)
                rest = rest[:-1]
        return cls(summary, trailers, "\n\n".join(rest))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def trailers(pairs: Iterable[tuple[str, object | None]]) -> tuple[tuple[str, str], ...]:
    """Build a trailer tuple, dropping pairs whose value is None."""
    return tuple((k, _one_line(str(v))) for k, v in pairs if v is not None)


class CommitInfo(NamedTuple):
    """A commit as the domain layer sees it (no pygit2 types)."""

    id: str
    tree_id: str
    parents: tuple[str, ...]
    author: Identity
    committer: Identity
    time: int
    offset: int
    message: str
    trailers: tuple[tuple[str, str], ...] | None = None
    author_time: int | None = None
    author_offset: int | None = None

    @property
    def parsed(self) -> Message:
        """The message split into summary, body and trailers (trailers as the
        git layer read them with libgit2, when it did)."""
        return _parsed_message(self.message, self.trailers)

    def trailer(self, key: str) -> str | None:
        return self.parsed.get(key)

    @property
    def change(self) -> str | None:
        return self.trailer(Trailer.CHANGE)

    @property
    def session_id(self) -> str | None:
        return self.trailer(Trailer.SESSION_ID)

    @property
    def finalizes(self) -> bool:
        """Whether this commit concluded its version (finalize or correction)."""
        return self.change in FINALIZING


class TagInfo(NamedTuple):
    """An annotated tag: its name, the commit it points at, tagger and message."""

    name: str
    id: str
    target: str
    tagger: Identity | None
    time: int
    message: str
    annotated: bool = True


@functools.lru_cache(maxsize=4096)
def _parsed_message(message: str, trailers: tuple[tuple[str, str], ...] | None) -> Message:
    """:attr:`CommitInfo.parsed`, remembered by message (a log asks each commit for
    several trailers; equal messages parse equal)."""
    m = Message.parse(message)
    return m if trailers is None else Message(m.summary, trailers, m.body)


def read_trailers(pairs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Trailers as libgit2 parsed them, with folded continuation lines joined."""
    return tuple((k, _one_line(v)) for k, v in pairs.items())


def version_of(info: CommitInfo, files: Mapping[str, bytes] | None = None) -> Version | None:
    """The session version of a commit: its ``Session-Version`` trailer or, for a
    commit made with plain git (no trailer), ``session_info.session_version`` of
    its metadata when ``files`` are given."""
    text = info.trailer(Trailer.SESSION_VERSION)
    if text and Version.is_version(text):
        return Version.parse(text)
    if files is not None:
        return metadata_version(files)
    return None


def metadata_version(files: Mapping[str, bytes]) -> Version | None:
    """``session_info.session_version`` of the metadata in ``files``, if readable."""
    try:
        text = canonical.loads(files[META])["session_info"]["session_version"]
        return Version.parse(text) if isinstance(text, str) else None
    except (KeyError, TypeError, canonical.JSONParseError, UsageError):
        return None
