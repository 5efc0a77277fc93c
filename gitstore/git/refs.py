"""Ref updates: every one a compare-and-swap.

Functions here take a pygit2 repository handle; :class:`gitstore.git.repo.Repo`
is the way in from above the git layer. Invariants:

* a ref moves, appears or disappears only if it still has the value the caller
  read (``None``: it must not exist); otherwise :class:`RefConflict` is raised
  and nothing changes, so two writers never both win;
* with libgit2's strict object creation (its default) a ref never names an
  object the database does not hold;
* where the repository keeps reflogs (``core.logAllRefUpdates``; repositories
  :meth:`gitstore.git.repo.Repo.create` makes do not), libgit2 writes the entry
  with the update and deletes a ref's reflog with the ref;
* an update that fails while the ref still has the value the caller read was
  not lost to another writer: it is damage (an unreadable ``HEAD``, a garbage
  ``packed-refs``) and raises :class:`IntegrityError` at once, so a writer never
  retries it as a race;
* :func:`unlisted_loose_refs` names the ref files on disk that libgit2 does not
  list (it skips a loose ref it cannot parse), so no damaged ref goes unseen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gitstore.core import lazy
from gitstore.errors import IntegrityError

if TYPE_CHECKING:
    import pygit2
else:
    pygit2 = lazy.module("pygit2")


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
        except pygit2.GitError as exc:
            _not_a_race(repo, name, old, exc)
            raise RefConflict(f"{name} was created by another writer") from exc
        return
    try:
        ref = repo.references[name]
    except KeyError as exc:
        raise RefConflict(f"{name} was deleted by another writer") from exc
    except pygit2.GitError as exc:
        raise _damaged(repo, f"cannot read {name}: {exc}") from None
    if str(ref.target) != old:
        raise RefConflict(f"{name} was moved by another writer")
    try:
        ref.set_target(target, reflog)
    except pygit2.GitError as exc:
        _not_a_race(repo, name, old, exc)
        raise RefConflict(f"{name} was moved by another writer") from exc


def _damaged(repo: pygit2.Repository, what: str) -> IntegrityError:
    name = Path(repo.path).name
    return IntegrityError(f"repository {name} is damaged: {what}; run `gitstore verify {name}`")


def _not_a_race(repo: pygit2.Repository, name: str, old: str | None, exc: Exception) -> None:
    """Raise IntegrityError if ``name`` still has the value ``old`` (None: absent)
    after an update of it failed: then no other writer moved it, and trying again
    cannot help (an unreadable ``HEAD``, a damaged ``packed-refs``, a lock file
    left by a dead process: writers clear those first). A ref that did move, or
    that another process holds locked right now, was a race: return."""
    git_dir = Path(repo.path)
    if any((git_dir / lock).exists() for lock in (f"{name}.lock", "packed-refs.lock")):
        return
    try:
        ref = repo.references.get(name)
        now = str(ref.resolve().target) if ref is not None else None
    except pygit2.GitError as err:
        raise _damaged(repo, f"cannot update {name}: {err}") from None
    if now == old:
        raise _damaged(repo, f"cannot update {name}: {exc}") from None


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
    peeled), or None if there is no such ref. A name that is not UTF-8 (a HEAD
    naming one) is damage, not a crash."""
    try:
        ref = repo.references.get(name)
    except UnicodeError:
        raise _damaged(repo, f"ref {name!r} is not UTF-8") from None
    return str(ref.resolve().target) if ref is not None else None


def head_ref(repo: pygit2.Repository) -> str | None:
    """The ref ``HEAD`` names (``refs/heads/v2``), or None if it is detached or absent."""
    try:
        head = repo.references["HEAD"]
        target = head.target
    except KeyError:
        return None
    except UnicodeDecodeError:
        raise _damaged(repo, "HEAD names a ref that is not UTF-8") from None
    return target if isinstance(target, str) else None


def loose_ref_files(git_dir: Path, prefix: str = "refs/") -> list[str]:
    """Names of the loose ref files under ``prefix`` (lock files excluded), as
    ``refs/heads/v1``; whether they parse or not."""
    top = prefix if prefix.endswith("/") else prefix.rsplit("/", 1)[0] + "/"
    found = []
    for dirpath, _dirs, names in os.walk(git_dir / top):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), git_dir).replace(os.sep, "/")
            if not n.endswith(".lock") and rel.startswith(prefix):
                found.append(rel)
    return sorted(found)


def unlisted_loose_refs(repo: pygit2.Repository, git_dir: Path, prefix: str,
                        listed: set[str]) -> list[str]:
    """Loose ref files under ``prefix`` that are not in ``listed`` (the names
    libgit2 listed) and cannot be read: libgit2 silently skips a loose ref whose
    content it cannot parse."""
    out = []
    for name in loose_ref_files(git_dir, prefix):
        if name in listed:
            continue
        try:
            repo.references[name].resolve()
        except (KeyError, ValueError, pygit2.GitError):
            out.append(name)
    return out
