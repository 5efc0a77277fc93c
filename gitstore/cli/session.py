"""Session commands, the writes of one deployment scenario: new, turn, put, summary,
finalize, follow-up, correct.

Plain click commands, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`, the one
place that maps them to exit codes. Each command writes at most one commit (through
:class:`~gitstore.store.session.Session`) and reports it on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitstore.cli.app import Ctx, emit_json, output_option, scenario_option
from gitstore.core.names import check_document
from gitstore.core.versions import Version
from gitstore.errors import NotFoundError, UsageError
from gitstore.store.session import Session
from gitstore.store.writer import Written


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"no such file: {path}")
    return p.read_bytes()


def _report_written(w: Written, output: str, customer: str) -> None:
    if output == "json":
        emit_json({"customer": customer, **w.to_json()})
        return
    what = {"turn": f"turn {w.turn}", "unchanged": "unchanged"}.get(w.change, w.change)
    tag = f", tagged {w.version}" if w.tag else ""
    click.echo(f"{customer} {w.version} {w.commit[:12]} {what}{tag}")


def _session(obj: Ctx, customer: str, scenario: str | None) -> Session:
    return obj.store().customer(customer).session(scenario)


@click.command()
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
        emit_json({"customer": cust.name, "version": str(state.version),
                   "session_id": state.session_id, "commit": state.tip})
    else:
        click.echo(f"{cust.name} {state.version} {state.tip[:12]} {state.session_id}")


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command("follow-up")
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


@click.command()
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
