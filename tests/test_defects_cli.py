"""Issue 10, items 12, 14, 16 and 18: retry-safe writes, restoring a git bundle as
another customer, help texts that match the README and the behaviour, and
writers that say why they wait.

Real stores in temp dirs, the real git binary for checking, the CLI in-process
(``run_cli``) or as a separate process where two processes must meet.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    ROOT,
    SESSION_ID,
    Clock,
    build_history,
    git,
    load_example,
    record_example_session,
    repo_state,
    run_cli,
)

from gitstore import Store, UsageError, VersionRuleError
from gitstore.cli import app as cli_mod
from gitstore.core import canonical

TURN = {"timestamp": "2025-01-15T10:31:00Z",
        "user_input": {"query": "Which collector should I use?"},
        "agent_response": {"orchestrator_response": "The ADOT collector."}}


def turns_of(store: Store, customer: str = CUSTOMER) -> list[Any]:
    conv = store.customer(customer).read().document("conversation.json")
    return list(conv["conversation_turns"])


class SettableClock:
    """A store clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 15, 11, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


# -- item 12: retries do not duplicate data ------------------------------------------------

def test_a_turn_sent_twice_is_stored_once(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    first = session.append_turn(TURN)
    before = repo_state(store.root / CUSTOMER)
    again = session.append_turn(json.dumps(TURN))  # the same turn, resent as JSON text
    assert again.replayed and not first.replayed
    assert (again.commit, again.version, again.turn) == (first.commit, first.version, 1)
    assert repo_state(store.root / CUSTOMER) == before
    # the retry is in the access log
    ops = [r["op"] for r in store.customer(CUSTOMER).audit_log.records()]
    assert ops[-1] == "write:replayed"
    assert len(turns_of(store)) == 1
    key = git(store.root / CUSTOMER, "log", "-1",
              "--format=%(trailers:key=Idempotency-Key,valueonly)", first.commit).strip()
    assert re.fullmatch(r"turn-sha256:[0-9a-f]{64}", key)
    # a retry with the turn_id the first write gave it is the same turn, too
    assert session.append_turn({**TURN, "turn_id": 1}).replayed
    # a different turn is a new one
    assert session.append_turn({**TURN, "timestamp": "2025-01-15T10:32:00Z"}).turn == 2


def test_the_same_turn_after_the_window_is_a_new_turn(tmp_path: Path) -> None:
    clock = SettableClock()
    store = Store.init(tmp_path / "sessions", clock=clock)
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    session.append_turn(TURN)
    clock.now += timedelta(minutes=9)
    assert session.append_turn(TURN).replayed  # inside the 10-minute window
    clock.now += timedelta(minutes=11)
    later = session.append_turn(TURN)  # asked again, much later: stored
    assert not later.replayed and later.turn == 2
    assert len(turns_of(store)) == 2


def test_the_window_follows_an_explicit_write_time(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    first = session.append_turn(TURN, at="2024-06-01T10:00:00Z")
    assert session.append_turn(TURN, at="2024-06-01T10:05:00Z").commit == first.commit
    assert not session.append_turn(TURN, at="2024-06-01T11:00:00Z").replayed


def test_an_explicit_key_replaces_the_content_key(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    a = session.append_turn(TURN, idempotency_key="req-1")
    b = session.append_turn(TURN, idempotency_key="req-2")  # the caller says: two turns
    assert not b.replayed and (a.turn, b.turn) == (1, 2)
    c = session.append_turn({**TURN, "timestamp": "2025-01-15T10:40:00Z"},
                            idempotency_key="req-1")
    assert c.replayed and c.commit == a.commit


def test_a_key_sent_again_with_other_content_is_refused(store: Store) -> None:
    """A key names one write, content included: a turn may be stamped anew on a
    retry, but a turn, document, summary or correction that differs is refused
    (never reported as stored) and nothing is written."""
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    repo = store.root / CUSTOMER
    first = session.append_turn(TURN, idempotency_key="t")
    context = load_example("session", "deployment_context.json")
    put = session.put("deployment_context.json", context, idempotency_key="p")
    summary = {"key_points": ["ADOT"]}
    said = session.set_summary(summary, idempotency_key="s")
    before = repo_state(repo)
    assert session.append_turn({**TURN, "turn_id": 1, "timestamp": "2025-01-15T10:35:00Z"},
                               idempotency_key="t").commit == first.commit
    assert session.put("deployment_context.json", context, idempotency_key="p").commit == \
        put.commit
    assert session.set_summary(summary, idempotency_key="s").commit == said.commit
    refused = [
        (lambda: session.append_turn({**TURN, "user_input": {"query": "Another question?"}},
                                     idempotency_key="t"), "turn"),
        (lambda: session.put("deployment_context.json", {**context, "extra": 1},
                             idempotency_key="p"), "update of deployment_context.json"),
        (lambda: session.set_summary({"key_points": ["OTel"]}, idempotency_key="s"),
         "update of conversation.json"),
    ]
    for call, what in refused:
        with pytest.raises(UsageError, match=f"the {what} with other content that made"):
            call()
        assert repo_state(repo) == before, what
    record_example_session(store, "other-co")
    other = store.customer("other-co").session()
    analytics = load_example("correction", "session_analytics.json")
    fixed = other.correct({"session_analytics.json": analytics}, reason="r",
                          idempotency_key="c")
    assert other.correct({"session_analytics.json": analytics}, reason="r",
                         idempotency_key="c").commit == fixed.commit
    with pytest.raises(UsageError, match="the correction with other content"):
        other.correct({"session_analytics.json": {**analytics, "x": 1}}, reason="r",
                      idempotency_key="c")
    # a correction the store completes (a derived field it fills) is still a replay
    conv = other.read().document("conversation.json")
    summary = {k: v for k, v in conv["conversation_summary"].items()
               if k != "total_duration_minutes"}
    fixed_conv = {**conv, "conversation_summary": {**summary, "final_recommendation": "x"}}
    done = other.correct({"conversation.json": fixed_conv}, reason="r2", idempotency_key="d")
    stored = other.read().document("conversation.json")["conversation_summary"]
    assert "total_duration_minutes" in stored  # filled by the store
    again = other.correct({"conversation.json": fixed_conv}, reason="r2", idempotency_key="d")
    assert again.replayed and again.commit == done.commit


def test_new_refuses_while_a_scenario_is_open(store: Store) -> None:
    cust = store.customer(CUSTOMER)
    cust.new_session(created="2025-01-15T10:30:00Z")
    before = repo_state(store.root / CUSTOMER)
    with pytest.raises(VersionRuleError, match=r"open scenario: v1 .*--new-scenario"):
        cust.new_session()
    assert repo_state(store.root / CUSTOMER) == before
    assert cust.new_session(allow_open=True).version.major == 2
    # a retried new with its key returns the scenario it opened
    first = cust.new_session(allow_open=True, idempotency_key="open-v3")
    again = cust.new_session(idempotency_key="open-v3")
    assert again.created is not None and again.created.replayed
    assert first.created is not None and again.created.commit == first.created.commit
    assert [s.major for s in cust.scenarios()] == [1, 2, 3]


def test_new_after_finalize_or_expiry_needs_no_flag(finalized: Any, store: Store) -> None:
    cust = store.customer(CUSTOMER)
    assert cust.new_session().version.major == 2  # v1 is finalized
    from gitstore.ops.retention import expire

    later = Store(store.root, clock=Clock(datetime(2025, 3, 1, tzinfo=UTC)))
    assert expire(later, older_than=timedelta(days=7))  # v2 idle: expired
    assert later.customer(CUSTOMER).new_session().version.major == 3


def _ok(r: Any) -> str:
    assert r.code == 0, r.err
    return str(r.text)


def test_every_write_command_takes_an_idempotency_key(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    Store.init(root)
    repo = root / CUSTOMER
    session = EXAMPLES / "session"
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({k: v for k, v in load_example(
        "session", "conversation.json")["conversation_summary"].items()
        if k != "total_turns"}))
    steps = [
        ["new", CUSTOMER, "--session-id", SESSION_ID, "--created", "2025-01-15T10:30:00Z"],
        ["turn", CUSTOMER, str(session / "turns" / "turn-01.json")],
        ["put", CUSTOMER, "deployment_context.json", str(session / "deployment_context.json")],
        ["summary", CUSTOMER, str(summary)],
        ["put", CUSTOMER, "session_analytics.json", str(session / "session_analytics.json")],
        ["put", CUSTOMER, "session_metadata.json", str(session / "session_metadata.json")],
        ["finalize", CUSTOMER, "-m", "agreed"],
        ["follow-up", CUSTOMER],
        ["put", CUSTOMER, "session_metadata.json",
         str(EXAMPLES / "follow_up" / "session_metadata.json")],
        ["finalize", CUSTOMER],
        ["correct", CUSTOMER, str(EXAMPLES / "correction" / "session_analytics.json"),
         "-r", "actual time came in"],
    ]
    for n, step in enumerate(steps):
        args = [*step, "--idempotency-key", f"req-{n}"]
        first = _ok(run_cli(root, *args))
        state = repo_state(repo)
        again = _ok(run_cli(root, *args))
        assert again == first.rstrip("\n") + " (replayed)\n", step
        assert repo_state(repo) == state, step
        data = run_cli(root, *args, "-o", "json").json()
        assert data["replayed"] is True and data["commit"].startswith(first.split()[2])
    assert [v["version"] for v in run_cli(root, "versions", CUSTOMER, "-o", "json").json()] \
        == ["v1.0.0", "v1.1.0", "v1.1.1"]


def test_a_key_used_for_another_write_is_refused_never_replayed(tmp_path: Path) -> None:
    """A key names one write: a different command, or an update of another document,
    under a key already recorded is refused (exit 2, naming the first write), and
    nothing is written; the same command again is still a replay."""
    root = tmp_path / "sessions"
    Store.init(root)
    repo = root / CUSTOMER
    session = EXAMPLES / "session"
    _ok(run_cli(root, "new", CUSTOMER, "--session-id", SESSION_ID, "--idempotency-key", "n"))
    put = ["put", CUSTOMER, "deployment_context.json", str(session / "deployment_context.json")]
    first = _ok(run_cli(root, *put, "--idempotency-key", "k"))
    state = repo_state(repo)
    others = [
        ["finalize", CUSTOMER],
        ["follow-up", CUSTOMER],
        ["turn", CUSTOMER, str(session / "turns" / "turn-01.json")],
        ["put", CUSTOMER, "session_analytics.json", str(session / "session_analytics.json")],
        ["new", CUSTOMER, "--new-scenario"],
        ["correct", CUSTOMER, str(EXAMPLES / "correction" / "session_analytics.json"),
         "-r", "why"],
    ]
    for step in others:
        r = run_cli(root, *step, "--idempotency-key", "k")
        assert r.code == 2, (step, r.code, r.err)
        assert "idempotency key 'k' was used for another write (the update of " \
               f"deployment_context.json that made commit {first.split()[2]}" in r.err, r.err
        assert "\n" not in r.err.strip()
        assert repo_state(repo) == state, step
    assert _ok(run_cli(root, *put, "--idempotency-key", "k")) == \
        first.rstrip("\n") + " (replayed)\n"
    # the key of `new` (on v1's branch) is refused to another scenario's creation too
    r = run_cli(root, "new", CUSTOMER, "--new-scenario", "--idempotency-key", "n")
    assert r.code == 0 and r.text.endswith(" (replayed)\n"), r.err
    session_api = Store(root).customer(CUSTOMER).session()
    with pytest.raises(UsageError, match="was used for another write"):
        session_api.set_summary({"key_points": ["x"]}, idempotency_key="n")
    assert repo_state(repo) == state


def test_cli_new_twice_and_a_turn_sent_twice(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    Store.init(root)
    _ok(run_cli(root, "new", CUSTOMER))
    r = run_cli(root, "new", CUSTOMER)
    assert r.code == 5 and "--new-scenario" in r.err and "\n" not in r.err.strip()
    assert "v2" in _ok(run_cli(root, "new", CUSTOMER, "--new-scenario"))
    turn = tmp_path / "turn.json"
    turn.write_text(json.dumps({**TURN, "timestamp": datetime.now(UTC).isoformat()}))
    first = _ok(run_cli(root, "turn", CUSTOMER, str(turn)))
    assert _ok(run_cli(root, "turn", CUSTOMER, str(turn))) == \
        first.rstrip("\n") + " (replayed)\n"
    assert len(turns_of(Store(root))) == 1


# -- item 14: import BUNDLE --customer NAME ------------------------------------------------

def _log(repo: Path, *refs: str) -> list[str]:
    return git(repo, "log", "--format=%an <%ae> %at %s", *refs).splitlines()


def test_a_git_bundle_restores_as_another_customer(tmp_path: Path) -> None:
    source = tmp_path / "source"
    build_history(source)
    bundle = tmp_path / "x.bundle"
    _ok(run_cli(source, "export", CUSTOMER, "--format", "git-bundle", "-O", str(bundle)))
    target = tmp_path / "target"
    Store.init(target)
    assert _ok(run_cli(target, "import", str(bundle), "--customer", "other-co")) == \
        "imported other-co\n"
    new, old = target / "other-co", source / CUSTOMER
    assert not (target / CUSTOMER).exists()
    assert run_cli(target, "verify", "other-co").code == 0
    git(new, "fsck", "--strict")
    # same scenarios, versions, tags, authors, times and summaries ...
    assert git(new, "for-each-ref", "--format=%(refname)").split() == \
        git(old, "for-each-ref", "--format=%(refname)").split()
    for ref in ("v1", "v2"):
        assert _log(new, ref) == _log(old, ref)
    originals = set(git(old, "rev-list", "--all").split())
    assert set(git(new, "log", "--all", "--format=%(trailers:key=Imported-From,valueonly)")
               .split()) == originals
    assert set(git(new, "log", "--all", "--format=%(trailers:key=Renamed-From,valueonly)")
               .split()) == {CUSTOMER}
    assert f"Renamed-From: {CUSTOMER}" in git(new, "cat-file", "-p", "v1.1.1")
    # ... and the same documents, but for the api_key the store manages
    src, dst = Store(source).customer(CUSTOMER), Store(target).customer("other-co")
    for v in [v.version for v in src.versions()]:
        a, b = src.read(str(v)).documents(), dst.read(str(v)).documents()
        assert b["session_metadata.json"]["session_info"]["api_key"] == "other-co"
        b["session_metadata.json"]["session_info"]["api_key"] = CUSTOMER
        assert a == b, v
    for commit in git(new, "rev-list", "--all").split():
        meta = git(new, "show", f"{commit}:session_metadata.json", check=False)
        if meta:
            assert canonical.loads(meta.encode())["session_info"]["api_key"] == "other-co"
    # importing it again: the customer exists
    assert run_cli(target, "import", str(bundle), "--customer", "other-co").code == 6


def test_restore_as_the_bundles_own_name_keeps_the_commit_ids(tmp_path: Path) -> None:
    source = tmp_path / "source"
    record_example_session(Store.init(source, clock=Clock()))
    bundle = tmp_path / "x.bundle"
    _ok(run_cli(source, "export", CUSTOMER, "--format", "git-bundle", "-O", str(bundle)))
    target = tmp_path / "target"
    Store.init(target)
    _ok(run_cli(target, "import", str(bundle), "--customer", CUSTOMER))
    assert repo_state(target / CUSTOMER) == repo_state(source / CUSTOMER)


# -- item 16: help texts and the README ------------------------------------------------------

def _command(path: list[str]) -> click.Command:
    ctx = click.Context(cli_mod.cli)
    command: click.Command | None = cli_mod.cli
    for name in path:
        assert isinstance(command, click.Group), path
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {' '.join(path)}"
    assert command is not None
    return command


def _options(command: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for p in command.params:
        if isinstance(p, click.Option):
            names.update(p.opts)
            names.update(p.secondary_opts)
    return names


def _readme_invocations() -> list[str]:
    """Every ``gitstore ...`` the README shows: code-block lines and code spans."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"`(gitstore [^`]+)`", text)
    in_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and line.startswith("gitstore "):
            found.append(line)
    return found


OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][A-Za-z0-9-]*)")


def _parse(invocation: str) -> list[tuple[list[str], set[str]]]:
    """(command path, options named after it) for each command an invocation names;
    group options before the command are checked against the group."""
    words = invocation.split()[1:]
    group = _options(cli_mod.cli)
    takes_value = {o for p in cli_mod.cli.params if isinstance(p, click.Option)
                   and not p.is_flag for o in p.opts}
    while words and words[0].startswith("-"):
        word = words.pop(0)
        assert word in group, f"`{invocation}`: gitstore has no option {word}"
        if word in takes_value and words:
            words.pop(0)
    if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
        return []  # gitstore COMMAND --help and the like
    out = []
    rest = " ".join(words)
    for part in rest.split(" | "):
        tokens = part.split()
        path = [tokens[0]]
        command = _command(path)
        while isinstance(command, click.Group) and len(tokens) > len(path) and \
                tokens[len(path)] in command.list_commands(click.Context(command)):
            path.append(tokens[len(path)])
            command = _command(path)
        out.append((path, set(OPTION.findall(" ".join(tokens[len(path):])))))
    return out


def test_every_command_and_option_the_readme_names_exists() -> None:
    seen = set()
    for invocation in _readme_invocations():
        for path, options in _parse(invocation):
            command = _command(path)
            seen.add(" ".join(path))
            if isinstance(command, click.Group):
                continue
            missing = options - _options(command)
            assert not missing, f"`{invocation}`: gitstore {' '.join(path)} has no {missing}"
    assert {"new", "turn", "list", "retention apply", "init", "diff"} <= seen


@pytest.mark.parametrize("name", sorted(cli_mod.COMMANDS))
def test_every_command_has_help(name: str, tmp_path: Path) -> None:
    r = run_cli(tmp_path / "no-store", name, "--help")
    assert r.code == 0, r.err
    assert r.text.startswith(f"Usage: gitstore {name}")
    assert not (tmp_path / "no-store").exists()  # help touches no store


WRITES = {"new", "turn", "put", "summary", "finalize", "follow-up", "correct"}
READS = {"show", "diff", "versions", "log", "customers", "audit", "verify", "list", "stats",
         "search", "similar", "active", "resume"}


def test_documented_defaults_match_behaviour(tmp_path: Path) -> None:
    # only writes act on "the newest" scenario by default; every write takes a retry key
    for name in cli_mod.COMMANDS:
        command = _command([name])
        for p in command.params:
            if isinstance(p, click.Option) and "default: the newest" in (p.help or ""):
                assert name in WRITES, f"{name} {p.opts}: {p.help}"
        if name in WRITES:
            assert "--idempotency-key" in _options(command), name
        if name in READS:  # "Read commands take -o text|json" (README)
            (output,) = [p for p in command.params if "--output" in getattr(p, "opts", [])]
            assert isinstance(output.type, click.Choice)
            assert {"text", "json"} <= set(output.type.choices), name
    help_text = run_cli(tmp_path, "versions", "--help").text
    assert "default: every scenario" in " ".join(help_text.split())
    root = tmp_path / "sessions"
    build_history(root)
    every = [v["version"] for v in run_cli(root, "versions", CUSTOMER, "-o", "json").json()]
    assert every == ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0"]  # without -s: all of them
    assert [v["version"] for v in run_cli(root, "versions", CUSTOMER, "-s", "v1",
                                          "-o", "json").json()] == every[:3]
    # a write without -s acts on the newest scenario
    Store(root).customer(CUSTOMER).session(1).follow_up()
    turn = tmp_path / "t.json"
    turn.write_text(json.dumps({**TURN, "timestamp": "2025-01-15T16:00:00Z"}))
    r = run_cli(root, "turn", CUSTOMER, str(turn))
    assert r.code == 5, r.err  # v2 (the newest) is finalized: refused, though v1 is open
    assert run_cli(root, "turn", CUSTOMER, str(turn), "-s", "v1", "-o", "json").json()[
        "version"] == "v1.2.0"


# -- item 18: writers waiting behind the lock ------------------------------------------------

HOLDER = r"""
import sys
from pathlib import Path
from gitstore.git.locking import writer_lock

with writer_lock(Path(sys.argv[1]), sys.argv[2], 10):
    print("locked", flush=True)
    sys.stdin.read()          # hold the lock until the test closes our stdin
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


class Holder:
    """Another process holding the customer's writer lock."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root / ".gitstore" / "locks"), CUSTOMER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env())
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"locked"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def opened(tmp_path: Path) -> Path:
    root = tmp_path / "sessions"
    Store.init(root).customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    (tmp_path / "turn.json").write_text(json.dumps(TURN))
    return root


def _writer(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gitstore", "--root", str(root), *args,
                             "turn", CUSTOMER, str(root.parent / "turn.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())


WAITING = f"gitstore: waiting for another writer of {CUSTOMER}…"


def test_a_waiting_writer_says_so_once_then_writes(opened: Path) -> None:
    holder = Holder(opened)
    writer = _writer(opened)
    assert writer.stderr is not None
    ready, _, _ = select.select([writer.stderr], [], [], 60)
    if not ready:
        holder.release()
        writer.kill()
        raise AssertionError("the waiting writer said nothing within 60 s")
    first = writer.stderr.readline().decode()  # said while the lock is still held
    assert first == WAITING + "\n"
    time.sleep(1.5)  # waiting longer says nothing more
    assert writer.poll() is None
    holder.release()
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    assert WAITING not in err.decode(), err.decode()
    assert b"turn 1" in out


def test_lock_timeout_option(opened: Path) -> None:
    holder = Holder(opened)
    try:
        t0 = time.monotonic()
        writer = _writer(opened, "--lock-timeout", "1.5")
        out, err = writer.communicate(timeout=60)
        waited = time.monotonic() - t0
    finally:
        holder.release()
    text = err.decode()
    assert writer.returncode == 6, text
    assert "timed out after 1.5s waiting for another writer" in text
    assert text.count(WAITING) == 1 and out == b""
    assert waited < 20
    # without the lock held it writes at once; a bad value is a usage error
    assert _writer(opened, "--lock-timeout", "0").wait(timeout=60) == 0
    assert _writer(opened, "--lock-timeout", "-1").wait(timeout=60) == 2


def test_the_library_never_prints_it_calls_back(opened: Path, capfd: Any) -> None:
    store = Store(opened, lock_timeout=30)
    calls: list[str] = []
    store.lock_wait = calls.append
    holder = Holder(opened)
    releaser = threading.Timer(1.8, holder.release)
    releaser.start()
    try:
        written = store.customer(CUSTOMER).session().append_turn(TURN)
    finally:
        releaser.join()
    assert written.turn == 1 and calls == [CUSTOMER]
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_new_with_metadata_and_created_takes_both_only_when_they_agree(tmp_path: Path) -> None:
    """`new --metadata FILE --created T`: T fills a created_timestamp the file lacks,
    agrees with one it has (the same instant, written either way), and is refused
    (exit 2, nothing written) when it says another time; it was silently ignored."""
    root = tmp_path / "sessions"
    Store.init(root)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"session_info": {"created_timestamp": "2025-01-15T10:00:00Z"}}))
    r = run_cli(root, "new", "c1", "--metadata", str(meta), "--created", "2025-01-16T00:00:00Z")
    assert r.code == 2 and "the metadata's session_info.created_timestamp is " \
        "'2025-01-15T10:00:00Z'" in r.err and not (root / "c1").exists()
    _ok(run_cli(root, "new", "c1", "--metadata", str(meta), "--created",
                "2025-01-15T10:00:00+00:00"))
    stored = Store(root).customer("c1").read("v1").document("session_metadata.json")
    assert stored["session_info"]["created_timestamp"] == "2025-01-15T10:00:00Z"
    meta.write_text(json.dumps({"session_info": {}}))
    _ok(run_cli(root, "new", "c2", "--metadata", str(meta), "--created", "2025-01-16T00:00:00Z"))
    stored = Store(root).customer("c2").read("v1").document("session_metadata.json")
    assert stored["session_info"]["created_timestamp"] == "2025-01-16T00:00:00Z"


def test_an_input_file_that_is_a_directory_or_missing_says_so(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    Store.init(root)
    _ok(run_cli(root, "new", CUSTOMER))
    r = run_cli(root, "turn", CUSTOMER, str(tmp_path))
    assert r.code == 2 and f"{tmp_path} is a directory, not a JSON file" in r.err
    r = run_cli(root, "turn", CUSTOMER, str(tmp_path / "absent.json"))
    assert r.code == 3 and "no such file" in r.err
