"""Replaying local changes on the hub's history, in a staging repository.

When a scenario moved both here and on the hub, ``gitstore sync`` rebuilds this
machine's changes on top of the hub's tip, change by change, the way a person
would redo them: a turn is appended again, a document update merged into the
document as the hub has it (field by field: :func:`gitstore.core.merge.merge`,
base the change's parent), a finalize finalizes the version that is open there,
a follow-up opens the next one, a correction corrects the newest version. Every
replayed change goes through the :class:`~gitstore.store.writer.Writer` (the
whole pipeline runs, the version rules hold) with its original author, author
time and idempotency key, and records ``Replayed-From: <original commit>``.

The work happens in a staging repository under ``<root>/.gitstore/sync/``: it
reads every object of the customer's repository (``objects/info/alternates``)
and starts from the refs the sync wants to end with (the hub's branches and
tags for the scenarios being rebuilt); the customer's own repository changes
only when the sync swaps the result in (:mod:`gitstore.ops.sync`), so readers
never see a half-rebuilt scenario and a crash leaves the repository untouched.

Rules (each decides nothing a person should decide):

* a data change to a version the hub has meanwhile finalized is new
  information: it opens the follow-up version first (as a merge does);
* a finalize or follow-up the hub's history already made is not made twice;
* a correction of a version the hub has followed up becomes an update of the
  open follow-up (it reaches every later reader when that is finalized);
* a reviewed merge of the hub's history (``gitstore merge`` of the hub's tip,
  after a conflict) is replayed as one change: the merged documents, with the
  merge's ``Reviewed-By`` and ``Resolved`` trailers; the commits it joined stay
  in the local history kept under ``refs/gitstore/sync/replaced/``;
* a scenario created here and on the hub under the same number (two machines
  each opened "the next" scenario offline) is rebuilt as the next free number;
* anything that does not replay cleanly (the same field changed differently on
  both sides, a turn older than the hub's finalized turns, a finalize the
  merged documents do not satisfy) raises :class:`ReplayConflict`: the sync
  then leaves the scenario as it is here and prepares a merge for review.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gitstore.catalog.index import Index
from gitstore.core.commits import ChangeKind, CommitInfo, Identity, Trailer
from gitstore.core.merge import merge
from gitstore.core.names import CONV, JSON_DOCUMENTS, MERGED, META, STORE_DIR
from gitstore.core.versions import Scenario, next_scenario, parse_branch_ref
from gitstore.errors import (
    ConflictError,
    GitStoreError,
    InvalidDocumentError,
    RenderError,
    UsageError,
    VersionRuleError,
)
from gitstore.git import remote
from gitstore.git import repo as backend
from gitstore.git.locking import private_dirs
from gitstore.store import history, merges
from gitstore.store.facade import Customer, Store
from gitstore.store.session import Session
from gitstore.store.tip import State, read_state
from gitstore.store.writer import Build, Writer, Written

REPLACED = "refs/gitstore/sync/replaced/"
"""What a sync moved back, replaced or dropped, kept here (local only, never pushed)."""
JOURNAL = "gitstore-sync.json"
"""The journal of a swap in progress, in the customer's repository directory."""
Change = tuple[str, str | None, str | None]
"""One ref a swap changes: ``(ref, old id or None, new id or None)``."""
REPLAYED_FROM = "Replayed-From"
"""The trailer naming the local commit a replayed change was made from."""
SYNC_DIR = "sync"
"""Staging space for syncs: ``<root>/.gitstore/sync/<customer>/``."""
DATA_KINDS = (ChangeKind.TURN, ChangeKind.UPDATE, ChangeKind.EXPIRE)
#: What a change that cannot be replayed here looks like (a person decides instead).
REFUSALS = (InvalidDocumentError, VersionRuleError, RenderError, ConflictError, UsageError)


class Moved(ConflictError):
    """The customer's refs changed while a sync prepared its swap (a write here
    meanwhile): the sync starts the round again."""


class ReplayConflict(Exception):
    """A local change that does not replay cleanly on the hub's history."""


class StagingIndex(Index):
    """The store's index, read-only: a staged write is not recorded in it (the swap
    brings the index up to date), while the session-id check still sees the store."""

    def record(self, customer_name: str, scenario: str | Scenario, tip_commit: str,
               files: Mapping[str, bytes], parsed: Any = None, unchanged_turns: int = 0,
               repo: Any = None, since: str | None = None) -> bool:
        return True


