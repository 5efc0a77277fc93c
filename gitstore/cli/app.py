"""The ``gitstore`` command line.

This is the only module that maps :class:`~gitstore.errors.GitStoreError`
subclasses to exit codes and messages. Data goes to stdout, messages and
progress to stderr; every read command takes ``-o text|json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from gitstore.core import canonical
from gitstore.core.names import DOCUMENTS, JSON_DOCUMENTS, MANIFEST, SOW_DOCUMENT, check_document
from gitstore.core.versions import Version
from gitstore.errors import (
    EXIT_CODES,
    GitStoreError,
    InvalidDocumentError,
    NotFoundError,
    UsageError,
)
from gitstore.store.facade import Store
from gitstore.store.session import Session, Written
from gitstore.version import __version__

F = TypeVar("F", bound=Callable[..., Any])

EXIT_HELP = """\b
Exit codes:
  0  success            1  differences (diff --exit-code)
  2  usage error        3  not found
  4  invalid document   5  version-rule violation
  6  conflict           7  integrity failure
  8  input too large    9  storage error
 10  render error      70  internal error (a bug: please report it)
"""


class Ctx:
    def __init__(self, root: str, agent: str | None) -> None:
        self.root = root
        self.agent = agent

    def store(self, *, create: bool = False) -> Store:
        return Store(self.root, create=create, agent=self.agent)


def output_option(f: F) -> F:
    return click.option("-o", "--output", "output", type=click.Choice(["text", "json"]),
                        default="text", show_default=True, help="Output format.")(f)


def scenario_option(f: F) -> F:
    return click.option("-s", "--scenario", metavar="vN",
                        help="Scenario (major version) to act on; default: the newest.")(f)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no such file: {path}")
    return p.read_bytes()


def _note(text: str) -> None:
    click.echo(text, err=True)


def _report_written(w: Written, output: str, customer: str) -> None:
    if output == "json":
        _emit_json({"customer": customer, **w.to_json()})
        return
    what = {"turn": f"turn {w.turn}", "unchanged": "unchanged"}.get(w.change, w.change)
    tag = f", tagged {w.version}" if w.tag else ""
    click.echo(f"{customer} {w.version} {w.commit[:12]} {what}{tag}")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_HELP)
@click.option("--root", envvar="GITSTORE_ROOT", default="sessions", show_default=True,
              metavar="DIR", help="Store root directory (env GITSTORE_ROOT).")
@click.option("--agent", envvar="GITSTORE_AGENT", metavar="'NAME <EMAIL>'",
              help="Agent identity that authors commits (env GITSTORE_AGENT).")
@click.version_option(__version__, prog_name="gitstore")
@click.pass_context
def cli(ctx: click.Context, root: str, agent: str | None) -> None:
    """gitstore: a Git-backed versioned document store for AI-agent sessions.

    Each customer is a bare git repository under the store root; each deployment
    scenario is a branch; each finalized version is an annotated tag vX.Y.Z.
    """
    ctx.obj = Ctx(root, agent)


# -- setup -------------------------------------------------------------------

@cli.command()
@click.option("--templates", type=click.Path(file_okay=False), metavar="DIR",
              help="Directory of templates that override the packaged SOW template.")
@click.option("--max-document-bytes", type=click.IntRange(min=1), metavar="N",
              help="Largest accepted document, in bytes.")
@click.option("--signing-key", type=click.Path(dir_okay=False, exists=True), metavar="KEY",
              help="SSH private key that signs every commit and version tag from now on.")
@click.option("--hash-names", is_flag=True,
              help="Name customer repositories by a keyed hash of the api_key, so keys never "
                   "appear in paths, logs or history (only on a store without customers).")
@click.pass_obj
def init(obj: Ctx, templates: str | None, max_document_bytes: int | None,
         signing_key: str | None, hash_names: bool) -> None:
    """Create the store root (idempotent) and optionally record settings.

    With --signing-key, gitstore signs commits and tags the way git's
    gpg.format=ssh does, writes <root>/.gitstore/allowed_signers and configures
    every customer repository so that plain `git verify-tag` checks them."""
    from gitstore.store import config as config_mod

    existed = Path(obj.root).is_dir()
    store = Store.init(obj.root, agent=obj.agent, templates=templates,
                       max_document_bytes=max_document_bytes)
    if templates or max_document_bytes:
        config_mod.save(store.root, store.config)
    if hash_names:
        store.enable_hashed_names()
        _note("customer repositories are named by a keyed hash of the api_key")
    if signing_key:
        store.configure_signing(signing_key)
        _note(f"signing with {signing_key}; allowed signers in {store.config.allowed_signers}")
    _note(f"{'Reinitialized' if existed else 'Initialized'} gitstore in {store.root}")


# -- writing -----------------------------------------------------------------

@cli.command()
@click.argument("customer")
@click.option("--session-id", help="Session id; default orchestrator-session-<uuid>.")
@click.option("--created", metavar="TIMESTAMP", help="created_timestamp (RFC 3339); default now.")
@click.option("--metadata", "metadata_file", metavar="FILE",
              help="Initial session_metadata.json (managed fields may be omitted).")
@click.option("--version", "expected", metavar="vN.0.0",
              help="Refuse unless this is the version the new scenario gets.")
@click.option("-m", "--message", help="Commit summary line.")
@output_option
@click.pass_obj
def new(obj: Ctx, customer: str, session_id: str | None, created: str | None,
        metadata_file: str | None, expected: str | None, message: str | None,
        output: str) -> None:
    """Start a new deployment scenario (the next major version) for CUSTOMER.

    Creates the customer's repository on first use."""
    store = obj.store()
    metadata = _read_input(metadata_file) if metadata_file else None
    cust = store.customer(customer)
    session = cust.new_session(
        session_id=session_id, created=created, metadata=metadata, version=expected,
        message=message)
    state = session.state
    if output == "json":
        _emit_json({"customer": cust.name, "version": str(state.version),
                    "session_id": state.session_id, "commit": state.tip})
    else:
        click.echo(f"{cust.name} {state.version} {state.tip[:12]} {state.session_id}")


