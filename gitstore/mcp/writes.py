"""The session lifecycle as MCP tools: start, append a turn, put a document, set the
summary, finalize, follow up, correct.

Each tool is one call of :class:`~gitstore.store.session.Session` (through
:class:`~gitstore.store.facade.Customer`), so every write runs the store's whole
pipeline and is one commit, or nothing. Every write takes an ``author`` (default: the
server's agent) and an ``idempotency_key`` (the write seam's key: a retried call with
the same key returns the first write, ``replayed: true``, and stores nothing twice).
The turn and summary parameters publish the schemas of the store's own models, minus
the fields the store fills in.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from mcp.server.mcpserver import MCPServer
from pydantic import Field, WithJsonSchema

from gitstore.core.models import ConversationSummary, Turn
from gitstore.mcp.service import (
    WRITE,
    At,
    Author,
    CustomerArg,
    IdempotencyKey,
    JsonDocument,
    Message,
    ScenarioArg,
    Service,
    inline_schema,
    titled,
    tool_errors,
)
from gitstore.store.session import Session
from gitstore.store.writer import Written

TurnArg = Annotated[dict[str, Any], WithJsonSchema({
    **inline_schema(Turn.model_json_schema(), optional=("turn_id",)),
    "description": "One conversation turn: timestamp (RFC 3339), user_input {query, ...}, "
                   "agent_response {orchestrator_response, ...}, decision_points. turn_id "
                   "may be omitted: the store numbers the turn (by its timestamp)."})]
SummaryArg = Annotated[dict[str, Any], WithJsonSchema({
    **inline_schema(ConversationSummary.model_json_schema(), optional=("total_turns",)),
    "description": "conversation.json's conversation_summary; total_turns may be omitted "
                   "(the store counts the turns)."})]
DocumentArg = Annotated[dict[str, Any], Field(
    description="The whole document, a JSON object as its schema describes "
                "(schemas/<name>.schema.json). session_id, session_info.api_key, "
                "session_info.session_version and conversation_summary.total_turns may be "
                "omitted: the store fills them in. Unknown fields are kept.")]
ExpectedVersion = Annotated[str | None, Field(
    description="The version you expect this to produce (v1.1.0); refused if the store "
                "computes another. Default: whatever the store computes.")]


class WriteResult(TypedDict):
    """What one write produced."""

    customer: str
    scenario: str
    commit: str
    version: str
    change: str
    turn: int | None
    completeness: int | None
    manifest: str
    tag: str | None
    replayed: bool
    warnings: list[str]


class StartResult(WriteResult):
    """What starting a session produced, and the session's id."""

    session_id: str


def result(customer: str, written: Written) -> WriteResult:
    return WriteResult(customer=customer, scenario=str(written.version.scenario),
                       commit=written.commit, version=str(written.version),
                       change=written.change, turn=written.turn,
                       completeness=written.completeness, manifest=written.manifest,
                       tag=written.tag, replayed=written.replayed,
                       warnings=list(written.warnings))


def register(server: MCPServer[Any], svc: Service) -> None:
    """Add the write tools to ``server``."""

    def session(customer: str, scenario: str | None, author: str | None) -> Session:
        return svc.store_for(author).customer(customer).session(scenario)

    @server.tool(annotations=titled(WRITE, "Start a session"))
    @tool_errors
    def start_session(
        customer: CustomerArg,
        session_id: Annotated[str | None, Field(
            description="The session's id, unique in the store; default: a fresh "
                        "'orchestrator-session-<uuid>'.")] = None,
        created: Annotated[str | None, Field(
            description="When the session began, RFC 3339 (2025-01-15T10:30:00Z); "
                        "default: now.")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(
            description="Initial session_metadata.json (default: a minimal session_info)."
        )] = None,
        allow_open: Annotated[bool, Field(
            description="Start another scenario even though one is still open (refused "
                        "otherwise, so a repeated start opens one scenario, not two).")] = False,
        message: Message = None, author: Author = None, at: At = None,
        idempotency_key: IdempotencyKey = None,
    ) -> StartResult:
        """Start a new deployment scenario for a customer: the next major version
        (v1.0.0, then v2.0.0, ...), open, with an empty conversation. Use the returned
        session_id to resume it later. Then append_turn for each turn, put_document for
        the other documents, set_summary, and finalize when the conversation concludes."""
        started = svc.store_for(author).customer(customer).new_session(
            session_id=session_id, created=created, metadata=metadata, message=message,
            author=author, at=at, idempotency_key=idempotency_key, allow_open=allow_open)
        assert started.created is not None
        return StartResult(**result(started.customer.name, started.created),
                           session_id=started.session_id)

    @server.tool(annotations=titled(WRITE, "Append a conversation turn"))
    @tool_errors
    def append_turn(customer: CustomerArg, turn: TurnArg, scenario: ScenarioArg = None,
                    idempotency_key: IdempotencyKey = None, message: Message = None,
                    author: Author = None, at: At = None) -> WriteResult:
        """Append one conversation turn to the open version of a session (one commit).
        Pass an idempotency_key when you may retry: the same key stores the turn once.
        Refused (version_rule) when the version is finalized: call follow_up first."""
        s = session(customer, scenario, author)
        return result(s.customer.name, s.append_turn(
            turn, message=message, author=author, at=at, idempotency_key=idempotency_key))

    @server.tool(annotations=titled(WRITE, "Replace a session document"))
    @tool_errors
    def put_document(customer: CustomerArg, document: Annotated[JsonDocument, Field(
                         description="Which document to replace.")],
                     content: DocumentArg, scenario: ScenarioArg = None,
                     idempotency_key: IdempotencyKey = None, message: Message = None,
                     author: Author = None, at: At = None) -> WriteResult:
        """Replace one JSON document of the open version (deployment_context.json,
        session_metadata.json, session_analytics.json, or the whole conversation.json).
        The document is validated against its schema and the session's integrity rules;
        a refused write stores nothing and lists every violation."""
        s = session(customer, scenario, author)
        return result(s.customer.name, s.put(
            document, content, message=message, author=author, at=at,
            idempotency_key=idempotency_key))

    @server.tool(annotations=titled(WRITE, "Set the conversation summary"))
    @tool_errors
    def set_summary(customer: CustomerArg, summary: SummaryArg, scenario: ScenarioArg = None,
                    idempotency_key: IdempotencyKey = None, message: Message = None,
                    author: Author = None, at: At = None) -> WriteResult:
        """Replace conversation_summary of the open version (total_duration_minutes,
        primary_cloud_provider, services_discussed, final_recommendation)."""
        s = session(customer, scenario, author)
        return result(s.customer.name, s.set_summary(
            summary, message=message, author=author, at=at, idempotency_key=idempotency_key))

    @server.tool(annotations=titled(WRITE, "Finalize the open version"))
    @tool_errors
    def finalize(customer: CustomerArg, scenario: ScenarioArg = None,
                 reason: Annotated[str | None, Field(
                     description="Why the version concludes (goes into the tag message); "
                                 "default: 'conversation concluded'.")] = None,
                 version: ExpectedVersion = None, idempotency_key: IdempotencyKey = None,
                 author: Author = None, at: At = None) -> WriteResult:
        """Conclude the open version: render the statement of work (sow_document.md),
        enforce completeness (all five files; every expected field filled;
        completion_status not in_progress) and cut the version's tag. A refusal
        (invalid_document) lists what is missing; fix it with put_document and retry."""
        s = session(customer, scenario, author)
        return result(s.customer.name, s.finalize(
            message=reason, version=version, author=author, at=at,
            idempotency_key=idempotency_key))

    @server.tool(annotations=titled(WRITE, "Open a follow-up version"))
    @tool_errors
    def follow_up(customer: CustomerArg, scenario: ScenarioArg = None,
                  reason: Annotated[str | None, Field(
                      description="Why the session continues.")] = None,
                  version: ExpectedVersion = None, idempotency_key: IdempotencyKey = None,
                  author: Author = None, at: At = None) -> WriteResult:
        """Open the next minor version (v1.0.0 -> v1.1.0) of a finalized session for a
        follow-up conversation: the metadata is reopened (completed_timestamp cleared,
        completion_status in_progress) and the SOW dropped until it is finalized again."""
        s = session(customer, scenario, author)
        return result(s.customer.name, s.follow_up(
            message=reason, version=version, author=author, at=at,
            idempotency_key=idempotency_key))

    @server.tool(annotations=titled(WRITE, "Publish a data correction"))
    @tool_errors
    def correct(customer: CustomerArg,
                documents: Annotated[dict[JsonDocument, dict[str, Any]], Field(
                    description="The corrected documents, whole: name -> content.")],
                reason: Annotated[str, Field(
                    description="Why the data is corrected (required; goes into the commit "
                                "and the tag).")],
                base: Annotated[str | None, Field(
                    description="The version being corrected; it must be the scenario's "
                                "newest (default: that one).")] = None,
                scenario: ScenarioArg = None, version: ExpectedVersion = None,
                idempotency_key: IdempotencyKey = None, author: Author = None,
                at: At = None) -> WriteResult:
        """Publish a data correction of a finalized session as the next patch version
        (v1.1.0 -> v1.1.1), finalized in one step (SOW re-rendered, tag cut). Corrections
        apply to the newest version of a scenario; the session must not be open."""
        s = session(customer, scenario, author)
        return result(s.customer.name, s.correct(
            {str(k): v for k, v in documents.items()}, reason=reason, base=base,
            version=version, author=author, at=at, idempotency_key=idempotency_key))
