"""Store configuration: ``<root>/.gitstore/config.json`` plus keyword overrides.

Precedence, highest first: arguments to :class:`~gitstore.Store`, environment
(``GITSTORE_AGENT``), the store's config file, built-in defaults. Unknown keys in
the file are refused, so a typo never silently does nothing. Identities (``agent``,
``committer``) from any source are checked as git records them (no line breaks,
``<``, ``>`` or control characters; see :meth:`~gitstore.core.commits.Identity.checked`)
before a store opens, so no write can produce a malformed commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from gitstore.core import lazy
from gitstore.core.commits import Identity
from gitstore.core.names import STORE_DIR
from gitstore.core.time import format_duration, parse_duration
from gitstore.errors import UsageError
from gitstore.git.locking import private_dirs

if TYPE_CHECKING:
    from gitstore.rules import policy as policy_mod
else:  # a policy is checked only when one is set (gitstore.core.lazy)
    policy_mod = lazy.module("gitstore.rules.policy")

CONFIG_DIR = STORE_DIR
CONFIG_FILE = "config.json"

DEFAULT_AGENT = Identity("reporter", "reporter@agents.gitstore.invalid")
DEFAULT_COMMITTER = Identity("gitstore", "gitstore@gitstore.invalid")
DEFAULT_MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


class Config(NamedTuple):
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
    the credentials/personal-data policy (see :class:`gitstore.rules.policy.Policy`;
    default: block credentials, redact card numbers, allow emails and phones).
    ``active_timeout``: a session with activity within it counts as active
    (default 2 hours, seed 003; ``GITSTORE_ACTIVE_TIMEOUT`` overrides it).
    ``require_audit``: refuse a read that cannot be recorded in the access log
    (a read-only store); by default such reads go ahead with a warning.
    ``remote`` is the URL template of the hub this store syncs with (``gitstore
    sync``): ``git://hub.example/{customer}``, ``https://hub.example/git/{customer}``,
    ``ssh://git@hub.example/srv/hub/{customer}``, ``git@hub.example:hub/{customer}``
    or a path; ``{shard}`` in it is replaced by the customer's shard number,
    ``0 .. remote_shards - 1`` (a stable hash of the repository name), so customers
    spread over several hubs. Credentials never go here (a password in the URL is
    refused): git takes them from the environment, ssh-agent or its credential
    helpers. ``sync_timeout``: seconds one network step of a sync (a fetch, a push)
    may take before the hub counts as unreachable; writes never wait on the network.
    ``encrypt``: customers created while it is on are encrypted at rest, one random
    data key per scenario (see :mod:`gitstore.store.keys`); ``master_key_file`` (32
    random bytes, or their base64) or ``master_key_command`` (a KMS adapter:
    ``CMD wrap|unwrap`` reading base64 on stdin, writing base64 on stdout) wraps
    those keys; ``GITSTORE_MASTER_KEY`` (base64), ``GITSTORE_MASTER_KEY_FILE`` and
    ``GITSTORE_MASTER_KEY_COMMAND`` override both.
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
    remote: str | None = None
    remote_shards: int = 1
    sync_timeout: float = 30.0
    encrypt: bool = False
    master_key_file: Path | None = None
    master_key_command: str | None = None

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
            "remote": self.remote,
            "remote_shards": self.remote_shards,
            "sync_timeout": self.sync_timeout,
            "encrypt": self.encrypt,
            "master_key_file": str(self.master_key_file) if self.master_key_file else None,
            "master_key_command": self.master_key_command,
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
        cfg = cfg._replace(agent=_identity(env_agent, "GITSTORE_AGENT"))
    cfg = _apply(cfg, {k: v for k, v in overrides.items() if v is not None}, "arguments")
    if cfg.signing_key is not None and cfg.allowed_signers is None:
        cfg = cfg._replace(allowed_signers=root / CONFIG_DIR / "allowed_signers")
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
    known = set(Config._fields)
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{origin}: unknown setting(s) {', '.join(unknown)}")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key in ("agent", "committer"):
            changes[key] = _identity(value, f"{origin}: {key}")
        elif key in ("templates", "signing_key", "allowed_signers", "master_key_file"):
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
            if not isinstance(value, int | float) or isinstance(value, bool) or \
                    not value >= 0:  # NaN too
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
            # refuses a bad policy now
            changes[key] = policy_mod.Policy.from_json(value).to_json()
        elif key == "remote":
            changes[key] = check_remote(value, f"{origin}: remote")
        elif key == "remote_shards":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
                raise UsageError(f"{origin}: remote_shards must be an integer from 1 to 4096")
            changes[key] = value
        elif key == "sync_timeout":
            if not isinstance(value, int | float) or isinstance(value, bool) \
                    or not 0 < value <= 86400:
                raise UsageError(f"{origin}: sync_timeout must be a number of seconds above 0")
            changes[key] = float(value)
        elif key == "master_key_command":
            if not isinstance(value, str) or not value.strip():
                raise UsageError(f"{origin}: master_key_command must be a command line")
            changes[key] = value
        elif key in ("fsync", "hash_names", "require_audit", "encrypt"):
            if not isinstance(value, bool):
                raise UsageError(f"{origin}: {key} must be true or false")
            changes[key] = value
    return cfg._replace(**changes)


_REMOTE_SCHEMES = ("git", "http", "https", "ssh", "file")
_SCP_LIKE = re.compile(r"(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!//|:).+")
_PLACEHOLDERS = re.compile(r"\{[^{}]*\}")


def check_remote(value: Any, what: str = "remote") -> str:
    """A hub URL template as :class:`Config` takes it (see ``remote`` there), or a
    UsageError: ``{customer}`` in it (and ``{shard}`` at most), a git, http(s),
    ssh or file URL, an scp-like ``host:path`` or an absolute path; no password,
    no whitespace or control characters, no leading ``-``."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} must be a URL template like git://hub.example/{{customer}}")
    if any(not ch.isprintable() or ch.isspace() for ch in value) or value.startswith("-"):
        raise UsageError(f"{what}: a URL has no whitespace or control characters and does "
                         "not start with '-'")
    names = _PLACEHOLDERS.findall(value)
    if "{customer}" not in names or set(names) - {"{customer}", "{shard}"} \
            or value.replace("{customer}", "").replace("{shard}", "").count("{") \
            + value.replace("{customer}", "").replace("{shard}", "").count("}"):
        raise UsageError(f"{what} must name each customer's repository with {{customer}} "
                         "(and may use {shard}); no other braces")
    sample = value.replace("{customer}", "customer").replace("{shard}", "0")
    if "://" in sample:
        parts = urlsplit(sample)
        if parts.scheme not in _REMOTE_SCHEMES:
            raise UsageError(f"{what}: the scheme must be one of "
                             f"{', '.join(_REMOTE_SCHEMES)}, not {parts.scheme!r}")
        if parts.password is not None:
            raise UsageError(f"{what}: credentials never go in the store's config; git "
                             "takes them from the environment, ssh-agent or a credential "
                             "helper (remove the password from the URL)")
        if parts.scheme != "file" and not parts.hostname:
            raise UsageError(f"{what}: the URL names no host")
        try:
            parts.port  # noqa: B018 (urllib checks the port range when asked for it)
        except ValueError:
            raise UsageError(f"{what}: the URL's port is not a number from 1 to 65535") \
                from None
        if "{customer}" not in urlsplit(value).path:
            raise UsageError(f"{what}: {{customer}} belongs in the URL's path (the "
                             "repository), e.g. git://hub.example/{customer}")
    elif not (sample.startswith("/") or _SCP_LIKE.fullmatch(sample)):
        raise UsageError(f"{what}: expected a git://, http(s)://, ssh:// or file:// URL, "
                         "host:path or an absolute path")
    return value


def remote_url(cfg: Config, customer: str) -> str | None:
    """The hub URL of ``customer`` (its repository name): the ``remote`` template
    with ``{customer}`` and ``{shard}`` filled in; None when the store has no remote."""
    if cfg.remote is None:
        return None
    shard = int.from_bytes(hashlib.sha256(customer.encode("utf-8")).digest()[:8], "big") \
        % cfg.remote_shards
    return cfg.remote.replace("{customer}", customer).replace("{shard}", str(shard))


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
