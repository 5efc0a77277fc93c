"""The store's answer log: one access record per answer of a store-wide query.

A query through the index (``list``, ``stats``, ``search``, ``similar``,
``active``, the web viewer's pages) may show the data of thousands of customers
at once. It appends one record, not one per customer, to the store's *answer
log* ``<root>/.gitstore/answers/gitstore-audit.jsonl``: an access log like a
customer's (:class:`gitstore.store.audit.AuditLog`: hash-chained, a head file,
appends under ``flock``), whose records name the customers they showed by the
SHA-256 of an *answer set*::

    {"seq": 12, "time": "...", "actor": "...", "user": "...", "pid": 4242,
     "op": "list", "customer": null, "rev": null, "commit": null, "document": null,
     "detail": "10000 session(s) of 10000 customer(s) shown (...)",
     "answered": {"customers": 10000, "set": "<sha256>"}, "prev": "...", "hash": "..."}

The set is the file ``<root>/.gitstore/answers/sets/<sha256>``: the customers'
repository names, sorted, one a line, named by its own SHA-256. An answer over
the same customers as an earlier one shares its file, so a repeated ``list``
over an unchanged store adds one short line to the answer log and nothing else.

``gitstore audit CUSTOMER`` shows a customer's own records and, among them by
time, every answer whose set names it (:func:`history`). ``gitstore sync``
copies a *receipt* into the customer's own log before it travels
(:meth:`gitstore.store.audit.AuditLog.settle`, op :data:`RECEIPT`)::

    "answers": {"log": "<answer log id>", "after": 40, "through": 57,
                "head": "<hash of answer record 57>", "count": 3,
                "digest": "<sha256 of the 3 records' hashes, one a line>"}

covering answer records ``after+1..through``, of which ``count`` named the
customer. So a hub learns of every answer that showed the customer (as counts
and digests: the answer log itself stays on its machine), and the receipts
anchor the answer log: an answer record that named the customer, edited or
removed after its receipt, or records cut off the answer log's end, no longer
match (:func:`check_receipts`, run by ``audit --verify`` and ``verify``).

Invariants:

* an answer's set file is complete under its name before the record naming it
  is written; a set file never changes (its name is its hash), and one missing
  or not matching its name is a problem for every customer (who it named can no
  longer be told);
* a customer's receipts of one answer log cover consecutive ranges: each begins
  where the one before it ended (after record 0 for the first);
* nothing here writes a log record (:mod:`gitstore.store.audit` does); what is
  read of the answer log and its sets is cached per process by the file's
  identity, size and mtime, so checking thousands of customers reads it once;
  never a file changed within the last two seconds (git's "racy" rule: a change
  in the same clock tick could hide behind an equal mtime).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from gitstore.catalog.freshness import RACY_NS
from gitstore.core.names import STORE_DIR
from gitstore.store.travel import GENESIS, log_id_of

ANSWERS_DIR = "answers"
LOG_FILE = "gitstore-audit.jsonl"
"""The answer log's file in :func:`log_dir` (the name of every access log)."""
SETS_DIR = "sets"
RECEIPT = "answers"
"""The op of a receipt in a customer's log (see the module docstring)."""
ENTRY_MARK = "log"
"""The key :func:`history` adds to an answer record it shows among a customer's own."""
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_RECEIPT_KEYS = {"log": str, "after": int, "through": int, "head": str, "count": int,
                 "digest": str}


def log_dir(root: Path) -> Path:
    """The directory of the store's answer log (an :class:`AuditLog` directory)."""
    return root / STORE_DIR / ANSWERS_DIR


def set_bytes(names: Iterable[str]) -> bytes:
    """An answer set's file: the names, sorted and unique, one a line."""
    lines = sorted(set(names))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def write_set(root: Path, data: bytes) -> str:
    """Store the answer set ``data`` (from :func:`set_bytes`) under its SHA-256,
    unless it is there already; returns the digest. A new file is written aside and
    renamed into place, mode 0600 in a 0700 directory. Raises OSError."""
    digest = hashlib.sha256(data).hexdigest()
    sets = log_dir(root) / SETS_DIR
    path = sets / digest
    if os.path.lexists(path):
        return digest  # content-addressed: verify tells a changed one
    for directory in (root / STORE_DIR, sets.parent, sets):  # each 0700, not only the last
        directory.mkdir(mode=0o700, exist_ok=True)
    tmp = sets / f".{digest}.{os.urandom(8).hex()}.tmp"  # one per writer, threads too
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return digest


Identity = tuple[int, int, int, int]