def _session(obj: Ctx, customer: str, scenario: str | None) -> Session:
    return obj.store().customer(customer).session(scenario)


@cli.command()
@click.argument("customer")
@click.argument("file", metavar="FILE|-")
@scenario_option
@click.option("-m", "--message", help="Commit summary line.")
@output_option
@click.pass_obj
def turn(obj: Ctx, customer: str, file: str, scenario: str | None, message: str | None,
         output: str) -> None:
    """Append one conversation turn (a JSON object) to the open version."""
    session = _session(obj, customer, scenario)
    w = session.append_turn(_read_input(file), message=message)
    _report_written(w, output, session.customer.name)


@cli.command()
@click.argument("customer")
@click.argument("document")
@click.argument("file", metavar="FILE|-")
@scenario_option
@click.option("-m", "--message", help="Commit summary line.")
@output_option
@click.pass_obj
def put(obj: Ctx, customer: str, document: str, file: str, scenario: str | None,
        message: str | None, output: str) -> None:
    """Replace a JSON document of the open version, such as deployment_context.json."""
    session = _session(obj, customer, scenario)
    w = session.put(document, _read_input(file), message=message)
    _report_written(w, output, session.customer.name)


@cli.command()
@click.argument("customer")
@click.argument("file", metavar="FILE|-")
@scenario_option
@output_option
@click.pass_obj
def summary(obj: Ctx, customer: str, file: str, scenario: str | None, output: str) -> None:
    """Set the conversation_summary of the open version."""
    session = _session(obj, customer, scenario)
    w = session.set_summary(_read_input(file))
    _report_written(w, output, session.customer.name)


@cli.command()
@click.argument("customer")
@scenario_option
@click.option("--version", "expected", metavar="vX.Y.Z",
              help="Refuse unless this is the version being finalized.")
@click.option("-m", "--message", help="Why the version is finalized (goes into the tag).")
@output_option
@click.pass_obj
def finalize(obj: Ctx, customer: str, scenario: str | None, expected: str | None,
             message: str | None, output: str) -> None:
    """Finalize the open version: render the SOW, check completeness, tag it."""
    session = _session(obj, customer, scenario)
    w = session.finalize(message=message, version=expected)
    _report_written(w, output, session.customer.name)


