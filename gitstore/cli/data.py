"""Data commands: export, import, escalate, expire and retention.

Plain click commands, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`, the one
place that maps them to exit codes. Formats and policies are documented in
:mod:`gitstore.ops.exporting` and :mod:`gitstore.ops.retention`. A file written
with ``-O PATH`` appears only complete: it is a temp file renamed into place. Only a
regular file (or an absent path) is ever replaced that way: a character device
(``/dev/null``, a terminal), a FIFO and ``-`` (stdout) are written in place, and any
other kind of path (a directory, a socket, a block device) is refused.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import click

from gitstore.cli.app import Ctx, emit_json, note, output_option
from gitstore.core.time import format_rfc3339, parse_duration
from gitstore.errors import NotFoundError, StorageError, UsageError
from gitstore.store.facade import Store


def _existing(store: Store, name: str) -> str:
    customer = store.customer(name)
    if not customer.exists:
        raise NotFoundError(f"unknown customer {customer.name!r} in {store.root}")
    return customer.name


@contextmanager
def _output(path: str, binary: bool) -> Iterator[IO[Any]]:
    """Write to stdout (``-``); in place to a character device or a FIFO (what a
    symbolic link there names, e.g. ``/dev/stdout``), which is never replaced; or
    atomically to a regular file or an absent path (a temp file renamed into place
    only when the writer finished without error; a symbolic link to a regular file
    keeps pointing at it). Anything else is a UsageError, before anything is written."""
    if path == "-":
        yield sys.stdout.buffer if binary else sys.stdout
        sys.stdout.flush()
        return
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        with _in_place(path, binary) as f:
            yield f
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a socket" \
            if stat.S_ISSOCK(st.st_mode) else "a block device" \
            if stat.S_ISBLK(st.st_mode) else "not a regular file"
        raise UsageError(f"-O {path}: is {kind}; give a regular file (replaced whole), a "
                         "FIFO or a character device (written in place), or - for stdout")
    target = Path(os.path.realpath(path))  # a link to a regular file: replace the file
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with _stream(fd, binary) as f:
            yield f
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _in_place(path: str, binary: bool) -> Iterator[IO[Any]]:
    """Write to a character device or a FIFO as it is (no temp file, no rename)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with _stream(fd, binary) as f:
            yield f
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _stream(fd: int, binary: bool) -> IO[Any]:
    """A file object over ``fd``: bytes, or UTF-8 text."""
    return os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- export, import, escalate ---------------------------------------------------

@click.command()
@click.argument("customer", required=False)
@click.argument("version", required=False, metavar="[VERSION|SCENARIO]")
@click.option("--all", "everything", is_flag=True, help="Every customer in the store.")
@click.option("-O", "--out", metavar="PATH",
              help="Output file (replaced whole, atomically), a FIFO or character device "
                   "(written in place), or - for stdout; default gitstore-export-<UTC "
                   "time>.json (.bundle for git bundles) in the current directory.")
@click.option("--format", "fmt", type=click.Choice(["json", "git-bundle"]), default="json",
              show_default=True, help="A JSON bundle, or a git bundle of one whole customer.")
@click.pass_obj
def export(obj: Ctx, customer: str | None, version: str | None, everything: bool,
           out: str | None, fmt: str) -> None:
    """Export one version (v1.0.0), one scenario (v1), one customer or --all.

    The JSON bundle holds every version's documents, tags and history; the git
    bundle (--format git-bundle) one customer's complete repository, readable by
    plain git. `gitstore import` restores either."""
    from gitstore.ops.exporting import default_name, write_git_bundle, write_json_export

    store = obj.store()
    if everything == (customer is not None):
        raise UsageError("name a CUSTOMER or pass --all (not both)")
    names = store.customers() if everything else [_existing(store, customer or "")]
    if fmt == "git-bundle":
        if everything or version:
            raise UsageError("a git bundle holds one whole customer: gitstore export "
                             "CUSTOMER --format git-bundle")
        path = out or default_name(store.now(), f"export-{names[0]}", ".bundle")
        with _output(path, binary=True) as f:
            refs = write_git_bundle(store.customer_named(names[0]), f)
        note(f"wrote {path}: git bundle of {names[0]}, {len(refs)} ref(s)")
        return
    path = out or default_name(store.now())
    with _output(path, binary=False) as f:
        count = write_json_export(store, f, names, version)
    note(f"wrote {path}: {count} customer(s)" + (f", {version} only" if version else ""))


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--customer", metavar="NAME",
              help="Git bundles: the customer to restore as (default: the api_key its "
                   "metadata names). Another name rewrites every commit with NAME as its "
                   "api_key (new commit ids; a Renamed-From trailer records the old name).")
@output_option
@click.pass_obj
def import_(obj: Ctx, file: str, customer: str | None, output: str) -> None:
    """Restore customers from FILE, a JSON bundle or a git bundle from `export`.

    Only customers absent from the store are restored. A JSON bundle is replayed
    commit by commit through the normal checks (same versions, tags, documents,
    authors and times). A git bundle restores the exact repository (same commit
    ids; needs git on PATH), which must pass `gitstore verify`; with --customer
    naming another customer, its history is rewritten through the same checks."""
    from gitstore.ops.importing import import_file

    path = Path(file)
    if not path.is_file():
        raise NotFoundError(f"no such file: {file}")
    names = import_file(obj.store(), path, customer)
    if output == "json":
        emit_json({"imported": names})
    else:
        for name in names:
            click.echo(f"imported {name}")


