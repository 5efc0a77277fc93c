"""Session commands, the writes of one deployment scenario: new, turn, put, summary,
finalize, follow-up, correct.

Plain click commands, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`, the one
place that maps them to exit codes. Each command writes at most one commit (through
:class:`~gitstore.store.session.Session`) and reports it on stdout.

Every command takes ``--idempotency-key KEY``: run again with the same key (a retry
after a timeout), it writes nothing and reports the first run's commit, marked
``(replayed)`` (``"replayed": true`` in JSON); a key already used by another write
(other content, another command, or a ``put`` of another document) is refused,
exit 2 (:mod:`gitstore.store.replays`). ``turn``
without a key is keyed by
the turn's content within a window (see ``Session.append_turn``). ``new`` refuses
while the customer has an open scenario, unless ``--new-scenario``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gitstore.cli.app import Ctx, emit_json, note, output_option, scenario_option
from gitstore.core.names import check_document
from gitstore.core.versions import Version
from gitstore.errors import NotFoundError, UsageError
from gitstore.store.session import Session
from gitstore.store.writer import Written

F = TypeVar("F", bound=Callable[..., Any])


def _read_input(path: str) -> bytes:
    """The bytes of FILE (``-``: stdin; a pipe such as ``<(...)`` is read too)."""
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{path} is a directory, not a JSON file")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no such file: {path}") from None
    except OSError as exc:
        raise NotFoundError(f"cannot read {path}: {exc.strerror}") from None


def _report_written(w: Written, output: str, customer: str) -> None:
    # a step after the commit failed: the write stands (exit 0), the step is said
    for warning in w.warnings:
        note(f"gitstore: warning: {customer} {w.commit[:12]} is committed, but {warning}")
    if output == "json":
        emit_json({"customer": customer, **w.to_json()})
        return
    what = {"turn": f"turn {w.turn}", "unchanged": "unchanged"}.get(w.change, w.change)
    tag = f", tagged {w.version}" if w.tag else ""
    replayed = " (replayed)" if w.replayed else ""
    click.echo(f"{customer} {w.version} {w.commit[:12]} {what}{tag}{replayed}")


def idempotency_option(f: F) -> F:
    """``--idempotency-key KEY``: a retried write with the same key writes nothing."""
    return click.option(
        "--idempotency-key", "idempotency_key", metavar="KEY",
        help="Retry-safe: run again with the same KEY, the command stores nothing twice "
             "and reports the first result, marked (replayed). A KEY names one write: "
             "another write under it is refused (exit 2).")(f)


def _session(obj: Ctx, customer: str, scenario: str | None) -> Session:
    return obj.store().customer(customer).session(scenario)


@click.command()
@click.argument("customer")
@click.option("--session-id", help="Session id; default orchestrator-session-<uuid>.")
@click.option("--created", metavar="TIMESTAMP", help="created_timestamp (RFC 3339); default now. "
              "With --metadata: fills the file's, or must agree with it.")
@click.option("--metadata", "metadata_file", metavar="FILE",
              help="Initial session_metadata.json (managed fields may be omitted).")
@click.option("--version", "expected", metavar="vN.0.0",
              help="Refuse unless this is the version the new scenario gets.")
@click.option("-m", "--message", help="Commit summary line.")
@click.option("--new-scenario", "allow_open", is_flag=True,
              help="Start another scenario although one is still open (without it, new "
                   "refuses while the customer has an open, unexpired scenario).")
@idempotency_option
@output_option
@click.pass_obj
def new(obj: Ctx, customer: str, session_id: str | None, created: str | None,
        metadata_file: str | None, expected: str | None, message: str | None,
        allow_open: bool, idempotency_key: str | None, output: str) -> None:
    """Start a new deployment scenario (the next major version) for CUSTOMER.

    Creates the customer's repository on first use. Refuses (exit 5) while
    CUSTOMER has an open scenario, unless --new-scenario."""
    store = obj.store()
    metadata = _read_input(metadata_file) if metadata_file else None
    cust = store.customer(customer)
    session = cust.new_session(
        session_id=session_id, created=created, metadata=metadata, version=expected,
        message=message, idempotency_key=idempotency_key, allow_open=allow_open)
    w = session.created
    assert w is not None
    for warning in w.warnings:
        note(f"gitstore: warning: {cust.name} {w.commit[:12]} is committed, but {warning}")
    sid = session.session_id  # one per scenario
    if output == "json":
        emit_json({"customer": cust.name, "version": str(w.version), "session_id": sid,
                   "commit": w.commit, "replayed": w.replayed})
    else:
        replayed = " (replayed)" if w.replayed else ""
        click.echo(f"{cust.name} {w.version} {w.commit[:12]} {sid}{replayed}")


@click.command()
@click.argument("customer")
@click.argument("file", metavar="FILE|-")
@scenario_option
@click.option("-m", "--message", help="Commit summary line.")
@idempotency_option
@output_option
@click.pass_obj
def turn(obj: Ctx, customer: str, file: str, scenario: str | None, message: str | None,
         idempotency_key: str | None, output: str) -> None:
    """Append one conversation turn (a JSON object) to the open version.

    Without --idempotency-key, the same turn sent again within 10 minutes (equal
    JSON, turn_id aside) is reported as the first write (replayed), not stored twice."""
    session = _session(obj, customer, scenario)
    w = session.append_turn(_read_input(file), message=message,
                            idempotency_key=idempotency_key)
    _report_written(w, output, session.customer.name)


@click.command()
@click.argument("customer")
@click.argument("document")
@click.argument("file", metavar="FILE|-")
@scenario_option
@click.option("-m", "--message", help="Commit summary line.")
@idempotency_option
@output_option
@click.pass_obj
def put(obj: Ctx, customer: str, document: str, file: str, scenario: str | None,
        message: str | None, idempotency_key: str | None, output: str) -> None:
    """Replace a JSON document of the open version, such as deployment_context.json."""
    session = _session(obj, customer, scenario)
    w = session.put(document, _read_input(file), message=message,
                    idempotency_key=idempotency_key)
    _report_written(w, output, session.customer.name)


@click.command()
@click.argument("customer")
@click.argument("file", metavar="FILE|-")
@scenario_option
@idempotency_option
@output_option
@click.pass_obj
def summary(obj: Ctx, customer: str, file: str, scenario: str | None,
            idempotency_key: str | None, output: str) -> None:
    """Set the conversation_summary of the open version."""
    session = _session(obj, customer, scenario)
    w = session.set_summary(_read_input(file), idempotency_key=idempotency_key)
    _report_written(w, output, session.customer.name)


@click.command()
@click.argument("customer")
@scenario_option
@click.option("--version", "expected", metavar="vX.Y.Z",
              help="Refuse unless this is the version being finalized.")
@click.option("-m", "--message", help="Why the version is finalized (goes into the tag).")
@idempotency_option
@output_option
@click.pass_obj
def finalize(obj: Ctx, customer: str, scenario: str | None, expected: str | None,
             message: str | None, idempotency_key: str | None, output: str) -> None:
    """Finalize the open version: render the SOW, check completeness, tag it."""
    session = _session(obj, customer, scenario)
    w = session.finalize(message=message, version=expected, idempotency_key=idempotency_key)
    _report_written(w, output, session.customer.name)


@click.command("follow-up")
@click.argument("customer")
@scenario_option
@click.option("--version", "expected", metavar="vX.Y.0",
              help="Refuse unless this is the version the follow-up opens.")
@click.option("-m", "--message", help="Why (goes into the commit).")
@idempotency_option
@output_option
@click.pass_obj
def follow_up(obj: Ctx, customer: str, scenario: str | None, expected: str | None,
              message: str | None, idempotency_key: str | None, output: str) -> None:
    """Open the next minor version for a follow-up conversation."""
    session = _session(obj, customer, scenario)
    w = session.follow_up(message=message, version=expected, idempotency_key=idempotency_key)
    _report_written(w, output, session.customer.name)


@click.command()
@click.argument("customer")
@click.argument("files", nargs=-1, required=True, metavar="[DOCUMENT=]FILE...")
@click.option("-r", "--reason", required=True, help="Why the data is corrected.")
@scenario_option
@click.option("--base", metavar="vX.Y.Z", help="The version being corrected (must be newest).")
@click.option("--version", "expected", metavar="vX.Y.Z",
              help="Refuse unless this is the version the correction publishes.")
@idempotency_option
@output_option
@click.pass_obj
def correct(obj: Ctx, customer: str, files: tuple[str, ...], reason: str,
            scenario: str | None, base: str | None, expected: str | None,
            idempotency_key: str | None, output: str) -> None:
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
    w = session.correct(documents, reason=reason, base=base, version=expected,
                        idempotency_key=idempotency_key)
    _report_written(w, output, session.customer.name)