@cli.command("follow-up")
@click.argument("customer")
@scenario_option
@click.option("--version", "expected", metavar="vX.Y.0",
              help="Refuse unless this is the version the follow-up opens.")
@click.option("-m", "--message", help="Why (goes into the commit).")
@output_option
@click.pass_obj
def follow_up(obj: Ctx, customer: str, scenario: str | None, expected: str | None,
              message: str | None, output: str) -> None:
    """Open the next minor version for a follow-up conversation."""
    session = _session(obj, customer, scenario)
    w = session.follow_up(message=message, version=expected)
    _report_written(w, output, session.customer.name)


@cli.command()
@click.argument("customer")
@click.argument("files", nargs=-1, required=True, metavar="[DOCUMENT=]FILE...")
@click.option("-r", "--reason", required=True, help="Why the data is corrected.")
@scenario_option
@click.option("--base", metavar="vX.Y.Z", help="The version being corrected (must be newest).")
@click.option("--version", "expected", metavar="vX.Y.Z",
              help="Refuse unless this is the version the correction publishes.")
@output_option
@click.pass_obj
def correct(obj: Ctx, customer: str, files: tuple[str, ...], reason: str,
            scenario: str | None, base: str | None, expected: str | None, output: str) -> None:
    """Publish a data correction as the next patch version.

    Each FILE replaces the document named by its file name (session_analytics.json)
    or by an explicit DOCUMENT= prefix."""
    documents: dict[str, bytes] = {}
    for spec in files:
        name, sep, rest = spec.partition("=")
        if sep and not Path(spec).exists():  # DOCUMENT=FILE (FILE may contain '=')
            doc, path = check_document(name, allow_sow=False), rest
        else:
            doc, path = check_document(Path(spec).name, allow_sow=False), spec
        if doc in documents:
            raise UsageError(f"{doc} given twice")
        documents[doc] = _read_input(path)
    session = _session(obj, customer, scenario or (base and Version.parse(base).scenario.__str__()))
    w = session.correct(documents, reason=reason, base=base, version=expected)
    _report_written(w, output, session.customer.name)


# -- reading -----------------------------------------------------------------

@cli.command()
@click.argument("customer")
@click.argument("args", nargs=-1, metavar="[REV] [DOCUMENT]")
@click.option("--at", metavar="TIME",
              help="The state of the scenario REV (default: newest) as it stood at TIME.")
