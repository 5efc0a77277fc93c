"""A derived SQLite index of the store, for questions across customers.

Git is the single source of truth; ``<root>/.gitstore/index.sqlite`` is a cache
rebuildable from git alone (:meth:`Index.rebuild`): one metadata row per version
(each finalized tag plus each scenario's open tip) and a full-text index of the
conversation turns. Every query result names its customer.

Staleness: table ``refs`` holds, per customer, every ref (heads and tags) as it
was when indexed. Every query first calls :meth:`Index.refresh`, which compares
each customer's refs with them and re-indexes only the scenarios whose branch or
tags moved, so even a plain ``git push`` is seen by the next query. The write
path calls :meth:`Index.record` with the files it just committed. An index file
that SQLite cannot read, that fails ``quick_check`` or has another schema
version is moved aside (never deleted) and rebuilt.

Satisfaction (0..1) is derived from ``user_satisfaction_indicators``: the
weighted mean, over the indicators present, of ``explicit_positive_feedback``
(weight 0.4, true = 1), ``completed_to_implementation`` (0.4, true = 1) and
``follow_up_questions_answered`` (0.2, ``min(n, 3) / 3``); null when none is
present.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from gitstore.core.commits import CommitInfo
from gitstore.core.names import JSON_DOCUMENTS
from gitstore.core.versions import Scenario, Version, parse_branch_ref, parse_tag_ref
from gitstore.errors import GitStoreError, NotFoundError, StorageError, UsageError
from gitstore.git.repo import Repo
from gitstore.store.config import CONFIG_DIR
from gitstore.store.facade import Store

CONV, CTX, META, ANA = JSON_DOCUMENTS
SCHEMA_VERSION = 2
APPLICATION_ID = 0x67697473  # "gits"
INDEX_FILE = "index.sqlite"
DEFAULT_ACTIVE_TIMEOUT = timedelta(hours=2)
FINAL_CHANGES = ("finalize", "correction")
SATISFACTION_WEIGHTS = (("explicit_positive_feedback", 0.4),
                        ("completed_to_implementation", 0.4),
                        ("follow_up_questions_answered", 0.2))
#: ``list_sessions`` sort keys and the columns they order by.
SORT_FIELDS: dict[str, tuple[str, ...]] = {
    "updated": ("updated",), "created": ("created",), "completed": ("completed",),
    "customer": ("customer",), "version": ("major", "minor", "patch"),
    "status": ("status",), "provider": ("provider",), "completeness": ("completeness",),
    "satisfaction": ("satisfaction",), "success": ("success",),
    "confidence": ("confidence",), "turns": ("turns",),
}
Progress = Callable[[int, int, str], None]  # (done, total, customer)
_T = TypeVar("_T")
_P = ParamSpec("_P")

_SCHEMA = """
CREATE TABLE refs (customer TEXT NOT NULL, ref TEXT NOT NULL, target TEXT NOT NULL,
  PRIMARY KEY (customer, ref)) WITHOUT ROWID;
CREATE TABLE fingerprints (customer TEXT PRIMARY KEY, fp TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE scenarios (customer TEXT NOT NULL, scenario TEXT NOT NULL, tip TEXT NOT NULL,
  version TEXT NOT NULL, session_id TEXT, turns INTEGER NOT NULL,
  PRIMARY KEY (customer, scenario)) WITHOUT ROWID;
CREATE INDEX scenarios_session ON scenarios (session_id);
CREATE TABLE versions (customer TEXT NOT NULL, scenario TEXT NOT NULL, version TEXT NOT NULL,
  major INTEGER NOT NULL, minor INTEGER NOT NULL, patch INTEGER NOT NULL,
  latest INTEGER NOT NULL, status TEXT NOT NULL, completion_status TEXT, session_id TEXT,
  created TEXT, updated TEXT NOT NULL, completed TEXT, provider TEXT, services TEXT NOT NULL,
  final_recommendation TEXT, completeness INTEGER, confidence REAL, success REAL,
  satisfaction REAL, pattern_hash TEXT, complexity_profile TEXT, user_expertise TEXT,
  turns INTEGER NOT NULL, commit_id TEXT NOT NULL, tag TEXT,
  PRIMARY KEY (customer, version)) WITHOUT ROWID;
CREATE INDEX versions_updated ON versions (latest, updated);
CREATE INDEX versions_pattern ON versions (pattern_hash);
CREATE INDEX versions_profile ON versions (complexity_profile);
CREATE TABLE services (customer TEXT NOT NULL, version TEXT NOT NULL, service TEXT NOT NULL,
  PRIMARY KEY (customer, version, service)) WITHOUT ROWID;
CREATE INDEX services_service ON services (service);
CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, customer TEXT NOT NULL,
  scenario TEXT NOT NULL, turn_id INTEGER NOT NULL, timestamp TEXT, digest TEXT NOT NULL,
  UNIQUE (customer, scenario, turn_id));
