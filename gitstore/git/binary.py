"""Running the ``git`` binary for the local jobs pygit2 cannot do.

gitstore's own store needs no git binary (libgit2 does the work); two jobs that
pygit2 cannot do use it when it is on PATH: indexing a pack read from a bundle
(an import) and cloning a bundle (a repair source). (Sync talks to hubs with git
in :mod:`~gitstore.git.remote`; the CLI's reads use ``git cat-file`` when git is
there, :mod:`~gitstore.git.catfile`.) Invariants:

* git runs with stdin closed (or fed the data it needs) and its output
  captured, never attached to the caller's terminal; a failure is raised with
  git's own message;
* every repository that git creates for gitstore uses the ``files`` ref format:
  libgit2 cannot open git's reftable repositories, so ``--ref-format=files`` is
  passed whenever the installed git knows the flag (git 2.45+; older git writes
  nothing else). Support is detected once per process from ``git clone -h``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO

from gitstore.errors import IntegrityError, UsageError


def available() -> bool:
    """True if a git binary is on PATH."""
    return shutil.which("git") is not None


def _git(needed_for: str) -> str:
    git = shutil.which("git")
    if git is None:
        raise UsageError(f"{needed_for} needs the git binary on PATH")
    return git


@functools.cache
def ref_format_args(git: str) -> tuple[str, ...]:
    """The options that make ``git`` (a path) create a ``files`` ref store:
    ``("--ref-format=files",)`` if it knows the flag, else none."""
    proc = subprocess.run([git, "clone", "-h"], capture_output=True, check=False,
                          stdin=subprocess.DEVNULL)
    return ("--ref-format=files",) if b"--ref-format" in proc.stdout + proc.stderr else ()


def clone_mirror(source: Path, dest: Path, *, what: str = "repository") -> None:
    """Clone ``source`` (a repository or a git bundle) into a new bare mirror
    at ``dest`` with the ``files`` ref format. UsageError if git is missing or
    cannot read the source (``cannot read <what> <source>: <git's message>``)."""
    git = _git(f"reading {what} {source}")
    proc = subprocess.run([git, "clone", "--quiet", "--mirror", *ref_format_args(git),
                           str(source), str(dest)],
                          capture_output=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise UsageError(f"cannot read {what} {source}: "
                         f"{proc.stderr.decode(errors='replace').strip()}")


def index_pack(git_dir: Path, pack: BinaryIO) -> Path:
    """Store the pack read from ``pack`` in ``git_dir`` with its index, checking
    every object (``git index-pack --stdin --strict``); returns the index path."""
    git = _git("importing a git bundle")
    proc = subprocess.run([git, f"--git-dir={git_dir}", "index-pack", "--stdin", "--strict"],
                          stdin=pack, capture_output=True, check=False)
    if proc.returncode != 0:
        raise IntegrityError("the bundle's pack is damaged or invalid: "
                             + proc.stderr.decode("utf-8", "replace").strip())
    digest = proc.stdout.decode("ascii", "replace").split()[-1]
    return git_dir / "objects" / "pack" / f"pack-{digest}.idx"
