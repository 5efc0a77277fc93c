"""Access tokens of the web viewer, kept hashed in ``<root>/.gitstore/web-tokens.json``.

A token is ``gsw_`` and 43 URL-safe characters (256 random bits from
:mod:`secrets`). It is shown once, when it is made, and never stored: the file
keeps its SHA-256 digest (a token has far too much entropy for guessing, so a
slow hash adds nothing), its label and, for a scoped token, the customers it may
see. A label names the viewer in every access-log record its page views append.

Invariants: the file is created with mode 0600 in a 0700 directory and replaced
atomically (written to a temporary file, flushed, renamed); a token is looked up
by comparing digests with :func:`hmac.compare_digest`; labels are unique and
made of ``[A-Za-z0-9._@-]`` (1-64 characters) so that a label is a valid git
identity name and safe in a log line; a file that cannot be read is a
:class:`~gitstore.errors.UsageError`, never a silently empty token list (which
would mint a fresh administrator token).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitstore.core.names import STORE_DIR
from gitstore.core.time import format_rfc3339
from gitstore.errors import UsageError
from gitstore.git.locking import private_dirs

TOKENS_FILE = "web-tokens.json"
FORMAT = "gitstore-web-tokens"
PREFIX = "gsw_"
LABEL = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_TOKEN = re.compile(PREFIX + r"[A-Za-z0-9_-]{43}")


def digest(token: str) -> str:
    """The SHA-256 hex digest a token is stored as."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Token:
    """A stored token: its label, digest, scope (None: every customer) and birth."""

    label: str
    sha256: str
    customers: tuple[str, ...] | None
    created: str

    def allows(self, customer: str) -> bool:
        return self.customers is None or customer in self.customers

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "sha256": self.sha256, "created": self.created,
                "customers": list(self.customers) if self.customers is not None else None}


def _token(item: Any, path: Path) -> Token:
    if not isinstance(item, dict):
        raise UsageError(f"{path}: every token must be an object")
    label, sha, created = item.get("label"), item.get("sha256"), item.get("created", "")
    customers = item.get("customers")
    if not isinstance(label, str) or not LABEL.fullmatch(label) \
            or not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha) \
            or not isinstance(created, str):
        raise UsageError(f"{path}: a token has an invalid label, sha256 or created field")
    if customers is not None and not (isinstance(customers, list)
                                      and all(isinstance(c, str) for c in customers)):
        raise UsageError(f"{path}: token {label!r}: customers must be a list of names or null")
    return Token(label, sha, tuple(customers) if customers is not None else None, created)


class TokenFile:
    """The token file of the store at ``root``."""

    def __init__(self, root: Path) -> None:
        self.path = root / STORE_DIR / TOKENS_FILE

    def load(self) -> list[Token]:
        """Every stored token (none when the file does not exist yet)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT \
                or not isinstance(data.get("tokens"), list):
            raise UsageError(f"{self.path} is not a gitstore web token file")
        return [_token(item, self.path) for item in data["tokens"]]

    def save(self, tokens: Sequence[Token]) -> None:
        private_dirs(self.path.parent)
        body = json.dumps({"format": FORMAT, "tokens": [t.to_json() for t in tokens]},
                          indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".web-tokens-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self, label: str | None = None, customers: Sequence[str] | None = None,
               now: datetime | None = None) -> tuple[str, Token]:
        """Make, store and return a new token (the only time it is seen) with its
        record. ``label`` defaults to ``viewer-N``; ``customers`` scopes it."""
        tokens = self.load()
        taken = {t.label for t in tokens}
        if label is None:
            n = len(tokens) + 1
            while f"viewer-{n}" in taken:
                n += 1
            label = f"viewer-{n}"
        if not LABEL.fullmatch(label):
            raise UsageError(f"invalid token label {label!r}: 1-64 of A-Z a-z 0-9 . _ @ -")
        if label in taken:
            raise UsageError(f"a token labelled {label!r} exists already; revoke it first or "
                             "choose another label")
        token = PREFIX + secrets.token_urlsafe(32)
        when = format_rfc3339((now or datetime.now(UTC)).astimezone(UTC))
        record = Token(label, digest(token), tuple(customers) if customers is not None
                       else None, when)
        self.save([*tokens, record])
        return token, record

    def revoke(self, label: str) -> bool:
        """Remove the token labelled ``label``; False if there is none."""
        tokens = self.load()
        kept = [t for t in tokens if t.label != label]
        if len(kept) == len(tokens):
            return False
        self.save(kept)
        return True


def find(tokens: Sequence[Token], presented: str | None) -> Token | None:
    """The stored token ``presented`` is, or None (also for anything not shaped
    like a token). Every stored digest is compared, in constant time each."""
    if not presented or not _TOKEN.fullmatch(presented):
        return None
    wanted = digest(presented)
    found = None
    for t in tokens:
        if hmac.compare_digest(t.sha256, wanted):
            found = t
    return found
