"""Ref updates: every one a compare-and-swap.

Functions here take a pygit2 repository handle; :class:`gitstore.git.repo.Repo`
is the way in from above the git layer. Invariants:

* a ref moves, appears or disappears only if it still has the value the caller
  read (``None``: it must not exist); otherwise :class:`RefConflict` is raised
  and nothing changes, so two writers never both win;
* with libgit2's strict object creation (its default) a ref never names an
  object the database does not hold;
* libgit2 writes the reflog entry with the update (branches and ``HEAD``: see
  ``core.logAllRefUpdates`` in :meth:`gitstore.git.repo.Repo.create`), and
  deletes a ref's reflog with the ref.
"""

from __future__ import annotations

import pygit2

from gitstore.errors import IntegrityError


class RefConflict(Exception):
    """A compare-and-swap ref update lost: the ref no longer has the expected value."""


def update_ref(repo: pygit2.Repository, name: str, new: str, old: str | None,
               reflog: str) -> None:
    """Point ``name`` at ``new`` if and only if it currently points at ``old``
    (``None``: the ref must not exist yet). Raises RefConflict otherwise."""
    target = pygit2.Oid(hex=new)
    if old is None:
        try:
            repo.create_reference_direct(name, target, False, message=reflog)
        except pygit2.AlreadyExistsError as exc:
            raise RefConflict(f"{name} was created by another writer") from exc
        return
    try:
        ref = repo.references[name]
    except KeyError as exc:
        raise RefConflict(f"{name} was deleted by another writer") from exc
    if str(ref.target) != old:
        raise RefConflict(f"{name} was moved by another writer")
    try:
        ref.set_target(target, reflog)
    except pygit2.GitError as exc:
        raise RefConflict(f"{name} was moved by another writer") from exc


def delete_ref(repo: pygit2.Repository, name: str, old: str) -> None:
    """Delete ``name`` if and only if it points at ``old`` (RefConflict
    otherwise). libgit2 deletes the ref's reflog with it."""
    ref = repo.references.get(name)
    if ref is None:
        raise RefConflict(f"{name} was deleted by another writer")
    if str(ref.resolve().target) != old:
        raise RefConflict(f"{name} was moved by another writer")
    ref.delete()


def create_ref(repo: pygit2.Repository, name: str, target: str, reflog: str) -> None:
    """Create ``name`` at ``target``: RefConflict if it exists, IntegrityError
    if the object does not (a ref from an import must name what came with it)."""
    try:
        repo.create_reference_direct(name, pygit2.Oid(hex=target), False, message=reflog)
    except pygit2.AlreadyExistsError as exc:
        raise RefConflict(f"{name} already exists") from exc
    except (pygit2.GitError, ValueError) as exc:
        raise IntegrityError(f"cannot create {name} at {target[:12]}: {exc}") from None


def ref_target(repo: pygit2.Repository, name: str) -> str | None:
    """The object id ``name`` resolves to (a tag ref: the tag object, not
    peeled), or None if there is no such ref."""
    ref = repo.references.get(name)
    return str(ref.resolve().target) if ref is not None else None


def head_ref(repo: pygit2.Repository) -> str | None:
    """The ref ``HEAD`` names (``refs/heads/v2``), or None if it is detached or absent."""
    try:
        head = repo.references["HEAD"]
    except KeyError:
        return None
    target = head.target
    return target if isinstance(target, str) else None
