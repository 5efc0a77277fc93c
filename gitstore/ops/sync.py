"""Sync: many machines, one hub per customer, offline first.

A store with a ``remote`` (see :class:`gitstore.store.config.Config`) keeps each
customer's repository in step with the customer's repository on a hub (a
directory of bare repositories behind a real git server: :mod:`gitstore.ops.hub`).
Writes never touch the network; ``gitstore sync`` does, per customer:

1. **fetch** the hub's branches, version tags, merge markers and access logs into
   ``refs/remotes/hub/`` (a bounded step: ``sync_timeout``);
2. **integrate**, scenario by scenario: fast-forward to the hub where only the hub
   moved; keep what only moved here; where both moved, rebuild this machine's
   changes on the hub's tip, change by change, through the writer
   (:mod:`gitstore.ops.rebase`); where that needs a person, prepare a merge for
   review (``gitstore conflicts``) and leave the scenario as it is here. A
   scenario both sides opened under the same number offline is rebuilt here as
   the next free number. The result is built in a staging repository and swapped
   in under the customer's writer lock, tags first, with a journal that the next
   sync finishes should a crash interrupt the swap; every ref it moves back or
   drops is kept under ``refs/gitstore/sync/replaced/`` (never pushed): no local
   write is ever lost;
3. **travel** the access log: the records written since the last sync, as one
   batch on ``refs/gitstore/audit/<log id>`` (:mod:`gitstore.store.travel`);
4. **push**, atomically and never forced, every branch the hub's tip is a
   first-parent ancestor of, every version tag it lacks, merge markers and the
   access log; a push that lost a race to another machine starts again at 1;
   one the hub refuses is a :class:`~gitstore.errors.RejectedError` with the
   hub's message.

Versions are global per customer: a version number is the hub's once it is on
the hub, and never names two contents there (the hub refuses a moved tag).
Until then a version tag is *provisional*: when two machines both finalized
``v1.0.0`` offline, the first to sync keeps ``v1.0.0``; the second's changes are
rebuilt on it, so its conversation becomes the follow-up ``v1.1.0`` (finalized
again as that) and its own ``v1.0.0`` tag gives way to the hub's (kept under
``refs/gitstore/sync/replaced/tags/``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gitstore.core.commits import ChangeKind, Trailer
from gitstore.core.names import MERGED, MERGES, STORE_DIR
from gitstore.core.time import format_rfc3339
from gitstore.core.versions import Scenario, Version, parse_branch_ref, parse_tag_ref
from gitstore.errors import ConflictError, GitStoreError, NotFoundError, UsageError
from gitstore.git import remote
from gitstore.git import repo as backend
from gitstore.git.locking import writer_lock
from gitstore.ops.rebase import (
    REPLACED,
    SYNC_DIR,
    Change,
    Moved,
    ReplayConflict,
    Staging,
    peel,
    redo_journal,
    swap,
)
from gitstore.ops.tracking import TRACKING as TRACKING
from gitstore.ops.tracking import drop_copies, fetch_specs, removed_here, retained
from gitstore.store import config as config_mod
from gitstore.store.audit import SYNC_BRANCH, SYNC_TAG, AuditLog
from gitstore.store.facade import Customer, Store
from gitstore.store.travel import GENESIS, TRAVEL_REFS, batch_name

TRAVEL_TRAILER = "Audit-Head"
MAX_ROUNDS = 4

Progress = Callable[[str, str], None]
"""Called with (customer, step) as a sync goes: fetch, integrate, push, done."""


@dataclass
class Outcome:
    """What syncing one customer did: commits pushed to and pulled from the hub,
    local commits rebuilt on the hub's history (``merged``), conflicts waiting
    for review, and the error that stopped it (if any)."""

    customer: str
    pushed: int = 0
    pulled: int = 0
    merged: int = 0
    conflicts: int = 0
    tags_pushed: int = 0
    tags_pulled: int = 0
    pending: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: GitStoreError | None = None

    def line(self) -> str:
        text = (f"{self.customer}: pushed {self.pushed}, pulled {self.pulled}, "
                f"merged {self.merged}, conflicts {self.conflicts}")
        if self.error is not None:
            text += f" (failed: {self.error})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "pushed": self.pushed, "pulled": self.pulled,
                "merged": self.merged, "conflicts": self.conflicts,
                "tags_pushed": self.tags_pushed, "tags_pulled": self.tags_pulled,
                "pending": self.pending, "notes": self.notes, "ok": self.error is None,
                "error": None if self.error is None else {
                    "code": self.error.exit_code, "name": self.error.code_name,
                    "message": str(self.error)}}


@dataclass
class Refs:
    """One side's refs: scenario branches, version tags (tag object ids), merge
    markers (scenario name -> commit) and travelled access logs (log id -> commit)."""

    heads: dict[Scenario, str] = field(default_factory=dict)
    tags: dict[Version, str] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, repo: backend.Repo, prefix: str = "refs/") -> Refs:
        """The local refs (``refs/``) or the hub's as last fetched (:data:`TRACKING`)."""
        hub = prefix != "refs/"
        out = cls()
        for ref, oid in repo.refs(prefix).items():
            rest = ref[len(prefix):]
            if rest.startswith("heads/") and (s := parse_branch_ref("refs/" + rest)):
                out.heads[s] = oid
            elif rest.startswith("tags/") and (v := parse_tag_ref("refs/" + rest)):
                out.tags[v] = oid
            elif rest.startswith("merged/" if hub else "gitstore/merged/"):
                out.merged[rest.rsplit("/", 1)[-1]] = oid
            elif rest.startswith("audit/" if hub else "gitstore/audit/"):
                out.logs[rest.rsplit("/", 1)[-1]] = oid
        return out

    def flat(self) -> dict[str, str]:
        """heads, tags and markers as ``ref -> id`` (the refs a sync swaps)."""
        return {**{s.branch_ref: o for s, o in self.heads.items()},
                **{v.tag_ref: o for v, o in self.tags.items()},
                **{MERGED + n: o for n, o in self.merged.items()}}


