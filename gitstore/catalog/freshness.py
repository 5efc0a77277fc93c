"""Which customers a query must look at before it answers: the index's freshness.

Three sources, cheapest first (:func:`plan`):

* the change journal (:mod:`gitstore.catalog.journal`): the customers written since
  the position the index has read up to: by gitstore, and by plain git in every
  repository whose journal hook is installed (a *hooked* customer);
* the root directory's identity and mtime (:func:`root_fingerprint`): a customer
  repository created, removed, renamed or quarantined changes it, and only then is
  the root listed again;
* the ref storage of every customer that is not hooked (:func:`fingerprint`: a few
  ``stat`` calls each), since plain git may have written there without a word.

Everything else is a *full scan*: every customer's fingerprint (and hook) looked at
again. It runs when the index has no state yet, when the journal cannot say what
happened (replaced, removed, cut short), after a reboot (journal lines not yet on
disk may be lost), and at least every :data:`FULL_SCAN_SECONDS` as a fallback for
writers nothing reports (a hook removed since the last scan, a libgit2 program).

Invariant: a customer leaves the set of those looked at only after its refs were
compared with the index *after* the last journal line naming it was written, and
unhooked customers are looked at on every query; so after a plain ``git push``
(into any repository) or any gitstore write, the next query answers from the new
refs. The state (table ``state``) is advisory: a lost or odd state is a full scan.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from gitstore.catalog import journal
from gitstore.catalog.journal import Position
from gitstore.core.names import MERGED

if TYPE_CHECKING:
    import sqlite3

__all__ = ["FULL_SCAN_SECONDS", "RACY_NS", "Plan", "State", "fingerprint", "plan",
           "root_fingerprint"]

#: A ref change this recent may hide behind an equal mtime (git's "racy" rule).
RACY_NS = 2_000_000_000
#: The longest a query goes without a full scan.
FULL_SCAN_SECONDS = 600
_REF_PLACES = ("/refs/heads", "/refs/tags", "/packed-refs", "/" + MERGED.rstrip("/"))


def fingerprint(repo_dir: str | Path) -> str | None:
    """Identity and mtime of the places refs live (``refs/heads``, ``refs/tags``,
    ``packed-refs``, the merge markers): git and libgit2 change a ref by renaming a
    lock file into place, which changes its directory's mtime. None when any of them
    changed within the last two seconds (git's "racy" rule: a change in the same clock
    tick could hide behind an equal mtime), so such a customer is read again."""
    base = str(repo_dir)
    parts = []
    newest = 0
    for rel in _REF_PLACES:
        try:
            st = os.stat(base + rel)
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


def root_fingerprint(root: Path) -> str | None:
    """Identity and mtime of the store root (None: unreadable, or changed within the
    last two seconds, so the next query lists it again)."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    if time.time_ns() - st.st_mtime_ns < RACY_NS:
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}"


class State(NamedTuple):
    """What the index last learned about the store as a whole (table ``state``):
    how far it read the journal, the root's fingerprint when it last listed it, when
    it last scanned everything, and on which boot."""

    journal: Position | None
    root: str
    scanned: int
    boot: str

    @classmethod
    def load(cls, cx: sqlite3.Connection) -> State:
        got = dict(cx.execute("SELECT key, value FROM state").fetchall())
        try:
            scanned = int(got.get("scanned", "0"))
        except ValueError:
            scanned = 0
        return cls(Position.parse(got.get("journal")), got.get("root", ""), scanned,
                   got.get("boot", ""))

    def save(self, cx: sqlite3.Connection) -> None:
        """Within the caller's write transaction."""
        values = {"root": self.root, "scanned": str(self.scanned), "boot": self.boot}
        if self.journal is not None:
            values["journal"] = str(self.journal)
        cx.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", sorted(values.items()))


class Plan(NamedTuple):
    """The customers one refresh looks at (``names``), those it drops (``gone``), and
    the state to keep once they are done (None with ``full``: the scan sets it; else
    None when it is the state kept already, so a query that finds nothing new writes
    nothing: no transaction, no sync of the index file)."""

    names: list[str]
    gone: list[str]
    state: State | None
    full: bool = False


def plan(root: Path, cx: sqlite3.Connection, listing: Callable[[], Iterable[str]], *,
         full_scan_seconds: float = FULL_SCAN_SECONDS) -> Plan:
    """The work of the next refresh of the whole store. ``listing`` (the store's
    customers) is called only when the root changed; see the module docstring."""
    state = State.load(cx)
    now = time.time_ns()
    boot = journal.boot_id()
    if (state.journal is None or state.boot != boot or not state.scanned
            or now - state.scanned > full_scan_seconds * 1e9):
        return Plan([], [], None, full=True)
    read = journal.read(root, state.journal)
    if read is None:
        return Plan([], [], None, full=True)
    names, position = read
    gone: set[str] = set()
    root_fp = root_fingerprint(root)
    if root_fp is None or root_fp != state.root:  # only then every known customer is read
        known = {c for (c,) in cx.execute("SELECT customer FROM fingerprints")}
        present = set(listing())
        names |= present - known
        gone = known - present
    names |= {c for (c,) in cx.execute("SELECT customer FROM fingerprints WHERE hooked = 0")}
    names -= gone
    new = State(position, root_fp or "-", state.scanned, state.boot)
    return Plan(sorted(names), sorted(gone), new if new != state else None)


def full_scan_state(root: Path) -> State:
    """The state a full scan starting now keeps when it is done: taken before it
    reads anything (and after starting a new journal if the old one is large), so
    whatever changes during the scan is looked at again next time."""
    position = journal.rotate(root)
    return State(position, root_fingerprint(root) or "-", time.time_ns(), journal.boot_id())
