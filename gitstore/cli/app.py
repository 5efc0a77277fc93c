"""The ``gitstore`` command line: the group, its shared options and helpers, the
command registry and :func:`main`.

Invariants:

* :func:`main` is the only place that maps :class:`~gitstore.errors.GitStoreError`
  subclasses to exit codes and one-line messages; anything else unexpected exits
  70 (``INTERNAL``). Data goes to stdout, messages and progress to stderr; every
  read command takes ``-o text|json``.
* Commands are found through :data:`COMMANDS`, a table of name -> ``module:function``
  and one-line help. The group imports a command module only when that command runs
  (or its own ``--help`` is asked for), so ``gitstore --help`` and ``--version`` load
  no command module, no store and no validation libraries.
* Command modules (:mod:`~gitstore.cli.session`, :mod:`~gitstore.cli.read`,
  :mod:`~gitstore.cli.admin`, :mod:`~gitstore.cli.data`, :mod:`~gitstore.cli.query`,
  :mod:`~gitstore.cli.serve`)
  define plain click commands and import from the cli only this module's helpers,
  never the group; this module imports none of them except through the registry.
* This module stays light: click, :mod:`gitstore.errors`, :mod:`gitstore.version`
  and :mod:`gitstore.core.time` at import; the store when a command asks for it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gitstore.core import time as core_time
from gitstore.errors import (
    EXIT_CODES,
    INTERNAL,
    GitStoreError,
    InvalidDocumentError,
    UsageError,
    exit_code_table,
)
from gitstore.version import __version__

if TYPE_CHECKING:
    from gitstore.store.facade import Store

F = TypeVar("F", bound=Callable[..., Any])

EXIT_HELP = "\b\nExit codes:\n" + exit_code_table() + "\n"


# -- shared context, options and helpers -----------------------------------------

class Ctx:
    """The group's options, handed to every command (``click.pass_obj``)."""

    def __init__(self, root: str, agent: str | None, lock_timeout: float | None = None,
                 by_name: bool = False) -> None:
        self.root = root
        self.agent = agent
        self.lock_timeout = lock_timeout
        self.by_name = by_name
        self.said: set[str] = set()

    def warning(self, text: str) -> None:
        """A warning from the library (a read-only store: access not recorded),
        said once per command on stderr."""
        if text not in self.said:
            self.said.add(text)
            note(f"gitstore: warning: {text}")

    def store(self, *, create: bool = False, reads_only: bool = False) -> Store:
        """The store. ``reads_only``: the command only reads, so its repositories
        read through the git binary first (:mod:`gitstore.git.catfile`) and a
        short read never loads libgit2."""
        from gitstore.git import settings
        from gitstore.store.facade import Store

        if reads_only:
            settings.read_with_git()
            click.get_current_context().call_on_close(settings.stop_reading_with_git)
        store = Store(self.root, create=create, agent=self.agent,
                      lock_timeout=self.lock_timeout)
        store.lock_wait = waiting_note
        store.warn = self.warning
        store.by_name = self.by_name
        return store


def waiting_note(customer: str) -> None:
    """Said once when a write has waited a second for another writer's lock."""
    note(f"gitstore: waiting for another writer of {customer}…")


def output_option(f: F) -> F:
    """``-o/--output text|json`` (default text)."""
    return click.option("-o", "--output", "output", type=click.Choice(["text", "json"]),
                        default="text", show_default=True, help="Output format.")(f)


def scenario_option(f: F) -> F:
    """``-s/--scenario vN``: the scenario to act on (default: the newest)."""
    return click.option("-s", "--scenario", metavar="vN",
                        help="Scenario (major version) to act on; default: the newest.")(f)


def scenario_filter_option(f: F) -> F:
    """``-s/--scenario vN`` on a listing: only that scenario (default: every one)."""
    return click.option("-s", "--scenario", metavar="vN",
                        help="Only this scenario (major version); default: every scenario.")(f)


