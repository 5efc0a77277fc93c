"""Expiry of idle sessions and the seed's retention policies (``docs/retention.md``
describes the policy file, the decisions and what a purge leaves).

Invariants:

* expiry never deletes: it is one ``Change: expire`` commit, written through the
  writer, on an open version whose last commit is older than the timeout;
* a purge runs under the customer's writer lock and recomputes its plan there,
  so a scenario that became active meanwhile is kept; tags go before the branch,
  so a purge interrupted by a crash is finished by running it again;
* what a purge keeps (the analytics summary, while its own period lasts) is a
  root commit without ``Session-Version``: no version exists on it and nothing
  can be written on top of it;
* after a purge no object, ref or reflog entry reaches the purged data, and
  every purge leaves a content-free tombstone in the audit log.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gitstore.core import canonical, manifest, sealed
from gitstore.core.commits import FINALIZING, Identity, Message, trailers, version_of
from gitstore.core.names import JSON_DOCUMENTS, MANIFEST, STORE_DIR
from gitstore.core.time import format_duration, from_timestamp, parse_duration, try_parse_rfc3339
from gitstore.core.time import format_rfc3339 as iso
from gitstore.core.versions import Scenario, parse_branch_ref, parse_tag_ref
from gitstore.errors import ConflictError, NotFoundError, UsageError
from gitstore.git import repo as backend
from gitstore.git.locking import writer_lock
from gitstore.ops import encryption, tracking
from gitstore.ops.maintenance import maintain_locked
from gitstore.rules.proposal import Proposal
from gitstore.store.facade import Customer, Store
from gitstore.store.masterkey import write_atomic
from gitstore.store.merges import drop_pending
from gitstore.store.tip import State, load_doc, read_state
from gitstore.store.writer import Authorship, Plan, Writer

CONV, CTX, META, ANA = JSON_DOCUMENTS
POLICY_FILE = "policy.json"
RETENTION_CHANGE = "retention"
EXPIRE_CHANGE = "expire"
DAMAGED_DIR = "gitstore-damaged"
PRUNE_PENDING = "gitstore-prune-pending"
"""In a repository's git directory while purged objects still await the prune."""
YEAR = timedelta(days=365)



def parse_period(value: Any, what: str = "duration") -> timedelta | None:
    """A policy period in the store's one duration grammar
    (:func:`gitstore.core.time.parse_duration`): ``"7d"``, ``"2_year_retention"``;
    ``indefinite`` or None mean keep forever. A period must be a string and
    longer than zero."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"invalid {what} {value!r}: write a duration such as 7d, 2y or "
                         "2_year_retention")
    delta = parse_duration(value, what=what, allow_indefinite=True)
    if delta is not None and delta <= timedelta(0):
        raise UsageError(f"invalid {what} {value!r}: a period must be longer than zero")
    return delta


def _age(delta: timedelta) -> str:
    secs = max(0, int(delta.total_seconds()))
    if secs >= 86400:
        return f"{secs // 86400}d"
    if secs >= 3600:
        return f"{secs // 3600}h"
    return f"{secs // 60}m"


@dataclass(frozen=True)
class Policy:
    """A store's expiry timeout and retention periods (None: indefinite)."""

    expiry: timedelta | None = None
    active_customer_sessions: timedelta | None = None
    completed_sessions: timedelta | None = 2 * YEAR
    error_logs: timedelta | None = YEAR
    analytics_summaries: timedelta | None = 5 * YEAR
    encrypted_sessions: str = "purge"
    """What retention does to an encrypted customer's session whose period is
    over: ``purge`` (as for any session) or ``shred`` (destroy its key, keep its
    history: :func:`gitstore.ops.encryption.shred`)."""

    def period(self, name: str) -> timedelta | None:
        value: timedelta | None = getattr(self, name)
        return value

    def to_json(self) -> dict[str, Any]:
        return {"expiry": format_duration(self.expiry) if self.expiry else None,
                "retention_policies": {f.name: format_duration(getattr(self, f.name))
                                       for f in fields(self)
                                       if f.name not in ("expiry", "encrypted_sessions")},
                "encrypted_sessions": self.encrypted_sessions}


