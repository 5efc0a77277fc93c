"""Turning session data into HTML safely: the viewer's Jinja2 environment, Markdown,
and the shapes the templates draw (chat turns, value tables, side-by-side diffs).

Invariants:

* everything from a document reaches the page escaped: the environment autoescapes
  every template (it is separate from the SOW's Markdown environment, which must
  not escape), and nothing here marks document text safe except the output of
  :func:`markdown`;
* :func:`markdown` renders CommonMark (plus tables and strikethrough) with raw
  HTML *disabled* (``<script>``, ``<!-- -->`` and every other tag come out as
  text; the one exception is a bare ``<br>``, which becomes a line break, as the
  SOW template writes it in table cells), no typographer and no linkify; a link
  or image is kept only when its URL is ``http:``, ``https:``, ``mailto:`` or a
  ``#fragment`` (``javascript:``,
  ``data:``, ``vbscript:``, relative and protocol-relative URLs are left as text),
  and links get ``rel="noopener noreferrer nofollow"``;
* the page never needs JavaScript and carries none (the Content-Security-Policy
  forbids it anyway): charts are inline SVG (:mod:`gitstore.web.charts`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

from gitstore.core.diff import MISSING, Change, DocumentDiff, TurnChange, pointer, split_lines

SAFE_URL = re.compile(r"(?:https?://|mailto:|#)[^\s\x00-\x1f]*", re.IGNORECASE)
#: How much of a value a diff cell shows before it is cut (the JSON diff has it all).
CELL_LIMIT = 2000


# -- Markdown ------------------------------------------------------------------------

def _link_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
               env: EnvType) -> str:
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    return self.renderToken(tokens, idx, options, env)


_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def _line_break(state: StateInline, silent: bool) -> bool:
    """``<br>`` (exactly, no attributes) as a line break: the SOW template writes it
    inside table cells, which cannot hold a newline. Every other tag stays text."""
    found = _BREAK.match(state.src, state.pos)
    if found is None:
        return False
    if not silent:
        state.push("hardbreak", "br", 0)
    state.pos = found.end()
    return True


def _markdown_it() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.inline.ruler.before("autolink", "line_break", _line_break)
    md.validateLink = lambda url: bool(SAFE_URL.fullmatch(url.strip()))  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    return md


_MD = _markdown_it()


def markdown(text: str) -> Markup:
    """``text`` (the SOW) as HTML, raw HTML disabled (see the module docstring)."""
    return Markup(_MD.render(text))


# -- values ---------------------------------------------------------------------------

def pretty(value: Any) -> str:
    """JSON as stored: sorted keys, two-space indent, non-ASCII kept."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def short(value: Any, limit: int = CELL_LIMIT) -> str:
    """A value as compact JSON text (strings without quotes), cut at ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           sort_keys=True)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def kind(value: Any) -> str:
    """How the value table macro draws ``value``: ``object``, ``records`` (a list of
    objects), ``list`` (of scalars), ``json`` (nested lists) or ``scalar``."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return "records"
        if all(not isinstance(v, dict | list) for v in value):
            return "list"
        return "json"
    return "scalar"


def columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys of a list of objects, in order of first appearance."""
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(str(k), None)
    return list(seen)


def when(ts: int | float | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS UTC``."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def why(message: str) -> str:
    """The reason a tag message gives (its ``Why:`` line), else its first line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Why:"):
            return line[4:].strip()
    return lines[0] if lines else ""


def percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# -- conversation ---------------------------------------------------------------------

