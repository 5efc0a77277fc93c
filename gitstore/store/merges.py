"""Merging sessions with manual review (see :mod:`gitstore.core.merge` for the rules).

Two uses: scenario B of a customer merged into scenario A (base: their common
ancestor, or the empty session), and two divergent histories of one scenario
(base: their merge base). A merge without conflicts is written at once; one
with conflicts writes nothing to the target branch and is kept as a *pending
merge* for a reviewer: the ref ``refs/gitstore/merges/<target>`` names a commit
whose ``merge.json`` holds what was merged (source, target, base and their
commits), the three sides' documents, the conflicts and the resolutions so far,
and whose parents are the target and source tips (plain git can read all of
it: ``git show refs/gitstore/merges/v1:merge.json``; for an encrypted customer
it is sealed whole with the target scenario's key).

Invariants:

* the target branch moves only by one merge commit (two parents: the target tip
  the merge was prepared on, and the source), written through the
  :class:`~gitstore.store.writer.Writer`, so the whole pipeline runs on the
  result; it is refused while a conflict is unresolved, or if the target moved
  since the merge was prepared;
* every change of a pending merge (a resolution, the abort, the commit) is a
  compare-and-swap of its ref: two reviewers never both succeed on one state;
* merging into an open version keeps it open; into a finalized one opens the
  next minor (a merge is new information, not a correction);
* a scenario merged into another is marked by ``refs/gitstore/merged/<it>``
  (pointing at the merge commit) and refuses further writes; nothing is deleted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gitstore.core import canonical
from gitstore.core.commits import ChangeKind, Identity, Message, Trailer, trailers
from gitstore.core.diff import MISSING
from gitstore.core.merge import Conflict, merge
from gitstore.core.names import JSON_DOCUMENTS, MERGED, MERGES, META, SOW_DOCUMENT
from gitstore.core.time import format_rfc3339
from gitstore.core.versions import Scenario, next_follow_up
from gitstore.errors import (
    ConflictError,
    GitStoreError,
    NotFoundError,
    UsageError,
    VersionRuleError,
)
from gitstore.git import repo as backend
from gitstore.store import history
from gitstore.store.context import CustomerContext
from gitstore.store.tip import State, read_state
from gitstore.store.writer import Authorship, Plan, Writer, Written

SIDES = ("ours", "theirs", "base")
MERGE_FILE = "merge.json"
"""The one file of a pending merge's commit (sealed whole for an encrypted customer)."""


@dataclass(frozen=True)
class Resolution:
    """How a reviewer decided one conflict: a side, or a value of their own."""

    label: str
    choice: str  # "ours" | "theirs" | "base" | "value"
    value: Any = None
    present: bool = True
    by: str = ""
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "choice": self.choice, "value": self.value,
                "present": self.present, "by": self.by, "at": self.at}