def emit_json(data: Any) -> None:
    """``data`` as indented JSON with sorted keys on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


def note(text: str) -> None:
    """A message for the person at the terminal, on stderr."""
    click.echo(text, err=True)


# patterns, compiled (and cached by re) on first use: most commands take no time option
_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_LOOSE = (r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2})"
          r"(:[0-9]{2}(?:\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?")


def parse_when(value: str | None, *, what: str = "time", end: bool = False,
               now: datetime | None = None) -> datetime | None:
    """Parse a ``--since``/``--until``/``--at`` value (None stays None) with
    :func:`gitstore.core.time.parse_when`, also accepting what the command line
    always took: a bare ``YYYY-MM-DD`` (the start of that day, or with ``end`` its
    last second), a timestamp without offset (taken as UTC), a space for ``T`` and
    ``HH:MM`` without seconds. A duration means that long before ``now`` (default:
    the current time)."""
    if value is None:
        return None
    text = value.strip()
    loose = re.fullmatch(_LOOSE, text)
    if re.fullmatch(_DAY, text):
        text += "T23:59:59Z" if end else "T00:00:00Z"
    elif loose:
        text = f"{loose[1]}T{loose[2]}{loose[3] or ':00'}{loose[4] or 'Z'}"
    try:
        return core_time.parse_when(text, now=now or datetime.now(UTC), what=what)
    except UsageError:
        raise UsageError(f"invalid {what} {value!r}: expected YYYY-MM-DD, an RFC 3339 "
                         "timestamp like 2025-01-15T10:30:00Z or a duration ago like 7d"
                         ) from None


# -- the command registry ----------------------------------------------------------

class Entry:
    """A registered command: where it lives (``module:attribute``) and its one-line
    help, which must equal the command's own short help (a test checks it). A plain
    class, not a dataclass: making one costs every process start-up a millisecond."""

    __slots__ = ("help", "target")

    def __init__(self, target: str, help: str) -> None:
        self.target = target
        self.help = help

    def __repr__(self) -> str:
        return f"Entry({self.target!r}, {self.help!r})"

    def load(self, name: str) -> click.Command:
        module, _, attr = self.target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command) or command.name != name:
            raise TypeError(f"registry entry {name!r}: {self.target} is not the click "
                            f"command {name!r}")
        return command


def _entries(module: str, rows: Mapping[str, tuple[str, str]]) -> dict[str, Entry]:
    return {name: Entry(f"gitstore.cli.{module}:{attr}", text)
            for name, (attr, text) in rows.items()}


#: Every top-level command: name -> where it is defined and its one-line help.
COMMANDS: dict[str, Entry] = {
    **_entries("session", {
        "new": ("new", "Start a new deployment scenario (the next major version) for "
                       "CUSTOMER."),
        "turn": ("turn", "Append one conversation turn (a JSON object) to the open version."),
        "put": ("put", "Replace a JSON document of the open version, such as "
                       "deployment_context.json."),
        "summary": ("summary", "Set the conversation_summary of the open version."),
        "finalize": ("finalize", "Finalize the open version: render the SOW, check "
                                 "completeness, tag it."),
        "follow-up": ("follow_up", "Open the next minor version for a follow-up "
                                   "conversation."),
        "correct": ("correct", "Publish a data correction as the next patch version."),
    }),
    **_entries("read", {
        "show": ("show", "Show a version (v1.0.0), scenario (v1), or any revision; or one "
                         "DOCUMENT of it."),
        "diff": ("diff", "Show what changed between two session states, document by "
                         "document."),
        "versions": ("versions", "List the versions of CUSTOMER: every finalized version "
                                 "and each open one."),
        "log": ("log", "Show the history of CUSTOMER (all scenarios, or REV's), newest "
                       "first."),
        "render": ("render", "Render the statement of work from the documents at REV "
                             "(default: HEAD)."),
        "customers": ("customers", "List the customers in the store."),
    }),
    **_entries("admin", {
        "init": ("init", "Create the store root (idempotent) and optionally record "
                         "settings."),
        "audit": ("audit", "Show CUSTOMER's access log: every read and write through "
                           "gitstore."),
        "verify": ("verify", "Run the health checks on CUSTOMER (default: every customer)."),
        "hooks": ("hooks", "Install and run the real git hooks that enforce gitstore's "
                           "checks."),
        "quarantine": ("quarantine", "Move CUSTOMER's repository aside, intact, to "
                                     "<root>/.gitstore/quarantine/."),
        "repair": ("repair", "Repair CUSTOMER's repository from SOURCE."),
        "maintain": ("maintain", "Compact CUSTOMER's repository (default: every customer)."),
        "migrate": ("migrate", "Move CUSTOMERS' repositories (default: every customer) to "
                               "the current layout."),
    }),
    **_entries("merge", {
        "merge": ("merge", "Merge SOURCE (a scenario v2, a version or any revision) of "
                           "CUSTOMER into another scenario, field by field; conflicts wait "
                           "for review (`gitstore conflicts`, `gitstore resolve`, then "
                           "`gitstore merge CUSTOMER --continue`)."),
        "conflicts": ("conflicts", "List the conflicts of CUSTOMER's pending merge, each "
                                   "with its stable label."),
        "resolve": ("resolve", "Decide one conflict (LABEL, from `gitstore conflicts`) of "
                               "CUSTOMER's pending merge."),
    }),
    **_entries("data", {
        "export": ("export", "Export one version (v1.0.0), one scenario (v1), one customer "
                             "or --all."),
        "import": ("import_", "Restore customers from FILE, a JSON bundle or a git bundle "
                              "from `export`."),
        "escalate": ("escalate", "Write a Markdown briefing on a scenario for a human "
                                 "expert."),
        "expire": ("expire", "Mark idle open versions expired (default: in every customer)."),
        "retention": ("retention", "Retention policies (seed 000): plan and apply purges."),
    }),
    **_entries("query", {
        "list": ("list_sessions", "List sessions (each scenario's newest version) across "
                                  "customers."),
        "stats": ("stats", "Totals and averages over every session, by status and by "
                           "provider."),
        "search": ("search", "Full-text search of the conversation turns (every word must "
                             "match; word* matches a prefix)."),
        "similar": ("similar", "Sessions like CUSTOMER's VERSION: same architecture pattern "
                               "hash and/or complexity profile (both matching first)."),
        "active": ("active", "Open sessions with activity within the timeout, most recent "
                             "first."),
        "resume": ("resume", "Find a session by its id alone and print its full context: "
                             "customer, scenario, version, status and every document of its "
                             "newest state (the conversation cut to its last N turns with "
                             "--turns)."),
        "reindex": ("reindex", "Rebuild the index from git (a progress bar on a terminal)."),
    }),
    **_entries("sync", {
        "remote": ("remote", "Show or set the hub this store syncs with (a URL template "
                             "naming each customer's repository with {customer}, e.g. "
                             "git://hub.example/{customer})."),
        "sync": ("sync", "Sync CUSTOMERs (or --all) with the hub: fetch, integrate, push; one "
                         "summary line per customer (pushed, pulled, merged, conflicts)."),
        "status": ("status", "Show how each customer (default: every one) stands against the "
                             "hub: in sync, ahead, behind or diverged, per scenario."),
        "clone-from": ("clone_from", "Bring CUSTOMERs in from the hub at URL (a template with "
                                     "{customer}, or a base URL); the store takes URL as its "
                                     "remote if it has none."),
        "hub": ("hub", "Make and fill a hub: bare customer repositories with gitstore's hook, "
                       "for a git server (git daemon, git http-backend, ssh) to serve."),
    }),
    **_entries("keys", {
        "shred": ("shred", "Crypto-shred scenario vN of an encrypted CUSTOMER: destroy its "
                           "data key."),
        "keys": ("keys", "Manage the key store of an encrypted store: status, backup, "
                         "restore, rotate."),
        "textconv": ("textconv", "Print FILE, a file of an encrypted customer, in clear: "
                                 "git's textconv driver."),
    }),
    **_entries("serve", {
        "mcp": ("mcp_server", "Serve the store to AI agents as MCP tools, over stdio "
                              "(default) or HTTP."),
        "web": ("web", "Serve a read-only web viewer of the store for auditors and support "
                       "staff."),
    }),
}


class LazyGroup(click.Group):
    """A click group whose commands come from a registry and are imported on first use.
    Its help lists every command with the registry's one-line help, importing none."""

    def __init__(self, *args: Any, registry: Mapping[str, Entry], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registry = registry

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.registry})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in self.registry:
            command = self.registry[cmd_name].load(cmd_name)
            self.add_command(command, cmd_name)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # click >= 8.4 suggests close names ("Did you mean 'list'?"), but only from the
            # commands loaded so far: offer it every registered name instead.
            if (hasattr(click.exceptions, "NoSuchCommand")
                    and isinstance(exc, click.exceptions.NoSuchCommand)
                    and not exc.possibilities):
                raise click.exceptions.NoSuchCommand(
                    exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx) from None
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's own, but a command not loaded yet shows its registry help.
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name,
                                                               help=self.registry[name].help)
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit))
                                    for name, command in rows])


