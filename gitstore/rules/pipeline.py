"""The pre-commit pipeline: every write runs these hooks before anything is stored.

libgit2 runs no git hooks, so gitstore runs its own: an ordered list of checks
over the complete tree a commit would have. The default order is

1. ``json``          strict JSON parsing of every document;
2. ``schema``        JSON Schema validation of the documents the change touches;
3. ``integrity``     referential integrity across files;
4. ``timestamps``    chronological consistency;
5. ``completeness``  the completeness percentage; all fields filled at finalize;
6. user hooks        registered with :meth:`Pipeline.register`, in order;

and then the checksum stage writes (or, for trees made with plain git,
verifies) the ``SHA256SUMS`` manifest.

Invariant: :meth:`Pipeline.run` either returns with ``proposal.manifest`` set
and no violations, or raises :class:`~gitstore.errors.InvalidDocumentError`
listing every violation found by every stage. It writes nothing itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import cast

from gitstore.core import manifest
from gitstore.core.names import MANIFEST
from gitstore.errors import InvalidDocumentError, UsageError, Violation
from gitstore.rules import checks
from gitstore.rules.proposal import Hook, Proposal

BUILTIN_HOOKS: tuple[tuple[str, Hook], ...] = (
    ("json", checks.check_json),
    ("schema", checks.check_schema),
    ("integrity", checks.check_integrity),
    ("timestamps", checks.check_timestamps),
    ("completeness", checks.check_completeness),
)


class Pipeline:
    """An ordered list of named hooks; extend it with :meth:`register`."""

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._hooks: list[tuple[str, Hook]] = list(BUILTIN_HOOKS)
        for hook in hooks:
            self.register(hook)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._hooks] + ["checksums"]

    def register(self, hook: Hook, *, name: str | None = None) -> Hook:
        """Add a check after the built-in ones; usable as a decorator.

        A hook receives the :class:`Proposal` and yields (or returns a list of)
        violations; raising an exception counts as a violation of that hook.
        """
        label = str(name or getattr(hook, "__name__", "hook"))
        if label in self.names:
            raise ValueError(f"a hook named {label!r} is already registered")
        self._hooks.append((label, hook))
        return hook

    def run(self, proposal: Proposal) -> None:
        found: list[Violation] = []
        for name, hook in self._hooks:
            try:
                for v in hook(proposal) or ():
                    found.append(v if v.hook else Violation(v.file, v.pointer, v.message, name))
            except Exception as exc:  # a user hook's bug must not write anything either
                found.append(Violation("", "", f"hook {name!r} failed: "
                                       f"{type(exc).__name__}: {exc}", name))
        if proposal.verify_manifest:
            found.extend(manifest.verify(proposal.files))
        if found:
            raise InvalidDocumentError(_ordered(found))
        files = proposal.files  # an unlisted document is not read (it may be in parts)
        proposal.manifest = manifest.build(
            {k: files[k] for k in files if k != MANIFEST and k not in proposal.unlisted})


def _ordered(found: list[Violation]) -> list[Violation]:
    """Stable, de-duplicated order: by stage as reported, then file and pointer."""
    seen: set[Violation] = set()
    out = []
    for v in found:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def load_hook(spec: str) -> Hook:
    """Import a hook named ``"package.module:function"``."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        hook = getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"cannot load hook {spec!r}: {exc}") from None
    if not callable(hook):
        raise UsageError(f"hook {spec!r} is not callable")
    return cast(Hook, hook)
