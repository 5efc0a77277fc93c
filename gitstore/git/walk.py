"""The one reachability walker of the git layer.

Everything that follows the object graph walks it with :func:`reachable`: full
packs and bundles (:mod:`gitstore.git.packs`), reflog pruning, copying missing
objects from a repair source and the object check of ``verify``
(:mod:`gitstore.git.integrity`). Invariants:

* each object is yielded at most once per ``seen`` set; pass one set to
  several calls to walk several starting points as one graph;
* the edges are git's: a tag leads to its target, a commit to its tree and its
  parents, a tree to every entry. With ``trees=False`` commits lead only to
  their parents and trees are yielded but not entered: a walk over history,
  not content (the pack builder adds a commit's tree itself);
* an object that cannot be read is never entered: ``fallback`` decides whether
  the walk goes on with a replacement object (copied from elsewhere) or skips
  it and whatever only it leads to; without ``fallback`` the walk stops with
  :class:`pygit2.GitError`, which the git layer reports as damage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from gitstore.core import lazy

if TYPE_CHECKING:
    from collections.abc import Callable

    import pygit2

    Reader = Callable[[pygit2.Oid], pygit2.Object]
    Fallback = Callable[[pygit2.Oid, Exception], pygit2.Object | None]
else:
    pygit2 = lazy.module("pygit2")


def unreadable() -> tuple[type[Exception], ...]:
    """What libgit2 raises for an object it cannot read: missing (KeyError),
    damaged (GitError: bad zlib, bad hash, damaged pack) or a bad id (ValueError).
    A function, so that importing this module does not import pygit2."""
    return (KeyError, pygit2.GitError, ValueError)


def reachable(repo: pygit2.Repository, starts: Iterable[pygit2.Oid], *, trees: bool = True,
              seen: set[pygit2.Oid] | None = None, read: Reader | None = None,
              fallback: Fallback | None = None) -> Iterator[pygit2.Object]:
    """Every object reachable from ``starts`` (depth first), each once.

    ``read`` loads an object (default: look it up in ``repo``) and raises one of
    :func:`unreadable` when it cannot; ``fallback(oid, error)`` then returns the
    object to go on with, or None to skip it."""
    seen = set() if seen is None else seen
    stack = list(starts)
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        try:
            obj = read(oid) if read is not None else repo[oid]
        except unreadable() as exc:
            if fallback is None:
                if isinstance(exc, pygit2.GitError):
                    raise
                raise pygit2.GitError(f"object {oid} cannot be read: {exc!r}") from exc
            replacement = fallback(oid, exc)
            if replacement is None:
                continue
            obj = replacement
        yield obj
        if isinstance(obj, pygit2.Tag):
            stack.append(obj.target)
        elif isinstance(obj, pygit2.Commit):
            if trees:
                stack.append(obj.tree_id)
            stack.extend(obj.parent_ids)
        elif trees and isinstance(obj, pygit2.Tree):
            stack.extend(entry.id for entry in obj)
