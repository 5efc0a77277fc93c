"""Browsing the catalog page by page, for a viewer that may see only some customers.

The questions of :mod:`gitstore.catalog.queries` as a person browsing them needs
them: one page of sessions (``LIMIT``/``OFFSET``) with the total it is a page of,
the values to filter by, and the store's totals and distributions (for charts),
each over every customer or only over a *scope* (a set of customer names).

Invariants:

* nothing outside the scope is ever read into an answer: every statement's
  ``WHERE`` carries the scope as bound parameters, and an empty scope answers
  nothing at all;
* user input reaches SQL only as bound parameters (sort keys are checked against
  :data:`~gitstore.catalog.queries.SORT_FIELDS`, the name filter is a ``LIKE``
  pattern with its wildcards escaped); orders are total, so pages never overlap;
* a :class:`Browser` keeps the index at most ``max_age`` seconds behind git (0:
  brought up to date before every answer; else refreshed in the background, so a
  page never waits for it), and refreshes at once after a damaged file was set
  aside; every answer that shows session data is recorded once, naming each
  customer it shows (``StoreView.record_answer``), through the *viewer* given, so
  the record names who looked.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gitstore.catalog import queries
from gitstore.catalog.db import SELECT, guarded
from gitstore.catalog.index import Index
from gitstore.catalog.queries import public, sort_columns
from gitstore.catalog.rows import iso
from gitstore.catalog.view import StoreView

if TYPE_CHECKING:
    import sqlite3

__all__ = ["BINS", "Browser", "Filters", "Page"]

#: Bins of the completeness (0..100) and satisfaction (0..1) distributions.
BINS = 10
#: How many values of each facet (status, provider, service) are offered at most.
FACET_LIMIT = 50


@dataclass(frozen=True)
class Filters:
    """What a page of sessions is filtered by. ``scope`` None means every customer;
    ``name`` matches customers whose name contains it (case-insensitive)."""

    scope: tuple[str, ...] | None = None
    name: str | None = None
    status: str | None = None
    provider: str | None = None
    service: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Page:
    """One page of sessions: ``rows`` from ``offset`` of ``total`` matching."""

    rows: list[dict[str, Any]]
    total: int
    offset: int
    limit: int

    @property
    def number(self) -> int:
        return self.offset // self.limit + 1 if self.limit else 1

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.limit)) if self.limit else 1


def _scope(scope: Sequence[str] | None, column: str = "customer") -> tuple[str, list[Any]]:
    if scope is None:
        return "1", []
    if not scope:
        return "0", []
    return f"{column} IN ({', '.join('?' for _ in scope)})", list(scope)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def where(f: Filters) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (over table ``versions``) and its parameters."""
    scope_sql, args = _scope(f.scope)
    parts = ["latest = 1", scope_sql]
    if f.name:
        parts.append("customer LIKE ? ESCAPE '\\'")
        args.append(_like(f.name))
    if f.status:
        parts.append("status = ?" if f.status in ("open", "finalized", "retained")
                     else "completion_status = ?")
        args.append(f.status)
    if f.provider:
        parts.append("lower(provider) = lower(?)")
        args.append(f.provider)
    if f.service:
        parts.append("EXISTS (SELECT 1 FROM services s WHERE s.customer = versions.customer"
                     " AND s.version = versions.version AND lower(s.service) = lower(?))")
        args.append(f.service)
    for op, when in ((">=", f.since), ("<=", f.until)):
        if when is not None:
            parts.append(f"updated {op} ?")
            args.append(iso(when))
    return " AND ".join(parts), args


def count(cx: sqlite3.Connection, f: Filters) -> int:
    sql, args = where(f)
    return int(cx.execute(f"SELECT count(*) FROM versions WHERE {sql}", args).fetchone()[0])


