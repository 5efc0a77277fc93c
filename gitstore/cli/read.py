"""Read commands: show, diff, versions, log, render, customers.

Plain click commands, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`, the one
place that maps them to exit codes. None of them writes to a repository (reads are
recorded in the customer's audit log by the store). ``show DOCUMENT`` in text output
is the stored file byte for byte.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from gitstore.cli.app import (
    Ctx,
    emit_json,
    note,
    output_option,
    parse_when,
    scenario_filter_option,
)
from gitstore.core import canonical
from gitstore.core.commits import ChangeKind
from gitstore.core.names import DOCUMENTS, JSON_DOCUMENTS, MANIFEST, SOW_DOCUMENT, check_document
from gitstore.core.time import format_rfc3339, from_timestamp
from gitstore.errors import NotFoundError, UsageError

CHANGE_KINDS = [kind.value for kind in ChangeKind]


def _iso(ts: int) -> str:
    return format_rfc3339(from_timestamp(ts))


def _rev_and_document(args: tuple[str, ...]) -> tuple[str | None, str | None]:
    if len(args) > 2:
        raise UsageError("show takes at most a revision and a document")
    if len(args) == 2:
        return args[0], check_document(args[1], allow_manifest=True)
    if len(args) == 1:
        try:
            return None, check_document(args[0], allow_manifest=True)
        except UsageError:
            return args[0], None
    return None, None


@click.command()
@click.argument("customer")
@click.argument("args", nargs=-1, metavar="[REV] [DOCUMENT]")
@click.option("--at", metavar="TIME",
              help="The state of the scenario REV (default: newest) at TIME in session "
                   "time: the newest commit whose session data is stamped at or before "
                   "TIME.")
@click.option("--as-of", "as_of", metavar="TIME",
              help="The state of the scenario REV (default: newest) at TIME in commit "
                   "time: the newest commit written at or before TIME.")
@output_option
@click.pass_obj
def show(obj: Ctx, customer: str, args: tuple[str, ...], at: str | None, as_of: str | None,
         output: str) -> None:
    """Show a version (v1.0.0), scenario (v1), or any revision; or one DOCUMENT of it.

    REV defaults to HEAD, the newest scenario's latest state. With a DOCUMENT, text
    output is the stored file byte for byte.

    Time travel: with --at or --as-of, REV names a scenario (a version names its
    scenario) and the state shown is the one it had at TIME. --at uses session time:
    a commit's session time is the newest of the metadata's created_timestamp and
    completed_timestamp and the last turn's timestamp, in that commit or any
    earlier one of the scenario (a follow-up's opening counts from its first newer
    timestamp), so a session recorded today from a transcript stamped last year is
    found at last year's times. --as-of uses commit time: when
    each commit was written (the API write's at= time, default the moment of the
    write)."""
    rev, document = _rev_and_document(args)
    if at is not None and as_of is not None:
        raise UsageError("give --at (session time) or --as-of (commit time), not both")
    store = obj.store(reads_only=True)
    cust = store.customer(customer)
    if at is not None or as_of is not None:
        flag, by = ("--at", "session") if at is not None else ("--as-of", "commit")
        when = parse_when(at if at is not None else as_of, what=flag, now=store.now())
        assert when is not None
        snap = cust.read_at(rev, when, by=by)
    else:
        snap = cust.read(rev)
    if document:
        data = snap.raw(document)
        if output == "json":
            emit_json(canonical.loads(data) if document.endswith(".json")
                      else {"document": document, "text": data.decode("utf-8")})
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return
    if output == "json":
        docs: dict[str, Any] = {}
        for name in DOCUMENTS:
            if name in snap.files:
                docs[name] = canonical.loads(snap.files[name]) if name in JSON_DOCUMENTS \
                    else snap.files[name].decode("utf-8")
        emit_json({"customer": cust.name, "commit": snap.commit,
                   "version": str(snap.version) if snap.version else None,
                   "change": snap.change, "session_id": snap.session_id,
                   "manifest": snap.info.trailer("Manifest"), "documents": docs})
        return
    click.echo(f"customer    {cust.name}")
    click.echo(f"version     {snap.version or '-'}")
    click.echo(f"commit      {snap.commit}")
    click.echo(f"change      {snap.change or '-'}")
    click.echo(f"session     {snap.session_id or '-'}")
    click.echo(f"date        {_iso(snap.info.time)}")
    click.echo(f"summary     {snap.info.parsed.summary}")
    click.echo("files")
    for name in [*DOCUMENTS, MANIFEST]:
        if name in snap.files:
            click.echo(f"  {name:<26} {len(snap.files[name]):>8} bytes")
        elif name == SOW_DOCUMENT:
            click.echo(f"  {name:<26} {'(rendered at finalize)':>8}")


def _plain(text: str, **_: Any) -> str:
    return text


@click.command()
@click.argument("customer")
@click.argument("a")
@click.argument("b", required=False)
@click.option("-o", "--output", "output", type=click.Choice(["text", "json", "patch"]),
              default="text", show_default=True, help="Output format.")
@click.option("--stat", is_flag=True, help="A per-document summary instead of the changes.")
@click.option("--exit-code", is_flag=True,
              help="Exit 1 if there are differences, 0 if none (like diff(1)).")
@click.option("-d", "--document", "documents", multiple=True, metavar="NAME",
              help="Only this document (repeatable).")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour the text and patch output.")
@click.pass_obj
def diff(obj: Ctx, customer: str, a: str, b: str | None, output: str, stat: bool,
         exit_code: bool, documents: tuple[str, ...], color: str) -> None:
    """Show what changed between two session states, document by document.

    A and B are versions (v1.0.0), scenarios (v1: its newest state), tags, commit ids
    or revisions like v1~2. B defaults to the newest state of A's scenario.
    Conversation turns are matched by turn_id; other records by their natural key."""
    from gitstore.core import diffformat

    result, snap_a, snap_b = obj.store(reads_only=True).customer(customer).diff(
        a, b, documents=documents or None)
    use_color = color == "always" or (
        color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    style = click.style if use_color else _plain
    if output == "json":
        data = diffformat.to_json(result, snap_a.label(), snap_b.label())
        if stat:
            data["documents"] = [{"name": d["name"], "status": d["status"], "stat": d["stat"]}
                                 for d in data["documents"]]
        emit_json(data)
    elif stat:
        click.echo(diffformat.to_stat(result, style), nl=False, color=use_color)
    elif output == "patch":
        click.echo(diffformat.to_patch(result, style), nl=False, color=use_color)
    else:
        click.echo(diffformat.to_text(result, style), nl=False, color=use_color)
    if exit_code and not result.empty:
        sys.exit(1)


@click.command()
@click.argument("customer")
@scenario_filter_option
@output_option
@click.pass_obj
def versions(obj: Ctx, customer: str, scenario: str | None, output: str) -> None:
    """List the versions of CUSTOMER: every finalized version and each open one."""
    cust = obj.store(reads_only=True).customer(customer)
    chosen = cust.session(scenario).scenario if scenario else None
    items = cust.versions(chosen)
    if output == "json":
        emit_json([v.to_json() for v in items])
        return
    for v in items:
        pct = f"{v.completeness}%" if v.completeness is not None else "-"
        click.echo(f"{v.version!s:<10} {v.status:<10} {_iso(v.time)}  {v.author.name:<12} "
                   f"{pct:>4}  {v.summary}")


@click.command()
@click.argument("customer")
@click.argument("scenario", required=False, metavar="[REV]")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Show at most N commits.")
@click.option("--document", metavar="NAME", help="Only commits that changed this document.")
@click.option("--since", metavar="TIME", help="Only commits at or after TIME.")
@click.option("--until", metavar="TIME", help="Only commits at or before TIME.")
@click.option("--change", type=click.Choice(CHANGE_KINDS), help="Only this kind of change.")
@click.option("--agent", "agent_name", metavar="NAME", help="Only commits by this agent.")
@output_option
@click.pass_obj
def log(obj: Ctx, customer: str, scenario: str | None, limit: int | None,
        document: str | None, since: str | None, until: str | None, change: str | None,
        agent_name: str | None, output: str) -> None:
    """Show the history of CUSTOMER (all scenarios, or REV's), newest first.

    One line per commit: id, time, version, change kind (and turn), agent,
    summary, and the version tags that sit on it."""
    store = obj.store(reads_only=True)
    cust = store.customer(customer)
    now = store.now()
    entries = cust.log(
        scenario, limit=limit, document=document,
        since=parse_when(since, what="--since", now=now),
        until=parse_when(until, what="--until", end=True, now=now), change=change,
        agent=agent_name)
    if output == "json":
        emit_json([e.to_json() for e in entries])
        return
    for e in entries:
        kind = f"turn {e.turn}" if e.change == ChangeKind.TURN and e.turn else (e.change or "-")
        tags = f"  (tag: {', '.join(e.tags)})" if e.tags else ""
        click.echo(f"{e.commit[:12]}  {_iso(e.time)}  {e.version or '-'!s:<9} {kind:<11} "
                   f"{(e.agent or '-'):<12} {e.summary}{tags}")


@click.command()
@click.argument("customer")
@click.argument("rev", required=False)
@click.option("-O", "--out", "out", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write to FILE instead of stdout.")
@click.pass_obj
def render(obj: Ctx, customer: str, rev: str | None, out: str | None) -> None:
    """Render the statement of work from the documents at REV (default: HEAD).

    Works on open versions too, as a preview; nothing is committed."""
    from gitstore.core.render import render_sow

    store = obj.store()
    cust = store.customer(customer)
    snap = cust.read(rev)
    missing = [n for n in JSON_DOCUMENTS if n not in snap.files]
    if missing:
        raise NotFoundError(f"cannot render {cust.name} {snap.version}: missing "
                            f"{', '.join(missing)}")
    text = render_sow(snap.documents(), customer=cust.name,
                      version=snap.version or "v0.0.0", template_dir=store.config.templates)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        note(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@click.command()
@output_option
@click.pass_obj
def customers(obj: Ctx, output: str) -> None:
    """List the customers in the store."""
    names = obj.store().customers()
    if output == "json":
        emit_json(names)
    else:
        for name in names:
            click.echo(name)
