"""What the pre-commit hooks see: a :class:`Proposal` (the commit-to-be) and the
:data:`Hook` signature. Hooks read a proposal and must not modify its files;
stages fill in the derived fields as they run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitstore.core.versions import Version
from gitstore.errors import Violation

#: A pre-commit check: reads a proposal, returns (or yields) the violations it finds.
Hook = Callable[["Proposal"], Iterable[Violation]]


@dataclass
class Proposal:
    """A commit-to-be, as the hooks see it.

    ``files`` is the complete tree (session files by name). ``version`` is the
    version being built and ``session_id`` the scenario's session id, when
    known. ``changed`` names the files this change writes (None: all of them);
    ``changed_turns``, when set, says that of ``conversation.json`` only those
    turns (by index) and the top-level fields changed, so only they are
    schema-checked. ``parsed`` may hand over documents the writer already
    holds parsed (their bytes in ``files`` must be their canonical form).
    ``unlisted`` names documents the writer stores in parts, each part listed in
    the stored manifest (:mod:`gitstore.core.layout`): the manifest built here
    leaves them out rather than hash them whole for a line nobody stores.
    Hooks may read everything and must not modify ``files``; stages fill in
    ``documents`` (parsed JSON), ``valid`` (documents that passed their schema),
    ``completeness`` and ``manifest``.
    """

    customer: str
    files: Mapping[str, bytes]
    version: Version | None = None
    change: str = "update"
    session_id: str | None = None
    finalizing: bool = False
    changed: frozenset[str] | None = None
    changed_turns: tuple[int, ...] | None = None
    parsed: dict[str, Any] = field(default_factory=dict)
    verify_manifest: bool = False
    unlisted: frozenset[str] = frozenset()
    documents: dict[str, Any] = field(default_factory=dict)
    valid: set[str] = field(default_factory=set)
    completeness: int | None = None
    manifest: bytes | None = None
