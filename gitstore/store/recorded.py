"""What the access log says must exist: the refs its write records add up to.

:func:`recorded_refs` reads a customer's records (in log order) as the story of its
refs: each write names the commit it put on its scenario's branch (and, finalizing,
the tag it cut there), a sync names the hub's commits it moved branches and tags
to, a retention purge takes its scenario's refs out again. ``gitstore verify`` and
``gitstore repair`` compare it with the repository's refs.

Invariant: a record that does not parse as such a step (another op, a malformed
version) adds nothing; the records are never written here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gitstore.core.versions import Scenario, Version
from gitstore.errors import UsageError

__all__ = ["FINALIZING_OPS", "SYNC_BRANCH", "SYNC_TAG", "Recorded", "recorded_refs"]

FINALIZING_OPS = ("write:finalize", "write:correction")
SYNC_BRANCH = "sync:branch"
"""A sync moved a scenario branch to the hub's history (``rev`` the scenario,
``commit`` its new tip): the writes recorded before it were replayed there."""
SYNC_TAG = "sync:tag"
"""A sync set a version tag to the hub's (``commit`` its commit), or dropped a
local tag the hub numbered otherwise (``commit`` null)."""


class Recorded:
    """The refs the access log says a repository has: each scenario branch with the
    last commit written on it, each version tag with the commit it was cut at.
    A retention purge (``retention:purge``) takes its scenario's out again."""

    __slots__ = ("branches", "purged", "tags")

    def __init__(self) -> None:
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.purged: set[str] = set()


def recorded_refs(records: Iterable[dict[str, Any]]) -> Recorded:
    """What :class:`Recorded` the records (in log order) add up to."""
    out = Recorded()
    for r in records:
        op, rev, commit = r.get("op"), r.get("rev"), r.get("commit")
        if not isinstance(op, str) or not isinstance(rev, str):
            continue
        try:
            if op.startswith("write:") and op != "write:replayed" and isinstance(commit, str):
                version = Version.parse(rev)
                out.branches[version.scenario.branch_ref] = commit
                if op in FINALIZING_OPS:
                    out.tags[version.tag_ref] = commit
            elif op == SYNC_BRANCH and isinstance(commit, str):
                out.branches[Scenario.parse(rev).branch_ref] = commit
            elif op == SYNC_TAG:
                version = Version.parse(rev)
                if isinstance(commit, str):
                    out.tags[version.tag_ref] = commit
                else:
                    out.tags.pop(version.tag_ref, None)
            elif op == "retention:purge":
                scenario = Scenario.parse(rev)
                prefix = f"refs/tags/v{scenario.major}."
                for ref in [t for t in out.tags if t.startswith(prefix)]:
                    out.purged.add(ref)
                    del out.tags[ref]
                if isinstance(commit, str):
                    out.branches[scenario.branch_ref] = commit
                else:
                    out.branches.pop(scenario.branch_ref, None)
                    out.purged.add(scenario.branch_ref)
        except UsageError:
            continue
    return out

