"""A derived SQLite index of the store, for questions across customers: the facade.

Git is the single source of truth; ``<root>/.gitstore/index.sqlite`` is a cache
rebuildable from git alone (:meth:`Index.rebuild`): one metadata row per version
(each finalized tag plus each scenario's open tip) and a full-text index of the
conversation turns. Every query result names its customer.

Staleness: every query first calls :meth:`Index.refresh`, which re-indexes only the
scenarios whose branch or tags moved since they were indexed, so even a plain ``git
push`` is seen by the next query (:mod:`gitstore.catalog.sync`). It looks only at the
customers that may have changed (:mod:`gitstore.catalog.freshness`): those named in
the store's change journal (:mod:`gitstore.catalog.journal`) since it last read it,
those whose writes nothing reports (no journal hook), and new or removed ones; so a
warm query over many customers costs what changed, not how many there are. The
write path calls :meth:`Index.changed` and :meth:`Index.record` with the files it
just committed. An index file that SQLite
cannot read, that fails ``quick_check`` or has another schema version is moved aside
(never deleted) and rebuilt (:mod:`gitstore.catalog.db`); a query that meets a damaged
file mid-way runs once more on a fresh one.

Audit: every query that returns session data records its answer once, naming every
customer whose data it returned (``StoreView.record_answer``: one record in the
store's answer log, however many customers): ``list``, ``stats``, ``search``,
``similar`` and ``active``, with what was asked and shown in ``detail``. ``stats``
answers with every indexed customer's data in its totals, so it names each of them;
``similar`` also appends a record to the log of the customer it was asked about. No
query costs a record (or any other work) per customer beyond reading its rows.

The parts: :mod:`~gitstore.catalog.rows` (what a row holds, pure),
:mod:`~gitstore.catalog.db` (the file), :mod:`~gitstore.catalog.sync` (keeping it equal
to git), :mod:`~gitstore.catalog.freshness` and :mod:`~gitstore.catalog.journal` (what
may have changed), :mod:`~gitstore.catalog.queries` (the questions). The store is seen only
through :class:`~gitstore.catalog.view.StoreView`.

The active-session window is a duration in the one grammar of
:func:`gitstore.core.time.parse_duration` (``30m``, ``2h``, ``7d``, ...), or a number of
seconds where the value is not text (a JSON number in the config): from the
``active_timeout`` argument, else ``$GITSTORE_ACTIVE_TIMEOUT``, else the config's
``active_timeout``, else :data:`DEFAULT_ACTIVE_TIMEOUT`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.catalog import journal, queries
from gitstore.catalog.db import INDEX_FILE, Database, guarded
from gitstore.catalog.queries import SORT_FIELDS
from gitstore.catalog.rows import fts_query, iso, satisfaction, version_row
from gitstore.catalog.sync import Progress, Sync
from gitstore.catalog.view import CustomerView, StoreView
from gitstore.core.names import STORE_DIR
from gitstore.core.time import parse_duration
from gitstore.core.versions import Scenario, Version
from gitstore.errors import NotFoundError, StorageError, UsageError

if TYPE_CHECKING:
    import sqlite3

    from gitstore.git.repo import Repo

__all__ = ["DEFAULT_ACTIVE_TIMEOUT", "SORT_FIELDS", "CustomerView", "Index", "Progress",
           "StoreView", "fts_query", "satisfaction", "version_row"]

DEFAULT_ACTIVE_TIMEOUT = timedelta(hours=2)
ENV_ACTIVE_TIMEOUT = "GITSTORE_ACTIVE_TIMEOUT"


def _span(value: str | int | float | timedelta, what: str) -> timedelta:
    """A duration: text in the one grammar, a number of seconds, or a timedelta."""
    span = parse_duration(value, what=what)
    if span is None:  # pragma: no cover - parse_duration gives None only with allow_indefinite
        raise AssertionError(f"{what}: no duration")
    return span


def _scenario_name(value: str | Scenario) -> str:
    """``"v2"`` from a Scenario, ``"v2"``, ``2`` or a version of it (``"v2.1.0"``)."""
    if isinstance(value, Scenario):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(Scenario(value))
    if isinstance(value, str):
        return str(Version.parse(value).scenario if Version.is_version(value)
                   else Scenario.parse(value))
    raise UsageError(f"a scenario is a name like 'v2', not {type(value).__name__}")


def _configured_timeout(store: StoreView) -> timedelta:
    env = os.environ.get(ENV_ACTIVE_TIMEOUT)
    if env:
        return _span(env, f"${ENV_ACTIVE_TIMEOUT}")
    value = store.config.active_timeout
    if value is None or value == "":
        return DEFAULT_ACTIVE_TIMEOUT
    return _span(value, "active_timeout")


class Index:
    """The SQLite index of ``store`` (default file ``<root>/.gitstore/index.sqlite``);
    ``full_scan_seconds``: the longest a query goes without looking at every customer.

    Safe to share between threads (one connection per thread) and processes
    (WAL; writers serialise on SQLite's lock). ``moved_aside`` lists index files
    found unusable and set aside; ``problems`` names customers that could not
    be read (they are left out of answers until they can)."""

    def __init__(self, store: StoreView, path: str | Path | None = None, *,
                 active_timeout: str | timedelta | None = None,
                 full_scan_seconds: float | None = None) -> None:
        self.store = store
        self.path = Path(path) if path is not None else store.root / STORE_DIR / INDEX_FILE
        self.active_timeout = _span(active_timeout, "active timeout") \
            if active_timeout is not None else _configured_timeout(store)
        self.db = Database(self.path)
        self._sync = Sync(store, self.db)
        if full_scan_seconds is not None:  # default: freshness.FULL_SCAN_SECONDS
            self._sync.full_scan_seconds = full_scan_seconds

    @property
    def moved_aside(self) -> list[Path]:
        return self.db.moved_aside

    @property
    def problems(self) -> list[str]:
        return self.db.problems

    @property
    def cx(self) -> sqlite3.Connection:
        """This thread's connection to the index file."""
        return self.db.cx

    def close(self) -> None:
        """Close this thread's connection (it reopens on next use)."""
        self.db.close()

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row in a canonical order (no row ids): equal indexes dump equal."""
        return self.db.dump()

    # -- keeping it current ------------------------------------------------------
    @guarded
    def refresh(self, customers: list[str] | None = None,
                progress: Progress | None = None) -> int:
        """Bring the index up to date with git; returns how many customers changed.

        Looks at the customers that may have changed (all of them in a periodic full
        scan); one whose ref files have not changed since its refs were last
        compared costs a few ``stat`` calls, otherwise one refs() read.
        ``customers`` limits the work to those (their removal is noticed too)."""
        return self._sync.refresh(customers, progress)

    @guarded
    def rebuild(self, progress: Progress | None = None, *, processes: int | None = None
                ) -> int:
        """Re-index everything from git in one transaction; returns the customer count.
        ``processes``: how many worker processes read the repositories (default: one
        per CPU, at most 4, for a store of many customers). StorageError on a store
        this process cannot write (queries there work on a private copy of the index,
        which a rebuild would leave the store without)."""
        if not self.db.in_place():
            raise StorageError(f"the store {self.store.root} is read-only: its index cannot "
                               "be rebuilt (queries bring a private copy up to date)")
        return self._sync.rebuild(progress, processes=processes)

    def changed(self, customer_name: str) -> None:
        """Say that the refs of ``customer_name`` (a repository name) just moved: one
        line in the store's change journal, for every process's next query. Call it
        after the ref update, from anything that changes refs (the writer does).
        Raises :class:`~gitstore.errors.StorageError` when it cannot (the next full
        scan catches up)."""
        journal.note(self.store.root, customer_name)

    def record(self, customer_name: str, scenario: str | Scenario, tip_commit: str,
               files: Mapping[str, bytes], parsed: Mapping[str, Any] | None = None,
               unchanged_turns: int = 0, repo: Repo | None = None,
               since: str | None = None) -> bool:
        """The writer's fast path: index the commit a write just made, from its files
        (and through ``repo``, the writer's own handle of the repository, if given:
        never one that opens sealed files, or the rows of another commit it reads
        would hold their clear text). ``since`` is the tip the write built on when
        it made several commits (default: the new tip's parent).

        Call after the branch (and tag) update, under the customer's writer lock.
        One transaction: the scenario's tip row (and its new tag's row), only the
        new turns into the full-text index, and the refs it saw. ``parsed`` hands
        over documents already parsed; ``unchanged_turns`` says how many leading
        turns the write left as its parent had them (trusted only when the index
        holds that parent as the scenario's tip). Never raises for index trouble:
        returns False, and the next :meth:`refresh` catches up."""
        return self._sync.record(customer_name, scenario, tip_commit, files, parsed,
                                 unchanged_turns, repo, since)

    def _known(self, customer: str | CustomerView) -> str:
        """The repository name of ``customer``: an api_key as a caller names it, or
        a customer object the store handed out (e.g. one found by repository name)."""
        cust = self.store.customer(customer) if isinstance(customer, str) else customer
        if not cust.exists:
            raise NotFoundError(f"unknown customer {cust.name!r} in {self.store.root}")
        return cust.name

    # -- queries -----------------------------------------------------------------
    @guarded
    def list_sessions(self, customer: str | CustomerView | None = None,
                      status: str | None = None,
                      provider: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, sort: str = "updated",
                      descending: bool = True, limit: int | None = None, *,
                      service: str | None = None, all_versions: bool = False,
                      fields: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Sessions (each scenario's newest version; every version with
        ``all_versions``) filtered and sorted. ``status`` is ``open``/``finalized``/
        ``retained`` (purged, analytics summary kept) or a ``completion_status``;
        ``since``/``until`` bound the last activity. ``fields``: only these fields of
        each session (and its ``customer``), e.g. what a table shows; default all."""
        name, asked = self._listing(customer, status, provider, since, until, sort,
                                    descending, limit, service, all_versions, fields)
        rows = queries.list_sessions(self.cx, name, status, provider, since, until, sort,
                                     descending, limit, service=service,
                                     all_versions=all_versions, fields=fields)
        self._record("list", [r["customer"] for r in rows], "session(s)", asked)
        return rows

    @guarded
    def list_columns(self, customer: str | CustomerView | None = None,
                     status: str | None = None,
                     provider: str | None = None, since: datetime | None = None,
                     until: datetime | None = None, sort: str = "updated",
                     descending: bool = True, limit: int | None = None, *,
                     service: str | None = None, all_versions: bool = False,
                     fields: Collection[str] | None = None) -> dict[str, tuple[Any, ...]]:
        """:meth:`list_sessions` column by column, each field (``customer`` first) to
        its values in order, as stored (:func:`gitstore.catalog.queries.session_columns`:
        no object per session); refreshed, checked and recorded alike."""
        name, asked = self._listing(customer, status, provider, since, until, sort,
                                    descending, limit, service, all_versions, fields)
        columns = queries.session_columns(self.cx, name, status, provider, since, until,
                                          sort, descending, limit, service=service,
                                          all_versions=all_versions, fields=fields)
        self._record("list", columns["customer"], "session(s)", asked)
        return columns

    def _listing(self, customer: str | CustomerView | None, status: str | None,
                 provider: str | None, since: datetime | None, until: datetime | None,
                 sort: str, descending: bool, limit: int | None, service: str | None,
                 all_versions: bool, fields: Collection[str] | None) -> tuple[str | None, str]:
        """Check a listing's arguments (before any work), refresh what it reads;
        return the customer's name (None: every customer) and the question asked,
        for the record."""
        queries.sort_columns(sort)  # refuses an unknown sort key before any work
        queries.fields_of(fields)  # and an unknown field
        queries.check_status(status)  # and a status no session can have
        name = self._known(customer) if customer is not None else None
        self.refresh([name] if name else None)
        asked = [f"{k}={v}" for k, v in (("customer", name), ("status", status),
                                         ("provider", provider), ("service", service),
                                         ("since", since and iso(since)),
                                         ("until", until and iso(until)), ("limit", limit))
                 if v is not None]
        asked.append(f"sort={sort} {'desc' if descending else 'asc'}")
        versions = "every version" if all_versions else "newest versions"
        return name, f"{versions}; {', '.join(asked)}"

    @guarded
    def stats(self) -> dict[str, Any]:
        """Totals, averages and breakdowns over the sessions (newest versions).
        The answer is recorded once, naming every customer counted."""
        self.refresh()
        result = queries.stats(self.cx)
        counted = queries.counted_customers(self.cx)
        if counted:
            self.store.record_answer("stats", counted, f"{len(counted)} customer(s) counted "
                                     f"in store-wide totals ({result['sessions']} session(s))")
        return result

    def _answered(self, op: str, rows: list[dict[str, Any]], what: str,
                  asked: str | None = None) -> None:
        """Record an answer of ``rows`` once, naming each customer with rows in it
        (nothing when it has none); ``asked``: the question, for the record."""
        self._record(op, [row["customer"] for row in rows], what, asked)

    def _record(self, op: str, customers: Sequence[str], what: str,
                asked: str | None = None) -> None:
        """:meth:`_answered` of an answer whose rows are of ``customers``, in order."""
        shown = set(customers)
        if shown:
            self.store.record_answer(op, shown, f"{len(customers)} {what} of {len(shown)} "
                                     "customer(s) shown" + (f" ({asked})" if asked else ""))

    @guarded
    def search(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Turns whose query or response match every word of ``text``, best first.
        The answer is recorded once, naming each customer with a hit shown."""
        query = fts_query(text)
        self.refresh()
        if not query:
            return []
        results = queries.search(self.cx, query, limit)
        self._answered("search", results, "matching turn(s)")
        return results

    @guarded
    def similar(self, customer: str, version: str, limit: int = 10) -> list[dict[str, Any]]:
        """Other sessions with the same architecture pattern hash or complexity
        profile as ``customer`` ``version`` (a version, or ``vN`` for a scenario's
        newest); both matching ranks above one."""
        name = self._known(customer)
        self.refresh()
        if Version.is_version(version):
            key, where = str(Version.parse(version)), "version = ?"
        else:
            key, where = str(Scenario.parse(version)), "scenario = ? AND latest = 1"
        rows = queries.similar(self.cx, name, key, where, limit)
        self.store.customer_named(name).audit("similar", rev=key,
                                        detail=f"{len(rows)} similar session(s) found")
        self._answered("similar", [r for r in rows if r["customer"] != name],
                       f"session(s) similar to {name} {key}")
        return rows

    @guarded
    def active(self, timeout: str | timedelta | None = None,
               now: datetime | None = None) -> list[dict[str, Any]]:
        """Open sessions with activity (a commit) within ``timeout`` of ``now``
        (default: the index's ``active_timeout``, 2 hours unless configured)."""
        self.refresh()
        span = _span(timeout, "timeout") if timeout is not None else self.active_timeout
        rows = queries.active(self.cx, now or self.store.now(), span)
        self._answered("active", rows, "active session(s)", f"within {span}")
        return rows

    @guarded
    def find_session(self, session_id: str, customer: str | None = None,
                     scenario: str | Scenario | None = None) -> tuple[str, str]:
        """``(customer, scenario)`` of the session ``session_id``, looked for in
        ``customer`` and ``scenario`` when given (``"v2"``, a version of it, or a
        Scenario). An error names no customer the caller did not name."""
        if not isinstance(session_id, str):
            raise UsageError(f"a session id is a str, not {type(session_id).__name__}")
        name = self._known(customer) if customer is not None else None
        wanted = _scenario_name(scenario) if scenario is not None else None
        self.refresh([name] if name else None)
        return queries.find_session(self.cx, session_id, name, self.store.root, wanted)

    @guarded
    def session_owners(self, session_id: str) -> list[tuple[str, str]]:
        """Every ``(customer, scenario)`` that records ``session_id``, from an index
        brought up to date with git first (for the writer's uniqueness check: the
        answer names other customers, so it is never shown to a user)."""
        self.refresh()
        return queries.session_owners(self.cx, session_id)
