"""The escalation briefing (``gitstore escalate``): one Markdown file that gives a
human expert the complete context of a scenario (seed 000, "complete context to
human experts"): the scenario at a glance, every version with its tag message,
the conversation turn by turn, the other documents in full, the history and the
newest finalized version's SOW.

Invariant: every piece of document text is escaped for Markdown and HTML
(``<``, ``>``, ``&``) or fenced, so a hostile document cannot inject markup into
the briefing; reading it appends one ``escalate`` record to the access log.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gitstore.core import canonical
from gitstore.core.commits import ChangeKind
from gitstore.core.names import ANA, CONV, CTX, JSON_DOCUMENTS, META, SOW_DOCUMENT
from gitstore.core.time import format_rfc3339 as iso
from gitstore.core.time import from_timestamp
from gitstore.store.facade import Customer
from gitstore.store.tip import read_state
from gitstore.version import __version__


def _md(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quote(text: Any) -> str:
    lines = _md(text if text is not None else "(none)").splitlines() or [""]
    return "\n".join(f"> {line}".rstrip() for line in lines)


def _cell(text: Any) -> str:
    return _md(text if text not in (None, "") else "-").replace("|", "\\|").replace("\n", " ")


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _json_block(data: Any) -> str:
    return _fence(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False), "json")


def _demote(markdown: str, levels: int = 2) -> str:
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        out.append("#" * levels + line if not fenced and re.match(r"#{1,6} ", line) else line)
    return "\n".join(out)


def _turn(turn: Any) -> list[str]:
    if not isinstance(turn, dict):
        return [_json_block(turn), ""]
    user, agent = turn.get("user_input") or {}, turn.get("agent_response") or {}
    out = [f"### Turn {turn.get('turn_id', '?')} ({turn.get('timestamp', 'no timestamp')})", "",
           "**Customer:**", "", _quote(user.get("query")), ""]
    if user.get("command") or user.get("parameters"):
        out += [f"Command: `{user.get('command') or '-'}`, parameters: "
                f"`{json.dumps(user.get('parameters'), sort_keys=True)}`", ""]
    facts = [f"{k.replace('_', ' ')} {agent[k]}" for k in
             ("confidence_score", "processing_time_seconds") if agent.get(k) is not None]
    if agent.get("sub_agents_invoked"):
        facts.append("sub-agents " + ", ".join(map(str, agent["sub_agents_invoked"])))
    out += [f"**Agent**{' (' + _md('; '.join(facts)) + ')' if facts else ''}:", "",
            _quote(agent.get("orchestrator_response")), ""]
    for d in turn.get("decision_points") or []:
        if isinstance(d, dict):
            out.append(f"- decision {_md(d.get('decision'))} = {_md(d.get('value'))} "
                       f"(confidence {_md(d.get('confidence'))})")
    extra = {k: v for k, v in turn.items() if k not in
             ("turn_id", "timestamp", "user_input", "agent_response", "decision_points")}
    extra.update({f"user_input.{k}": v for k, v in user.items()
                  if k not in ("query", "command", "parameters")})
    extra.update({f"agent_response.{k}": v for k, v in agent.items() if k not in
                  ("orchestrator_response", "confidence_score", "processing_time_seconds",
                   "sub_agents_invoked")})
    return [*out, *(["", "Other fields:", "", _json_block(extra)] if extra else []), ""]


def escalation(customer: Customer, scenario: str | None = None) -> str:
    """The Markdown escalation report of one scenario (default: the newest)."""
    session = customer.session(scenario)
    repo, s = customer.repo, session.scenario
    tip = repo.ref_target(s.branch_ref)
    assert tip is not None
    info = repo.commit(tip)
    files = repo.read_tree(tip)
    docs = {n: canonical.loads(files[n]) for n in JSON_DOCUMENTS if n in files}
    versions = customer.versions(s)
    now = iso(customer.store.now())
    out = [f"# Support escalation: {_md(customer.name)}, scenario {s}", "",
           f"Prepared {now} by gitstore {__version__} so that a human expert has the complete "
           "context of this session: every version, the whole conversation, every document, "
           "the history and the statement of work.", ""]
    if info.change == ChangeKind.RETENTION:
        out += ["**This scenario was purged by the retention policy.** Only the analytics "
                "summary remains.", "", _fence(info.message), "", _json_block(docs.get(ANA)),
                ""]
        customer.audit("escalate", rev=str(s), commit=tip)
        return "\n".join(out)
    state = read_state(repo, s)
    conv, meta = docs.get(CONV, {}), docs.get(META, {})
    summary = conv.get("conversation_summary") or {}
    workflow = meta.get("workflow_tracking") or {}
    final = [v for v in versions if v.status == "finalized"]
    rows = [("Customer", customer.name), ("Scenario", f"{s} (branch {s.branch_ref})"),
            ("Session id", state.session_id),
            ("Versions", ", ".join(f"{v.version} ({v.status})" for v in versions)),
            ("Newest state", f"{state.version}, {'finalized' if state.finalized else 'open'}, "
                             f"last change {info.change} at "
                             f"{iso(from_timestamp(info.time))}"),
            ("Completion status", workflow.get("completion_status")),
            ("Turns", len(conv.get("conversation_turns") or [])),
            ("Primary cloud provider", summary.get("primary_cloud_provider")),
            ("Services discussed", ", ".join(map(str, summary.get("services_discussed") or []))),
            ("Final recommendation", summary.get("final_recommendation")),
            ("Escalation events", len(workflow.get("escalation_events") or []))]
    out += ["## At a glance", "", "| | |", "|---|---|",
            *(f"| {k} | {_cell(v)} |" for k, v in rows), "", "## Versions", ""]
    for v in versions:
        who = v.tag.tagger if v.tag and v.tag.tagger else v.author
        out += [f"### {v.version}: {v.status}, {iso(from_timestamp(v.time))}, by {_md(who)}", "",
                f"Commit `{v.commit}`" + (f", tag `{v.tag.id}`" if v.tag else " (no tag yet)"),
                ""]
        if v.tag:
            out += [_fence(v.tag.message), ""]
    out += ["## Conversation", ""]
    for turn in conv.get("conversation_turns") or []:
        out += _turn(turn)
    out += ["### Conversation summary", "", _json_block(summary), ""]
    for name, title in ((META, "Session metadata"), (CTX, "Deployment context"),
                        (ANA, "Session analytics")):
        out += [f"## {title} ({name})", "",
                _json_block(docs[name]) if name in docs else "(not recorded)", ""]
    out += ["## History", "", "| commit | time | version | change | agent | summary |",
            "|---|---|---|---|---|---|"]
    for c in repo.walk(tip):
        out.append(f"| `{c.id[:12]}` | {iso(from_timestamp(c.time))} | "
                   f"{_cell(c.trailer('Session-Version'))} | {_cell(c.trailer('Change'))} | "
                   f"{_cell(c.trailer('Agent') or c.author.name)} | {_cell(c.parsed.summary)} |")
    out.append("")
    if final:
        newest = final[-1]
        sow = repo.read_file(newest.commit, SOW_DOCUMENT)
        out += [f"## Statement of work ({newest.version})", "",
                _demote(sow.decode("utf-8")) if sow else "(no SOW stored)", ""]
    else:
        out += ["## Statement of work", "", "No version of this scenario is finalized yet, so "
                "there is no statement of work.", ""]
    customer.audit("escalate", rev=str(s), commit=tip)
    return "\n".join(out)
