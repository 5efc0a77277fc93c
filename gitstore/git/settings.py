"""libgit2's process-wide settings: asked for early, handed to libgit2 late.

A store asks for fsync when it opens (:func:`enable_fsync`), but a command that only
asks the index never opens a repository, and importing pygit2 is most of a short
command's cost. So the wish is recorded here and handed to libgit2 by
:func:`apply`, which :class:`gitstore.git.repo.Repo` calls before it opens or
creates any repository handle. Invariant: once fsync was asked for, no handle
exists that libgit2 has not been told about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gitstore.core import lazy

if TYPE_CHECKING:
    import pygit2
else:
    pygit2 = lazy.module("pygit2")

__all__ = ["apply", "enable_fsync", "fsync_enabled"]

_asked = False
_told = False


def enable_fsync() -> None:
    """Ask libgit2 to fsync objects and refs, and to verify object hashes
    (process-wide, idempotent); told to libgit2 by :func:`apply`."""
    global _asked
    _asked = True


def fsync_enabled() -> bool:
    return _asked


def apply() -> None:
    """Hand libgit2 the settings asked for so far (call before opening a handle)."""
    global _told
    if _asked and not _told:
        pygit2.settings.enable_fsync_gitdir(True)
        pygit2.settings.enable_strict_hash_verification(True)
        _told = True
