"""A hub: the directory of bare customer repositories that stores sync with.

A hub is served by any real git server: ``git daemon``, ``git http-backend``
behind a web server, ssh, or a git host that runs server hooks. gitstore writes
no server; it makes the directory (``gitstore hub init DIR``) and each customer
repository in it (``gitstore hub add DIR CUSTOMER``), each with gitstore's
``pre-receive`` hook (:mod:`gitstore.ops.githooks`), so the hub enforces what a
store enforces (schemas, integrity, manifest, version rules, immutable tags,
secrets policy, the travelled access log) whatever client pushes. A hub is also
a store root (``.gitstore/``: its config's ``secrets`` and ``hooks`` apply to
pushes), so ``gitstore --root HUB verify`` and ``audit --verify`` work on it.

New customers: ``git daemon`` cannot create a repository on a push, so with it
every customer is added first (``hub add``). Behind a web server, the CGI program
``HUB/.gitstore/hub.cgi`` (installed by ``hub init``) runs ``git http-backend``
and, for a push to a customer the hub does not hold yet, creates its repository
first (unless the hub was made with ``--no-create-on-push``). Who may push is the
web server's business (authentication sets ``REMOTE_USER``).

Invariants: a customer repository appears in the hub only complete, hook and
configuration included (it is made in ``.gitstore/new/`` and renamed into
place), so no push ever lands in a repository without the hook; its name passes
:func:`gitstore.core.names.check_customer`; a hub repository refuses
non-fast-forward updates and deletions (``receive.denyNonFastForwards``,
``receive.denyDeletes``) and checks every object it receives
(``receive.fsckObjects``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import sysconfig
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitstore.core.names import STORE_DIR, check_customer
from gitstore.errors import GitStoreError, NotFoundError, StorageError, UsageError
from gitstore.git import remote
from gitstore.git import repo as backend
from gitstore.git.locking import private_dirs
from gitstore.ops import githooks
from gitstore.store.config import DEFAULT_COMMITTER

HUB_FILE = "hub.json"
CGI_NAME = "hub.cgi"
MARKER = "# gitstore-hub: installed by `gitstore hub init`; reinstall, do not edit"
SETTINGS = {"receive.fsckObjects": "true", "http.receivepack": "true",
            "daemon.receivepack": "true", "receive.denyNonFastForwards": "true",
            "receive.denyDeletes": "true", "core.logAllRefUpdates": "true"}


@dataclass(frozen=True)
class Hub:
    """A hub directory and its settings."""

    path: Path
    create_on_push: bool = True

    @property
    def cgi(self) -> Path:
        return self.path / STORE_DIR / CGI_NAME

    def customers(self) -> list[str]:
        return sorted(e.name for e in os.scandir(self.path)
                      if _valid(e.name) and backend.is_repository(Path(e.path)))


def _valid(name: str) -> bool:
    try:
        check_customer(name)
    except UsageError:
        return False
    return True


def init(path: Path, *, create_on_push: bool = True) -> Hub:
    """Make ``path`` a hub (idempotent): its ``.gitstore/`` with the settings and the
    CGI program; every repository already there gets the hook and settings."""
    if path.exists() and not path.is_dir():
        raise StorageError(f"{path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        private_dirs(path / STORE_DIR)
        data = {"format": "gitstore-hub", "format_version": 1,
                "create_on_push": create_on_push}
        fd = os.open(path / STORE_DIR / HUB_FILE,  # private, like every store file
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2) + "\n")
        hub = Hub(path, create_on_push)
        tmp = hub.cgi.with_name(f".{CGI_NAME}.tmp")
        tmp.write_text(_cgi_script(path), encoding="utf-8")
        tmp.chmod(0o700)
        os.replace(tmp, hub.cgi)
    except OSError as exc:
        raise StorageError(f"cannot make a hub at {path}: {exc.strerror}") from None
    for name in hub.customers():
        configure(path / name, name)
    return hub


def open_hub(path: Path) -> Hub:
    """The hub at ``path`` (NotFoundError unless ``hub init`` made it)."""
    try:
        data = json.loads((path / STORE_DIR / HUB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NotFoundError(f"{path} is not a hub; make it one with `gitstore hub init "
                            f"{path}`") from None
    return Hub(path, bool(data.get("create_on_push", True)) if isinstance(data, dict) else True)


def configure(repo_path: Path, name: str) -> None:
    """Give a hub repository gitstore's hook and the hub's git settings."""
    repo = backend.Repo.open(repo_path)
    for key, value in SETTINGS.items():
        repo.config_set(key, value)
    githooks.install(repo_path, customer=name, force=False)
    (repo_path / "git-daemon-export-ok").touch()


def add(hub: Hub, name: str) -> tuple[Path, bool]:
    """The repository of customer ``name`` in ``hub``, created (complete, with its
    hook) if it is not there yet; True when it was created now."""
    check_customer(name)
    target = hub.path / name
    if backend.is_repository(target):
        return target, False
    if target.exists() or target.is_symlink():
        raise StorageError(f"{target} exists but is not a repository")
    new = hub.path / STORE_DIR / "new" / uuid.uuid4().hex
    try:
        private_dirs(new, levels=2)  # .gitstore/new/<id>, private
        staged = new / name
        backend.Repo.create(staged, description=f"gitstore hub repository of {name}",
                            head="refs/heads/v1", committer=DEFAULT_COMMITTER)
        configure(staged, name)
        try:
            os.rename(staged, target)
        except OSError:
            if backend.is_repository(target):  # another push created it meanwhile
                return target, False
            raise
    except OSError as exc:
        raise StorageError(f"cannot create {target}: {exc.strerror}") from None
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return target, True


def _cgi_script(hub: Path) -> str:
    lines = ["#!/bin/sh", MARKER]
    source = str(Path(__file__).resolve().parents[2])
    installed = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib")}
    if source not in installed:
        lines.append(f'PYTHONPATH={shlex.quote(source)}"${{PYTHONPATH:+:$PYTHONPATH}}"; '
                     "export PYTHONPATH")
    lines.append(f"exec {shlex.quote(sys.executable)} -P -m gitstore.ops.hub cgi "
                 f"{shlex.quote(str(hub.resolve()))}")
    return "\n".join(lines) + "\n"


# -- the CGI program -------------------------------------------------------------------

def _respond(status: str, text: str) -> int:
    sys.stdout.write(f"Status: {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     f"\r\n{text}\n")
    sys.stdout.flush()
    return 0


def cgi(hub_path: Path, environ: Mapping[str, str]) -> int:
    """Serve one request as ``git http-backend`` does, creating the customer's
    repository first for a push to a customer the hub does not hold yet."""
    try:
        hub = open_hub(hub_path)
    except GitStoreError as exc:
        return _respond("500 Internal Server Error", str(exc))
    path_info = environ.get("PATH_INFO", "")
    parts = path_info.lstrip("/").split("/", 1)
    name = parts[0][:-4] if parts[0].endswith(".git") else parts[0]
    if not _valid(name):
        return _respond("404 Not Found", "no such customer repository")
    env = dict(environ)
    env["PATH_INFO"] = "/" + name + ("/" + parts[1] if len(parts) > 1 else "")
    pushing = env["PATH_INFO"].endswith("/git-receive-pack") or (
        env["PATH_INFO"].endswith("/info/refs")
        and "service=git-receive-pack" in environ.get("QUERY_STRING", ""))
    if not backend.is_repository(hub.path / name):
        if not (pushing and hub.create_on_push):
            return _respond("404 Not Found", f"the hub holds no customer {name}")
        try:
            add(hub, name)
        except GitStoreError as exc:
            return _respond("500 Internal Server Error", str(exc))
    remote.http_backend(hub.path, env)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "cgi":
        sys.exit(cgi(Path(sys.argv[2]), os.environ))
    print("usage: python -m gitstore.ops.hub cgi HUB", file=sys.stderr)
    sys.exit(2)
