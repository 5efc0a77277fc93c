"""What a store keeps of its hub, and what it keeps out.

A sync fetches the hub's refs into :data:`TRACKING` (never pushed). Retention purges
do not travel (:mod:`gitstore.ops.retention`), so a scenario purged here would come
back with the next fetch, its data readable again through those refs. Invariants:
a scenario retention removed here (:func:`removed_here`) is left out of every fetch
(negative refspecs: :func:`fetch_specs`); a purge deletes, before the purged
scenario's own refs, every copy of it a sync left here (:func:`copies_of`: the hub's
branch and tags as last fetched, and what a sync set aside under
``refs/gitstore/sync/replaced/``, found by session; the merges a sync left pending on
it go too, :mod:`gitstore.ops.retention`); and the analytics-only root commit a
purge keeps (:func:`retained`) is never pushed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from gitstore.core.commits import ChangeKind
from gitstore.core.names import MERGED
from gitstore.core.versions import Scenario, parse_branch_ref
from gitstore.errors import GitStoreError
from gitstore.git import repo as backend
from gitstore.ops.rebase import REPLACED, peel
from gitstore.store.travel import TRAVEL_REFS

__all__ = ["FETCH_SPECS", "TRACKING", "copies_of", "drop_copies", "fetch_specs",
           "removed_here", "retained"]

TRACKING = "refs/remotes/hub/"
"""Where the hub's refs are kept after a fetch (never pushed)."""
FETCH_SPECS = (f"+refs/heads/*:{TRACKING}heads/*", f"+refs/tags/*:{TRACKING}tags/*",
               f"+{MERGED}*:{TRACKING}merged/*", f"+{TRAVEL_REFS}*:{TRACKING}audit/*")


def retained(repo: backend.Repo, tip: str) -> bool:
    """Whether a branch at ``tip`` is what a retention purge kept of a scenario (the
    analytics-only root commit): it neither travels nor takes the hub's history."""
    return repo.commit(tip).change == ChangeKind.RETENTION


def removed_here(repo: backend.Repo) -> list[Scenario]:
    """The scenarios retention removed here: numbered no higher than the newest ever
    opened here and either without a branch (and not merged into another scenario)
    or with only what the purge kept (:func:`retained`)."""
    last = repo.config_get("gitstore.lastScenario") or "0"
    heads = {s.major: tip for ref, tip in repo.refs("refs/heads/").items()
             if (s := parse_branch_ref(ref))}
    merged = {ref[len(MERGED):] for ref in repo.refs(MERGED)}
    top = max([int(last) if last.isdigit() else 0, *heads])
    return [Scenario(n) for n in range(1, top + 1)
            if (n not in heads and str(Scenario(n)) not in merged)
            or (n in heads and retained(repo, heads[n]))]


def fetch_specs(removed: Iterable[Scenario]) -> list[str]:
    """:data:`FETCH_SPECS` without the branch and tags of each scenario retention
    ``removed`` here (:func:`removed_here`; negative refspecs): the hub's copy stays
    on the hub until its own ``retention apply``, and is not fetched back here."""
    return [*FETCH_SPECS, *(spec for s in removed
                            for spec in (f"^{s.branch_ref}", f"^refs/tags/{s}.*"))]


def copies_of(repo: backend.Repo, scenario: Scenario, session_id: str | None = None
              ) -> dict[str, str]:
    """The refs that hold another copy of ``scenario``'s history here: the hub's branch
    and tags as a sync last fetched them and, given the scenario's ``session_id``, what
    a sync set aside under :data:`REPLACED` of that session (under whatever number
    it had then: a scenario a sync renumbered keeps its old one there)."""
    mine = (f"heads/{scenario}", f"tags/{scenario}.")
    found = {ref: oid for ref, oid in repo.refs(TRACKING).items()
             if ref[len(TRACKING):] == mine[0] or ref[len(TRACKING):].startswith(mine[1])}
    if session_id is not None:
        for ref, oid in repo.refs(REPLACED).items():
            with contextlib.suppress(GitStoreError):
                if repo.commit(peel(repo, oid)).session_id == session_id:
                    found[ref] = oid
    return found


def drop_copies(repo: backend.Repo, scenarios: Iterable[tuple[Scenario, str | None]]) -> int:
    """Delete :func:`copies_of` each ``(scenario, session id)``; how many refs went."""
    gone = 0
    for s, session_id in scenarios:
        for ref, oid in copies_of(repo, s, session_id).items():
            repo.delete_ref(ref, oid)
            gone += 1
    return gone
