"""Customer names (api_keys) and document names: a strict allowlist.

A customer name becomes a directory under the store root, so it must never be
able to escape it or alias another entry. Accepted names match
``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` and contain no ``..`` and do not end in
``.lock`` or ``.git``. Everything else (``/``, ``\\``, NUL, whitespace, leading
``-`` or ``.``, empty, over-long, any non-ASCII character including Unicode
look-alikes) is refused. Validation never normalises: a name is accepted
exactly as given or refused.
"""

from __future__ import annotations

import re

from gitstore.errors import InvalidNameError

MAX_NAME_LENGTH = 128
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

#: The session documents, in canonical order. ``sow_document.md`` is rendered by
#: the store at finalize; the four JSON documents are written by agents.
JSON_DOCUMENTS: tuple[str, ...] = (
    "conversation.json",
    "deployment_context.json",
    "session_metadata.json",
    "session_analytics.json",
)
CONV, CTX, META, ANA = JSON_DOCUMENTS
SOW_DOCUMENT = "sow_document.md"
MANIFEST = "SHA256SUMS"
CONV_PARTS = "conversation/"
"""Where layout 2 stores a conversation's parts (see :mod:`gitstore.core.layout`)."""
DOCUMENTS: tuple[str, ...] = (*JSON_DOCUMENTS, SOW_DOCUMENT)

MERGES = "refs/gitstore/merges/"
"""Pending merges: ``refs/gitstore/merges/<target scenario>``."""
MERGED = "refs/gitstore/merged/"
"""Scenarios merged away: ``refs/gitstore/merged/<scenario>`` names the merge commit."""

STORE_DIR = ".gitstore"
"""The store's own directory under its root (config, locks, catalog, keys)."""
KEYS_DIR = "keys"
"""The key store's directory under :data:`STORE_DIR` (one subdirectory per customer)."""
SEALED_TRAILER = "Sealed-Digest"
"""The trailer of an encrypted customer's commits (:data:`gitstore.core.sealed.TRAILER`)."""
SEALED_PREFIX = "ENC[AES256_GCM,"
"""How every sealed value begins (:data:`gitstore.core.sealed.PREFIX`)."""

COMPLETION_STATUSES = ("in_progress", "completed", "abandoned", "escalated", "expired",
                       "failed")
"""``workflow_tracking.completion_status`` (the schema's enum; a test keeps them equal)."""


def _describe(name: str) -> str:
    shown = repr(name) if len(name) <= 40 else repr(name[:40]) + "..."
    return shown


def check_customer(name: object) -> str:
    """Return ``name`` unchanged if it is an acceptable customer name, else raise."""
    if not isinstance(name, str):
        raise InvalidNameError(f"customer name must be a string, not {type(name).__name__}")
    if name == "":
        raise InvalidNameError("customer name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"customer name is {len(name)} characters long; at most {MAX_NAME_LENGTH} allowed"
        )
    reason = None
    if "\x00" in name:
        reason = "contains a NUL byte"
    elif "/" in name or "\\" in name:
        reason = "contains a path separator"
    elif ".." in name:
        reason = "contains '..'"
    elif name.startswith("-"):
        reason = "starts with '-'"
    elif name.startswith("."):
        reason = "starts with '.'"
    elif not name.isascii():
        reason = "contains non-ASCII characters"
    elif name.endswith((".lock", ".git")):
        reason = "ends with '.lock' or '.git'"
    elif not _NAME_RE.fullmatch(name):
        reason = "may only contain letters, digits, '.', '_' and '-'"
    if reason:
        raise InvalidNameError(f"invalid customer name {_describe(name)}: {reason}")
    return name


_ALIASES = {
    "conversation": "conversation.json",
    "deployment_context": "deployment_context.json",
    "context": "deployment_context.json",
    "session_metadata": "session_metadata.json",
    "metadata": "session_metadata.json",
    "session_analytics": "session_analytics.json",
    "analytics": "session_analytics.json",
    "sow": "sow_document.md",
    "sow_document": "sow_document.md",
}


def check_document(name: str, *, allow_sow: bool = True, allow_manifest: bool = False) -> str:
    """Resolve a document name (``conversation.json`` or a short alias like
    ``conversation``, ``metadata``, ``sow``) to its canonical file name."""
    resolved = _ALIASES.get(name, name)
    allowed = set(JSON_DOCUMENTS)
    if allow_sow:
        allowed.add(SOW_DOCUMENT)
    if allow_manifest:
        allowed.add(MANIFEST)
    if resolved not in allowed:
        choices = ", ".join(sorted(allowed))
        raise InvalidNameError(f"unknown document {_describe(name)}; expected one of {choices}")
    return resolved
