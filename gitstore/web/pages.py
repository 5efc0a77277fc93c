"""The store-wide pages: sessions (the customers page), search, statistics and health.

Invariants: every answer comes from the catalog, page by page (``LIMIT``/``OFFSET``),
never from walking every repository; a scoped viewer's pages are computed over its
customers only (their totals, their charts, their search hits), and store-wide
checks that concern every customer (file permissions, the index itself) are shown
only to an unscoped viewer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from gitstore.catalog.browse import BINS, Filters
from gitstore.catalog.queries import SORT_FIELDS
from gitstore.catalog.rows import fts_query
from gitstore.ops.verify import check_permissions
from gitstore.web import charts
from gitstore.web.health import health
from gitstore.web.site import Viewer, WebApp, choice, day, integer, text

PER_PAGE = (25, 50, 100, 200)
HEALTH_PER_PAGE = 10
#: The columns of the sessions table: (sort key or None, heading).
COLUMNS = (("customer", "Customer"), (None, "Scenario"), ("version", "Version"),
           ("status", "Status"), ("provider", "Provider"), ("completeness", "Complete"),
           ("satisfaction", "Satisfaction"), ("turns", "Turns"), ("created", "Created"),
           ("updated", "Last activity"))


def _link(base: str, params: dict[str, Any], **change: Any) -> str:
    merged = {**params, **change}
    query = urlencode({k: v for k, v in merged.items() if v not in (None, "")})
    return f"{base}?{query}" if query else base


def sessions(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """The sessions of every customer the viewer may see, filtered, sorted, paged."""
    p = request.query_params
    f = Filters(scope=viewer.scope, name=text(p, "name", 128), status=text(p, "status"),
                provider=text(p, "provider"), service=text(p, "service"),
                since=day(p, "since"), until=day(p, "until", end=True))
    sort = choice(p, "sort", tuple(SORT_FIELDS), "updated")
    order = choice(p, "order", ("desc", "asc"), "desc")
    per = integer(p, "per", 50, 1, max(PER_PAGE))
    number = integer(p, "page", 1, 1, 10**7)
    found = web.browser.sessions(viewer.store, f, sort=sort, descending=order == "desc",
                                 limit=per, offset=(number - 1) * per)
    params = {"name": f.name, "status": f.status, "provider": f.provider,
              "service": f.service, "since": p.get("since"), "until": p.get("until"),
              "sort": sort, "order": order, "per": per}
    heads: list[tuple[str, str | None, str]] = []
    for key, title in COLUMNS:
        if key is None:
            heads.append((title, None, ""))
            continue
        flip = "asc" if key == sort and order == "desc" else "desc"
        mark = ("▼" if order == "desc" else "▲") if key == sort else ""
        heads.append((title, _link("/", params, sort=key, order=flip, page=None), mark))
    pages = {"first": _link("/", params, page=1) if found.number > 1 else None,
             "prev": _link("/", params, page=found.number - 1) if found.number > 1 else None,
             "next": _link("/", params, page=found.number + 1)
             if found.number < found.pages else None,
             "last": _link("/", params, page=found.pages) if found.number < found.pages
             else None}
    return web.page(request, "sessions.html", found=found, params=params, heads=heads,
                    pages=pages, facets=web.browser.facets(viewer.scope), per_page=PER_PAGE,
                    checked=web.browser.checked)


def search(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """Full-text search of the conversation turns the viewer may see."""
    q = text(request.query_params, "q", 200)
    limit = integer(request.query_params, "n", 50, 1, 500)
    hits = web.browser.search(viewer.store, fts_query(q or ""), viewer.scope, limit) \
        if q else []
    return web.page(request, "search.html", q=q or "", hits=hits, limit=limit)


def stats(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """Totals, averages, breakdowns and the charts."""
    data = web.browser.overview(viewer.store, viewer.scope)
    figures = {
        "timeline": charts.timeline(data["per_day"], "Sessions started over time"),
        "completeness": charts.histogram(data["completeness"], "Completeness distribution "
                                         "(% of expected fields filled)", scale=100,
                                         suffix="%"),
        "satisfaction": charts.histogram(data["satisfaction"], "Satisfaction distribution "
                                         "(0 to 1)", scale=1),
        "status": charts.hbars(list(data["by_status"].items()), "Sessions by status"),
        "completion": charts.hbars(list(data["by_completion_status"].items()),
                                   "Sessions by completion status", css="bar bar-alt"),
        "provider": charts.hbars(list(data["by_provider"].items()),
                                 "Sessions by cloud provider", css="bar bar-third"),
    }
    return web.page(request, "stats.html", data=data, figures=figures, bins=BINS)


def store_health(web: WebApp, viewer: Viewer, request: Request) -> Response:
    """Store-wide checks (unscoped viewers) and the health of a page of customers."""
    number = integer(request.query_params, "page", 1, 1, 10**7)
    names = [n for n in web.store.customers() if viewer.token.allows(n)]
    pages = max(1, -(-len(names) // HEALTH_PER_PAGE))
    shown = names[(number - 1) * HEALTH_PER_PAGE: number * HEALTH_PER_PAGE]
    reports = [health(viewer.customer(n, request)) for n in shown]
    store_problems: list[str] | None = None
    index: dict[str, Any] | None = None
    if viewer.scope is None:
        store_problems = [p.replace(str(web.root), "<root>") for p in check_permissions(web.store)]
        index = {"problems": list(web.store.catalog.problems),
                 "moved_aside": [p.name for p in web.store.catalog.moved_aside]}
    return web.page(request, "store_health.html", reports=reports, number=number, pages=pages,
                    total=len(names), store_problems=store_problems, index=index)