class StagedCustomer(Customer):
    """The customer as rebuilt in a staging repository: no other process knows it,
    so it takes no writer lock and appends no access-log record (the sync records
    what it swaps in)."""

    def __init__(self, store: Store, name: str, path: Path, api_key: str | None) -> None:
        super().__init__(store, name, api_key)
        self.path = path

    shared = False

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None,
               until: Callable[[], Any] | None = None) -> Iterator[None]:
        yield None

    def audit(self, op: str, *, rev: str | None = None, commit: str | None = None,
              document: str | None = None, detail: str | None = None,
              actor: str | None = None) -> None:
        return None


class ReplayWriter(Writer):
    """A writer that marks what it writes as replayed from ``source`` (and may keep
    the original data change kind: a turn written as a whole conversation). It
    writes its own turns alone: never other writers' (no group commit)."""

    group_commit = False

    def __init__(self, customer: Customer, extra: tuple[tuple[str, str], ...],
                 change: str | None = None) -> None:
        super().__init__(customer)
        self.extra = extra
        self.change = change

    def write(self, scenario: Scenario, build: Build, by: Any = None) -> Written:
        # found on a commit replayed from the same source, the key is that replay,
        # whichever write carried it (a turn may come back as a put); found on any
        # other commit (the hub's own write under the same key), it is checked as
        # every key is: the same write, or refused, and the sync merges instead
        source = dict(self.extra).get(REPLAYED_FROM)
        if by is not None and by.intent is not None and source is not None:
            by = by._replace(intent=by.intent._replace(same_as=(REPLAYED_FROM, source)))

        def marked(state: State) -> Any:
            plan = build(state)
            kind = self.change if self.change and not plan.finalizing else plan.change
            return replace(plan, change=kind,
                           extra_trailers=(*plan.extra_trailers, *self.extra))
        return super().write(scenario, marked, by)


@dataclass
class Replayed:
    """What rebuilding one scenario wrote: commits, and the scenario it ended in."""

    scenario: Scenario
    commits: int = 0


def _when(info: CommitInfo) -> datetime:
    ts = info.author_time if info.author_time is not None else info.time
    offset = info.author_offset if info.author_offset is not None else info.offset
    return datetime.fromtimestamp(ts, timezone(timedelta(minutes=offset)))