def page(cx: sqlite3.Connection, f: Filters, sort: str = "updated", descending: bool = True,
         limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Rows ``offset`` .. ``offset + limit`` of the sessions matching ``f``."""
    columns = sort_columns(sort)
    sql, args = where(f)
    direction = "DESC" if descending else "ASC"
    order = [f"{c} IS NULL, {c} {direction}" for c in columns]
    order += ["customer", "major", "minor", "patch"]
    rows = cx.execute(f"SELECT {SELECT} FROM versions WHERE {sql} ORDER BY {', '.join(order)}"
                      f" LIMIT ? OFFSET ?", [*args, max(int(limit), 0), max(int(offset), 0)])
    return [public(r) for r in rows]


def facets(cx: sqlite3.Connection, scope: Sequence[str] | None) -> dict[str, list[str]]:
    """The statuses, completion statuses, providers and services present (newest
    versions), most frequent first, at most :data:`FACET_LIMIT` of each."""
    sql, args = _scope(scope)

    def values(column: str, table: str = "versions", extra: str = "latest = 1") -> list[str]:
        return [v for (v,) in cx.execute(
            f"SELECT {column} FROM {table} WHERE {extra} AND {sql} AND {column} IS NOT NULL "
            f"GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT ?",
            [*args, FACET_LIMIT])]

    service_where = ("EXISTS (SELECT 1 FROM versions v WHERE v.customer = services.customer "
                     "AND v.version = services.version AND v.latest = 1)")
    return {"status": values("status"), "completion_status": values("completion_status"),
            "provider": values("provider"),
            "service": values("service", "services", service_where)}


def stats(cx: sqlite3.Connection, scope: Sequence[str] | None) -> dict[str, Any]:
    """As :func:`gitstore.catalog.queries.stats`, over the customers in ``scope``,
    breakdowns largest first (for charts)."""
    sql, args = _scope(scope)
    return queries.stats(cx, sql, args, largest_first=True)


def distributions(cx: sqlite3.Connection, scope: Sequence[str] | None) -> dict[str, Any]:
    """What the charts draw (newest versions): sessions started per day
    (``[(YYYY-MM-DD, n)]``, oldest first, by created time or else last activity) and
    :data:`BINS`-bin histograms of completeness (0..100) and satisfaction (0..1), each
    with the number of sessions that have no value."""
    sql, args = _scope(scope)
    per_day = [(d, n) for d, n in cx.execute(
        "SELECT substr(coalesce(created, updated), 1, 10), count(*) FROM versions "
        f"WHERE latest = 1 AND {sql} GROUP BY 1 ORDER BY 1", args)]

    def histogram(expr: str) -> tuple[list[int], int]:
        bins = [0] * BINS
        missing = 0
        for b, n in cx.execute(f"SELECT {expr}, count(*) FROM versions WHERE latest = 1 "
                               f"AND {sql} GROUP BY 1", args):
            if b is None:
                missing += n
            else:
                bins[min(max(int(b), 0), BINS - 1)] += n
        return bins, missing

    completeness = histogram(f"CAST(completeness AS INTEGER) * {BINS} / 100")
    satisfaction = histogram(f"CAST(satisfaction * {BINS} AS INTEGER)")
    return {"per_day": per_day,
            "completeness": completeness[0], "completeness_missing": completeness[1],
            "satisfaction": satisfaction[0], "satisfaction_missing": satisfaction[1]}


def counted(cx: sqlite3.Connection, scope: Sequence[str] | None) -> list[str]:
    sql, args = _scope(scope)
    return [c for (c,) in cx.execute(f"SELECT DISTINCT customer FROM versions WHERE "
                                     f"latest = 1 AND {sql} ORDER BY customer", args)]


class Browser:
    """Paged, scoped questions to the catalog ``index`` (see the module docstring).

    Shared by every request of a viewer process: it keeps one freshness clock, and
    the index keeps one SQLite connection per thread."""

    def __init__(self, index: Index, *, max_age: float = 0.0) -> None:
        self.index = index
        self.db = index.db
        self.max_age = max_age
        self.checked: float | None = None  # time.time() of the last refresh
        self._lock = threading.Lock()
        self._seen_moves = 0
        self._mono = -math.inf

    def fresh(self) -> None:
        """Make sure the index is no more than ``max_age`` seconds behind git.

        With ``max_age`` 0, before the first answer, and after a damaged file was
        set aside, the refresh runs here and now. Otherwise an answer older than
        ``max_age`` is served as it is (the viewer shows :attr:`checked`) while one
        background thread brings the index up to date, so a page never waits for the
        freshness check of a big store."""
        moves = len(self.db.moved_aside)
        inline = self.max_age <= 0 or self.checked is None or moves != self._seen_moves \
            or not self.index.path.exists()
        if inline:
            with self._lock:
                self._refresh()
            return
        if time.monotonic() - self._mono < self.max_age or not self._lock.acquire(False):
            return  # fresh enough, or a refresh is under way
        threading.Thread(target=self._background, name="gitstore-index-refresh",
                         daemon=True).start()

    def _refresh(self) -> None:
        self.index.refresh()
        self._mono, self.checked = time.monotonic(), time.time()
        self._seen_moves = len(self.db.moved_aside)

    def _background(self) -> None:
        """Refresh holding the lock the caller took; never raises (the next inline
        refresh reports what is wrong)."""
        try:
            self._refresh()
        except Exception:  # a failed background refresh is retried max_age later
            self._mono = time.monotonic()
        finally:
            self.index.close()
            self._lock.release()

    @staticmethod
    def _audit(viewer: StoreView, op: str, rows: list[dict[str, Any]], what: str) -> None:
        shown = {row["customer"] for row in rows}
        if shown:
            viewer.record_answer(op, shown, f"{len(rows)} {what} of {len(shown)} "
                                 "customer(s) shown in the web viewer")

    @guarded
    def sessions(self, viewer: StoreView, f: Filters, *, sort: str = "updated",
                 descending: bool = True, limit: int = 50, offset: int = 0) -> Page:
        """One page of sessions; its ``list`` answer recorded once."""
        sort_columns(sort)
        self.fresh()
        cx = self.index.cx
        total = count(cx, f)
        rows = page(cx, f, sort, descending, limit, offset)
        self._audit(viewer, "list", rows, "session(s)")
        return Page(rows, total, offset, limit)

    @guarded
    def facets(self, scope: Sequence[str] | None) -> dict[str, list[str]]:
        """The values to filter by (no session data: not audited)."""
        self.fresh()
        return facets(self.index.cx, scope)

    @guarded
    def overview(self, viewer: StoreView, scope: Sequence[str] | None) -> dict[str, Any]:
        """Totals, breakdowns and distributions; the ``stats`` answer recorded once,
        naming each customer counted (as ``gitstore stats`` does)."""
        self.fresh()
        cx = self.index.cx
        result = {**stats(cx, scope), **distributions(cx, scope)}
        names = counted(cx, scope)
        if names:
            viewer.record_answer("stats", names, f"{len(names)} customer(s) counted in the "
                                 "web viewer's statistics")
        return result

    @guarded
    def search(self, viewer: StoreView, query: str, scope: Sequence[str] | None,
               limit: int = 50) -> list[dict[str, Any]]:
        """Turns matching the FTS5 ``query`` (from ``fts_query``), best first, only in
        ``scope``; the ``search`` answer recorded once, naming each customer with a
        hit shown."""
        self.fresh()
        if not query:
            return []
        sql, args = _scope(scope, "t.customer")
        rows = self.index.cx.execute(
            "SELECT t.customer, t.scenario, t.turn_id, t.timestamp, "
            "coalesce((SELECT v.version FROM versions v WHERE v.customer = t.customer AND "
            "v.scenario = t.scenario AND v.turns >= t.turn_id ORDER BY v.major, v.minor, "
            "v.patch LIMIT 1), s.version) AS version, "
            "snippet(turns_fts, -1, '[', ']', '...', 16) AS snippet "
            "FROM turns_fts JOIN turns t ON t.id = turns_fts.rowid "
            "LEFT JOIN scenarios s ON s.customer = t.customer AND s.scenario = t.scenario "
            f"WHERE turns_fts MATCH ? AND {sql} ORDER BY bm25(turns_fts), t.customer, "
            "t.scenario, t.turn_id LIMIT ?", [query, *args, max(int(limit), 0)]).fetchall()
        found = [public(r) for r in rows]
        self._audit(viewer, "search", found, "matching turn(s)")
        return found

    @guarded
    def customers(self, scope: Sequence[str] | None, limit: int, offset: int
                  ) -> tuple[list[str], int]:
        """One page of the indexed customer names (sorted) and how many there are."""
        self.fresh()
        sql, args = _scope(scope)
        cx = self.index.cx
        total = cx.execute(f"SELECT count(DISTINCT customer) FROM versions WHERE {sql}",
                           args).fetchone()[0]
        names = [c for (c,) in cx.execute(
            f"SELECT DISTINCT customer FROM versions WHERE {sql} ORDER BY customer "
            "LIMIT ? OFFSET ?", [*args, max(int(limit), 0), max(int(offset), 0)])]
        return names, int(total)

