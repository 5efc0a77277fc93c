"""Shared helpers of the benchmark suite: timing, results, fixtures and baselines.

Everything a case needs that is not the case itself lives here:

* :class:`Context` (the command-line settings and scratch directories) and
  :class:`CaseResult`/:class:`Row` (what a case reports);
* :func:`timed`, :func:`median`, :func:`summary` (medians of repeated runs);
* realistic turns and whole sessions (:func:`make_turn`, :func:`seed_session`,
  :func:`finalized_customer`), built from ``examples/session``;
* an independent canonical-JSON writer and ``SHA256SUMS`` builder
  (:func:`canonical_bytes`, :func:`sha256sums`), so a case can compute the tree a
  gitstore write must produce without asking gitstore;
* the baselines that write the same files: :class:`RawPygit2Writer`,
  :class:`GitCliWriter`, :class:`JsonFilesWriter`, :class:`SqliteWriter`.

The bench may use pygit2 directly (for the baselines and for building large
fixtures quickly); gitstore itself keeps pygit2 in ``gitstore/backend.py``.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples" / "session"
JSON_DOCS = ("conversation.json", "deployment_context.json", "session_metadata.json",
             "session_analytics.json")
MANIFEST = "SHA256SUMS"
BASE_TIME = datetime(2025, 1, 15, 10, 0, 0, tzinfo=UTC)
SESSION_ID = "orchestrator-session-4f1c2d9e-8b7a-4e21-9c3d-5a6b7c8d9e0f"
AGENT = ("reporter", "reporter@agents.gitstore.invalid")
COMMITTER = ("gitstore", "gitstore@gitstore.invalid")


def log(message: str) -> None:
    """Progress goes to stderr; stdout is for the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class VerificationError(AssertionError):
    """A case's own check failed: a result was wrong, so its timing means nothing."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise VerificationError(message)


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call (``perf_counter``) and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


#: Rounds at least of a whole-process comparison (not in --quick): each process takes
#: 0.1-0.3 s, and on a shared 2-core machine the median of three moved a whole-process
#: ratio by +-15% between runs of one case.
PROCESS_ROUNDS = 9


def process_runs(ctx: Context) -> int:
    """Measured rounds of a whole-process comparison: ``--runs``, at least
    :data:`PROCESS_ROUNDS` unless ``--quick``."""
    return ctx.pick(max(ctx.runs, PROCESS_ROUNDS), ctx.runs)


def interleaved(runs: int, systems: Mapping[str, Callable[[], Any]]
                ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time every system ``runs`` times after one warm-up round, taking turns
    (each round starts with a different system, so no one always goes first).
    Returns the samples per system and each system's last result."""
    samples: dict[str, list[float]] = {s: [] for s in systems}
    results: dict[str, Any] = {}
    order = list(systems)
    for r in range(-1, runs):
        for name in order[r % len(order):] + order[:r % len(order)]:
            seconds, results[name] = timed(systems[name])
            if r >= 0:
                samples[name].append(seconds)
    return samples, results


def median(samples: Iterable[float]) -> float:
    return float(statistics.median(list(samples)))


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, min, max and every sample (seconds, or whatever was measured)."""
    return {"median": median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples), "samples": samples}


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return fmt_seconds(value)
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "/s":
        return f"{value:.1f}/s"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:g} {unit}".strip()


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the results table.

    ``gitstore`` is gitstore's median (``unit``), ``baseline_value`` the
    baseline's median measured in the same run, and ``ratio`` what the
    ``ratio_meaning`` says (for times: gitstore ÷ baseline, lower is better).
    ``target`` is the goal as text; ``ok`` whether this run met it (None: no
    target). Nothing here is a pass/fail test: machines are shared and noisy.
    """

    case: str
    size: str
    measure: str
    unit: str
    gitstore: float | None
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    ratio_meaning: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CaseResult:
    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def note(self, text: str) -> None:
        log(f"{self.name}: note: {text}")
        self.notes.append(text)

    def verified(self, text: str) -> None:
        self.checks.append(text)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows], "notes": self.notes,
                "checks": self.checks, "data": self.data, "error": self.error,
                "seconds": round(self.seconds, 3)}


