"""Semantic session versions and the rules for moving between them (pure logic).

A customer's history is a set of *scenarios* (deployment scenarios), one per
major version, each on its own branch ``refs/heads/vN``. Within a scenario the
versions form a single line:

* ``new`` opens the next major, ``v(N+1).0.0`` (a new deployment scenario);
* ``follow_up`` opens the next minor of a scenario, ``vN.(M+1).0``, and is only
  allowed once the scenario's newest version is finalized;
* ``correct`` publishes the next patch of the scenario's newest minor,
  ``vN.M.(P+1)``, and is only allowed once that version is finalized.

A version is *open* while commits are being added to it and *finalized* once
its annotated tag ``vN.M.P`` exists; tags are never moved or reused.

One grammar for every version and scenario argument, the tag and branch name's:
``vMAJOR.MINOR.PATCH`` and ``vN``, the ``v`` required (``1.0.0`` is refused with
a message showing ``v1.0.0``), no leading zeros, majors from 1, at most nine
digits per number; metadata's ``session_version`` follows it too.

Corrections to an older minor (``v1.0.0`` when ``v1.1.0`` exists) are refused:
a scenario is one line of history in which every version contains all the data
of the ones before it, so a correction belongs on the newest version, where it
also reaches every later reader. The error names the version to correct instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from gitstore.errors import UsageError, VersionRuleError

_VERSION_RE = re.compile(r"v(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
_SCENARIO_RE = re.compile(r"v([1-9][0-9]{0,8})")
_NO_V = re.compile(r"[0-9][0-9.]*")


def _hint(text: object, grammar: re.Pattern[str], what: str = "version") -> str:
    """``; a version starts with v: v1.0.0`` for ``1.0.0``; else empty."""
    if isinstance(text, str) and _NO_V.fullmatch(text) and grammar.fullmatch("v" + text):
        return f"; a {what} starts with v: v{text}"
    return ""


def _shown(text: object) -> str:
    """``text`` for a message: its repr, cut short (never a huge or multi-line echo)."""
    if not isinstance(text, str):
        return f"(a {type(text).__name__})"
    shown = repr(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."


class Version(NamedTuple):
    """A session version ``vMAJOR.MINOR.PATCH``; majors start at 1."""

    major: int
    minor: int = 0
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``v1.2.3``; refuse anything else (``1.2.3`` too: one grammar for
        every version argument, the tag name's)."""
        m = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
        if not m:
            raise UsageError(f"invalid version {_shown(text)}: expected vMAJOR.MINOR.PATCH, "
                             f"e.g. v1.0.0{_hint(text, _VERSION_RE)}")
        version = cls(int(m[1]), int(m[2]), int(m[3]))
        if version.major < 1:
            raise UsageError(f"invalid version {text!r}: major versions start at 1")
        return version

    @classmethod
    def is_version(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except UsageError:
            return False
        return True

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    @property
    def scenario(self) -> Scenario:
        return Scenario(self.major)

    @property
    def tag_ref(self) -> str:
        return f"refs/tags/{self}"

    @property
    def document_version(self) -> str:
        """The version as printed on documents: ``1.2.3``."""
        return f"{self.major}.{self.minor}.{self.patch}"


class Scenario(NamedTuple):
    """A deployment scenario: one major version and its branch ``refs/heads/vN``."""

    major: int

    @classmethod
    def parse(cls, text: str) -> Scenario:
        m = _SCENARIO_RE.fullmatch(text) if isinstance(text, str) else None
        if not m:
            raise UsageError(f"invalid scenario {_shown(text)}: expected vN, e.g. "
                             f"v1{_hint(text, _SCENARIO_RE, 'scenario')}")
        return cls(int(m[1]))

    @staticmethod
    def is_name(text: object) -> bool:
        """Whether ``text`` names a scenario (``v2``), not a version or a revision."""
        return isinstance(text, str) and _SCENARIO_RE.fullmatch(text) is not None

    def __str__(self) -> str:
        return f"v{self.major}"

    @property
    def branch_ref(self) -> str:
        return f"refs/heads/v{self.major}"


def refuse_bare_version(text: object, what: str = "revision") -> None:
    """Refuse ``1.0.0`` given where a version or revision is expected: a revision is
    never read as a version without its ``v``, and the message shows the spelling
    meant (``v1.0.0``). (A bare ``2`` may be a commit id's prefix: left to git.)"""
    hint = _hint(text, _VERSION_RE)
    if hint:
        raise UsageError(f"invalid {what} {_shown(text)}{hint}")


def parse_tag_ref(ref: str) -> Version | None:
    """``refs/tags/v1.2.3`` -> Version; anything else -> None."""
    if not ref.startswith("refs/tags/"):
        return None
    name = ref[len("refs/tags/"):]
    if not name.startswith("v"):
        return None
    try:
        return Version.parse(name)
    except UsageError:
        return None


def parse_branch_ref(ref: str) -> Scenario | None:
    """``refs/heads/v3`` -> Scenario(3); anything else -> None."""
    if not ref.startswith("refs/heads/v"):
        return None
    try:
        return Scenario.parse(ref[len("refs/heads/"):])
    except UsageError:
        return None


class ScenarioState(NamedTuple):
    """What the rules need to know about a scenario.

    ``current`` is the version its branch tip belongs to; ``finalized`` says
    whether that version has been finalized. ``tags`` are all finalized versions
    of the scenario.
    """

    scenario: Scenario
    current: Version
    finalized: bool
    tags: tuple[Version, ...] = ()

    @property
    def newest_tag(self) -> Version | None:
        return max(self.tags) if self.tags else None


def next_scenario(existing: Iterable[Scenario]) -> Version:
    """The first version of a new deployment scenario: ``v(N+1).0.0``."""
    majors = [s.major for s in existing]
    return Version(max(majors, default=0) + 1, 0, 0)


def next_follow_up(state: ScenarioState) -> Version:
    """The version a follow-up conversation opens: ``vN.(M+1).0``."""
    if not state.finalized:
        raise VersionRuleError(
            f"cannot follow up on {state.current}: it is still open; finalize it first"
        )
    return Version(state.current.major, state.current.minor + 1, 0)


def next_correction(state: ScenarioState, base: Version | None = None) -> Version:
    """The version a data correction publishes: ``vN.M.(P+1)`` of the newest minor.

    ``base``, when given, is the version the caller means to correct; it must be
    the scenario's newest finalized version.
    """
    if not state.finalized:
        raise VersionRuleError(
            f"cannot correct {state.current}: it is still open; update it with turn/put "
            "and finalize it instead"
        )
    if base is not None and base != state.current:
        if base.major != state.scenario.major:
            raise VersionRuleError(f"{base} is not in scenario {state.scenario}")
        if base not in state.tags:
            raise VersionRuleError(f"cannot correct {base}: no such finalized version")
        raise VersionRuleError(
            f"cannot correct {base}: it is superseded by {state.current} in scenario "
            f"{state.scenario}; corrections apply to the newest version, so correct "
            f"{state.current} (giving {_bump_patch(state.current)})"
        )
    return _bump_patch(state.current)


def _bump_patch(v: Version) -> Version:
    return Version(v.major, v.minor, v.patch + 1)


def check_expected(kind: str, computed: Version, expected: Version | None,
                   taken: Iterable[Version] = ()) -> Version:
    """Refuse an explicitly requested version unless it is exactly the computed one.

    The message says whether the request skips ahead, reuses a version or goes
    backwards, so the caller knows what went wrong.
    """
    if expected is None or expected == computed:
        return computed
    taken_set = set(taken)
    if expected in taken_set:
        why = f"{expected} already exists and versions are never reused"
    elif expected < computed:
        why = f"{expected} would go backwards"
    else:
        why = f"{expected} would skip versions"
    raise VersionRuleError(f"{kind}: {why}; the next version is {computed}")
