"""What every match of a regex contains: the literal hints of the secrets gate.

:func:`required` reads a pattern's parse tree (Python's own regex parser) and returns
strings of which every match holds at least one, or None when it can prove none. The
gate (:mod:`gitstore.rules.gate`) keeps them, made when ``rules/detectordata.py`` is
generated, so that a line none of a pattern's hints occur in is ruled out without
compiling or running that pattern.

Invariants:

* sound: a match of the pattern contains at least one of the strings, as they stand
  (case-sensitive patterns) or lowercased (``IGNORECASE`` patterns, whose hints are
  lowercased here: compare them with the lowercased text, and only when the text is
  ASCII, where lowercasing is exactly the regex's case folding);
* read with Python's own regex parser (``re._parser``, loaded with ``re``; typeshed
  has no stubs for it), from what a match must consume: runs of literal characters in
  sequence, a group, a repeat of at least one, every branch of an alternation (one
  hint set for all); lookarounds, classes, back-references, optional parts and
  scoped case flags prove nothing and break a run; a hint with a character outside
  ASCII makes the answer None.
"""

from __future__ import annotations

import re
import re._constants as sre_constants  # type: ignore[import-not-found, unused-ignore]
import re._parser as sre_parser  # type: ignore[import-not-found, unused-ignore]
from typing import Any

__all__ = ["required"]

_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT,
            sre_constants.POSSESSIVE_REPEAT)


def required(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """Strings of which every match of ``pattern`` (compiled with ``flags``) contains
    one, sorted; lowercased under ``IGNORECASE``; None if none can be proved."""
    parsed = sre_parser.parse(pattern, flags)  # its flags include inline ones: (?i)
    found = _required(parsed.data)
    if not found or any(not s or not s.isascii() for s in found):
        return None
    if parsed.state.flags & re.IGNORECASE:
        found = {s.lower() for s in found}
    return tuple(sorted(found))


def _required(items: Any) -> set[str] | None:
    candidates: list[set[str]] = []
    run: list[str] = []
    for op, av in items:
        if op is sre_constants.LITERAL:
            run.append(chr(av))
            continue
        if run:  # anything else ends a run of literals
            candidates.append({"".join(run)})
            run = []
        found: set[str] | None = None
        if op is sre_constants.SUBPATTERN:
            _group, add, remove, sub = av
            if not (add | remove) & re.IGNORECASE:
                found = _required(sub.data)
        elif op is sre_constants.BRANCH:
            branches = [_required(branch.data) for branch in av[1]]
            if all(branches):
                found = set().union(*(b for b in branches if b))
        elif op in _REPEATS:
            low, _high, sub = av
            found = _required(sub.data) if low >= 1 else None
        elif op is sre_constants.ATOMIC_GROUP:
            found = _required(av.data)
        if found:
            candidates.append(found)
    if run:
        candidates.append({"".join(run)})
    # the most selective: the longest shortest string, then the fewest strings
    return max(candidates, key=lambda c: (min(map(len, c)), -len(c))) if candidates else None
