"""Talking to a hub: fetch and push with the git binary, and sharing objects locally.

A hub is a directory of bare customer repositories behind a real git server
(``git daemon``, ``git http-backend``, ssh); gitstore's side of sync speaks to it
with the ``git`` binary, which knows every transport, runs the server's hooks and
finds credentials the usual ways (the environment, ssh-agent, credential
helpers). Invariants:

* every network step runs in its own session (no controlling terminal: nothing
  ever prompts) with ``GIT_TERMINAL_PROMPT=0`` and is killed, with every process
  it started, once it has run ``timeout`` seconds: a hub that is down, slow or
  unknown costs at most that long, and is a :class:`~gitstore.errors.RemoteError`;
* pushes are ``--atomic`` and never forced: the hub takes every ref or none; a
  push the hub's hook refuses is a :class:`~gitstore.errors.RejectedError`
  carrying the hub's own lines, one that lost a race to another machine
  (non-fast-forward, fetch first, a tag that now exists) is :class:`PushRace`,
  so the caller fetches and integrates again;
* fetched objects are checked (``fetch.fsckObjects``) and, with ``fsync``, flushed
  (``core.fsync=committed``) before the refs that name them are written; gitstore
  never writes a credential anywhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from gitstore.errors import NotFoundError, RejectedError, RemoteError, StorageError, UsageError
from gitstore.git.packs import loose_objects

#: What git says when the hub holds no repository at that URL (daemon, http, ssh, path).
_ABSENT = ("does not appear to be a git repository", "not found", "repository not exported",
           "no such repository", "no such file or directory")
#: Push rejections that mean "the hub moved since you fetched": fetch and integrate again.
_RACES = ("fetch first", "non-fast-forward", "stale info", "already exists")


class PushRace(Exception):
    """The hub moved between the fetch and the push (another machine pushed)."""


@dataclass(frozen=True)
class PushedRef:
    """One line of ``git push --porcelain``: ``flag`` (`` `` fast-forward, ``*`` new,
    ``=`` up to date, ``!`` rejected), the local and remote ref and git's summary."""

    flag: str
    local: str
    remote: str
    summary: str

    @property
    def rejected(self) -> bool:
        return self.flag == "!"


def _git() -> str:
    git = shutil.which("git")
    if git is None:
        raise UsageError("sync needs the git binary on PATH")
    return git


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="C", GIT_PAGER="cat")
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE"):
        env.pop(key, None)
    return env


def _options(timeout: float, fsync: bool) -> list[str]:
    low = max(1, int(timeout))
    opts = ["-c", "gc.auto=0", "-c", "maintenance.auto=false",
            "-c", "http.lowSpeedLimit=1", "-c", f"http.lowSpeedTime={low}",
            "-c", "fetch.fsckObjects=true", "-c", "transfer.fsckObjects=true",
            "-c", "credential.interactive=false", "-c", "protocol.ext.allow=never"]
    if fsync:
        opts += ["-c", "core.fsync=committed", "-c", "core.fsyncMethod=fsync"]
    return opts


