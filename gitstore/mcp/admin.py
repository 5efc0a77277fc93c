"""Operations as MCP tools: export, the retention cleanup (a read-only plan and a
confirmed apply), verify and reindex.

Each is one call of :mod:`gitstore.ops` or the catalog, as the CLI makes it. Those that
walk many customers (export, verify, reindex) run in a worker thread and report
progress per customer when the client asks for it (a progress token). ``cleanup_apply``
is the one destructive tool: it deletes only with ``confirm: true``, given explicitly,
and deletes exactly what ``cleanup_plan`` shows as going at that moment.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field, StrictBool

from gitstore.errors import NotFoundError, UsageError
from gitstore.mcp.service import (
    DESTRUCTIVE,
    READ_ONLY,
    REBUILD,
    Progress,
    Service,
    titled,
    tool_errors,
    with_progress,
)
from gitstore.ops import exporting, retention
from gitstore.ops.verify import check_customer, check_permissions
from gitstore.store.facade import Store

Customers = Annotated[list[str] | None, Field(
    description="Only these customers (api_keys); default: every customer.")]


def existing(store: Store, names: list[str] | None) -> list[str]:
    """``names`` checked to exist (every customer when None)."""
    if names is None:
        return store.customers()
    out = []
    for name in names:
        customer = store.customer(name)
        if not customer.exists:
            raise NotFoundError(f"unknown customer {customer.name!r} in {store.root}")
        out.append(customer.name)
    return out


def counted(names: list[str], progress: Progress) -> Iterator[str]:
    """``names``, reporting each one's start as progress."""
    for done, name in enumerate(names):
        progress(done, len(names), name)
        yield name
    progress(len(names), len(names), "done")


def register(server: MCPServer[Any], svc: Service) -> None:
    """Add the operations tools to ``server``."""
    store = svc.store

    @server.tool(annotations=titled(READ_ONLY, "Export sessions as a JSON bundle"),
                 structured_output=False)
    @tool_errors
    async def export_session(
        ctx: Context[Any, Any],
        session_id: Annotated[str | None, Field(
            description="Export this session (its whole scenario).")] = None,
        customer: Annotated[str | None, Field(
            description="Export this customer (every scenario, or only `selection`).")] = None,
        selection: Annotated[str | None, Field(
            description="With customer: only this version (v1.0.0) or scenario (v1).")] = None,
        all_customers: Annotated[bool, Field(
            description="Export every customer in the store.")] = False,
    ) -> str:
        """A JSON bundle (gitstore-export format 2, as `gitstore export` writes it):
        every version's documents, tags and full commit history of a session, a customer
        or the whole store; `gitstore import` restores it. Name exactly one of
        session_id, customer, all_customers. Reports progress per customer."""
        if (session_id is not None) + (customer is not None) + all_customers != 1:
            raise UsageError("name exactly one of session_id, customer or all_customers")
        if selection is not None and customer is None:
            raise UsageError("selection goes with customer")
        if session_id is not None:
            found = store.find_session(session_id)
            names, selection = [found.customer.name], str(found.scenario)
        else:
            names = existing(store, [customer] if customer is not None else None)

        def work(progress: Progress) -> str:
            out = io.StringIO()
            exporting.write_json_export(store, out, counted(names, progress), selection)
            return out.getvalue()

        return await with_progress(ctx, work)

    @server.tool(annotations=titled(READ_ONLY, "Plan the retention cleanup"))
    @tool_errors
    def cleanup_plan(
        customers: Customers = None,
        include_kept: Annotated[bool, Field(
            description="Also list what the policy keeps, and why.")] = False,
    ) -> dict[str, Any]:
        """What cleanup_apply would purge now under the store's retention policy
        (.gitstore/policy.json), and why: per scenario or set-aside damaged data its
        action (purge, purge-keep-analytics, purge-analytics, delete, keep), status,
        age and the rule that decides. Changes nothing."""
        names = existing(store, customers)
        policy = retention.load_policy(store.root)
        items = retention.plan(store, names, policy)
        going = [i for i in items if i.goes]
        return {"policy": policy.to_json(), "to_purge": len(going),
                "kept": len(items) - len(going),
                "items": [i.to_json() for i in (items if include_kept else going)]}

    @server.tool(annotations=titled(DESTRUCTIVE, "Apply the retention cleanup"))
    @tool_errors
    def cleanup_apply(
        confirm: Annotated[StrictBool, Field(
            description="Must be true (the boolean; nothing else passes): this deletes "
                        "data for good. Call cleanup_plan first and show the user what "
                        "goes.")],
        customers: Customers = None,
    ) -> dict[str, Any]:
        """Purge, for real, what the retention policy lets go (what cleanup_plan lists
        as going at this moment): the versions' tags and branches are removed, an
        analytics summary kept while its own period lasts, and unreachable objects
        pruned, so the data is gone; a content-free tombstone goes to the access log.
        Everything the policy keeps is untouched. Requires confirm: true."""
        if confirm is not True:
            raise UsageError("cleanup_apply deletes data for good: call cleanup_plan, then "
                             "call cleanup_apply again with confirm: true")
        done = retention.apply(store, existing(store, customers))
        return {"purged": len(done), "items": [i.to_json() for i in done]}

    @server.tool(annotations=titled(READ_ONLY, "Verify the store"))
    @tool_errors
    async def verify(
        ctx: Context[Any, Any],
        customer: Annotated[str | None, Field(
            description="Check only this customer (default: every customer).")] = None,
    ) -> dict[str, Any]:
        """Run the health checks: files present, cross-file consistency, manifest
        checksums, tags, git object integrity, the access log's hash chain, permissions
        and signatures. ok is false when anything is wrong (the CLI then exits 7); each
        problem is one line. Reports progress per customer."""
        names = existing(store, [customer] if customer is not None else None)

        def work(progress: Progress) -> dict[str, Any]:
            shared = check_permissions(store)
            reports = [check_customer(store.customer(n)) for n in counted(names, progress)]
            return {"ok": not shared and not any(r.problems for r in reports),
                    "store_problems": shared, "customers": [r.to_json() for r in reports]}

        return await with_progress(ctx, work)

    @server.tool(annotations=titled(REBUILD, "Rebuild the index"))
    @tool_errors
    async def reindex(ctx: Context[Any, Any]) -> dict[str, Any]:
        """Rebuild the store's query index (used by list_sessions, search_sessions and
        resume_session) from git. Only needed after damage: every query brings the
        index up to date by itself. Reports progress per customer."""
        def work(progress: Progress) -> dict[str, Any]:
            customers = store.catalog.rebuild(progress=progress)
            totals = store.catalog.stats()
            return {"customers": customers, "versions": totals["versions"],
                    "turns": totals["turns"], "problems": store.catalog.problems}

        return await with_progress(ctx, work)
