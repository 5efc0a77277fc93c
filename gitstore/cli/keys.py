"""Encryption commands: shred, the ``keys`` group (status, backup, restore, rotate)
and textconv, git's filter that shows an encrypted customer's files in clear.

Plain click commands, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`, the one
place that maps them to exit codes (13: no key at hand, 14: shredded). The work is
done by :mod:`gitstore.ops.encryption` and :class:`gitstore.store.keys.KeyStore`.

Invariants:

* ``shred`` destroys nothing without ``--yes``: it refuses (exit 2) naming what it
  would destroy;
* ``keys rotate`` points the store's config at the new master key only after every
  data key was re-wrapped with it (run again with the same FILE, it finishes an
  interrupted rotation), and never writes the environment: it says which variable
  to update;
* ``textconv`` always gives git output: a file it cannot open here (no key, not
  sealed, shredded, damaged) is printed unchanged.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from gitstore.cli.app import Ctx, emit_json, note, output_option
from gitstore.core.versions import Scenario
from gitstore.errors import (
    KeyUnavailableError,
    NotFoundError,
    ShreddedError,
    StorageError,
    UsageError,
)


@click.command()
@click.argument("customer")
@click.argument("scenario", metavar="vN")
@click.option("--yes", is_flag=True, help="Confirm: destroy the key (there is no undo).")
@output_option
@click.pass_obj
def shred(obj: Ctx, customer: str, scenario: str, yes: bool, output: str) -> None:
    """Crypto-shred scenario vN of an encrypted CUSTOMER: destroy its data key.

    The key goes from the key store and from every key backup it wrote (`gitstore
    keys backup`), the session's text from the index and any merge pending from it,
    and a tombstone goes to the access log. Every commit, tag and signature stays
    (`git fsck --strict` and `git verify-tag` stay clean), but the session's
    content is unreadable for good, in every copy of the repository: reads of it
    exit 14. Exits 2 without
    --yes or on a customer that is not encrypted, 14 if already shredded."""
    from gitstore.ops.encryption import shred as destroy

    scen = Scenario.parse(scenario)
    store = obj.store()
    cust = store.customer(customer)
    cust.require()
    if not yes:  # say what would happen, and what would refuse, destroying nothing
        if not cust.encrypted:
            raise UsageError(f"{cust.name} is not encrypted: it has no data key to shred")
        tomb = store.keys.shredded(cust.name, scen.major)
        if tomb is not None:
            raise ShreddedError(f"scenario {scen} of {cust.name} was already shredded at "
                                f"{tomb.get('at', 'unknown')}")
        if scen not in cust.scenarios():
            raise NotFoundError(f"{cust.name} has no scenario {scen}")
        raise UsageError(f"shred destroys the data key of scenario {scen} of {cust.name} for "
                         "good: its content becomes unreadable in every copy and key backup "
                         "(history and signatures stay); pass --yes to confirm")
    done = destroy(store, cust.name, scen)
    if output == "json":
        emit_json(done.to_json())
    else:
        click.echo(f"shredded            {done.customer} {done.scenario}")
        click.echo(f"at                  {done.shredded_at}")
        for path in done.backups_cleaned:
            click.echo(f"backup cleaned      {path}")
        for path in done.backups_unreachable:
            click.echo(f"backup unreachable  {path}")
    for path in done.backups_unreachable:
        note(f"gitstore: warning: could not remove the key from the key backup {path}: "
             "it still opens the session; delete or clean that copy by hand")
    note(f"{done.customer} {done.scenario}: data key destroyed; its history stays, its "
         "content is unreadable")


# -- the key store -------------------------------------------------------------

@click.group()
def keys() -> None:
    """Manage the key store of an encrypted store: status, backup, restore, rotate.

    Each scenario of an encrypted customer has its own random data key, kept in
    <root>/.gitstore/keys wrapped by the master key. Losing the key store or the
    master key loses the encrypted data: back up the key store with `keys backup`
    and keep the master key apart from it."""


@keys.command("status")
@output_option
@click.pass_obj
def keys_status(obj: Ctx, output: str) -> None:
    """Show the master key, the keys, shredded sessions and backups."""
    from gitstore.ops.encryption import encrypted_customers, status

    store = obj.store()
    info = status(store)
    info["encrypted_customers"] = encrypted_customers(store)
    if output == "json":
        emit_json(info)
        return
    master = (f"{info['master']} (from {info['master_origin']})" if info["master"]
              else f"unusable: {info['master_problem']}" if info["master_problem"]
              else "none set")
    click.echo(f"encrypt             {'on' if info['encrypt'] else 'off'}")
    click.echo(f"key store           {info['key_store']}")
    click.echo(f"master key          {master}")
    for name in info["encrypted_customers"]:
        click.echo(f"encrypted customer  {name}")
    for kid in info["keys"]:
        click.echo(f"key                 {kid}")
    for kid in info["shredded"]:
        click.echo(f"shredded            {kid}")
    for path in info["backups"]:
        click.echo(f"backup              {path}")


@keys.command("backup")
@click.argument("dest", type=click.Path(), metavar="DEST")
@output_option
@click.pass_obj
def keys_backup(obj: Ctx, dest: str, output: str) -> None:
    """Write every wrapped data key to the file DEST (mode 0600).

    DEST is recorded in the key store, so a later `gitstore shred` removes the
    shredded key from it too. The backup holds the keys wrapped: it is useless
    without the master key, which must be backed up apart from it. Running it
    again to the same DEST refreshes it (after a rotation, say)."""
    from gitstore.store.keys import BUNDLE_FORMAT

    store = obj.store()
    path = Path(dest)
    if path.is_dir():
        raise UsageError(f"{dest} is a directory: give the backup file's path")
    if path.exists() and not _is_key_backup(path, BUNDLE_FORMAT):
        raise UsageError(f"{dest} exists and is not a gitstore key backup: not overwriting it")
    count = store.keys.backup(path)
    target = path.resolve()
    if output == "json":
        emit_json({"backup": str(target), "keys": count})
    note(f"backed up {count} key(s) to {target}; recorded in the key store, so a shred "
         "removes its key from this backup too")
    if target.is_relative_to(store.root.resolve()):
        note("gitstore: warning: the backup is inside the store root: it is lost with it")
    note("the backup is useless without the master key: keep the master key too, apart "
         "from the backup")


def _is_key_backup(path: Path, form: str) -> bool:
    try:
        found = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and found.get("format") == form


@keys.command("restore")
@click.argument("source", type=click.Path(), metavar="SRC")
@output_option
@click.pass_obj
def keys_restore(obj: Ctx, source: str, output: str) -> None:
    """Restore missing data keys from the backup file SRC.

    Keys the store still holds are left as they are; a shredded session's key is
    never brought back (it is skipped and named)."""
    path = Path(source)
    if not path.is_file():
        raise NotFoundError(f"no such file: {source}")
    store = obj.store()
    restored, skipped = store.keys.restore(path)
    if output == "json":
        emit_json({"source": str(path.resolve()), "restored": restored, "skipped": skipped})
    note(f"restored {restored} key(s) from {source}")
    for kid in skipped:
        note(f"skipped {kid}: shredded, never restored")


@keys.command("rotate")
@click.option("--new-master-key-file", "new_file", required=True, metavar="FILE",
              type=click.Path(dir_okay=False),
              help="The new master key (created, mode 0600, if missing).")
@output_option
@click.pass_obj
def keys_rotate(obj: Ctx, new_file: str, output: str) -> None:
    """Re-wrap every data key with a new master key.

    The current master key (environment or config) unwraps each key and the one
    in FILE wraps it again; the repositories are not touched. If the store's
    config names a master key, it is pointed at FILE; a master key set in the
    environment must be updated by hand. Key backups keep the old wrapping until
    `gitstore keys backup` runs again. Interrupted, it can be run again with the
    same FILE."""
    from gitstore.git.locking import writer_lock
    from gitstore.store import config as config_mod
    from gitstore.store.keys import MASTER_KEY_ENV, master_from_file, new_master_key_file
    from gitstore.store.writer import SESSION_IDS_LOCK

    store = obj.store()
    path = Path(new_file).resolve()
    if path.is_relative_to(store.root.resolve()):
        raise UsageError(f"{new_file} is inside the store root: keep the master key outside "
                         "the store")
    old = store.keys.master
    if old is None:
        raise KeyUnavailableError("rotation needs the current master key: set "
                                  "GITSTORE_MASTER_KEY, GITSTORE_MASTER_KEY_FILE or the store's "
                                  "master_key_file / master_key_command")
    created = new_master_key_file(path)
    new = master_from_file(path)
    # under the lock new scenarios take to make their keys: none is wrapped half way
    with writer_lock(store.lock_dir, SESSION_IDS_LOCK, store.config.lock_timeout):
        count = store.keys.rotate(new)
        cfg = config_mod.load(store.root)
        moved = (cfg.master_key_file is not None or cfg.master_key_command is not None) and (
            cfg.master_key_file != path or cfg.master_key_command is not None)
        if moved:
            config_mod.save(store.root, cfg._replace(master_key_file=path,
                                                master_key_command=None))
    env = [var for var in MASTER_KEY_ENV if os.environ.get(var)]
    if output == "json":
        emit_json({"master": new.fingerprint, "previous": old.fingerprint, "rewrapped": count,
                   "master_key_file": str(path), "created": created, "config_updated": moved,
                   "environment": env})
    if created:
        note(f"created master key file {path} (mode 0600)")
    note(f"re-wrapped {count} data key(s) with master key {new.fingerprint} from {path}"
         if count else f"every data key is already wrapped by master key {new.fingerprint}")
    if moved:
        note(f"the store's config now names master_key_file {path}"
             + (f" (instead of master_key_command {cfg.master_key_command!r})"
                if cfg.master_key_command else ""))
    if env:
        note(f"gitstore: warning: {' and '.join(env)} set the master key here, over the "
             "config: point them at the new key before the next command (e.g. "
             f"GITSTORE_MASTER_KEY_FILE={path})")
    backups = store.keys.backups()
    if backups and count:
        note(f"gitstore: warning: {len(backups)} key backup(s) still hold the keys wrapped by "
             f"the old master key {old.fingerprint}: run `gitstore keys backup` again, or keep "
             "the old master key with them")


# -- git's textconv filter -----------------------------------------------------

@click.command()
@click.argument("file", metavar="FILE")
def textconv(file: str) -> None:
    """Print FILE, a file of an encrypted customer, in clear: git's textconv driver.

    Each encrypted customer's repository runs it for `git show --textconv` and
    `git log -p` (diff driver gitstore-sealed), in the repository (GIT_DIR). With
    the key store and the master key at hand it prints the plaintext; otherwise,
    and for a file that is not sealed, it prints FILE unchanged."""
    from gitstore.ops.encryption import textconv as opened

    git_dir = os.environ.get("GIT_DIR")
    try:
        data = opened(Path(file), git_dir=Path(git_dir) if git_dir else None)
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {file}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {file}: {exc.strerror or exc}") from None
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
