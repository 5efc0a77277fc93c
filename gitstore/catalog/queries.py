"""The questions the index answers, as read-only SQL over one connection.

Invariants: nothing here writes or refreshes (the caller brings the index up to date
first); every result row names its customer; user input reaches SQL only as bound
parameters (sort keys are checked against :data:`SORT_FIELDS`, full-text queries go
through :func:`~gitstore.catalog.rows.fts_query`); orders are total (ties broken by
customer and version), so equal indexes answer equally.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.catalog.db import SELECT
from gitstore.catalog.rows import COLUMNS, iso
from gitstore.core.names import COMPLETION_STATUSES
from gitstore.core.time import parse_rfc3339
from gitstore.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    import sqlite3

__all__ = ["NOT_NULL", "PUBLIC_FIELDS", "SORT_FIELDS", "active", "counted_customers",
           "fields_of", "find_session", "list_sessions", "public", "public_rows", "search",
           "session_columns", "session_owners", "similar", "sort_columns", "stats"]

#: The fields of a session row as callers see it (``public``).
PUBLIC_FIELDS = frozenset(COLUMNS) - {"major", "minor", "patch"}
#: The columns of ``versions`` declared NOT NULL that a sort may use.
NOT_NULL = frozenset({"customer", "updated", "status", "turns", "major", "minor", "patch"})
#: ``list_sessions`` sort keys and the columns they order by.
SORT_FIELDS: dict[str, tuple[str, ...]] = {
    "updated": ("updated",), "created": ("created",), "completed": ("completed",),
    "customer": ("customer",), "version": ("major", "minor", "patch"),
    "status": ("status",), "provider": ("provider",), "completeness": ("completeness",),
    "satisfaction": ("satisfaction",), "success": ("success",),
    "confidence": ("confidence",), "turns": ("turns",),
}


def public(row: sqlite3.Row) -> dict[str, Any]:
    """A result row as callers see it: no version parts, ``services`` a list, ``latest`` a bool."""
    out = {k: row[k] for k in row.keys() if k not in ("major", "minor", "patch")}  # noqa: SIM118
    if "services" in out:
        out["services"] = json.loads(out["services"])
    if "latest" in out:
        out["latest"] = bool(out["latest"])
    return out


def sort_columns(sort: str) -> tuple[str, ...]:
    """The columns ``sort`` orders by; a UsageError for an unknown key."""
    if sort not in SORT_FIELDS:
        raise UsageError(f"cannot sort by {sort!r}; choose one of "
                         f"{', '.join(sorted(SORT_FIELDS))}")
    return SORT_FIELDS[sort]


def fields_of(fields: Collection[str] | None) -> str:
    """The ``SELECT`` list of a session row with only ``fields`` (and always the
    customer; None: every field); a UsageError names a field a session row lacks."""
    if fields is None:
        return SELECT
    unknown = sorted(set(fields) - PUBLIC_FIELDS)
    if unknown:
        raise UsageError(f"a session has no field {unknown[0]!r}; choose among "
                         f"{', '.join(sorted(PUBLIC_FIELDS))}")
    return ", ".join(c for c in COLUMNS if c == "customer" or c in fields)


def list_sessions(cx: sqlite3.Connection, customer: str | None = None,
                  status: str | None = None, provider: str | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  sort: str = "updated", descending: bool = True, limit: int | None = None, *,
                  service: str | None = None, all_versions: bool = False,
                  fields: Collection[str] | None = None) -> list[dict[str, Any]]:
    """See ``Index.list_sessions``; ``customer`` is a known customer's name."""
    return public_rows(cx.execute(*_sessions_query(
        customer, status, provider, since, until, sort, descending, limit, service,
        all_versions, fields)))


def session_columns(cx: sqlite3.Connection, customer: str | None = None,
                    status: str | None = None, provider: str | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    sort: str = "updated", descending: bool = True,
                    limit: int | None = None, *, service: str | None = None,
                    all_versions: bool = False, fields: Collection[str] | None = None
                    ) -> dict[str, tuple[Any, ...]]:
    """:func:`list_sessions` column by column: each field (``customer`` first) to
    its values in row order, as the index holds them (``services`` as JSON text,
    ``latest`` as 0/1). Builds no object per row: what prints a table of 10,000
    sessions reads this."""
    cursor = cx.execute(*_sessions_query(customer, status, provider, since, until, sort,
                                         descending, limit, service, all_versions, fields))
    cursor.row_factory = None
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {n: v for n, v in zip(names, values, strict=True)
            if n not in ("major", "minor", "patch")}


STATUSES = ("open", "finalized", "retained", *COMPLETION_STATUSES)
"""What a listing's ``status`` may be: a version's state in the index (``retained``:
purged, analytics summary kept) or a ``completion_status``."""


