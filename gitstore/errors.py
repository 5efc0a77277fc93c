"""The exception hierarchy of gitstore and its one exit-code table.

Every error a user can cause is a :class:`GitStoreError`. Each subclass carries
``exit_code``, the process exit status the CLI uses for it, and ``code_name``, a
stable short name for programs (both from its :class:`ExitStatus`); only
:mod:`gitstore.cli.app` turns exceptions into exit codes and messages.
``str(error)`` is always a single line suitable for a terminal; structured details
(for example the violations of an :class:`InvalidDocumentError`) live on attributes.

The exception tree (exit code, code name)::

    GitStoreError                       1  error   (the root: gitstore raises only subclasses)
    ├── UsageError                      2  usage
    │   └── InvalidNameError            2  usage   (a usage error, on purpose)
    ├── NotFoundError                   3  not_found
    ├── InvalidDocumentError            4  invalid_document
    ├── VersionRuleError                5  version_rule
    ├── ConflictError                   6  conflict
    ├── IntegrityError                  7  integrity
    ├── InputTooLargeError              8  too_large
    ├── StorageError                    9  storage
    ├── RenderError                    10  render
    ├── RemoteError                    11  remote
    ├── RejectedError                  12  rejected
    ├── KeyUnavailableError            13  key_unavailable
    └── ShreddedError                  14  shredded

Exit codes, :func:`exit_code_table` (``gitstore --help`` and the README show the
same table; a test keeps all three equal to the data below)::

      0  success
      1  differences (diff --exit-code)
      2  usage error (bad arguments, bad customer name, bad version string)
      3  not found (store, customer, scenario, version, document, file)
      4  invalid document (parse, schema, integrity, completeness)
      5  version-rule violation (out-of-order version, write to a finalized version)
      6  conflict (another writer; lock timeout)
      7  integrity failure (corruption, checksum mismatch, verify found damage)
      8  input too large (max_document_bytes, default 8 MiB)
      9  storage error (root not a directory, read-only, I/O)
     10  render error (the SOW template could not render the session data)
     11  hub unreachable (down, timed out, DNS; writes still succeed locally)
     12  push rejected (the hub refused the push; its message says why)
     13  key unavailable (encrypted data: no master key, or no data key)
     14  shredded (the session's data key was destroyed)
     70  internal error (a bug, please report it)

Invariants: every subclass that declares its own ``status`` has a code no other
class has; a subclass without one (``InvalidNameError``) shares its parent's code on
purpose. Codes 0, 1 and 70 belong to no exception (:data:`OK`,
:data:`DIFFERENCES`, :data:`INTERNAL`). This module imports nothing from gitstore.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar, Literal, NamedTuple


class ExitStatus(NamedTuple):
    """One row of the exit-code table: ``code``, stable ``name``, ``meaning`` and an
    optional ``detail`` (Markdown: backticks mark literals)."""

    code: int
    name: str
    meaning: str
    detail: str = ""

    def describe(self, *, markdown: bool = False) -> str:
        """``meaning (detail)``; plain text unless ``markdown``."""
        text = f"{self.meaning} ({self.detail})" if self.detail else self.meaning
        return text if markdown else text.replace("`", "")


OK = ExitStatus(0, "ok", "success")
DIFFERENCES = ExitStatus(1, "differences", "differences", "`diff --exit-code`")
INTERNAL = ExitStatus(70, "internal", "internal error", "a bug, please report it")


class GitStoreError(Exception):
    """Root of every error gitstore raises on purpose (it raises only subclasses)."""

    status: ClassVar[ExitStatus] = ExitStatus(1, "error", "error")
    exit_code: ClassVar[int] = 1
    code_name: ClassVar[str] = "error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.exit_code = cls.status.code
        cls.code_name = cls.status.name

    def __init__(self, message: str) -> None:
        # Keep the message on one line: the CLI prints str(error) verbatim.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class UsageError(GitStoreError):
    """The request itself is malformed (bad name, bad version string, bad option)."""

    status = ExitStatus(2, "usage", "usage error",
                        "bad arguments, bad customer name, bad version string")


class InvalidNameError(UsageError):
    """A customer name (api_key) or document name failed the allowlist."""


class NotFoundError(GitStoreError):
    """A store, customer, scenario, version, revision or document does not exist."""

    status = ExitStatus(3, "not_found", "not found",
                        "store, customer, scenario, version, document, file")


class Violation(NamedTuple):
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

    status = ExitStatus(4, "invalid_document", "invalid document",
                        "parse, schema, integrity, completeness")

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

    status = ExitStatus(5, "version_rule", "version-rule violation",
                        "out-of-order version, write to a finalized version")


class ConflictError(GitStoreError):
    """A concurrent writer changed the scenario and the change could not be re-applied."""

    status = ExitStatus(6, "conflict", "conflict", "another writer; lock timeout")


class IntegrityError(GitStoreError):
    """Stored data is damaged: corruption, checksum mismatch, failed health check."""

    status = ExitStatus(7, "integrity", "integrity failure",
                        "corruption, checksum mismatch, `verify` found damage")

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message)


class InputTooLargeError(GitStoreError):
    """An input document exceeds the store's configured size limit."""

    status = ExitStatus(8, "too_large", "input too large", "`max_document_bytes`, default 8 MiB")


