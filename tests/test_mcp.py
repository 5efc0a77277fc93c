"""The MCP server (issue 16), driven by the SDK's own clients: in memory for every tool
(happy path and the errors each can raise), over stdio as ``gitstore mcp`` in a real
subprocess, and over streamable HTTP on 127.0.0.1.

Real stores in temp dirs, the real ``git`` binary to check what was written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    ROOT,
    SESSION_ID,
    Clock,
    example_turn,
    git,
    load_example,
    record_example_session,
    run_cli,
)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from gitstore import Store
from gitstore.core import diffformat
from gitstore.core.names import DOCUMENTS, JSON_DOCUMENTS, MANIFEST
from gitstore.git.locking import writer_lock
from gitstore.mcp.server import build_server

AGENT = "mcp-agent <mcp@agents.example.invalid>"
ALICE = "alice <alice@agents.example.invalid>"
CREATED = "2025-01-15T10:30:00Z"
READ_TOOLS = {"resume_session", "list_sessions", "search_sessions", "list_customers",
              "list_versions", "show_version", "diff_versions", "log", "export_session",
              "cleanup_plan", "verify", "merge_conflicts"}
WRITE_TOOLS = {"start_session", "append_turn", "put_document", "set_summary", "finalize",
               "follow_up", "correct", "reindex", "merge_sessions", "resolve_conflict",
               "merge_continue"}
DESTRUCTIVE_TOOLS = {"cleanup_apply", "merge_abort"}
ALL_TOOLS = READ_TOOLS | WRITE_TOOLS | DESTRUCTIVE_TOOLS

Call = Callable[[Client], Awaitable[Any]]


# -- driving the server ------------------------------------------------------------------

def drive(server: MCPServer[Any], fn: Call) -> Any:
    """Run ``fn(client)`` against ``server`` with the SDK's in-memory client."""
    async def main() -> Any:
        async with Client(server) as client:
            return await fn(client)
    return anyio.run(main)


