"""The per-customer access log: append-only and tamper-evident.

Every read and write of one customer through the API and the CLI appends one
record to ``<root>/<customer>/gitstore-audit.jsonl`` (inside the customer's bare
repository directory, outside git's object store, so it never mixes customers
and travels with the repository when it is moved). An answer of a store-wide
query (``list``, ``stats``, ...) is recorded once, however many customers it
showed, in the store's answer log (:func:`record_answer`; the format, the
receipts that carry it into each customer's log and their checks are
:mod:`gitstore.store.answers`'); :meth:`AuditLog.history` shows both,
:meth:`AuditLog.verify` checks both. A record is one line of canonical JSON::

    {"seq": 7, "time": "2026-11-21T04:30:00.123456Z", "actor": "reporter <…>",
     "user": "svc-agent", "pid": 4242, "op": "read", "customer": "customer-xyz789",
     "rev": "v1.0.0", "commit": "3f2a…", "document": null,
     "prev": "<hash of record 6>", "hash": "<sha256 of this record without hash>"}

Invariants:

* ``seq`` runs 1, 2, 3, … and each record's ``prev`` is the previous record's
  ``hash`` (the first record's ``prev`` is 64 zeros), so editing a record breaks
  its own hash, and deleting or inserting one breaks the chain or the sequence;
* ``gitstore-audit.head`` holds the last record's ``seq`` and ``hash``, rewritten
  in place after every append, so cutting records off the end (or deleting the
  log) is detected too, and stays detected: the next append continues from the
  head, leaving the gap in the chain (a head one record behind, left by a
  writer that died between the two writes, simply catches up);
* appends are serialised by an exclusive ``flock`` on the log file; a record is
  written with one ``write`` of one line;
* both files are created with mode 0600 (less under a stricter umask), like
  everything gitstore creates under the store root.

* a head file found missing or unreadable by an append (while the log holds
  two records or more) is itself recorded, as an ``audit:head-lost`` record,
  before the append's own: cutting the log's tail and deleting the head stays
  visible after later accesses;
* the chain is anchored in git: every commit the writer makes carries an
  ``Audit-Head: <seq> <hash> <log id>`` trailer (:meth:`AuditLog.anchor`: the
  log's last record and the first 16 hex digits of record 1's hash, which tell
  this log from another one whose commits were imported), and
  :meth:`AuditLog.verify` checks the log against the newest anchor, so records
  cut off the end (and the head rewritten to match) are found as long as a
  write came after them;
* every file here is opened with ``O_NOFOLLOW``: a symbolic link planted in
  their place is refused, never written through;
* a read-only store (``EROFS``, ``EACCES``, ``EPERM``) raises
  :class:`AuditNotRecorded`, so that reads can go on without the record where
  the store allows it (``require_audit``).

* the log travels (``gitstore sync``): each sync appends the records written
  since the last one, as one batch file ``<first seq>-<last seq>.jsonl`` (the
  records' exact lines), in a new commit on ``refs/gitstore/audit/<log id>``,
  which is pushed to the hub; a hub takes such a ref only as a fast-forward whose
  earlier batches are unchanged and whose records chain from record 1
  (:func:`check_travel`); :meth:`AuditLog.verify` checks every travelled log the
  repository holds (its own and, fetched from the hub, every other machine's:
  ``refs/remotes/*/audit/*``), and that this machine's log still begins with the
  records that travelled, so a clone taken from the hub verifies every
  machine's records up to its last sync; before it travels, a sync appends a
  receipt of the store-wide answers that showed the customer since the last one
  (:meth:`AuditLog.settle`), so they travel too.

An attacker who can rewrite both files and the history can forge the whole
chain; sign versions (``gitstore verify``) where that matters.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import getpass
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gitstore.core import lazy
from gitstore.errors import GitStoreWarning, StorageError
from gitstore.store.recorded import (
    FINALIZING_OPS,
    SYNC_BRANCH,
    SYNC_TAG,
    Recorded,
    recorded_refs,
)
from gitstore.store.travel import GENESIS, log_id_of, log_ids, record_hash, travelled

if TYPE_CHECKING:
    from gitstore.store import answers
else:  # the store's answer log: not needed to record an access (gitstore.core.lazy)
    answers = lazy.module("gitstore.store.answers")

__all__ = ["ANCHOR_TRAILER", "FINALIZING_OPS", "GENESIS", "HEAD_LOST", "HEAD_NAME", "LOG_NAME",
           "NOT_RECORDED", "SYNC_BRANCH", "SYNC_TAG", "Anchor", "AuditLog", "AuditNotRecorded",
           "AuditNotRecordedWarning", "Problem", "Recorded", "answer_log_problems",
           "record_access", "record_answer", "recorded_refs"]

LOG_NAME = "gitstore-audit.jsonl"
HEAD_NAME = "gitstore-audit.head"
ANCHOR_TRAILER = "Audit-Head"
HEAD_LOST = "audit:head-lost"
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class AuditNotRecorded(StorageError):
    """The access log cannot be written because the store is read-only here."""


class AuditNotRecordedWarning(GitStoreWarning):
    """A read went ahead without its access-log record (read-only store)."""


NOT_RECORDED = ("the store is read-only: access is not being recorded in the access logs "
                "(set require_audit in the store config to refuse instead)")


def record_access(repo_dir: Path, *, required: bool, actor: str, op: str, customer: str,
                  rev: str | None = None, commit: str | None = None,
                  document: str | None = None, detail: str | None = None,
                  notify: Callable[[str], None] | None = None) -> None:
    """Append one record to the log in ``repo_dir``. Where the store is read-only
    the access goes ahead unrecorded and :data:`NOT_RECORDED` is said: to
    ``notify`` (the CLI prints it once), else as an :class:`AuditNotRecordedWarning`;
    unless the store ``required`` the record: then :class:`AuditNotRecorded` stops it."""
    try:
        AuditLog(repo_dir).append(actor=actor, op=op, customer=customer, rev=rev,
                                  commit=commit, document=document, detail=detail)
    except AuditNotRecorded as exc:
        _unrecorded(exc, required, notify)


def record_answer(root: Path, *, required: bool, actor: str, op: str,
                  customers: Collection[str], detail: str,
                  notify: Callable[[str], None] | None = None) -> None:
    """Record one answer that showed the data of ``customers`` (repository names)
    in the store's answer log (:mod:`gitstore.store.answers`): their set's file,
    then one record naming it, however many they are. An answer that showed no
    customer is not recorded. A read-only store is handled as by
    :func:`record_access`."""
    if not customers:
        return
    directory = answers.log_dir(root)
    try:
        try:
            digest = answers.write_set(root, answers.set_bytes(customers))
        except OSError as exc:
            raise _open_error(directory, exc, "write an answer set in") from None
        AuditLog(directory).append(actor=actor, op=op, customer=None, detail=detail,
                                   extra={"answered": {"customers": len(set(customers)),
                                                       "set": digest}})
    except AuditNotRecorded as exc:
        _unrecorded(exc, required, notify)


def _unrecorded(exc: AuditNotRecorded, required: bool,
                notify: Callable[[str], None] | None) -> None:
    if required:
        raise AuditNotRecorded(f"{exc}; this store requires an access-log record of every "
                               "access (require_audit), so nothing was read") from None
    if notify is not None:
        notify(NOT_RECORDED)
    else:
        warnings.warn(AuditNotRecordedWarning(NOT_RECORDED), stacklevel=4)


def _open_error(path: Path, exc: OSError, what: str) -> StorageError:
    if exc.errno == errno.ELOOP:
        return StorageError(f"cannot {what} {path}: it is a symbolic link, which gitstore "
                            "never writes through; run `gitstore verify`")
    if exc.errno in _READ_ONLY:
        return AuditNotRecorded(f"cannot {what} {path}: {exc.strerror} (a read-only store)")
    return StorageError(f"cannot {what} {path}: {exc.strerror}")


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8") + b"\n"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class Problem(NamedTuple):
    """One finding of :meth:`AuditLog.verify`: where (line, seq) and what."""

    line: int | None
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"record {self.seq}")
        if self.line is not None:
            where.append(f"line {self.line}")
        return f"{' '.join(where) or 'log'}: {self.message}"


class AuditLog:
    """The access log of one customer repository directory (``<root>/<name>``: the
    store root is its parent unless ``store_root`` says otherwise)."""

    def __init__(self, repo_dir: Path, store_root: Path | None = None) -> None:
        self.path = repo_dir / LOG_NAME
        self.head_path = repo_dir / HEAD_NAME
        self.name = repo_dir.name
        self.store_root = store_root if store_root is not None else repo_dir.parent

    def append(self, *, actor: str, op: str, customer: str | None, rev: str | None = None,
               commit: str | None = None, document: str | None = None,
               detail: str | None = None, now: datetime | None = None,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Append one record; returns it (with its ``seq`` and ``hash``). ``customer``
        is None only in the store's answer log, whose records carry ``extra`` fields.

        Raises :class:`AuditNotRecorded` when the store is read-only here and
        :class:`StorageError` for any other failure (a symbolic link included)."""
        with self._locked("append to audit log") as fd:
            return self._append(fd, actor=actor, op=op, customer=customer, now=now,
                                extra={"rev": rev, "commit": commit, "document": document,
                                       "detail": detail, **(extra or {})})

    def settle(self, *, actor: str) -> dict[str, Any] | None:
        """Append a receipt of the answers of the store's answer log that showed this
        customer since the last receipt (:mod:`gitstore.store.answers`); returns it,
        or None when there is nothing to receipt. ``gitstore sync`` calls it, so that
        the answers travel with the log."""
        log = answers.load(self.store_root)
        if log.log_id is None or answers.receipt(
                log, self.store_root, self.name,
                answers.covered(self.records(), log.log_id)) is None:
            return None
        with self._locked("append to audit log") as fd:  # again, under the lock
            made = answers.receipt(log, self.store_root, self.name,
                                   answers.covered(self.records(), log.log_id))
            if made is None:
                return None
            fields, detail = made
            return self._append(fd, actor=actor, op=answers.RECEIPT, customer=self.name,
                                now=None, extra={"detail": detail, answers.RECEIPT: fields})

    def history(self) -> list[dict[str, Any]]:
        """What ``gitstore audit`` shows: this log's records and, merged in by time,
        every answer of the store's answer log that showed this customer (each
        marked ``"log": "answers"``)."""
        return answers.history(self.records(), self.store_root, self.name)

    @contextmanager
    def _locked(self, what: str) -> Iterator[int]:
        """The log open for appending, under its exclusive ``flock``."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o600)
        except OSError as exc:
            raise _open_error(self.path, exc, "open audit log") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        except OSError as exc:
            raise _open_error(self.path, exc, what) from None
        finally:
            os.close(fd)

    def _append(self, fd: int, *, actor: str, op: str, customer: str | None,
                now: datetime | None, extra: Mapping[str, Any]) -> dict[str, Any]:
        seq, prev = self._last(fd)
        head = self._read_head()
        if head is not None and head[0] > seq:
            # Records were cut off the end, or the log was deleted: continue
            # from the head so that the gap stays visible to verify(). (A
            # head *behind* the log is a writer that died between writing
            # its record and the head: the log is right, the head catches up.)
            seq, prev = head
        when = (now or datetime.now(UTC)).astimezone(UTC)
        fields = {"time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "actor": actor,
                  "user": _user(), "pid": os.getpid()}
        if head is None and seq >= 2:
            # the head is gone (or garbage) while the log has records: say so in
            # the chain itself, so that a tail cut with it stays visible
            lost = self._record(seq, prev, fields, op=HEAD_LOST, customer=customer,
                                extra={"detail": "the head file was missing or unreadable: "
                                                 "records may have been cut off the end "
                                                 "before this one"})
            os.write(fd, _line(lost))
            seq, prev = lost["seq"], lost["hash"]
        record = self._record(seq, prev, fields, op=op, customer=customer, extra=extra)
        os.write(fd, _line(record))
        self._write_head(record["seq"], record["hash"])
        return record

    @staticmethod
    def _record(seq: int, prev: str, fields: dict[str, Any], *, op: str,
                customer: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"rev": None, "commit": None, "document": None,
                                  "detail": None, **extra,  # never over what follows
                                  "seq": seq + 1, **fields, "op": op, "customer": customer,
                                  "prev": prev}
        record["hash"] = record_hash(record)
        return record

    def _last(self, fd: int) -> tuple[int, str]:
        """seq and hash of the last record (0 and GENESIS for an empty log)."""
        size = os.lseek(fd, 0, os.SEEK_END)
        if size == 0:
            return 0, GENESIS
        chunk = 4096
        data = b""
        pos = size
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            data = os.pread(fd, step, pos) + data
            if data.rstrip(b"\n").count(b"\n") >= 1 or pos == 0:
                break
            chunk *= 2
        last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            rec = json.loads(last)
            return int(rec["seq"]), str(rec["hash"])
        except (ValueError, KeyError, TypeError):
            # A damaged last line: keep appending, chained to what is there, so
            # that verify reports the damage instead of the log going silent.
            return self._count_lines(fd), hashlib.sha256(last).hexdigest()

    def _count_lines(self, fd: int) -> int:
        os.lseek(fd, 0, os.SEEK_SET)
        count = 0
        while block := os.read(fd, 1 << 16):
            count += block.count(b"\n")
        return count

    def _write_head(self, seq: int, digest: str) -> None:
        """Overwrite the head in place: one line, one small write
        (no temp file and rename on the path of every read)."""
        line = f"{seq} {digest}\n".encode("ascii")
        fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
        try:
            os.pwrite(fd, line, 0)
            os.ftruncate(fd, len(line))
        finally:
            os.close(fd)

    def _open_read(self) -> int | None:
        """A read-only descriptor of the log (None if there is none; StorageError
        for a symbolic link)."""
        try:
            return os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _open_error(self.path, exc, "read audit log") from None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record that parses, in file order."""
        fd = self._open_read()
        if fd is None:
            return
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                try:
                    yield json.loads(raw)
                except ValueError:
                    continue

    def anchor(self) -> str | None:
        """``"<seq> <hash> <log id>"`` of the last record, for a commit to keep (see
        the module docstring); None for an empty or missing log."""
        fd = self._open_read()
        if fd is None:
            return None
        try:
            seq, digest = self._last(fd)
            first = os.pread(fd, 65536, 0).split(b"\n", 1)[0]
        finally:
            os.close(fd)
        log_id = log_id_of(first)
        if seq == 0 or log_id is None:
            return None
        return f"{seq} {digest} {log_id}"

    def log_id(self) -> str | None:
        """The identity of this log (the first hex digits of record 1's hash)."""
        fd = self._open_read()
        if fd is None:
            return None
        try:
            first = os.pread(fd, 65536, 0).split(b"\n", 1)[0]
        finally:
            os.close(fd)
        return log_id_of(first)

    def unsent(self, after: int, prev: str) -> tuple[list[bytes], str | None]:
        """The exact lines of the records after record ``after`` (whose hash is
        ``prev``; 0 and :data:`GENESIS` for a log that never travelled), as far as
        they chain on; and why the chain stops early, if it does (a damaged log
        travels up to the damage, never past it)."""
        fd = self._open_read()
        if fd is None:
            return [], None
        lines: list[bytes] = []
        expected = after + 1
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                    seq = int(rec["seq"])
                except (ValueError, KeyError, TypeError):
                    if expected > after + 1:
                        return lines, f"record {expected}: not a valid record"
                    continue
                if seq <= after:
                    continue
                if seq != expected or rec.get("prev") != prev \
                        or record_hash(rec) != rec.get("hash"):
                    return lines, (f"record {seq}: does not chain on from record {expected - 1}"
                                   " (`gitstore audit --verify` shows the damage)")
                lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
                expected, prev = seq + 1, str(rec["hash"])
        return lines, None

    def verify(self, anchors: Iterable[tuple[str, str]] = ()) -> list[Problem]:
        """Check the chain; one :class:`Problem` per edited, missing or extra record.

        ``anchors`` are ``(commit id, Audit-Head trailer value)`` pairs found in
        git; the newest one that belongs to this log must match it. The logs that
        travelled (see the module docstring) are checked too, and so are this log's
        receipts and the store's answer log (:mod:`gitstore.store.answers`)."""
        anchors = list(anchors)
        own, others = self.log_id(), log_ids(self.path.parent)
        problems = self._verify_local([(c, v) for c, v in anchors
                                       if (a := Anchor.parse(c, v)) is None
                                       or a.log_id == own or a.log_id not in others])
        found = [(a.commit, a.seq, a.digest, a.log_id) for c, v in anchors
                 if (a := Anchor.parse(c, v)) is not None]
        problems += [Problem(None, seq, text) for seq, text in travelled(
            self.path.parent, own, lambda: self.records(), found)]
        problems += [Problem(None, seq, text) for seq, text in answers.check_receipts(
            self.records(), self.store_root, self.name)]
        problems += [Problem(None, None, f"the store's answer log: {text}")
                     for text in answer_log_problems(self.store_root)]
        return problems

    def _verify_local(self, anchors: list[tuple[str, str]]) -> list[Problem]:
        problems: list[Problem] = []
        fd = self._open_read()
        if fd is None:
            if self.head_path.exists():
                problems.append(Problem(None, None, "the log file is missing but its head "
                                        "file exists: the whole log was deleted"))
            anchor = _newest_anchor(anchors, None)
            if anchor is not None and not problems:
                problems.append(Problem(None, None, f"the log file is missing, but commit "
                                        f"{anchor.commit[:12]} records that it had "
                                        f"{anchor.seq} record(s): the whole log was deleted"))
            return problems
        expected_seq, prev = 1, GENESIS
        last_seq, last_hash = 0, GENESIS
        first: bytes | None = None
        seen: dict[int, str] = {}
        with os.fdopen(fd, "rb") as f:
            for n, raw in enumerate(f, 1):
                if first is None:
                    first = raw.rstrip(b"\n")
                try:
                    rec = json.loads(raw)
                    seq, digest = int(rec["seq"]), str(rec["hash"])
                except (ValueError, KeyError, TypeError):
                    problems.append(Problem(n, None, "not a valid record (edited or damaged)"))
                    prev = hashlib.sha256(raw.rstrip(b"\n")).hexdigest()
                    expected_seq += 1
                    continue
                if record_hash(rec) != digest:
                    problems.append(Problem(n, seq, "contents changed after it was written "
                                            "(hash mismatch)"))
                if rec.get("op") == HEAD_LOST:
                    problems.append(Problem(n, seq, "the head file had been deleted or damaged "
                                            "before this record: records may have been cut "
                                            "off the end of the log"))
                if seq > expected_seq:
                    missing = (f"record {expected_seq}" if seq == expected_seq + 1
                               else f"records {expected_seq}..{seq - 1}")
                    problems.append(Problem(n, seq, f"{missing} deleted before it"))
                elif seq < expected_seq:
                    problems.append(Problem(n, seq, f"out of sequence (expected {expected_seq}"
                                            "): a record was inserted or duplicated"))
                elif rec.get("prev") != prev:
                    problems.append(Problem(n, seq, "does not chain to the record before it "
                                            "(a record was replaced)"))
                expected_seq = seq + 1
                prev = digest
                last_seq, last_hash = seq, digest
                seen.setdefault(seq, digest)
        head = self._read_head()
        if head is not None and head != (last_seq, last_hash):
            if head[0] > last_seq:
                problems.append(Problem(None, head[0], f"records {last_seq + 1}..{head[0]} "
                                        "deleted from the end of the log"))
            else:
                problems.append(Problem(None, last_seq, "the log's last record does not match "
                                        f"its head file (head says record {head[0]})"))
        elif head is None and last_seq >= 2:
            problems.append(Problem(None, None, f"the head file {HEAD_NAME} is missing or "
                                    "unreadable: records cut off the end would go unseen"))
        anchor = _newest_anchor(anchors, log_id_of(first or b""))
        if anchor is not None:
            where = f"commit {anchor.commit[:12]} records record {anchor.seq}"
            if anchor.seq > last_seq and (head is None or head[0] < anchor.seq):
                problems.append(Problem(None, anchor.seq, f"records {last_seq + 1}.."
                                        f"{anchor.seq} deleted from the end of the log "
                                        f"({where} in git)"))
            elif anchor.seq in seen and seen[anchor.seq] != anchor.digest:
                problems.append(Problem(None, anchor.seq, f"does not match its anchor in git "
                                        f"({where} with another hash): the log was rewritten"))
        return problems

    def _read_head(self) -> tuple[int, str] | None:
        try:
            fd = os.open(self.head_path, os.O_RDONLY | _NOFOLLOW)
        except OSError:
            return None
        try:
            seq, digest = os.read(fd, 256).decode("ascii").split()
            return int(seq), digest
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)