class Staging:
    """A staging repository for one customer: ``refs`` set, scenarios rebuilt."""

    def __init__(self, customer: Customer, refs: dict[str, str], last_scenario: int) -> None:
        store = customer.store
        base = store.root / STORE_DIR / SYNC_DIR / customer.name
        private_dirs(base, levels=3)
        self.dir = base / uuid.uuid4().hex
        self.dir.mkdir(mode=0o700)
        path = self.dir / customer.name
        backend.Repo.create(path, description=f"gitstore sync staging of {customer.name}",
                            head=Scenario(1).branch_ref, committer=store.config.committer)
        remote.share_objects(path, customer.path)
        staged_store = copy.copy(store)
        staged_store.config = store.config._replace(maintenance_bytes=0)
        staged_store.__dict__["catalog"] = StagingIndex(store)
        self.customer = StagedCustomer(staged_store, customer.name, path, customer.api_key)
        repo = self.customer.repo
        for ref, target in sorted(refs.items()):
            repo.create_ref(ref, target, "gitstore: sync staging")
        repo.config_set("gitstore.lastScenario", str(last_scenario))
        self.written = 0
        self.reopened: set[Scenario] = set()

    @property
    def path(self) -> Path:
        return self.customer.path

    def refs(self) -> dict[str, str]:
        repo = self.customer.repo
        return {**repo.refs("refs/heads/"), **repo.refs("refs/tags/"), **repo.refs(MERGED)}

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- reading --------------------------------------------------------------------
    def docs(self, commit: str | None) -> dict[str, Any]:
        if commit is None:
            return {}
        return history.read(self.customer, commit).documents()

    def state(self, scenario: Scenario) -> State:
        return read_state(self.customer.repo, scenario)

    # -- rebuilding -----------------------------------------------------------------
    def replay(self, scenario: Scenario, local_tip: str, hub_tip: str) -> Replayed:
        """Rebuild the local changes of ``scenario`` (its commits from ``local_tip``
        back to the hub's history) on the staged branch, which is at ``hub_tip``."""
        repo = self.customer.repo
        items: list[tuple[CommitInfo, str | None, bool]] = []
        for info in repo.walk(local_tip, [hub_tip], first_parent=True):
            joined = next((p for p in info.parents[1:] if repo.is_ancestor(p, hub_tip)), None)
            if joined is not None:  # a reviewed merge of the hub's history: one change
                items.append((info, joined, True))
                break
            items.append((info, info.parents[0] if info.parents else None, False))
        done = Replayed(scenario)
        for info, base, collapsed in reversed(items):
            done.commits += self.apply(scenario, info, self.docs(base), collapsed)
        return done

    def renumber(self, scenario: Scenario, local_tip: str) -> Replayed:
        """Rebuild the whole local ``scenario`` as the next free scenario number."""
        repo = self.customer.repo
        chain = list(reversed(list(repo.walk(local_tip, first_parent=True))))
        first = chain[0]
        docs = self.docs(first.id)
        meta = copy.deepcopy(docs.get(META))
        if isinstance(meta, dict) and isinstance(meta.get("session_info"), dict):
            meta["session_info"].pop("session_version", None)
        session_id = first.session_id or (meta or {}).get("session_info", {}).get("session_id")
        if not isinstance(session_id, str):
            raise ReplayConflict(f"{scenario}: its first commit names no session id")
        new = next_scenario([*self.customer.scenarios(), *self.customer.retired_scenarios()])
        try:
            session = Session.create(
                self.customer, session_id=session_id, metadata=meta, allow_open=True,
                author=str(first.author), at=_when(first), version=new,
                message=f"{new}: start session {session_id} (opened here as {scenario}, "
                        f"renumbered by sync from {first.id[:12]})")
        except REFUSALS as exc:
            raise ReplayConflict(f"{scenario}: {exc}") from None
        self.written += 1
        done = Replayed(session.scenario, 1)
        done.commits += self.apply(session.scenario, first, self.docs(session.state.tip),
                                   False, data_only=True)
        for info in chain[1:]:
            base = info.parents[0] if info.parents else None
            done.commits += self.apply(session.scenario, info, self.docs(base), False)
        return done

    def apply(self, scenario: Scenario, info: CommitInfo, base: dict[str, Any],
              collapsed: bool, *, data_only: bool = False) -> int:
        """Replay one local commit on the staged scenario; returns commits written."""
        kind = info.change or ChangeKind.UPDATE
        try:
            if collapsed or data_only:
                return self._data(scenario, info, base, ChangeKind.UPDATE, collapsed)
            if kind == ChangeKind.FINALIZE:
                if self.state(scenario).finalized:
                    return 0
                count = self._completion(scenario, info)
                self.reopened.discard(scenario)
                return count + self._count(self._session(scenario, info).finalize(
                    message=info.trailer(Trailer.REASON), **self._by(info)))
            if kind == ChangeKind.FOLLOW_UP:
                if not self.state(scenario).finalized:
                    return 0
                return self._count(self._session(scenario, info).follow_up(
                    message=info.trailer(Trailer.REASON), **self._by(info)))
            if kind == ChangeKind.MERGE:
                return self._merge(scenario, info, base)
            if kind in (*DATA_KINDS, ChangeKind.CORRECTION, ChangeKind.CREATE):
                return self._data(scenario, info, base, kind, False)
        except REFUSALS as exc:
            raise ReplayConflict(f"{scenario} {info.id[:12]} ({kind}): {exc}") from None
        raise ReplayConflict(f"{scenario} {info.id[:12]}: a {kind} change does not travel; "
                             "apply it on the hub")

    def _by(self, info: CommitInfo, key: bool = True) -> dict[str, Any]:
        found = info.trailer(Trailer.IDEMPOTENCY_KEY) if key else None
        return {"author": str(info.author), "at": _when(info), "idempotency_key": found}

    def _session(self, scenario: Scenario, info: CommitInfo, change: str | None = None,
                 *extra: tuple[str, str]) -> Session:
        session = Session(self.customer, scenario)
        session.writer = ReplayWriter(self.customer, ((REPLAYED_FROM, info.id), *extra), change)
        return session

    def _count(self, written: Written) -> int:
        fresh = not written.replayed and written.change != "unchanged"
        self.written += fresh
        return int(fresh)

    def _merged(self, scenario: Scenario, base: dict[str, Any], docs: dict[str, Any]
                ) -> tuple[State, dict[str, Any], list[str]]:
        state = self.state(scenario)
        tip = self.docs(state.tip)
        result = merge(base, tip, docs)
        if result.conflicts:
            shown = ", ".join(f"{c.document}#{c.pointer or '/'}" for c in result.conflicts[:3])
            raise ReplayConflict(f"{scenario}: changed differently here and on the hub: {shown}")
        changed = [n for n in JSON_DOCUMENTS
                   if n in result.documents and result.documents[n] != tip.get(n)]
        return state, result.documents, changed

    def _data(self, scenario: Scenario, info: CommitInfo, base: dict[str, Any], kind: str,
              collapsed: bool) -> int:
        docs = self.docs(info.id)
        state, merged, changed = self._merged(scenario, base, docs)
        if not changed:
            return 0
        extra = [(k, v) for k in (Trailer.REVIEWED_BY, Trailer.RESOLVED)
                 if collapsed and (v := info.trailer(k))]
        change = kind if kind in DATA_KINDS else None
        reason = info.trailer(Trailer.REASON) or "data correction (made offline)"
        if kind == ChangeKind.CORRECTION and state.finalized:
            return self._count(self._session(scenario, info).correct(
                {n: merged[n] for n in changed}, reason=reason, **self._by(info)))
        count = 0
        if state.finalized:  # new information after the hub finalized: a follow-up first
            count += self._count(self._session(scenario, info, None).follow_up(
                message=f"opened by sync: changes made offline after {state.version} was "
                        "finalized elsewhere", author=str(info.author), at=_when(info)))
            self.reopened.add(scenario)
            state, merged, changed = self._merged(scenario, base, docs)
        by = self._by(info)
        for name in changed:
            session = self._session(scenario, info, change, *extra)
            tip_conv = self.docs(state.tip).get(CONV, {}) if name == CONV else {}
            added = _appended(tip_conv, merged[name]) if kind == ChangeKind.TURN else None
            if added:
                for turn in added:
                    count += self._count(session.append_turn(turn, **by))
                    session = self._session(scenario, info, change, *extra)
                    by = {**by, "idempotency_key": None}
            else:
                count += self._count(session.put(name, merged[name], **by))
            by = {**by, "idempotency_key": None}  # one key names one commit
        return count

    def _completion(self, scenario: Scenario, info: CommitInfo) -> int:
        """Before a finalize replays on a version this replay opened (the hub had
        finalized the one it was made on), bring back the completion it was made
        with (``completed_timestamp``, ``completion_status``): the follow-up cleared
        them, and the finalize concludes the same conversation it did here."""
        if scenario not in self.reopened:
            return 0
        mine = self.docs(info.id).get(META)
        meta = copy.deepcopy(self.docs(self.state(scenario).tip).get(META))
        if not isinstance(mine, dict) or not isinstance(meta, dict):
            return 0
        info_in, info_out = mine.get("session_info"), meta.get("session_info")
        if isinstance(info_in, dict) and isinstance(info_out, dict):
            info_out["completed_timestamp"] = info_in.get("completed_timestamp")
            info_out["session_duration_minutes"] = None
        flow_in, flow_out = mine.get("workflow_tracking"), meta.get("workflow_tracking")
        if isinstance(flow_in, dict) and isinstance(flow_out, dict) \
                and "completion_status" in flow_in:
            flow_out["completion_status"] = flow_in["completion_status"]
        return self._count(self._session(scenario, info, ChangeKind.UPDATE).put(
            META, meta, author=str(info.author), at=_when(info)))

    def _merge(self, scenario: Scenario, info: CommitInfo, base: dict[str, Any]) -> int:
        """A local merge of another scenario: merged again into the rebuilt one."""
        source = (info.trailer(Trailer.MERGED_FROM) or "").split(" ")[0]
        if not Scenario.is_name(source) or \
                self.customer.repo.ref_target(Scenario.parse(source).branch_ref) is None:
            return self._data(scenario, info, base, ChangeKind.UPDATE, False)
        reviewer = info.trailer(Trailer.REVIEWED_BY)
        who = Identity.parse(reviewer) if reviewer else info.author
        pending = merges.prepare(self.customer, source, scenario, reviewer=who)
        if pending.conflicts:
            raise ReplayConflict(f"{scenario}: merging {source} again has conflicts")
        return self._count(pending.commit(reviewer=who, at=_when(info)))