async def ok(client: Client, name: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(name, args or {})
    assert not result.is_error, result.content
    if result.structured_content is None:            # a text result (export_session)
        return result.content[0].text  # type: ignore[union-attr]
    return result.structured_content


async def fails(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The error a tool call ends in: text ``<code>: <message>``, one line, no traceback."""
    result = await client.call_tool(name, args)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None, text
    error: dict[str, Any] = result.structured_content["error"]
    assert text == f"{error['code']}: {error['message']}"
    assert "\n" not in text and "Traceback" not in text
    return error


def documents_for(customer: str, sid: str) -> dict[str, Any]:
    docs = {n: load_example("session", n) for n in
            ("deployment_context.json", "session_metadata.json", "session_analytics.json")}
    docs["session_metadata.json"]["session_info"].update(api_key=customer, session_id=sid)
    return docs


async def record_session(client: Client, customer: str = CUSTOMER, sid: str = SESSION_ID,
                         turns: int = 5) -> list[Any]:
    """Start, ``turns`` turns, summary, the three other documents, finalize."""
    out = [await ok(client, "start_session", {"customer": customer, "session_id": sid,
                                              "created": CREATED})]
    for n in range(1, turns + 1):
        out.append(await ok(client, "append_turn",
                            {"customer": customer, "turn": example_turn(n)}))
    summary = load_example("session", "conversation.json")["conversation_summary"]
    out.append(await ok(client, "set_summary", {"customer": customer,
                                                "summary": {**summary, "total_turns": turns}}))
    for name, doc in documents_for(customer, sid).items():
        out.append(await ok(client, "put_document",
                            {"customer": customer, "document": name, "content": doc}))
    out.append(await ok(client, "finalize", {"customer": customer,
                                             "reason": "deployment plan agreed"}))
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    Store.init(tmp_path / "sessions")
    return tmp_path / "sessions"


@pytest.fixture
def server(root: Path) -> MCPServer[Any]:
    return build_server(str(root), agent=AGENT)


# -- what the server publishes -------------------------------------------------------------

def test_every_tool_listed_with_annotations_and_described_parameters(
        server: MCPServer[Any]) -> None:
    tools = drive(server, lambda c: c.list_tools()).tools
    assert {t.name for t in tools} == ALL_TOOLS
    for tool in tools:
        hints = tool.annotations
        assert hints is not None and hints.title, tool.name
        assert hints.read_only_hint is (tool.name in READ_TOOLS), tool.name
        assert hints.destructive_hint is (tool.name in DESTRUCTIVE_TOOLS), tool.name
        assert tool.description and len(tool.description) > 60, tool.name
        for param, spec in tool.input_schema.get("properties", {}).items():
            assert spec.get("description"), f"{tool.name}({param}) has no description"


def test_input_schemas_are_precise(server: MCPServer[Any]) -> None:
    tools = {t.name: t for t in drive(server, lambda c: c.list_tools()).tools}
    turn = tools["append_turn"].input_schema["properties"]["turn"]
    assert {"timestamp", "user_input", "agent_response"} <= set(turn["required"])
    assert "turn_id" not in turn["required"]                   # the store numbers turns
    assert "$ref" not in json.dumps(turn)                      # self-contained
    assert turn["properties"]["user_input"]["required"] == ["query"]
    summary = tools["set_summary"].input_schema["properties"]["summary"]
    assert "total_turns" not in summary.get("required", [])
    document = tools["put_document"].input_schema["properties"]["document"]
    assert set(document["enum"]) == set(JSON_DOCUMENTS)
    shown = tools["show_version"].input_schema["properties"]["document"]
    assert set(shown["anyOf"][0]["enum"]) == {*DOCUMENTS, MANIFEST}
    assert tools["cleanup_apply"].input_schema["required"] == ["confirm"]
    assert set(tools["append_turn"].input_schema["required"]) == {"customer", "turn"}
    assert tools["append_turn"].output_schema["properties"]["replayed"]["type"] == "boolean"
    templates = drive(server, lambda c: c.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["gitstore://{customer}/{version}/{document}"]


def test_readme_documents_the_server_and_every_tool() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## MCP server", 1)[1].split("\n## ", 1)[0]
    assert '"mcpServers"' in section and "gitstore[mcp]" in section
    missing = [t for t in sorted(ALL_TOOLS) if f"`{t}`" not in section]
    assert not missing, f"README's MCP section does not list {missing}"


# -- the session lifecycle -----------------------------------------------------------------

def test_session_lifecycle_through_the_tools(server: MCPServer[Any], root: Path) -> None:
    async def run(c: Client) -> list[Any]:
        out = await record_session(c)
        out.append(await ok(c, "follow_up", {"customer": CUSTOMER, "reason": "alarms"}))
        for n in (6, 7):
            out.append(await ok(c, "append_turn", {"customer": CUSTOMER, "scenario": "v1",
                                                   "turn": example_turn(n)}))
        meta = load_example("follow_up", "session_metadata.json")
        meta["session_info"]["api_key"] = CUSTOMER
        out.append(await ok(c, "put_document", {"customer": CUSTOMER, "content": meta,
                                                "document": "session_metadata.json"}))
        out.append(await ok(c, "finalize", {"customer": CUSTOMER, "version": "v1.1.0"}))
        fixed = json.loads((EXAMPLES / "correction" / "session_analytics.json").read_text())
        out.append(await ok(c, "correct", {"customer": CUSTOMER, "reason": "outcome known",
                                           "documents": {"session_analytics.json": fixed}}))
        return out

    out = drive(server, run)
    start, turns, finalized = out[0], out[1:6], out[10]
    assert start["session_id"] == SESSION_ID and start["version"] == "v1.0.0"
    assert start["change"] == "create" and start["scenario"] == "v1"
    assert [t["turn"] for t in turns] == [1, 2, 3, 4, 5]
    assert finalized["tag"] and finalized["completeness"] in (95, 100)
    assert [r["version"] for r in out[11:]] == ["v1.1.0"] * 5 + ["v1.1.1"]
    assert out[-1]["change"] == "correction" and out[-1]["tag"]
    repo = root / CUSTOMER
    assert git(repo, "tag").split() == ["v1.0.0", "v1.1.0", "v1.1.1"]
    assert set(git(repo, "log", "--all", "--format=%an <%ae>").split("\n")[:-1]) == {AGENT}
    assert "Reason: alarms" in git(repo, "log", "-1", "--format=%B", "v1.1.0~4")


def test_a_call_names_its_own_author(server: MCPServer[Any], root: Path) -> None:
    async def run(c: Client) -> Any:
        await ok(c, "start_session", {"customer": CUSTOMER, "created": CREATED})
        return await ok(c, "append_turn", {"customer": CUSTOMER, "turn": example_turn(1),
                                           "author": ALICE})

    written = drive(server, run)
    repo = root / CUSTOMER
    assert git(repo, "log", "-1", "--format=%an <%ae>", written["commit"]).strip() == ALICE
    assert "Agent: alice" in git(repo, "log", "-1", "--format=%B", written["commit"])
    assert git(repo, "log", "-1", "--format=%an <%ae>", "v1~1").strip() == AGENT
    records = [json.loads(line) for line in
               (repo / "gitstore-audit.jsonl").read_text(encoding="utf-8").splitlines()]
    actors = {r["op"]: r["actor"] for r in records if r["op"].startswith("write:")}
    assert actors == {"write:create": AGENT, "write:turn": ALICE}


def test_a_retried_append_with_the_same_key_stores_one_turn(server: MCPServer[Any],
                                                              root: Path) -> None:
    args = {"customer": CUSTOMER, "turn": example_turn(1), "idempotency_key": "turn-1-try"}

    async def run(c: Client) -> Any:
        await ok(c, "start_session", {"customer": CUSTOMER, "session_id": SESSION_ID,
                                      "created": CREATED})
        first = await ok(c, "append_turn", args)
        again = await ok(c, "append_turn", args)            # the agent retries
        other = await ok(c, "append_turn", {**args, "idempotency_key": "turn-2",
                                            "turn": example_turn(2)})
        return first, again, other, await ok(c, "resume_session", {"session_id": SESSION_ID})

    first, again, other, resumed = drive(server, run)
    assert not first["replayed"] and again["replayed"]
    assert again["commit"] == first["commit"] and again["turn"] == 1
    assert other["turn"] == 2 and not other["replayed"]
    assert resumed["turns"] == 2
    assert git(root / CUSTOMER, "rev-list", "--count", "v1").strip() == "3"


def test_resume_session_returns_the_context(server: MCPServer[Any]) -> None:
    async def run(c: Client) -> Any:
        await record_session(c)
        return (await ok(c, "resume_session", {"session_id": SESSION_ID, "turns": 2}),
                await ok(c, "resume_session", {"session_id": SESSION_ID, "all_turns": True}))

    last, whole = drive(server, run)
    assert last["customer"] == CUSTOMER and last["status"] == "finalized"
    assert last["version"] == "v1.0.0" and last["turns"] == 5 and last["turns_omitted"] == 3
    conv = last["documents"]["conversation.json"]["conversation_turns"]
    assert [t["turn_id"] for t in conv] == [4, 5]
    assert last["documents"]["session_metadata.json"]["session_info"]["api_key"] == CUSTOMER
    assert whole["turns_omitted"] == 0
    assert len(whole["documents"]["conversation.json"]["conversation_turns"]) == 5


def test_the_read_tools(server: MCPServer[Any], root: Path) -> None:
    async def run(c: Client) -> dict[str, Any]:
        await record_session(c)
        return {
            "list": await ok(c, "list_sessions", {"status": "finalized"}),
            "none": await ok(c, "list_sessions", {"status": "open"}),
            "search": await ok(c, "search_sessions", {"text": "gateway"}),
            "customers": await ok(c, "list_customers"),
            "versions": await ok(c, "list_versions", {"customer": CUSTOMER}),
            "show": await ok(c, "show_version", {"customer": CUSTOMER, "rev": "v1.0.0"}),
            "one": await ok(c, "show_version", {"customer": CUSTOMER,
                                                "document": "sow_document.md"}),
            "diff": await ok(c, "diff_versions", {"customer": CUSTOMER, "a": "v1~3",
                                                  "b": "v1.0.0"}),
            "stat": await ok(c, "diff_versions", {"customer": CUSTOMER, "a": "v1~3",
                                                  "stat": True}),
            "log": await ok(c, "log", {"customer": CUSTOMER, "change": "turn", "limit": 3}),
        }

    r = drive(server, run)
    assert [s["session_id"] for s in r["list"]["sessions"]] == [SESSION_ID]
    assert r["none"] == {"count": 0, "sessions": []}
    assert r["search"]["count"] >= 1 and r["search"]["hits"][0]["customer"] == CUSTOMER
    assert r["customers"] == {"count": 1, "customers": [CUSTOMER]}
    assert [v["version"] for v in r["versions"]["versions"]] == ["v1.0.0"]
    assert set(r["show"]["documents"]) == set(DOCUMENTS) and r["show"]["version"] == "v1.0.0"
    sow = git(root / CUSTOMER, "show", "v1.0.0:sow_document.md")
    assert r["one"]["content"] == sow and r["one"]["document"] == "sow_document.md"
    store = Store(root)
    found, a, b = store.customer(CUSTOMER).diff("v1~3", "v1.0.0")
    assert r["diff"] == json.loads(json.dumps(diffformat.to_json(found, a.label(), b.label())))
    assert r["diff"]["format"] == "gitstore-diff" and r["diff"]["documents"]
    assert all(set(d) == {"name", "status", "stat"} for d in r["stat"]["documents"])
    assert [e["turn"] for e in r["log"]["commits"]] == [5, 4, 3]


def test_the_document_resource(server: MCPServer[Any], root: Path) -> None:
    async def run(c: Client) -> Any:
        await record_session(c)
        found = await c.read_resource(f"gitstore://{CUSTOMER}/v1.0.0/conversation.json")
        sums = await c.read_resource(f"gitstore://{CUSTOMER}/v1/SHA256SUMS")
        errors = []
        for uri in (f"gitstore://{CUSTOMER}/v9.0.0/conversation.json",
                    "gitstore://customer-nobody/v1/conversation.json",
                    f"gitstore://{CUSTOMER}/v1.0.0/notes.txt"):
            with pytest.raises(MCPError) as caught:
                await c.read_resource(uri)
            errors.append((caught.value.code, caught.value.message))
        return found.contents[0].text, sums.contents[0].text, errors

    conversation, sums, errors = drive(server, run)
    repo = root / CUSTOMER
    assert conversation == git(repo, "show", "v1.0.0:conversation.json")
    assert sums == git(repo, "show", "v1:SHA256SUMS")
    assert [code for code, _ in errors] == [-32602, -32602, -32603]
    assert errors[0][1].startswith("not_found: ") and "v9.0.0" in errors[0][1]
    assert errors[1][1].startswith("not_found: unknown customer")
    assert errors[2][1].startswith("usage: ")


# -- export, cleanup, verify, reindex -----------------------------------------------------

def progress_log() -> tuple[list[tuple[float, float | None, str | None]], Any]:
    seen: list[tuple[float, float | None, str | None]] = []

    async def callback(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))
    return seen, callback


def test_export_reports_progress_per_customer(server: MCPServer[Any], root: Path) -> None:
    seen, callback = progress_log()

    async def run(c: Client) -> Any:
        await record_session(c)
        await record_session(c, "customer-abc123", SESSION_ID + "-abc", turns=2)
        whole = await c.call_tool("export_session", {"all_customers": True},
                                  progress_callback=callback)
        one = await ok(c, "export_session", {"session_id": SESSION_ID + "-abc"})
        version = await ok(c, "export_session", {"customer": CUSTOMER, "selection": "v1.0.0"})
        return whole, one, version

    whole, one, version = drive(server, run)
    assert not whole.is_error and whole.structured_content is None
    bundle = json.loads(whole.content[0].text)
    assert bundle["format"] == "gitstore-export" and bundle["format_version"] == 2
    assert [c["customer"] for c in bundle["customers"]] == ["customer-abc123", CUSTOMER]
    assert seen == [(0, 2, "customer-abc123"), (1, 2, CUSTOMER), (2, 2, "done")]
    single = json.loads(one)
    assert [c["customer"] for c in single["customers"]] == ["customer-abc123"]
    assert single["selection"] == "v1"
    assert json.loads(version)["customers"][0]["scenarios"][0]["versions"][0]["version"] \
        == "v1.0.0"
    fresh = Store.init(root.parent / "restored")
    (root.parent / "bundle.json").write_text(whole.content[0].text, encoding="utf-8")
    assert run_cli(fresh.root, "import", str(root.parent / "bundle.json")).code == 0
    assert git(fresh.root / CUSTOMER, "tag").split() == ["v1.0.0"]


def test_verify_and_reindex_report_progress(server: MCPServer[Any]) -> None:
    seen, callback = progress_log()

    async def run(c: Client) -> Any:
        await record_session(c)
        checked = await c.call_tool("verify", {}, progress_callback=callback)
        rebuilt = await c.call_tool("reindex", {}, progress_callback=callback)
        return checked.structured_content, rebuilt.structured_content

    checked, rebuilt = drive(server, run)
    assert checked["ok"] is True and checked["customers"][0]["customer"] == CUSTOMER
    assert checked["customers"][0]["versions"] == 1 and checked["store_problems"] == []
    assert rebuilt == {"customers": 1, "versions": 1, "turns": 5, "problems": []}
    messages = [m for _, _, m in seen]
    assert messages[:2] == [CUSTOMER, "done"] and CUSTOMER in messages[2:]


def test_cleanup_plan_then_apply_with_confirmation(server: MCPServer[Any], root: Path) -> None:
    (root / ".gitstore" / "policy.json").write_text(
        json.dumps({"retention_policies": {"completed_sessions": "1d",
                                           "analytics_summaries": "1d"}}), encoding="utf-8")
    record_example_session(Store(root, clock=Clock()))  # finalized in 2025: over a day ago
    before = git(root / CUSTOMER, "for-each-ref")

    async def run(c: Client) -> Any:
        plan = await ok(c, "cleanup_plan", {})
        refused = await fails(c, "cleanup_apply", {"confirm": False})
        assert git(root / CUSTOMER, "for-each-ref") == before     # nothing went
        done = await ok(c, "cleanup_apply", {"confirm": True})
        return plan, refused, done, await ok(c, "cleanup_plan", {"include_kept": True})

    plan, refused, done, after = drive(server, run)
    assert plan["to_purge"] == 1 and plan["items"][0]["action"] == "purge"
    assert plan["items"][0]["target"] == "v1" and plan["items"][0]["versions"] == ["v1.0.0"]
    assert refused["code"] == "usage" and "confirm: true" in refused["message"]
    assert done["purged"] == 1 and done["items"][0]["target"] == "v1"
    assert git(root / CUSTOMER, "tag") == "" and after["to_purge"] == 0


# -- errors ----------------------------------------------------------------------------------

def base_store(tmp_path_factory: pytest.TempPathFactory, state: str) -> Path:
    """A store template: ``empty``, ``open`` (one turn) or ``finalized`` (the example)."""
    root = tmp_path_factory.getbasetemp() / f"mcp-{state}" / "sessions"
    if not root.exists():
        store = Store.init(root)
        if state == "open":
            store.customer(CUSTOMER).new_session(session_id=SESSION_ID, created=CREATED
                                                 ).append_turn(example_turn(1))
        elif state == "finalized":
            record_example_session(store)
    return root


TURN = example_turn(1)
META = documents_for(CUSTOMER, SESSION_ID)["session_metadata.json"]
#: (state, tool, arguments, code, what the message says)
ERRORS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("empty", "start_session", {"customer": "../evil"}, "usage", "customer"),
    ("open", "merge_sessions", {"customer": CUSTOMER, "source": "v9"}, "not_found",
     "no scenario v9"),
    ("open", "merge_conflicts", {"customer": CUSTOMER}, "not_found", "no merge"),
    ("open", "resolve_conflict", {"customer": CUSTOMER, "label": "x", "choice": "ours"},
     "not_found", "no merge"),
    ("open", "merge_continue", {"customer": CUSTOMER}, "not_found", "no merge"),
    ("open", "merge_abort", {"customer": CUSTOMER}, "not_found", "no merge"),
    ("open", "start_session", {"customer": CUSTOMER}, "version_rule", "open scenario"),
    ("open", "start_session", {"customer": "customer-b", "session_id": SESSION_ID}, "usage",
     "already used"),
    ("empty", "start_session", {"customer": CUSTOMER, "created": "today"}, "invalid_document",
     "created_timestamp"),
    ("empty", "append_turn", {"customer": CUSTOMER, "turn": TURN}, "not_found", "unknown"),
    ("open", "append_turn", {"customer": CUSTOMER, "turn": {"timestamp": "2025-01-15T11:00:00Z"}},
     "invalid_document", "user_input"),
    ("finalized", "append_turn", {"customer": CUSTOMER, "turn": example_turn(6)},
     "version_rule", "finalized"),
    ("open", "append_turn", {"customer": CUSTOMER, "turn": TURN, "idempotency_key": " k "},
     "usage", "idempotency key"),
    ("open", "append_turn", {"customer": CUSTOMER, "turn": TURN, "at": "yesterday"}, "usage",
     "write time"),
    ("open", "append_turn", {"customer": CUSTOMER, "turn": TURN, "scenario": "v7"},
     "not_found", "v7"),
    ("empty", "put_document", {"customer": CUSTOMER, "document": "session_metadata.json",
                               "content": META}, "not_found", "unknown"),
    ("open", "put_document", {"customer": CUSTOMER, "document": "session_metadata.json",
                              "content": {**META, "session_info": {
                                  **META["session_info"], "api_key": "customer-other"}}},
     "invalid_document", "api_key"),
    ("finalized", "put_document", {"customer": CUSTOMER, "document": "session_metadata.json",
                                   "content": META}, "version_rule", "finalized"),
    ("open", "set_summary", {"customer": CUSTOMER, "summary": {"total_duration_minutes": "x"}},
     "invalid_document", "total_duration_minutes"),
    ("finalized", "set_summary", {"customer": CUSTOMER, "summary": {}}, "version_rule",
     "finalized"),
    ("empty", "set_summary", {"customer": CUSTOMER, "summary": {}}, "not_found", "unknown"),
    ("open", "finalize", {"customer": CUSTOMER}, "invalid_document", "deployment_context"),
    ("finalized", "finalize", {"customer": CUSTOMER}, "version_rule", "finalized"),
    ("open", "finalize", {"customer": CUSTOMER, "version": "v2.0.0"}, "version_rule",
     "v1.0.0"),
    ("empty", "finalize", {"customer": CUSTOMER}, "not_found", "unknown"),
    ("open", "follow_up", {"customer": CUSTOMER}, "version_rule", "open"),
    ("finalized", "follow_up", {"customer": CUSTOMER, "version": "v1.2.0"}, "version_rule",
     "v1.1.0"),
    ("empty", "follow_up", {"customer": CUSTOMER}, "not_found", "unknown"),
    ("finalized", "correct", {"customer": CUSTOMER, "reason": " ",
                              "documents": {"session_metadata.json": META}}, "usage", "reason"),
    ("finalized", "correct", {"customer": CUSTOMER, "reason": "same",
                              "documents": {"session_metadata.json": META}}, "usage",
     "changes nothing"),
    ("open", "correct", {"customer": CUSTOMER, "reason": "why",
                         "documents": {"session_metadata.json": META}}, "version_rule", "open"),
    ("finalized", "correct", {"customer": CUSTOMER, "reason": "why", "documents": {
        "session_metadata.json": {**META, "session_info": {**META["session_info"],
                                                          "api_key": "customer-other"}}}},
     "invalid_document", "api_key"),
    ("empty", "resume_session", {"session_id": SESSION_ID}, "not_found", SESSION_ID),
    ("finalized", "resume_session", {"session_id": SESSION_ID, "customer": "../x"}, "usage",
     "customer"),
    ("finalized", "list_sessions", {"sort": "bogus"}, "usage", "sort"),
    ("finalized", "list_sessions", {"since": "last week"}, "usage", "since"),
    ("finalized", "list_sessions", {"customer": "customer-nobody"}, "not_found", "unknown"),
    ("empty", "list_versions", {"customer": CUSTOMER}, "not_found", "unknown"),
    ("finalized", "list_versions", {"customer": CUSTOMER, "scenario": "v9"}, "not_found", "v9"),
    ("finalized", "show_version", {"customer": CUSTOMER, "rev": "v9.9.9"}, "not_found", "v9"),
    ("finalized", "show_version", {"customer": CUSTOMER, "at": "soon"}, "usage", "time"),
    ("finalized", "show_version", {"customer": "bad/name"}, "usage", "customer"),
    ("finalized", "diff_versions", {"customer": CUSTOMER, "a": "v7.0.0"}, "not_found", "v7"),
    ("empty", "diff_versions", {"customer": CUSTOMER, "a": "v1"}, "not_found", "unknown"),
    ("finalized", "log", {"customer": CUSTOMER, "change": "bogus"}, "usage", "change kind"),
    ("empty", "log", {"customer": CUSTOMER}, "not_found", "unknown"),
    ("finalized", "log", {"customer": CUSTOMER, "since": "then"}, "usage", "since"),
    ("finalized", "export_session", {}, "usage", "exactly one"),
    ("finalized", "export_session", {"session_id": "orchestrator-session-nope"}, "not_found",
     "nope"),
    ("finalized", "export_session", {"customer": "customer-nobody"}, "not_found", "unknown"),
    ("finalized", "export_session", {"customer": CUSTOMER, "selection": "v9"}, "not_found",
     "v9"),
    ("finalized", "cleanup_plan", {"customers": ["customer-nobody"]}, "not_found", "unknown"),
    ("finalized", "cleanup_apply", {"confirm": False}, "usage", "cleanup_plan"),
    ("finalized", "cleanup_apply", {"confirm": True, "customers": ["customer-nobody"]},
     "not_found", "unknown"),
    ("finalized", "verify", {"customer": "customer-nobody"}, "not_found", "unknown"),
    # arguments the input schema refuses: the same contract, usage, naming the argument
    ("finalized", "cleanup_apply", {"confirm": "yes"}, "usage", "confirm: input should be"),
    ("finalized", "cleanup_apply", {"confirm": 1}, "usage", "confirm: input should be"),
    ("finalized", "log", {"customer": CUSTOMER, "limit": -1}, "usage", "log: invalid "
     "arguments: limit:"),
    ("finalized", "show_version", {"customer": CUSTOMER, "document": "nope.json"}, "usage",
     "document:"),
    ("finalized", "append_turn", {"customer": CUSTOMER, "turn": "x"}, "usage", "turn:"),
    ("finalized", "list_sessions", {"status": "bogus"}, "usage", "unknown status 'bogus'"),
]


@pytest.mark.parametrize(("state", "tool", "args", "code", "says"), ERRORS,
                         ids=[f"{t}-{c}-{i}" for i, (_, t, _, c, _) in enumerate(ERRORS)])
def test_each_tool_reports_its_errors(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                      state: str, tool: str, args: dict[str, Any], code: str,
                                      says: str) -> None:
    root = tmp_path / "sessions"
    shutil.copytree(base_store(tmp_path_factory, state), root, symlinks=True)
    before = git(root / CUSTOMER, "for-each-ref") if (root / CUSTOMER).exists() else ""
    error = drive(build_server(str(root), agent=AGENT), lambda c: fails(c, tool, args))
    assert error["code"] == code, error
    assert says.lower() in error["message"].lower(), error
    assert error["exit_code"] == {"usage": 2, "not_found": 3, "invalid_document": 4,
                                  "version_rule": 5}[code]
    if code == "invalid_document":
        assert error["violations"] and {"file", "pointer", "message"} <= set(
            error["violations"][0])
    after = git(root / CUSTOMER, "for-each-ref") if (root / CUSTOMER).exists() else ""
    assert after == before                                  # a refused call wrote nothing


def test_the_error_table_covers_every_tool_that_can_fail() -> None:
    # These three fail only when the store itself is damaged or unreadable (storage,
    # integrity): every argument they take is valid or refused by the input schema.
    cannot = {"list_customers", "search_sessions", "reindex"}
    assert {tool for _, tool, *_ in ERRORS} == ALL_TOOLS - cannot


def test_a_held_lock_is_a_conflict(root: Path) -> None:
    store = Store(root)
    store.customer(CUSTOMER).new_session(session_id=SESSION_ID, created=CREATED)
    server = build_server(str(root), agent=AGENT, lock_timeout=0.2)
    with writer_lock(store.lock_dir, CUSTOMER, 5):
        error = drive(server, lambda c: fails(c, "append_turn", {"customer": CUSTOMER,
                                                                 "turn": TURN}))
    assert error["code"] == "conflict" and error["exit_code"] == 6


def test_damage_is_an_integrity_error(root: Path) -> None:
    record_example_session(Store(root))
    repo = root / CUSTOMER
    old = git(repo, "rev-parse", "refs/heads/v1").strip()
    blob = git(repo, "hash-object", "-w", "--stdin", input=b'{"tampered": true}\n').strip()
    rows = [line if not line.endswith("\tconversation.json") else
            f"100644 blob {blob}\tconversation.json" for line in git(repo, "ls-tree", "v1")
            .splitlines()]
    tree = git(repo, "mktree", input=("\n".join(rows) + "\n").encode()).strip()
    commit = git(repo, "commit-tree", tree, "-p", old, "-m", "edit outside gitstore").strip()
    git(repo, "update-ref", "refs/heads/v1", commit, old)

    async def run(c: Client) -> Any:
        return (await fails(c, "follow_up", {"customer": CUSTOMER}),
                await ok(c, "verify", {"customer": CUSTOMER}))

    error, report = drive(build_server(str(root)), run)
    assert error["code"] == "integrity" and error["exit_code"] == 7
    assert any("conversation.json" in p for p in error["problems"])
    assert report["ok"] is False
    assert any("conversation.json" in p for p in report["customers"][0]["problems"])


def test_too_large_and_render_errors(tmp_path: Path) -> None:
    small = tmp_path / "small"
    assert run_cli(small, "init", "--max-document-bytes", "3000").code == 0
    Store(small).customer(CUSTOMER).new_session(session_id=SESSION_ID, created=CREATED)
    big = {**TURN, "user_input": {"query": "x" * 4000}}
    error = drive(build_server(str(small)), lambda c: fails(
        c, "append_turn", {"customer": CUSTOMER, "turn": big}))
    assert error["code"] == "too_large" and error["exit_code"] == 8

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "sow_document.md.j2").write_text("{{ no_such_field }}\n", encoding="utf-8")
    broken = tmp_path / "broken"
    assert run_cli(broken, "init", "--templates", str(templates)).code == 0

    async def run(c: Client) -> Any:
        with pytest.raises(AssertionError):
            await record_session(c)                 # finalize is refused ...
        return await fails(c, "finalize", {"customer": CUSTOMER})

    error = drive(build_server(str(broken)), run)
    assert error["code"] == "render" and error["exit_code"] == 10
    assert "no_such_field" in error["message"]


def test_a_missing_or_unusable_store_fails_at_start(tmp_path: Path) -> None:
    missing = run_cli(tmp_path / "nowhere", "mcp")
    assert missing.code == 3 and "gitstore init" in missing.err and missing.out == b""
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    unusable = run_cli(tmp_path / "file", "mcp")
    assert unusable.code == 9 and "not a directory" in unusable.err


# -- the real transports -----------------------------------------------------------------------

def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_gitstore_mcp_over_stdio_completes_a_session(root: Path, tmp_path: Path) -> None:
    params = StdioServerParameters(command=sys.executable, env=env(), args=[
        "-m", "gitstore", "--root", str(root), "mcp", "--agent", AGENT])

    async def main() -> Any:
        with (tmp_path / "stderr.log").open("w", encoding="utf-8") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as c:
                done = await record_session(c, turns=3)
                resumed = await ok(c, "resume_session", {"session_id": SESSION_ID,
                                                         "turns": 1})
                diff = await ok(c, "diff_versions", {"customer": CUSTOMER, "a": "v1~3",
                                                     "b": "v1.0.0"})
                return done, resumed, diff

    done, resumed, diff = anyio.run(main)
    assert [d["turn"] for d in done[1:4]] == [1, 2, 3] and done[-1]["version"] == "v1.0.0"
    assert resumed["turns"] == 3 and resumed["turns_omitted"] == 2
    assert resumed["status"] == "finalized"
    names = {d["name"]: d for d in diff["documents"]}
    assert names["sow_document.md"]["status"] == "added"
    assert git(root / CUSTOMER, "tag").split() == ["v1.0.0"]
    assert git(root / CUSTOMER, "log", "-1", "--format=%an <%ae>", "v1").strip() == AGENT
    assert "Traceback" not in (tmp_path / "stderr.log").read_text(encoding="utf-8")


def test_stdout_carries_only_protocol_and_logs_go_to_stderr(root: Path) -> None:
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "append_turn", "arguments": {"customer": CUSTOMER, "turn": TURN}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "list_customers", "arguments": {}}},
    ]
    proc = subprocess.Popen([sys.executable, "-m", "gitstore", "--root", str(root), "mcp",
                             "--log-level", "INFO"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    assert proc.stdin is not None and proc.stdout is not None
    replies: dict[int, Any] = {}
    for message in messages:
        proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()
        if "id" in message:
            reply = json.loads(proc.stdout.readline())      # every stdout line is JSON-RPC
            replies[reply["id"]] = reply
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == b""
    assert replies[1]["result"]["serverInfo"]["name"] == "gitstore"
    failed = replies[2]["result"]
    assert failed["isError"] and failed["content"][0]["text"].startswith("not_found: unknown")
    assert replies[3]["result"]["structuredContent"] == {"count": 0, "customers": []}
    assert "tool append_turn: not_found" in err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_gitstore_mcp_over_streamable_http(root: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gitstore", "--root", str(root), "mcp",
                             "--http", "--port", str(port), "--agent", AGENT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

        async def main() -> Any:
            async with Client(f"http://127.0.0.1:{port}/mcp") as c:
                started = await ok(c, "start_session", {"customer": CUSTOMER})
                return started, await ok(c, "list_customers")

        started, customers = anyio.run(main)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert started["version"] == "v1.0.0" and customers["customers"] == [CUSTOMER]
    assert out == b""                                       # nothing on stdout, even here
    assert f"http://127.0.0.1:{port}/mcp" in err.decode()
    assert git(root / CUSTOMER, "log", "-1", "--format=%an <%ae>", "v1").strip() == AGENT


# -- the optional extra ------------------------------------------------------------------------

def test_without_the_sdk_the_command_says_how_to_install_it(root: Path) -> None:
    probe = ("import sys\n"
             "sys.modules['mcp'] = None  # as if the extra were not installed\n"
             "from gitstore.cli.app import main\n"
             f"main(['--root', {str(root)!r}, 'mcp'])\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=env(),
                          timeout=60, check=False)
    assert proc.returncode == 2 and proc.stdout == b""
    assert "pip install 'gitstore[mcp]'" in proc.stderr.decode()
    helped = subprocess.run([sys.executable, "-c", probe.replace("'mcp']", "'mcp', '--help']")],
                            capture_output=True, env=env(), timeout=60, check=False)
    assert helped.returncode == 0 and b"gitstore[mcp]" in helped.stdout


def test_a_plain_import_never_loads_the_sdk() -> None:
    probe = ("import sys, gitstore\n"
             "from gitstore import Store\n"
             "from gitstore.cli import app\n"
             "import gitstore.ops.verify, gitstore.cli.serve\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')"
             " or m.startswith('gitstore.mcp')))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, env=env(),
                          timeout=60, check=True)
    assert proc.stdout.decode().strip() == "[]"


def test_merging_sessions_with_review_through_the_tools(server: MCPServer[Any],
                                                          root: Path) -> None:
    async def run(c: Client) -> None:
        for sid, region, minute in (("left", "eu-west-1", 1), ("right", "us-east-1", 2)):
            await ok(c, "start_session", {"customer": CUSTOMER, "session_id": sid,
                                          "created": CREATED, "allow_open": True})
            await ok(c, "append_turn", {"customer": CUSTOMER, "scenario": None, "turn": {
                **example_turn(1), "timestamp": f"2025-01-15T10:3{minute}:00Z"}})
            await ok(c, "put_document", {"customer": CUSTOMER,
                                         "document": "deployment_context.json",
                                         "content": {"region": region}})
        dry = await ok(c, "merge_sessions", {"customer": CUSTOMER, "source": "v1",
                                              "into": "v2", "dry_run": True})
        assert dry["dry_run"] and dry["written"] is None and len(dry["conflicts"]) == 1
        stopped = await ok(c, "merge_sessions", {"customer": CUSTOMER, "source": "v1",
                                                  "into": "v2", "author": ALICE})
        (label,) = stopped["unresolved"]
        listed = await ok(c, "merge_conflicts", {"customer": CUSTOMER})
        assert listed["conflicts"][0]["pointer"] == "/region"
        early = await fails(c, "merge_continue", {"customer": CUSTOMER})
        assert early["code"] == "conflict" and early["exit_code"] == 6
        decided = await ok(c, "resolve_conflict", {"customer": CUSTOMER, "label": label,
                                                    "choice": "value",
                                                    "value": "eu-central-1",
                                                    "author": ALICE})
        assert decided["unresolved"] == []
        written = await ok(c, "merge_continue", {"customer": CUSTOMER, "author": ALICE})
        assert written["change"] == "merge" and written["scenario"] == "v2"
    drive(server, run)
    body = git(root / CUSTOMER, "log", "-1", "--format=%B", "v2")
    assert "Merged-From: v1 " in body and f"Reviewed-By: {ALICE}" in body
    assert "eu-central-1" in git(root / CUSTOMER, "show", "v2:deployment_context.json")
    assert git(root / CUSTOMER, "rev-parse", "refs/gitstore/merged/v1").strip() == \
        git(root / CUSTOMER, "rev-parse", "v2").strip()


def test_a_merge_abort_through_the_tools_changes_no_session(server: MCPServer[Any],
                                                            root: Path) -> None:
    async def run(c: Client) -> str:
        for sid, region in (("left", "eu"), ("right", "us")):
            await ok(c, "start_session", {"customer": CUSTOMER, "session_id": sid,
                                          "created": CREATED, "allow_open": True})
            await ok(c, "put_document", {"customer": CUSTOMER,
                                         "document": "deployment_context.json",
                                         "content": {"region": region}})
        before = git(root / CUSTOMER, "for-each-ref")
        await ok(c, "merge_sessions", {"customer": CUSTOMER, "source": "v2"})
        await ok(c, "merge_abort", {"customer": CUSTOMER})
        return before
    before = drive(server, run)
    assert git(root / CUSTOMER, "for-each-ref") == before