def answer_log_problems(root: Path) -> list[str]:
    """The problems of the store's answer log: its chain (as :meth:`AuditLog.verify`
    checks a customer's) and its answer sets; checked once per process while the
    log stays as it is."""
    log = AuditLog(answers.log_dir(root))
    if not os.path.lexists(log.path) and not os.path.lexists(log.head_path):
        return []
    keys = (answers.identity(log.path), answers.identity(log.head_path))
    if keys[0] is None or keys[1] is None:  # missing, or changed just now: no cache
        chain = _chain_problems.__wrapped__(root, None, None)
    else:
        chain = _chain_problems(root, *keys)
    return [*chain, *answers.set_problems(root)]


@functools.lru_cache(maxsize=4)
def _chain_problems(root: Path, log: answers.Identity | None,
                    head: answers.Identity | None) -> tuple[str, ...]:
    return tuple(str(p) for p in AuditLog(answers.log_dir(root))._verify_local([]))


class Anchor(NamedTuple):
    """An ``Audit-Head`` trailer: the log had record ``seq`` with hash ``digest``."""

    commit: str
    seq: int
    digest: str
    log_id: str

    @classmethod
    def parse(cls, commit: str, value: str) -> Anchor | None:
        parts = value.split()
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        return cls(commit, int(parts[0]), parts[1], parts[2])


def _newest_anchor(anchors: Iterable[tuple[str, str]], log_id: str | None) -> Anchor | None:
    """The anchor with the highest ``seq`` that belongs to the log ``log_id`` (any
    anchor when the log has no first record to tell)."""
    found = [a for c, v in anchors if (a := Anchor.parse(c, v)) is not None
             and (log_id is None or a.log_id == log_id)]
    return max(found, key=lambda a: a.seq, default=None)
