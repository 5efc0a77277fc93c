"""Keeping the index equal to git: refresh, rebuild, and the write path's record.

Invariants: after :meth:`Sync.refresh` returns, every customer it looked at has, in
table ``refs``, exactly the refs (heads and tags) its repository had when read, and
rows derived from exactly those refs; so an index kept current incrementally (by
:meth:`Sync.record` and :meth:`Sync.refresh`) dumps equal to one made by
:meth:`Sync.rebuild`. Rows of a scenario are recomputed only when its branch or one of
its tags moved. A customer git cannot read is left out of the index (its rows
dropped, one line in ``problems``) and retried by the next refresh. Each customer is
synced in its own write transaction; :meth:`Sync.rebuild` uses one for everything.

Which customers a refresh looks at is :mod:`gitstore.catalog.freshness`'s answer (the
change journal, the root, and every customer whose writes nothing reports); a
customer looked at whose ref storage is unchanged since its refs were last compared
(table ``fingerprints``) is skipped without reading its refs.

Reading and writing are separate steps with one derivation of rows:
:func:`gitstore.catalog.derive.derive` reads a scenario from git (no database),
``_apply`` writes what it read, diffing against the rows the index holds; a rebuild
inserts what :func:`~gitstore.catalog.derive.read_all` read (in worker processes when
there are many customers) by the batch, into emptied tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from gitstore.catalog import freshness, journal
from gitstore.catalog.db import SELECT, TABLES, Database
from gitstore.catalog.freshness import RACY_NS, State, fingerprint
from gitstore.catalog.rows import COLUMNS, iso, turn_digest, turn_text
from gitstore.catalog.view import StoreView
from gitstore.core import lazy
from gitstore.core.commits import CommitInfo
from gitstore.core.versions import Scenario
from gitstore.errors import GitStoreError

if TYPE_CHECKING:
    import sqlite3

    import gitstore.catalog.derive as derivation
    import gitstore.git.repo as git_repo
    from gitstore.catalog.derive import Derived, Rows
    from gitstore.git.repo import Repo
else:  # a query over a fresh index reads no repository: these load when one is read
    sqlite3 = lazy.module("sqlite3")
    derivation = lazy.module("gitstore.catalog.derive")
    git_repo = lazy.module("gitstore.git.repo")

__all__ = ["RACY_NS", "Progress", "Sync", "fingerprint"]

Progress = Callable[[int, int, str], None]  # (done, total, customer)


#: The fingerprint row of a customer whose sync failed: no fingerprint (its refs are
#: read again) and "not hooked", so every refresh names it until a sync succeeds (the
#: journal may never name it again); then its hook is looked at afresh.
RETRY = ("", False)


class Sync:
    """Brings ``db`` up to date with the repositories of ``store``."""

    #: The longest a refresh of the whole store goes without a full scan, in seconds.
    full_scan_seconds: float = freshness.FULL_SCAN_SECONDS

    def __init__(self, store: StoreView, db: Database) -> None:
        self.store = store
        self.db = db

    def _fingerprints(self, customers: Collection[str]) -> dict[str, tuple[str, bool]]:
        """The fingerprint and hook flag kept for each of ``customers`` that has one
        (only theirs are read: a warm refresh looks at few of many)."""
        if not customers:
            return {}
        rows: Any
        if len(customers) > 200:
            rows = self.db.cx.execute("SELECT customer, fp, hooked FROM fingerprints")
        else:
            rows = self.db.cx.execute(
                "SELECT customer, fp, hooked FROM fingerprints WHERE customer IN "
                f"({', '.join('?' * len(customers))})", tuple(customers))
        wanted = set(customers)
        return {c: (fp, bool(h)) for c, fp, h in rows if c in wanted}

    def _stored_refs(self, customers: Collection[str] | None = None
                     ) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        rows: Any
        if customers is None or len(customers) > 200:
            rows = self.db.cx.execute("SELECT * FROM refs")
        else:
            rows = self.db.cx.execute(
                f"SELECT * FROM refs WHERE customer IN ({', '.join('?' * len(customers))})",
                tuple(customers))
        wanted = None if customers is None else set(customers)
        for c, ref, target in rows:
            if wanted is None or c in wanted:
                out.setdefault(c, {})[ref] = target
        return out

    def _open(self, name: str) -> Repo:
        # ``name`` came from customers(), passed CustomerView.exists, or is a checked name
        return git_repo.Repo.open(self.store.root / name)

    def _read_refs(self, name: str, quiet: bool = False) -> tuple[Repo, dict[str, str]] | None:
        try:
            repo = self._open(name)
            return repo, repo.refs()
        except GitStoreError as exc:
            if not quiet:
                self.db.problems.append(f"{name}: not indexed: {exc}")
            return None

    # -- refresh -------------------------------------------------------------------
    def refresh(self, customers: list[str] | None = None,
                progress: Progress | None = None) -> int:
        """Bring the index up to date with git; returns how many customers changed.

        Looks at the customers :func:`gitstore.catalog.freshness.plan` names (all of
        them in a full scan); one whose ref storage has not changed since its refs
        were last compared costs a few ``stat`` calls (:func:`fingerprint`), any other
        one refs() read. ``customers`` limits the work to those (their removal is
        noticed too)."""
        root = self.store.root
        if customers is not None:
            names = sorted({self.store.customer_named(c).name for c in customers})
            present = [n for n in names if self.store.customer_named(n).exists]
            gone = [n for n in names if n not in present]
            return self._look(present, gone, progress)
        plan = freshness.plan(root, self.db.cx, self.store.customers,
                              full_scan_seconds=self.full_scan_seconds)
        if plan.full:
            state = freshness.full_scan_state(root)
            present = self.store.customers()
            listed = set(present)
            known = {c for (c,) in self.db.cx.execute(
                "SELECT customer FROM fingerprints UNION SELECT customer FROM refs")}
            return self._look(present, sorted(known - listed), progress, state, hooks=True)
        present, gone = [], list(plan.gone)
        for name in plan.names:  # a journal line may name one since removed
            (present if self.store.customer_named(name).exists else gone).append(name)
        return self._look(present, gone, progress, plan.state)

    def _look(self, names: list[str], gone: list[str], progress: Progress | None,
              state: State | None = None, *, hooks: bool = False) -> int:
        """Compare ``names`` with the index and sync those whose refs moved; drop
        ``gone``; then keep their fingerprints (and whether git runs the journal
        hook there: looked at again with ``hooks``) and ``state``."""
        root = self.store.root
        known = self._fingerprints(names)
        stored = self._stored_refs(names) if names else {}
        todo, fresh = [], {}
        for n in names:
            path = root / n
            fp = fingerprint(path)  # before the refs are read
            old = known.get(n)
            hooked = journal.hooked(path) if hooks or old is None or not old[0] else old[1]
            if fp is not None and old is not None and old[0] == fp:
                if hooked != old[1]:
                    fresh[n] = (fp, hooked)
                continue  # no ref file changed since its refs were last compared
            got = self._read_refs(n, quiet=True)
            if got is None or got[1] != stored.get(n, {}):
                todo.append(n)
            if got is not None:
                fresh[n] = (fp or "", hooked)
        for i, name in enumerate(todo):
            with self.db.write():
                got = self._read_refs(name)
                old_refs = self._stored_refs([name]).get(name, {})  # again, under the lock
                if got is None:
                    self._drop_customer(name)
                    fresh[name] = RETRY
                elif got[1] != old_refs and not self._sync_safely(name, old_refs, *got):
                    fresh[name] = RETRY
            if progress:
                progress(i + 1, len(todo), name)
        if gone or fresh or state is not None:
            with self.db.write() as cx:
                for name in gone:
                    self._drop_customer(name)
                cx.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?)",
                               [(n, fp, int(h)) for n, (fp, h) in sorted(fresh.items())])
                if state is not None:
                    state.save(cx)
        return len(todo) + len(gone)

    # -- rebuild -------------------------------------------------------------------
    def rebuild(self, progress: Progress | None = None, *, processes: int | None = None
                ) -> int:
        """Re-index everything from git in one transaction; returns the customer count.
        Customers are read by :func:`~gitstore.catalog.derive.read_all` (in worker
        processes when there are many) and inserted by the batch."""
        root = self.store.root
        state = freshness.full_scan_state(root)
        names = self.store.customers()
        with self.db.write() as cx:
            for table in TABLES:
                cx.execute(f"DELETE FROM {table}")
            (last,) = cx.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence "
                                 "WHERE name = 'turns'").fetchone()
            done = 0
            for batch in derivation.read_all(root, names, processes=processes):
                last = self._put_rows(batch, last)
                for got in batch:
                    done += 1
                    if progress:
                        progress(done, len(names), got.name)
            state.save(cx)
        self.db.cx.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")
        return len(names)

    def _put_rows(self, batch: list[Rows], last_id: int) -> int:
        """Insert the rows of ``batch`` (each customer's turns numbered after
        ``last_id``); returns the last turn row id used."""
        cx = self.db.cx
        ok = [got for got in batch if got.problem is None]
        self.db.problems.extend(p for got in batch for p in
                                ([got.problem] if got.problem else got.problems))
        turns, fts = [], []
        for got in ok:
            for scenario, turn_id, stamp, digest, query, response in got.turns:
                last_id += 1
                turns.append((last_id, got.name, scenario, turn_id, stamp, digest))
                fts.append((last_id, query, response))
        for sql, rows in (
                ("INSERT INTO refs VALUES (?, ?, ?)", [r for got in ok for r in got.refs]),
                ("INSERT INTO fingerprints VALUES (?, ?, ?)", [got.fingerprint for got in ok]),
                (f"INSERT OR REPLACE INTO versions ({SELECT}) VALUES "
                 f"({', '.join('?' * len(COLUMNS))})",
                 [r for got in ok for r in got.versions]),
                ("INSERT OR REPLACE INTO services VALUES (?, ?, ?)",
                 [r for got in ok for r in got.services]),
                ("INSERT INTO scenarios VALUES (?, ?, ?, ?, ?, ?)",
                 [r for got in ok for r in got.scenarios]),
                ("INSERT INTO turns (id, customer, scenario, turn_id, timestamp, digest) "
                 "VALUES (?, ?, ?, ?, ?, ?)", turns),
                ("INSERT INTO turns_fts (rowid, query, response) VALUES (?, ?, ?)", fts)):
            if rows:
                cx.executemany(sql, rows)
        return last_id

    def record(self, customer_name: str, scenario: str | Scenario, tip_commit: str,
               files: Mapping[str, bytes], parsed: Mapping[str, Any] | None = None,
               unchanged_turns: int = 0, repo: Repo | None = None,
               since: str | None = None) -> bool:
        """Index the commit a write just made, from its files (see ``Index.record``)."""
        try:
            cust = self.store.customer_named(customer_name)
            scen = scenario if isinstance(scenario, Scenario) else Scenario.parse(str(scenario))
            if not cust.exists:
                return False
            repo = repo or self._open(cust.name)
            tags = repo.refs(f"refs/tags/v{scen.major}.")
            info = repo.commit(tip_commit)
            known = (tip_commit, info, files)
            cx = self.db.cx
            row = cx.execute("SELECT tip FROM scenarios WHERE customer = ? AND scenario = ?",
                             (cust.name, str(scen))).fetchone()
            # the indexed turns are the parent's: its first turns are still right
            built_on = (since,) if since is not None else info.parents[:1]
            trusted = unchanged_turns if row is not None and built_on == (row[0],) else 0
            cx.execute("PRAGMA busy_timeout = 2000")  # never hold a writer up for long
            try:
                with self.db.write():
                    self._sync_scenario(repo, cust.name, scen.major, tags, tip_commit, known,
                                        parsed, trusted)
                    cx.execute("DELETE FROM refs WHERE customer = ? AND (ref = ? OR ref LIKE ?)",
                               (cust.name, scen.branch_ref, f"refs/tags/v{scen.major}.%"))
                    cx.executemany("INSERT INTO refs VALUES (?, ?, ?)", [
                        (cust.name, ref, target)
                        for ref, target in {**tags, scen.branch_ref: tip_commit}.items()])
            finally:
                cx.execute("PRAGMA busy_timeout = 30000")
            return True
        except (sqlite3.Error, GitStoreError, OSError,  # underivable rows: refresh skips
                ValueError, TypeError, ArithmeticError, RecursionError):
            return False

    def _sync_safely(self, name: str, old: dict[str, str], repo: Repo,
                     cur: dict[str, str]) -> bool:
        """A customer git cannot read, or whose rows cannot be derived, is left out,
        named in ``problems`` (one warning), retried later: one customer's bad data
        never takes the queries of the others down. False when it was left out."""
        cx = self.db.cx
        cx.execute("SAVEPOINT sync")
        try:
            self._sync_customer(name, old, repo, cur)
            ok = True
        except derivation.UNDERIVABLE as exc:
            cx.execute("ROLLBACK TO sync")
            self._drop_customer(name)
            self.db.problems.append(f"{name}: not indexed: {exc}")
            ok = False
        cx.execute("RELEASE sync")
        return ok

    def _drop_customer(self, name: str) -> None:
        cx = self.db.cx
        cx.execute("DELETE FROM turns_fts WHERE rowid IN (SELECT id FROM turns WHERE "
                   "customer = ?)", (name,))
        for table in ("turns", "refs", "fingerprints", "scenarios", "versions", "services"):
            cx.execute(f"DELETE FROM {table} WHERE customer = ?", (name,))

    def _sync_customer(self, name: str, old: dict[str, str], repo: Repo,
                       cur: dict[str, str]) -> None:
        """Re-index the scenarios of ``name`` whose branch or tags moved."""
        for major in derivation.changed_majors(old, cur):
            self._sync_scenario(repo, name, major, cur, cur.get(Scenario(major).branch_ref))
        cx = self.db.cx
        cx.execute("DELETE FROM refs WHERE customer = ?", (name,))
        cx.executemany("INSERT INTO refs VALUES (?, ?, ?)",
                       [(name, ref, target) for ref, target in sorted(cur.items())])

    def _sync_scenario(self, repo: Repo, name: str, major: int, refs: dict[str, str],
                       tip: str | None,
                       known: tuple[str, CommitInfo, Mapping[str, bytes]] | None = None,
                       parsed: Mapping[str, Any] | None = None, trusted: int = 0) -> None:
        """Make the rows of scenario ``vMAJOR`` match its tags (in ``refs``) and its
        branch ``tip``; ``known`` is a commit already in hand with its files,
        ``parsed`` some of them already parsed, and its first ``trusted`` turns
        are known to be indexed already."""
        have = dict(self.db.cx.execute("SELECT version, tag FROM versions WHERE customer = ? "
                                       "AND scenario = ?", (name, str(Scenario(major))))
                    .fetchall())
        self._apply(name, derivation.derive(repo, name, major, refs, tip, have, known, parsed),
                    have, trusted)

    def _apply(self, name: str, derived: Derived, have: Mapping[str, str | None],
               trusted: int = 0) -> None:
        """Write what :meth:`derive` read (``have``: the versions the index held)."""
        cx, scen = self.db.cx, str(Scenario(derived.major))
        self.db.problems.extend(derived.problems)
        for row in derived.rows:
            self._put_version(row)
        for failed in derived.failed:
            self._delete_version(name, failed)
        if derived.tip is not None:
            tip, version, session_id, turns = derived.tip
            cx.execute("INSERT OR REPLACE INTO scenarios VALUES (?, ?, ?, ?, ?, ?)",
                       (name, scen, tip, version, session_id, turns))
            self._sync_turns(name, scen, derived.turns, trusted)
        else:
            self._sync_turns(name, scen, [])
            cx.execute("DELETE FROM scenarios WHERE customer = ? AND scenario = ?", (name, scen))
        for stale in sorted(set(have) - derived.keep):
            self._delete_version(name, stale)
        cx.execute("UPDATE versions SET latest = (version = ?) WHERE customer = ? AND "
                   "scenario = ?", (derived.latest, name, scen))

    def _delete_version(self, name: str, version: str) -> None:
        for table in ("versions", "services"):
            self.db.cx.execute(f"DELETE FROM {table} WHERE customer = ? AND version = ?",
                               (name, version))

    def _put_version(self, row: dict[str, Any]) -> None:
        cx = self.db.cx
        cx.execute(f"INSERT OR REPLACE INTO versions ({SELECT}) VALUES "
                   f"({', '.join('?' * len(COLUMNS))})", [row[c] for c in COLUMNS])
        cx.execute("DELETE FROM services WHERE customer = ? AND version = ?",
                   (row["customer"], row["version"]))
        cx.executemany("INSERT INTO services VALUES (?, ?, ?)",
                       [(row["customer"], row["version"], s)
                        for s in json.loads(row["services"])])

    def _sync_turns(self, name: str, scenario: str, turns: list[Any], trusted: int = 0) -> None:
        """Make the indexed turns equal ``turns``: keep the unchanged prefix, re-index
        from the first turn whose indexed text differs (a renumbering or correction).
        The first ``trusted`` turns are known to be indexed as they are (a write that
        added a turn after them, indexed on top of its parent's rows)."""
        cx = self.db.cx
        trusted = min(trusted, len(turns))
        old = [d for (d,) in cx.execute("SELECT digest FROM turns WHERE customer = ? AND "
                                        "scenario = ? AND turn_id > ? ORDER BY turn_id",
                                        (name, scenario, trusted))]
        texts = [turn_text(t) for t in turns[trusted:]]
        new = [turn_digest(t) for t in texts]
        keep = 0
        while keep < min(len(old), len(new)) and old[keep] == new[keep]:
            keep += 1
        where = "customer = ? AND scenario = ? AND turn_id > ?"
        if keep < len(old):
            cx.execute(f"DELETE FROM turns_fts WHERE rowid IN (SELECT id FROM turns WHERE "
                       f"{where})", (name, scenario, trusted + keep))
            cx.execute(f"DELETE FROM turns WHERE {where}", (name, scenario, trusted + keep))
        if keep == len(new):
            return
        cx.executemany("INSERT INTO turns (customer, scenario, turn_id, timestamp, digest) "
                       "VALUES (?, ?, ?, ?, ?)",
                       [(name, scenario, trusted + pos + 1, iso(texts[pos][2]), new[pos])
                        for pos in range(keep, len(new))])
        ids = dict(cx.execute(f"SELECT turn_id, id FROM turns WHERE {where}",
                              (name, scenario, trusted + keep)).fetchall())
        cx.executemany("INSERT INTO turns_fts (rowid, query, response) VALUES (?, ?, ?)",
                       [(ids[trusted + pos + 1], texts[pos][0], texts[pos][1])
                        for pos in range(keep, len(new))])