@dataclass
class PendingMerge:
    """A merge waiting for review (or, once written, its result in ``written``)."""

    customer: CustomerContext
    target: Scenario
    source: str
    source_commit: str
    target_commit: str
    base_commit: str | None
    sides: dict[str, dict[str, Any]]
    conflicts: tuple[Conflict, ...]
    resolutions: dict[str, Resolution] = field(default_factory=dict)
    created: str = ""
    by: str = ""
    ref_commit: str | None = None
    written: Written | None = None

    @property
    def ref(self) -> str:
        return MERGES + str(self.target)

    @property
    def remaining(self) -> tuple[Conflict, ...]:
        return tuple(c for c in self.conflicts if c.label not in self.resolutions)

    def conflict(self, label: str) -> Conflict:
        for c in self.conflicts:
            if c.label == label:
                return c
        known = ", ".join(c.label for c in self.conflicts) or "none"
        raise NotFoundError(f"the merge into {self.customer.name} {self.target} has no "
                            f"conflict {label!r} (conflicts: {known})")

    def to_json(self) -> dict[str, Any]:
        return {"format": "gitstore-merge", "format_version": 1,
                "customer": self.customer.name, "target": str(self.target),
                "source": self.source, "source_commit": self.source_commit,
                "target_commit": self.target_commit, "base_commit": self.base_commit,
                "created": self.created, "by": self.by,
                "conflicts": [c.to_json() for c in self.conflicts],
                "resolutions": {k: r.to_json() for k, r in sorted(self.resolutions.items())},
                "remaining": [c.label for c in self.remaining],
                "documents": self.sides}

    # -- review ------------------------------------------------------------------
    def resolve(self, label: str, choice: str, value: Any = None, *,
                reviewer: str | Identity | None = None) -> PendingMerge:
        """Decide conflict ``label``: ``choice`` is ``ours``, ``theirs``, ``base``
        or ``value`` (then ``value`` is the JSON value to take)."""
        c = self.conflict(label)
        if choice not in (*SIDES, "value"):
            raise UsageError(f"resolve with ours, theirs, base or a file, not {choice!r}")
        if choice == "value":
            taken, present = value, True
        else:
            side = c.side(choice)
            taken, present = (None, False) if side is MISSING else (side, True)
        who = str(_identity(reviewer, self.customer))
        updated = replace(self, resolutions={**self.resolutions, label: Resolution(
            label, choice, taken, present, who, format_rfc3339(self.customer.store.now()))})
        return store_pending(updated, f"resolve {label} with {choice}")

    def commit(self, *, reviewer: str | Identity | None = None, message: str | None = None,
               at: datetime | None = None) -> Written:
        """Write the merge commit (refused while conflicts remain); the pending
        merge ref goes once the commit is in."""
        if self.remaining:
            labels = ", ".join(c.label for c in self.remaining)
            raise ConflictError(f"{len(self.remaining)} conflict(s) of the merge into "
                                f"{self.customer.name} {self.target} are unresolved ({labels}); "
                                "resolve them first (gitstore resolve)")
        written = write_merge(self, _identity(reviewer, self.customer), message, at)
        if self.ref_commit is not None:  # another process may have cleared it meanwhile:
            with contextlib.suppress(backend.RefConflict):  # the merge commit is what counts
                self.customer.repo.delete_ref(self.ref, self.ref_commit)
        self.customer.audit("merge:commit", rev=str(self.target), commit=written.commit,
                            detail=f"merged {self.source}")
        return written

    def abort(self) -> None:
        """Drop the pending merge; no branch or tag is touched."""
        if self.ref_commit is None:
            return
        with self.customer.locked():
            try:
                self.customer.repo.delete_ref(self.ref, self.ref_commit)
            except backend.RefConflict:
                raise ConflictError(f"the merge into {self.customer.name} {self.target} "
                                    "changed meanwhile (another reviewer); look again") from None
        self.customer.audit("merge:abort", rev=str(self.target))


def _identity(who: str | Identity | None, customer: CustomerContext) -> Identity:
    if who is None:
        return customer.store.config.agent
    return who if isinstance(who, Identity) else Identity.parse(who)


# -- preparing ---------------------------------------------------------------------------

def prepare(customer: CustomerContext, source: str, into: str | Scenario | None = None, *,
            reviewer: str | Identity | None = None) -> PendingMerge:
    """Work out a merge of ``source`` (a scenario ``v2``, a version or any
    revision) into the scenario ``into`` (default: the source's own scenario
    for a revision on a diverged history, else the newest other scenario).
    Writes nothing."""
    customer.require()
    if not isinstance(source, str) or not source:
        raise UsageError("name what to merge: a scenario (v2), a version or a revision")
    if source != customer.name and (customer.store.root / source).is_dir() and \
            backend.is_repository(customer.store.root / source):
        raise UsageError(f"{source} is another customer: customers never share history; "
                         f"merge scenarios of {customer.name} only")
    repo = customer.repo
    scenarios = customer.scenarios()
    src_scenario = Scenario.parse(source) if Scenario.is_name(source) else None
    if src_scenario is not None and src_scenario not in scenarios:
        raise NotFoundError(f"customer {customer.name} has no scenario {src_scenario}")
    source_commit = repo.ref_target(src_scenario.branch_ref) if src_scenario else \
        history.resolve(customer, source)
    assert source_commit is not None
    if into is not None:
        target = into if isinstance(into, Scenario) else history.pick_scenario(customer, into)
    elif src_scenario is None:
        version = history.read(customer, source_commit).version
        if version is None:
            raise UsageError(f"cannot tell which scenario {source} belongs to; pass --into")
        target = version.scenario
    else:
        others = [s for s in scenarios if s != src_scenario]
        if not others:
            raise UsageError(f"{customer.name} has no other scenario to merge {source} into")
        target = others[-1]
    if src_scenario == target:
        raise UsageError(f"cannot merge scenario {target} into itself")
    for s in (target, src_scenario):
        if s is not None and repo.ref_target(MERGED + str(s)):
            raise VersionRuleError(f"scenario {s} of {customer.name} was already merged away")
    state = read_state(repo, target)
    if repo.is_ancestor(source_commit, state.tip) or source_commit == state.tip:
        raise UsageError(f"nothing to merge: {source} is already part of {target}")
    base_commit = repo.merge_base(state.tip, source_commit)
    sides = {"ours": _documents(state.files), "theirs": _documents(repo.read_tree(source_commit)),
             "base": _documents(repo.read_tree(base_commit)) if base_commit else {}}
    result = merge(sides["base"], sides["ours"], sides["theirs"])
    customer.audit("merge:prepare", rev=f"{source}..{target}",
                   detail=f"{len(result.conflicts)} conflict(s)")
    return PendingMerge(customer, target, source, source_commit, state.tip, base_commit, sides,
                        result.conflicts, created=format_rfc3339(customer.store.now()),
                        by=str(_identity(reviewer, customer)))




