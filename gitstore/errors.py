"""The exception hierarchy of gitstore.

Every error a user can cause is a :class:`GitStoreError`. Each subclass carries
``exit_code``, the process exit status the CLI uses for it; only
:mod:`gitstore.cli.app` turns exceptions into exit codes and messages. ``str(error)``
is always a single line suitable for a terminal; structured details (for example
the list of violations of an :class:`InvalidDocumentError`) live on attributes.

Exit codes (documented in the README and ``gitstore --help``):

==  ==========================  =====================================================
0   success
1   differences found           (``diff --exit-code``)
2   usage error                 bad arguments, bad customer name, bad version string
3   not found                   store, customer, scenario, version or document
4   invalid document            parse, schema, integrity or completeness violations
5   version-rule violation      out-of-order version, write to a finalized version
6   conflict                    a concurrent writer won and the change could not apply
7   integrity failure           corruption, checksum mismatch, failed ``verify``
8   input too large             a document over the configured size limit
9   storage error               store root unusable (not a directory, read-only, I/O)
10  render error                the SOW template could not render the session data
==  ==========================  =====================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class GitStoreError(Exception):
    """Root of every error gitstore raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # Keep the message on one line: the CLI prints str(error) verbatim.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UsageError(GitStoreError):
    """The request itself is malformed (bad name, bad version string, bad option)."""

    exit_code = 2


class InvalidNameError(UsageError):
    """A customer name (api_key) or document name failed the allowlist."""


class NotFoundError(GitStoreError):
    """A store, customer, scenario, version, revision or document does not exist."""

    exit_code = 3


@dataclass(frozen=True, order=True)
class Violation:
    """One failed check: which file, where in it (RFC 6901 JSON pointer), and why.

    ``hook`` names the pipeline stage that reported it (``json``, ``schema``,
    ``integrity``, ``timestamps``, ``completeness``, ``manifest`` or a user hook).
    """

    file: str
    pointer: str
    message: str
    hook: str = ""

    def __str__(self) -> str:
        where = f"{self.file}#{self.pointer}" if self.pointer else self.file
        return f"{where}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "pointer": self.pointer, "message": self.message,
                "hook": self.hook}


class InvalidDocumentError(GitStoreError):
    """The proposed change failed the pre-commit pipeline; nothing was written.

    ``violations`` lists every problem found, not just the first.
    """

    exit_code = 4

    def __init__(self, violations: Iterable[Violation], summary: str | None = None) -> None:
        self.violations: Sequence[Violation] = tuple(violations)
        n = len(self.violations)
        head = summary or "change rejected"
        if n == 1:
            text = f"{head}: {self.violations[0]}"
        else:
            shown = "; ".join(str(v) for v in self.violations[:3])
            more = f"; and {n - 3} more" if n > 3 else ""
            text = f"{head}: {n} violations: {shown}{more}"
        super().__init__(text)


class VersionRuleError(GitStoreError):
    """The requested version change breaks the semver session rules."""

    exit_code = 5


class ConflictError(GitStoreError):
    """A concurrent writer changed the scenario and the change could not be re-applied."""

    exit_code = 6


class IntegrityError(GitStoreError):
    """Stored data is damaged: corruption, checksum mismatch, failed health check."""

    exit_code = 7

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message)


class InputTooLargeError(GitStoreError):
    """An input document exceeds the store's configured size limit."""

    exit_code = 8


class StorageError(GitStoreError):
    """The store root or a repository cannot be used (not a directory, read-only, I/O)."""

    exit_code = 9


class RenderError(GitStoreError):
    """The SOW template failed to render (missing data, template not found, bad template)."""

    exit_code = 10


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "differences": 1,
    "usage": UsageError.exit_code,
    "not_found": NotFoundError.exit_code,
    "invalid_document": InvalidDocumentError.exit_code,
    "version_rule": VersionRuleError.exit_code,
    "conflict": ConflictError.exit_code,
    "integrity": IntegrityError.exit_code,
    "too_large": InputTooLargeError.exit_code,
    "storage": StorageError.exit_code,
    "render": RenderError.exit_code,
}
