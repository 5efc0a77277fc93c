"""Store configuration: ``<root>/.gitstore/config.json`` plus keyword overrides.

Precedence, highest first: arguments to :class:`~gitstore.Store`, environment
(``GITSTORE_AGENT``), the store's config file, built-in defaults. Unknown keys in
the file are refused, so a typo never silently does nothing. Identities (``agent``,
``committer``) from any source are checked as git records them (no line breaks,
``<``, ``>`` or control characters; see :meth:`~gitstore.core.commits.Identity.checked`)
before a store opens, so no write can produce a malformed commit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from gitstore.core.commits import Identity
from gitstore.core.names import STORE_DIR
from gitstore.core.time import format_duration, parse_duration
from gitstore.errors import UsageError
from gitstore.git.locking import private_dirs
from gitstore.rules.secrets import Policy

CONFIG_DIR = STORE_DIR
CONFIG_FILE = "config.json"

DEFAULT_AGENT = Identity("reporter", "reporter@agents.gitstore.invalid")
DEFAULT_COMMITTER = Identity("gitstore", "gitstore@gitstore.invalid")
DEFAULT_MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    """Settings of one store.

    ``agent`` authors commits and tags (who did it); ``committer`` is gitstore
    itself. ``templates`` is a directory whose templates override the packaged
    ones. ``max_document_bytes`` bounds every document, in and out.
    ``lock_timeout`` is how long a writer waits for another writer to the same
    customer. ``fsync`` makes every acknowledged write durable. ``signing_key``
    (an SSH private key) signs every commit and tag; ``allowed_signers`` is the
    file that verification trusts (default ``<root>/.gitstore/allowed_signers``).
    ``hooks`` are extra pre-commit checks as ``"module:function"`` import paths;
    the store and the installed git hooks both run them. ``hash_names`` names
    customer repositories by a keyed hash of the api_key (see ``Store.customer``).
    ``maintenance_bytes``: automatic maintenance runs once this much data has
    been written since the last run (0: never automatically). ``secrets`` is
    the credentials/personal-data policy (see :class:`gitstore.rules.secrets.Policy`;
    default: block credentials, redact card numbers, allow emails and phones).
    ``active_timeout``: a session with activity within it counts as active
    (default 2 hours, seed 003; ``GITSTORE_ACTIVE_TIMEOUT`` overrides it).
    ``require_audit``: refuse a read that cannot be recorded in the access log
    (a read-only store); by default such reads go ahead with a warning.
    """

    agent: Identity = DEFAULT_AGENT
    committer: Identity = DEFAULT_COMMITTER
    templates: Path | None = None
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    lock_timeout: float = 60.0
    fsync: bool = True
    signing_key: Path | None = None
    allowed_signers: Path | None = None
    hooks: tuple[str, ...] = ()
    hash_names: bool = False
    maintenance_bytes: int = 16 * 1024 * 1024
    secrets: dict[str, Any] | None = None
    active_timeout: str | None = None
    require_audit: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": str(self.agent),
            "committer": str(self.committer),
            "templates": str(self.templates) if self.templates else None,
            "max_document_bytes": self.max_document_bytes,
            "lock_timeout": self.lock_timeout,
            "fsync": self.fsync,
            "signing_key": str(self.signing_key) if self.signing_key else None,
            "allowed_signers": str(self.allowed_signers) if self.allowed_signers else None,
            "hooks": list(self.hooks),
            "hash_names": self.hash_names,
            "maintenance_bytes": self.maintenance_bytes,
            "secrets": self.secrets,
            "active_timeout": self.active_timeout,
            "require_audit": self.require_audit,
        }


def load(root: Path, **overrides: Any) -> Config:
    cfg = Config()
    path = root / CONFIG_DIR / CONFIG_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read store config {path}: {exc}") from None
        cfg = _apply(cfg, data, str(path))
    env_agent = os.environ.get("GITSTORE_AGENT")
    if env_agent:
        cfg = replace(cfg, agent=_identity(env_agent, "GITSTORE_AGENT"))
    cfg = _apply(cfg, {k: v for k, v in overrides.items() if v is not None}, "arguments")
    if cfg.signing_key is not None and cfg.allowed_signers is None:
        cfg = replace(cfg, allowed_signers=root / CONFIG_DIR / "allowed_signers")
    return cfg


def _identity(value: Any, origin: str) -> Identity:
    """An agent or committer identity as git can record it (a UsageError naming
    ``origin`` otherwise), so no store ever writes a malformed ident line."""
    try:
        return value.checked() if isinstance(value, Identity) else Identity.parse(value)
    except UsageError as exc:
        raise UsageError(f"{origin}: {exc}") from None


def _apply(cfg: Config, data: Any, origin: str) -> Config:
    if not isinstance(data, dict):
        raise UsageError(f"{origin}: configuration must be a JSON object")
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{origin}: unknown setting(s) {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key in ("agent", "committer"):
            changes[key] = _identity(value, f"{origin}: {key}")
        elif key in ("templates", "signing_key", "allowed_signers"):
            changes[key] = Path(value)
        elif key == "max_document_bytes":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{origin}: max_document_bytes must be a positive integer")
            changes[key] = value
        elif key == "maintenance_bytes":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{origin}: maintenance_bytes must be a non-negative integer "
                                 "(0 turns automatic maintenance off)")
            changes[key] = value
        elif key == "lock_timeout":
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise UsageError(f"{origin}: lock_timeout must be a non-negative number")
            changes[key] = float(value)
        elif key == "hooks":
            if not isinstance(value, list | tuple) or not all(
                    isinstance(h, str) and ":" in h for h in value):
                raise UsageError(f"{origin}: hooks must be a list of 'module:function' strings")
            changes[key] = tuple(value)
        elif key == "active_timeout":
            delta = parse_duration(value, what="active_timeout")  # refuses a bad one now
            changes[key] = value if isinstance(value, str) else format_duration(delta)
        elif key == "secrets":
            changes[key] = Policy.from_json(value).to_json()  # refuses a bad policy now
        elif key in ("fsync", "hash_names", "require_audit"):
            if not isinstance(value, bool):
                raise UsageError(f"{origin}: {key} must be true or false")
            changes[key] = value
    return replace(cfg, **changes)


def save(root: Path, cfg: Config) -> None:
    """Write the config file (mode 0600, in a 0700 directory, like every file
    gitstore creates under the root)."""
    path = root / CONFIG_DIR / CONFIG_FILE
    private_dirs(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def store_root_of(repo_dir: Path) -> Path | None:
    """The store root a customer repository sits in, if it sits in one."""
    parent = repo_dir.resolve().parent
    return parent if (parent / CONFIG_DIR).is_dir() else None