def time_row(case: str, size: str, measure: str, gitstore: float, baseline: str,
             baseline_value: float | None, *, max_ratio: float | None = None,
             target: str = "", note: str = "") -> Row:
    """A row comparing two median times: ratio = gitstore ÷ baseline (lower is better);
    ``max_ratio`` is the target, if any."""
    ratio = gitstore / baseline_value if baseline_value else None
    ok = None if max_ratio is None or ratio is None else ratio <= max_ratio
    if max_ratio is not None and not target:
        target = f"≤ {max_ratio:.2f}"
    return Row(case, size, measure, "s", gitstore, baseline, baseline_value, ratio,
               "gitstore time ÷ baseline time", target, ok, note)


@dataclass
class Context:
    """Settings shared by every case, and scratch space that is cleaned up."""

    quick: bool
    runs: int
    tmp_root: Path
    keep: bool = False
    fsync: bool = True
    profile: bool = False
    _made: list[Path] = field(default_factory=list)

    def pick(self, normal: Any, quick: Any) -> Any:
        return quick if self.quick else normal

    def tmpdir(self, label: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"gitstore-bench-{label}-", dir=self.tmp_root))
        self._made.append(path)
        return path

    def cleanup(self) -> None:
        for path in self._made:
            if self.keep:
                log(f"kept {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)
        self._made.clear()


# --------------------------------------------------------------------------- canonical data


def canonical_bytes(value: Any) -> bytes:
    """gitstore's canonical JSON, written independently of gitstore.core.canonical:
    sorted keys, two-space indent, UTF-8, one trailing newline."""
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False,
                      separators=(",", ": "))
    return (text + "\n").encode("utf-8")


def sha256sums(files: Mapping[str, bytes]) -> bytes:
    """``SHA256SUMS`` in ``sha256sum`` format, written independently of gitstore.core.manifest."""
    return "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n"
                   for n in sorted(files) if n != MANIFEST).encode("ascii")


def with_manifest(files: Mapping[str, bytes]) -> dict[str, bytes]:
    out = {k: v for k, v in files.items() if k != MANIFEST}
    out[MANIFEST] = sha256sums(out)
    return out


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


TURN_TEMPLATE: dict[str, Any] = json.loads(
    (EXAMPLES / "turns" / "turn-01.json").read_text(encoding="utf-8"))

_SERVICES = ("AWS API Gateway", "AWS Lambda", "Amazon EKS", "Amazon RDS", "Azure Functions",
             "Google Cloud Run", "Amazon SQS", "Azure App Service", "Google GKE", "Amazon S3")
_ASKS = ("What collector should I use for my {svc}?",
         "How do I size the {svc} collector for {n} requests per second?",
         "Which IAM permissions does the {svc} collector need (case {n})?",
         "Can I correlate {svc} logs with traces? We see {n} errors an hour.",
         "Is access logging on {svc} required, or is it optional at {n} rps?")