class StorageError(GitStoreError):
    """The store root or a repository cannot be used (not a directory, read-only, I/O)."""

    status = ExitStatus(9, "storage", "storage error", "root not a directory, read-only, I/O")


class RenderError(GitStoreError):
    """The SOW template failed to render (missing data, template not found, bad template)."""

    status = ExitStatus(10, "render", "render error",
                        "the SOW template could not render the session data")


class RemoteError(GitStoreError):
    """The hub (a sync remote) could not be reached: down, timed out, a name that does
    not resolve, or it does not hold the customer. Local writes are unaffected."""

    status = ExitStatus(11, "remote", "hub unreachable",
                        "down, timed out, DNS; writes still succeed locally")


class RejectedError(GitStoreError):
    """The hub refused a push; the message carries the hub's own words (its
    ``pre-receive`` hook's lines)."""

    status = ExitStatus(12, "rejected", "push rejected",
                        "the hub refused the push; its message says why")

    def __init__(self, message: str, hub_lines: tuple[str, ...] = ()) -> None:
        self.hub_lines = tuple(hub_lines)
        super().__init__(message)


class KeyUnavailableError(GitStoreError):
    """An encrypted session cannot be read or written here: no master key is
    configured, it is not the one that wrapped the session's key, or the key store
    does not hold the session's key (restore it with ``gitstore keys restore``)."""

    status = ExitStatus(13, "key_unavailable", "key unavailable",
                        "encrypted data: no master key, or no data key")


class ShreddedError(GitStoreError):
    """The session was crypto-shredded: its data key is destroyed, so its content
    is unreadable everywhere, for good. Its history and signatures stay."""

    status = ExitStatus(14, "shredded", "shredded",
                        "the session's data key was destroyed")


class GitStoreWarning(UserWarning):
    """Something the caller should know that did not stop the operation (the CLI
    prints it once on stderr as ``gitstore: warning: ...``). Not an error: it has no
    exit code."""


def error_classes() -> Iterator[type[GitStoreError]]:
    """Every :class:`GitStoreError` subclass defined here, depth first, in source order."""
    def walk(cls: type[GitStoreError]) -> Iterator[type[GitStoreError]]:
        for sub in cls.__subclasses__():
            if sub.__module__ == __name__:
                yield sub
                yield from walk(sub)
    return walk(GitStoreError)


#: The exit-code table, ordered by code: generated from the exception classes.
EXIT_STATUSES: tuple[ExitStatus, ...] = tuple(sorted(
    {OK, DIFFERENCES, INTERNAL, *(c.status for c in error_classes())}, key=lambda s: s.code))

#: ``code_name -> exit code`` for every row of :data:`EXIT_STATUSES`.
EXIT_CODES: dict[str, int] = {s.name: s.code for s in EXIT_STATUSES}


def exit_code_table(fmt: Literal["text", "markdown"] = "text") -> str:
    """The exit-code table, one line per code, no trailing newline.

    ``text`` (for ``gitstore --help`` and this module's docstring) is
    ``"  2  usage error (bad arguments, ...)"``, codes right-aligned; ``markdown`` (for
    the README) is a ``| code | name | meaning |`` table.
    """
    if fmt == "markdown":
        rows = [f"| {s.code} | `{s.name}` | {s.describe(markdown=True)} |" for s in EXIT_STATUSES]
        return "\n".join(["| code | name | meaning |", "|---:|---|---|", *rows])
    if fmt != "text":
        raise ValueError(f"unknown exit-code table format {fmt!r}")
    return "\n".join(f"{s.code:>3}  {s.describe()}" for s in EXIT_STATUSES)
