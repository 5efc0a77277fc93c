"""Syncing a store: many customers, bringing customers in from a hub, and status.

:func:`sync` syncs customers one by one with :func:`gitstore.ops.sync.sync_customer`
(a customer the store does not hold yet is cloned from the hub); one that fails
(an unreachable hub, a refused push) has its error recorded and the others go
on. :func:`clone` brings customers in from a hub: each is fetched into a private
staging repository, checked like an import (:func:`gitstore.ops.verify.check_customer`),
and moved into place under its writer lock, or not at all. :func:`status` says,
from the hub's refs as the last sync (or ``fetch=True``) saw them, whether each
scenario is in step, ahead, behind or diverged: no network unless asked.

Invariants: nothing here writes to a customer repository except through the
sync itself, a clone only creates a customer that is absent, and no status
question touches the network unless ``fetch`` is given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable
from typing import Any

from gitstore.core.names import MERGES, STORE_DIR
from gitstore.errors import ConflictError, GitStoreError, IntegrityError, NotFoundError, UsageError
from gitstore.git import remote
from gitstore.git import repo as backend
from gitstore.git.locking import private_dirs
from gitstore.ops.importing import StagingCustomer
from gitstore.ops.rebase import SYNC_DIR
from gitstore.ops.sync import (
    Outcome,
    Progress,
    Refs,
    sync_customer,
    sync_lock,
    url_of,
)
from gitstore.ops.tracking import FETCH_SPECS, TRACKING, fetch_specs, removed_here
from gitstore.ops.verify import check_customer
from gitstore.store import config as config_mod
from gitstore.store.facade import Customer, Store


def sync(store: Store, customers: Iterable[Customer] | None = None, *,
         progress: Progress | None = None) -> list[Outcome]:
    """Sync each customer (default: every customer of the store); a customer the
    store does not hold yet is cloned from the hub."""
    chosen = list(customers) if customers is not None else list(store)
    out = []
    for customer in chosen:
        try:
            if customer.exists:
                out.append(sync_customer(customer, progress=progress))
            else:
                if progress is not None:
                    progress(customer.name, "clone")
                out.append(clone_one(store, customer, url_of(store, customer)))
        except GitStoreError as exc:
            with contextlib.suppress(GitStoreError, OSError, ValueError):
                if customer.exists:
                    customer.repo.config_set("gitstore.syncError", " ".join(str(exc).split()))
            out.append(Outcome(customer.name, error=exc))
        else:
            with contextlib.suppress(GitStoreError, OSError, ValueError, KeyError):
                customer.repo.config_set("gitstore.syncError", "")
    return out


def clone(store: Store, template: str, customers: Iterable[Customer]) -> list[Outcome]:
    """Bring ``customers`` in from the hub at ``template`` (a remote URL template,
    or a base URL: ``/{customer}`` is appended); the store takes it as its remote
    when it has none. A customer that fails has its error set."""
    if "{customer}" not in template:
        template = template.rstrip("/") + "/{customer}"
    config_mod.check_remote(template)
    if store.config.remote is not None and store.config.remote != template:
        raise UsageError(f"this store syncs with {store.config.remote}; clone from that "
                         "(or change it with `gitstore remote`)")
    out = []
    for customer in customers:
        try:
            out.append(clone_one(store, customer, url_of(store, customer, template)))
        except GitStoreError as exc:
            out.append(Outcome(customer.name, error=exc))
    if store.config.remote is None and any(o.error is None for o in out):
        store.config = store.config._replace(remote=template)
        config_mod.save(store.root, store.config)
    return out


def clone_one(store: Store, customer: Customer, url: str) -> Outcome:
    """Fetch ``customer`` from ``url`` into a staging repository, check it, and move
    it into place (it must not exist here)."""
    with sync_lock(customer):
        return _clone(store, customer, url)


def _clone(store: Store, customer: Customer, url: str) -> Outcome:
    if customer.exists:
        raise UsageError(f"{customer.name} is already in this store; `gitstore sync "
                         f"{customer.name}` brings it up to date")
    base = store.root / STORE_DIR / SYNC_DIR / customer.name
    private_dirs(base, levels=3)
    stage = base / f"clone-{uuid.uuid4().hex}"
    stage.mkdir(mode=0o700)
    try:
        path = stage / customer.name
        repo = backend.Repo.create(path, description=f"gitstore sessions of customer "
                                   f"{customer.name}", head="refs/heads/v1",
                                   committer=store.config.committer)
        cfg = store.config
        if not remote.fetch(path, url, FETCH_SPECS, timeout=cfg.sync_timeout, fsync=cfg.fsync):
            raise NotFoundError(f"the hub holds no customer {customer.name} ({url})")
        hub = Refs.read(repo, TRACKING)
        if not hub.heads:
            raise NotFoundError(f"the hub's {customer.name} holds no sessions yet ({url})")
        for ref, oid in sorted(hub.flat().items()):
            repo.create_ref(ref, oid, "gitstore: clone from the hub")
        newest = max(hub.heads)
        live = [s for s in hub.heads if str(s) not in hub.merged]
        repo.set_head(max(live or [newest]).branch_ref)
        repo.config_set("gitstore.lastScenario", str(newest.major))
        staged = StagingCustomer(store, customer.name, path, customer.api_key)
        staged.configure_repo()
        report = check_customer(staged)
        if report.problems:
            raise IntegrityError(f"{customer.name} from the hub fails its checks: "
                                 f"{report.problems[0]}", report.problems)
        with customer.locked():
            if customer.exists or customer.path.exists():
                raise ConflictError(f"{customer.name} appeared here while it was cloned; "
                                    "sync it instead")
            os.rename(path, customer.path)
        customer.reopen()
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    customer.audit("sync:clone", detail=f"cloned from {url}")
    with contextlib.suppress(GitStoreError, OSError):
        store.catalog.refresh([customer.name])
    pulled = {i.id for tip in hub.heads.values() for i in customer.repo.walk(tip)}
    return Outcome(customer.name, pulled=len(pulled), tags_pulled=len(hub.tags))


# -- status ------------------------------------------------------------------------------

def _count(repo: backend.Repo, tip: str, hide: str) -> int:
    return sum(1 for _ in repo.walk(tip, [hide]))


def status(store: Store, customers: Iterable[Customer] | None = None, *,
           fetch: bool = False) -> list[dict[str, Any]]:
    """Where each customer stands against the hub: per scenario ``in sync``,
    ``ahead`` (commits here the hub lacks), ``behind``, ``diverged``, ``new``
    (not on the hub yet), ``hub only`` or ``merge pending``; the version tags not
    pushed yet, and when the last sync was. ``fetch`` asks the hub first."""
    out = []
    for customer in (list(customers) if customers is not None else list(store)):
        entry: dict[str, Any] = {"customer": customer.name}
        try:
            customer.require()
            repo = customer.repo
            if fetch:
                remote.fetch(customer.path, url_of(store, customer),
                             fetch_specs(removed_here(repo)),
                             timeout=store.config.sync_timeout, fsync=store.config.fsync)
            entry.update(_status(customer, repo))
        except GitStoreError as exc:
            entry.update(state="error", error=str(exc), code=exc.exit_code)
        out.append(entry)
    return out


def _status(customer: Customer, repo: backend.Repo) -> dict[str, Any]:
    local, hub = Refs.read(repo), Refs.read(repo, TRACKING)
    pending = {ref[len(MERGES):] for ref in repo.refs(MERGES)}
    scenarios = []
    ahead = behind = 0
    diverged = False
    for s in sorted({*local.heads, *hub.heads}):
        mine, theirs = local.heads.get(s), hub.heads.get(s)
        row: dict[str, Any] = {"scenario": str(s), "ahead": 0, "behind": 0}
        if mine is None:
            row.update(state="hub only")
        elif theirs is None:
            row.update(state="new", ahead=sum(1 for _ in repo.walk(mine)))
        else:
            row.update(ahead=_count(repo, mine, theirs), behind=_count(repo, theirs, mine))
            row["state"] = "in sync" if mine == theirs else \
                "ahead" if not row["behind"] else "behind" if not row["ahead"] else "diverged"
        if str(s) in pending:
            row["state"] = "merge pending"
        ahead += row["ahead"]
        behind += row["behind"]
        diverged |= row["state"] in ("diverged", "merge pending")
        scenarios.append(row)
    unpushed = sorted(str(v) for v in local.tags if v not in hub.tags)
    own = customer.audit_log.log_id()
    unsent = own is not None and local.logs.get(own) != hub.logs.get(own)
    synced = repo.config_get("gitstore.syncedAt")
    error = repo.config_get("gitstore.syncError") or None
    state = "never synced" if synced is None and not hub.heads else \
        "diverged" if diverged else "ahead" if ahead or unpushed else \
        "behind" if behind else "in sync"
    return {"state": state, "ahead": ahead, "behind": behind, "scenarios": scenarios,
            "unpushed_tags": unpushed, "access_log_pending": bool(unsent) or
            (own is not None and own not in local.logs),
            "last_sync": synced, "last_error": error, "pending_merges": sorted(pending)}


def describe(entry: dict[str, Any]) -> str:
    """One line of ``gitstore status`` for a :func:`status` entry."""
    name, state = entry["customer"], entry["state"]
    if state == "error":
        return f"{name}: error: {entry['error']}"
    counts = [f"{k} {entry[k]}" for k in ("ahead", "behind") if entry[k]]
    parts = counts if state in ("ahead", "behind") and counts else [state, *counts]
    detail = ", ".join(f"{r['scenario']} {r['state']}" for r in entry["scenarios"]
                       if r["state"] != "in sync")
    text = f"{name}: {', '.join(parts)}"
    if detail:
        text += f" ({detail})"
    if entry["unpushed_tags"]:
        text += f"; tags not on the hub: {', '.join(entry['unpushed_tags'])}"
    if entry["last_error"]:
        text += f"; last sync failed: {entry['last_error']}"
    return text


__all__ = ["clone", "clone_one", "describe", "status", "sync"]