@click.group(cls=LazyGroup, registry=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_HELP)
@click.option("--root", envvar="GITSTORE_ROOT", default="sessions", show_default=True,
              metavar="DIR", help="Store root directory (env GITSTORE_ROOT).")
@click.option("--agent", envvar="GITSTORE_AGENT", metavar="'NAME <EMAIL>'",
              help="Agent identity that authors commits (env GITSTORE_AGENT).")
@click.option("--lock-timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long a write waits for another writer of the same customer before "
                   "it gives up (exit 6); default: lock_timeout in the store config, 60.")
@click.option("--by-name", is_flag=True,
              help="Take each CUSTOMER as the repository name that `gitstore customers` "
                   "lists (in a store with --hash-names, the hash) instead of an api_key.")
@click.version_option(__version__, prog_name="gitstore")
@click.pass_context
def cli(ctx: click.Context, root: str, agent: str | None, lock_timeout: float | None,
        by_name: bool) -> None:
    """gitstore: a Git-backed versioned document store for AI-agent sessions.

    Each customer is a bare git repository under the store root; each deployment
    scenario is a branch; each finalized version is an annotated tag vX.Y.Z.
    A write that waits more than a second for another writer of the same customer
    says so on stderr.
    """
    ctx.obj = Ctx(root, agent, lock_timeout, by_name)