def _documents(files: Mapping[str, bytes]) -> dict[str, Any]:
    out = {}
    for name in JSON_DOCUMENTS:
        if name in files:
            try:
                out[name] = canonical.loads(files[name])
            except canonical.JSONParseError:
                raise UsageError(f"{name} is not valid JSON on one side; repair it first") \
                    from None
    return out


# -- storing ----------------------------------------------------------------------------

def store_pending(pending: PendingMerge, what: str) -> PendingMerge:
    """Write the pending merge to its ref (compare-and-swap from the state it was
    read at: None means it must not exist yet)."""
    customer = pending.customer
    repo = customer.repo
    data = canonical.dumps(pending.to_json())
    if customer.encrypted:  # it holds the three sides' documents: sealed whole
        data = customer.sealer.seal_blob(pending.target.major, MERGE_FILE, data)
    store = customer.store
    now = store.now()
    tree = repo.write_tree({MERGE_FILE: data})
    msg = Message(f"pending merge of {pending.source} into {pending.target}: {what}", trailers([
        (Trailer.CHANGE, "pending-merge"), (Trailer.MERGED_FROM,
                                            f"{pending.source} {pending.source_commit}"),
        ("Conflicts", len(pending.conflicts)), ("Unresolved", len(pending.remaining))]))
    parents = [pending.target_commit, pending.source_commit]
    commit = repo.write_commit(tree=tree, parents=parents, author=_identity(None, customer),
                               committer=store.config.committer, message=msg.format(),
                               time=int(now.timestamp()), offset=0, sign=store.signer)
    with customer.locked():
        try:
            repo.update_ref(pending.ref, commit, pending.ref_commit, f"gitstore: {what}")
        except backend.RefConflict:
            if pending.ref_commit is None:
                raise ConflictError(f"a merge into {customer.name} {pending.target} is already "
                                    "pending; continue or abort it first") from None
            raise ConflictError(f"the merge into {customer.name} {pending.target} changed "
                                "meanwhile (another reviewer); look again") from None
    customer.audit("merge:" + what.split()[0], rev=str(pending.target), commit=commit)
    return replace(pending, ref_commit=commit)


def drop_pending(customer: CustomerContext, scenario: Scenario, tip: str | None,
                 why: str) -> list[str]:
    """Drop every merge pending into ``scenario`` or from its history (``tip`` or a
    commit before it): each holds both sides' documents, so a scenario whose data
    must go (a purge, a shred) takes them along. Told by the pending commit's own
    parents, which every pending merge has, readable ``merge.json`` or not. Returns
    the targets whose review went, each recorded (``merge:abort``, ``why``). For a
    caller that holds the customer's writer lock."""
    repo = customer.repo
    dropped = []
    for ref, oid in repo.refs(MERGES).items():
        gone = ref == MERGES + str(scenario)
        if not gone and tip is not None:
            with contextlib.suppress(GitStoreError):  # a parent not there holds nothing
                gone = any(p == tip or repo.is_ancestor(p, tip)
                           for p in repo.commit(oid).parents)
        if gone:
            repo.delete_ref(ref, oid)
            customer.audit("merge:abort", rev=ref[len(MERGES):], detail=why)
            dropped.append(ref[len(MERGES):])
    return dropped


