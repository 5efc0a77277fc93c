"""The index's SQLite file: schema, connections, damage handling, write transactions.

Invariants: the file is a cache, never a source of truth, so it is never repaired in
place. A file that SQLite cannot read (on opening, or later: :func:`guarded`), that
fails ``quick_check``, that has another ``application_id`` or ``user_version`` than
:data:`APPLICATION_ID`/:data:`SCHEMA_VERSION` (version 3, which lacks only the index
of ``gitstore list``, gets it in place), or lacks a table, is moved aside
(renamed ``<name>.unusable-<UTC stamp>-<pid>`` with its ``-wal``/``-shm``; never
deleted) and replaced by an empty one, which the caller fills from git. A file is
only written after it has been read and found to be ours (a foreign file is set
aside untouched). Errors of the environment (locks, permissions, a full disk) are
not damage: they raise :class:`~gitstore.errors.StorageError` and leave the file.

``quick_check`` reads the whole file, so it does not run on every query: a
:class:`Database` runs it on opening when the file was last checked (row ``checked``
of table ``state``: boot id and time) on another boot, more than
:data:`CHECK_SECONDS` ago, or never; damage met between checks is found by the
query that reads it (:func:`guarded`). So a query costs what it reads, not the size
of the file.

Privacy: the file holds every customer's turn text, so it is created with mode 0600
(and its ``-wal``/``-shm``, which SQLite creates with the database's mode), in a
directory created 0700, as the customer repositories are; a stricter umask wins.

One connection per thread (autocommit; explicit ``BEGIN IMMEDIATE`` transactions in
:meth:`Database.write`), WAL journal, so processes and threads can share the file;
writers serialise on SQLite's lock.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from gitstore.catalog.journal import boot_id
from gitstore.catalog.rows import COLUMNS
from gitstore.core import lazy
from gitstore.errors import StorageError

if TYPE_CHECKING:
    import sqlite3
else:  # loaded by the first use of the file, not by importing the catalog
    sqlite3 = lazy.module("sqlite3")

__all__ = ["APPLICATION_ID", "INDEX_FILE", "SCHEMA_VERSION", "SELECT", "TABLES", "Database",
           "guarded"]

SCHEMA_VERSION = 4
APPLICATION_ID = 0x67697473  # "gits"
INDEX_FILE = "index.sqlite"
WAL_LIMIT = 1024 * 1024
"""The size a checkpoint truncates the index's write-ahead log to (bytes)."""
#: The version columns, for ``SELECT`` and ``INSERT`` lists.
SELECT = ", ".join(COLUMNS)
#: The longest the file goes without a ``quick_check`` (seconds); a reboot checks too.
CHECK_SECONDS = 600

_SCHEMA = """
CREATE TABLE refs (customer TEXT NOT NULL, ref TEXT NOT NULL, target TEXT NOT NULL,
  PRIMARY KEY (customer, ref)) WITHOUT ROWID;
CREATE TABLE fingerprints (customer TEXT PRIMARY KEY, fp TEXT NOT NULL,
  hooked INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
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
CREATE INDEX versions_listed ON versions (latest, updated DESC, customer, major, minor, patch,
  version, status, completion_status, provider, completeness, success, satisfaction, turns);
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
#: The index that answers ``gitstore list`` (newest first) alone, in order: the
#: columns of its table, so no row is looked up (schema version 4).
_LISTED = next(s for s in _SCHEMA.split(";") if "versions_listed" in s)
#: Every table of the schema (``turns_fts`` rows are keyed by ``turns.id``).
TABLES = ("refs", "fingerprints", "state", "scenarios", "versions", "services", "turns",
          "turns_fts")

_T = TypeVar("_T")
_P = ParamSpec("_P")


class _Unusable(Exception):
    """The index file exists but is not a usable index of this schema."""


def _not_damage(exc: sqlite3.DatabaseError) -> bool:
    """Errors of the environment (locks, permissions, disk), not of the file."""
    text = str(exc).lower()
    return any(w in text for w in ("locked", "busy", "readonly", "read-only", "disk i/o",
                                   "full", "unable to open", "permission"))


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (less under a stricter umask) unless it
    exists: SQLite would create it 0644, and gives its ``-wal``/``-shm`` files the
    mode of the database file. An empty file is an empty SQLite database."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # sqlite3.connect reports it (an environment error, not damage)
    os.close(fd)


def _check_due(cx: sqlite3.Connection) -> bool:
    """Whether the file's last ``quick_check`` is too old (see the module docstring)."""
    row = cx.execute("SELECT value FROM state WHERE key = 'checked'").fetchone()
    try:
        boot, stamp = str(row[0]).split(" ")
        age = time.time_ns() - int(stamp)
    except (TypeError, ValueError):
        return True
    return boot != boot_id() or not 0 <= age < CHECK_SECONDS * 1_000_000_000