CREATE VIRTUAL TABLE turns_fts USING fts5 (query, response,
  tokenize = 'porter unicode61 remove_diacritics 2')
"""
_TABLES = frozenset({"refs", "fingerprints", "scenarios", "versions", "services", "turns",
                     "turns_fts"})
_COLUMNS = ("customer", "scenario", "version", "major", "minor", "patch", "latest", "status",
            "completion_status", "session_id", "created", "updated", "completed", "provider",
            "services", "final_recommendation", "completeness", "confidence", "success",
            "satisfaction", "pattern_hash", "complexity_profile", "user_expertise", "turns",
            "commit_id", "tag")
_SELECT = ", ".join(_COLUMNS)


RACY_NS = 2_000_000_000


def _fingerprint(repo_dir: Path) -> str | None:
    """Identity and mtime of the places refs live (``refs/heads``, ``refs/tags``,
    ``packed-refs``): git and libgit2 change a ref by renaming a lock file into
    place, which changes its directory's mtime. None when any of them changed
    within the last two seconds (git's "racy" rule: a change in the same clock
    tick could hide behind an equal mtime), so such a customer is read again."""
    parts = []
    newest = 0
    for rel in ("refs/heads", "refs/tags", "packed-refs"):
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


class _Unusable(Exception):
    """The index file exists but is not a usable index of this schema."""


def _not_damage(exc: sqlite3.DatabaseError) -> bool:
    """Errors of the environment (locks, permissions, disk), not of the file."""
    text = str(exc).lower()
    return any(w in text for w in ("locked", "busy", "readonly", "read-only", "disk i/o",
                                   "full", "unable to open", "permission"))


def _guarded(method: Callable[Concatenate[Index, _P], _T]) -> Callable[Concatenate[Index, _P], _T]:
    """If SQLite finds the index file damaged, set it aside and run again on a
    fresh one (which the method's own refresh fills from git)."""

    @functools.wraps(method)
    def wrapper(self: Index, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if _not_damage(exc):
                raise StorageError(f"index {self.path}: {exc}") from None
            self.close()
            self._move_aside(str(exc))
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"index {self.path}: {exc}") from None

    return wrapper


# -- pure helpers ------------------------------------------------------------

def parse_duration(text: str | timedelta) -> timedelta:
    """``30m``, ``2h``, ``7d``, ``1h30m``, ``90s``, ``2w`` (or a plain number of seconds)."""
    if isinstance(text, timedelta):
        return text
    s = str(text).strip().lower()
    if s.isdigit():
        return timedelta(seconds=int(s))
    parts = re.findall(r"(\d+)\s*([smhdw])", s)
    if not s or not parts or re.sub(r"\d+\s*[smhdw]", "", s).strip():
        raise UsageError(f"invalid duration {text!r}: expected e.g. 30m, 2h, 7d, 1h30m")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return timedelta(seconds=sum(int(n) * unit[u] for n, u in parts))


def fts_query(text: str) -> str:
    """An FTS5 query matching every word of ``text`` (AND), each as a quoted
    phrase, so no user input is FTS syntax; ``word*`` keeps a prefix search."""
    terms = []
    for word, star in re.findall(r"(\w+)(\*?)", text or "")[:32]:
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if star else ""))
    return " ".join(terms)


def satisfaction(indicators: Any) -> float | None:
    """A 0..1 score from ``user_satisfaction_indicators`` (formula in the module doc)."""
    if not isinstance(indicators, dict):
        return None
    score = weight = 0.0
    for key, w in SATISFACTION_WEIGHTS:
        value = indicators.get(key)
        if key == "follow_up_questions_answered":
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            part = min(max(float(value), 0.0), 3.0) / 3.0
        elif isinstance(value, bool):
            part = 1.0 if value else 0.0
        else:
            continue
        score += w * part
        weight += w
    return round(score / weight, 3) if weight else None


