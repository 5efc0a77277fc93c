"""The pages of one customer: overview and timeline, a version, raw files, a diff, the
history of one document, the access log, health, and the downloads.

Invariants: every handler reaches its customer through
:meth:`~gitstore.web.site.Viewer.customer` first (scope check, then one
``web:view`` record), and reads only through the history API and the ops layer,
which append their own records in the viewer's name; a revision in a URL is a
version, a scenario or a commit id, nothing else; long things are paged (a
conversation by :data:`TURNS_PER_PAGE` turns, the log and the access log by
:data:`ROWS_PER_PAGE` rows); downloads are attachments (``Content-Disposition``)
and never rendered as HTML.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gitstore.core import canonical
from gitstore.core.diffformat import to_json
from gitstore.core.names import CONV, DOCUMENTS, JSON_DOCUMENTS, MANIFEST, SOW_DOCUMENT
from gitstore.core.versions import Scenario, Version
from gitstore.ops.escalation import escalation
from gitstore.ops.exporting import default_name, write_json_export
from gitstore.store.history import VersionInfo
from gitstore.web.health import health
from gitstore.web.render import (
    change_rows,
    chat_turn,
    line_rows,
    markdown,
    turn_change_count,
    turn_rows,
)
from gitstore.web.site import PageError, Viewer, WebApp, integer, not_found, revision, text

TURNS_PER_PAGE = 100
ROWS_PER_PAGE = 100
#: How many turn and value changes of one document a diff page shows at most.
DIFF_LIMIT = 500
FILES = (*DOCUMENTS, MANIFEST)
SCENARIO = re.compile(r"v[0-9]{1,9}")


def _attachment(body: bytes, filename: str, media_type: str) -> Response:
    return Response(body, media_type=media_type,
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


def _scenarios(versions: list[VersionInfo]) -> list[tuple[Scenario, list[VersionInfo]]]:
    """Versions grouped by scenario, the newest scenario first, each oldest first."""
    grouped: dict[Scenario, list[VersionInfo]] = {}
    for v in versions:
        grouped.setdefault(v.version.scenario, []).append(v)
    return sorted(grouped.items(), key=lambda item: item[0], reverse=True)


def overview(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """Scenarios and versions as a timeline (who, when, why), then the commit log."""
    c = viewer.customer(request.path_params["customer"], request)
    number = integer(request.query_params, "page", 1, 1, 10**6)
    versions = c.versions()
    entries = c.log(limit=number * ROWS_PER_PAGE + 1)
    more = len(entries) > number * ROWS_PER_PAGE
    entries = entries[(number - 1) * ROWS_PER_PAGE: number * ROWS_PER_PAGE]
    return web.page(request, "customer.html", customer=c.name,
                    scenarios=_scenarios(versions), versions=versions, entries=entries,
                    number=number, more=more, documents=FILES)


def _documents(files: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON documents parsed, and why any could not be."""
    docs: dict[str, Any] = {}
    broken: dict[str, str] = {}
    for name in JSON_DOCUMENTS:
        if name in files:
            try:
                docs[name] = canonical.loads(files[name])
            except canonical.JSONParseError as exc:
                broken[name] = str(exc)
    return docs, broken


