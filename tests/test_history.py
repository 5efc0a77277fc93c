"""History: ``log`` and its filters, ``show --at``, ``Session.history(limit)``.

The store holds v1.0.0 (agent reporter, commits from 11:00:00 one second
apart), v1.1.0 and v1.1.1 (agent advisor, from 15:00:00) and a second
scenario v2.0.0 (agent planner, from 17:00:00); the deterministic clock makes
every commit time known, so filters and ``--at`` are checked exactly, and
against plain ``git log`` where git can answer the same question.
``Session.history(limit)`` is the tail of the full conversation, for canonical
files (only the tail is parsed) and for files written with plain git in
another layout (the fallback); ``canonical.tail_items`` is proved with
Hypothesis.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    SESSION_2,
    T11,
    T15,
    T17,
    Clock,
    build_history,
    git,
    load_example,
    record_example_session,
)
from conftest import run_cli as run
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gitstore import NotFoundError, Store, UsageError
from gitstore.core import canonical
from gitstore.store.history import LogEntry


@dataclass
class Env:
    root: Path
    store: Store

    @property
    def repo(self) -> Path:
        return self.root / CUSTOMER

    @property
    def customer(self) -> Any:
        return self.store.customer(CUSTOMER)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("history") / "sessions"
    return Env(root, build_history(root))




def iso(ts: int | datetime) -> str:
    when = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Commit:
    id: str
    time: int
    subject: str
    change: str
    agent: str


def git_commits(repo: Path, *revs: str, paths: tuple[str, ...] = ()) -> list[Commit]:
    """What plain git says: commits reachable from ``revs``, newest first."""
    fmt = "%H%x01%ct%x01%s%x01%(trailers:key=Change,valueonly)%x01%an%x00"
    out = git(repo, "log", f"--format={fmt}", *revs, "--", *paths)
    rows = []
    for rec in out.split("\0"):
        rec = rec.strip("\n")
        if rec:
            cid, ts, subject, change, agent = rec.split("\x01")
            rows.append(Commit(cid, int(ts), subject, change.strip(), agent))
    return rows


def ids(entries: list[LogEntry]) -> list[str]:
    return [e.commit for e in entries]


# =========================================================================== log

def test_log_is_every_commit_newest_first_with_tags(env: Env) -> None:
    entries = env.customer.log()
    commits = git_commits(env.repo, "v1", "v2")
    assert len(entries) == 17 + 9
    assert ids(entries) == [c.id for c in commits]
    times = [e.time for e in entries]
    assert times == sorted(times, reverse=True)
    assert [e.time for e in entries] == [c.time for c in commits]
    tagged = {e.commit: e.tags for e in entries if e.tags}
    assert tagged == {git(env.repo, "rev-parse", f"{v}^{{commit}}").strip(): (v,)
                      for v in ("v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0")}
    newest = entries[0]
    assert (newest.version is not None and str(newest.version) == "v2.0.0"
            and newest.change == "finalize" and newest.tags == ("v2.0.0",)
            and newest.agent == "planner" and newest.time == int((T17 + timedelta(
                seconds=8)).timestamp()))
    oldest = entries[-1]
    assert oldest.change == "create" and oldest.time == int(T11.timestamp())
    assert [e.turn for e in entries if e.change == "turn"] == [3, 2, 1, 7, 6, 5, 4, 3, 2, 1]
    assert all(e.turn is None for e in entries if e.change != "turn")


def test_log_of_one_scenario_or_version(env: Env) -> None:
    assert ids(env.customer.log("v1")) == [c.id for c in git_commits(env.repo, "v1")]
    assert ids(env.customer.log("v2")) == [c.id for c in git_commits(env.repo, "v2")]
    upto = env.customer.log("v1.0.0")
    assert ids(upto) == [c.id for c in git_commits(env.repo, "v1.0.0")]
    assert len(upto) == 11 and upto[0].tags == ("v1.0.0",)
    assert {str(e.version) for e in upto} == {"v1.0.0"}


@pytest.mark.parametrize("document", ["sow_document.md", "conversation.json",
                                      "session_analytics.json", "deployment_context.json",
                                      "SHA256SUMS"])
def test_log_document_filter_agrees_with_git(env: Env, document: str) -> None:
    entries = env.customer.log(document=document)
    assert ids(entries) == [c.id for c in git_commits(env.repo, "v1", "v2", paths=(document,))]
    assert entries


def test_log_document_filter_for_the_sow(env: Env) -> None:
    entries = env.customer.log(document="sow")                   # the alias works too
    assert [(str(e.version), e.change) for e in entries] == [
        ("v2.0.0", "finalize"), ("v1.1.1", "correction"), ("v1.1.0", "finalize"),
        ("v1.1.0", "follow-up"),                                  # the follow-up drops it
        ("v1.0.0", "finalize")]


def at(base: datetime, seconds: int) -> datetime:
    return base + timedelta(seconds=seconds)


@pytest.mark.parametrize(("since", "until", "expected"), [
    (None, None, 26),
    (T15, None, 6 + 9),
    (None, at(T11, 10), 11),                                     # until is inclusive
    (at(T11, 10), T15, 2),                                       # since too: v1.0.0 + follow-up
    (at(T15, 1), at(T15, 2), 2),
    (T17, T17, 1),
    (at(T11, 11), at(T15, -1), 0),
    (datetime(2025, 1, 16, tzinfo=UTC), None, 0),
])
def test_log_time_filters(env: Env, since: datetime | None, until: datetime | None,
                          expected: int) -> None:
    entries = env.customer.log(since=since, until=until)
    assert len(entries) == expected
    everything = env.customer.log()
    lo = since.timestamp() if since else float("-inf")
    hi = until.timestamp() if until else float("inf")
    assert ids(entries) == [e.commit for e in everything if lo <= e.time <= hi]


def test_log_change_agent_and_limit(env: Env) -> None:
    cust = env.customer
    turns = cust.log(change="turn")
    assert len(turns) == 10 and {e.change for e in turns} == {"turn"}
    assert [str(e.version) for e in cust.log(change="finalize")] == ["v2.0.0", "v1.1.0",
                                                                      "v1.0.0"]
    assert [e.tags for e in cust.log(change="correction")] == [("v1.1.1",)]
    advisor = cust.log(agent="advisor")
    assert [c.id for c in git_commits(env.repo, "v1", "v2", "--author=advisor")] == ids(advisor)
    assert len(advisor) == 6 and {e.agent for e in advisor} == {"advisor"}
    assert cust.log(agent="nobody") == []
    everything = cust.log()
    for n in (1, 3, 26, 100):
        assert ids(cust.log(limit=n)) == ids(everything)[:n]
    # the limit applies after filtering
    assert [(e.turn, e.agent) for e in cust.log(change="turn", agent="advisor", limit=1)] == [
        (7, "advisor")]
    assert [e.tags for e in cust.log(document="sow_document.md", limit=2)] == [("v2.0.0",),
                                                                                 ("v1.1.1",)]
    assert [(e.turn, str(e.version)) for e in cust.log(change="turn", since=T15,
                                                        until=at(T15, 1))] == [(6, "v1.1.0")]


def test_log_json_matches_the_api(env: Env) -> None:
    r = run(env.root, "log", CUSTOMER, "-o", "json")
    assert r.code == 0, r.err
    data = r.json()
    assert data == [e.to_json() for e in env.customer.log()]
    first = data[0]
    assert set(first) == {"commit", "version", "change", "turn", "agent", "time", "summary",
                          "tags", "trailers"}
    assert first["tags"] == ["v2.0.0"] and first["time"] == iso(at(T17, 8))
    assert first["trailers"]["Change"] == "finalize"
    assert first["trailers"]["Session-Id"] == SESSION_2
    assert [d["time"] for d in data] == sorted((d["time"] for d in data), reverse=True)


@pytest.mark.parametrize(("args", "api"), [
    (["--document", "sow_document.md"], {"document": "sow_document.md"}),
    (["--change", "turn"], {"change": "turn"}),
    (["--agent", "advisor"], {"agent": "advisor"}),
    (["-n", "4"], {"limit": 4}),
    (["--since", "2025-01-15T15:00:00Z"], {"since": T15}),
    (["--since", "2025-01-15T16:00:00+01:00"], {"since": T15}),      # an offset is honoured
    (["--until", "2025-01-15T11:00:10Z"], {"until": at(T11, 10)}),
    (["--since", "2025-01-15T11:00:10Z", "--until", "2025-01-15T15:00:00Z"],
     {"since": at(T11, 10), "until": T15}),
    (["--since", "2025-01-15"], {}),                                  # a day: all of it
    (["--until", "2025-01-15"], {}),
    (["--until", "2025-01-14"], {"until": datetime(2025, 1, 14, 23, 59, 59, tzinfo=UTC)}),
    (["--change", "turn", "--agent", "planner", "-n", "2"],
     {"change": "turn", "agent": "planner", "limit": 2}),
    (["v1", "--change", "finalize"], {"rev": "v1", "change": "finalize"}),
])
def test_log_cli_filters_match_the_api(env: Env, args: list[str], api: dict[str, Any]) -> None:
    r = run(env.root, "log", CUSTOMER, *args, "-o", "json")
    assert r.code == 0, r.err
    rev = api.pop("rev", None)
    assert r.json() == [e.to_json() for e in env.customer.log(rev, **api)]


def test_log_text_marks_versions(env: Env) -> None:
    r = run(env.root, "log", CUSTOMER, "v1")
    assert r.code == 0, r.err
    lines = r.text.splitlines()
    assert len(lines) == 17
    entries = env.customer.log("v1")
    for line, e in zip(lines, entries, strict=True):
        assert line.startswith(f"{e.commit[:12]}  {iso(e.time)}  {e.version!s:<9} ")
        if e.tags:
            assert line.endswith(f"  (tag: {', '.join(e.tags)})"), line
        else:
            assert "(tag:" not in line, line
    assert "turn 7" in lines[3] and "advisor" in lines[3]
    assert lines[0].endswith("(tag: v1.1.1)") and lines[-1].split()[3] == "create"


@pytest.mark.parametrize(("args", "code"), [
    (["--since", "yesterday"], 2),
    (["--until", "2025-13-01"], 2),
    (["--change", "rebase"], 2),
    (["-n", "0"], 2),
    (["--document", "notes.txt"], 2),
    (["v7"], 3),
    (["v1.9.0"], 3),
])
def test_log_cli_errors(env: Env, args: list[str], code: int) -> None:
    r = run(env.root, "log", CUSTOMER, *args)
    assert r.code == code, (r.code, r.err)
    assert r.out == b""


# ====================================================== show --as-of (commit time)

def test_read_at_every_commit_time(env: Env) -> None:
    cust = env.customer
    for scenario in ("v1", "v2"):
        commits = git_commits(env.repo, scenario, "--first-parent")
        for older, newer in zip(commits[1:], commits[:-1], strict=True):
            assert older.time < newer.time
        for c in commits:
            when = datetime.fromtimestamp(c.time, UTC)
            assert cust.read_at(scenario, when, by="commit").commit == c.id
            # half a second later it is still that commit
            later = when + timedelta(milliseconds=500)
            assert cust.read_at(scenario, later, by="commit").commit == c.id
        # one second before the first commit there was nothing
        first = datetime.fromtimestamp(commits[-1].time, UTC)
        with pytest.raises(NotFoundError, match="did not exist yet"):
            cust.read_at(scenario, first - timedelta(seconds=1), by="commit")
        # long after the last commit: the tip
        future = datetime(2030, 1, 1, tzinfo=UTC)
        assert cust.read_at(scenario, future, by="commit").commit == commits[0].id


def test_read_at_gives_the_state_of_that_moment(env: Env) -> None:
    cust = env.customer
    mid = cust.read_at("v1", at(T15, 1), by="commit")        # turn 6 of the follow-up added
    assert str(mid.version) == "v1.1.0" and mid.change == "turn"
    turns = mid.document("conversation.json")["conversation_turns"]
    assert [t["turn_id"] for t in turns] == [1, 2, 3, 4, 5, 6]
    assert "sow_document.md" not in mid.files
    between = cust.read_at("v1", datetime(2025, 1, 15, 13, 0, tzinfo=UTC), by="commit")
    assert between.commit == git(env.repo, "rev-parse", "v1.0.0^{commit}").strip()
    assert cust.read_at("v1.0.0", T17, by="commit").commit == \
        git(env.repo, "rev-parse", "v1").strip()


@pytest.mark.parametrize(("rev", "when", "expected"), [
    ("v1", "2025-01-15T11:00:00Z", "v1~16"),
    ("v1", "2025-01-15T11:00:04Z", "v1~12"),
    ("v1", "2025-01-15T11:00:04.900Z", "v1~12"),
    ("v1", "2025-01-15T12:00:04+01:00", "v1~12"),               # 11:00:04Z
    ("v1", "2025-01-15T14:59:59Z", "v1.0.0"),
    ("v1", "2025-01-15T15:00:05Z", "v1.1.1"),
    ("v2", "2025-01-15T17:00:03Z", "v2~5"),
    (None, "2025-01-15T17:00:08Z", "v2.0.0"),                    # the newest scenario
    ("v1.1.0", "2025-01-15T15:00:02Z", "v1.1.0~2"),             # a version names its scenario
])
def test_show_at(env: Env, rev: str | None, when: str, expected: str) -> None:
    args = ["show", CUSTOMER, *([rev] if rev else []), "--as-of", when, "-o", "json"]
    r = run(env.root, *args)
    assert r.code == 0, r.err
    assert r.json()["commit"] == git(env.repo, "rev-parse", f"{expected}^{{commit}}").strip()


def test_show_at_a_document(env: Env) -> None:
    r = run(env.root, "show", CUSTOMER, "v1", "conversation.json", "--as-of",
            "2025-01-15T11:00:02Z")
    assert r.code == 0, r.err
    assert r.out == git(env.repo, "show", "v1~14:conversation.json").encode()
    assert [t["turn_id"] for t in json.loads(r.out)["conversation_turns"]] == [1, 2]


@pytest.mark.parametrize(("args", "code"), [
    (["v1", "--as-of", "2025-01-15T10:59:59Z"], 3),                 # before the scenario existed
    (["v1", "--as-of", "2025-01-15"], 3),                           # midnight: before it too
    (["--as-of", "2025-01-15T16:59:59Z"], 3),                       # v2 did not exist yet
    (["v2", "--as-of", "2025-01-15T12:00:00Z"], 3),
    (["v5", "--as-of", "2025-01-15T12:00:00Z"], 3),
    (["v1", "--as-of", "noon"], 2),
    (["v1", "sow_document.md", "--as-of", "2025-01-15T11:00:09Z"], 3),  # not rendered yet
])
def test_show_at_errors(env: Env, args: list[str], code: int) -> None:
    r = run(env.root, "show", CUSTOMER, *args)
    assert r.code == code, (r.code, r.err)
    assert r.out == b"" and r.err.startswith("gitstore: error:")


# =========================================================================== history

def full_turns(env: Env, scenario: str) -> list[Any]:
    data = git(env.repo, "show", f"{scenario}:conversation.json")
    return json.loads(data)["conversation_turns"]


@pytest.mark.parametrize("scenario", ["v1", "v2"])
def test_history_is_the_tail_of_the_conversation(env: Env, scenario: str) -> None:
    session = env.customer.session(scenario)
    turns = full_turns(env, scenario)
    n = len(turns)
    assert n == (7 if scenario == "v1" else 3)
    assert session.history() == turns
    assert session.history(None) == turns
    for limit in (0, 1, 2, n - 1, n, n + 1, 100):
        got = session.history(limit)
        assert got == turns[n - min(limit, n):], limit
        assert canonical.dumps(got) == canonical.dumps(turns[n - min(limit, n):])
    assert session.history(0) == []
    assert [t["turn_id"] for t in session.history(2)] == [n - 1, n]
    with pytest.raises(UsageError):
        session.history(-1)


def test_history_parses_only_the_returned_turns(env: Env,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = git(env.repo, "show", "v1:conversation.json").encode()
    parsed: list[int] = []
    real = json.loads

    def counting(raw: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(len(raw))
        return real(raw, *args, **kwargs)

    session = env.customer.session("v1")
    monkeypatch.setattr(json, "loads", counting)
    last = session.history(1)
    monkeypatch.undo()
    assert [t["turn_id"] for t in last] == [7]
    # the JSON parser saw the last turn, never the whole conversation
    assert parsed, "history(1) parsed nothing with json.loads"
    assert max(parsed) < len(data) / 3, (parsed, len(data))


def test_history_of_an_empty_conversation(store: Store) -> None:
    session = store.customer("fresh-customer").new_session()
    assert session.history() == []
    for limit in (0, 1, 5):
        assert session.history(limit) == []


def _commit_conversation(repo: Path, data: bytes, message: str) -> str:
    """Replace conversation.json on branch v1 with a commit made by plain git."""
    blob = git(repo, "hash-object", "-w", "--stdin", input=data).strip()
    listing = git(repo, "ls-tree", "v1")
    lines = []
    for line in listing.splitlines():
        meta, name = line.split("\t", 1)
        if name == "conversation.json":
            mode, kind, _ = meta.split()
            meta = f"{mode} {kind} {blob}"
        lines.append(f"{meta}\t{name}")
    tree = git(repo, "mktree", input=("\n".join(lines) + "\n").encode()).strip()
    parent = git(repo, "rev-parse", "v1").strip()
    commit = git(repo, "commit-tree", tree, "-p", parent, "-m", message).strip()
    git(repo, "update-ref", "refs/heads/v1", commit, parent)
    return commit


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store.init(tmp_path_factory.mktemp("plain") / "sessions", clock=Clock())
    record_example_session(store)
    return store


def _conversation() -> dict[str, Any]:
    conv = load_example("session", "conversation.json")
    conv["conversation_turns"][1]["user_input"]["query"] = "naïve café ✓ — \u2028 \"quoted\""
    return conv


def _nested_turns_key(conv: dict[str, Any]) -> dict[str, Any]:
    conv = dict(conv)
    conv["conversation_summary"] = {**conv["conversation_summary"], "conversation_turns": []}
    return conv


LAYOUTS = {
    "compact": lambda c: json.dumps(c).encode(),
    "indent-4": lambda c: json.dumps(c, indent=4).encode(),
    "indent-2-ascii-unsorted": lambda c: (json.dumps(c, indent=2) + "\n").encode(),
    "crlf": lambda c: canonical.dumps(c).replace(b"\n", b"\r\n"),
    "tabs": lambda c: json.dumps(c, indent="\t", ensure_ascii=False).encode(),
    "one-turn-per-line": lambda c: (
        '{\n  "session_id": ' + json.dumps(c["session_id"]) + ',\n  "conversation_turns": [\n'
        + ",\n".join("    " + json.dumps(t) for t in c["conversation_turns"])
        + '\n  ],\n  "conversation_summary": ' + json.dumps(c["conversation_summary"])
        + "\n}\n").encode(),
    "indent-1-nested-key": lambda c: json.dumps(_nested_turns_key(c), indent=1).encode(),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_history_of_a_conversation_written_with_plain_git(plain: Store, layout: str) -> None:
    conv = _conversation()
    data = LAYOUTS[layout](conv)
    assert data != canonical.dumps(json.loads(data))                  # not canonical
    repo = plain.root / CUSTOMER
    commit = _commit_conversation(repo, data, f"edited with another tool ({layout})")
    assert git(repo, "show", "v1:conversation.json").encode() == data
    session = plain.customer(CUSTOMER).session("v1")
    turns = json.loads(data)["conversation_turns"]
    assert len(turns) == 5
    assert session.history() == turns
    for limit in (0, 1, 3, 5, 9):
        assert session.history(limit) == turns[len(turns) - min(limit, len(turns)):], limit
    assert plain.customer(CUSTOMER).resolve("v1") == commit


# =========================================================================== tail_items

HIST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
text = st.text(max_size=10) | st.sampled_from(["\n  ]", "    {", "  \"conversation_turns\": [",
                                               "},", "\u2028", "\\", "\""])
scalars = (st.none() | st.booleans() | st.integers() | text
           | st.floats(allow_nan=False, allow_infinity=False))
keys = text | st.sampled_from(["conversation_turns", "turn_id", "a"])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=3), max_leaves=12)
objects = st.dictionaries(keys, values, max_size=4)


def tail(items: list[Any], n: int) -> list[Any]:
    """The last ``n`` items (``items[-0:]`` would be all of them)."""
    return items[len(items) - min(n, len(items)):]


@HIST
@given(st.lists(objects, max_size=6), st.dictionaries(keys, values, max_size=3),
       st.integers(0, 8))
def test_tail_items_of_canonical_json(turns: list[Any], other: dict[str, Any], n: int) -> None:
    doc = {**other, "conversation_turns": turns}
    got = canonical.tail_items(canonical.dumps(doc), "conversation_turns", n)
    assert got == tail(turns, n)
    assert canonical.dumps(got) == canonical.dumps(tail(turns, n))   # same JSON types too


@HIST
@given(st.lists(values, max_size=5), st.integers(0, 6))
def test_tail_items_of_arrays_that_are_not_all_objects(items: list[Any], n: int) -> None:
    data = canonical.dumps({"conversation_turns": items})
    got = canonical.tail_items(data, "conversation_turns", n)
    if all(isinstance(x, dict) for x in items):
        assert got == tail(items, n)
    else:
        assert got is None or got == tail(items, n)


@HIST
@given(text.filter(lambda k: k not in ("", "zz")), st.lists(objects, max_size=4), st.integers(0, 5))
def test_tail_items_of_any_key(key: str, items: list[Any], n: int) -> None:
    doc = {key: items, "zz": {key: [{"decoy": True}]}}
    assert canonical.tail_items(canonical.dumps(doc), key, n) == tail(items, n)


@example(turns=[{"turn_id": 1}], nested=[], indent=1, sort=True, ascii_=True, n=1)
@HIST
@given(st.lists(objects, max_size=4), st.lists(objects, max_size=2),
       st.sampled_from([None, 0, 1, 2, 3, 4, "\t"]), st.booleans(), st.booleans(),
       st.integers(0, 5))
def test_tail_items_of_other_layouts_is_right_or_refused(turns: list[Any], nested: list[Any],
                                                         indent: Any, sort: bool, ascii_: bool,
                                                         n: int) -> None:
    """For JSON not laid out canonically tail_items returns None (the caller then
    parses the whole file) or the right answer, never a wrong one."""
    doc = {"conversation_summary": {"conversation_turns": nested},
           "conversation_turns": turns}
    data = json.dumps(doc, indent=indent, sort_keys=sort, ensure_ascii=ascii_).encode()
    got = canonical.tail_items(data, "conversation_turns", n)
    assert got is None or got == tail(turns, n), data


def test_tail_items_refuses_what_it_cannot_read() -> None:
    assert canonical.tail_items(b"{}\n", "conversation_turns", 1) is None
    assert canonical.tail_items(b'{"conversation_turns": [{"a": 1}]}', "conversation_turns",
                                1) is None
    data = canonical.dumps({"conversation_turns": [{"a": 1}]})
    assert canonical.tail_items(data, "conversation_turns", -1) is None
    assert canonical.tail_items(canonical.dumps({"conversation_turns": []}),
                                "conversation_turns", 3) == []


@pytest.mark.parametrize("depth", [1, 60, 126, 127, 200])
def test_tail_items_keeps_the_nesting_bound(depth: int) -> None:
    """The tail is parsed as one array (one level more than its items): an item nested
    within ``MAX_DEPTH`` levels counting that array comes back, a deeper one is refused
    (None: the caller's whole parse then reports it), brackets in strings or not."""
    deep: Any = "[{"
    for _ in range(depth - 1):
        deep = {"k": deep}
    doc = {"conversation_turns": [{"a": 1}, {"k": deep}]}   # canonical, but unchecked:
    data = (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False,  # dumps refuses
                       separators=(",", ": ")) + "\n").encode()               # depth + 2 > 128
    got = canonical.tail_items(data, "conversation_turns", 2)
    if depth + 1 <= canonical.MAX_DEPTH:
        assert got == [{"a": 1}, {"k": deep}]
    else:
        assert got is None


def test_plain_git_commits_show_in_the_log(plain: Store) -> None:
    """A commit made with plain git has no trailers; log takes its version from
    the metadata."""
    repo = plain.root / CUSTOMER
    commit = _commit_conversation(repo, canonical.dumps(_conversation()), "plain edit")
    entry = plain.customer(CUSTOMER).log("v1", limit=1)[0]
    assert entry.commit == commit and entry.change is None and entry.tags == ()
    assert str(entry.version) == "v1.0.0" and entry.agent == "Test Author"
    assert entry.summary == "plain edit"
    assert subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, check=False).returncode == 0