def identity(path: Path) -> Identity | None:
    """What the caches here are keyed by: device, inode, size and mtime of ``path``
    (None when it is missing, or changed too recently to be told apart by them)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if time.time_ns() - st.st_mtime_ns < RACY_NS:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _set_file(path: Path, key: Identity | None) -> frozenset[str] | None:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != path.name:
        return None
    return frozenset(data.decode("utf-8", "replace").splitlines())


def read_set(root: Path, digest: str) -> frozenset[str] | None:
    """The names in the answer set ``digest``; None when the file is missing, is a
    symbolic link, or does not hash to its name."""
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        return None
    path = log_dir(root) / SETS_DIR / digest
    key = identity(path)
    return _set_file(path, key) if key is not None else _set_file.__wrapped__(path, None)


class Answer(NamedTuple):
    """One record of the answer log that names an answer set."""

    seq: int
    hash: str
    time: str
    op: str
    set: str
    line: bytes

    @property
    def record(self) -> dict[str, Any]:
        """The record itself (parsed again: the log keeps only its line)."""
        rec: dict[str, Any] = json.loads(self.line)
        return rec


class AnswerLog:
    """What the answer log holds: its id, its answers in file order, and the hash of
    every record by seq (the chain itself is :meth:`AuditLog.verify`'s to check).
    Shared by every reader of the same log file state (:func:`_load` remembers
    it), so nothing changes it after it is built."""

    __slots__ = ("_seqs", "answers", "hashes", "log_id")

    def __init__(self, log_id: str | None = None, answers: tuple[Answer, ...] = (),
                 hashes: Mapping[int, str] | None = None) -> None:
        self.log_id = log_id
        self.answers = answers
        self.hashes: Mapping[int, str] = hashes if hashes is not None else {}
        seqs = [a.seq for a in answers]
        #: the answers' seqs when ascending (as appends make them), else None
        self._seqs = seqs if all(x < y for x, y in itertools.pairwise(seqs)) else None

    @property
    def last(self) -> tuple[int, str]:
        """seq and hash of the last record (0 and :data:`GENESIS` when empty)."""
        if not self.hashes:
            return 0, GENESIS
        seq = max(self.hashes)
        return seq, self.hashes[seq]

    def naming(self, root: Path, name: str, after: int = 0,
               through: int | None = None) -> list[Answer]:
        """The answers after record ``after`` (up to ``through``) whose set names
        ``name``; an answer whose set cannot be read names nobody here (its loss is
        a problem of its own, see :func:`set_problems`)."""
        chosen: Sequence[Answer] = self.answers
        if self._seqs is not None:  # the range by bisection, not a scan of the log
            chosen = self.answers[bisect.bisect_right(self._seqs, after):
                                  len(self.answers) if through is None
                                  else bisect.bisect_right(self._seqs, through)]
        sets: dict[str, bool] = {}
        out = []
        for a in chosen:
            if a.seq <= after or (through is not None and a.seq > through):
                continue
            named = sets.get(a.set)
            if named is None:
                names = read_set(root, a.set)
                named = sets[a.set] = names is not None and name in names
            if named:
                out.append(a)
        return out


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int) \
            or isinstance(rec.get("seq"), bool) or not isinstance(rec.get("hash"), str):
        return None
    return rec


def _answer(rec: dict[str, Any], line: bytes) -> Answer | None:
    answered = rec.get("answered")
    if not isinstance(answered, dict) or not isinstance(answered.get("set"), str):
        return None
    return Answer(rec["seq"], rec["hash"], str(rec.get("time", "")), str(rec.get("op", "")),
                  answered["set"], line)


@functools.lru_cache(maxsize=4)
def _load(path: Path, key: Identity | None) -> AnswerLog:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return AnswerLog()
    first: bytes | None = None
    answers: list[Answer] = []
    hashes: dict[int, str] = {}
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            if first is None:
                first = raw.rstrip(b"\n")
            if not raw.endswith(b"\n"):
                break  # a record being written: not there yet
            rec = _parse(raw)
            if rec is None:
                continue
            hashes.setdefault(rec["seq"], rec["hash"])
            if (answer := _answer(rec, raw)) is not None:
                answers.append(answer)
    return AnswerLog(log_id_of(first or b""), tuple(answers), hashes)


def load(root: Path) -> AnswerLog:
    """The store's answer log as it is now (empty when there is none)."""
    path = log_dir(root) / LOG_FILE
    key = identity(path)
    return _load(path, key) if key is not None else _load.__wrapped__(path, None)


def digest_of(answers: Sequence[Answer]) -> str:
    """What a receipt's ``digest`` is: SHA-256 of the answers' hashes, one a line."""
    return hashlib.sha256("".join(f"{a.hash}\n" for a in answers).encode("ascii")).hexdigest()


def receipt_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``answers`` field of a receipt record, when it is well formed."""
    if record.get("op") != RECEIPT:
        return None
    fields = record.get(RECEIPT)
    if not isinstance(fields, dict) or any(
            not isinstance(fields.get(k), t) or isinstance(fields.get(k), bool)
            for k, t in _RECEIPT_KEYS.items()):
        return None
    return fields


def covered(records: Iterable[Mapping[str, Any]], log_id: str) -> int:
    """How far the receipts among ``records`` cover the answer log ``log_id``: the
    last one's ``through`` (0 when there is none)."""
    through = 0
    for r in records:
        fields = receipt_of(r)
        if fields is not None and fields["log"] == log_id:
            through = fields["through"]
    return through


def receipt(log: AnswerLog, root: Path, name: str, after: int) -> tuple[dict[str, Any], str] | None:
    """The ``answers`` field and the detail of a receipt for ``name`` covering the
    answer log after record ``after``; None when no answer there names it."""
    if log.log_id is None:
        return None
    through, head = log.last
    if through <= after:
        return None
    found = log.naming(root, name, after, through)
    if not found:
        return None
    ops: dict[str, int] = {}
    for a in found:
        ops[a.op] = ops.get(a.op, 0) + 1
    kinds = ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
    detail = (f"shown in {len(found)} answer(s) of the store's answer log {log.log_id}, "
              f"records {after + 1}..{through} ({kinds}), {found[0].time} to {found[-1].time}")
    return ({"log": log.log_id, "after": after, "through": through, "head": head,
             "count": len(found), "digest": digest_of(found)}, detail)


def check_receipts(records: Iterable[Mapping[str, Any]], root: Path, name: str
                   ) -> list[tuple[int | None, str]]:
    """The problems of the receipts among ``records`` (a customer's own log, in
    order) against the store's answer log: see the module docstring."""
    log = load(root)
    problems: list[tuple[int | None, str]] = []
    ends: dict[str, int] = {}
    for r in records:
        if r.get("op") != RECEIPT:
            continue
        seq = r.get("seq") if isinstance(r.get("seq"), int) else None
        fields = receipt_of(r)
        if fields is None:
            problems.append((seq, "not a valid receipt of the store's answer log"))
            continue
        lid, after, through = fields["log"], fields["after"], fields["through"]
        if after != ends.get(lid, 0):
            problems.append((seq, f"receipt of answer records {after + 1}..{through}, but the "
                                  f"receipt before it ended at record {ends.get(lid, 0)}"))
        ends[lid] = through
        if lid != log.log_id:
            problems.append((seq, f"counts answers of the answer log {lid}, which this store "
                                  "no longer holds (deleted or replaced)"))
            continue
        head = log.hashes.get(through)
        if head is None:
            problems.append((seq, f"record {through} of the store's answer log, which it "
                                  "counts up to, is gone: records were cut off that log"))
            continue
        if head != fields["head"]:
            problems.append((seq, f"record {through} of the store's answer log was rewritten "
                                  "after this receipt (another hash)"))
        found = log.naming(root, name, after, through)
        if len(found) != fields["count"] or digest_of(found) != fields["digest"]:
            problems.append((seq, f"the answers that showed this customer in records "
                                  f"{after + 1}..{through} of the store's answer log are not "
                                  f"those this receipt counted ({len(found)} now, "
                                  f"{fields['count']} then): one was removed or changed"))
    return problems


def set_problems(root: Path) -> list[str]:
    """One line for each answer whose set file is missing or changed (each set
    looked at once, however many answers share it)."""
    lost = {d for d in {a.set for a in load(root).answers} if read_set(root, d) is None}
    return [f"record {a.seq}: its answer set {a.set[:12]} is missing or changed: who it "
            "showed can no longer be told" for a in load(root).answers if a.set in lost]


def history(records: Iterable[dict[str, Any]], root: Path, name: str) -> list[dict[str, Any]]:
    """A customer's own ``records`` and, merged in by time, every answer of the
    store's answer log that showed it (each marked ``"log": "answers"``)."""
    own = list(records)
    shown = [{ENTRY_MARK: ANSWERS_DIR, **a.record} for a in load(root).naming(root, name)]
    out: list[dict[str, Any]] = []
    i = j = 0
    while i < len(own) and j < len(shown):
        if str(shown[j].get("time", "")) < str(own[i].get("time", "")):
            out.append(shown[j])
            j += 1
        else:
            out.append(own[i])
            i += 1
    return out + own[i:] + shown[j:]