@click.command()
@click.argument("customer")
@click.argument("scenario", required=False, metavar="[SCENARIO]")
@click.option("-O", "--out", metavar="PATH",
              help="Output file (replaced whole, atomically), a FIFO or character device "
                   "(written in place), or - for stdout; default "
                   "gitstore-escalation-<customer>-<scenario>-<UTC time>.md.")
@click.pass_obj
def escalate(obj: Ctx, customer: str, scenario: str | None, out: str | None) -> None:
    """Write a Markdown briefing on a scenario for a human expert.

    Every version with its tag message, the conversation turn by turn, all
    documents, the history and the newest finalized version's SOW."""
    from gitstore.ops.escalation import escalation
    from gitstore.ops.exporting import default_name

    store = obj.store()
    cust = store.customer_named(_existing(store, customer))
    text = escalation(cust, scenario)
    chosen = scenario or str(cust.scenarios()[-1])
    path = out or default_name(store.now(), f"escalation-{cust.name}-{chosen}", ".md")
    with _output(path, binary=False) as f:
        f.write(text if text.endswith("\n") else text + "\n")
    if path != "-":
        note(f"wrote {path}")


# -- expiry and retention --------------------------------------------------------

def _duration(text: str | None) -> timedelta | None:
    """``--older-than``: a finite duration of the one grammar (:mod:`gitstore.core.time`),
    longer than zero (zero would expire every open version at once)."""
    if text is None:
        return None
    value = parse_duration(text, what="--older-than")
    if not value:
        raise UsageError(f"invalid --older-than {text!r}: must be longer than zero, "
                         "e.g. 2h, 7d or 30d")
    return value


@click.command()
@click.argument("customers", nargs=-1)
@click.option("--older-than", metavar="DURATION",
              help="Inactivity timeout (2h, 7d, 30d); default: \"expiry\" in "
                   "<root>/.gitstore/policy.json.")
@click.option("--dry-run", is_flag=True, help="Only list what would expire.")
@output_option
@click.pass_obj
def expire(obj: Ctx, customers: tuple[str, ...], older_than: str | None, dry_run: bool,
           output: str) -> None:
    """Mark idle open versions expired (default: in every customer).

    An open version whose last commit is older than the timeout gets one commit
    (Change: expire) setting workflow_tracking.completion_status to "expired".
    Nothing is deleted; the version stays open and can be resumed."""
    from gitstore.ops.retention import expire as run

    store = obj.store()
    names = [_existing(store, c) for c in customers] or None
    found = run(store, older_than=_duration(older_than), dry_run=dry_run, customers=names)
    if output == "json":
        emit_json([e.to_json() for e in found])
        return
    for e in found:
        what = "would expire" if dry_run else \
            f"skipped ({e.skipped})" if e.skipped else f"expired in {(e.commit or '')[:12]}"
        click.echo(f"{e.customer} {e.scenario} {e.version}: idle since "
                   f"{format_rfc3339(e.last_activity)} ({e.last_commit[:12]}): {what}")
    if not found:
        note("nothing to expire")


@click.group()
def retention() -> None:
    """Retention policies (seed 000): plan and apply purges.

    Periods come from <root>/.gitstore/policy.json ("retention_policies"):
    active_customer_sessions (default indefinite), completed_sessions (2y),
    error_logs (1y: damaged objects set aside by repair), analytics_summaries (5y)."""


def _show(items: list[Any], output: str, echo: Callable[[str], None]) -> None:
    if output == "json":
        emit_json([i.to_json() for i in items])
        return
    for i in items:
        versions = f" [{', '.join(i.versions)}]" if i.versions else ""
        echo(f"{i.action:<20} {i.customer} {i.target}{versions}: {i.reason}")


@retention.command("plan")
@click.argument("customers", nargs=-1)
@click.option("-a", "--all", "show_all", is_flag=True, help="Also list what is kept, and why.")
@output_option
@click.pass_obj
def retention_plan(obj: Ctx, customers: tuple[str, ...], show_all: bool, output: str) -> None:
    """Show what `retention apply` would purge now, and why (changes nothing)."""
    from gitstore.ops.retention import load_policy, plan

    store = obj.store()
    names = [_existing(store, c) for c in customers] or None
    items = plan(store, names)
    shown = items if show_all else [i for i in items if i.goes]
    _show(shown, output, click.echo)
    if output == "text":
        policy = load_policy(store.root).to_json()["retention_policies"]
        note(f"{sum(i.goes for i in items)} to purge, {sum(not i.goes for i in items)} kept; "
              "policy " + ", ".join(f"{k}={v}" for k, v in policy.items()))


@retention.command("apply")
@click.argument("customers", nargs=-1)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@output_option
@click.pass_obj
def retention_apply(obj: Ctx, customers: tuple[str, ...], yes: bool, output: str) -> None:
    """Purge what the retention policy lets go, for real.

    Tags and branches of expired scenarios are removed (an analytics summary is
    kept while its own policy lasts), reflogs cleaned and unreachable objects
    pruned, so the data is gone from the repository; a tombstone goes to the
    audit log. Everything the policy keeps is left untouched."""
    from gitstore.ops.retention import apply, plan

    store = obj.store()
    names = [_existing(store, c) for c in customers] or None
    if not yes:
        pending = [i for i in plan(store, names) if i.goes]
        if not pending:
            note("nothing to purge")
            return
        _show(pending, "text", note)
        if not sys.stdin.isatty():
            raise UsageError("retention apply deletes data for good; pass --yes to confirm")
        click.confirm(f"purge these {len(pending)} item(s)?", abort=True, err=True)
    done = apply(store, names)
    _show(done, output, click.echo)
    if output == "text":
        note(f"purged {len(done)} item(s)" if done else "nothing to purge")