@dataclass
class Step:
    """What integration does with one scenario (``action``: same, pull, push, new,
    replay, renumber, review, pending or skip)."""

    scenario: Scenario
    local: str | None
    hub: str | None
    action: str
    why: str = ""


def url_of(store: Store, customer: Customer, template: str | None = None) -> str:
    """The hub URL of ``customer``: ``template`` (a remote template), else the store's."""
    cfg = store.config
    if template is not None:
        cfg = config_mod.Config(remote=config_mod.check_remote(template),
                                remote_shards=cfg.remote_shards)
    url = config_mod.remote_url(cfg, customer.name)
    if url is None:
        raise UsageError("this store has no remote: set the hub's URL template with "
                         "`gitstore remote git://hub.example/{customer}`")
    return url


def first_parent_ancestor(repo: backend.Repo, ancestor: str, tip: str) -> bool:
    """True if ``ancestor`` is on ``tip``'s first-parent line (so pushing ``tip``
    adds to the hub's line of the scenario without merging it)."""
    if ancestor == tip:
        return True
    if not repo.is_ancestor(ancestor, tip):
        return False
    last = None
    for info in repo.walk(tip, [ancestor], first_parent=True):
        last = info
    return last is not None and last.parents[:1] == (ancestor,)


# -- one customer -----------------------------------------------------------------------

def sync_customer(customer: Customer, *, url: str | None = None,
                  progress: Progress | None = None) -> Outcome:
    """Fetch, integrate and push ``customer`` (see the module docstring)."""
    store = customer.store
    url = url or url_of(store, customer)
    outcome = Outcome(customer.name)
    say = progress or (lambda _c, _s: None)
    customer.require()
    cfg = store.config
    with sync_lock(customer):
        if redo_journal(customer):
            customer.audit("sync:journal", detail="finished a sync a crash interrupted")
        for _ in range(MAX_ROUNDS):
            say(customer.name, "fetch")
            repo = customer.repo
            removed = removed_here(repo)
            drop_copies(repo, ((s, None) for s in removed))  # fetched before the purge
            found = remote.fetch(customer.path, url, fetch_specs(removed),
                                 timeout=cfg.sync_timeout, fsync=cfg.fsync)
            hub = Refs.read(repo, TRACKING) if found else Refs()
            say(customer.name, "integrate")
            try:
                if integrate(customer, hub, outcome):
                    continue
            except Moved:
                continue
            travel(customer, outcome)
            specs = push_specs(customer, hub, outcome)
            if not specs:
                break
            say(customer.name, "push")
            try:
                pushed = remote.push(customer.path, url, specs, timeout=cfg.sync_timeout)
            except remote.PushRace:
                continue
            _track(customer, pushed)
            break
        else:
            raise ConflictError(f"{customer.name}: the hub kept moving while syncing; try again")
    _finish(customer, outcome)
    outcome.notes = list(dict.fromkeys(outcome.notes))
    say(customer.name, "done")
    return outcome


@contextlib.contextmanager
def sync_lock(customer: Customer) -> Iterator[None]:
    """Hold the customer's sync lock (one sync or clone of a customer at a time; a
    writer never takes it) and clear what a crashed sync left in its staging space."""
    store = customer.store
    with writer_lock(store.lock_dir, f".sync.{customer.name}", store.config.lock_timeout):
        shutil.rmtree(store.root / STORE_DIR / SYNC_DIR / customer.name, ignore_errors=True)
        yield