def _iso(value: Any) -> str | None:
    """A timestamp (RFC 3339 text, epoch seconds or datetime) as ``YYYY-MM-DDTHH:MM:SSZ``."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def parse(files: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The JSON documents the index reads, parsed once ({} when absent or unreadable).
    The pipeline validated them strictly at write time; plain ``json`` is enough here."""
    docs: dict[str, dict[str, Any]] = {}
    for name in (CONV, META, ANA):
        try:
            doc = json.loads(files[name])
        except (KeyError, ValueError, RecursionError):
            doc = None
        docs[name] = doc if isinstance(doc, dict) else {}
    return docs


def _version(info: CommitInfo, docs: dict[str, dict[str, Any]]) -> Version | None:
    """As :func:`gitstore.store.facade.version_of`: the trailer, else the metadata's."""
    text = info.trailer("Session-Version")
    if not (text and Version.is_version(text)):
        text = _get(docs[META], "session_info", "session_version")
    return Version.parse(text) if isinstance(text, str) and Version.is_version(text) else None


def _turns(docs: dict[str, dict[str, Any]]) -> list[Any]:
    turns = docs[CONV].get("conversation_turns")
    return turns if isinstance(turns, list) else []


def _turn_text(turn: Any) -> tuple[str, str, str]:
    """What the index keeps of a turn: query (and command), response, raw timestamp."""
    if not isinstance(turn, dict):
        return "", "", ""
    asked, answer = turn.get("user_input"), turn.get("agent_response")
    asked = asked if isinstance(asked, dict) else {}
    query = " ".join(t for t in (asked.get("query"), asked.get("command"))
                     if isinstance(t, str) and t)
    response = answer.get("orchestrator_response") if isinstance(answer, dict) else None
    stamp = turn.get("timestamp")
    return query, response if isinstance(response, str) else "", \
        stamp if isinstance(stamp, str) else ""


def _digest(text: tuple[str, str, str]) -> str:
    """Of exactly what the index keeps of a turn: equal digests, equal rows."""
    data = "\x1f".join(text).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:24]


def version_row(customer: str, version: Version, info: CommitInfo,
                docs: dict[str, dict[str, Any]], status: str, tag: str | None) -> dict[str, Any]:
    """The index row of one version, from its commit and its parsed documents (pure)."""
    conv, meta, ana = docs[CONV], docs[META], docs[ANA]
    summary = conv.get("conversation_summary")
    services = _get(summary, "services_discussed")
    services = sorted({s for s in services if isinstance(s, str)}) \
        if isinstance(services, list) else []
    completeness = (info.trailer("Completeness") or "").rstrip("%")
    info_doc = meta.get("session_info")
    return {
        "customer": customer, "scenario": str(version.scenario), "version": str(version),
        "major": version.major, "minor": version.minor, "patch": version.patch, "latest": 0,
        "status": status,
        "completion_status": _text(_get(meta, "workflow_tracking", "completion_status")),
        "session_id": info.trailer("Session-Id") or _text(_get(info_doc, "session_id"))
        or _text(conv.get("session_id")),
        "created": _iso(_get(info_doc, "created_timestamp")), "updated": _iso(info.time),
        "completed": _iso(_get(info_doc, "completed_timestamp")),
        "provider": _text(_get(summary, "primary_cloud_provider")),
        "services": json.dumps(services, ensure_ascii=False),
        "final_recommendation": _text(_get(summary, "final_recommendation")),
        "completeness": int(completeness) if completeness.isdigit() else None,
        "confidence": _number(_get(meta, "quality_metrics", "recommendation_confidence_average")),
        "success": _number(_get(meta, "quality_metrics", "session_success_score")),
        "satisfaction": satisfaction(
            _get(meta, "workflow_tracking", "user_satisfaction_indicators")),
        "pattern_hash": _text(_get(ana, "similarity_vectors", "architecture_pattern_hash")),
        "complexity_profile": _text(_get(ana, "similarity_vectors", "complexity_profile")),
        "user_expertise": _text(_get(ana, "complexity_analysis", "user_expertise_inferred")),
        "turns": len(_turns(docs)), "commit_id": info.id, "tag": tag,
    }


