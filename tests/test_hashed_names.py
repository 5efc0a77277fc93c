"""A store made with ``gitstore init --hash-names`` never shows the api_key.

The customer's repository is named by a keyed hash of the api_key. The key
must appear in no path, no byte of any file under the store root (git objects
included, decompressed), no audit record, no output of any command and no
error message; the same key always reaches the same repository; the hashes
listed by ``customers`` work as customer names; and metadata supplied with the
raw key is stored with the hash.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, ROOT, SESSION_ID, load_example

from gitstore import GitStoreError, Store
from gitstore.core import canonical

KEY = "sk_live-Acme.7f3Kq9ZxW2pL"          # the customer's secret api_key
OTHER = "sk_live-Globex.Q8v2Lm4pT6nB"      # another customer's
UNKNOWN = "sk_live-Initech.Zz9Yy8Xx7Ww6"   # a key nobody used
EXOTIC = "sk/live+Umbrella==9Qz"           # not a valid repository name: fine when hashed
SECRETS = (KEY, OTHER, UNKNOWN, EXOTIC)
HASHED = re.compile(r"k[0-9a-f]{40}")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _in_process(argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
    """``gitstore.cli.app.main(argv)`` with stdin, stdout and stderr as bytes."""
    from gitstore.cli.app import main

    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    streams = (io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
               io.TextIOWrapper(out, encoding="utf-8", write_through=True),
               io.TextIOWrapper(err, encoding="utf-8", write_through=True))
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        for stream in streams[1:]:
            stream.flush()
        sys.stdin, sys.stdout, sys.stderr = saved
    result = code, out.getvalue(), err.getvalue()
    for stream in streams:
        stream.detach()
    return result


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    stdout: bytes
    stderr: bytes


@dataclass
class Hashed:
    root: Path
    inputs: Path
    runs: list[Run] = field(default_factory=list)

    def run(self, *args: str, code: int = 0, stdin: bytes | None = None,
            process: bool = False) -> Run:
        """Run the CLI: in this process (fast) or, with ``process``, as ``python -m
        gitstore.cli.app`` in a process of its own."""
        argv = ["--root", str(self.root), *args]
        if process:
            proc = subprocess.run([sys.executable, "-m", "gitstore", *argv],
                                  input=stdin if stdin is not None else b"",
                                  capture_output=True, env=_env(), timeout=120, check=False)
            run = Run(args, proc.returncode, proc.stdout, proc.stderr)
        else:
            run = Run(args, *_in_process(argv, stdin or b""))
        self.runs.append(run)
        assert run.code == code, \
            f"{args}: exit {run.code}, expected {code}\n{run.stderr.decode()}"
        return run

    def run_all(self, calls: list[tuple[tuple[str, ...], int]]) -> list[Run]:
        return [self.run(*args, code=code) for args, code in calls]

    def input(self, name: str, data: Any) -> str:
        path = self.inputs / name
        path.write_bytes(canonical.dumps(data) if not isinstance(data, bytes) else data)
        return str(path)

    @property
    def name(self) -> str:
        return Store(self.root).customer(KEY).name


def _metadata(folder: str, api_key: str = KEY) -> dict[str, Any]:
    meta = load_example(folder, "session_metadata.json")
    meta["session_info"]["api_key"] = api_key
    return meta


@pytest.fixture(scope="module")
def hashed(tmp_path_factory: pytest.TempPathFactory) -> Hashed:
    base = tmp_path_factory.mktemp("hashed")
    inputs = base / "inputs"
    inputs.mkdir()
    h = Hashed(base / "sessions", inputs)
    h.run("init", "--hash-names", process=True)
    meta = h.input("meta.json", _metadata("session"))
    h.run("new", KEY, "--session-id", SESSION_ID, "--created", "2025-01-15T10:30:00Z",
          "--metadata", meta, process=True)
    for n in range(1, 6):
        h.run("turn", KEY, str(EXAMPLES / "session" / "turns" / f"turn-{n:02d}.json"))
    conv = load_example("session", "conversation.json")
    h.run("summary", KEY, h.input("summary.json", conv["conversation_summary"]))
    h.run("put", KEY, "deployment_context.json",
          str(EXAMPLES / "session" / "deployment_context.json"))
    h.run("put", KEY, "session_metadata.json", meta)  # the raw key again, via put
    h.run("put", KEY, "session_analytics.json", "-",
          stdin=(EXAMPLES / "session" / "session_analytics.json").read_bytes())
    h.run("finalize", KEY, "-m", "plan agreed")                      # v1.0.0
    h.run("follow-up", KEY)                                          # v1.1.0
    h.run("turn", KEY, str(EXAMPLES / "follow_up" / "turns" / "turn-06.json"), "-o", "json")
    h.run("put", KEY, "metadata", h.input("meta2.json", _metadata("follow_up")))
    h.run("finalize", KEY, "-o", "json")
    h.run("correct", KEY, str(EXAMPLES / "correction" / "session_analytics.json"),
          "-r", "actual outcome known")                              # v1.1.1
    # a second customer, and a writer that confuses the two keys
    h.run("new", OTHER, "--created", "2025-01-15T10:30:00Z")
    h.run("put", OTHER, "session_metadata.json",
          h.input("meta-wrong.json", _metadata("session", api_key=KEY)), code=4, process=True)
    h.run("put", OTHER, "session_metadata.json",  # fails the schema's api_key pattern
          h.input("meta-exotic.json", _metadata("session", api_key=EXOTIC)), code=4)
    h.run("put", KEY, "session_metadata.json",
          h.input("meta-other.json", _metadata("follow_up", api_key=OTHER)), code=5)
    # refused writes and reads that fail
    h.run("turn", KEY, str(EXAMPLES / "follow_up" / "turns" / "turn-07.json"), code=5)
    h.run("new", KEY, "--version", "v1.0.0", code=5)
    h.run("show", KEY, "v9.9.9", code=3)
    h.run("show", UNKNOWN, code=3, process=True)
    h.run("versions", UNKNOWN, code=3)
    h.run("verify", UNKNOWN, code=3)
    h.run("audit", UNKNOWN, code=3)
    h.run("turn", UNKNOWN, "-", stdin=b"{}", code=3)
    h.run("put", KEY, "deployment_context.json", "-", stdin=b'{"cloud_assets_snapshot": ',
          code=4)
    # reads of every kind
    h.run_all([
        (("show", KEY), 0), (("show", KEY, "-o", "json"), 0),
        (("show", KEY, "v1.0.0", "session_metadata.json"), 0),
        (("show", KEY, "v1.1.1", "session_metadata.json", "-o", "json"), 0),
        (("show", KEY, "v1", "--at", "2030-01-01"), 0),
        (("versions", KEY), 0), (("versions", KEY, "-o", "json"), 0),
        (("log", KEY), 0), (("log", KEY, "-o", "json"), 0),
        (("diff", KEY, "v1.0.0", "v1.1.1"), 0), (("diff", KEY, "v1.0.0", "-o", "json"), 0),
        (("diff", KEY, "v1.0.0", "-o", "patch"), 0),
        (("render", KEY, "v1.1.1"), 0),
        (("verify",), 0), (("verify", KEY), 0), (("verify", KEY, "-o", "json"), 0),
        (("audit", KEY), 0), (("audit", KEY, "-o", "json"), 0), (("audit", KEY, "--verify"), 0),
        (("customers",), 0), (("customers", "-o", "json"), 0),
    ])
    # and a few as processes of their own
    for args in (("show", KEY, "v1.1.1", "session_metadata.json"), ("versions", KEY),
                 ("verify",), ("audit", KEY)):
        h.run(*args, process=True)
    # the same key reaches the same repository: a second scenario lands next to v1
    h.run("new", KEY, "--created", "2025-02-01T09:00:00Z", "-o", "json", process=True)
    return h


# =========================================================================== leaks

def _leaks(data: bytes) -> list[str]:
    return [s for s in SECRETS if s.encode() in data]


def test_no_command_output_or_error_shows_the_key(hashed: Hashed) -> None:
    assert len(hashed.runs) > 40
    leaks = [(r.args, r.code, _leaks(r.stdout + r.stderr)) for r in hashed.runs
             if _leaks(r.stdout + r.stderr)]
    assert leaks == [], "\n".join(
        f"{[a if a not in SECRETS else '<key>' for a in args]} (exit {code}) shows {found}"
        for args, code, found in leaks)


def test_errors_are_still_explained_without_the_key(hashed: Hashed) -> None:
    """Hiding the key must not hide the error: each refusal still says what is wrong."""
    wrong = next(r for r in hashed.runs if r.code == 4)
    err = wrong.stderr.decode()
    assert "session_metadata.json#/session_info/api_key" in err, err
    unknown = next(r for r in hashed.runs if r.args[:2] == ("show", UNKNOWN))
    assert "unknown customer" in unknown.stderr.decode()
    assert Store(hashed.root).customer(UNKNOWN).name in unknown.stderr.decode()


def test_the_key_is_in_no_path_and_no_file(hashed: Hashed) -> None:
    paths = [p for p in hashed.root.rglob("*")]
    assert len(paths) > 50
    for p in paths:
        rel = str(p.relative_to(hashed.root))
        assert not any(s in rel for s in SECRETS), rel
        if p.is_file():
            assert _leaks(p.read_bytes()) == [], rel


def test_the_key_is_in_no_git_object(hashed: Hashed) -> None:
    repos = [p for p in hashed.root.iterdir() if HASHED.fullmatch(p.name)]
    assert len(repos) >= 2
    for repo in repos:
        proc = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects",
                               "--batch"], capture_output=True, check=True)
        assert proc.stdout.count(b" commit ") >= 1 and b" blob " in proc.stdout
        assert _leaks(proc.stdout) == [], repo.name
        logs = subprocess.run(["git", "-C", str(repo), "log", "--all", "-p", "--format=fuller",
                               "--show-notes"], capture_output=True, check=True).stdout
        assert _leaks(logs) == [], repo.name


def test_no_audit_record_mentions_the_key(hashed: Hashed) -> None:
    name = hashed.name
    records = [json.loads(line) for line in
               (hashed.root / name / "gitstore-audit.jsonl").read_text().splitlines()]
    assert len(records) > 30
    assert {r["customer"] for r in records} == {name}
    ops = {r["op"] for r in records}
    assert {"write:create", "write:turn", "write:finalize", "write:correction", "read",
            "verify"} <= ops, ops
    for r in records:
        assert _leaks(json.dumps(r).encode()) == [], r


def test_api_error_messages_do_not_show_the_key(hashed: Hashed, tmp_path: Path) -> None:
    store = Store(hashed.root)
    other = store.customer(OTHER).session()
    with pytest.raises(GitStoreError) as info:
        other.put("session_metadata.json", _metadata("session", api_key=KEY))
    assert info.value.exit_code == 4
    texts = [str(info.value), *(str(v) for v in getattr(info.value, "violations", ()))]
    assert not any(_leaks(t.encode()) for t in texts), texts
    for bad in ("", "a\x00b", "x" * 5000):
        with pytest.raises(GitStoreError) as info:
            store.customer(bad)
        assert info.value.exit_code == 2
    with pytest.raises(GitStoreError) as info:
        store.customer(UNKNOWN).versions()
    assert UNKNOWN not in str(info.value)
    assert KEY not in repr(store.customer(KEY)) and KEY not in str(store.customer(KEY).path)


# =========================================================================== naming

def test_the_same_key_always_reaches_the_same_repository(hashed: Hashed) -> None:
    name = hashed.name
    assert HASHED.fullmatch(name)
    assert Store(hashed.root).customer(KEY).name == name  # another Store object
    script = ("import sys; from gitstore import Store; "
              "print(Store(sys.argv[1]).customer(sys.argv[2]).name)")
    proc = subprocess.run([sys.executable, "-c", script, str(hashed.root), KEY],
                          capture_output=True, env=_env(), check=True)
    assert proc.stdout.decode().strip() == name      # another process
    assert Store(hashed.root).customer(OTHER).name != name
    # the second `new` for the key opened v2 in the same repository
    repo = hashed.root / name
    heads = subprocess.run(["git", "-C", str(repo), "for-each-ref", "--format=%(refname)",
                            "refs/heads"], capture_output=True, check=True).stdout.split()
    assert heads == [b"refs/heads/v1", b"refs/heads/v2"]
    tags = subprocess.run(["git", "-C", str(repo), "tag"], capture_output=True,
                          check=True).stdout.split()
    assert tags == [b"v1.0.0", b"v1.1.0", b"v1.1.1"]


def test_customers_lists_hashes_and_each_hash_is_a_repository_name(hashed: Hashed) -> None:
    """A hash that ``customers`` lists names the repository with ``--by-name`` (and
    ``Store.customer_named``), never as an api_key (tests/test_secrets_everywhere.py)."""
    listing = next(r for r in hashed.runs if r.args == ("customers",))
    names = listing.stdout.decode().split()
    expected = sorted([hashed.name, Store(hashed.root).customer(OTHER).name])
    assert names == expected
    assert all(HASHED.fullmatch(n) for n in names)
    listing_json = next(r for r in hashed.runs if r.args == ("customers", "-o", "json"))
    assert json.loads(listing_json.stdout) == expected
    name = hashed.name
    h = Hashed(hashed.root, hashed.inputs, [])
    shown = json.loads(h.run("--by-name", "show", name, "v1.1.1", "-o", "json",
                             process=True).stdout)
    assert shown["customer"] == name and shown["version"] == "v1.1.1"
    versions = json.loads(h.run("--by-name", "versions", name, "-o", "json").stdout)
    assert [v["version"] for v in versions] == ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0"]
    assert h.run("--by-name", "verify", name).stdout.decode().startswith(f"{name}: ok")
    turn = load_example("session", "turns", "turn-01.json")
    turn["timestamp"] = "2025-02-01T09:05:00Z"
    del turn["turn_id"]
    h.run("--by-name", "turn", name, "-", stdin=json.dumps(turn).encode())
    assert Store(hashed.root).customer_named(name).name == name
    h.run("versions", name, code=3)  # the hash as an api_key: another (unknown) customer
    conv = Store(hashed.root).customer(KEY).read("v2").document("conversation.json")
    assert [t["turn_id"] for t in conv["conversation_turns"]] == [1]
    assert not any(_leaks(r.stdout + r.stderr) for r in h.runs)


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0", "v1.1.1", "v2"])
def test_metadata_given_with_the_raw_key_is_stored_with_the_hash(hashed: Hashed,
                                                                 version: str) -> None:
    snap = Store(hashed.root).customer(KEY).read(version)
    info = snap.document("session_metadata.json")["session_info"]
    assert info["api_key"] == hashed.name
    assert KEY.encode() not in snap.raw("session_metadata.json")


def test_a_key_that_is_no_valid_repository_name_works_when_hashed(hashed: Hashed) -> None:
    store = Store(hashed.root)
    customer = store.customer(EXOTIC)
    assert HASHED.fullmatch(customer.name)
    meta = _metadata("session", api_key=EXOTIC)
    meta["session_info"].pop("session_id")
    session = customer.new_session(created="2025-01-15T10:30:00Z", metadata=copy.deepcopy(meta))
    session.append_turn(load_example("session", "turns", "turn-01.json"))
    session.put("session_metadata.json", meta)
    snap = Store(hashed.root).customer(EXOTIC).read()
    assert snap.document("session_metadata.json")["session_info"]["api_key"] == customer.name
    repo = hashed.root / customer.name
    assert repo.is_dir()
    dump = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
                          capture_output=True, check=True).stdout
    assert EXOTIC.encode() not in dump
    for p in repo.rglob("*"):
        assert EXOTIC not in str(p)
        if p.is_file():
            assert EXOTIC.encode() not in p.read_bytes(), p
