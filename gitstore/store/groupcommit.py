"""Group commit: turns that several writers send to one scenario at once are
written together, as one pack and one branch update.

A turn (:meth:`gitstore.store.session.Session.append_turn`) that finds the
customer's writer lock free takes it and is written as any write is. One that
finds the lock held *spools* its request and then waits for the lock::

    <root>/.gitstore/spool/<customer>/v<N>/<stamp>-<pid>-<token>.turn

(the scrubbed turn, its message, author, time, idempotency key; JSON, mode
0600). Whoever holds the lock to add a turn (the *leader*) first claims the
requests spooled for its scenario (renames them ``.claimed``), then makes one
commit per turn, in the order they were asked for, each on the one before and
each through the secrets screen and the whole pipeline
(:class:`~gitstore.store.writer.Writer`); writes them all as one pack (three
fsyncs), moves the branch once with a compare-and-swap, and runs the steps
after a commit once (one catalog record, one maintenance count, an audit record
per commit). It leaves each claimed request's outcome (``.done``: the
:class:`~gitstore.store.plan.Written`, or "write it yourself") and removes the
claim. A leader that finds nothing spooled while the spool is in use (it changed
within :data:`BUSY`; normally because other writers are active) looks again for
about :data:`LINGER` (2 ms) before it writes alone: the writers the last group
answered are making their next turns, and waiting for them makes the next group
bigger. A writer that has waited already never lingers; a lone writer lingers
only right after its own use of the spool (having had to wait for its own
background maintenance, or having removed a stale file from it). A request of
another configuration is read once per group. A waiter that gets the lock
returns the outcome it finds. It finds none when its turn failed a check, or its
leader died: then it writes the turn itself
(leading the turns spooled meanwhile), so it raises its own error, exactly as if
it had never waited.

Invariants:

* each commit is one turn with its own message, author, time and idempotency
  key, as a turn written alone; only the pack and the branch update are shared;
* an acknowledged turn is committed and durable: a leader writes an outcome only
  after the branch moved;
* a request is claimed under the writer lock, so by one leader at a time; a claim
  the next lock holder finds is a dead leader's, and claiming it again is safe:
  every turn carries an idempotency key (its content's, unless the caller gave
  one), and a turn committed already is returned, never written twice;
* a writer that gives up waiting (its lock timeout) withdraws its request; when a
  leader has claimed it already, the writer waits for that leader's outcome (at
  most another lock timeout; past that its error says the turn may yet be
  written), so a plain timeout never comes back for a turn a leader then writes;
* a request whose writer died before a leader claimed it is written by the next
  leader while its writer would still have waited (it was sent, like a write
  acknowledged to no one; a retry returns that commit), and dropped after that
  (:meth:`Spool.claim`): an old spool file never lands in a later session;
* a turn a dead leader may have written is looked for among the scenario's
  newest :data:`~gitstore.store.writer.IDEMPOTENCY_SCAN` commits, however big
  its group was;
* only turns of unencrypted customers in the current layout, in stores that do
  not hash names, from handles of one profile
  (:attr:`~gitstore.store.context.StoreContext.profile`: the same configuration,
  no hooks or clock passed in) are written together, and never on a sealed tip;
  every other write takes the lock alone, as before. A spool file that is not a
  request (damaged, a directory, a FIFO, a link) is removed, never waited on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import stat
import time
from collections.abc import Callable, Collection, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

from gitstore.core import files as sessionfiles
from gitstore.core.commits import ChangeKind, CommitInfo
from gitstore.core.names import MANIFEST
from gitstore.core.versions import Scenario
from gitstore.errors import ConflictError, GitStoreError
from gitstore.git import repo as backend
from gitstore.git.locking import private_dirs
from gitstore.store import replays
from gitstore.store.authorship import Authorship, authorship
from gitstore.store.context import CustomerContext
from gitstore.store.plan import Build, Made, Written
from gitstore.store.replays import Intent
from gitstore.store.writer import MAX_ATTEMPTS, Writer

__all__ = ["BATCH", "Request", "Spool", "append"]

BATCH = 16
"""The most turns one leader writes together (:data:`~gitstore.store.writer.RETRY_SCAN`:
a turn sent again finds its group's first commit)."""
STALE = 3600.0
"""Seconds after which an outcome nobody came for, or a request file left half
written, is removed."""
GRACE = 5.0
"""Seconds a request outlives its writer's wait (see :meth:`Spool.claim`)."""
BUSY = 0.05
"""Seconds since the spool last changed within which it counts as in use (normally:
other writers are active)."""
LINGER = 0.002
"""Seconds a leader that found no turn keeps looking for one while the spool is in
use (the writers a group just answered are making their next turns; waiting for
them makes the next group bigger: four writers on one session, about 160 -> 210
turns/s). Its last look may end up to one :data:`LINGER_STEP` and one claim later."""
LINGER_STEP = 0.00025
"""Seconds between a lingering leader's looks at the spool."""


class Request(NamedTuple):
    """A turn to add, as its writer checked it: the scrubbed turn, the commit
    message and redaction note, the authorship (author resolved), the store agent
    that asked (the audit record's actor), when it was asked (ns since the epoch:
    the order of a group), how long its writer waits for the lock (seconds) and
    the asking handle's profile."""

    turn: dict[str, Any]
    message: str | None
    redacted: str | None
    by: Authorship
    actor: str
    stamp: int
    wait: float
    profile: str | None

    def to_json(self) -> dict[str, Any]:
        by = self.by
        return {"turn": self.turn, "message": self.message, "redacted": self.redacted,
                "author": str(by.author) if by.author else None,
                "time": by.time.isoformat() if by.time else None,
                "key": by.idempotency_key,
                "window": by.idempotency_window.total_seconds()
                if by.idempotency_window is not None else None,
                "actor": self.actor, "stamp": self.stamp, "wait": self.wait,
                "profile": self.profile}

    @classmethod
    def from_json(cls, data: Any) -> Request:
        """The request a spool file holds, checked as its writer checked it
        (ValueError, KeyError, TypeError or a GitStoreError: damaged)."""
        if not isinstance(data["turn"], dict) or not all(
                isinstance(data[k], str) or data[k] is None
                for k in ("message", "redacted", "profile", "author", "time", "key")) or \
                not isinstance(data["actor"], str) or type(data["stamp"]) is not int or \
                not 0 < data["stamp"] < 1 << 63 or \
                not isinstance(data["wait"], int | float) or not data["wait"] >= 0 or \
                not isinstance(data["window"], int | float | None):
            raise TypeError("not a spooled turn")
        by = authorship(data["author"], data["time"], data["key"],
                        Intent(ChangeKind.TURN, content=data["turn"]))
        if data["window"] is not None:
            by = by._replace(idempotency_window=timedelta(seconds=data["window"]))
        return cls(data["turn"], data["message"], data["redacted"], by, data["actor"],
                   data["stamp"], float(data["wait"]), data["profile"])


BuildOf = Callable[[Request], Build]
"""Makes a request's plan builder (the session's turn logic)."""


def append(writer: Writer, scenario: Scenario, request: Request, build_of: BuildOf
           ) -> Written:
    """Write a turn, together with the turns other writers are waiting to add to
    the scenario (see the module docstring)."""
    customer = writer.customer
    if not writer.group_commit or not batchable(customer, request):
        return writer.write(scenario, build_of(request), request.by)
    try:
        spool = Spool(customer, scenario)
        with _lock_if_free(customer) as free:
            if free:
                return _lead(writer, scenario, spool, request, None, build_of)
        try:
            ticket = spool.put(request)
        except OSError:  # no spool (full, read-only): wait for the lock alone
            return writer.write(scenario, build_of(request), request.by)
        return _wait(writer, scenario, spool, request, ticket, build_of)
    finally:
        writer.start_maintenance()


def batchable(customer: CustomerContext, request: Request) -> bool:
    """Whether this turn may be written with others' (see the module docstring)."""
    store = customer.store
    return request.profile is not None and customer.shared and \
        not store.config.hash_names and \
        customer.exists and not customer.encrypted and \
        customer.repo.layout_setting() == 2


@contextlib.contextmanager
def _lock_if_free(customer: CustomerContext) -> Iterator[bool]:
    """Hold the writer lock for the block if no one holds it now (yields True),
    else yield False at once, holding nothing."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(customer.locked(0))
    except ConflictError:
        yield False
        return
    with stack:
        yield True


def _wait(writer: Writer, scenario: Scenario, spool: Spool, request: Request, ticket: str,
          build_of: BuildOf) -> Written:
    """A spooled turn's writer: waits until a leader has written its turn (its
    outcome appears: the branch has moved, so it returns at once, without the
    lock) or the lock is free (then it takes the outcome, or leads itself)."""
    customer = writer.customer
    try:
        done = _until_done_or_free(writer, scenario, spool, request, ticket, build_of,
                                   request.wait)
    except BaseException:
        spool.withdraw(ticket)
        raise
    if done is not None:
        return done
    if spool.withdraw(ticket):  # timed out before any leader took the turn: nothing written
        raise ConflictError(f"timed out after {request.wait:g}s waiting for another writer "
                            f"to {customer.name}")
    done = _until_done_or_free(writer, scenario, spool, request, ticket, build_of,
                               request.wait)
    if done is not None:  # the leader that took it is done with it
        return done
    raise ConflictError(f"timed out waiting for another writer to {customer.name}, which "
                        "had taken this turn to write it; send the same turn again to "
                        "learn whether it was written")


def _until_done_or_free(writer: Writer, scenario: Scenario, spool: Spool, request: Request,
                        ticket: str, build_of: BuildOf, wait: float) -> Written | None:
    """Wait at most ``wait`` seconds for the ticket's outcome (returned at once,
    without the lock) or the lock (then the outcome, or this writer leads); None
    when neither came."""
    held = False
    try:
        with writer.customer.locked(wait if math.isfinite(wait) else None,  # inf: forever
                                    until=lambda: spool.outcome(ticket)) as done:
            if done is not None:
                return done
            held = True
            return spool.outcome(ticket) or _lead(writer, scenario, spool, request, ticket,
                                                  build_of)
    except ConflictError:
        if held:
            raise
        return None


def _lead(writer: Writer, scenario: Scenario, spool: Spool, mine: Request,
          ticket: str | None, build_of: BuildOf) -> Written:
    """Under the lock: write ``mine`` and the turns spooled for the scenario."""
    if ticket is not None:
        spool.forget(ticket)  # written below, with the others
    claimed: list[Claimed] = []
    outcomes: dict[str | None, Written | GitStoreError] = {}
    try:
        busy = ticket is None and spool.busy()  # before the claim's own clean-up
        passed: set[str] = set()
        claimed = spool.claim(BATCH - 1, mine.profile, passed=passed)
        if not claimed and busy:
            claimed = spool.linger(BATCH - 1, mine.profile, passed)
        if not claimed:  # alone; a leader that died may have written its spooled turn
            return writer.write_held(scenario, build_of(mine), mine.by,
                                     deep=ticket is not None)
        # a spooled turn of its own may be in a group a leader wrote and died after
        group = sorted([Claimed(None, mine, ticket is not None), *claimed],
                       key=lambda c: c.request.stamp)

        def more(limit: int) -> list[Claimed]:  # turns spooled while the group was built
            found = spool.claim(limit, mine.profile, skip={c.ticket for c in claimed},
                                passed=passed)
            claimed.extend(found)
            return found

        outcomes = _write_group(writer, scenario, group, build_of, more)
    finally:  # a turn left without an outcome is written by its own writer
        for other in claimed:
            done = outcomes.get(other.ticket)
            if other.ticket is not None:
                spool.finish(other.ticket, done if isinstance(done, Written) else None)
    done = outcomes[None]
    if isinstance(done, GitStoreError):
        raise done
    return done


class Claimed(NamedTuple):
    """A request in a group: its ticket (None: the leader's own), and whether a
    leader that died may have written it already (then its key is looked for
    deeper: :meth:`~gitstore.store.writer.Writer.earlier`)."""

    ticket: str | None
    request: Request
    orphan: bool


def _members(group: list[Claimed], more: Callable[[int], list[Claimed]]
             ) -> Iterator[Claimed]:
    """The group's requests, then those ``more`` claims meanwhile (the group grows)."""
    i = 0
    while True:
        while i < len(group):
            yield group[i]
            i += 1
        extra = more(BATCH - len(group)) if len(group) < BATCH else []
        if not extra:
            return
        group.extend(extra)


def _write_group(writer: Writer, scenario: Scenario, group: list[Claimed], build_of: BuildOf,
                 more: Callable[[int], list[Claimed]]) -> dict[str | None, Written | GitStoreError]:
    """Make a commit per request on the one before, write them as one pack and
    move the branch once; a request that fails a check gets its error as its
    outcome and the next builds on the turn before it. Turns spooled while the
    group is made (``more``) join it, up to :data:`BATCH`."""
    customer, store = writer.customer, writer.store
    repo = customer.repo
    writer.preflight(repo, scenario)
    anchor = writer.audit_anchor()
    for _ in range(MAX_ATTEMPTS):
        start = cur = writer.tip(repo, scenario)
        writer.require_keys(repo, start)
        outcomes: dict[str | None, Written | GitStoreError] = {}
        made: list[Made] = []
        actors: list[str] = []
        by_key: dict[str, tuple[Written, Request]] = {}
        again: list[tuple[Written, str]] = []
        for ticket, request, orphan in _members(group, more):
            by = request.by
            if by.idempotency_window is not None and by.time is None:
                by = by._replace(time=store.now())  # the window's and the commit's
            key = by.idempotency_key
            try:
                seen = by_key.get(key) if key else None
                if seen is not None:  # a key this group wrote: the same turn, or refused
                    if key is not None and not replays.same_turn(seen[1].turn, request.turn):
                        raise replays.reused(key, "turn with other content", seen[0].commit,
                                             seen[0].version)
                    outcomes[ticket] = seen[0]._replace(replayed=True)
                    again.append((seen[0], request.actor))
                    continue
                earlier = writer.earlier(repo, scenario.branch_ref, key, by, deep=orphan,
                                         actor=request.actor) if key else None
                if earlier is not None:
                    outcomes[ticket] = earlier
                    continue
                plan = writer.screen(build_of(request)(cur), cur.session_id, by)
                one = writer.make(repo, cur, cur.session_id, plan, by, anchor=anchor)
            except GitStoreError as exc:
                outcomes[ticket] = exc
                continue
            if isinstance(one, Written):  # unchanged: nothing to commit
                outcomes[ticket] = one
                continue
            made.append(one)
            actors.append(request.actor)
            outcomes[ticket] = written = Written(one.commit, one.plan.version, one.plan.change,
                                                 one.digest, one.completeness, one.plan.turn)
            if key:
                by_key[key] = (written, request)
            prepared = one.prepared
            logical = prepared.logical[0] if prepared.logical is not None else \
                sessionfiles.updated(one.stored, {MANIFEST: prepared.manifest})
            cur = cur._replace(tip=one.commit, files=logical, info=CommitInfo(
                one.commit, prepared.tree, (cur.tip,), one.author, store.config.committer,
                one.time, one.offset, one.message, author_time=one.time,
                author_offset=one.offset))
        if not made:
            return outcomes
        repo.write_commits_pack([(m.prepared, m.data) for m in made])
        last = made[-1]
        try:
            repo.update_ref(scenario.branch_ref, cur.tip, start.tip,
                            f"gitstore: {last.plan.summary} (a group of {len(made)} turns)")
        except backend.RefConflict:
            continue
        kept = min((min(m.plan.changed_turns or (0,)) for m in made), default=0)
        size = sum(len(d) for m in made for _, d in m.prepared.objects)
        warnings = writer.after_commit(last.plan, [m.commit for m in made], last.stored,
                                       last.parsed, size, kept, start.tip, actors)
        for first, actor in again:
            with contextlib.suppress(GitStoreError, OSError):
                customer.audit("write:replayed", rev=str(first.version), commit=first.commit,
                               detail=f"idempotency key matched {first.commit[:12]}",
                               actor=actor)
        return {t: o._replace(warnings=warnings) if isinstance(o, Written) and not o.replayed
                else o for t, o in outcomes.items()}
    raise writer.kept_moving(scenario)


class Spool:
    """The requests waiting to be written to one scenario (see the module docstring).

    Files: ``<ticket>.turn`` (asked), ``<ticket>.claimed`` (a leader has it),
    ``<ticket>.done`` (its outcome). Every step is one rename or unlink."""

    def __init__(self, customer: CustomerContext, scenario: Scenario) -> None:
        self.dir = customer.store.spool_dir / customer.name / f"v{scenario.major}"

    def _path(self, ticket: str, state: str) -> Path:
        return self.dir / f"{ticket}.{state}"

    def put(self, request: Request) -> str:
        """Spool ``request``; returns its ticket."""
        private_dirs(self.dir, levels=3)  # spool/<customer>/v<N>
        ticket = f"{request.stamp:020d}-{os.getpid()}-{secrets.token_hex(4)}"
        _write_new(self.dir, self._path(ticket, "turn"), request.to_json())
        return ticket

    def claim(self, limit: int, profile: str | None, skip: Collection[str | None] = (),
              passed: set[str] | None = None) -> list[Claimed]:
        """Claim up to ``limit`` requests of ``profile``, oldest first, with those
        a dead leader claimed (the caller holds the writer lock). Removed instead:
        a request past its writer's wait (:data:`GRACE` after it, twice that wait
        once claimed: its writer has given up, or died), a file that is not a
        request (its writer, finding no outcome, writes its turn itself), and
        outcomes and half-written files older than :data:`STALE`. ``passed``: the
        tickets of other profiles' requests, skipped; those this call reads are
        added (so a caller that looks again reads each once)."""
        try:
            names = sorted(os.listdir(self.dir))
        except OSError:
            return []
        found: list[Claimed] = []
        now = time.time()
        for name in names:
            ticket, _, state = name.rpartition(".")
            path = self.dir / name
            if state in ("done", "tmp"):
                _remove_if_stale(path, now)
                continue
            if state not in ("turn", "claimed") or len(found) >= limit or ticket in skip \
                    or (passed is not None and ticket in passed):
                continue
            request = _read_request(path)
            if request is None:
                continue
            waits = 1 if state == "turn" else 2
            if now > request.stamp / 1e9 + waits * request.wait + GRACE:
                _remove(path)
                continue
            if request.profile != profile:
                if passed is not None:
                    passed.add(ticket)
                continue  # its writer's own configuration: it writes the turn itself
            if state == "turn":
                try:
                    os.replace(path, self._path(ticket, "claimed"))
                except OSError:
                    continue  # withdrawn meanwhile
            found.append(Claimed(ticket, request, state == "claimed"))
        return found

    def busy(self) -> bool:
        """Whether the spool was used just now (its directory changed within
        :data:`BUSY`; normally other writers, so more turns are likely on their
        way). A change time ahead of the clock counts as long ago."""
        try:
            age = time.time() - os.stat(self.dir).st_mtime
        except OSError:
            return False
        return 0 <= age < BUSY

    def linger(self, limit: int, profile: str | None, passed: set[str]) -> list[Claimed]:
        """Claim as :meth:`claim` does, looking again for about :data:`LINGER` until
        a first request comes. ``passed``: tickets of other profiles' requests,
        read once and skipped after (see :meth:`claim`)."""
        deadline = time.monotonic() + LINGER
        while True:
            time.sleep(LINGER_STEP)
            found = self.claim(limit, profile, passed=passed)
            if found or time.monotonic() >= deadline:
                return found

    def finish(self, ticket: str, written: Written | None) -> None:
        """Leave a claimed request's outcome (None: its writer writes it) and drop the
        claim. An outcome that cannot be written leaves the writer to find the turn
        by its idempotency key."""
        with contextlib.suppress(OSError):
            _write_new(self.dir, self._path(ticket, "done"),
                       {"written": written.to_json() if written is not None else None})
        with contextlib.suppress(OSError):
            self._path(ticket, "claimed").unlink()

    def outcome(self, ticket: str) -> Written | None:
        """What a leader did with this request (None: nothing; write it yourself).
        The outcome is consumed."""
        path = self._path(ticket, "done")
        try:
            data = json.loads(path.read_bytes())["written"]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):
            data = None
        path.unlink(missing_ok=True)
        if not isinstance(data, dict):
            return None
        try:
            return Written.from_json(data)
        except (KeyError, TypeError, GitStoreError):
            return None

    def withdraw(self, ticket: str) -> bool:
        """Take back a request no leader has claimed (True), else False."""
        try:
            self._path(ticket, "turn").unlink()
        except FileNotFoundError:
            return False
        return True

    def forget(self, ticket: str) -> None:
        """Remove every file of a request (its writer writes it now)."""
        for state in ("turn", "claimed", "done"):
            self._path(ticket, state).unlink(missing_ok=True)


def _write_new(directory: Path, path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all (a private temporary file renamed)."""
    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(data, ensure_ascii=False).encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_request(path: Path) -> Request | None:
    """The request in a spool file; None when it was withdrawn, or is no request
    (then it is removed). Never blocks: the file is opened without following a
    link or waiting on a FIFO, and must be a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # a link (ELOOP) is no request; anything else may pass
        if exc.errno == errno.ELOOP:
            _remove(path)
        return None
    try:
        regular: bool | None = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = None
    if not regular:
        os.close(fd)
        if regular is False:  # a directory, a FIFO
            _remove(path)
        return None
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_REQUEST + 1)
        except OSError:
            return None  # left for the next leader (its writer writes it meanwhile)
    try:
        return Request.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError, GitStoreError):
        _remove(path)
        return None


MAX_REQUEST = 64 * 1024 * 1024
"""No spool file is read past this (a turn is bounded by max_document_bytes)."""


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()


def _remove_if_stale(path: Path, now: float) -> None:
    with contextlib.suppress(OSError):
        if now - path.lstat().st_mtime > STALE:
            _remove(path)
