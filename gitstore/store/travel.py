"""The access log that travels: each machine's records, carried to the hub in git.

An access log (:mod:`gitstore.store.audit`) lives beside its repository on one
machine. ``gitstore sync`` carries it to the hub: each sync appends the records
written since the last one, as one batch file ``<first seq>-<last seq>.jsonl``
holding the records' exact lines, in a new commit on
``refs/gitstore/audit/<log id>`` (the log id: the first hex digits of record 1's
hash, which tells one machine's log from another's). The hub takes the ref only
as a fast-forward whose earlier batches are unchanged and whose records chain,
intact, from record 1 (:func:`check_travel`, run by its ``pre-receive`` hook), so
what travelled can never be rewritten there. A clone taken from the hub holds
every machine's travelled log (``refs/remotes/<hub>/audit/*`` after a sync), and
:func:`travelled` checks them all: each chain intact, each newest anchor of that
log in git covered, and this machine's own log still beginning with the very
records that travelled.

Invariants: a batch never changes once it is in a commit of the ref; records
are compared and hashed as :func:`record_hash` defines (the record's canonical
JSON without its ``hash``), exactly as the log itself chains them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from gitstore.core import canonical
from gitstore.errors import GitStoreError
from gitstore.git import repo as backend

GENESIS = "0" * 64
"""The ``prev`` of a log's first record."""
LOG_ID_DIGITS = 16
"""How many hex digits of record 1's hash name a log."""
TRAVEL_REFS = "refs/gitstore/audit/"
"""Where each machine's log travels: ``refs/gitstore/audit/<log id>``."""
_BATCH = re.compile(r"([0-9]{12})-([0-9]{12})\.jsonl")

Finding = tuple[int | None, str]
"""A problem found: the record's seq (if one is to blame) and what is wrong."""


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a record carries: SHA-256 of its canonical JSON without ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical.dumps(body)).hexdigest()


def log_id_of(first_line: bytes) -> str | None:
    """The identity of a log: the first hex digits of its first record's hash."""
    try:
        digest = json.loads(first_line)["hash"]
    except (ValueError, KeyError, TypeError):
        return None
    return digest[:LOG_ID_DIGITS] if isinstance(digest, str) and digest else None


def batch_name(first: int, last: int) -> str:
    """The file name of a batch of records ``first..last`` in a travelled log."""
    return f"{first:012d}-{last:012d}.jsonl"


def is_log_id(text: str) -> bool:
    return re.fullmatch(f"[0-9a-f]{{{LOG_ID_DIGITS}}}", text) is not None


def check_travelled(files: Mapping[str, bytes], log_id: str,
                    customer: str | None = None) -> tuple[list[str], int, str]:
    """Check a travelled log (the batch files of one commit of its ref): batches
    named by their records, contiguous from record 1, every record intact and
    chained, of log ``log_id`` (and of ``customer`` when given). Returns the
    problems, the last record's seq and its hash."""
    problems: list[str] = []
    seq, prev = 0, GENESIS
    for name in sorted(files):
        m = _BATCH.fullmatch(name)
        if m is None:
            problems.append(f"{name}: not a batch of records (<first>-<last>.jsonl)")
            continue
        first, last = int(m[1]), int(m[2])
        if first != seq + 1 or last < first:
            problems.append(f"{name}: records {first}..{last} do not follow record {seq}")
        lines = files[name].splitlines()
        if len(lines) != last - first + 1 or not files[name].endswith(b"\n"):
            problems.append(f"{name}: holds {len(lines)} record(s), not {last - first + 1}")
        for raw in lines:
            rec = _record(raw)
            if rec is None:
                problems.append(f"{name}: a line is not a valid record")
                return problems, seq, prev
            n, digest = rec["seq"], rec["hash"]
            if n != seq + 1 or rec.get("prev") != prev:
                problems.append(f"record {n}: does not chain on from record {seq}")
            elif record_hash(rec) != digest:
                problems.append(f"record {n}: contents changed after it was written "
                                "(hash mismatch)")
            elif customer is not None and rec.get("customer") != customer:
                problems.append(f"record {n}: belongs to customer {rec.get('customer')!r}")
            if n == 1 and digest[:LOG_ID_DIGITS] != log_id:
                problems.append(f"record 1 is of log {digest[:LOG_ID_DIGITS]}, not {log_id}")
            seq, prev = n, digest
    if seq == 0:
        problems.append("holds no records")
    return problems, seq, prev


