"""Server commands: ``gitstore mcp``, the store as Model Context Protocol tools, and
``gitstore web``, the read-only web viewer (extra ``gitstore[web]``, imported the same
lazy way).

A plain click command, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`. The server
(:mod:`gitstore.mcp`) and the ``mcp`` SDK it needs (the optional extra
``gitstore[mcp]``) are imported only when the command runs, so a plain install never
needs them; without them the command says how to install them (exit 2). While serving
over stdio, stdout carries only protocol messages; every log line goes to stderr.
"""

from __future__ import annotations

import click

from gitstore.cli.app import Ctx, note
from gitstore.errors import UsageError

INSTALL_HINT = "pip install 'gitstore[mcp]'"
WEB_INSTALL_HINT = "pip install 'gitstore[web]'"


@click.command("mcp")
@click.option("--root", metavar="DIR",
              help="Store root directory; default: the group's --root (env GITSTORE_ROOT).")
@click.option("--agent", metavar="'NAME <EMAIL>'",
              help="Who authors the writes made through the server, unless a tool call "
                   "names its own author; default: the group's --agent (env "
                   "GITSTORE_AGENT), else the store's agent.")
@click.option("--http", is_flag=True,
              help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="With --http: the address to bind (keep it local unless a proxy in front "
                   "authenticates clients).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="With --http: the port to listen on.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
              default="WARNING", show_default=True, help="What the server logs (on stderr).")
@click.pass_obj
def mcp_server(obj: Ctx, root: str | None, agent: str | None, http: bool, host: str,
               port: int, log_level: str) -> None:
    """Serve the store to AI agents as MCP tools, over stdio (default) or HTTP.

    Register it with an MCP client as the command `gitstore mcp --root DIR`; the tools
    start, append to, finalize, follow up, correct, resume, list, search, show, diff,
    export, verify and merge sessions (see README "MCP server"). Needs the optional extra:
    pip install 'gitstore[mcp]'."""
    try:
        from gitstore.mcp.server import build_server, run
    except ModuleNotFoundError as exc:
        if (exc.name or "gitstore").partition(".")[0] == "gitstore":
            raise
        raise UsageError(f"gitstore mcp needs the MCP SDK, which is not installed "
                         f"({exc.name} is missing): {INSTALL_HINT}") from None
    server = build_server(root or obj.root, agent=agent or obj.agent,
                          lock_timeout=obj.lock_timeout, log_level=log_level)
    if http:
        note(f"gitstore: MCP server on http://{host}:{port}/mcp (stop it with Ctrl-C)")
    run(server, http=http, host=host, port=port)


@click.command("web")
@click.option("--root", metavar="DIR",
              help="Store root directory; default: the group's --root (env GITSTORE_ROOT).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to bind (loopback unless you mean to share it).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="The port to listen on (0: any free port; the address is printed).")
@click.option("--new-token", is_flag=True,
              help="Print a new access token on stdout and exit (no server).")
@click.option("--label", metavar="NAME",
              help="With --new-token: the viewer's name in the access logs "
                   "(default viewer-N).")
@click.option("--customer", "customers", multiple=True, metavar="CUSTOMER",
              help="With --new-token: the token sees only CUSTOMER (repeatable).")
@click.option("--list-tokens", is_flag=True,
              help="List the tokens (labels and scopes, never the tokens) and exit.")
@click.option("--revoke-token", metavar="LABEL", help="Revoke the token LABEL and exit.")
@click.pass_obj
def web(obj: Ctx, root: str | None, host: str, port: int, new_token: bool,
        label: str | None, customers: tuple[str, ...], list_tokens: bool,
        revoke_token: str | None) -> None:
    """Serve a read-only web viewer of the store for auditors and support staff.

    Pages: customers and sessions (filter, sort, page), a customer's timeline, a
    version (chat, tables, SOW), diffs, document history, statistics, health and
    the access log; downloads of a version, a customer export and the escalation
    briefing. Every page needs an access token: the first start prints one (label
    admin) once; --new-token makes more, optionally scoped with --customer. Every
    page view is recorded in the customer's access log under the token's label.
    Needs the optional extra: pip install 'gitstore[web]'."""
    try:
        from gitstore.web import server
    except ModuleNotFoundError as exc:
        if (exc.name or "gitstore").partition(".")[0] == "gitstore":
            raise
        raise UsageError(f"gitstore web needs its optional dependencies, which are not "
                         f"installed ({exc.name} is missing): {WEB_INSTALL_HINT}") from None
    where = root or obj.root
    if (label is not None or customers) and not new_token:
        raise UsageError("--label and --customer go with --new-token")
    if new_token:
        token, record, missing = server.make_token(where, label, customers)
        for name in missing:
            note(f"gitstore: warning: no customer {name!r} in the store yet")
        scope = ", ".join(record.customers) if record.customers is not None else "all customers"
        note(f"gitstore: new token '{record.label}' for {scope} (shown only now):")
        click.echo(token)
    elif list_tokens:
        for t in server.tokens(where):
            scope = ", ".join(t.customers) if t.customers is not None else "all customers"
            click.echo(f"{t.label}\t{t.created}\t{scope}")
    elif revoke_token is not None:
        if not server.revoke(where, revoke_token):
            raise UsageError(f"no token labelled {revoke_token!r}")
        note(f"gitstore: token '{revoke_token}' revoked")
    else:
        server.serve(where, host, port, note=note)