@output_option
@click.pass_obj
def show(obj: Ctx, customer: str, args: tuple[str, ...], at: str | None, output: str) -> None:
    """Show a version (v1.0.0), scenario (v1), or any revision; or one DOCUMENT of it.

    REV defaults to HEAD, the newest scenario's latest state. With --at, REV names a
    scenario and the state shown is the one it had at that time. With a DOCUMENT,
    text output is the stored file byte for byte."""
    rev, document = _rev_and_document(args)
    cust = obj.store().customer(customer)
    when = _when(at)
    snap = cust.read_at(rev, when) if when is not None else cust.read(rev)
    if document:
        data = snap.raw(document)
        if output == "json":
            _emit_json(canonical.loads(data) if document.endswith(".json")
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
        _emit_json({"customer": cust.name, "commit": snap.commit,
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


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _color(stream_is_tty: bool) -> bool:
    return stream_is_tty and not os.environ.get("NO_COLOR")


@cli.command()
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

    result, snap_a, snap_b = obj.store().customer(customer).diff(
        a, b, documents=documents or None)
    use_color = color == "always" or (color == "auto" and _color(sys.stdout.isatty()))
    style = click.style if use_color else diffformat._plain
    if output == "json":
        data = diffformat.to_json(result, snap_a.label(), snap_b.label())
        if stat:
            data["documents"] = [{"name": d["name"], "status": d["status"], "stat": d["stat"]}
                                 for d in data["documents"]]
        _emit_json(data)
    elif stat:
        click.echo(diffformat.to_stat(result, style), nl=False, color=use_color)
    elif output == "patch":
        click.echo(diffformat.to_patch(result, style), nl=False, color=use_color)
    else:
        click.echo(diffformat.to_text(result, style), nl=False, color=use_color)
    if exit_code and not result.empty:
        sys.exit(1)


@cli.command()
@click.argument("customer")
@scenario_option
@output_option
@click.pass_obj
def versions(obj: Ctx, customer: str, scenario: str | None, output: str) -> None:
    """List the versions of CUSTOMER: every finalized version and each open one."""
    cust = obj.store().customer(customer)
    chosen = cust.session(scenario).scenario if scenario else None
    items = cust.versions(chosen)
    if output == "json":
        _emit_json([v.to_json() for v in items])
        return
    for v in items:
        pct = f"{v.completeness}%" if v.completeness is not None else "-"
        click.echo(f"{v.version!s:<10} {v.status:<10} {_iso(v.time)}  {v.author.name:<12} "
                   f"{pct:>4}  {v.summary}")


def _when(value: str | None, *, end: bool = False) -> datetime | None:
    """Parse --since/--until/--at: an RFC 3339 timestamp or a YYYY-MM-DD date
    (a date alone means the start of that day, or its end for --until)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return day.replace(hour=23, minute=59, second=59) if end else day
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"invalid time {value!r}: expected YYYY-MM-DD or an RFC 3339 "
                         "timestamp like 2025-01-15T10:30:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


CHANGE_KINDS = ["create", "turn", "update", "finalize", "follow-up", "correction", "expire",
                "retention"]


@cli.command()
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
    entries = obj.store().customer(customer).log(
        scenario, limit=limit, document=document, since=_when(since),
        until=_when(until, end=True), change=change, agent=agent_name)
    if output == "json":
        _emit_json([e.to_json() for e in entries])
        return
    for e in entries:
        kind = f"turn {e.turn}" if e.change == "turn" and e.turn else (e.change or "-")
        tags = f"  (tag: {', '.join(e.tags)})" if e.tags else ""
        click.echo(f"{e.commit[:12]}  {_iso(e.time)}  {e.version or '-'!s:<9} {kind:<11} "
                   f"{(e.agent or '-'):<12} {e.summary}{tags}")


@cli.command()
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
        _note(f"wrote {out}")
    else:
        click.echo(text, nl=False)


@cli.command()
@output_option
@click.pass_obj
def customers(obj: Ctx, output: str) -> None:
    """List the customers in the store."""
    names = obj.store().customers()
    if output == "json":
        _emit_json(names)
    else:
        for name in names:
            click.echo(name)


# Importing these modules registers their commands on the group above: cli_admin
# (verify, audit, quarantine, repair, maintain, hooks), cli_data (export, import,
# escalate, expire, retention) and cli_query (list, stats, search, similar,
# active, resume, reindex).
from gitstore.cli import admin, data, query  # noqa: E402, F401

# -- entry point -------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map gitstore errors to one-line messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="gitstore", standalone_mode=False)
    except click.exceptions.Abort:
        _note("gitstore: aborted")
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(EXIT_CODES["usage"] if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except InvalidDocumentError as exc:
        if len(exc.violations) == 1:
            _note(f"gitstore: error: {exc}")
        else:
            _note(f"gitstore: error: change rejected: {len(exc.violations)} violations")
            for v in exc.violations:
                _note(f"  {v}")
        sys.exit(exc.exit_code)
    except GitStoreError as exc:
        _note(f"gitstore: error: {exc}")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        _note("gitstore: interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("GITSTORE_DEBUG"):
            raise
        _note(f"gitstore: internal error: {type(exc).__name__}: {exc} "
              "(set GITSTORE_DEBUG=1 for a traceback; please report it)")
        sys.exit(70)
    sys.exit(0)


if __name__ == "__main__":
    # Run the package's own module (not this __main__ copy), so that commands
    # registered by gitstore.cli.admin on gitstore.cli.app.cli are present.
    from gitstore.cli.app import main as _main

    _main()
