"""The gitstore MCP server and its two transports.

:func:`build_server` opens the store (failing at once, with the store's own error,
when the root is missing or unusable) and registers every tool and the document
resource. :func:`run` serves it over stdio (the default: the SDK moves file
descriptor 1 to stderr while it serves, so nothing but protocol messages reaches
stdout) or over streamable HTTP at ``http://HOST:PORT/mcp``, bound to 127.0.0.1
unless told otherwise, with the SDK's DNS-rebinding protection for local hosts and
no access log on stdout. Logs go to stderr.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from gitstore.errors import UsageError
from gitstore.mcp import admin, merging, reads, writes
from gitstore.mcp.service import Service, error_result
from gitstore.store.context import Clock
from gitstore.version import __version__

INSTRUCTIONS = """\
gitstore keeps AI-agent deployment-advisor sessions as versioned documents in git, one
repository per customer (api_key). A session is a deployment scenario (v1, v2, ...);
its versions follow semver: start_session opens v(N+1).0.0; append_turn, put_document
and set_summary add to the open version; finalize renders the statement of work,
checks completeness and tags it; follow_up opens the next minor version; correct
publishes the next patch. resume_session finds a session by its id alone and returns
its context (metadata and the last turns). Every write is validated and is one commit
or nothing; pass an idempotency_key when you may retry. Errors name their kind
(usage, not_found, invalid_document, version_rule, conflict, integrity, too_large,
storage, render) and say what to fix. Documents are also resources:
gitstore://{customer}/{version}/{document}."""

class Server(MCPServer[Any]):
    """The SDK's server, but arguments that fail a tool's schema (a wrong type, an
    enum or range missed) are refused like every other call the store refuses: a
    tool error ``usage: ...`` with the structured ``{"error": ...}`` detail, naming
    each argument and what it must be (never the value sent)."""

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context[Any, Any] | None = None
                        ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(exc, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: "
                                 f"{e['msg']}" for e in cause.errors())
            return error_result(UsageError(f"{name}: invalid arguments: {problems}"))


Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LEVELS: tuple[Level, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def build_server(root: str, *, agent: str | None = None, lock_timeout: float | None = None,
                 clock: Clock | None = None, log_level: str = "WARNING"
                 ) -> MCPServer[Any]:
    """The server over the store at ``root``; writes are authored by ``agent``
    ('Name <email>'; default: the store's configured agent) unless a call names its
    own ``author``. ``log_level`` is one of :data:`LEVELS` (logs go to stderr)."""
    level = next((lv for lv in LEVELS if lv == log_level.upper()), None)
    if level is None:
        raise UsageError(f"log level must be one of {', '.join(LEVELS)}, not {log_level!r}")
    svc = Service(root, agent=agent, lock_timeout=lock_timeout, clock=clock)
    server: MCPServer[Any] = Server(
        "gitstore", title="gitstore", version=__version__, instructions=INSTRUCTIONS,
        log_level=level)
    writes.register(server, svc)
    reads.register(server, svc)
    admin.register(server, svc)
    merging.register(server, svc)
    return server


def run(server: MCPServer[Any], *, http: bool = False, host: str = "127.0.0.1",
        port: int = 8000) -> None:
    """Serve until the client hangs up (stdio) or the process is stopped (HTTP)."""
    if not http:
        anyio.run(server.run_stdio_async)
        return
    app = server.streamable_http_app(host=host)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            log_level=level)
    anyio.run(uvicorn.Server(config).serve)
