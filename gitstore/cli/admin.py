"""Administrative commands: init, audit, verify, hooks, quarantine, repair, maintain.

Plain click commands, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`, the one
place that maps them to exit codes. Nothing here deletes data: quarantine and repair
move damaged files aside, maintain removes only loose objects a pack holds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from gitstore.cli.app import Ctx, emit_json, note, output_option
from gitstore.errors import IntegrityError, NotFoundError, UsageError
from gitstore.store import config as config_mod
from gitstore.store.facade import Store


@click.command()
@click.option("--templates", type=click.Path(file_okay=False), metavar="DIR",
              help="Directory of templates that override the packaged SOW template.")
@click.option("--max-document-bytes", type=click.IntRange(min=1), metavar="N",
              help="Largest accepted document, in bytes.")
@click.option("--signing-key", type=click.Path(dir_okay=False, exists=True), metavar="KEY",
              help="SSH private key (or the .pub of a key an ssh-agent holds) that signs "
                   "every commit and version tag from now on.")
@click.option("--hash-names", is_flag=True,
              help="Name customer repositories by a keyed hash of the api_key, so keys never "
                   "appear in paths, logs or history (only on a store without customers).")
@click.option("--encrypt", is_flag=True,
              help="Encrypt every customer created from now on at rest, with one random data "
                   "key per scenario (existing customers stay plaintext).")
@click.option("--master-key-file", type=click.Path(dir_okay=False), metavar="PATH",
              help="With --encrypt: the master key that wraps the data keys (created, mode "
                   "0600, if missing); default: GITSTORE_MASTER_KEY, GITSTORE_MASTER_KEY_FILE "
                   "or GITSTORE_MASTER_KEY_COMMAND.")
@click.pass_obj
def init(obj: Ctx, templates: str | None, max_document_bytes: int | None,
         signing_key: str | None, hash_names: bool, encrypt: bool,
         master_key_file: str | None) -> None:
    """Create the store root (idempotent) and optionally record settings.

    With --signing-key, gitstore signs commits and tags the way git's
    gpg.format=ssh does, writes <root>/.gitstore/allowed_signers and configures
    every customer repository so that plain `git verify-tag` checks them.
    With --encrypt, customers created from now on are encrypted at rest; the
    master key lives outside the store (a file, the environment or a command)."""
    key_file = Path(master_key_file) if master_key_file else None
    if encrypt:
        _check_master_key(obj.root, key_file)
    elif key_file is not None:
        raise UsageError("--master-key-file needs --encrypt")
    existed = Path(obj.root).is_dir()
    store = Store.init(obj.root, agent=obj.agent, templates=templates,
                       max_document_bytes=max_document_bytes)
    if encrypt:
        _enable_encryption(store, key_file)
    if templates or max_document_bytes:
        config_mod.save(store.root, store.config)
    if hash_names:
        store.enable_hashed_names()
        note("customer repositories are named by a keyed hash of the api_key")
    if signing_key:
        store.configure_signing(signing_key)
        note(f"signing with {signing_key}; allowed signers in {store.config.allowed_signers}")
    note(f"{'Reinitialized' if existed else 'Initialized'} gitstore in {store.root}")


def _check_master_key(root: str, key_file: Path | None) -> None:
    """Refuse ``init --encrypt`` before anything is written when it would fail: a
    --master-key-file that holds no key, or no master key at all for a new store."""
    from gitstore.store.keys import master_from_file, master_key

    if key_file is not None:
        if key_file.resolve().is_relative_to(Path(root).resolve()):
            raise UsageError(f"{key_file} is inside the store root: keep the master key "
                             "outside the store")
        if key_file.exists():
            master_from_file(key_file)
    elif not Path(root).is_dir() and master_key() is None:
        raise UsageError("an encrypted store needs a master key: pass --master-key-file PATH "
                         "(created if missing) or set GITSTORE_MASTER_KEY / "
                         "GITSTORE_MASTER_KEY_COMMAND")


def _enable_encryption(store: Store, key_file: Path | None) -> None:
    from gitstore.ops.encryption import enable, encrypted_customers
    from gitstore.store.keys import MASTER_KEY_ENV

    created = enable(store, key_file)
    if key_file is not None:
        note(f"created master key file {key_file.resolve()} (mode 0600): keep it outside the "
             "store" if created else f"master key file {key_file.resolve()}")
        for var in MASTER_KEY_ENV:
            if os.environ.get(var):
                note(f"gitstore: warning: {var} is set: it overrides the store's "
                     "master_key_file while it stays set")
                break
    elif store.keys.master is not None:
        note(f"master key from {store.keys.master.origin}")
    plain = len(store.customers()) - len(encrypted_customers(store))
    note("encryption on: customers created from now on are encrypted (one data key per "
         "scenario); " + (f"the {plain} existing plaintext customer(s) stay plaintext" if plain
                          else "existing customers stay as they are (none is plaintext)"))
    note(f"gitstore: warning: losing the key store ({store.keys.dir}) or the master key "
         "loses the encrypted data for good: back both up (`gitstore keys backup DEST`)")


@click.command()
@click.argument("customer")
@click.option("--verify", "check", is_flag=True,
              help="Check the hash chain; exit 7 and name each edited or missing record.")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Show only the last N records.")
@output_option
@click.pass_obj
def audit(obj: Ctx, customer: str, check: bool, limit: int | None, output: str) -> None:
    """Show CUSTOMER's access log: every read and write through gitstore.

    Among its records, by time, the answers of store-wide queries (list, stats,
    search, similar, active) that showed the customer, from the store's answer log
    (numbered aN). The logs are append-only and hash-chained; --verify reports any
    record that was edited, deleted or inserted, checks the log against the newest
    Audit-Head anchor the writer keeps in git (so records cut off the end are found
    even with the head file gone), and checks the answer log and the customer's
    receipts of it."""
    from gitstore.ops.verify import audit_problems

    cust = obj.store().customer(customer)
    customer = cust.name  # with hashed names, never echo the api_key
    log_ = cust.audit_log
    if check:
        problems = audit_problems(cust)
        if output == "json":
            emit_json({"customer": customer, "ok": not problems,
                        "problems": [str(p) for p in problems]})
        else:
            for p in problems:
                click.echo(f"{customer}: audit {p}")
        if problems:
            raise IntegrityError(f"audit log of {customer}: {len(problems)} problem(s)")
        if output == "text":
            note(f"{customer}: audit log intact")
        return
    records = log_.history()  # with the store-wide answers that showed the customer
    if limit is not None:
        records = records[-limit:]
    if output == "json":
        emit_json(records)
        return
    for r in records:
        answer = "log" in r  # a store-wide answer that showed the customer, not its own record
        seq = f"a{r.get('seq', '?')}" if answer else r.get("seq", "?")
        target = str(r.get("detail") or "")[:60] if answer else \
            " ".join(str(x) for x in (r.get("rev"), r.get("document")) if x)
        click.echo(f"{seq:>6}  {r.get('time', '?')}  {r.get('op', '?'):<16} "
                   f"{target:<24} {r.get('actor', '?')} (user {r.get('user')}, "
                   f"pid {r.get('pid')})")


@click.command()
@click.argument("customer", required=False)
@click.option("--catalog", "catalog", is_flag=True,
              help="Also check the index (<root>/.gitstore/index.sqlite) against git: a row "
                   "git does not back (forged, or left stale) is a problem; `gitstore "
                   "reindex` rebuilds it.")
@output_option
@click.pass_obj
def verify(obj: Ctx, customer: str | None, catalog: bool, output: str) -> None:
    """Run the health checks on CUSTOMER (default: every customer).

    Checks files present, cross-file consistency, manifest checksums, tags, git
    object integrity, the audit log's hash chain, permissions (customer isolation:
    no repository, index or name key open to group or others) and, when the store
    signs, every version's signatures. What must exist is checked against what the
    history and the access log record (a deleted tag, branch or packed-refs is
    found), and a directory in the store that is not a repository (emptied, its
    objects/ or refs/ gone) is a problem too. Exits 7 if anything is wrong."""
    from gitstore.ops.verify import (
        check_catalog,
        check_customer,
        check_permissions,
        stray_directories,
    )

    store = obj.store()
    one = store.customer(customer) if customer else None
    names = [one.name] if one else store.customers()
    if one and not one.exists and (one.path.is_symlink() or not one.path.is_dir()):
        raise NotFoundError(f"unknown customer {one.name!r} in {store.root}")
    shared = check_permissions(store)  # store-wide files: the index, the name key
    reports = []
    with _progress(names, "verifying") as items:
        for name in items:
            reports.append(check_customer(store.customer_named(name)))
    if one is None:  # directories customers() leaves out because they are not repositories
        reports = sorted([*reports, *stray_directories(store)], key=lambda r: r.customer)
    rows = check_catalog(store) if catalog else []
    shared += [f"catalog: {p}" for p in rows]
    bad = [r for r in reports if r.problems]
    if output == "json":
        store_report = [{"customer": None, "ok": False, "problems": shared, "scenarios": 0,
                         "versions": 0}] if shared else []
        emit_json(store_report + [r.to_json() for r in reports])
    else:
        for p in shared:
            click.echo(p if p.startswith("catalog: ") else f"store: {p}")
        for r in reports:
            if r.problems:
                for p in r.problems:
                    click.echo(f"{r.customer}: {p}")
            else:
                click.echo(f"{r.customer}: ok ({r.checked})")
    if bad or shared:
        total = sum(len(r.problems) for r in bad) + len(shared)
        where = f"the store's shared files and {len(bad)}" if shared else f"{len(bad)}"
        raise IntegrityError(f"{total} problem(s) in {where} of {len(reports)} customer(s)")


@contextmanager
def _progress(items: list[str], label: str) -> Iterator[Any]:
    if sys.stderr.isatty() and len(items) > 1:
        with click.progressbar(items, label=label, file=sys.stderr) as bar:
            yield bar
    else:
        yield items


# -- git hooks ---------------------------------------------------------------

@click.group()
def hooks() -> None:
    """Install and run the real git hooks that enforce gitstore's checks."""