def _run(args: Sequence[str], timeout: float, what: str) -> tuple[int, str, str]:
    """Run git in a session of its own; kill it and its children after ``timeout``."""
    try:
        proc = subprocess.Popen([_git(), *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                                start_new_session=True)
    except OSError as exc:
        raise StorageError(f"cannot run git for {what}: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RemoteError(f"{what}: the hub did not answer within {timeout:g}s "
                          "(sync_timeout); it counts as unreachable") from None
    return (proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _last_lines(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.startswith(("hint:", "To ", "From "))]
    return "; ".join(lines[-n:]) or "git gave no reason"


def _absent(stderr: str) -> bool:
    low = stderr.lower()
    return any(p in low for p in _ABSENT)


def fetch(git_dir: Path, url: str, refspecs: Sequence[str], *, timeout: float,
          fsync: bool = True) -> bool:
    """Fetch ``refspecs`` from ``url`` into the repository ``git_dir`` (no tags
    followed, nothing pruned). Returns False when the hub holds no repository
    there yet; RemoteError when it cannot be reached."""
    code, _, err = _run([f"--git-dir={git_dir}", *_options(timeout, fsync), "fetch",
                         "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc",
                         "--no-recurse-submodules", "--", url, *refspecs],
                        timeout, f"fetch from {url}")
    if code == 0:
        return True
    if _absent(err) and "could not resolve" not in err.lower():
        return False
    raise RemoteError(f"fetch from {url} failed: {_last_lines(err)}")


def push(git_dir: Path, url: str, refspecs: Sequence[str], *, timeout: float) -> list[PushedRef]:
    """Push ``refspecs`` (never forced) to ``url`` atomically; returns what git reports.

    RejectedError with the hub's message when it refuses; :class:`PushRace` when
    the hub moved since the last fetch; NotFoundError when the hub holds no
    repository there and cannot create one; RemoteError when it cannot be reached."""
    bad = [s for s in refspecs if s.startswith(("+", "-", ":"))]
    if bad:
        raise UsageError(f"refusing to push {bad[0]!r}: gitstore never forces or deletes")
    code, out, err = _run([f"--git-dir={git_dir}", *_options(timeout, False), "push",
                           "--atomic", "--porcelain", "--no-verify", "--", url, *refspecs],
                          timeout, f"push to {url}")
    refs = [PushedRef(parts[0], parts[1].split(":", 1)[0], parts[1].split(":", 1)[1],
                      parts[2].strip())
            for line in out.splitlines()
            if len(parts := line.split("\t")) == 3 and ":" in parts[1] and len(parts[0]) == 1]
    if code == 0 and not any(r.rejected for r in refs):
        return refs
    hub = tuple(line[len("remote: "):].strip() for line in err.splitlines()
                if line.startswith("remote: ") and line[len("remote: "):].strip())
    if not refs:
        if _absent(err):
            raise NotFoundError(f"the hub has no repository at {url} and did not create one "
                                "(a git daemon cannot: run `gitstore hub add HUB CUSTOMER` on "
                                "the hub)")
        raise RemoteError(f"push to {url} failed: {_last_lines(err)}")
    rejected = [r for r in refs if r.rejected]
    if any(any(p in r.summary for p in _RACES) for r in rejected):
        raise PushRace(", ".join(f"{r.remote} {r.summary}" for r in rejected))
    said = "; ".join(hub) or ", ".join(f"{r.remote} {r.summary}" for r in rejected)
    raise RejectedError(f"the hub refused the push to {url}: {said}", hub)


# -- local plumbing: objects shared with and copied from a staging repository ------------

def share_objects(git_dir: Path, source: Path) -> None:
    """Let ``git_dir`` read every object of the repository ``source`` (its
    ``objects/info/alternates``); objects it writes stay its own."""
    info = git_dir / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_text(str((source / "objects").resolve()) + "\n",
                                     encoding="utf-8")


def copy_objects(source: Path, dest: Path, *, fsync: bool = True) -> int:
    """Copy every loose object and every pack of ``source`` that ``dest`` lacks
    into ``dest`` (each written to a temporary file, flushed, and renamed into
    place: an object file is complete or absent; a pack before its index, so no
    index is ever seen without its pack). Returns how many files were copied."""
    touched: set[Path] = set()
    copied = 0
    pack_dir = dest / "objects" / "pack"
    for pack in sorted((source / "objects" / "pack").glob("pack-*.pack")):
        idx = pack.with_suffix(".idx")
        if idx.is_file() and not (pack_dir / idx.name).exists():
            for path in (pack, idx):
                _copy_file(path, pack_dir / path.name, fsync)
                copied += 1
            touched.add(pack_dir)
    have = loose_objects(dest)
    for oid, path in loose_objects(source).items():
        target = dest / "objects" / oid[:2] / oid[2:]
        if oid not in have and not target.exists():
            _copy_file(path, target, fsync)
            copied += 1
            touched.add(target.parent)
    if fsync:
        for folder in touched:
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return copied


def _copy_file(path: Path, target: Path, fsync: bool) -> None:
    """``path`` to ``target`` through a flushed temporary file and a rename."""
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as src:
            shutil.copyfileobj(src, out)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def http_backend(project_root: Path, environ: Mapping[str, str]) -> NoReturn:
    """Become ``git http-backend`` serving the repositories under ``project_root``
    (a CGI program: the request is in ``environ`` and on stdin)."""
    env = {**environ, "GIT_PROJECT_ROOT": str(project_root.resolve()),
           "GIT_HTTP_EXPORT_ALL": "1"}
    git = _git()
    os.execve(git, [git, "http-backend"], env)
