"""Shared fixtures: real repositories in temp dirs, isolated git configuration.

Every test runs with a temporary HOME, no system git config and fixed git
identities, so the developer's own git setup can neither help nor break a test.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitstore import Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CUSTOMER = "customer-xyz789"
SESSION_ID = "orchestrator-session-4f1c2d9e-8b7a-4e21-9c3d-5a6b7c8d9e0f"


@pytest.fixture(autouse=True, scope="session")
def _isolated_git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test Author",
        "GIT_AUTHOR_EMAIL": "author@example.invalid",
        "GIT_COMMITTER_NAME": "Test Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.invalid",
        "GIT_TERMINAL_PROMPT": "0",
        # cross-check every spliced conversation against its full serialisation
        "GITSTORE_CHECK_SPLICE": "1",
    })
    for key in ("GITSTORE_ROOT", "GITSTORE_AGENT", "GIT_DIR", "GIT_WORK_TREE", "NO_COLOR"):
        os.environ.pop(key, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def git(repo: Path, *args: str, check: bool = True, input: bytes | None = None) -> str:
    """Run the real git binary in ``repo``; return stdout as text."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, input=input,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode("utf-8", errors="replace")


def explode_packs(repo: Path) -> None:
    """Turn every pack of ``repo`` into loose objects, as a repository written
    with plain git holds them (gitstore writes one small pack per write), so a
    test can damage one object file."""
    for pack in sorted((repo / "objects" / "pack").glob("*.pack")):
        data = pack.read_bytes()
        for suffix in (".idx", ".pack", ".rev", ".keep"):
            pack.with_suffix(suffix).unlink(missing_ok=True)
        subprocess.run(["git", "-C", str(repo), "unpack-objects", "-q"], input=data,
                       check=True)


def git_conversation(repo: Path, rev: str) -> bytes:
    """``conversation.json`` at ``rev`` as an auditor gets it with plain git: the
    file itself where the commit holds it whole (layout 1, every version tag),
    else its head and turn chunks (``conversation/``), joined as JSON."""
    whole = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:conversation.json"],
                           capture_output=True, check=False)
    if whole.returncode == 0:
        return whole.stdout
    doc = json.loads(git(repo, "show", f"{rev}:conversation/head.json"))
    names = git(repo, "ls-tree", "--name-only", f"{rev}:conversation/turns").split()
    doc["conversation_turns"] = [turn for name in sorted(names) for turn in json.loads(
        git(repo, "show", f"{rev}:conversation/turns/{name}"))]
    text = json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def repo_state(repo: Path) -> tuple[str, str]:
    """All refs and every reachable object: equal before and after a refused write."""
    if not repo.exists():
        return ("", "")
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", check=False)
    objects = git(repo, "rev-list", "--objects", "--all", check=False)
    return refs, "\n".join(sorted(objects.splitlines()))


def load_example(*parts: str) -> Any:
    return json.loads((EXAMPLES.joinpath(*parts)).read_text(encoding="utf-8"))


class Clock:
    """A deterministic clock: each call is one second after the previous."""

    def __init__(self, start: datetime = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)) -> None:
        self._ticks = itertools.count()
        self.start = start

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=next(self._ticks))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.init(tmp_path / "sessions", clock=Clock())


def example_session_id(customer: str = CUSTOMER) -> str:
    """The example's session id for ``customer``: SESSION_ID for CUSTOMER, a derived
    one for any other (session ids are unique per store; the name itself is not in it,
    as a store with hashed names refuses documents holding the api_key)."""
    digest = hashlib.sha256(customer.encode()).hexdigest()[:12]
    return SESSION_ID if customer == CUSTOMER else f"{SESSION_ID}-{digest}"


def record_example_session(store: Store, customer: str = CUSTOMER) -> Any:
    """Record examples/session turn by turn and finalize v1.0.0; returns the Session.
    The session id is :func:`example_session_id` of ``customer``."""
    sid = example_session_id(customer)
    session = store.customer(customer).new_session(
        session_id=sid, created="2025-01-15T10:30:00Z")
    for path in sorted((EXAMPLES / "session" / "turns").glob("turn-*.json")):
        session.append_turn(path.read_bytes())
    conversation = load_example("session", "conversation.json")
    session.set_summary(conversation["conversation_summary"])
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name == "session_metadata.json":
            doc["session_info"]["api_key"] = customer
            doc["session_info"]["session_id"] = sid
        session.put(name, doc)
    session.finalize(message="deployment plan agreed")
    return session


@pytest.fixture
def finalized(store: Store) -> Any:
    """A store holding the example session finalized as v1.0.0."""
    return record_example_session(store)


RecordFn = Callable[[Store, str], Any]


@dataclass
class CliResult:
    """What one in-process CLI run printed, and its exit code."""

    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(root: Path, *args: str) -> CliResult:
    """Run the CLI in this process (stdout is a pipe, not a terminal) and
    capture what it prints; the exit code is what ``main()`` exits with."""
    from gitstore.cli import app as cli_module

    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", newline="")
    stderr = io.TextIOWrapper(err, encoding="utf-8", newline="")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    code: Any = None
    try:
        cli_module.main(["--root", str(root), *args])
    except SystemExit as exc:
        code = exc.code
    finally:
        stdout.flush()
        stderr.flush()
        sys.stdout, sys.stderr = saved
    assert isinstance(code, int), f"main() ended with {code!r}"
    return CliResult(code, out.getvalue(), err.getvalue().decode("utf-8"))


# -- a customer with history: four versions in two scenarios, three agents --------

ADVISOR = "advisor <advisor@agents.example.invalid>"
PLANNER = "planner <planner@agents.example.invalid>"
SESSION_2 = "orchestrator-session-second-deployment-scenario"
T11 = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)
T15 = datetime(2025, 1, 15, 15, 0, tzinfo=UTC)
T17 = datetime(2025, 1, 15, 17, 0, tzinfo=UTC)


def example_turn(n: int) -> Any:
    folder = "session" if n <= 5 else "follow_up"
    return load_example(folder, "turns", f"turn-{n:02d}.json")


def build_history(root: Path) -> Store:
    """v1.0.0 (reporter), v1.1.0 and v1.1.1 (advisor), v2.0.0 (planner)."""
    store = Store.init(root, clock=Clock(T11))
    record_example_session(store)
    advisor = Store(root, agent=ADVISOR, clock=Clock(T15))
    session = advisor.customer(CUSTOMER).session()
    session.follow_up(message="customer asked about alarms and tracing")
    for n in (6, 7):
        session.append_turn(example_turn(n))
    meta = load_example("follow_up", "session_metadata.json")
    meta["session_info"]["api_key"] = CUSTOMER
    session.put("session_metadata.json", meta)
    session.finalize(message="follow-up answered")
    session.correct({"session_analytics.json": EXAMPLES / "correction" / "session_analytics.json"},
                    reason="actual outcome known", base="v1.1.0")
    planner = Store(root, agent=PLANNER, clock=Clock(T17))
    second = planner.customer(CUSTOMER).new_session(session_id=SESSION_2,
                                                    created="2025-01-15T10:30:00Z")
    conv = load_example("session", "conversation.json")
    for t in conv["conversation_turns"][:3]:
        second.append_turn(t)
    second.set_summary({**conv["conversation_summary"], "total_turns": 3})
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name == "session_metadata.json":
            for managed in ("session_version", "session_id", "api_key"):
                doc["session_info"].pop(managed)
        second.put(name, doc)
    second.finalize(message="second scenario agreed")
    return store