def _finish(customer: Customer, outcome: Outcome) -> None:
    store = customer.store
    with contextlib.suppress(GitStoreError, OSError):
        store.catalog.refresh([customer.name])
    with contextlib.suppress(GitStoreError, OSError, ValueError):
        customer.repo.config_set("gitstore.syncedAt", format_rfc3339(store.now()))


def classify(customer: Customer, local: Refs, hub: Refs) -> dict[Scenario, Step]:
    """What to do with each scenario (see :class:`Step`)."""
    repo = customer.repo
    pending = {ref[len(MERGES):] for ref in repo.refs(MERGES)}
    last = repo.config_get("gitstore.lastScenario") or "0"
    seen = max([int(last) if last.isdigit() else 0, *(s.major for s in local.heads)])
    steps: dict[Scenario, Step] = {}
    for s in sorted({*local.heads, *hub.heads}):
        mine, theirs = local.heads.get(s), hub.heads.get(s)
        step = Step(s, mine, theirs, "same")
        if mine is not None and retained(repo, mine):  # the hub's is not even fetched
            step.action, step.why = "skip", "retention purges do not travel; apply them on " \
                                            "the hub"
        elif theirs is None:
            step.action = "new"
        elif mine is None:
            step.action = "skip" if s.major <= seen else "pull"
            step.why = "removed here (retention)" if s.major <= seen else ""
        elif mine == theirs:
            pass
        elif repo.is_ancestor(mine, theirs):
            step.action = "pull"
        elif first_parent_ancestor(repo, theirs, mine):
            step.action = "push"
        elif retained(repo, theirs):
            step.action, step.why = "skip", "retention purges do not travel; apply them on " \
                                            "the hub"
        elif repo.merge_base(mine, theirs) is None:
            same = repo.commit(mine).session_id == repo.commit(theirs).session_id
            step.action = "renumber" if not same else \
                "pending" if str(s) in pending else "review"
        else:
            step.action = "pending" if str(s) in pending else "replay"
        steps[s] = step
    top = max((s.major for s in hub.heads), default=0)
    fresh = sorted(s for s, st in steps.items() if st.action in ("new", "renumber"))
    for n, s in enumerate(fresh, start=top + 1):
        if steps[s].action == "new" and s.major != n:
            steps[s].action = "renumber"
    return steps


def _target(customer: Customer, local: Refs, hub: Refs,
            steps: dict[Scenario, Step], outcome: Outcome) -> dict[str, str]:
    """The refs the customer should end with, before any rebuilding."""
    repo = customer.repo
    target = local.flat()
    for s, st in steps.items():
        if st.action in ("pull", "replay", "renumber") and st.hub is not None:
            target[s.branch_ref] = st.hub
        elif st.action == "renumber":  # rebuilt under its new number
            del target[s.branch_ref]
    for v, oid in hub.tags.items():
        found = steps.get(v.scenario)
        if found is None or found.action in ("review", "pending", "skip"):
            continue
        mine = target.get(v.tag_ref)
        if mine is not None and mine != oid and found.action not in ("replay", "renumber") \
                and peel(repo, mine) != peel(repo, oid):
            outcome.notes.append(f"tag {v} differs from the hub's; left as it is")
            continue
        target[v.tag_ref] = oid
    for v in local.tags:
        found = steps.get(v.scenario)
        if found is not None and found.action in ("replay", "renumber") and v not in hub.tags:
            del target[v.tag_ref]  # provisional: the rebuild cuts what it finalizes
    tips = [t for r, t in target.items() if r.startswith("refs/heads/")]
    for name, oid in local.merged.items():
        if not any(repo.is_ancestor(oid, t) for t in tips):
            del target[MERGED + name]  # its merge is being rebuilt: marked again
    for name, oid in hub.merged.items():  # the merge commit of that scenario, on a branch
        try:
            info = repo.commit(oid)
        except GitStoreError:
            continue
        source = (info.trailer(Trailer.MERGED_FROM) or "").split(" ")[0]
        if info.change == ChangeKind.MERGE and source == name \
                and any(repo.is_ancestor(oid, t) for t in tips):
            target.setdefault(MERGED + name, oid)
    return target


