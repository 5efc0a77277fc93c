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

    from gitstore.git import catfile
else:
    pygit2 = lazy.module("pygit2")
    catfile = lazy.module("gitstore.git.catfile")

__all__ = ["apply", "enable_fsync", "fsync_enabled", "read_with_git", "reading_with_git",
           "stop_reading_with_git"]

_asked = False
_told = False
_git_reads = False


def read_with_git() -> None:
    """Ask that repositories opened from now on read through the git binary
    first (:mod:`gitstore.git.catfile`): for a short process that only reads,
    which then need not load libgit2 at all (process-wide, idempotent)."""
    global _git_reads
    _git_reads = True


def reading_with_git() -> bool:
    return _git_reads


def stop_reading_with_git() -> None:
    """End :func:`read_with_git`: repositories open with libgit2 again, and the
    git processes the reads started are ended (a command's end, in a process
    that runs several: tests, a host application)."""
    global _git_reads
    if _git_reads:
        _git_reads = False
        catfile.close_all()


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
