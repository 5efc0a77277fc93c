"""Merge commands: merge (with --continue, --abort, --dry-run), conflicts, resolve.

Plain click commands attached by the registry in :mod:`gitstore.cli.app`. The
reviewer is the store's agent (``--agent`` or ``GITSTORE_AGENT``). A merge that
stops on conflicts exits 0 and says how to review it (``--fail-on-conflict``
makes it an error instead); ``--continue`` with conflicts left exits 6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gitstore.cli.app import Ctx, emit_json, note, output_option
from gitstore.core import canonical
from gitstore.errors import NotFoundError, UsageError


def _short(value: Any, present: bool) -> str:
    if not present:
        return "(absent)"
    text = canonical.dumps(value).decode("utf-8").strip()
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _show(pending: Any, output: str) -> None:
    if output == "json":
        data = pending.to_json()
        data.pop("documents", None)
        emit_json(data)
        return
    for c in pending.conflicts:
        r = pending.resolutions.get(c.label)
        state = f"resolved: {r.choice} by {r.by}" if r else "unresolved"
        click.echo(f"{c.label}  {c.document}#{c.pointer or '/'}  [{state}]")
        click.echo(f"    base:   {_short(c.base, c.base_present)}")
        click.echo(f"    ours:   {_short(c.ours, c.ours_present)}")
        click.echo(f"    theirs: {_short(c.theirs, c.theirs_present)}")


@click.command()
@click.argument("customer")
@click.argument("source", required=False)
@click.option("--into", metavar="vN", help="The scenario to merge into (default: SOURCE's own "
              "scenario for a revision, else the newest other scenario).")
@click.option("--dry-run", is_flag=True, help="Work the merge out and show it; write nothing.")
@click.option("--fail-on-conflict", is_flag=True,
              help="Refuse (exit 6) instead of stopping for review when there are conflicts.")
@click.option("--continue", "cont", is_flag=True,
              help="Write the reviewed merge (every conflict resolved).")
@click.option("--abort", is_flag=True, help="Drop the pending merge; nothing else changes.")
@click.option("-m", "--message", help="The merge commit's summary line.")
@output_option
@click.pass_obj
def merge(obj: Ctx, customer: str, source: str | None, into: str | None, dry_run: bool,
          fail_on_conflict: bool, cont: bool, abort: bool, message: str | None,
          output: str) -> None:
    """Merge SOURCE (a scenario v2, a version or any revision) of CUSTOMER into
    another scenario, field by field; conflicts wait for review (`gitstore
    conflicts`, `gitstore resolve`, then `gitstore merge CUSTOMER --continue`)."""
    if sum((cont, abort, source is not None)) != 1:
        raise UsageError("merge takes a SOURCE, or --continue, or --abort (one of them)")
    cust = obj.store().customer(customer)
    if abort:
        pending = cust.pending_merge(into)
        pending.abort()
        note(f"aborted the merge of {pending.source} into {cust.name} {pending.target}")
        return
    if cont:
        pending = cust.pending_merge(into)
        written = pending.commit(reviewer=obj.store().config.agent, message=message)
        _done(cust.name, pending.source, pending.target, written, output)
        return
    assert source is not None
    result = cust.merge(source, into=into, dry_run=dry_run, fail_on_conflict=fail_on_conflict,
                        message=message)
    if result.written is not None:
        _done(cust.name, source, result.target, result.written, output)
        return
    if output == "json":
        data = result.to_json()
        data.pop("documents", None)
        emit_json({**data, "dry_run": dry_run})
    if dry_run:
        if output == "text":
            _show(result, output)
        note(f"dry run: merging {source} into {cust.name} {result.target} has "
             f"{len(result.conflicts)} conflict(s); nothing written")
        return
    note(f"merge of {source} into {cust.name} {result.target} stopped: "
         f"{len(result.conflicts)} conflict(s) to review; list them with `gitstore conflicts "
         f"{cust.name}`, decide each with `gitstore resolve`, then `gitstore merge "
         f"{cust.name} --continue` (or --abort)")


def _done(customer: str, source: str, target: Any, written: Any, output: str) -> None:
    if output == "json":
        emit_json(written.to_json())
    else:  # the line every write prints: customer, version, commit, change
        click.echo(f"{customer} {written.version} {written.commit[:12]} merge")
    note(f"merged {source} into {customer} {target}: {written.version} "
         f"({written.commit[:12]})")


@click.command()
@click.argument("customer")
@click.option("--into", metavar="vN", help="The pending merge into this scenario.")
@output_option
@click.pass_obj
def conflicts(obj: Ctx, customer: str, into: str | None, output: str) -> None:
    """List the conflicts of CUSTOMER's pending merge, each with its stable label."""
    pending = obj.store().customer(customer).pending_merge(into)
    _show(pending, output)
    if output == "text":
        note(f"{len(pending.remaining)} of {len(pending.conflicts)} conflict(s) unresolved "
             f"in the merge of {pending.source} into {pending.target}")


@click.command()
@click.argument("customer")
@click.argument("label")
@click.option("--with", "choice", required=True, metavar="ours|theirs|base|FILE",
              help="Take our side, their side, the common base, or the JSON value in FILE.")
@click.option("--into", metavar="vN", help="The pending merge into this scenario.")
@click.pass_obj
def resolve(obj: Ctx, customer: str, label: str, choice: str, into: str | None) -> None:
    """Decide one conflict (LABEL, from `gitstore conflicts`) of CUSTOMER's pending merge."""
    store = obj.store()
    pending = store.customer(customer).pending_merge(into)
    if choice in ("ours", "theirs", "base"):
        updated = pending.resolve(label, choice, reviewer=store.config.agent)
    else:
        path = Path(choice)
        if path.is_dir():
            raise UsageError(f"--with is ours, theirs, base or a JSON file; {choice} is a "
                             "directory")
        try:
            value = canonical.loads(path.read_bytes())
        except OSError as exc:  # as for every other input file: not found, exit 3
            raise NotFoundError(f"--with is ours, theirs, base or a JSON file; cannot read "
                                f"{choice}: {exc.strerror}") from None
        except canonical.JSONParseError as exc:
            raise UsageError(f"{choice} is not JSON: {exc}") from None
        updated = pending.resolve(label, "value", value, reviewer=store.config.agent)
    note(f"resolved {label}; {len(updated.remaining)} conflict(s) left")