def integrate(customer: Customer, hub: Refs, outcome: Outcome) -> bool:
    """Bring the local refs in line with the hub's (see the module docstring).
    Returns True when a merge was written here and integration must run again."""
    repo = customer.repo
    local = Refs.read(repo)
    steps = classify(customer, local, hub)
    for st in steps.values():
        if st.why:
            outcome.notes.append(f"{st.scenario}: {st.why}")
    while True:
        target = _target(customer, local, hub, steps, outcome)
        work = [st for st in steps.values() if st.action in ("replay", "renumber")]
        staging = None
        if work:
            majors = [s.major for r in target if (s := parse_branch_ref(r)) is not None]
            staging = Staging(customer, target, max(majors, default=0))
            failed = None
            for st in sorted(work, key=lambda x: (x.action == "renumber", x.scenario)):
                assert st.local is not None
                try:
                    if st.action == "replay":
                        assert st.hub is not None
                        staging.replay(st.scenario, st.local, st.hub)
                    else:
                        staging.renumber(st.scenario, st.local)
                except ReplayConflict as exc:
                    # a person decides; a scenario rebuilt under a number of its own has
                    # no history on the hub to merge with: it stays here, unsynced
                    why = str(exc)  # said of this scenario already: without its name
                    st.why = why.removeprefix(f"{st.scenario}: ").removeprefix(
                        f"{st.scenario} ")
                    st.action = "review" if st.action == "replay" else "skip"
                    failed = st
                    break
            if failed is not None:
                staging.remove()
                continue
            target = staging.refs()
        try:
            changes = swap(customer, local.flat(), target, staging)
            _record(customer, local.flat(), changes, staging, outcome)
        finally:
            if staging is not None:
                staging.remove()
        break
    return _reviews(customer, steps, outcome)


def _reviews(customer: Customer, steps: dict[Scenario, Step], outcome: Outcome) -> bool:
    """Prepare a merge for review of every scenario that needs a person; count the
    conflicts of those already waiting. True when a merge went through at once."""
    again = False
    for s, st in sorted(steps.items()):
        if st.action not in ("review", "pending"):
            continue
        source = f"{TRACKING}heads/{s}"
        pending = None
        with contextlib.suppress(NotFoundError):
            pending = customer.pending_merge(s)
        if pending is not None and pending.source == source and not pending.resolutions \
                and (pending.target_commit != st.local or pending.source_commit != st.hub):
            pending.abort()  # prepared by an earlier sync on states since moved
            pending = None
        if pending is None:
            try:
                result = customer.merge(source, into=s, reviewer=customer.store.config.agent)
            except GitStoreError as exc:
                outcome.notes.append(f"{s}: diverged from the hub and no merge could be "
                                     f"prepared ({exc}); {s} is not synced")
                continue
            if result.written is not None:
                outcome.notes.append(f"{s}: merged the hub's history ({st.why or 'diverged'})")
                again = True
                continue
            pending = result
            outcome.notes.append(f"{s}: {st.why or 'diverged'}; review with "
                                 f"`gitstore conflicts {customer.name}`")
        else:
            outcome.notes.append(f"{s}: a merge waits for review (`gitstore conflicts "
                                 f"{customer.name}`); {s} is not synced until it is done")
        outcome.conflicts += len(pending.remaining)
        outcome.pending.append(str(s))
    return again


# -- the access log and the push -------------------------------------------------------

def _record(customer: Customer, before: dict[str, str], changes: list[Change],
            staging: Staging | None, outcome: Outcome) -> None:
    """Count what a swap brought in and record it in the access log: a branch moved
    back (``sync:branch``) or forward, each version tag set or dropped (``sync:tag``)."""
    repo = customer.repo
    written = staging.written if staging is not None else 0
    outcome.merged += written
    old_tips = [t for r, t in before.items() if r.startswith("refs/heads/")]
    pulled: set[str] = set()
    for ref, old, new in changes:
        if new is None or not ref.startswith("refs/heads/"):
            continue
        pulled |= {i.id for i in repo.walk(new, old_tips)}
        scenario = parse_branch_ref(ref)
        if old is not None and not repo.is_ancestor(old, new):
            customer.audit(SYNC_BRANCH, rev=str(scenario), commit=new,
                           detail=f"local changes rebuilt on the hub's history (were "
                                  f"{old[:12]}, kept under {REPLACED})")
        else:
            customer.audit("sync:pull", rev=str(scenario), commit=new)
    outcome.pulled += max(0, len(pulled) - written)
    for ref, _, new in changes:
        if (v := parse_tag_ref(ref)) is not None:
            customer.audit(SYNC_TAG, rev=str(v), commit=peel(repo, new) if new else None)
            outcome.tags_pulled += new is not None


