"""Merging sessions as MCP tools (seed 004's ``merge_sessions``), with manual review:
merge_sessions, merge_conflicts, resolve_conflict, merge_continue, merge_abort.

Each is one call of :meth:`gitstore.store.facade.Customer.merge` or of the pending
merge it returns (:mod:`gitstore.store.merges`): a merge without conflicts is
written at once; one with conflicts writes nothing to the target and waits for a
reviewer, from this client or any other process.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field
from typing_extensions import TypedDict

from gitstore.mcp.service import (
    DESTRUCTIVE,
    READ_ONLY,
    WRITE,
    Author,
    CustomerArg,
    Service,
    titled,
    tool_errors,
)
from gitstore.mcp.writes import WriteResult, result
from gitstore.store.merges import PendingMerge

Into = Annotated[str | None, Field(
    description="The scenario merged into (v1). Default for merge_sessions: the source's own "
                "scenario for a revision, else the newest other scenario; for the review "
                "tools: the only pending merge.")]


class MergeReport(TypedDict):
    """A merge's state: what it merges, the conflicts, and the commit once written."""

    customer: str
    source: str
    target: str
    conflicts: list[dict[str, Any]]
    unresolved: list[str]
    written: dict[str, Any] | None
    dry_run: bool


def _report(pending: PendingMerge, dry_run: bool = False) -> MergeReport:
    resolved = {k: r.to_json() for k, r in pending.resolutions.items()}
    return MergeReport(
        customer=pending.customer.name, source=pending.source, target=str(pending.target),
        conflicts=[{**c.to_json(), "resolution": resolved.get(c.label)}
                   for c in pending.conflicts],
        unresolved=[c.label for c in pending.remaining],
        written=dict(result(pending.customer.name, pending.written)) if pending.written
        else None,
        dry_run=dry_run)


def register(server: MCPServer[Any], svc: Service) -> None:
    """Add the merge tools to ``server``."""

    @server.tool(annotations=titled(WRITE, "Merge sessions"))
    @tool_errors
    def merge_sessions(
        customer: CustomerArg,
        source: Annotated[str, Field(description="What to merge: a scenario (v2), a version "
                                                 "(v2.0.0) or any revision of the customer.")],
        into: Into = None,
        dry_run: Annotated[bool, Field(description="Only work the merge out; write nothing.")
                           ] = False,
        fail_on_conflict: Annotated[bool, Field(
            description="Refuse (a conflict error) instead of waiting for review when there "
                        "are conflicts.")] = False,
        author: Author = None,
    ) -> MergeReport:
        """Merge two sessions (scenarios) of one customer field by field: turns of both
        are united in timestamp order, records merge by their key, and every real
        conflict (different changes to one field) waits for review. With no conflicts
        the merge commit is written at once (`written`); otherwise call
        resolve_conflict for each label in `unresolved`, then merge_continue."""
        pending = svc.store_for(author).customer(customer).merge(
            source, into=into, dry_run=dry_run, fail_on_conflict=fail_on_conflict,
            reviewer=author)
        return _report(pending, dry_run)

    @server.tool(annotations=titled(READ_ONLY, "List a pending merge's conflicts"))
    @tool_errors
    def merge_conflicts(customer: CustomerArg, into: Into = None) -> MergeReport:
        """The pending merge of a customer: every conflict with its stable label, the
        base/ours/theirs values and any resolution so far."""
        return _report(svc.store_for(None).customer(customer).pending_merge(into))

    @server.tool(annotations=titled(WRITE, "Resolve a merge conflict"))
    @tool_errors
    def resolve_conflict(
        customer: CustomerArg,
        label: Annotated[str, Field(description="The conflict's label, from merge_conflicts.")],
        choice: Annotated[Literal["ours", "theirs", "base", "value"], Field(
            description="Take the target's value (ours), the source's (theirs), the common "
                        "base's, or `value`.")],
        value: Annotated[Any, Field(description="The JSON value to take when choice is "
                                                "'value'.")] = None,
        into: Into = None, author: Author = None,
    ) -> MergeReport:
        """Decide one conflict of a pending merge. Two reviewers deciding at once: the
        second gets a conflict error and should look again."""
        pending = svc.store_for(author).customer(customer).pending_merge(into)
        return _report(pending.resolve(label, choice, value, reviewer=author))

    @server.tool(annotations=titled(WRITE, "Write the reviewed merge"))
    @tool_errors
    def merge_continue(customer: CustomerArg, into: Into = None,
                       author: Author = None) -> WriteResult:
        """Write the merge commit once every conflict is resolved (the whole pre-commit
        pipeline runs on the result). Refused while conflicts remain."""
        pending = svc.store_for(author).customer(customer).pending_merge(into)
        return result(customer, pending.commit(reviewer=author))

    @server.tool(annotations=titled(DESTRUCTIVE, "Abort a pending merge"))
    @tool_errors
    def merge_abort(customer: CustomerArg, into: Into = None) -> dict[str, str]:
        """Drop a pending merge and its resolutions; no session is changed."""
        pending = svc.store_for(None).customer(customer).pending_merge(into)
        pending.abort()
        return {"customer": customer, "aborted": str(pending.target)}
