"""Questions as MCP tools (resume, list, search, show, diff, versions, log) and the
document resource ``gitstore://{customer}/{version}/{document}``.

Every tool here is read-only (``readOnlyHint``) and one call of the facade
(:class:`~gitstore.store.facade.Store` for questions across customers, answered by the
catalog; :class:`~gitstore.store.facade.Customer` for one customer's history), so each
read is recorded in the customer's access log as the store records every read. Results
are JSON objects; a document is returned parsed (JSON) or as text (the SOW, the
manifest), and the resource serves the stored file byte for byte.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from gitstore.catalog.queries import SORT_FIELDS
from gitstore.core import canonical, diffformat
from gitstore.core.names import DOCUMENTS, JSON_DOCUMENTS, MANIFEST
from gitstore.mcp.service import (
    READ_ONLY,
    AnyDocument,
    CustomerArg,
    Rev,
    ScenarioArg,
    Service,
    resource_errors,
    titled,
    tool_errors,
)
from gitstore.store.history import CHANGE_KINDS, Snapshot

#: What a URI of the document resource looks like.
DOCUMENT_URI = "gitstore://{customer}/{version}/{document}"

Limit = Annotated[int, Field(ge=0, le=10_000, description="At most this many results.")]


def content(name: str, data: bytes) -> Any:
    """A document's content: parsed JSON, or the text of the SOW or the manifest."""
    return canonical.loads(data) if name in JSON_DOCUMENTS else data.decode("utf-8")


def head(snap: Snapshot) -> dict[str, Any]:
    return {"customer": snap.customer, "commit": snap.commit,
            "version": str(snap.version) if snap.version else None, "change": snap.change,
            "session_id": snap.session_id, "manifest": snap.info.trailer("Manifest")}


