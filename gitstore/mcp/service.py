"""What every MCP tool shares: the open store, its errors as tool errors, the
annotations, the parameter types and progress from worker threads.

Invariants:

* :class:`Service` opens the store once (a missing or unusable root fails at start,
  before the server answers anything); a call with its own ``author`` uses a store
  whose agent is that author, so the commit's author, its ``Agent`` trailer and the
  access-log record all name who made the change (a few such stores are kept open);
* :func:`tool_errors` turns every :class:`~gitstore.errors.GitStoreError` into a
  tool result with ``isError`` set: its text is ``<code_name>: <one-line message>``
  and its structured content ``{"error": {"code", "exit_code", "message", ...}}``
  (``violations`` of an invalid document, ``problems`` of an integrity failure).
  Anything else is a bug: the SDK answers with a generic tool error and logs the
  traceback on stderr, never to the client;
* read-only tools carry ``readOnlyHint``; tools that write carry
  ``destructiveHint: false`` (history is kept: nothing they do destroys data), except
  the retention purge, the one destructive tool.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, cast

import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from gitstore.errors import GitStoreError, IntegrityError, InvalidDocumentError, NotFoundError
from gitstore.store.context import Clock
from gitstore.store.facade import Store

LOG = logging.getLogger("gitstore.mcp")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: How many stores for per-call authors stay open at once.
AUTHOR_STORES = 16

# -- annotations ------------------------------------------------------------------

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False,
                            idempotent_hint=True, open_world_hint=False)
"""A question: changes nothing in the store (it is recorded in the access log)."""
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False,
                        idempotent_hint=False, open_world_hint=False)
"""A write that adds to the history and destroys nothing."""
REBUILD = ToolAnnotations(read_only_hint=False, destructive_hint=False,
                          idempotent_hint=True, open_world_hint=False)
"""Rewrites derived data (the index) only."""
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True,
                              idempotent_hint=True, open_world_hint=False)
"""Deletes data for good."""


def titled(base: ToolAnnotations, title: str) -> ToolAnnotations:
    return base.model_copy(update={"title": title})


# -- parameter types (module level: the SDK resolves annotations by name) ----------

CustomerArg = Annotated[str, Field(
    description="The customer's api_key, e.g. 'customer-xyz789' (letters, digits, '-', '_', "
                "'.'); each customer is one git repository.")]
ScenarioArg = Annotated[str | None, Field(
    description="Deployment scenario to act on, 'v1', 'v2', ... (one major version each); "
                "default: the customer's newest scenario.")]
Author = Annotated[str | None, Field(
    description="Who makes this change, 'Name <email>' (or a bare name): the commit's "
                "author, Agent trailer and access-log actor. Default: the server's --agent.")]
IdempotencyKey = Annotated[str | None, Field(
    description="A key of your choosing (1-200 printable characters) for this one change. "
                "Sending the same key again, e.g. retrying after a timeout, returns the "
                "first write (replayed: true) instead of writing twice (within the "
                "scenario's 512 newest commits); a key already used for another change, "
                "or sent with other content, is refused.")]
Message = Annotated[str | None, Field(
    description="Commit message summary to use instead of the generated one.")]
At = Annotated[str | None, Field(
    description="When the change happened, RFC 3339 with offset (2025-01-15T10:30:00Z); "
                "default: now.")]
JsonDocument = Literal["conversation.json", "deployment_context.json",
                       "session_metadata.json", "session_analytics.json"]
AnyDocument = Literal["conversation.json", "deployment_context.json", "session_metadata.json",
                      "session_analytics.json", "sow_document.md", "SHA256SUMS"]
Rev = Annotated[str | None, Field(
    description="A version (v1.0.0), a scenario (v1: its newest state), HEAD, a commit id "
                "or a git revision like v1~2; default: HEAD, the newest scenario's newest "
                "state.")]


# -- the store ----------------------------------------------------------------------

class Service:
    """The store the tools act on, opened once, and stores for per-call authors."""

    def __init__(self, root: str, *, agent: str | None = None,
                 lock_timeout: float | None = None, clock: Clock | None = None) -> None:
        self.root = root
        self.lock_timeout = lock_timeout
        self.clock = clock
        self.store = self.open(agent)
        self.agent = str(self.store.config.agent)
        self.by_author: OrderedDict[str, Store] = OrderedDict()
        self.guard = threading.Lock()

    def open(self, agent: str | None) -> Store:
        store = Store(self.root, agent=agent, lock_timeout=self.lock_timeout, clock=self.clock)
        store.lock_wait = waiting
        return store

    def store_for(self, author: str | None) -> Store:
        """The store that writes as ``author`` (the server's own when None)."""
        if author is None or author == self.agent:
            return self.store
        with self.guard:
            store = self.by_author.get(author)
            if store is None:
                store = self.by_author[author] = self.open(author)
                while len(self.by_author) > AUTHOR_STORES:
                    self.by_author.popitem(last=False)
            self.by_author.move_to_end(author)
            return store


def waiting(customer: str) -> None:
    LOG.info("waiting for another writer of %s", customer)


# -- errors -------------------------------------------------------------------------

def error_detail(exc: GitStoreError) -> dict[str, Any]:
    """The structured form of a gitstore error."""
    detail: dict[str, Any] = {"code": exc.code_name, "exit_code": exc.exit_code,
                              "message": str(exc)}
    if isinstance(exc, InvalidDocumentError):
        detail["violations"] = [v.to_json() for v in exc.violations]
    if isinstance(exc, IntegrityError) and exc.problems:
        detail["problems"] = list(exc.problems)
    return detail


def error_result(exc: GitStoreError) -> CallToolResult:
    """A tool error: ``<code_name>: <message>`` and the structured detail."""
    return CallToolResult(content=[TextContent(type="text", text=f"{exc.code_name}: {exc}")],
                          structured_content={"error": error_detail(exc)}, is_error=True)


def tool_errors(fn: F) -> F:
    """Wrap a tool so a GitStoreError becomes its error result (see the module doc)."""
    name = getattr(fn, "__name__", "tool")
    if inspect.iscoroutinefunction(fn):
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except GitStoreError as exc:
                LOG.info("tool %s: %s: %s", name, exc.code_name, exc)
                return error_result(exc)
        return cast(F, functools.wraps(fn)(run_async))

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GitStoreError as exc:
            LOG.info("tool %s: %s: %s", name, exc.code_name, exc)
            return error_result(exc)
    return cast(F, functools.wraps(fn)(run))


def resource_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a resource reader: a NotFoundError becomes the SDK's not-found (JSON-RPC
    -32602), any other GitStoreError a resource error; both say
    ``<code_name>: <message>``."""
    def read(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except NotFoundError as exc:
            raise ResourceNotFoundError(f"{exc.code_name}: {exc}") from None
        except GitStoreError as exc:
            raise ResourceError(f"{exc.code_name}: {exc}") from None
    return functools.wraps(fn)(read)


# -- progress -------------------------------------------------------------------------

Progress = Callable[[int, int, str], None]


async def with_progress(ctx: Context[Any, Any], work: Callable[[Progress], T]) -> T:
    """Run ``work(progress)`` in a worker thread; each ``progress(done, total, what)``
    it calls is sent to the client as a progress notification (when it asked)."""
    async def send(done: int, total: int, what: str) -> None:
        await ctx.report_progress(done, total, what)

    def progress(done: int, total: int, what: str) -> None:
        anyio.from_thread.run(send, done, total, what)

    return await anyio.to_thread.run_sync(lambda: work(progress))


# -- published schemas ------------------------------------------------------------------

def inline_schema(schema: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``schema`` with every local ``$ref`` replaced by its definition (so it can sit
    inside a tool's input schema) and the top-level fields ``optional`` not required
    (the store fills them in)."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = walk(defs[ref.removeprefix("#/$defs/")])
                return {**target, **{k: walk(v) for k, v in node.items() if k != "$ref"}}
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    if optional and isinstance(out.get("required"), list):
        out["required"] = [r for r in out["required"] if r not in optional]
    out.pop("title", None)
    return out