def travel(customer: Customer, outcome: Outcome | None = None) -> str | None:
    """Append the access-log records written since the last sync to this machine's
    travelled log (``refs/gitstore/audit/<log id>``, continuing from the hub's copy
    when that is further on); returns its ref, if any."""
    log = AuditLog(customer.path)
    log.settle(actor=str(customer.store.config.agent))  # the store-wide answers travel too
    log_id = log.log_id()
    if log_id is None:
        return None
    repo = customer.repo
    ref = TRAVEL_REFS + log_id
    tip = repo.ref_target(ref)
    hubs = repo.ref_target(f"{TRACKING}audit/{log_id}")
    if hubs is not None and (tip is None or (tip != hubs and repo.is_ancestor(tip, hubs))):
        repo.update_ref(ref, hubs, tip, "gitstore: the hub's copy of this access log")
        tip = hubs
    after, prev, files = 0, GENESIS, {}
    if tip is not None:
        head = (repo.commit(tip).trailer(TRAVEL_TRAILER) or "").split()
        if len(head) != 3 or not head[0].isdigit():
            return ref
        after, prev = int(head[0]), head[1]
        files = repo.read_tree(tip)
    lines, problem = log.unsent(after, prev)
    if problem is not None and outcome is not None:
        outcome.notes.append(f"the access log travels up to its damage: {problem}")
    if not lines:
        return ref
    last = after + len(lines)
    digest = json.loads(lines[-1])["hash"]
    files[batch_name(after + 1, last)] = b"".join(lines)
    store = customer.store
    when = store.now()
    message = (f"access log of {customer.name}: records {after + 1}..{last}\n\n"
               f"{TRAVEL_TRAILER}: {last} {digest} {log_id}\n")
    commit = repo.write_commit(tree=repo.write_tree(files), parents=[tip] if tip else [],
                               author=store.config.committer,
                               committer=store.config.committer, message=message,
                               time=int(when.timestamp()), offset=0, sign=store.signer)
    repo.update_ref(ref, commit, tip, "gitstore: the access log travels")
    return ref


def push_specs(customer: Customer, hub: Refs, outcome: Outcome) -> list[str]:
    """What to push: branches the hub's tip is a first-parent ancestor of (or that
    the hub lacks), the version tags it lacks on them, merge markers and this
    machine's access log. Counts commits and tags into ``outcome``."""
    repo = customer.repo
    local = Refs.read(repo)
    specs: list[str] = []
    tips: list[str] = list(hub.heads.values())
    commits: set[str] = set()
    for s, tip in sorted(local.heads.items()):
        theirs = hub.heads.get(s)
        if tip == theirs or retained(repo, tip):  # a purge here does not travel
            continue
        if theirs is None or first_parent_ancestor(repo, theirs, tip):
            specs.append(f"{s.branch_ref}:{s.branch_ref}")
            commits |= {i.id for i in repo.walk(tip, list(hub.heads.values()))}
            tips.append(tip)
    for v, oid in sorted(local.tags.items()):
        if v in hub.tags:
            continue
        branch = local.heads.get(v.scenario)
        if branch is not None and any(t == branch for t in tips) \
                and repo.is_ancestor(peel(repo, oid), branch):
            specs.append(f"{v.tag_ref}:{v.tag_ref}")
            outcome.tags_pushed += 1
    for name, oid in sorted(local.merged.items()):
        if name not in hub.merged and any(repo.is_ancestor(oid, t) for t in tips):
            specs.append(f"{MERGED}{name}:{MERGED}{name}")
    own = AuditLog(customer.path).log_id()
    if own is not None and own in local.logs and local.logs[own] != hub.logs.get(own):
        ref = TRAVEL_REFS + own
        if hub.logs.get(own) is None or repo.is_ancestor(hub.logs[own], local.logs[own]):
            specs.append(f"{ref}:{ref}")
        else:
            outcome.notes.append(f"the hub's copy of this machine's access log ({own}) is "
                                 "not an ancestor of the local one; it does not travel")
    outcome.pushed += len(commits)
    return specs


def _track(customer: Customer, pushed: Iterable[remote.PushedRef]) -> None:
    """Point the tracking refs at what the hub now holds (as a fetch would)."""
    repo = customer.repo
    for r in pushed:
        if r.rejected:
            continue
        rest = r.remote[len("refs/"):]
        for prefix, short in (("gitstore/merged/", "merged/"), ("gitstore/audit/", "audit/")):
            if rest.startswith(prefix):
                rest = short + rest[len(prefix):]
        new = repo.ref_target(r.local)
        if new is None:
            continue
        with contextlib.suppress(backend.RefConflict):
            repo.update_ref(TRACKING + rest, new, repo.ref_target(TRACKING + rest),
                            "gitstore: pushed to the hub")
