"""What a write is asked to do and what it produced: the :class:`Plan` a
lifecycle step builds from a scenario's tip, and the :class:`Written` the writer
(:mod:`gitstore.store.writer`) returns.

Invariants: a plan is a pure function of the tip it was built on (a ``Build``);
its ``files`` are the complete new tree but the manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from gitstore.core.versions import Version

if TYPE_CHECKING:
    from gitstore.core.commits import Identity
    from gitstore.git.trees import Prepared
    from gitstore.store.tip import State

__all__ = ["Build", "Made", "Plan", "Written"]


class Written(NamedTuple):
    """What a write produced: the new commit, its version and change kind.

    ``tag`` is the annotated tag's object id when the write finalized a version;
    ``manifest`` is the ``sha256:`` digest of the commit's SHA256SUMS.
    ``replayed`` is true when an idempotency key matched an earlier write (then
    nothing new was written); ``warnings`` lists after-commit steps that failed
    (the write itself stands)."""

    commit: str
    version: Version
    change: str
    manifest: str
    completeness: int | None = None
    turn: int | None = None
    tag: str | None = None
    replayed: bool = False
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "version": str(self.version), "change": self.change,
                "turn": self.turn, "completeness": self.completeness,
                "manifest": self.manifest, "tag": self.tag, "replayed": self.replayed,
                "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Written:
        """The inverse of :meth:`to_json` (KeyError, TypeError or a GitStoreError
        for what it did not write)."""
        return cls(str(data["commit"]), Version.parse(str(data["version"])),
                   str(data["change"]), str(data["manifest"]), data["completeness"],
                   data["turn"], data["tag"], bool(data["replayed"]),
                   tuple(map(str, data["warnings"])))


@dataclass
class Plan:
    """A change to write: the complete new tree and what it means.

    ``files`` is the whole tree without the manifest (the pipeline adds it);
    ``changed`` names the files the change writes; ``parsed`` may hand over
    documents already parsed (their bytes in ``files`` are canonical);
    ``changed_turns`` limits the schema check of ``conversation.json`` to those
    turns; ``render_error`` carries a failed SOW render to the pipeline: when the
    documents pass every check, it is a :class:`RenderError` (exit 10, as from
    ``gitstore render``); when they do not, it is reported with the violations
    that explain it (:class:`InvalidDocumentError`, exit 4)."""

    files: Mapping[str, bytes]
    version: Version
    change: str
    summary: str
    changed: frozenset[str]
    finalizing: bool = False
    turn: int | None = None
    reason: str | None = None
    redacted: str | None = None
    parsed: dict[str, Any] = field(default_factory=dict)
    changed_turns: tuple[int, ...] | None = None
    render_error: str | None = None
    extra_trailers: tuple[tuple[str, str], ...] = ()
    merged: tuple[str, ...] = ()
    """Further parents of the commit (a merge): commits whose history it joins."""


Build = Callable[["State"], Plan]


class Made(NamedTuple):
    """A commit made from a checked plan but not written yet
    (:meth:`gitstore.store.writer.Writer.make`): its id and bytes, its prepared
    tree, the plan as committed (an encrypted one carries its ``Sealed-Digest``),
    the files as stored and their parsed documents, the manifest digest, the
    completeness the hooks saw, and who, when (seconds, offset minutes) and with
    which message."""

    commit: str
    data: bytes
    prepared: Prepared
    plan: Plan
    stored: Mapping[str, bytes]
    parsed: dict[str, Any]
    digest: str
    completeness: int | None
    author: Identity
    time: int
    offset: int
    message: str