def _public(row: sqlite3.Row) -> dict[str, Any]:
    out = {k: row[k] for k in row.keys() if k not in ("major", "minor", "patch")}  # noqa: SIM118
    if "services" in out:
        out["services"] = json.loads(out["services"])
    if "latest" in out:
        out["latest"] = bool(out["latest"])
    return out


def _configured_timeout(store: Store) -> timedelta:
    value: Any = os.environ.get("GITSTORE_ACTIVE_TIMEOUT") or store.config.active_timeout
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return parse_duration(str(value)) if value else DEFAULT_ACTIVE_TIMEOUT


# -- the index ---------------------------------------------------------------

class Index:
    """The SQLite index of ``store`` (default file ``<root>/.gitstore/index.sqlite``).

    Safe to share between threads (one connection per thread) and processes
    (WAL; writers serialise on SQLite's lock). ``moved_aside`` lists index files
    found unusable and set aside; ``problems`` names customers that could not
    be read (they are left out of answers until they can)."""

    def __init__(self, store: Store, path: str | Path | None = None, *,
                 active_timeout: str | timedelta | None = None) -> None:
        self.store = store
        self.path = Path(path) if path is not None else store.root / CONFIG_DIR / INDEX_FILE
        self.active_timeout = parse_duration(active_timeout) if active_timeout is not None \
            else _configured_timeout(store)
        self.moved_aside: list[Path] = []
        self.problems: list[str] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._checked = False

    # -- the file --------------------------------------------------------------
    @property
    def cx(self) -> sqlite3.Connection:
        cx: sqlite3.Connection | None = getattr(self._local, "cx", None)
        if cx is None:
            cx = self._local.cx = self._open()
        return cx

    def close(self) -> None:
        cx = getattr(self._local, "cx", None)
        if cx is not None:
            cx.close()
            self._local.cx = None

    def _connect(self) -> sqlite3.Connection:
        cx = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)
        cx.row_factory = sqlite3.Row
        return cx

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        cx = None
        try:
            cx = self._connect()
            self._init(cx)  # reads before it writes: a foreign file is set aside untouched
            with self._lock:
                if not self._checked:
                    row = cx.execute("PRAGMA quick_check").fetchone()
                    if row is None or row[0] != "ok":
                        raise _Unusable(f"quick_check: {row[0] if row else 'no answer'}")
                    self._checked = True
        except (sqlite3.DatabaseError, _Unusable) as exc:
            if cx is not None:
                cx.close()
            if isinstance(exc, sqlite3.OperationalError) and _not_damage(exc):
                raise StorageError(f"cannot use the index {self.path}: {exc}") from None
            self._move_aside(str(exc))
            cx = self._connect()
            self._init(cx)
            self._checked = True
        cx.execute("PRAGMA journal_mode=WAL")
        cx.execute("PRAGMA synchronous=NORMAL")
        return cx

    def _init(self, cx: sqlite3.Connection) -> None:
        """Create the schema in an empty file; refuse a file that is not ours."""
        if cx.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION and \
                cx.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
            names = {r[0] for r in cx.execute("SELECT name FROM sqlite_master")}
            if names >= _TABLES:
                return
            raise _Unusable("tables missing")
        cx.execute("BEGIN IMMEDIATE")
        try:
            version = cx.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and not cx.execute("SELECT 1 FROM sqlite_master").fetchone():
                for statement in _SCHEMA.split(";"):
                    cx.execute(statement)
                cx.execute(f"PRAGMA application_id={APPLICATION_ID}")
                cx.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise _Unusable(f"schema version {version}, expected {SCHEMA_VERSION}")
            cx.execute("COMMIT")
        except BaseException:
            cx.execute("ROLLBACK")
            raise

    def _move_aside(self, why: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.unusable-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            try:
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(f"the index {self.path} is unusable ({why}) and cannot be "
                                   f"moved aside: {exc.strerror}") from None
            if suffix == "":
                self.moved_aside.append(aside)
        self.problems.append(f"index {self.path} was unusable ({why}); moved aside and rebuilt")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        cx = self.cx
        cx.execute("BEGIN IMMEDIATE")
        try:
            yield cx
        except BaseException:
            cx.execute("ROLLBACK")
            raise
        cx.execute("COMMIT")

    # -- keeping it current ------------------------------------------------------
    def _stored_refs(self, *customers: str) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        where = f" WHERE customer IN ({', '.join('?' * len(customers))})" if customers else ""
        for c, ref, target in self.cx.execute(f"SELECT * FROM refs{where}", customers):
            out.setdefault(c, {})[ref] = target
        return out

    def _current_refs(self, name: str, quiet: bool = False) -> dict[str, str] | None:
        try:  # ``name`` came from customers() or passed Customer.exists
            return Repo.open(self.store.root / name).refs()
        except GitStoreError as exc:
            if not quiet:
                self.problems.append(f"{name}: not indexed: {exc}")
            return None

    @_guarded
    def refresh(self, customers: list[str] | None = None,
                progress: Progress | None = None) -> int:
        """Bring the index up to date with git; returns how many customers changed.

        A customer whose ref files have not changed since its refs were last
        compared costs three ``stat`` calls (:func:`_fingerprint`); otherwise one
        refs() read. ``customers`` limits the work to those (their removal is
        noticed too)."""
        if customers is None:
            present, stored = self.store.customers(), self._stored_refs()
        else:
            names = sorted({self.store.customer(c).name for c in customers})
            present = [n for n in names if self.store.customer(n).exists]
            stored = self._stored_refs(*names)
        gone = [n for n in stored if n not in present]
        known = dict(self.cx.execute("SELECT customer, fp FROM fingerprints"))
        todo, fresh = [], {}
        for n in present:
            fp = _fingerprint(self.store.root / n)  # before the refs are read
            if fp is not None and known.get(n) == fp:
                continue  # no ref file changed since its refs were last compared
            if self._current_refs(n, quiet=True) != stored.get(n, {}):
                todo.append(n)
            if fp is not None:
                fresh[n] = fp
        for i, name in enumerate(todo):
            with self._write():
                cur = self._current_refs(name)
                old = self._stored_refs(name).get(name, {})  # again, under the lock
                if cur is None:
                    self._drop_customer(name)
                elif cur != old:
                    self._sync_safely(name, old, cur)
            if progress:
                progress(i + 1, len(todo), name)
        if gone or fresh:
            with self._write() as cx:
                for name in gone:
                    self._drop_customer(name)
                cx.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?)",
                               sorted(fresh.items()))
        return len(todo) + len(gone)

    def _sync_safely(self, name: str, old: dict[str, str], cur: dict[str, str]) -> None:
        """A customer git cannot read is left out, named in ``problems``, retried later."""
        cx = self.cx
        cx.execute("SAVEPOINT sync")
        try:
            self._sync_customer(name, old, cur)
        except GitStoreError as exc:
            cx.execute("ROLLBACK TO sync")
            self._drop_customer(name)
            self.problems.append(f"{name}: not indexed: {exc}")
        cx.execute("RELEASE sync")

    @_guarded
    def rebuild(self, progress: Progress | None = None) -> int:
        """Re-index everything from git in one transaction; returns the customer count."""
        names = self.store.customers()
        with self._write() as cx:
            for table in ("refs", "fingerprints", "scenarios", "versions", "services", "turns",
                          "turns_fts"):
                cx.execute(f"DELETE FROM {table}")
            for i, name in enumerate(names):
                cur = self._current_refs(name)
                if cur is not None:
                    self._sync_safely(name, {}, cur)
                if progress:
                    progress(i + 1, len(names), name)
        self.cx.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")
        return len(names)

    def record(self, customer_name: str, scenario: str | Scenario, tip_commit: str,
               files: dict[str, bytes]) -> bool:
        """The writer's fast path: index the commit a write just made, from its files.

        Call after the branch (and tag) update, under the customer's writer lock.
        One transaction: the scenario's tip row (and its new tag's row), only the
        new turns into the full-text index, and the refs it saw. Never raises for
        index trouble: returns False, and the next :meth:`refresh` catches up."""
        try:
            cust = self.store.customer(customer_name)
            scen = scenario if isinstance(scenario, Scenario) else Scenario.parse(str(scenario))
            repo = cust.repo
            tags = repo.refs(f"refs/tags/v{scen.major}.")
            known = (tip_commit, repo.commit(tip_commit), parse(files))
            cx = self.cx
            cx.execute("PRAGMA busy_timeout = 2000")  # never hold a writer up for long
            try:
                with self._write():
                    self._sync_scenario(repo, cust.name, scen.major, tags, tip_commit, known)
                    cx.execute("DELETE FROM refs WHERE customer = ? AND (ref = ? OR ref LIKE ?)",
                               (cust.name, scen.branch_ref, f"refs/tags/v{scen.major}.%"))
                    cx.executemany("INSERT INTO refs VALUES (?, ?, ?)", [
                        (cust.name, ref, target)
                        for ref, target in {**tags, scen.branch_ref: tip_commit}.items()])
            finally:
                cx.execute("PRAGMA busy_timeout = 30000")
            return True
        except (sqlite3.Error, GitStoreError, OSError):
            return False

    def _drop_customer(self, name: str) -> None:
        cx = self.cx
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
        repo = Repo.open(self.store.root / name)
        for major in sorted(majors):
            self._sync_scenario(repo, name, major, cur, cur.get(Scenario(major).branch_ref))
        self.cx.execute("DELETE FROM refs WHERE customer = ?", (name,))
        self.cx.executemany("INSERT INTO refs VALUES (?, ?, ?)",
                            [(name, ref, target) for ref, target in sorted(cur.items())])

    def _sync_scenario(self, repo: Repo, name: str, major: int, refs: dict[str, str],
                       tip: str | None,
                       known: tuple[str, CommitInfo, dict[str, dict[str, Any]]] | None = None,
                       ) -> None:
        """Make the rows of scenario ``vMAJOR`` match its tags (in ``refs``) and its
        branch ``tip``; ``known`` is a commit already in hand with its files."""
        cx, scen = self.cx, Scenario(major)

        def read(commit: str) -> tuple[CommitInfo, dict[str, dict[str, Any]]]:
            if known is not None and known[0] == commit:
                return known[1], known[2]
            return repo.commit(commit), parse(repo.read_tree(commit))

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
                    info, docs = read(repo.resolve(tag.target))
                    self._put_version(version_row(name, v, info, docs, "finalized", tag_id))
            except GitStoreError as exc:
                self._delete_version(name, str(v))
                self.problems.append(f"{name} {v}: not indexed: {exc}")
        version = None
        if tip is not None:
            info, docs = read(tip)
            version = _version(info, docs)
            if version is None or version.major != major:
                self.problems.append(f"{name} {scen}: cannot tell the version of {tip[:12]}; "
                                     "not indexed")
                version = None
            else:
                if version not in tags:
                    final = info.trailer("Change") in FINAL_CHANGES
                    self._put_version(version_row(name, version, info, docs,
                                                  "finalized" if final else "open", None))
                turns = _turns(docs)
                session_id = info.trailer("Session-Id") or \
                    _text(_get(docs[META], "session_info", "session_id"))
                cx.execute("INSERT OR REPLACE INTO scenarios VALUES (?, ?, ?, ?, ?, ?)",
                           (name, str(scen), tip, str(version), session_id, len(turns)))
                self._sync_turns(name, str(scen), turns)
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
            self.cx.execute(f"DELETE FROM {table} WHERE customer = ? AND version = ?",
                            (name, version))

    def _put_version(self, row: dict[str, Any]) -> None:
        cx = self.cx
        cx.execute(f"INSERT OR REPLACE INTO versions ({_SELECT}) VALUES "
                   f"({', '.join('?' * len(_COLUMNS))})", [row[c] for c in _COLUMNS])
        cx.execute("DELETE FROM services WHERE customer = ? AND version = ?",
                   (row["customer"], row["version"]))
        cx.executemany("INSERT INTO services VALUES (?, ?, ?)",
                       [(row["customer"], row["version"], s)
                        for s in json.loads(row["services"])])

    def _sync_turns(self, name: str, scenario: str, turns: list[Any]) -> None:
        """Make the indexed turns equal ``turns``: keep the unchanged prefix, re-index
        from the first turn whose indexed text differs (a renumbering or correction)."""
        cx = self.cx
        old = [d for (d,) in cx.execute("SELECT digest FROM turns WHERE customer = ? AND "
                                        "scenario = ? ORDER BY turn_id", (name, scenario))]
        texts = [_turn_text(t) for t in turns]
        new = [_digest(t) for t in texts]
        keep = 0
        while keep < min(len(old), len(new)) and old[keep] == new[keep]:
            keep += 1
        if keep < len(old):
            where = "customer = ? AND scenario = ? AND turn_id > ?"
            cx.execute(f"DELETE FROM turns_fts WHERE rowid IN (SELECT id FROM turns WHERE "
                       f"{where})", (name, scenario, keep))
            cx.execute(f"DELETE FROM turns WHERE {where}", (name, scenario, keep))
        for pos in range(keep, len(turns)):
            query, response, stamp = texts[pos]
            rowid = cx.execute("INSERT INTO turns (customer, scenario, turn_id, timestamp, "
                               "digest) VALUES (?, ?, ?, ?, ?)",
                               (name, scenario, pos + 1, _iso(stamp), new[pos])).lastrowid
            cx.execute("INSERT INTO turns_fts (rowid, query, response) VALUES (?, ?, ?)",
                       (rowid, query, response))

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row in a canonical order (no row ids): equal indexes dump equal."""
        cx = self.cx
        out = {}
        for table, cols in (("refs", "*"), ("scenarios", "*"), ("versions", _SELECT),
                            ("services", "*")):
            out[table] = [tuple(r) for r in cx.execute(f"SELECT {cols} FROM {table}")]
        out["turns"] = [tuple(r) for r in cx.execute(
            "SELECT t.customer, t.scenario, t.turn_id, t.timestamp, t.digest, f.query, "
            "f.response FROM turns t LEFT JOIN turns_fts f ON f.rowid = t.id")]
        out["fts_rows"] = [(cx.execute("SELECT count(*) FROM turns_fts").fetchone()[0],)]
        return {k: sorted(v, key=repr) for k, v in out.items()}

    def _known(self, customer: str) -> str:
        cust = self.store.customer(customer)
        if not cust.exists:
            raise NotFoundError(f"unknown customer {cust.name!r} in {self.store.root}")
        return cust.name

    # -- queries -----------------------------------------------------------------
    @_guarded
    def list_sessions(self, customer: str | None = None, status: str | None = None,
                      provider: str | None = None, since: datetime | None = None,
                      until: datetime | None = None, sort: str = "updated",
                      descending: bool = True, limit: int | None = None, *,
                      service: str | None = None,
                      all_versions: bool = False) -> list[dict[str, Any]]:
        """Sessions (each scenario's newest version; every version with
        ``all_versions``) filtered and sorted. ``status`` is ``open``/``finalized``
        or a ``completion_status``; ``since``/``until`` bound the last activity."""
        if sort not in SORT_FIELDS:
            raise UsageError(f"cannot sort by {sort!r}; choose one of "
                             f"{', '.join(sorted(SORT_FIELDS))}")
        name = self._known(customer) if customer is not None else None
        self.refresh([name] if name else None)
        where: list[str] = ["1" if all_versions else "latest = 1"]
        args: list[Any] = []
        if name is not None:
            where.append("customer = ?")
            args.append(name)
        if status is not None:
            where.append("status = ?" if status in ("open", "finalized")
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
                args.append(_iso(when))
        direction = "DESC" if descending else "ASC"
        order = [f"{c} IS NULL, {c} {direction}" for c in SORT_FIELDS[sort]]
        order += ["customer", "major", "minor", "patch"]
        sql = (f"SELECT {_SELECT} FROM versions WHERE {' AND '.join(where)} "
               f"ORDER BY {', '.join(order)}")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_public(r) for r in self.cx.execute(sql, args)]

    @_guarded
    def stats(self) -> dict[str, Any]:
        """Totals, averages and breakdowns over the sessions (newest versions)."""
        self.refresh()
        cx = self.cx
        one = cx.execute(
            "SELECT count(DISTINCT customer), count(*), coalesce(sum(turns), 0), "
            "avg(completeness), avg(satisfaction), avg(success), avg(confidence) "
            "FROM versions WHERE latest = 1").fetchone()
        counts = cx.execute("SELECT count(*), coalesce(sum(status = 'finalized'), 0) "
                            "FROM versions").fetchone()

        def by(column: str) -> dict[str, int]:
            return {k: n for k, n in cx.execute(
                f"SELECT coalesce({column}, 'unknown'), count(*) FROM versions WHERE "
                f"latest = 1 GROUP BY 1 ORDER BY 1")}

        def avg(x: Any) -> float | None:
            return round(x, 3) if x is not None else None

        return {"customers": one[0], "sessions": one[1], "turns": one[2],
                "versions": counts[0], "finalized_versions": counts[1],
                "average_completeness": avg(one[3]), "average_satisfaction": avg(one[4]),
                "average_success_score": avg(one[5]), "average_confidence": avg(one[6]),
                "by_status": by("status"), "by_completion_status": by("completion_status"),
                "by_provider": by("provider")}

    @_guarded
    def search(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Turns whose query or response match every word of ``text``, best first."""
        query = fts_query(text)
        self.refresh()
        if not query:
            return []
        rows = self.cx.execute(
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
        results = [_public(r) for r in rows]
        for name in sorted({r["customer"] for r in results}):
            hits = sum(r["customer"] == name for r in results)
            self.store.customer(name)._audit("search", detail=f"{hits} matching turn(s) shown")
        return results

    @_guarded
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
        me = self.cx.execute(f"SELECT scenario, pattern_hash, complexity_profile FROM versions "
                             f"WHERE customer = ? AND {where}", (name, key)).fetchone()
        if me is None:
            raise NotFoundError(f"the index has no {key} of customer {name}")
        rows = self.cx.execute(
            f"SELECT * FROM (SELECT {_SELECT}, (pattern_hash IS NOT NULL AND pattern_hash = ?)"
            " + (complexity_profile IS NOT NULL AND complexity_profile = ?) AS score FROM "
            "versions WHERE latest = 1 AND NOT (customer = ? AND scenario = ?)) WHERE score > 0"
            " ORDER BY score DESC, updated DESC, customer, major LIMIT ?",
            (me["pattern_hash"], me["complexity_profile"], name, me["scenario"],
             max(int(limit), 0))).fetchall()
        return [{**_public(r), "matched": [k for k in ("pattern_hash", "complexity_profile")
                                           if r[k] is not None and r[k] == me[k]]}
                for r in rows]

    @_guarded
    def active(self, timeout: str | timedelta | None = None,
               now: datetime | None = None) -> list[dict[str, Any]]:
        """Open sessions with activity (a commit) within ``timeout`` of ``now``
        (default: the index's ``active_timeout``, 2 hours unless configured)."""
        self.refresh()
        span = parse_duration(timeout) if timeout is not None else self.active_timeout
        moment = now or self.store.now()
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        rows = self.cx.execute(
            f"SELECT {_SELECT} FROM versions WHERE latest = 1 AND status = 'open' AND "
            "updated >= ? ORDER BY updated DESC, customer, major", (_iso(moment - span),))
        return [{**_public(r), "idle_seconds": max(int((moment - datetime.fromisoformat(
            r["updated"].replace("Z", "+00:00"))).total_seconds()), 0)} for r in rows]

    @_guarded
    def find_session(self, session_id: str, customer: str | None = None) -> tuple[str, str]:
        """``(customer, scenario)`` of the session ``session_id``."""
        name = self._known(customer) if customer is not None else None
        self.refresh([name] if name else None)
        rows = self.cx.execute("SELECT customer, scenario FROM scenarios WHERE session_id = ?"
                               + (" AND customer = ?" if name else "") + " ORDER BY 1, 2",
                               (session_id, name) if name else (session_id,)).fetchall()
        if not rows:
            raise NotFoundError(f"no session {session_id!r} in {self.store.root}")
        if len(rows) > 1:
            where = ", ".join(f"{c} {s}" for c, s in rows)
            raise UsageError(f"session {session_id!r} is in {len(rows)} scenarios ({where}); "
                             "name the customer")
        return rows[0][0], rows[0][1]


_instances: weakref.WeakKeyDictionary[Store, Index] = weakref.WeakKeyDictionary()


def for_store(store: Store) -> Index:
    """The store's shared :class:`Index` (one per Store object), for the write path."""
    index = _instances.get(store)
    if index is None:
        index = _instances[store] = Index(store)
    return index


__all__ = ["DEFAULT_ACTIVE_TIMEOUT", "SORT_FIELDS", "Index", "for_store", "fts_query",
           "parse_duration", "satisfaction", "version_row"]