def check_travel(repo: backend.Repo, old: str | None, new: str, log_id: str,
                 customer: str | None) -> list[str]:
    """Why the update of ``refs/gitstore/audit/<log_id>`` from ``old`` (None: a
    new ref) to ``new`` must be refused (empty: it may go): a travelled log only
    grows, by new batches, and every commit on it holds batches of the final log."""
    if not is_log_id(log_id):
        return [f"{log_id!r} is not a log id ({LOG_ID_DIGITS} hex digits)"]
    try:
        if old is not None and not repo.is_ancestor(old, new):
            return [f"non-fast-forward update from {old[:12]}: a travelled access log only "
                    "grows"]
        final = repo.read_tree(new)
        problems, _, _ = check_travelled(final, log_id, customer)
        if old is not None:
            problems += [f"{name}: a batch that travelled earlier was changed or removed"
                         for name, data in repo.read_tree(old).items()
                         if final.get(name) != data]
        for info in repo.walk(new, [old] if old else []):
            if any(final.get(n) != d for n, d in repo.read_tree(info.id).items()):
                problems.append(f"commit {info.id[:12]} holds batches the log does not hold "
                                "as they are")
    except GitStoreError as exc:
        return [f"unreadable: {exc}"]
    return problems


def _travelled_refs(repo_dir: Path) -> tuple[backend.Repo, dict[str, str]] | None:
    try:
        repo = backend.Repo.open(repo_dir)
        return repo, {**repo.refs(TRAVEL_REFS, strict=False),
                      **{r: c for r, c in repo.refs("refs/remotes/", strict=False).items()
                         if r.split("/")[-2:-1] == ["audit"]}}
    except (GitStoreError, OSError):
        return None


def log_ids(repo_dir: Path) -> set[str]:
    """The ids of the logs that travelled into the repository ``repo_dir``."""
    found = _travelled_refs(repo_dir)
    return {ref.rsplit("/", 1)[-1] for ref in found[1]} if found else set()


def travelled(repo_dir: Path, own: str | None,
              own_records: Callable[[], Iterator[dict[str, Any]]],
              anchors: Iterable[tuple[str, int, str, str]] = ()) -> list[Finding]:
    """The problems of every log that travelled into the repository ``repo_dir``
    (nothing when it is no repository). ``own`` is the id of this machine's log,
    whose ``own_records`` must begin with what travelled; ``anchors`` are the
    ``Audit-Head`` trailers found in git, ``(commit, seq, hash, log id)``."""
    opened = _travelled_refs(repo_dir)
    if opened is None:
        return []
    repo, refs = opened
    found: list[Finding] = []
    for ref, commit in sorted(refs.items()):
        log_id = ref.rsplit("/", 1)[-1]
        where = f"travelled log {log_id} ({ref})"
        try:
            files = repo.read_tree(commit)
        except GitStoreError as exc:
            found.append((None, f"{where}: unreadable: {exc}"))
            continue
        bad, last, _ = check_travelled(files, log_id)
        found += [(None, f"{where}: {p}") for p in bad]
        hashes = {r["seq"]: r["hash"] for data in files.values()
                  for line in data.splitlines() if (r := _record(line)) is not None}
        if log_id == own:
            mine = {r["seq"]: r["hash"] for r in own_records()
                    if isinstance(r.get("seq"), int) and isinstance(r.get("hash"), str)}
            changed = sorted(n for n, h in hashes.items() if mine.get(n) != h)
            if changed:
                found.append((changed[0], f"differs from the copy that travelled to the hub "
                                          f"({where}): the local log was rewritten after it "
                                          "travelled"))
            continue
        for commit_id, seq, digest, anchor_log in anchors:
            if anchor_log != log_id:
                continue
            if seq in hashes and hashes[seq] != digest:
                found.append((seq, f"{where}: does not match its anchor in commit "
                                   f"{commit_id[:12]} (another hash)"))
            elif seq > last:
                found.append((seq, f"{where}: records {last + 1}..{seq}, anchored in commit "
                                   f"{commit_id[:12]}, never travelled"))
    return found


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if isinstance(rec, dict) and isinstance(rec.get("seq"), int) \
            and not isinstance(rec.get("seq"), bool) and isinstance(rec.get("hash"), str):
        return rec
    return None