def load_pending(customer: CustomerContext, into: str | Scenario | None = None) -> PendingMerge:
    """The pending merge into ``into`` (default: the only one there is)."""
    customer.require()
    repo = customer.repo
    found = repo.refs(MERGES)
    if into is not None:
        target = into if isinstance(into, Scenario) else Scenario.parse(str(into))
        ref = MERGES + str(target)
        if ref not in found:
            raise NotFoundError(f"no merge into {customer.name} {target} is pending")
    elif not found:
        raise NotFoundError(f"no merge of {customer.name} is pending")
    elif len(found) > 1:
        raise UsageError(f"{len(found)} merges of {customer.name} are pending "
                         f"({', '.join(r[len(MERGES):] for r in sorted(found))}); pass --into")
    else:
        ref = next(iter(found))
    commit = found[ref]
    try:
        raw = repo.read_stored(commit).get(MERGE_FILE, b"")
        if customer.encrypted:
            raw = customer.sealer.open_blob(Scenario.parse(ref[len(MERGES):]).major,
                                            MERGE_FILE, raw)
        data = json.loads(raw)
        return PendingMerge(
            customer, Scenario.parse(data["target"]), data["source"], data["source_commit"],
            data["target_commit"], data["base_commit"], data["documents"],
            tuple(Conflict.from_json(c) for c in data["conflicts"]),
            {k: Resolution(**r) for k, r in data["resolutions"].items()},
            data["created"], data["by"], commit)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{ref} is not a readable pending merge ({exc}); abort it with "
                         "git update-ref -d") from None


# -- writing ------------------------------------------------------------------------------

def write_merge(pending: PendingMerge, reviewer: Identity, message: str | None,
                at: datetime | None) -> Written:
    """The merge commit on the target branch, through the writer."""
    customer = pending.customer
    decisions = {(c.document, c.pointer): MISSING if not r.present else r.value
                 for c in pending.conflicts if (r := pending.resolutions.get(c.label))}
    sides = pending.sides
    result = merge(sides["base"], sides["ours"], sides["theirs"], decisions)
    if result.conflicts:  # the decisions cover every conflict the review saw
        raise ConflictError(f"{len(result.conflicts)} conflict(s) remain unresolved")
    resolved = ", ".join(f"{r.label}={r.choice}" + (f" by {r.by}" if r.by else "")
                         for r in pending.resolutions.values())  # who decided each

    def build(state: State) -> Plan:
        if state.tip != pending.target_commit:
            raise ConflictError(f"{customer.name} {pending.target} moved since the merge was "
                                "prepared; abort it and merge again")
        docs = dict(result.documents)
        version = state.version
        if state.finalized:  # a merge is new information: the next minor, open
            version = next_follow_up(state.rules)
            meta = docs.get(META)
            if isinstance(meta, dict) and isinstance(meta.get("session_info"), dict):
                info = dict(meta["session_info"])
                info.update(session_version=str(version), completed_timestamp=None,
                            session_duration_minutes=None)
                meta = {**meta, "session_info": info}
                workflow = meta.get("workflow_tracking")
                if isinstance(workflow, dict) and "completion_status" in workflow:
                    meta["workflow_tracking"] = {**workflow, "completion_status": "in_progress"}
                docs[META] = meta
        files = {k: v for k, v in state.files.items()
                 if k not in JSON_DOCUMENTS and k != SOW_DOCUMENT}
        files.update({name: canonical.dumps(doc) for name, doc in docs.items()})
        changed = frozenset(n for n in files if files[n] != state.files.get(n))
        return Plan(files, version, ChangeKind.MERGE,
                    message or f"{version}: merge {pending.source} into {pending.target}",
                    changed, merged=(pending.source_commit,), extra_trailers=tuple(trailers([
                        (Trailer.MERGED_FROM, f"{pending.source} {pending.source_commit}"),
                        (Trailer.RESOLVED, resolved or None),
                        (Trailer.REVIEWED_BY, reviewer)])))

    written = Writer(customer).write(pending.target, build, Authorship(author=reviewer, time=at))
    src = pending.source
    if Scenario.is_name(src):
        with contextlib.suppress(backend.RefConflict):  # a concurrent merge marked it
            customer.repo.create_ref(MERGED + str(Scenario.parse(src)), written.commit,
                                     f"gitstore: merged into {pending.target}")
        if customer.repo.head_ref() == Scenario.parse(src).branch_ref:  # HEAD: a live one
            customer.repo.set_head(pending.target.branch_ref)
    return written