# -- entry point -------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map gitstore errors to one-line messages and exit codes. Run as
    the command (``argv`` None), a Ctrl-C while the exiting process waits for the
    background maintenance it started ends it at once, exit 130 (the run's
    temporary files are cleared by the next run), not with the interpreter's report
    of an exception in its wait; an interrupted command does not wait for it."""
    try:
        _main(argv)
    except SystemExit as done:
        if argv is None and "gitstore.store.upkeep" in sys.modules:
            if done.code == 130:  # interrupted already: do not wait for the run either
                _stop_at_once(signal.SIGINT, None)
            with contextlib.suppress(ValueError):  # not the main thread: leave it
                signal.signal(signal.SIGINT, _stop_at_once)
        raise


def _stop_at_once(signum: int, frame: object) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(130)


def _main(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="gitstore", standalone_mode=False)
    except click.exceptions.Abort:
        note("gitstore: aborted")
        sys.exit(130)
    except click.exceptions.ClickException as exc:  # bad arguments: one line, as every error
        ctx = getattr(exc, "ctx", None)
        hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        text = " ".join(exc.format_message().split())
        note(f"gitstore: error: {text.rstrip('.') if hint else text}{hint}")
        sys.exit(EXIT_CODES["usage"] if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except InvalidDocumentError as exc:
        if len(exc.violations) == 1:
            note(f"gitstore: error: {exc}")
        else:
            note(f"gitstore: error: change rejected: {len(exc.violations)} violations")
            for v in exc.violations:
                note(f"  {v}")
        sys.exit(exc.exit_code)
    except GitStoreError as exc:
        note(f"gitstore: error: {exc}")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        note("gitstore: interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("GITSTORE_DEBUG"):
            raise
        note(f"gitstore: internal error: {type(exc).__name__}: {exc} "
             "(set GITSTORE_DEBUG=1 for a traceback; please report it)")
        sys.exit(INTERNAL.code)
    sys.exit(0)


if __name__ == "__main__":
    # `python -m gitstore.cli.app`: run the package's module (not this __main__ copy),
    # so that command modules and this code share one Ctx and one set of helpers.
    from gitstore.cli.app import main as _package_main

    _package_main()
