"""Whole-repository jobs of a handle: packs, bundles, damage and repair.

:class:`WholeRepository` is the part of :class:`gitstore.git.repo.Repo` that works
on a repository as a whole rather than on one object or ref: it hands each job
to :mod:`~gitstore.git.packs` or :mod:`~gitstore.git.integrity` (loaded when
first used: a read needs neither). Invariants: every job works on the handle's
libgit2 repository (opened when first needed); libgit2's errors on damaged data
surface as :class:`IntegrityError` naming the repository and ``gitstore verify``
(:func:`damage_is_integrity_error`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, TypeVar

from gitstore.core import lazy
from gitstore.errors import ConflictError, IntegrityError

if TYPE_CHECKING:
    import pygit2

    from gitstore.git import binary, integrity, packs
else:  # not needed to read (gitstore.core.lazy)
    pygit2 = lazy.module("pygit2")
    integrity = lazy.module("gitstore.git.integrity")
    binary = lazy.module("gitstore.git.binary")
    packs = lazy.module("gitstore.git.packs")

__all__ = ["WholeRepository", "damage_is_integrity_error"]

_F = TypeVar("_F", bound=Callable[..., Any])


def damage_is_integrity_error(method: _F) -> _F:
    """Turn libgit2's errors on damaged data (unreadable objects, broken refs,
    corrupt packs) into :class:`IntegrityError` naming the repository."""

    @functools.wraps(method)
    def wrapper(self: WholeRepository, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except pygit2.GitError as exc:
            raise self._damaged(str(exc)) from None

    return wrapper  # type: ignore[return-value]


class WholeRepository:
    """Packs, bundles, damage and repair of one repository handle."""

    path: Path

    def _damaged(self, what: str) -> IntegrityError:
        return IntegrityError(f"repository {self.path.name} is damaged: {what}; run "
                              f"`gitstore verify {self.path.name}`")

    if TYPE_CHECKING:
        @property
        def _repo(self) -> pygit2.Repository: ...

        def head_ref(self) -> str | None: ...

    # -- packs and bundles (gitstore.git.packs) ---------------------------------
    def write_pack(self, oids: list[str] | None) -> tuple[Path | None, int]:
        """Write one pack (with deltas) of ``oids``, or of everything reachable
        from any ref when None; returns its index path and object count. Both files
        are on disk (fsynced with fsync on) before this returns; nothing is removed."""
        return packs.write_pack(self._repo, self.path, oids)

    def compress_refs(self) -> None:
        """Move loose refs into ``packed-refs`` (what ``git pack-refs --all`` does).

        ConflictError while another process holds ``packed-refs.lock`` (clear a
        stale one first: :meth:`clear_stale_locks`); IntegrityError on damage."""
        try:
            self._repo.compress_references()
        except (OSError, pygit2.GitError) as exc:
            if (self.path / "packed-refs.lock").exists():
                raise ConflictError(f"cannot pack the refs of {self.path.name}: another "
                                    "process holds packed-refs.lock") from None
            raise self._damaged(f"cannot pack refs: {exc}") from None

    @damage_is_integrity_error
    def write_bundle(self, out: IO[bytes]) -> dict[str, str]:
        """Write a git bundle (format v2) of every ref under ``refs/`` with its whole
        history, and ``HEAD``, to ``out``; no git binary needed. Returns the refs."""
        return packs.write_bundle(self._repo, self.path, self.head_ref(), out)

    def index_pack(self, pack: BinaryIO) -> int:
        """Store the pack read from ``pack`` (at ``PACK``: a bundle's pack section) with
        its index, checking every object (git on PATH: pygit2 has no pack indexer).
        Returns the pack's object count."""
        return len(packs.pack_ids(binary.index_pack(self.path, pack)))

    # -- damage and repair (gitstore.git.integrity) -----------------------------
    def check_objects(self) -> list[str]:
        """Read every object reachable from every ref; return a line per problem."""
        return integrity.check_objects(self._repo)

    def damaged_objects(self) -> list[tuple[str, Path]]:
        """Objects in the database that fail to read, each with the file holding it."""
        return integrity.damaged_objects(self._repo, self.path)

    def broken_refs(self) -> list[str]:
        """Refs that cannot be read or point at objects that do not exist."""
        return integrity.broken_refs(self._repo, self.path)

    def copy_reachable_from(self, source: WholeRepository, also: Iterable[str] = ()) -> int:
        """Copy in every object reachable from the refs (and ``also``) that this
        database lacks and ``source`` has."""
        return integrity.copy_reachable(self._repo, source._repo, also)

    def packed_refs_problems(self) -> list[str]:
        """Damaged lines of ``packed-refs`` (libgit2 then reads none of its refs)."""
        return integrity.packed_refs_problems(self.path)

    def salvage_packed_refs(self, aside: Path) -> int | None:
        """Set a damaged ``packed-refs`` aside, keeping its valid lines: refs kept, or None."""
        return integrity.salvage_packed_refs(self.path, aside)

    def head_problem(self) -> str | None:
        """What is wrong with ``HEAD`` (unreadable, detached, a link), if anything."""
        return integrity.head_problem(self._repo, self.path)

    def restore_head(self, ref: str, aside: Path) -> None:
        """Point a damaged ``HEAD`` at ``ref`` (the old file goes to ``aside``)."""
        integrity.restore_head(self.path, ref, aside)

    def symlinks(self) -> list[str]:
        """Symbolic links inside the repository directory, relative to it."""
        return integrity.symlinks(self.path)

    def restore_ref(self, name: str, source: WholeRepository, aside: Path) -> bool:
        """Set a broken ref to the source's value of it (the broken file goes to ``aside``)."""
        return integrity.restore_ref(self._repo, self.path, name, source._repo, aside)

    def stray_locks(self) -> list[str]:
        """Lock files left in the git directory, relative to it."""
        return integrity.stray_locks(self.path)

    def clear_stale_locks(self, grace: float = 2.0, aside: Path | None = None) -> list[str]:
        """Remove lock files a dead process left behind (call under the writer lock)."""
        return integrity.clear_stale_locks(self.path, grace, aside)

    @damage_is_integrity_error
    def drop_unreachable_reflog_entries(self) -> int:
        """Drop reflog entries naming what no ref reaches (before a prune)."""
        return integrity.drop_unreachable_reflog_entries(self._repo, self.path)