def load_policy(root: Path) -> Policy:
    """The store's policy: ``<root>/.gitstore/policy.json`` over the defaults."""
    path = root / STORE_DIR / POLICY_FILE
    policy = Policy()
    if not path.is_file():
        return policy
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"expiry", "retention_policies",
                                                   "encrypted_sessions"}:
        raise UsageError(f"{path}: expected an object with 'expiry', 'retention_policies' "
                         "and/or 'encrypted_sessions'")
    changes: dict[str, Any] = {}
    if "encrypted_sessions" in data:
        if data["encrypted_sessions"] not in ("purge", "shred"):
            raise UsageError(f"{path}: encrypted_sessions is 'purge' or 'shred'")
        changes["encrypted_sessions"] = data["encrypted_sessions"]
    if "expiry" in data:
        changes["expiry"] = parse_period(data["expiry"], f"{path}: expiry")
    periods = data.get("retention_policies", {})
    known = {f.name for f in fields(Policy)} - {"expiry", "encrypted_sessions"}
    if not isinstance(periods, dict) or set(periods) - known:
        raise UsageError(f"{path}: retention_policies may only set {', '.join(sorted(known))}")
    for key, value in periods.items():
        changes[key] = parse_period(value, f"{path}: {key}")
    return replace(policy, **changes)


# -- expiry ----------------------------------------------------------------------

@dataclass(frozen=True)
class Expiry:
    """An open version found idle; ``commit`` is the expire commit (None: dry run
    or skipped), ``skipped`` says why it was not expired after all."""

    customer: str
    scenario: str
    version: str
    last_commit: str
    last_activity: datetime
    idle: timedelta
    commit: str | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "scenario": self.scenario, "version": self.version,
                "last_commit": self.last_commit, "last_activity": iso(self.last_activity),
                "idle": _age(self.idle), "commit": self.commit, "skipped": self.skipped}


class _Skip(Exception):
    pass


def _completion_status(meta: Any) -> Any:
    workflow = meta.get("workflow_tracking") if isinstance(meta, dict) else None
    return workflow.get("completion_status") if isinstance(workflow, dict) else None


def idle_versions(store: Store, timeout: timedelta, customers: Iterable[str] | None = None,
                  now: datetime | None = None) -> list[Expiry]:
    """Open versions whose last commit is at least ``timeout`` old and that are
    not already expired."""
    now = now or store.now()
    found = []
    for name in customers if customers is not None else store.customers():
        customer = store.customer_named(name)
        for scenario in customer.scenarios():
            try:
                state = read_state(customer.repo, scenario)
            except NotFoundError:  # a retained analytics summary: no version
                continue
            if _expirable(state) and now - from_timestamp(state.info.time) >= timeout:
                found.append(Expiry(customer.name, str(scenario), str(state.version), state.tip,
                                    from_timestamp(state.info.time),
                                    now - from_timestamp(state.info.time)))
    return found


def _expirable(state: State) -> bool:
    if state.finalized or state.info.trailer("Change") == EXPIRE_CHANGE:
        return False
    try:
        return bool(_completion_status(load_doc(state, META)) != "expired")
    except canonical.JSONParseError:
        return True


def expire(store: Store, *, older_than: timedelta | None = None, dry_run: bool = False,
           customers: Iterable[str] | None = None) -> list[Expiry]:
    """Record expiry on every idle open version (see the module docstring).

    ``older_than`` overrides the policy's ``expiry``; with neither, refuses."""

    timeout = older_than if older_than is not None else load_policy(store.root).expiry
    if timeout is None:
        raise UsageError("no expiry timeout: pass --older-than (e.g. 7d) or set \"expiry\" in "
                         f"{store.root / STORE_DIR / POLICY_FILE}")
    now = store.now()
    found = idle_versions(store, timeout, customers, now)
    if dry_run:
        return found
    done = []
    for item in found:
        customer = store.customer_named(item.customer)
        writer = Writer(customer)

        def build(state: State, timeout: timedelta = timeout) -> Plan:
            last = from_timestamp(state.info.time)
            if not _expirable(state) or now - last < timeout:
                raise _Skip(f"new activity at {iso(last)}")
            meta = load_doc(state, META)
            workflow = meta.get("workflow_tracking")
            if not isinstance(workflow, dict):
                workflow = meta["workflow_tracking"] = {}
            workflow["completion_status"] = "expired"
            files = {**state.files, META: canonical.dumps(meta)}
            return Plan(files, state.version, EXPIRE_CHANGE,
                         f"{state.version}: expire after {_age(now - last)} without activity",
                         frozenset({META}),
                         reason=f"no activity since {iso(last)}; expiry timeout "
                                f"{format_duration(timeout)}")

        try:
            written = writer.write(Scenario.parse(item.scenario), build, Authorship())
        except _Skip as skip:
            done.append(replace(item, skipped=str(skip)))
            continue
        done.append(replace(item, commit=written.commit))
    return done