def check_status(status: str | None) -> None:
    """Refuse (UsageError) a status no session can have: a typo is not "no sessions"."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")


def _sessions_query(customer: str | None, status: str | None, provider: str | None,
                    since: datetime | None, until: datetime | None, sort: str,
                    descending: bool, limit: int | None, service: str | None,
                    all_versions: bool, fields: Collection[str] | None
                    ) -> tuple[str, list[Any]]:
    """The SQL and arguments of :func:`list_sessions`."""
    columns = sort_columns(sort)
    select = fields_of(fields)
    where: list[str] = ["1" if all_versions else "latest = 1"]
    args: list[Any] = []
    if customer is not None:
        where.append("customer = ?")
        args.append(customer)
    if status is not None:
        where.append("status = ?" if status in ("open", "finalized", "retained")
                     else "completion_status = ?")
        args.append(status)
    if provider is not None:
        where.append("lower(provider) = lower(?)")
        args.append(provider)
    if service is not None:
        where.append("EXISTS (SELECT 1 FROM services s WHERE s.customer = versions.customer"
                     " AND s.version = versions.version AND lower(s.service) = lower(?))")
        args.append(service)
    for op, when in ((">=", since), ("<=", until)):
        if when is not None:
            where.append(f"updated {op} ?")
            args.append(iso(when))
    direction = "DESC" if descending else "ASC"
    order = [f"{c} {direction}" if c in NOT_NULL else f"{c} IS NULL, {c} {direction}"
             for c in columns]  # nulls last (a NOT NULL column has none: its index serves)
    order += ["customer", "major", "minor", "patch"]
    sql = (f"SELECT {select} FROM versions WHERE {' AND '.join(where)} "
           f"ORDER BY {', '.join(order)}")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, args


def public_rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """:func:`public` of every row of ``cursor``, the column names looked up once and
    the rows read as plain tuples (an answer of 10,000 sessions builds no row objects
    it does not return)."""
    cursor.row_factory = None
    names = [d[0] for d in cursor.description]
    keep = [i for i, n in enumerate(names) if n not in ("major", "minor", "patch")]
    kept = [names[i] for i in keep]
    pick = operator.itemgetter(*keep)
    services = kept.index("services") if "services" in kept else None
    latest = kept.index("latest") if "latest" in kept else None
    parsed: dict[str, list[Any]] = {}  # many sessions name the same services
    out = []
    for row in cursor:
        values = pick(row) if len(keep) > 1 else (row[keep[0]],)
        item = dict(zip(kept, values, strict=True))
        if services is not None:
            text = values[services]
            found = parsed.get(text)
            if found is None:
                found = parsed[text] = json.loads(text)
            item["services"] = list(found)  # each row its own list
        if latest is not None:
            item["latest"] = bool(values[latest])
        out.append(item)
    return out


def stats(cx: sqlite3.Connection, where: str = "1", args: Sequence[Any] = (), *,
          largest_first: bool = False) -> dict[str, Any]:
    """Totals, averages and breakdowns over the sessions (newest versions) whose
    rows pass ``where`` (an SQL condition over ``versions`` with ``args``); the
    breakdowns by name, or by count with ``largest_first``."""
    one = cx.execute(
        "SELECT count(DISTINCT customer), count(*), coalesce(sum(turns), 0), "
        "avg(completeness), avg(satisfaction), avg(success), avg(confidence) "
        f"FROM versions WHERE latest = 1 AND {where}", args).fetchone()
    counts = cx.execute("SELECT count(*), coalesce(sum(status = 'finalized'), 0) "
                        f"FROM versions WHERE {where}", args).fetchone()
    order = "2 DESC, 1" if largest_first else "1"

    def by(column: str) -> dict[str, int]:
        return {k: n for k, n in cx.execute(
            f"SELECT coalesce({column}, 'unknown'), count(*) FROM versions WHERE "
            f"latest = 1 AND {where} GROUP BY 1 ORDER BY {order}", args)}

    def avg(x: Any) -> float | None:
        return round(x, 3) if x is not None else None

    return {"customers": one[0], "sessions": one[1], "turns": one[2],
            "versions": counts[0], "finalized_versions": counts[1],
            "average_completeness": avg(one[3]), "average_satisfaction": avg(one[4]),
            "average_success_score": avg(one[5]), "average_confidence": avg(one[6]),
            "by_status": by("status"), "by_completion_status": by("completion_status"),
            "by_provider": by("provider")}


def counted_customers(cx: sqlite3.Connection) -> list[str]:
    """The customers whose sessions :func:`stats` counts, sorted."""
    return [c for (c,) in cx.execute("SELECT DISTINCT customer FROM versions WHERE "
                                     "latest = 1 ORDER BY customer")]


def search(cx: sqlite3.Connection, query: str, limit: int = 20) -> list[dict[str, Any]]:
    """Turns matching the FTS5 ``query`` (from ``fts_query``; not empty), best first;
    each names the first version that contains the turn."""
    rows = cx.execute(
        "SELECT t.customer, t.scenario, t.turn_id, t.timestamp, "
        "coalesce((SELECT v.version FROM versions v WHERE v.customer = t.customer AND "
        "v.scenario = t.scenario AND v.turns >= t.turn_id ORDER BY v.major, v.minor, "
        "v.patch LIMIT 1), s.version) AS version, "
        "snippet(turns_fts, -1, '[', ']', '...', 16) AS snippet, "
        "round(bm25(turns_fts), 4) AS score "
        "FROM turns_fts JOIN turns t ON t.id = turns_fts.rowid "
        "LEFT JOIN scenarios s ON s.customer = t.customer AND s.scenario = t.scenario "
        "WHERE turns_fts MATCH ? ORDER BY bm25(turns_fts), t.customer, t.scenario, "
        "t.turn_id LIMIT ?", (query, max(int(limit), 0))).fetchall()
    return [public(r) for r in rows]


def similar(cx: sqlite3.Connection, customer: str, key: str, where: str,
            limit: int = 10) -> list[dict[str, Any]]:
    """Other sessions sharing the pattern hash or complexity profile of the version of
    ``customer`` selected by ``where`` (``version = ?`` or ``scenario = ? AND latest =
    1``, bound to ``key``); both matching ranks above one."""
    me = cx.execute(f"SELECT scenario, pattern_hash, complexity_profile FROM versions "
                    f"WHERE customer = ? AND {where}", (customer, key)).fetchone()
    if me is None:
        raise NotFoundError(f"the index has no {key} of customer {customer}")
    rows = cx.execute(
        f"SELECT * FROM (SELECT {SELECT}, (pattern_hash IS NOT NULL AND pattern_hash = ?)"
        " + (complexity_profile IS NOT NULL AND complexity_profile = ?) AS score FROM "
        "versions WHERE latest = 1 AND NOT (customer = ? AND scenario = ?)) WHERE score > 0"
        " ORDER BY score DESC, updated DESC, customer, major LIMIT ?",
        (me["pattern_hash"], me["complexity_profile"], customer, me["scenario"],
         max(int(limit), 0))).fetchall()
    return [{**public(r), "matched": [k for k in ("pattern_hash", "complexity_profile")
                                      if r[k] is not None and r[k] == me[k]]}
            for r in rows]


def active(cx: sqlite3.Connection, moment: datetime, span: timedelta) -> list[dict[str, Any]]:
    """Open sessions whose last commit lies within ``span`` before ``moment``, with
    ``idle_seconds`` since it; a naive ``moment`` is taken as UTC."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    rows = cx.execute(
        f"SELECT {SELECT} FROM versions WHERE latest = 1 AND status = 'open' AND "
        "updated >= ? ORDER BY updated DESC, customer, major", (iso(moment - span),))
    return [{**public(r), "idle_seconds": max(int(
        (moment - parse_rfc3339(r["updated"], what="indexed time")).total_seconds()), 0)}
        for r in rows]