@hooks.command("install")
@click.argument("repo", type=click.Path(file_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace existing hooks of the same name.")
@click.option("--customer", metavar="NAME",
              help="The customer (api_key) the repository holds; default: derived from "
                   "the repository or its origin URL.")
@click.option("--hook", "extra", multiple=True, metavar="MODULE:FUNCTION",
              help="An extra check to run too (repeatable); a bare repository inside a "
                   "store also runs the store's configured hooks.")
def hooks_install(repo: str, force: bool, customer: str | None, extra: tuple[str, ...]) -> None:
    """Install git hooks into REPO: pre-receive for a bare repository, pre-commit
    for a clone with a work tree. They run the same checks as the store. A bare
    repository also gets reference-transaction, which tells the store's index
    (through its change journal) that the repository's refs moved."""
    from gitstore.ops.githooks import install

    for path in install(Path(repo), force=force, customer=customer, hooks=extra):
        note(f"installed {path}")


@hooks.command("run", hidden=True)
@click.argument("hook", type=click.Choice(["pre-receive", "pre-commit"]))
def hooks_run(hook: str) -> None:
    """Entry point of the installed hook scripts."""
    from gitstore.ops.githooks import run

    sys.exit(run(hook))


@click.command()
@click.argument("customer")
@click.pass_obj
def quarantine(obj: Ctx, customer: str) -> None:
    """Move CUSTOMER's repository aside, intact, to <root>/.gitstore/quarantine/.

    Nothing is deleted; the customer then reads as unknown. Use it for a damaged
    repository that should not take writes until it is repaired."""
    from gitstore.ops.recovery import quarantine as move_aside

    cust = obj.store().customer(customer)
    customer = cust.name
    dest = move_aside(cust)
    click.echo(str(dest))
    note(f"{customer} quarantined to {dest}")


@click.command()
@click.argument("customer")
@click.option("--from", "source", required=True, type=click.Path(exists=True), metavar="SOURCE",
              help="A repository that still has the objects (another clone, a quarantined "
                   "copy) or a git bundle from `gitstore export`.")
@output_option
@click.pass_obj
def repair(obj: Ctx, customer: str, source: str, output: str) -> None:
    """Repair CUSTOMER's repository from SOURCE.

    Damaged object files, a damaged packed-refs (its readable lines are kept) and
    an unreadable HEAD are moved aside (never deleted), missing objects are copied
    from SOURCE by content, broken and missing refs restored (never one the access
    log records as purged), a finalized version's lost tag is recreated from its
    commit and HEAD points at the newest scenario; then the repository is checked
    again. SOURCE must be a copy of CUSTOMER: one whose sessions name another
    api_key or session id is refused (exit 2). Exits 7 if problems remain."""
    from gitstore.ops.recovery import repair as fix

    cust = obj.store().customer(customer)
    customer = cust.name
    report = fix(cust, Path(source))
    if output == "json":
        emit_json(report.to_json())
    else:
        for line in report.set_aside:
            click.echo(f"set aside   {line}")
        click.echo(f"copied      {report.copied} object(s) from {source}")
        for ref in report.refs_restored:
            click.echo(f"restored    {ref}")
        for problem in report.remaining:
            click.echo(f"remaining   {problem}")
    if not report.ok:
        raise IntegrityError(f"{customer}: {len(report.remaining)} problem(s) remain after "
                             "repair")
    note(f"{customer}: repaired")


@click.command()
@click.argument("customers", nargs=-1)
@output_option
@click.pass_obj
def migrate(obj: Ctx, customers: tuple[str, ...], output: str) -> None:
    """Move CUSTOMERS' repositories (default: every customer) to the current layout.

    From then on a commit of an open version stores a conversation of more than
    64 turns in parts (a head and chunks of 64 turns under conversation/), and
    every finalized version's commit stores it whole, so an append writes what
    it changed. History is not rewritten:
    earlier commits, tags and signatures stay as they are, and every command
    reads both layouts. Idempotent."""
    from gitstore.ops.migrate import migrate as run

    done = run(obj.store(), list(customers) or None)
    if output == "json":
        emit_json([m.to_json() for m in done])
        return
    for m in done:
        click.echo(f"{m.customer}: " + (f"layout {m.before} -> {m.after}" if m.changed
                                        else f"already layout {m.after}"))


@click.command()
@click.argument("customer", required=False)
@click.option("--full", is_flag=True, help="Repack everything into one pack (default: pack "
              "what was written since the last run, with the small packs).")
@output_option
@click.pass_obj
def maintain(obj: Ctx, customer: str | None, full: bool, output: str) -> None:
    """Compact CUSTOMER's repository (default: every customer).

    Packs objects with deltas, removes loose objects the pack holds, packs refs
    and clears stale temp files. Safe to run at any time: it takes the writer
    lock, never blocks readers and never removes anything a pack does not hold.
    Runs automatically after writes too (see maintenance_bytes)."""
    from gitstore.ops.maintenance import maintain as compact

    store = obj.store()
    one = store.customer(customer) if customer else None
    if one is not None and not one.exists:
        raise NotFoundError(f"unknown customer {one.name!r} in {store.root}")
    names = [one.name] if one else store.customers()
    reports = []
    with _progress(names, "maintaining") as items:
        for name in items:
            reports.append(compact(store.customer_named(name), full=full))
    if output == "json":
        emit_json([r.to_json() for r in reports])
        return
    for r in reports:
        click.echo(f"{r.customer}: {r.kind}, {r.objects_packed} object(s) packed, "
                   f"{r.loose_removed} loose removed, {r.packs_removed} pack(s) removed, "
                   f"{r.bytes_before} -> {r.bytes_after} bytes ({r.seconds:.2f}s)")