def _appended(tip: Any, merged: Any) -> list[dict[str, Any]] | None:
    """The turns ``merged`` adds at the end of ``tip``'s conversation (without their
    turn ids, to be appended again), or None when it changes more than that."""
    old = tip.get("conversation_turns") if isinstance(tip, dict) else None
    new = merged.get("conversation_turns") if isinstance(merged, dict) else None
    if not isinstance(old, list) or not isinstance(new, list) or len(new) <= len(old):
        return None
    if new[:len(old)] != old:
        return None
    rest = {k: v for k, v in merged.items() if k != "conversation_turns"}
    before = {k: v for k, v in tip.items() if k != "conversation_turns"}
    summary = dict(rest.get("conversation_summary") or {})
    summary.pop("total_turns", None)
    was = dict(before.get("conversation_summary") or {})
    was.pop("total_turns", None)
    if summary != was or {k: v for k, v in rest.items() if k != "conversation_summary"} != \
            {k: v for k, v in before.items() if k != "conversation_summary"}:
        return None
    added = [t for t in new[len(old):] if isinstance(t, dict)]
    return [{k: v for k, v in t.items() if k != "turn_id"} for t in added] \
        if len(added) == len(new) - len(old) else None


# -- the swap --------------------------------------------------------------------------------

def _order(change: Change) -> tuple[int, str]:
    ref, _, new = change
    rank = 3 if new is None else 0 if ref.startswith("refs/tags/") else \
        1 if ref.startswith(MERGED) else 2
    return rank, ref