# -- retention -----------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One retention decision: a scenario (``target`` ``v1``) or a set of
    damaged objects (``target`` ``gitstore-damaged/<time>``), kept or to go."""

    customer: str
    target: str
    action: str  # keep | purge | purge-keep-analytics | purge-analytics | delete | shred
    status: str  # active | completed | expired | retained | error-log
    policy: str
    period: timedelta | None
    since: datetime
    basis: str
    age: timedelta
    versions: tuple[str, ...] = ()
    tip: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    keep_until: datetime | None = None
    session_id: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def goes(self) -> bool:
        return self.action != "keep"

    @property
    def reason(self) -> str:
        rule = f"{self.policy}={format_duration(self.period)}"
        what = f"{self.status} {_age(self.age)} ago ({self.basis} {iso(self.since)})"
        if not self.goes:
            return f"{what}; {rule} keeps it"
        kept = ""
        if self.action == "purge-keep-analytics":
            until = iso(self.keep_until) if self.keep_until else "indefinitely"
            kept = f"; keeps {ANA} until {until} (analytics_summaries)"
        return f"{what}; {rule}{kept}"

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "target": self.target, "action": self.action,
                "status": self.status, "policy": self.policy,
                "period": format_duration(self.period), "basis": self.basis,
                "since": iso(self.since), "age_days": round(self.age.total_seconds() / 86400, 2),
                "versions": list(self.versions), "tip": self.tip,
                "keep_until": iso(self.keep_until) if self.keep_until else None,
                "reason": self.reason}


def plan(store: Store, customers: Iterable[str] | None = None,
         policy: Policy | None = None, now: datetime | None = None) -> list[Item]:
    """Every retention decision for ``customers`` (default: all), kept ones included."""
    policy = policy or load_policy(store.root)
    now = now or store.now()
    out: list[Item] = []
    for name in customers if customers is not None else store.customers():
        out.extend(plan_customer(store.customer_named(name), policy, now))
    return out


def plan_customer(customer: Customer, policy: Policy, now: datetime) -> list[Item]:
    repo = customer.repo
    tags = repo.refs("refs/tags/")
    items = []
    for ref, tip in sorted(repo.refs("refs/heads/").items()):
        scenario = parse_branch_ref(ref)
        if scenario is not None:
            mine = tuple(sorted((r, t) for r, t in tags.items()
                                if (v := parse_tag_ref(r)) is not None
                                and v.major == scenario.major))
            items.append(_scenario_item(customer, repo, scenario, tip, mine, policy, now))
    damaged = customer.path / DAMAGED_DIR
    for entry in sorted(damaged.iterdir()) if damaged.is_dir() else ():
        try:
            since = datetime.strptime(entry.name, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            since = from_timestamp(int(entry.stat().st_mtime))
        period = policy.error_logs
        goes = period is not None and now - since >= period
        items.append(Item(customer.name, f"{DAMAGED_DIR}/{entry.name}",
                          "delete" if goes else "keep", "error-log", "error_logs", period,
                          since, "set aside by repair", now - since))
    return items


def _scenario_item(customer: Customer, repo: backend.Repo, scenario: Scenario, tip: str,
                   tags: tuple[tuple[str, str], ...], policy: Policy, now: datetime) -> Item:
    info = repo.commit(tip)
    change = info.trailer("Change")
    tagged = sorted(v for r, _ in tags if (v := parse_tag_ref(r)) is not None)
    versions = tuple(str(v) for v in tagged)
    sid = info.trailer("Session-Id")
    stored = repo.read_stored(tip)  # what is clear is enough here (even when shredded)
    has_analytics = ANA in stored
    if change == RETENTION_CHANGE:
        status, name = "retained", "analytics_summaries"
        since = try_parse_rfc3339(info.trailer("Retention-Basis")) or from_timestamp(info.time)
        basis = "session ended"
        versions = tuple(v.strip() for v in (info.trailer("Purged-Versions") or "").split(",")
                         if v.strip())
        has_analytics = False
    else:
        meta_raw = stored.get(META)
        try:
            meta = sealed.blank(canonical.loads(meta_raw)) if meta_raw is not None else None
        except canonical.JSONParseError:
            meta = None
        version = version_of(info, {META: meta_raw} if meta_raw is not None else {})
        finalized = (version is not None and version in tagged) or change in FINALIZING
        if version is not None and version not in tagged:
            versions += (str(version),)
        status_field = _completion_status(meta)
        since, basis = from_timestamp(info.time), "last commit"
        if finalized and status_field != "in_progress":
            status, name, basis = "completed", "completed_sessions", "finalize commit"
            tag = repo.tag(str(version)) if version is not None else None
            if tag is not None and tag.time:
                since, basis = from_timestamp(tag.time), f"tag {version}"
        elif not finalized and change == EXPIRE_CHANGE:
            status, name, basis = "expired", "completed_sessions", "expired"
        else:
            status, name = "active", "active_customer_sessions"
        sid = sid or (meta.get("session_info", {}).get("session_id")
                      if isinstance(meta, dict) else None)
    period = policy.period(name)
    age = now - since
    item = Item(customer.name, str(scenario), "keep", status, name, period, since, basis, age,
                versions, tip, tags, session_id=sid if isinstance(sid, str) else None)
    if period is None or age < period:
        return item
    if status != "retained" and policy.encrypted_sessions == "shred" and customer.encrypted:
        if customer.store.keys.shredded(customer.name, scenario.major) is not None:
            return replace(item, notes=("already shredded",))
        return replace(item, action="shred")
    if status == "retained":
        return replace(item, action="purge-analytics")
    keep = policy.analytics_summaries
    if has_analytics and (keep is None or now < since + keep):
        return replace(item, action="purge-keep-analytics",
                       keep_until=since + keep if keep is not None else None)
    return replace(item, action="purge")


def apply(store: Store, customers: Iterable[str] | None = None,
          policy: Policy | None = None) -> list[Item]:
    """Carry out the plan: purge what policy lets go, keep everything else.

    Per customer, under its writer lock: the plan is recomputed, each item is
    purged and recorded in the audit log, reflogs are cleaned and unreachable
    objects pruned. Returns the items that went."""

    policy = policy or load_policy(store.root)
    done: list[Item] = []
    for name in list(customers) if customers is not None else store.customers():
        customer = store.customer_named(name)
        config = store.config
        with writer_lock(store.lock_dir, customer.name, config.lock_timeout):
            if customer.exists:  # a run killed mid-purge may have left one (run it again)
                customer.repo.clear_stale_locks()
            items = [i for i in plan_customer(customer, policy, store.now()) if i.goes]
            pending = customer.exists and (customer.path / PRUNE_PENDING).exists()
            if not items and not pending:
                continue
            repo = customer.repo
            if any(i.action not in ("delete", "shred") for i in items):
                # durably, before the first ref goes: a run killed between the
                # purge and the prune leaves an empty plan; this makes the next prune
                write_atomic(customer.path / PRUNE_PENDING,
                             b"retention: purged objects await the prune\n")
                pending = True
            for item in items:
                if item.action == "shred":  # the key goes; the history stays
                    encryption.shred_locked(store, customer.name, Scenario.parse(item.target))
                elif item.action == "delete":
                    shutil.rmtree(customer.path / item.target)
                    customer.audit("retention:purge", rev=item.target,
                                    detail=_tombstone(item, None))
                else:
                    # first (a crash after leaves them for the re-run): the hub's copy
                    # as last fetched, what a sync set aside, merges pending on it
                    scenario = Scenario.parse(item.target)
                    tracking.drop_copies(repo, [(scenario, item.session_id)])
                    drop_pending(customer, scenario, item.tip,
                                 f"dropped by the retention purge of {scenario}")
                    try:
                        kept = _purge_scenario(customer, repo, item)
                    except backend.RefConflict as exc:
                        raise ConflictError(f"{customer.name} {item.target} changed during "
                                            f"the purge ({exc}); run it again") from None
                    customer.audit("retention:purge", rev=item.target, commit=kept,
                                    detail=_tombstone(item, kept))
                    major = Scenario.parse(item.target).major
                    if store.keys.has_key(customer.name, major):  # copies elsewhere (a hub,
                        encryption.shred_locked(  # a clone) must not stay readable either
                            store, customer.name, Scenario.parse(item.target))
                    customer.refs_moved()
                done.append(item)
            if pending:
                _fix_head(repo)
                repo.drop_unreachable_reflog_entries()
                maintain_locked(customer, full=True, prune=True)
                customer.reopen()
                (customer.path / PRUNE_PENDING).unlink(missing_ok=True)
    return done


def _tombstone(item: Item, kept: str | None) -> str:
    data = {k: v for k, v in item.to_json().items() if k not in ("customer", "reason")}
    data["retained_commit"] = kept
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _purge_scenario(customer: Customer, repo: backend.Repo, item: Item) -> str | None:
    """Remove a scenario's tags and branch, or move the branch to an analytics-only
    root commit; returns that commit's id when one is kept."""
    assert item.tip is not None
    ref = Scenario.parse(item.target).branch_ref
    commit = None
    if item.action == "purge-keep-analytics":  # written first: nothing refers to it yet
        data = repo.read_stored(item.tip).get(ANA)
        assert data is not None
        if sealed.has_tokens(data):  # encrypted: keep only its clear part (scores, counts)
            data = canonical.dumps(sealed.strip(canonical.loads(data)))
        author = customer.store.config.agent
        commit = write_retained(customer, repo, data, author=author,
                                message=retained_message(item, data, author),
                                when=customer.store.now(), session_id=item.session_id)
    for tag_ref, target in item.tags:  # tags first: after a crash, a re-run finishes
        repo.delete_ref(tag_ref, target)
    if commit is not None:
        repo.update_ref(ref, commit, item.tip, f"gitstore: retention of {item.target}")
    else:
        repo.delete_ref(ref, item.tip)
    return commit


