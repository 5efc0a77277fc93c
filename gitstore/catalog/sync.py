"""Keeping the index equal to git: refresh, rebuild, and the write path's record.

Invariants: after :meth:`Sync.refresh` returns, every customer it looked at has, in
table ``refs``, exactly the refs (heads and tags) its repository had when read, and
rows derived from exactly those refs; so an index kept current incrementally (by
:meth:`Sync.record` and :meth:`Sync.refresh`) dumps equal to one made by
:meth:`Sync.rebuild`. Rows of a scenario are recomputed only when its branch or one of
its tags moved. A customer git cannot read is left out of the index (its rows
dropped, one line in ``problems``) and retried by the next refresh. Each customer is
synced in its own write transaction; :meth:`Sync.rebuild` uses one for everything.

Staleness is detected cheaply: table ``fingerprints`` holds, per customer, the
identity and mtime of its ref storage (:func:`fingerprint`); a customer whose
fingerprint is unchanged is skipped without reading its refs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gitstore.catalog.db import SELECT, TABLES, Database
from gitstore.catalog.rows import (
    COLUMNS,
    RETAINED,
    Docs,
    iso,
    parse,
    retained_version,
    scenario_session_id,
    turn_digest,
    turn_text,
    turns_of,
    version_row,
)
from gitstore.catalog.view import StoreView
from gitstore.core.commits import CommitInfo, version_of
from gitstore.core.names import MERGED
from gitstore.core.versions import Scenario, parse_branch_ref, parse_tag_ref
from gitstore.errors import GitStoreError
from gitstore.git.repo import Repo

__all__ = ["RACY_NS", "Progress", "Sync", "fingerprint"]

Progress = Callable[[int, int, str], None]  # (done, total, customer)
#: A ref change this recent may hide behind an equal mtime (git's "racy" rule).
RACY_NS = 2_000_000_000


def fingerprint(repo_dir: Path) -> str | None:
    """Identity and mtime of the places refs live (``refs/heads``, ``refs/tags``,
    ``packed-refs``, the merge markers): git and libgit2 change a ref by renaming a lock file into
    place, which changes its directory's mtime. None when any of them changed
    within the last two seconds (git's "racy" rule: a change in the same clock
    tick could hide behind an equal mtime), so such a customer is read again."""
    parts = []
    newest = 0
    for rel in ("refs/heads", "refs/tags", "packed-refs", MERGED.rstrip("/")):
        try:
            st = os.stat(repo_dir / rel)
        except FileNotFoundError:
            parts.append("-")
            continue
        except OSError:
            return None
        newest = max(newest, st.st_mtime_ns)
        parts.append(f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
    if time.time_ns() - newest < RACY_NS:
        return None
    return "|".join(parts)


class Sync:
    """Brings ``db`` up to date with the repositories of ``store``."""

    def __init__(self, store: StoreView, db: Database) -> None:
        self.store = store
        self.db = db

    def _stored_refs(self, *customers: str) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        where = f" WHERE customer IN ({', '.join('?' * len(customers))})" if customers else ""
        for c, ref, target in self.db.cx.execute(f"SELECT * FROM refs{where}", customers):
            out.setdefault(c, {})[ref] = target
        return out

    def _open(self, name: str) -> Repo:
        # ``name`` came from customers(), passed CustomerView.exists, or is a checked name
        return Repo.open(self.store.root / name)

    def _current_refs(self, name: str, quiet: bool = False) -> dict[str, str] | None:
        try:
            return self._open(name).refs()
        except GitStoreError as exc:
            if not quiet:
                self.db.problems.append(f"{name}: not indexed: {exc}")
            return None

    def refresh(self, customers: list[str] | None = None,
                progress: Progress | None = None) -> int:
        """Bring the index up to date with git; returns how many customers changed.

        A customer whose ref files have not changed since its refs were last
        compared costs three ``stat`` calls (:func:`fingerprint`); otherwise one
        refs() read. ``customers`` limits the work to those (their removal is
        noticed too)."""
        if customers is None:
            present, stored = self.store.customers(), self._stored_refs()
        else:
            names = sorted({self.store.customer_named(c).name for c in customers})
            present = [n for n in names if self.store.customer_named(n).exists]
            stored = self._stored_refs(*names)
        gone = [n for n in stored if n not in present]
        known = dict(self.db.cx.execute("SELECT customer, fp FROM fingerprints"))
        todo, fresh = [], {}
        for n in present:
            fp = fingerprint(self.store.root / n)  # before the refs are read
            if fp is not None and known.get(n) == fp:
                continue  # no ref file changed since its refs were last compared
            if self._current_refs(n, quiet=True) != stored.get(n, {}):
                todo.append(n)
            if fp is not None:
                fresh[n] = fp
        for i, name in enumerate(todo):
            with self.db.write():
                cur = self._current_refs(name)
                old = self._stored_refs(name).get(name, {})  # again, under the lock
                if cur is None:
                    self._drop_customer(name)
                elif cur != old:
                    self._sync_safely(name, old, cur)
            if progress:
                progress(i + 1, len(todo), name)
        if gone or fresh:
            with self.db.write() as cx:
                for name in gone:
                    self._drop_customer(name)
                cx.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?)",
                               sorted(fresh.items()))
        return len(todo) + len(gone)

    def rebuild(self, progress: Progress | None = None) -> int:
        """Re-index everything from git in one transaction; returns the customer count."""
        names = self.store.customers()
        with self.db.write() as cx:
            for table in TABLES:
                cx.execute(f"DELETE FROM {table}")
            for i, name in enumerate(names):
                cur = self._current_refs(name)
                if cur is not None:
                    self._sync_safely(name, {}, cur)
                if progress:
                    progress(i + 1, len(names), name)
        self.db.cx.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")
        return len(names)

    def record(self, customer_name: str, scenario: str | Scenario, tip_commit: str,
               files: Mapping[str, bytes], parsed: Mapping[str, Any] | None = None,
               unchanged_turns: int = 0) -> bool:
        """Index the commit a write just made, from its files (see ``Index.record``)."""
        try:
            cust = self.store.customer_named(customer_name)
            scen = scenario if isinstance(scenario, Scenario) else Scenario.parse(str(scenario))
            if not cust.exists:
                return False
            repo = self._open(cust.name)
            tags = repo.refs(f"refs/tags/v{scen.major}.")
            info = repo.commit(tip_commit)
            known = (tip_commit, info, files)
            cx = self.db.cx
            row = cx.execute("SELECT tip FROM scenarios WHERE customer = ? AND scenario = ?",
                             (cust.name, str(scen))).fetchone()
            # the indexed turns are the parent's: its first turns are still right
            trusted = unchanged_turns if row is not None and info.parents[:1] == (row[0],) \
                else 0
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

    def _sync_safely(self, name: str, old: dict[str, str], cur: dict[str, str]) -> None:
        """A customer git cannot read, or whose rows cannot be derived, is left out,
        named in ``problems`` (one warning), retried later: one customer's bad data
        never takes the queries of the others down."""
        cx = self.db.cx
        cx.execute("SAVEPOINT sync")
        try:
            self._sync_customer(name, old, cur)
        except (GitStoreError, ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            cx.execute("ROLLBACK TO sync")
            self._drop_customer(name)
            self.db.problems.append(f"{name}: not indexed: {exc}")
        cx.execute("RELEASE sync")

    def _drop_customer(self, name: str) -> None:
        cx = self.db.cx
        cx.execute("DELETE FROM turns_fts WHERE rowid IN (SELECT id FROM turns WHERE "
                   "customer = ?)", (name,))
        for table in ("turns", "refs", "fingerprints", "scenarios", "versions", "services"):
            cx.execute(f"DELETE FROM {table} WHERE customer = ?", (name,))

    def _sync_customer(self, name: str, old: dict[str, str], cur: dict[str, str]) -> None:
        """Re-index the scenarios of ``name`` whose branch or tags moved."""
        majors = set()
        for ref in old.keys() | cur.keys():
            if old.get(ref) != cur.get(ref):
                branch, tagged = parse_branch_ref(ref), parse_tag_ref(ref)
                if branch is not None:
                    majors.add(branch.major)
                elif tagged is not None:
                    majors.add(tagged.major)
                elif ref.startswith(MERGED) and Scenario.is_name(ref[len(MERGED):]):
                    majors.add(Scenario.parse(ref[len(MERGED):]).major)
        repo = self._open(name)
        for major in sorted(majors):
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
        cx, scen, problems = self.db.cx, Scenario(major), self.db.problems

        last: list[tuple[str, CommitInfo, Mapping[str, bytes], Docs]] = []

        def read(commit: str) -> tuple[CommitInfo, Mapping[str, bytes], Docs]:
            """The commit, its files and their parse (the last one read is kept: a
            finalized tip is both a tag's target and the branch tip)."""
            if not last or last[0][0] != commit:
                given: Mapping[str, Any] = {}
                if known is not None and known[0] == commit:
                    info, files, given = known[1], known[2], parsed or {}
                else:
                    info, files = repo.commit(commit), repo.read_tree(commit)
                last[:] = [(commit, info, files, parse(files, given))]
            return last[0][1:]

        tags = {v: t for ref, t in refs.items()
                if (v := parse_tag_ref(ref)) is not None and v.major == major}
        have = dict(cx.execute("SELECT version, tag FROM versions WHERE customer = ? AND "
                               "scenario = ?", (name, str(scen))).fetchall())
        for v, tag_id in sorted(tags.items()):
            if have.get(str(v)) == tag_id:
                continue
            try:
                tag = repo.tag(str(v))
                if tag is not None:
                    info, _, docs = read(repo.resolve(tag.target))
                    self._put_version(version_row(name, v, info, docs, "finalized", tag_id))
            except GitStoreError as exc:
                self._delete_version(name, str(v))
                problems.append(f"{name} {v}: not indexed: {exc}")
        version = None
        if tip is not None:
            info, files, docs = read(tip)
            version = version_of(info, files)
            status = "finalized" if info.finalizes else \
                "merged" if MERGED + str(scen) in refs else "open"
            if version is None:  # a purged scenario's kept analytics summary?
                version, status = retained_version(info, major), RETAINED
            if version is None or version.major != major:
                problems.append(f"{name} {scen}: cannot tell the version of {tip[:12]}; "
                                "not indexed")
                version = None
            else:
                if version not in tags:
                    self._put_version(version_row(name, version, info, docs, status, None))
                turns = turns_of(docs)
                cx.execute("INSERT OR REPLACE INTO scenarios VALUES (?, ?, ?, ?, ?, ?)",
                           (name, str(scen), tip, str(version), scenario_session_id(info, docs),
                            len(turns)))
                self._sync_turns(name, str(scen), turns, trusted)
        if version is None:
            self._sync_turns(name, str(scen), [])
            cx.execute("DELETE FROM scenarios WHERE customer = ? AND scenario = ?",
                       (name, str(scen)))
        keep = {str(v) for v in tags} | ({str(version)} if version else set())
        for stale in sorted(set(have) - keep):
            self._delete_version(name, stale)
        cx.execute("UPDATE versions SET latest = (version = ?) WHERE customer = ? AND "
                   "scenario = ?", (str(version) if version else "", name, str(scen)))

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
        texts, new, old = [("", "", "")] * trusted + texts, [""] * trusted + new, \
            [""] * trusted + old
        keep += trusted
        if keep < len(old):
            where = "customer = ? AND scenario = ? AND turn_id > ?"
            cx.execute(f"DELETE FROM turns_fts WHERE rowid IN (SELECT id FROM turns WHERE "
                       f"{where})", (name, scenario, keep))
            cx.execute(f"DELETE FROM turns WHERE {where}", (name, scenario, keep))
        for pos in range(keep, len(turns)):
            query, response, stamp = texts[pos]
            rowid = cx.execute("INSERT INTO turns (customer, scenario, turn_id, timestamp, "
                               "digest) VALUES (?, ?, ?, ?, ?)",
                               (name, scenario, pos + 1, iso(stamp), new[pos])).lastrowid
            cx.execute("INSERT INTO turns_fts (rowid, query, response) VALUES (?, ?, ?)",
                       (rowid, query, response))