def swap(customer: Customer, before: dict[str, str], target: dict[str, str],
         staging: Staging | None) -> list[Change]:
    """Swap ``target`` (ref -> id: branches, tags, markers) in for the refs read as
    ``before``, under the writer lock: objects a staging repository wrote are
    copied in, a journal names every change (:func:`redo_journal` finishes it after
    a crash), what is moved back, replaced or dropped is kept under
    :data:`REPLACED`, tags move first and branches last. ConflictError if the
    refs changed since ``before`` (a write meanwhile: sync again)."""
    with customer.locked():
        repo = customer.repo
        now = {**repo.refs("refs/heads/"), **repo.refs("refs/tags/"), **repo.refs(MERGED)}
        changes = sorted(((r, now.get(r), target.get(r)) for r in {*now, *target}
                          if now.get(r) != target.get(r)), key=_order)
        if not changes:
            return []
        if now != before:
            raise Moved(f"{customer.name} changed while syncing; sync again")
        _write_journal(customer, changes)
        if staging is not None:
            remote.copy_objects(staging.path, customer.path,
                                fsync=customer.store.config.fsync)
        for ref, old, new in changes:
            _keep(repo, ref, old, new)
        for ref, old, new in changes:
            _set(repo, ref, old, new)
        (customer.path / JOURNAL).unlink(missing_ok=True)
        _fix_head(repo)
    return changes


def _keep(repo: backend.Repo, ref: str, old: str | None, new: str | None) -> None:
    """Keep what a swap moves back, drops or replaces under :data:`REPLACED`."""
    if old is None or (new is not None and ref.startswith("refs/heads/") \
            and repo.is_ancestor(old, new)):
        return
    kept = f"{REPLACED}{ref[len('refs/'):]}/{old[:12]}"
    with contextlib.suppress(backend.RefConflict):
        repo.create_ref(kept, old, f"gitstore: sync replaced {ref}")


def _set(repo: backend.Repo, ref: str, old: str | None, new: str | None) -> None:
    if new is None:
        if old is not None:
            repo.delete_ref(ref, old)
    elif old is None:
        repo.create_ref(ref, new, "gitstore: sync")
    else:
        repo.update_ref(ref, new, old, "gitstore: sync")


def _fix_head(repo: backend.Repo) -> None:
    heads = sorted(s for ref in repo.refs("refs/heads/") if (s := parse_branch_ref(ref)))
    if not heads:
        return
    merged = repo.refs(MERGED)
    live = [s for s in heads if MERGED + str(s) not in merged]
    repo.set_head((live or heads)[-1].branch_ref)
    last = repo.config_get("gitstore.lastScenario") or "0"
    if not last.isdigit() or int(last) < heads[-1].major:
        repo.config_set("gitstore.lastScenario", str(heads[-1].major))


def _write_journal(customer: Customer, changes: list[Change]) -> None:
    path = customer.path / JOURNAL
    data = json.dumps({"format": "gitstore-sync-journal", "changes": changes}).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def redo_journal(customer: Customer) -> bool:
    """Finish a swap a crash interrupted: each ref still at its old value (and whose
    new object exists) moves on; the others are left as they are. True if there
    was one to finish."""
    path = customer.path / JOURNAL
    if not path.is_file():
        return False
    try:
        changes = json.loads(path.read_bytes())["changes"]
    except (OSError, ValueError, KeyError, TypeError):
        changes = []
    with customer.locked():
        repo = customer.repo
        for ref, old, new in changes:
            with contextlib.suppress(GitStoreError, backend.RefConflict):
                current = repo.ref_target(ref)
                if current == old and (new is None or repo.resolve(new)):
                    _keep(repo, ref, old, new)
                    _set(repo, ref, old, new)
        path.unlink(missing_ok=True)
        _fix_head(repo)
    return True


def peel(repo: backend.Repo, oid: str) -> str:
    """The commit a tag object (or a commit id) names."""
    tag = repo.tag_object(oid)
    return tag.target if tag is not None else oid