def session_owners(cx: sqlite3.Connection, session_id: str) -> list[tuple[str, str]]:
    """Every ``(customer, scenario)`` whose session id is ``session_id``, sorted."""
    return [(r[0], r[1]) for r in cx.execute(
        "SELECT customer, scenario FROM scenarios WHERE session_id = ? ORDER BY 1, 2",
        (session_id,))]


def find_session(cx: sqlite3.Connection, session_id: str, customer: str | None,
                 root: Path, scenario: str | None = None) -> tuple[str, str]:
    """``(customer, scenario)`` of the session ``session_id`` (in ``customer`` and
    ``scenario`` if given); NotFoundError if none, UsageError if several match.

    Isolation: a message names only the customer the caller gave; without one, it
    names no customer and no scenario (session ids are unique per store, so several
    matches come only from a store written before that rule or behind its back)."""
    rows = [(c, s) for c, s in session_owners(cx, session_id)
            if (customer is None or c == customer) and (scenario is None or s == scenario)]
    if not rows:
        where = f"customer {customer}" if customer is not None else str(root)
        if scenario is not None:
            where = f"scenario {scenario} of {where}" if customer is not None else \
                f"any scenario {scenario} in {root}"
        raise NotFoundError(f"no session {session_id!r} in {where}")
    if len(rows) > 1:
        if customer is not None:
            raise UsageError(
                f"session {session_id!r} is in {len(rows)} scenarios of {customer} "
                f"({', '.join(s for _, s in rows)}); name the scenario (--scenario)")
        raise UsageError(f"session {session_id!r} is in {len(rows)} scenarios of this store; "
                         "name the customer (--customer) and the scenario (--scenario)")
    return rows[0]
