"""Writers for :class:`gitstore.core.diff.Diff`: text, JSON, patch and stat.

All writers are pure functions from a diff (plus labels) to a string; colour is
an argument, decided by the caller (the CLI colours only a terminal, never
with ``NO_COLOR``).

The JSON format is versioned and documented in the README ("Diff formats")::

    {"format": "gitstore-diff", "format_version": 1,
     "a": {...label...}, "b": {...label...},
     "documents": [
        {"name": "conversation.json", "status": "modified", "kind": "json",
         "turns": [{"turn_id": 6, "op": "added", "new": {...}}],
         "changes": [{"op": "change", "path": ["session_info", "session_version"],
                      "pointer": "/session_info/session_version",
                      "old": "v1.0.0", "new": "v1.1.0"}]},
        {"name": "sow_document.md", "status": "modified", "kind": "text",
         "unified": "@@ -1,3 +1,3 @@\\n..."}]}

A path element that selects a record by natural key is ``{"key": K, "value": V}``.
Absent ``old``/``new`` keys mean the value did not exist on that side.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

from gitstore.core.diff import MISSING, Change, Diff, DocumentDiff, TurnChange, pointer, split_lines

FORMAT_VERSION = 1
Style = Callable[..., str]


def _rows(text: str) -> list[str]:
    """The lines of ``text`` without their newlines, split at ``\n`` only."""
    if not text:
        return []
    return (text[:-1] if text.endswith("\n") else text).split("\n")


def _plain(text: str, **_: Any) -> str:
    return text


def _short(value: Any, limit: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- text ------------------------------------------------------------------------

def to_text(diff: Diff, style: Style = _plain) -> str:
    """Human-readable: per document, turns and JSON paths with old → new."""
    out: list[str] = []
    for d in diff.documents:
        out.append(style(f"{d.name} ({d.status})", bold=True))
        if d.kind == "json":
            turn_paths = {("conversation_turns",)} if d.turns else set()
            for t in d.turns:
                out.extend(_turn_lines(t, style))
            for c in d.changes:
                if c.path[:1] and (c.path[0],) in turn_paths and len(c.path) >= 2:
                    continue
                out.append("  " + _change_line(c, style))
        else:
            for line in _rows(_unified(d, context=2))[2:]:
                out.append("  " + _color_patch_line(line, style))
    return "\n".join(out) + ("\n" if out else "")


def _turn_lines(t: TurnChange, style: Style) -> list[str]:
    if t.op == "added":
        query = _query(t.new)
        return [style(f"  + turn {t.turn_id}{query}", fg="green")]
    if t.op == "removed":
        return [style(f"  - turn {t.turn_id}{_query(t.old)}", fg="red")]
    lines = [style(f"  ~ turn {t.turn_id}", fg="yellow")]
    lines.extend("      " + _change_line(c, style) for c in t.changes)
    return lines


def _query(turn: Any) -> str:
    if isinstance(turn, dict):
        ts = turn.get("timestamp")
        q = turn.get("user_input", {}).get("query") if isinstance(turn.get("user_input"),
                                                                    dict) else None
        parts = [f" {ts}" if isinstance(ts, str) else "",
                 f" {_short(q, 60)}" if isinstance(q, str) else ""]
        return "".join(parts)
    return ""


def _change_line(c: Change, style: Style) -> str:
    where = pointer(c.path) or "/"
    if c.op == "add":
        return style(f"+ {where}: {_short(c.new)}", fg="green")
    if c.op == "remove":
        return style(f"- {where}: {_short(c.old)}", fg="red")
    if c.op == "reorder":
        return style(f"~ {where}: reordered to {_short(c.new)}", fg="yellow")
    return style(f"~ {where}: {_short(c.old)} → {_short(c.new)}", fg="yellow")


def _color_patch_line(line: str, style: Style) -> str:
    if line.startswith("+"):
        return style(line, fg="green")
    if line.startswith("-"):
        return style(line, fg="red")
    if line.startswith("@@"):
        return style(line, fg="cyan")
    return line


# -- patch -----------------------------------------------------------------------

def _unified(d: DocumentDiff, context: int = 3) -> str:
    a = split_lines((d.old or b"").decode("utf-8", errors="replace"))
    b = split_lines((d.new or b"").decode("utf-8", errors="replace"))
    old_name = "/dev/null" if d.old is None else f"a/{d.name}"
    new_name = "/dev/null" if d.new is None else f"b/{d.name}"
    lines = list(difflib.unified_diff(a, b, old_name, new_name, n=context))
    text = ""
    for line in lines:
        text += line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
    return text


def to_patch(diff: Diff, style: Style = _plain) -> str:
    """A git-style unified diff of the stored (canonical) files, ``SHA256SUMS``
    included (:attr:`Diff.manifest`): ``git apply`` turns the old tree into the
    new one, and ``sha256sum -c SHA256SUMS`` then passes there."""
    out = []
    names = {d.name for d in diff.documents}
    extra = (diff.manifest,) if diff.manifest is not None and diff.manifest.name not in names \
        else ()
    for d in (*diff.documents, *extra):
        header = f"diff --git a/{d.name} b/{d.name}\n"
        if d.status == "added":
            header += "new file mode 100644\n"
        elif d.status == "removed":
            header += "deleted file mode 100644\n"
        out.append(style(header.rstrip("\n"), bold=True) + "\n")
        body = _unified(d)
        out.append("".join(_color_patch_line(line, style) + "\n" if i >= 2 else
                           style(line, bold=True) + "\n"
                           for i, line in enumerate(_rows(body))))
    return "".join(out)


# -- stat ------------------------------------------------------------------------

def stats(d: DocumentDiff) -> dict[str, int]:
    """Counts for one document: turns added/removed/changed, paths, lines."""
    counts = {"turns_added": 0, "turns_removed": 0, "turns_changed": 0,
              "paths_changed": 0, "lines_added": 0, "lines_removed": 0}
    for t in d.turns:
        counts[f"turns_{t.op}"] += 1
    counts["paths_changed"] = sum(
        1 for c in d.changes if not (d.turns and c.path[:1] == ("conversation_turns",)
                                     and len(c.path) >= 2))
    for line in _rows(_unified(d, context=0))[2:]:
        if line.startswith("+"):
            counts["lines_added"] += 1
        elif line.startswith("-"):
            counts["lines_removed"] += 1
    return counts


def to_stat(diff: Diff, style: Style = _plain) -> str:
    rows = []
    for d in diff.documents:
        s = stats(d)
        parts = []
        for op in ("added", "removed", "changed"):
            if s[f"turns_{op}"]:
                parts.append(f"{s[f'turns_{op}']} turn(s) {op}")
        if s["paths_changed"]:
            parts.append(f"{s['paths_changed']} path(s) changed")
        if d.status != "modified":
            parts.insert(0, d.status)
        detail = ", ".join(parts) or "modified"
        plus = style("+" * min(s["lines_added"], 20), fg="green")
        minus = style("-" * min(s["lines_removed"], 20), fg="red")
        rows.append(f" {d.name:<26} | {detail} ({s['lines_added']}+ {s['lines_removed']}-) "
                    f"{plus}{minus}")
    total = len(diff.documents)
    rows.append(f" {total} document(s) changed")
    return "\n".join(rows) + "\n"


# -- json ------------------------------------------------------------------------

def _path_json(path: tuple[Any, ...]) -> list[Any]:
    return [{"key": e[0], "value": e[1]} if isinstance(e, tuple) else e for e in path]


def _change_json(c: Change) -> dict[str, Any]:
    out: dict[str, Any] = {"op": c.op, "path": _path_json(c.path), "pointer": c.pointer}
    if c.old is not MISSING:
        out["old"] = c.old
    if c.new is not MISSING:
        out["new"] = c.new
    return out


def to_json(diff: Diff, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The stable JSON form (see module docstring); ``a``/``b`` label the sides."""
    docs = []
    for d in diff.documents:
        item: dict[str, Any] = {"name": d.name, "status": d.status, "kind": d.kind,
                                "stat": stats(d)}
        if d.kind == "json":
            item["changes"] = [_change_json(c) for c in d.changes]
            if d.name == "conversation.json":
                turns = []
                for t in d.turns:
                    entry: dict[str, Any] = {"turn_id": t.turn_id, "op": t.op}
                    if t.op == "added":
                        entry["new"] = t.new
                    elif t.op == "removed":
                        entry["old"] = t.old
                    else:
                        entry["changes"] = [_change_json(c) for c in t.changes]
                    turns.append(entry)
                item["turns"] = turns
        else:
            item["unified"] = _unified(d)
        docs.append(item)
    return {"format": "gitstore-diff", "format_version": FORMAT_VERSION, "a": dict(a),
            "b": dict(b), "documents": docs}