def version(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """One version: the conversation as a chat (paged), the other documents as
    tables, the SOW rendered from Markdown, and links to every raw file."""
    c = viewer.customer(request.path_params["customer"], request)
    rev = revision(request.path_params["rev"])
    snap = c.read(rev)
    docs, broken = _documents(snap.files)
    found = docs.get(CONV)
    conv: dict[str, Any] = found if isinstance(found, dict) else {}
    listed = conv.get("conversation_turns")
    turns: list[Any] = listed if isinstance(listed, list) else []
    pages = max(1, -(-len(turns) // TURNS_PER_PAGE))
    number = integer(request.query_params, "page", 1, 1, pages)
    shown = [chat_turn(t) for t in
             turns[(number - 1) * TURNS_PER_PAGE: number * TURNS_PER_PAGE]]
    sow = snap.files.get(SOW_DOCUMENT)
    others = {k: v for k, v in conv.items() if k != "conversation_turns"}
    return web.page(
        request, "version.html", customer=c.name, rev=rev, snap=snap, docs=docs,
        broken=broken, turns=shown, total_turns=len(turns), number=number, pages=pages,
        summary=others, sow=markdown(sow.decode("utf-8", "replace")) if sow else None,
        files=[(n, len(snap.files[n])) for n in FILES if n in snap.files],
        is_version=Version.is_version(rev))


def raw(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """A stored file, byte for byte: JSON as JSON, everything else as plain text."""
    c = viewer.customer(request.path_params["customer"], request)
    name = request.path_params["document"]
    if name not in FILES:
        raise not_found("file")
    snap = c.read(revision(request.path_params["rev"]))
    if name not in snap.files:
        raise not_found("file")
    media = "application/json" if name in JSON_DOCUMENTS else "text/plain; charset=utf-8"
    return Response(snap.files[name], media_type=media)


def download_version(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """One version as a JSON export bundle (``gitstore import`` reads it)."""
    c = viewer.customer(request.path_params["customer"], request)
    rev = revision(request.path_params["rev"])
    if not Version.is_version(rev):
        raise PageError(400, "only a version (v1.0.0) can be downloaded; this is "
                             f"{rev}")
    out = io.StringIO()
    write_json_export(viewer.store, out, [c.name], selection=rev)
    return _attachment(out.getvalue().encode("utf-8"), f"{c.name}-{rev}.json",
                       "application/json")


def export(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """The customer's whole history as a JSON export bundle."""
    c = viewer.customer(request.path_params["customer"], request)
    out = io.StringIO()
    write_json_export(viewer.store, out, [c.name])
    name = default_name(viewer.store.now()).replace("gitstore-export", f"{c.name}-export")
    return _attachment(out.getvalue().encode("utf-8"), name, "application/json")


def briefing(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """The escalation briefing of one scenario, as Markdown."""
    c = viewer.customer(request.path_params["customer"], request)
    scenario = request.path_params["scenario"]
    if not SCENARIO.fullmatch(scenario):
        raise PageError(400, "the briefing is of a scenario (v1)")
    body = escalation(c, scenario).encode("utf-8")
    return _attachment(body, f"{c.name}-{scenario}-escalation.md",
                       "text/markdown; charset=utf-8")


def _pick(key: str, value: str | None) -> str | None:
    return revision(value, key) if value else None


def diff(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """The semantic diff of two states, side by side, change kinds coloured."""
    c = viewer.customer(request.path_params["customer"], request)
    p = request.query_params
    versions = c.versions()
    names = [str(v.version) for v in versions]
    a = _pick("a", text(p, "a", 40))
    b = _pick("b", text(p, "b", 40))
    doc = text(p, "doc", 40)
    if doc is not None and doc not in FILES:
        raise not_found("document")
    if a is None and b is None and len(names) >= 2:
        a, b = names[-2], names[-1]
    context: dict[str, Any] = {"customer": c.name, "names": names, "a": a, "b": b,
                               "doc": doc, "documents": FILES, "limit": DIFF_LIMIT,
                               "result": None}
    if a is not None and b is not None:
        result, snap_a, snap_b = c.diff(a, b, documents=[doc] if doc else None)
        rendered = []
        for d in result.documents:
            rendered.append({
                "name": d.name, "status": d.status, "kind": d.kind,
                "turns": turn_rows(d)[:DIFF_LIMIT], "turn_count": len(d.turns),
                "turn_counts": turn_change_count(d.turns),
                "changes": change_rows(d)[:DIFF_LIMIT], "change_count": len(change_rows(d)),
                "lines": line_rows(d.old, d.new) if d.kind == "text" else []})
        context.update(result=rendered, snap_a=snap_a, snap_b=snap_b)
    elif a is not None or b is not None:
        raise PageError(400, "a diff needs both a and b")
    return web.page(request, "diff.html", **context)


def diff_json(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """The same diff in gitstore's JSON diff format (``gitstore diff -o json``)."""
    c = viewer.customer(request.path_params["customer"], request)
    p = request.query_params
    a, b = revision(text(p, "a", 40), "a"), revision(text(p, "b", 40), "b")
    doc = text(p, "doc", 40)
    if doc is not None and doc not in FILES:
        raise not_found("document")
    result, snap_a, snap_b = c.diff(a, b, documents=[doc] if doc else None)
    body = json.dumps(to_json(result, snap_a.label(), snap_b.label()), indent=2,
                      sort_keys=True, ensure_ascii=False)
    return Response(body.encode("utf-8"), media_type="application/json")


def history(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """Every commit that changed one document (``gitstore log --document``)."""
    c = viewer.customer(request.path_params["customer"], request)
    name = request.path_params["document"]
    if name not in FILES:
        raise not_found("document")
    scenario = text(request.query_params, "scenario", 12)
    if scenario is not None and not SCENARIO.fullmatch(scenario):
        raise PageError(400, "scenario must be like v1")
    number = integer(request.query_params, "page", 1, 1, 10**6)
    entries = c.log(scenario, document=name, limit=number * ROWS_PER_PAGE + 1)
    more = len(entries) > number * ROWS_PER_PAGE
    # each entry's predecessor in this list is the previous change of the document
    rows = [(e, entries[i + 1] if i + 1 < len(entries) else None)
            for i, e in enumerate(entries)][(number - 1) * ROWS_PER_PAGE:
                                            number * ROWS_PER_PAGE]
    return web.page(request, "history.html", customer=c.name, document=name, rows=rows,
                    scenario=scenario, scenarios=[str(s) for s in c.scenarios()],
                    number=number, more=more)


def access(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """The customer's access log, newest first, with the chain check."""
    c = viewer.customer(request.path_params["customer"], request)
    log = c.audit_log
    records = list(log.records())
    pages = max(1, -(-len(records) // ROWS_PER_PAGE))
    number = integer(request.query_params, "page", 1, 1, pages)
    records.reverse()
    shown = records[(number - 1) * ROWS_PER_PAGE: number * ROWS_PER_PAGE]
    problems = [str(p) for p in log.verify()]
    return web.page(request, "access.html", customer=c.name, records=shown,
                    total=len(records), number=number, pages=pages, problems=problems)


def customer_health(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """Verify results, each tag's manifest and signature, the audit chain."""
    c = viewer.customer(request.path_params["customer"], request)
    return web.page(request, "health.html", customer=c.name, report=health(c))