@dataclass(frozen=True)
class Turn:
    """One conversation turn as the chat transcript shows it."""

    turn_id: Any
    timestamp: Any
    query: Any
    command: Any
    response: Any
    facts: list[tuple[str, Any]]
    decisions: list[Any]
    extra: dict[str, Any]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def chat_turn(turn: Any) -> Turn:
    """A turn of any shape (the schema allows extra fields; history may hold odd ones)."""
    if not isinstance(turn, dict):
        return Turn(None, None, None, None, None, [], [], {"turn": turn})
    user = _mapping(turn.get("user_input"))
    agent = _mapping(turn.get("agent_response"))
    facts = [(k.replace("_", " "), agent[k]) for k in
             ("confidence_score", "processing_time_seconds", "sub_agents_invoked")
             if agent.get(k) not in (None, [], "")]
    decisions = turn.get("decision_points")
    extra = {k: v for k, v in turn.items() if k not in
             ("turn_id", "timestamp", "user_input", "agent_response", "decision_points")}
    extra.update({f"user_input.{k}": v for k, v in user.items()
                  if k not in ("query", "command")})
    extra.update({f"agent_response.{k}": v for k, v in agent.items() if k not in
                  ("orchestrator_response", "confidence_score", "processing_time_seconds",
                   "sub_agents_invoked")})
    extra = {k: v for k, v in extra.items() if v not in (None, {}, [], "")}
    return Turn(turn.get("turn_id"), turn.get("timestamp"), user.get("query"),
                user.get("command"), agent.get("orchestrator_response"), facts,
                decisions if isinstance(decisions, list) else [], extra)


# -- diffs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ChangeRow:
    """One changed JSON value: ``op`` is add/remove/change/reorder."""

    op: str
    pointer: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class LineRow:
    """One row of a side-by-side text diff; ``kind`` is equal/insert/delete/replace."""

    kind: str
    old_no: int | None
    old: str | None
    new_no: int | None
    new: str | None


def change_row(c: Change) -> ChangeRow:
    old = None if c.old is MISSING else short(c.old)
    new = None if c.new is MISSING else short(c.new)
    return ChangeRow(c.op, pointer(c.path) or "/", old, new)


def change_rows(d: DocumentDiff) -> list[ChangeRow]:
    """The JSON changes of ``d`` not already shown as conversation turns."""
    skip_turns = bool(d.turns)
    return [change_row(c) for c in d.changes
            if not (skip_turns and len(c.path) >= 2 and c.path[0] == "conversation_turns")]


@dataclass(frozen=True)
class TurnRow:
    turn_id: Any
    op: str
    old: Turn | None
    new: Turn | None
    changes: list[ChangeRow]


def turn_rows(d: DocumentDiff) -> list[TurnRow]:
    def side(value: Any) -> Turn | None:
        return None if value is MISSING else chat_turn(value)

    return [TurnRow(t.turn_id, t.op, side(t.old), side(t.new),
                    [change_row(c) for c in t.changes]) for t in d.turns]


def line_rows(old: bytes | None, new: bytes | None, context: int = 3) -> list[LineRow | None]:
    """A side-by-side diff of two texts: equal runs longer than ``2 * context`` are
    cut to their ends, a ``None`` marking each cut."""
    a = [line.rstrip("\n") for line in split_lines((old or b"").decode("utf-8", "replace"))]
    b = [line.rstrip("\n") for line in split_lines((new or b"").decode("utf-8", "replace"))]
    rows: list[LineRow | None] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            head = context if i1 > 0 else 0          # lines after the change before
            tail = context if i2 < len(a) else 0     # lines before the change after
            shown = range(i2 - i1) if i2 - i1 <= head + tail else \
                [*range(head), -1, *range(i2 - i1 - tail, i2 - i1)]
            for k in shown:
                rows.append(None if k == -1 else
                            LineRow("equal", i1 + k + 1, a[i1 + k], j1 + k + 1, b[j1 + k]))
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            left = i1 + k if i1 + k < i2 else None
            right = j1 + k if j1 + k < j2 else None
            rows.append(LineRow(op, None if left is None else left + 1,
                                None if left is None else a[left],
                                None if right is None else right + 1,
                                None if right is None else b[right]))
    return rows


def turn_change_count(turns: Sequence[TurnChange]) -> dict[str, int]:
    out = {"added": 0, "removed": 0, "changed": 0}
    for t in turns:
        out[t.op] = out.get(t.op, 0) + 1
    return out


# -- the environment ------------------------------------------------------------------

def environment() -> Environment:
    """The viewer's template environment: autoescaping on for every template,
    undefined names an error, templates from the package's ``templates/``."""
    env = Environment(loader=PackageLoader("gitstore.web", "templates"), autoescape=True,
                      undefined=StrictUndefined, lstrip_blocks=True)
    env.filters.update(pretty=pretty, short=short, when=when, percent=percent, number=number,
                       why=why)
    env.globals.update(kind=kind, columns=columns)
    return env