def retained_message(item: Item, analytics: bytes, author: Identity) -> str:
    """The message of the analytics-only root commit that a purge leaves."""

    until = iso(item.keep_until) if item.keep_until else "indefinite"
    body = (f"Purged under {item.policy} ({format_duration(item.period)}): the session "
            f"{item.status} at {iso(item.since)} ({item.basis}) and was {_age(item.age)} "
            f"old. Only {ANA} remains, until {until} (analytics_summaries); then the "
            "scenario is removed.")
    return Message(
        f"{item.target}: retention: purged {', '.join(item.versions) or 'the session'}; "
        "session analytics kept",
        trailers([("Session-Id", item.session_id), ("Change", RETENTION_CHANGE),
                  ("Retention-Policy", item.policy), ("Retention-Basis", iso(item.since)),
                  ("Retained-Until", until),
                  ("Purged-Versions", ", ".join(item.versions) or None),
                  ("Purged-Tip", item.tip), ("Documents", ANA), ("Agent", author.name),
                  ("Manifest", manifest.digest(manifest.build({ANA: analytics})))]),
        body).format()


def write_retained(customer: Customer, repo: backend.Repo, analytics: bytes, *,
                   message: str, author: Identity, when: datetime,
                   session_id: str | None = None) -> str:
    """Write (not publish) an analytics-only root commit: ``session_analytics.json``
    and its ``SHA256SUMS``, checked by the store's pipeline. Also used by
    ``gitstore import`` to restore one from an export (same message, author and
    time: the same commit id unless the store signs)."""
    store = customer.store
    proposal = Proposal(customer=customer.name, files={ANA: analytics}, version=None,
                        change=RETENTION_CHANGE, session_id=session_id,
                        changed=frozenset({ANA}))
    store.pipeline.run(proposal)
    assert proposal.manifest is not None
    tree = repo.write_tree({ANA: analytics, MANIFEST: proposal.manifest})
    offset = when.utcoffset()
    return repo.write_commit(tree=tree, parents=[], author=author,
                             committer=store.config.committer, message=message,
                             time=int(when.timestamp()),
                             offset=int(offset.total_seconds() // 60) if offset else 0,
                             sign=store.signer)


def _fix_head(repo: backend.Repo) -> None:
    """Point HEAD at the newest remaining scenario if its branch was removed."""
    branches = sorted(s for ref in repo.refs("refs/heads/")
                      if (s := parse_branch_ref(ref)) is not None)
    head = repo.head_ref()
    if branches and (head is None or repo.ref_target(head) is None):
        repo.set_head(branches[-1].branch_ref)
