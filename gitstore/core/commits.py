"""Commit and tag messages: a one-line summary, an optional body, and trailers.

The trailer block is the last paragraph of the message, one ``Key: value`` per
line, exactly as ``git interpret-trailers --parse`` and ``git log
--format=%(trailers)`` read it. Keys are ``Title-Case-With-Dashes``; values are
single lines (newlines are folded to spaces on the way in). ``parse(format(m))``
gives back ``m``'s summary and trailers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_TRAILER_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*):[ \t]?(.*)")


@dataclass(frozen=True)
class Identity:
    """A git identity: who authored a change (the agent) or committed it (gitstore)."""

    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        """``"Name <email>"`` or a bare name (email derived from it)."""
        m = re.fullmatch(r"\s*([^<>]+?)\s*<([^<>\s]+)>\s*", text)
        if m:
            return cls(m[1], m[2])
        name = text.strip()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower() or "agent"
        return cls(name or "agent", f"{slug}@agents.gitstore.invalid")

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class Message:
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


@dataclass(frozen=True)
class CommitInfo:
    """A commit as the domain layer sees it (no pygit2 types)."""

    id: str
    tree_id: str
    parents: tuple[str, ...]
    author: Identity
    committer: Identity
    time: int
    offset: int
    message: str
    _parsed: Message | None = field(default=None, compare=False, repr=False)

    @property
    def parsed(self) -> Message:
        if self._parsed is None:
            object.__setattr__(self, "_parsed", Message.parse(self.message))
        assert self._parsed is not None
        return self._parsed

    def trailer(self, key: str) -> str | None:
        return self.parsed.get(key)


@dataclass(frozen=True)
class TagInfo:
    """An annotated tag: its name, the commit it points at, tagger and message."""

    name: str
    id: str
    target: str
    tagger: Identity | None
    time: int
    message: str
    annotated: bool = True
