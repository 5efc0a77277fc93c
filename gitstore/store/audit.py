"""The per-customer access log: append-only and tamper-evident.

Every read and write through the API and the CLI appends one record to
``<root>/<customer>/gitstore-audit.jsonl`` (inside the customer's bare
repository directory, outside git's object store, so it never mixes customers
and travels with the repository when it is moved). A record is one line of
canonical JSON::

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
  written with one ``write`` of one line.

An attacker who can rewrite both files can forge the whole chain; sign versions
(``gitstore verify``) where that matters.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitstore.core import canonical
from gitstore.errors import StorageError

LOG_NAME = "gitstore-audit.jsonl"
HEAD_NAME = "gitstore-audit.head"
GENESIS = "0" * 64


def _hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical.dumps(body)).hexdigest()


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8") + b"\n"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@dataclass(frozen=True)
class Problem:
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
    """The access log of one customer repository directory."""

    def __init__(self, repo_dir: Path) -> None:
        self.path = repo_dir / LOG_NAME
        self.head_path = repo_dir / HEAD_NAME

    def append(self, *, actor: str, op: str, customer: str, rev: str | None = None,
               commit: str | None = None, document: str | None = None,
               detail: str | None = None, now: datetime | None = None) -> dict[str, Any]:
        """Append one record; returns it (with its ``seq`` and ``hash``)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise StorageError(f"cannot open audit log {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev = self._last(fd)
            head = self._read_head()
            if head is not None and head[0] > seq:
                # Records were cut off the end, or the log was deleted: continue
                # from the head so that the gap stays visible to verify(). (A
                # head *behind* the log is a writer that died between writing
                # its record and the head: the log is right, the head catches up.)
                seq, prev = head
            when = (now or datetime.now(UTC)).astimezone(UTC)
            record: dict[str, Any] = {
                "seq": seq + 1,
                "time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "actor": actor, "user": _user(), "pid": os.getpid(), "op": op,
                "customer": customer, "rev": rev, "commit": commit, "document": document,
                "detail": detail, "prev": prev,
            }
            record["hash"] = _hash(record)
            os.write(fd, _line(record))
            self._write_head(record["seq"], record["hash"])
            return record
        except OSError as exc:
            raise StorageError(f"cannot append to audit log {self.path}: {exc.strerror}") \
                from None
        finally:
            os.close(fd)

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
        fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.pwrite(fd, line, 0)
            os.ftruncate(fd, len(line))
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record that parses, in file order."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for raw in f:
                try:
                    yield json.loads(raw)
                except ValueError:
                    continue

    def verify(self) -> list[Problem]:
        """Check the chain; one :class:`Problem` per edited, missing or extra record."""
        problems: list[Problem] = []
        if not self.path.exists():
            if self.head_path.exists():
                problems.append(Problem(None, None, "the log file is missing but its head "
                                        "file exists: the whole log was deleted"))
            return problems
        expected_seq, prev = 1, GENESIS
        last_seq, last_hash = 0, GENESIS
        with self.path.open("rb") as f:
            for n, raw in enumerate(f, 1):
                try:
                    rec = json.loads(raw)
                    seq, digest = int(rec["seq"]), str(rec["hash"])
                except (ValueError, KeyError, TypeError):
                    problems.append(Problem(n, None, "not a valid record (edited or damaged)"))
                    prev = hashlib.sha256(raw.rstrip(b"\n")).hexdigest()
                    expected_seq += 1
                    continue
                if _hash(rec) != digest:
                    problems.append(Problem(n, seq, "contents changed after it was written "
                                            "(hash mismatch)"))
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
        head = self._read_head()
        if head is not None and head != (last_seq, last_hash):
            if head[0] > last_seq:
                problems.append(Problem(None, head[0], f"records {last_seq + 1}..{head[0]} "
                                        "deleted from the end of the log"))
            else:
                problems.append(Problem(None, last_seq, "the log's last record does not match "
                                        f"its head file (head says record {head[0]})"))
        return problems

    def _read_head(self) -> tuple[int, str] | None:
        try:
            seq, digest = self.head_path.read_text(encoding="ascii").split()
            return int(seq), digest
        except (OSError, ValueError):
            return None