def register(server: MCPServer[Any], svc: Service) -> None:
    """Add the read tools and the document resource to ``server``."""
    store = svc.store

    @server.tool(annotations=titled(READ_ONLY, "Resume a session by its id"))
    @tool_errors
    def resume_session(
        session_id: Annotated[str, Field(
            description="The session's id (as start_session returned it), e.g. "
                        "'orchestrator-session-4f1c2d9e-...'.")],
        turns: Annotated[int, Field(
            ge=0, description="How many of the latest conversation turns to return.")] = 10,
        all_turns: Annotated[bool, Field(
            description="Return the whole conversation instead of the last turns.")] = False,
        customer: Annotated[str | None, Field(
            description="Look only in this customer (default: every customer).")] = None,
        scenario: ScenarioArg = None,
    ) -> dict[str, Any]:
        """Everything needed to carry on a session found by its id alone: its customer,
        scenario, version, status (open or finalized), completion status, every document
        of its newest state, and of the conversation only the last `turns` turns
        (turns_omitted says how many earlier ones were left out). Open: append_turn and
        the other writes continue it; finalized: follow_up opens the next version."""
        found = store.resume(session_id, customer=customer, scenario=scenario,
                             turns=None if all_turns else turns)
        return found.to_json()

    @server.tool(annotations=titled(READ_ONLY, "List sessions"))
    @tool_errors
    def list_sessions(
        customer: Annotated[str | None, Field(description="Only this customer.")] = None,
        status: Annotated[str | None, Field(
            description="open, finalized, or a completion_status (completed, abandoned, "
                        "escalated, expired, failed, in_progress).")] = None,
        provider: Annotated[str | None, Field(
            description="Only this primary cloud provider (aws, azure, gcp, ...).")] = None,
        service: Annotated[str | None, Field(
            description="Only sessions that discussed this service.")] = None,
        since: Annotated[str | None, Field(
            description="Last activity at or after this RFC 3339 time.")] = None,
        until: Annotated[str | None, Field(
            description="Last activity at or before this RFC 3339 time.")] = None,
        sort: Annotated[str, Field(
            description=f"Sort by: {', '.join(SORT_FIELDS)}.")] = "updated",
        descending: Annotated[bool, Field(
            description="Largest (newest) first; false: smallest first.")] = True,
        limit: Limit = 50,
        all_versions: Annotated[bool, Field(
            description="Every version, not only each scenario's newest.")] = False,
    ) -> dict[str, Any]:
        """Sessions across customers (each scenario's newest version, newest activity
        first), filtered: customer, status, provider, service, last activity between
        since and until. Each row names its customer, scenario, version, session_id,
        status, completeness and timestamps."""
        rows = store.list_sessions(customer=customer, status=status, provider=provider,
                                   service=service, since=since, until=until, sort=sort,
                                   descending=descending, limit=limit,
                                   all_versions=all_versions)
        return {"count": len(rows), "sessions": rows}

    @server.tool(annotations=titled(READ_ONLY, "Search conversation turns"))
    @tool_errors
    def search_sessions(
        text: Annotated[str, Field(
            description="Words that must all occur in a turn; word* matches a prefix.")],
        limit: Limit = 20,
    ) -> dict[str, Any]:
        """Full-text search of every conversation turn in the store, best match first.
        Each hit names its customer, scenario, version and turn, with a snippet."""
        hits = store.search(text, limit=limit)
        return {"count": len(hits), "hits": hits}

    @server.tool(annotations=titled(READ_ONLY, "List customers"))
    @tool_errors
    def list_customers() -> dict[str, Any]:
        """The customers in the store, by api_key (each one git repository); pass one
        as `customer` to the other tools."""
        names = store.customers()
        return {"count": len(names), "customers": names}

    @server.tool(annotations=titled(READ_ONLY, "List a customer's versions"))
    @tool_errors
    def list_versions(customer: CustomerArg, scenario: ScenarioArg = None) -> dict[str, Any]:
        """Every finalized version of a customer and each scenario's open one, oldest
        first: version, status (finalized, open, expired), commit, time, author,
        completeness."""
        cust = store.customer(customer)
        chosen = cust.session(scenario).scenario if scenario else None
        return {"customer": cust.name, "versions": [v.to_json() for v in cust.versions(chosen)]}

    @server.tool(annotations=titled(READ_ONLY, "Show a version or one document"))
    @tool_errors
    def show_version(
        customer: CustomerArg, rev: Rev = None,
        document: Annotated[AnyDocument | None, Field(
            description="Only this document (default: every document).")] = None,
        at: Annotated[str | None, Field(
            description="Time travel: the state of rev's scenario as it stood at this RFC "
                        "3339 time, in session time (what the session's data is stamped "
                        "with).")] = None,
    ) -> dict[str, Any]:
        """A session state: a version (v1.0.0), a scenario's newest state (v1) or any
        revision, with its documents (JSON parsed; the SOW and SHA256SUMS as text); or
        only one document of it. The document resource gitstore://{customer}/{version}/
        {document} serves the stored bytes instead."""
        cust = store.customer(customer)
        snap = cust.read_at(rev, at) if at is not None else cust.read(rev)
        if document is not None:
            return {**head(snap), "document": document,
                    "content": content(document, snap.raw(document))}
        return {**head(snap), "documents": {n: content(n, snap.files[n]) for n in DOCUMENTS
                                            if n in snap.files}}

    @server.tool(annotations=titled(READ_ONLY, "Diff two versions"))
    @tool_errors
    def diff_versions(
        customer: CustomerArg,
        a: Annotated[str, Field(description="The older side: a version (v1.0.0), a scenario "
                                            "(v1), a tag, a commit id or a revision.")],
        b: Annotated[str | None, Field(
            description="The newer side; default: the newest state of a's scenario.")] = None,
        documents: Annotated[list[AnyDocument] | None, Field(
            description="Only these documents.")] = None,
        stat: Annotated[bool, Field(
            description="Per-document counts only, without the changes.")] = False,
    ) -> dict[str, Any]:
        """What changed from a to b, document by document, in gitstore's JSON diff form:
        per JSON document its changes (op, path, JSON pointer, old, new), conversation
        turns matched by turn_id, text documents as a unified diff. Empty documents
        list: no differences."""
        found, snap_a, snap_b = store.customer(customer).diff(a, b, documents=documents)
        data = diffformat.to_json(found, snap_a.label(), snap_b.label())
        if stat:
            data["documents"] = [{"name": d["name"], "status": d["status"], "stat": d["stat"]}
                                 for d in data["documents"]]
        return data

    @server.tool(annotations=titled(READ_ONLY, "Show the history"))
    @tool_errors
    def log(
        customer: CustomerArg,
        rev: Annotated[str | None, Field(
            description="Only this scenario (v1) or revision's history; default: every "
                        "scenario.")] = None,
        limit: Limit = 50,
        document: Annotated[AnyDocument | None, Field(
            description="Only commits that changed this document.")] = None,
        since: Annotated[str | None, Field(
            description="Only commits written at or after this RFC 3339 time.")] = None,
        until: Annotated[str | None, Field(
            description="Only commits written at or before this RFC 3339 time.")] = None,
        change: Annotated[str | None, Field(
            description=f"Only this kind of change: {', '.join(CHANGE_KINDS)}.")] = None,
        agent: Annotated[str | None, Field(description="Only commits by this agent.")] = None,
    ) -> dict[str, Any]:
        """A customer's history, newest commit first: per commit its id, time, version,
        change kind (turn n, update, finalize, ...), agent, summary, version tags and
        trailers. Filters narrow it; limit applies last."""
        entries = store.customer(customer).log(rev, limit=limit, document=document,
                                               since=since, until=until, change=change,
                                               agent=agent)
        return {"count": len(entries), "commits": [e.to_json() for e in entries]}

    @server.resource(DOCUMENT_URI, name="document", title="A session document",
                     description="One stored document of a session state, byte for byte: "
                                 "customer (api_key), version (v1.0.0, a scenario v1, or a "
                                 f"revision) and document ({', '.join([*DOCUMENTS, MANIFEST])}).")
    @resource_errors
    def read_document(customer: str, version: str, document: str) -> str:
        return store.customer(customer).read(version).raw(document).decode("utf-8")