def _checked_now(cx: sqlite3.Connection) -> None:
    """Note a passed check, unless another process holds the write lock (then the
    next process checks again): a read never waits for a writer here."""
    try:
        cx.execute("PRAGMA busy_timeout = 0")
        cx.execute("INSERT OR REPLACE INTO state VALUES ('checked', ?)",
                   (f"{boot_id()} {time.time_ns()}",))
    except sqlite3.OperationalError as exc:
        if not _not_damage(exc):
            raise
    finally:
        cx.execute("PRAGMA busy_timeout = 30000")


class Database:
    """The SQLite file at ``path``. ``moved_aside`` lists files found unusable and set
    aside; ``problems`` collects one line per trouble worth telling the user (the sync
    adds its own). In a directory this process cannot write (a read-only store) it
    works on a private copy of the file instead (:attr:`copied`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.moved_aside: list[Path] = []
        self.problems: list[str] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._checked = False
        self.copied = False
        """Whether this works on a private copy (the store is read-only here)."""

    @property
    def cx(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the file checked) on first use."""
        cx: sqlite3.Connection | None = getattr(self._local, "cx", None)
        if cx is None:
            cx = self._local.cx = self._open()
        return cx

    def in_place(self) -> bool:
        """Whether this works on the store's own file, not on a private copy (opens it)."""
        return self.cx is not None and not self.copied

    def close(self) -> None:
        """Close this thread's connection (the next use of :attr:`cx` reopens)."""
        cx = getattr(self._local, "cx", None)
        if cx is not None:
            cx.close()
            self._local.cx = None

    def _connect(self) -> sqlite3.Connection:
        _create_private(self.path)
        cx = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                             check_same_thread=False)
        cx.row_factory = sqlite3.Row
        return cx

    def _open(self) -> sqlite3.Connection:
        if self.path.parent.is_dir() and not os.access(self.path.parent, os.W_OK):
            self._private_copy()  # a read-only store: queries read, refresh, in a copy
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        cx = None
        try:
            cx = self._connect()
            self._init(cx)  # reads before it writes: a foreign file is set aside untouched
            with self._lock:
                if not self._checked and _check_due(cx):
                    row = cx.execute("PRAGMA quick_check").fetchone()
                    if row is None or row[0] != "ok":
                        raise _Unusable(f"quick_check: {row[0] if row else 'no answer'}")
                    _checked_now(cx)
                self._checked = True
        except (sqlite3.DatabaseError, _Unusable) as exc:
            if cx is not None:
                cx.close()
            if isinstance(exc, sqlite3.OperationalError) and _not_damage(exc):
                raise StorageError(f"cannot use the index {self.path}: {exc}") from None
            self.move_aside(str(exc))
            cx = self._connect()
            self._init(cx)
            self._checked = True
        cx.execute("PRAGMA journal_mode=WAL")
        cx.execute("PRAGMA synchronous=NORMAL")
        # a checkpoint leaves the write-ahead log at most this size (SQLite keeps
        # it at its largest otherwise: 4 MiB beside a 1 MiB index after 1,000 turns)
        cx.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        return cx

    def _private_copy(self) -> None:
        """Work on a copy of the file (with its write-ahead log) in a private temporary
        directory, removed when the process exits: the index of a store this process
        cannot write is still brought up to date with git and queried, and the store
        is left as it is."""
        with self._lock:
            if self.path.parent.is_dir() and not os.access(self.path.parent, os.W_OK):
                try:
                    work = Path(tempfile.mkdtemp(prefix="gitstore-index-"))
                    atexit.register(shutil.rmtree, work, True)
                    for suffix in ("", "-wal"):
                        with contextlib.suppress(FileNotFoundError):
                            shutil.copyfile(f"{self.path}{suffix}",
                                            work / f"{INDEX_FILE}{suffix}")
                except OSError as exc:
                    raise StorageError(f"cannot copy the index {self.path} of a read-only "
                                       f"store to work on: {exc.strerror}") from None
                self.path, self.copied = work / INDEX_FILE, True

    def _init(self, cx: sqlite3.Connection) -> None:
        """Create the schema in an empty file; refuse a file that is not ours."""
        if cx.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION and \
                cx.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
            names = {r[0] for r in cx.execute("SELECT name FROM sqlite_master")}
            if names >= set(TABLES):
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
            elif version == 3 and cx.execute("PRAGMA application_id").fetchone()[0] == \
                    APPLICATION_ID:  # 4 covers `gitstore list`'s table with one index
                cx.execute("DROP INDEX IF EXISTS versions_updated")
                cx.execute(_LISTED)
                cx.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise _Unusable(f"schema version {version}, expected {SCHEMA_VERSION}")
            cx.execute("COMMIT")
        except BaseException:
            cx.execute("ROLLBACK")
            raise

    def move_aside(self, why: str) -> None:
        """Rename the file (and its ``-wal``/``-shm``) aside; the next :attr:`cx` is fresh."""
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
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``; rolled back on error)."""
        cx = self.cx
        cx.execute("BEGIN IMMEDIATE")
        try:
            yield cx
        except BaseException:
            cx.execute("ROLLBACK")
            raise
        cx.execute("COMMIT")

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row in a canonical order (no row ids): equal indexes dump equal."""
        cx = self.cx
        out = {}
        for table, cols in (("refs", "*"), ("scenarios", "*"), ("versions", SELECT),
                            ("services", "*")):
            out[table] = [tuple(r) for r in cx.execute(f"SELECT {cols} FROM {table}")]
        out["turns"] = [tuple(r) for r in cx.execute(
            "SELECT t.customer, t.scenario, t.turn_id, t.timestamp, t.digest, f.query, "
            "f.response FROM turns t LEFT JOIN turns_fts f ON f.rowid = t.id")]
        out["fts_rows"] = [(cx.execute("SELECT count(*) FROM turns_fts").fetchone()[0],)]
        return {k: sorted(v, key=repr) for k, v in out.items()}


class HasDatabase(Protocol):
    """An object whose methods :func:`guarded` may wrap."""

    @property
    def db(self) -> Database: ...


_S = TypeVar("_S", bound=HasDatabase)


def guarded(method: Callable[Concatenate[_S, _P], _T]) -> Callable[Concatenate[_S, _P], _T]:
    """If SQLite finds the file damaged during ``method``, set it aside and run the
    method once more on a fresh file (which the method's own refresh fills from git).
    Any SQLite error left is a :class:`~gitstore.errors.StorageError`."""

    @functools.wraps(method)
    def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        db = self.db
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if _not_damage(exc):
                raise StorageError(f"index {db.path}: {exc}") from None
            db.close()
            db.move_aside(str(exc))
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"index {db.path}: {exc}") from None

    return wrapper
