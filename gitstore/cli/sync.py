"""Sync commands: remote, sync, status, clone-from, and hub (init, add).

Plain click commands attached by the registry in :mod:`gitstore.cli.app`. Data
(the per-customer summary lines, ``-o json``) goes to stdout, progress and notes
to stderr. ``sync`` goes on through every customer and then fails with the first
customer's error (its exit code: 11 hub unreachable, 12 push rejected, ...);
conflicts left for review exit 0 unless ``--fail-on-conflict``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitstore.cli.app import Ctx, emit_json, note, output_option
from gitstore.errors import ConflictError, GitStoreError, UsageError
from gitstore.ops import hub as hub_ops
from gitstore.ops import syncing
from gitstore.store import config as config_mod
from gitstore.store.facade import Customer, Store


def _chosen(store: Store, names: tuple[str, ...]) -> list[Customer]:
    return [store.customer(n) for n in dict.fromkeys(names)]


@click.command()
@click.argument("url", required=False)
@click.option("--shards", type=click.IntRange(1, 4096), metavar="N",
              help="How many hubs {shard} in URL spreads customers over.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="How long one network step of a sync may take (sync_timeout).")
@click.option("--unset", is_flag=True, help="Forget the remote: the store stops syncing.")
@output_option
@click.pass_obj
def remote(obj: Ctx, url: str | None, shards: int | None, timeout: float | None, unset: bool,
           output: str) -> None:
    """Show or set the hub this store syncs with (a URL template naming each
    customer's repository with {customer}, e.g. git://hub.example/{customer})."""
    store = obj.store()
    cfg = store.config
    if unset and url is not None:
        raise UsageError("remote takes a URL or --unset, not both")
    changes = url is not None or unset or shards is not None or timeout is not None
    if changes:
        cfg = cfg._replace(remote=None if unset else config_mod.check_remote(url, "URL")
                      if url is not None else cfg.remote,
                      remote_shards=shards or cfg.remote_shards,
                      sync_timeout=timeout or cfg.sync_timeout)
        config_mod.save(store.root, cfg)
        note(f"remote: {cfg.remote or '(none)'}; shards {cfg.remote_shards}; "
             f"sync timeout {cfg.sync_timeout:g}s")
    data = {"remote": cfg.remote, "remote_shards": cfg.remote_shards,
            "sync_timeout": cfg.sync_timeout}
    if output == "json":
        emit_json(data)
    elif not changes:
        click.echo(cfg.remote or "(no remote)")


@click.command()
@click.argument("customers", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every customer in the store.")
@click.option("--fail-on-conflict", is_flag=True,
              help="Exit 6 when a merge waits for review (default: exit 0, as merge does).")
@output_option
@click.pass_obj
def sync(obj: Ctx, customers: tuple[str, ...], all_: bool, fail_on_conflict: bool,
         output: str) -> None:
    """Sync CUSTOMERs (or --all) with the hub: fetch, integrate, push; one summary
    line per customer (pushed, pulled, merged, conflicts)."""
    if bool(customers) == all_:
        raise UsageError("sync takes CUSTOMER... or --all (one of them)")
    store = obj.store()
    chosen = None if all_ else _chosen(store, customers)
    total = len(chosen) if chosen is not None else len(store.customers())
    seen: dict[str, int] = {}
    tty = sys.stderr.isatty()

    def progress(customer: str, step: str) -> None:
        n = seen.setdefault(customer, len(seen) + 1)
        if tty:
            click.echo(f"\r\x1b[Ksync {n}/{total} {customer}: {step}", err=True, nl=False)
        elif step in ("fetch", "clone") and customer not in shown:
            shown.add(customer)
            note(f"gitstore: syncing {customer} ({n}/{total})")

    shown: set[str] = set()
    outcomes = syncing.sync(store, chosen, progress=progress)
    if tty:
        click.echo("\r\x1b[K", err=True, nl=False)
    if output == "json":
        emit_json({"ok": all(o.error is None for o in outcomes),
                   "customers": [o.to_json() for o in outcomes]})
    else:
        for o in outcomes:
            click.echo(o.line())
    for o in outcomes:
        for text in o.notes:
            note(f"gitstore: {o.customer}: {text}")
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        if len(failed) > 1:
            note(f"gitstore: {len(failed)} of {len(outcomes)} customer(s) failed to sync")
        assert failed[0].error is not None
        raise failed[0].error
    waiting = [o for o in outcomes if o.conflicts]
    if waiting:
        names = ", ".join(o.customer for o in waiting)
        who = waiting[0].customer if len(waiting) == 1 else "CUSTOMER"
        note(f"gitstore: merges wait for review in {names}: `gitstore conflicts {who}`, "
             f"`gitstore resolve`, `gitstore merge {who} --continue`, then sync again")
        if fail_on_conflict:
            raise ConflictError(f"{sum(o.conflicts for o in waiting)} conflict(s) wait for "
                                f"review ({names})")


@click.command()
@click.argument("customers", nargs=-1)
@click.option("--fetch", is_flag=True, help="Ask the hub first (network); default: as the "
              "last sync saw it.")
@output_option
@click.pass_obj
def status(obj: Ctx, customers: tuple[str, ...], fetch: bool, output: str) -> None:
    """Show how each customer (default: every one) stands against the hub: in sync,
    ahead, behind or diverged, per scenario.

    Every customer is reported; when one could not be read (or, with --fetch, the
    hub could not be asked), the exit status is that error's (3 unknown customer,
    11 hub unreachable, ...)."""
    store = obj.store()
    entries = syncing.status(store, _chosen(store, customers) if customers else None,
                             fetch=fetch)
    if output == "json":
        emit_json(entries)
    else:
        for entry in entries:
            click.echo(syncing.describe(entry))
    failed = [e for e in entries if e.get("state") == "error"]
    if failed:  # the report is out; the exit status says a customer could not be read
        raise _error_like(failed[0]["code"], f"{failed[0]['customer']}: {failed[0]['error']}")


def _error_like(code: int, message: str) -> GitStoreError:
    """An error of the class that carries exit ``code`` (the one status caught)."""
    pending: list[type[GitStoreError]] = [GitStoreError]
    while pending:
        cls = pending.pop()
        if cls.exit_code == code and cls is not GitStoreError:
            return cls(message)
        pending.extend(cls.__subclasses__())
    return GitStoreError(message)


@click.command("clone-from")
@click.argument("url")
@click.argument("customers", nargs=-1, required=True)
@output_option
@click.pass_obj
def clone_from(obj: Ctx, url: str, customers: tuple[str, ...], output: str) -> None:
    """Bring CUSTOMERs in from the hub at URL (a template with {customer}, or a base
    URL); the store takes URL as its remote if it has none."""
    config_mod.check_remote(url if "{customer}" in url else url.rstrip("/") + "/{customer}",
                            "URL")  # before the store root is made
    store = obj.store(create=True)
    outcomes = syncing.clone(store, url, _chosen(store, customers))
    if output == "json":
        emit_json({"ok": all(o.error is None for o in outcomes),
                   "customers": [o.to_json() for o in outcomes]})
    else:
        for o in outcomes:
            click.echo(o.line())
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        assert failed[0].error is not None
        raise failed[0].error


@click.group()
def hub() -> None:
    """Make and fill a hub: bare customer repositories with gitstore's hook, for a
    git server (git daemon, git http-backend, ssh) to serve."""


@hub.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--no-create-on-push", is_flag=True,
              help="Refuse pushes to customers not added with `gitstore hub add` (the CGI "
                   "program otherwise creates them).")
def hub_init(directory: Path, no_create_on_push: bool) -> None:
    """Make DIRECTORY a hub (idempotent); repositories already there get the hook."""
    made = hub_ops.init(directory, create_on_push=not no_create_on_push)
    note(f"hub at {made.path}: {len(made.customers())} customer(s); CGI program for git "
         f"http-backend: {made.cgi}")


@hub.command("add")
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("customers", nargs=-1, required=True)
def hub_add(directory: Path, customers: tuple[str, ...]) -> None:
    """Create the repository of each CUSTOMER in the hub DIRECTORY (with its hook)."""
    made = hub_ops.open_hub(directory)
    for name in customers:
        path, created = hub_ops.add(made, name)
        click.echo(f"{name} {'created' if created else 'exists'} {path}")