def make_turn(i: int, *, when: datetime | None = None, turn_id: int | None = None,
              tag: str = "") -> dict[str, Any]:
    """A realistic turn (turn-01.json with varied text), number ``i`` (0-based).

    Stamped ``BASE_TIME + i`` seconds unless ``when`` is given; without
    ``turn_id`` the store numbers it. ``tag`` makes the query unique per writer."""
    turn = copy.deepcopy(TURN_TEMPLATE)
    turn.pop("turn_id", None)
    if turn_id is not None:
        turn["turn_id"] = turn_id
    svc = _SERVICES[i % len(_SERVICES)]
    ask = _ASKS[(i // len(_SERVICES)) % len(_ASKS)].format(svc=svc, n=100 + i)
    turn["timestamp"] = stamp(when or BASE_TIME + timedelta(seconds=i))
    turn["user_input"]["query"] = f"{ask} [{tag or 'q'}{i}]"
    turn["agent_response"]["orchestrator_response"] = (
        f"For {svc} the best fit is the {svc} Enhanced Collector (answer {i}): it reads the "
        "service's CloudWatch metrics and its execution and access logs. Before I size the "
        f"deployment, can you tell me the resource name, what it integrates with and whether "
        f"access logging is enabled? Reference {hashlib.sha1(str(i).encode()).hexdigest()}.")
    turn["agent_response"]["processing_time_seconds"] = 10 + (i % 40) / 2
    turn["agent_response"]["confidence_score"] = 5 + i % 5
    turn["decision_points"][1]["value"] = svc.lower().replace(" ", "_")
    return turn


def conversation(n: int, *, start: int = 0, summary: bool = False,
                 session_id: str = SESSION_ID) -> dict[str, Any]:
    """A conversation of ``n`` turns numbered 1..n (turn ``i`` stamped BASE_TIME + i s)."""
    turns = [make_turn(start + k, turn_id=k + 1) for k in range(n)]
    conv_summary: dict[str, Any] = {"total_turns": n}
    if summary:
        conv_summary = {**_example("conversation.json")["conversation_summary"],
                        "total_turns": n}
    return {"session_id": session_id, "conversation_turns": turns,
            "conversation_summary": conv_summary}


def complete_metadata(customer: str, version: str, n_turns: int,
                      session_id: str = SESSION_ID) -> dict[str, Any]:
    """The example metadata, completed for a session of ``n_turns`` turns that
    started at BASE_TIME (one turn per second)."""
    meta = _example("session_metadata.json")
    minutes = n_turns // 60 + 2
    meta["session_info"].update({
        "api_key": customer, "session_id": session_id, "session_version": version,
        "created_timestamp": stamp(BASE_TIME),
        "completed_timestamp": stamp(BASE_TIME + timedelta(minutes=minutes)),
        "session_duration_minutes": minutes})
    return meta


def example_document(name: str) -> Any:
    return _example(name)


# --------------------------------------------------------------------------- gitstore fixtures


def open_store(root: Path, *, fsync: bool = True) -> Any:
    from gitstore import Store

    return Store.init(root, fsync=fsync)


def session_id_for(name: str) -> str:
    """A session id of its own for ``name`` (session ids are unique per store)."""
    return f"{SESSION_ID}-{name}"


def seed_session(store: Any, name: str, n_turns: int, *,
                 session_id: str = SESSION_ID) -> Any:
    """A customer with an open v1.0.0 holding ``n_turns`` turns, built in two
    gitstore commits (create + one put of the whole conversation), not n appends.
    Session ids are unique per store: a second customer in one store needs its
    own ``session_id`` (:func:`session_id_for`)."""
    customer = store.customer(name)
    session = customer.new_session(session_id=session_id, created=stamp(BASE_TIME))
    if n_turns:
        session.put("conversation.json", conversation(n_turns, session_id=session_id))
    return session


def finalized_customer(store: Any, name: str, n_turns: int) -> Any:
    """A customer whose v1.0.0 is finalized (all five files, SOW rendered) with a
    conversation of ``n_turns`` turns; returns the session."""
    session = seed_session(store, name, 0)
    session.put("conversation.json", conversation(n_turns, summary=True))
    session.put("deployment_context.json", _example("deployment_context.json"))
    session.put("session_analytics.json", _example("session_analytics.json"))
    session.put("session_metadata.json", complete_metadata(name, "v1.0.0", n_turns))
    session.finalize(message="benchmark fixture")
    return session


@contextmanager
def fsync_off() -> Iterator[None]:
    """Build large fixtures without fsync (libgit2's setting is process-wide),
    then restore gitstore's setting."""
    from gitstore.git import repo as backend

    pygit2.settings.enable_fsync_gitdir(False)
    try:
        yield
    finally:
        if getattr(backend, "_fsync_enabled", True):
            pygit2.settings.enable_fsync_gitdir(True)


# --------------------------------------------------------------------------- git CLI


GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": AGENT[0], "GIT_AUTHOR_EMAIL": AGENT[1],
    "GIT_COMMITTER_NAME": COMMITTER[0], "GIT_COMMITTER_EMAIL": COMMITTER[1],
    "LC_ALL": "C",
}


def git(repo: Path, *args: str, input: bytes | None = None, fsync: bool = False,
        env: Mapping[str, str] | None = None) -> bytes:
    """Run ``git -C repo args`` and return stdout; with ``fsync``, harden objects
    and refs as gitstore does (``core.fsync=committed,reference``)."""
    cmd = ["git", "-C", str(repo)]
    if fsync:
        cmd += ["-c", "core.fsync=committed,reference", "-c", "core.fsyncMethod=fsync"]
    proc = subprocess.run([*cmd, *args], input=input, capture_output=True,
                          env={**GIT_ENV, **(env or {})}, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def git_version() -> str:
    try:
        return subprocess.run(["git", "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --------------------------------------------------------------------------- baselines
#
# Every baseline is given the exact files a gitstore write produced (canonical
# bytes, manifest included) and writes them its own way; which files changed
# since the previous write is given too. Only write() is timed.


def trailer_message(summary: str, turn: int | None = None) -> str:
    """A commit message with gitstore-style trailers (for baselines and fixtures)."""
    lines = [f"Session-Id: {SESSION_ID}", "Session-Version: v1.0.0", "Change: turn"]
    if turn is not None:
        lines.append(f"Turn: {turn}")
    lines += ["Documents: conversation.json", f"Agent: {AGENT[0]}", "Schema-Version: 1"]
    return f"{summary}\n\n" + "\n".join(lines) + "\n"


class Baseline(abc.ABC):
    """A way of storing the same documents that gitstore is measured against."""

    name = "baseline"

    @abc.abstractmethod
    def setup(self, root: Path, files: Mapping[str, bytes]) -> None:
        """Create the storage under ``root`` holding ``files``."""

    @abc.abstractmethod
    def write(self, files: Mapping[str, bytes], changed: set[str], message: str) -> str | None:
        """Store ``files`` as the next version; return the tree id if it has one."""

    @abc.abstractmethod
    def stored(self) -> dict[str, bytes]:
        """The newest stored files, read back (for verification)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most baselines hold nothing)
        """Release what the baseline holds open (nothing, unless overridden)."""


class RawPygit2Writer(Baseline):
    """Blobs + tree + commit + compare-and-swap ref update, straight with pygit2
    (fsync as the process has it: on, once a gitstore Store with fsync is open)."""

    name = "raw pygit2"
    ref = "refs/heads/v1"

    def setup(self, root: Path, files: Mapping[str, bytes]) -> None:
        self.repo = pygit2.init_repository(str(root), bare=True)
        self.repo.config["core.logAllRefUpdates"] = "always"
        self.repo.set_head(self.ref)  # as in gitstore: HEAD's reflog is written too
        self.time = int(BASE_TIME.timestamp())
        self.write(files, set(files), "v1.0.0: start session")

    def write(self, files: Mapping[str, bytes], changed: set[str], message: str) -> str:
        repo = self.repo
        builder = repo.TreeBuilder()
        for name in sorted(files):
            builder.insert(name, repo.create_blob(files[name]), pygit2.enums.FileMode.BLOB)
        tree = builder.write()
        self.time += 1
        author = pygit2.Signature(*AGENT, self.time, 0)
        committer = pygit2.Signature(*COMMITTER, self.time, 0)
        ref = repo.references.get(self.ref)
        parents = [ref.target] if ref is not None else []
        commit = repo.create_commit(None, author, committer, message, tree, parents)
        if ref is None:
            repo.create_reference_direct(self.ref, commit, False, message=message)
        else:
            ref.set_target(commit, message)  # libgit2: fails if the ref moved meanwhile
        return str(tree)

    def stored(self) -> dict[str, bytes]:
        commit = self.repo.references[self.ref].peel(pygit2.Commit)
        return {e.name: self.repo[e.id].data for e in commit.tree}


class GitCliWriter(Baseline):
    """``git hash-object -w`` (changed files only), ``mktree``, ``commit-tree``,
    ``update-ref NEW OLD``: one process each."""

    name = "git CLI plumbing"
    ref = "refs/heads/v1"

    def __init__(self, fsync: bool = True) -> None:
        self.fsync = fsync

    def setup(self, root: Path, files: Mapping[str, bytes]) -> None:
        self.root = root
        git(root.parent, "init", "-q", "--bare", root.name)
        git(root, "config", "core.logAllRefUpdates", "always")
        git(root, "symbolic-ref", "HEAD", self.ref)
        self.blobs: dict[str, tuple[bytes, str]] = {}
        self.tip: str | None = None
        self.time = int(BASE_TIME.timestamp())
        self.write(files, set(files), "v1.0.0: start session")

    def write(self, files: Mapping[str, bytes], changed: set[str], message: str) -> str:
        entries = []
        for name in sorted(files):
            known = self.blobs.get(name)
            if known is None or known[0] != files[name]:
                oid = git(self.root, "hash-object", "-w", "--stdin", input=files[name],
                          fsync=self.fsync).decode().strip()
                self.blobs[name] = (files[name], oid)
            entries.append(f"100644 blob {self.blobs[name][1]}\t{name}\n")
        tree = git(self.root, "mktree", input="".join(entries).encode(),
                   fsync=self.fsync).decode().strip()
        self.time += 1
        date = f"{self.time} +0000"
        parents = ["-p", self.tip] if self.tip else []
        commit = git(self.root, "commit-tree", tree, *parents, "-F", "-",
                     input=message.encode(), fsync=self.fsync,
                     env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}).decode().strip()
        old = self.tip or "0" * 40
        git(self.root, "update-ref", "-m", message.splitlines()[0], self.ref, commit, old,
            fsync=self.fsync)
        self.tip = commit
        return tree

    def stored(self) -> dict[str, bytes]:
        names = git(self.root, "ls-tree", "--name-only", self.ref).decode().split("\n")
        return {n: git(self.root, "cat-file", "blob", f"{self.ref}:{n}") for n in names if n}


def _validate_changed(files: Mapping[str, bytes], changed: set[str]) -> None:
    """Parse and schema-validate the changed JSON documents with gitstore's own
    validator (the same one its pipeline uses)."""
    from gitstore.core import canonical, schema

    for name in sorted(changed):
        if name in JSON_DOCS:
            found = schema.validate(name, canonical.loads(files[name]))
            if found:
                raise VerificationError(f"baseline input {name} is invalid: {found[0]}")


class JsonFilesWriter(Baseline):
    """Plain JSON files in a directory: changed JSON documents validated, every
    changed file written atomically (tmp + fsync + rename), then the directory
    fsynced. No history: the directory is the newest version."""

    name = "JSON files + validation"

    def __init__(self, fsync: bool = True) -> None:
        self.fsync = fsync

    def setup(self, root: Path, files: Mapping[str, bytes]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.write(files, set(files), "")

    def write(self, files: Mapping[str, bytes], changed: set[str], message: str) -> None:
        _validate_changed(files, changed)
        for name in sorted(changed):
            tmp = self.root / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, files[name])
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.root / name)
        if self.fsync:
            dfd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return None

    def stored(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.root.iterdir() if not p.name.startswith(".")}


class SqliteWriter(Baseline):
    """One SQLite row per document per version (WAL, synchronous=FULL), the
    changed JSON documents validated; one transaction per version."""

    name = "SQLite rows"

    def __init__(self, fsync: bool = True) -> None:
        self.fsync = fsync

    def setup(self, root: Path, files: Mapping[str, bytes]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "store.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'OFF'}")
        self.db.execute("CREATE TABLE versions (seq INTEGER PRIMARY KEY, message TEXT)")
        self.db.execute("CREATE TABLE documents (seq INTEGER, name TEXT, body BLOB, "
                        "PRIMARY KEY (seq, name))")
        self.seq = 0
        self.write(files, set(files), "v1.0.0: start session")

    def write(self, files: Mapping[str, bytes], changed: set[str], message: str) -> None:
        _validate_changed(files, changed)
        self.seq += 1
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO versions VALUES (?, ?)", (self.seq, message))
            db.executemany("INSERT INTO documents VALUES (?, ?, ?)",
                           [(self.seq, n, files[n]) for n in sorted(files)])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return None

    def stored(self) -> dict[str, bytes]:
        rows = self.db.execute("SELECT name, body FROM documents WHERE seq = ?", (self.seq,))
        return {name: bytes(body) for name, body in rows}

    def close(self) -> None:
        self.db.close()


def baselines(fsync: bool) -> list[Baseline]:
    return [RawPygit2Writer(), GitCliWriter(fsync), JsonFilesWriter(fsync), SqliteWriter(fsync)]


# --------------------------------------------------------------------------- machine


def machine_info(tmp_root: Path) -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "pygit2": pygit2.__version__,
        "libgit2": pygit2.LIBGIT2_VERSION,
        "git": git_version(),
        "sqlite": sqlite3.sqlite_version,
        "tmp_dir": str(tmp_root),
        "tmp_filesystem": _filesystem(tmp_root),
    }
    try:
        from importlib.metadata import version

        info["jsonschema"] = version("jsonschema")
        info["pydantic"] = version("pydantic")
    except Exception:  # metadata missing: not important enough to fail
        pass
    try:
        import gitstore

        info["gitstore"] = gitstore.__version__
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no", "gitstore"],
                               capture_output=True, text=True, check=False).stdout.strip()
        info["gitstore_commit"] = head + ("+dirty" if dirty else "") if head else None
    except Exception:
        pass
    return info


def _filesystem(path: Path) -> str:
    """The filesystem type under ``path`` (fsync costs differ wildly: tmpfs, ext4…)."""
    best, kind = "", "unknown"
    try:
        resolved = str(path.resolve())
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and resolved.startswith(parts[1]) \
                        and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind
