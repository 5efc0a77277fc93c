"""Reading the index's rows from git: no database here.

:func:`derive` reads one scenario of one customer (its version rows, its tip and
turns), the one derivation every path uses: the writer's record and a refresh
(:mod:`gitstore.catalog.sync` applies what it read to the database, row by row) and a
rebuild, which reads every customer with :func:`read_customer` into rows ready to
insert (:class:`Rows`) and inserts them by the batch.

A rebuild of many customers reads them in worker processes (:func:`read_all`):
reading is libgit2 and Python, bound by one core per process. Each worker is a fresh
interpreter running this module (``python -m gitstore.catalog.derive``): never a
``fork`` of a process that may have threads, and never a re-run of the caller's own
main module, as ``multiprocessing``'s other start methods do. A worker reads the
batches it is given and writes their rows back as JSON lines, in order; the batches
go round the workers, so reading them back in order keeps every worker busy and
at most one batch ahead. Reading has no side effects, so a worker that cannot start,
dies or says something else costs only the speed: the rest is read in this process.

Invariant: every function here is a function of git's state alone (and the file
system's, for :func:`~gitstore.catalog.freshness.fingerprint` and
:func:`~gitstore.catalog.journal.hooked`); what it cannot read is a problem line,
never an exception, except as documented on :func:`derive`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.catalog import journal
from gitstore.catalog.freshness import fingerprint
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
from gitstore.core import lazy
from gitstore.core.commits import CommitInfo, version_of
from gitstore.core.names import MERGED
from gitstore.core.versions import Scenario, parse_branch_ref, parse_tag_ref
from gitstore.errors import GitStoreError
from gitstore.git.repo import Repo

if TYPE_CHECKING:
    import subprocess
else:  # only a parallel build starts workers (gitstore.core.lazy)
    subprocess = lazy.module("subprocess")

__all__ = ["BATCH", "PARALLEL_FROM", "UNDERIVABLE", "Derived", "Rows", "changed_majors",
           "derive", "read_all", "read_chunk", "read_customer", "worker"]

#: Rows a customer's data cannot be derived into (beside git's own errors).
UNDERIVABLE = (GitStoreError, ValueError, TypeError, ArithmeticError, RecursionError)
#: Customers read (and inserted) per batch by a rebuild.
BATCH = 256
#: From how many customers a rebuild reads in worker processes.
PARALLEL_FROM = 2000


class Derived:
    """What the index holds of one scenario, as read from git by :func:`derive`:
    version rows to put, versions whose tag cannot be read, the tip's scenario row
    (``None``: no tip, or its version cannot be told) with its turns, the newest
    version and every version the scenario has. (A plain class: a dataclass costs
    every process that imports the index a little start-up time.)"""

    __slots__ = ("failed", "keep", "latest", "major", "problems", "rows", "tip", "turns")

    def __init__(self, major: int) -> None:
        self.major = major
        self.rows: list[dict[str, Any]] = []
        self.failed: list[str] = []
        self.tip: tuple[str, str, str | None, int] | None = None
        self.turns: list[Any] = []
        self.latest = ""
        self.keep: set[str] = set()
        self.problems: list[str] = []


class Rows:
    """One customer as :func:`read_customer` reads it for a rebuild: the rows of every
    table, ready to insert (``turns``: scenario, turn id, timestamp, digest, query,
    response), or the ``problem`` that leaves it out."""

    __slots__ = ("fingerprint", "name", "problem", "problems", "refs", "scenarios",
                 "services", "turns", "versions")

    def __init__(self, name: str, fingerprint: tuple[str, str, int]) -> None:
        self.name = name
        self.fingerprint = fingerprint
        self.refs: list[tuple[str, str, str]] = []
        self.versions: list[list[Any]] = []
        self.services: list[tuple[str, str, str]] = []
        self.scenarios: list[tuple[str, str, str, str, str | None, int]] = []
        self.turns: list[tuple[str, int, str | None, str, str, str]] = []
        self.problems: list[str] = []
        self.problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rows:
        name, fp, hooked = data["fingerprint"]
        rows = cls(str(data["name"]), (str(name), str(fp), int(hooked)))
        for name in cls.__slots__:
            if name not in ("name", "fingerprint"):
                setattr(rows, name, data[name])
        return rows


def changed_majors(old: Mapping[str, str], cur: Mapping[str, str]) -> list[int]:
    """The scenarios whose branch, tags or merge marker differ between two ref sets."""
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
    return sorted(majors)


def derive(repo: Repo, name: str, major: int, refs: Mapping[str, str], tip: str | None,
           have: Mapping[str, str | None],
           known: tuple[str, CommitInfo, Mapping[str, bytes]] | None = None,
           parsed: Mapping[str, Any] | None = None) -> Derived:
    """Read scenario ``vMAJOR`` of ``name`` from git: its tags (in ``refs``; those
    ``have`` holds with the same tag id are not read again) and its branch
    ``tip``. Touches no database (safe on any thread)."""
    scen = Scenario(major)
    out = Derived(major)
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
    for v, tag_id in sorted(tags.items()):
        if have.get(str(v)) == tag_id:
            continue
        try:
            tag = repo.tag(str(v))
            if tag is not None:
                info, _, docs = read(repo.resolve(tag.target))
                out.rows.append(version_row(name, v, info, docs, "finalized", tag_id))
        except GitStoreError as exc:
            out.failed.append(str(v))
            out.problems.append(f"{name} {v}: not indexed: {exc}")
    version = None
    if tip is not None:
        info, files, docs = read(tip)
        version = version_of(info, files)
        status = "finalized" if info.finalizes else \
            "merged" if MERGED + str(scen) in refs else "open"
        if version is None:  # a purged scenario's kept analytics summary?
            version, status = retained_version(info, major), RETAINED
        if version is None or version.major != major:
            out.problems.append(f"{name} {scen}: cannot tell the version of {tip[:12]}; "
                                "not indexed")
            version = None
        else:
            if version not in tags:
                out.rows.append(version_row(name, version, info, docs, status, None))
            out.turns = turns_of(docs)
            out.tip = (tip, str(version), scenario_session_id(info, docs), len(out.turns))
    out.latest = str(version) if version else ""
    out.keep = {str(v) for v in tags} | ({out.latest} if version else set())
    return out


def read_customer(root: Path, name: str) -> Rows:
    """Everything the index holds of customer ``name`` under ``root``, read from git
    (touches no database): the rows :meth:`Sync.rebuild` inserts, derived by
    :func:`derive` as on every other path."""
    path = root / name
    got = Rows(name, (name, fingerprint(path) or "", int(journal.hooked(path))))
    try:
        repo = Repo.open(path)
        refs = repo.refs()
        for major in changed_majors({}, refs):
            scen = str(Scenario(major))
            derived = derive(repo, name, major, refs, refs.get(Scenario(major).branch_ref), {})
            got.problems.extend(derived.problems)
            for row in derived.rows:
                row = {**row, "latest": int(row["version"] == derived.latest)}
                got.versions.append([row[c] for c in COLUMNS])
                got.services.extend((name, row["version"], service)
                                    for service in json.loads(row["services"]))
            if derived.tip is not None:
                got.scenarios.append((name, scen, *derived.tip))
                for pos, turn in enumerate(derived.turns):
                    query, response, stamp = turn_text(turn)
                    got.turns.append((scen, pos + 1, iso(stamp),
                                      turn_digest((query, response, stamp)), query, response))
        got.refs = [(name, ref, target) for ref, target in sorted(refs.items())]
    except UNDERIVABLE as exc:
        got.problem = f"{name}: not indexed: {exc}"
    return got


def read_chunk(root: str, names: list[str]) -> list[Rows]:
    """:func:`read_customer` for each of ``names``."""
    return [read_customer(Path(root), name) for name in names]


def read_all(root: Path, names: list[str], *, processes: int | None = None
             ) -> Iterator[list[Rows]]:
    """Every customer of ``names`` read, in order, by batches of :data:`BATCH`: in up
    to ``processes`` worker processes (default: one per CPU, at most 4, when there
    are :data:`PARALLEL_FROM` customers or more), else here."""
    chunks = [names[i:i + BATCH] for i in range(0, len(names), BATCH)]
    workers = processes if processes is not None else \
        min(4, os.cpu_count() or 1) if len(names) >= PARALLEL_FROM else 1
    done = 0
    if workers > 1 and len(chunks) > 1 and sys.executable:
        for batch in _in_workers(root, chunks, min(workers, len(chunks))):
            yield batch
            done += 1
    for chunk in chunks[done:]:  # all of them, or what the workers did not read
        yield read_chunk(str(root), chunk)


def _in_workers(root: Path, chunks: list[list[str]], workers: int) -> Iterator[list[Rows]]:
    """The batches read by ``workers`` processes, in order, until one fails."""
    package_dir = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (package_dir, os.environ.get("PYTHONPATH")) if p)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for j in range(workers):
            proc = subprocess.Popen([sys.executable, "-m", "gitstore.catalog.derive"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, env=env)
            procs.append(proc)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"root": str(root), "chunks": chunks[j::workers]})
                             .encode())
            proc.stdin.close()
        for i in range(len(chunks)):
            out = procs[i % workers].stdout
            line = out.readline() if out is not None else b""
            batch = [Rows.from_json(d) for d in json.loads(line)] if line else None
            if batch is None or [r.name for r in batch] != chunks[i]:
                return
            yield batch
    except (OSError, ValueError, KeyError, TypeError):
        return
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def worker() -> int:
    """A worker process of :func:`read_all`: reads ``{"root", "chunks"}`` (JSON) on
    stdin, writes the rows of each chunk as one JSON line on stdout."""
    job = json.loads(sys.stdin.buffer.read())
    for chunk in job["chunks"]:
        sys.stdout.write(json.dumps([rows.to_json() for rows in read_chunk(job["root"], chunk)])
                         + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(worker())
