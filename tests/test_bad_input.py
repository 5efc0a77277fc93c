"""Bad input, table-driven, through both the Python API and the CLI.

Every row is one kind of bad input. For each row the API must raise the
documented :class:`~gitstore.errors.GitStoreError` subclass with a one-line
message, and ``python -m gitstore`` must exit with the documented code,
print no traceback and nothing on stdout, and print exactly one
``gitstore: error: ...`` line on stderr (a document with several violations
gets a header line plus one ``file#pointer: message`` line per violation).
Either way nothing may be written: every repository's refs and reachable
objects, and the files of the store, are exactly as before.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    ROOT,
    Clock,
    load_example,
    record_example_session,
    repo_state,
)

from gitstore import (
    GitStoreError,
    InputTooLargeError,
    InvalidDocumentError,
    NotFoundError,
    StorageError,
    Store,
    UsageError,
    VersionRuleError,
)
from gitstore.store import config as config_mod

OPEN = "acme-open"          # v1.0.0 open, turns 1-2 recorded
OPEN_SID = f"orchestrator-session-{OPEN}"
SMALL_LIMIT = 4096          # max_document_bytes of the "small" store

ERROR_CLASSES: dict[int, type[GitStoreError]] = {
    2: UsageError, 3: NotFoundError, 4: InvalidDocumentError, 5: VersionRuleError,
    8: InputTooLargeError, 9: StorageError,
}


# --------------------------------------------------------------------------- inputs

def _turn(n: int) -> Any:
    folder = "session" if n <= 5 else "follow_up"
    return load_example(folder, "turns", f"turn-{n:02d}.json")


def _j(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _mutated(base: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    fn(doc)
    return doc


T3 = _turn(3)
META = _mutated(load_example("session", "session_metadata.json"), lambda d: d["session_info"]
               .update(api_key=OPEN, session_id=OPEN_SID))
CTX = load_example("session", "deployment_context.json")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        for p in parents:
            doc = doc[p]
        doc[last] = value
    return apply


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        for p in parents:
            doc = doc[p]
        del doc[last]
    return apply


def _many(*fns: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        for fn in fns:
            fn(doc)
    return apply


_T3_TEXT = json.dumps(T3, indent=2)


def _edit(old: str, new: str) -> bytes:
    """T3 as text with one textual edit (which must apply)."""
    assert old in _T3_TEXT, old
    return _T3_TEXT.replace(old, new, 1).encode("utf-8")


INPUTS: dict[str, bytes] = {
    "malformed.json": b'{"turn_id": 3, "timestamp": ',
    "trailing-garbage.json": _T3_TEXT.encode() + b" }",
    "invalid-utf8.json": _edit('"query": "', '"query": "\u00ff').replace(b"\xc3\xbf", b"\xff"),
    "bom.json": b"\xef\xbb\xbf" + _T3_TEXT.encode(),
    "empty.json": b"",
    "whitespace.json": b" \n\t\n",
    "duplicate-keys.json": _edit('"turn_id": 3', '"turn_id": 3, "turn_id": 3'),
    "nan.json": _edit('"confidence_score": 9', '"confidence_score": NaN'),
    "infinity.json": _edit('"confidence_score": 9', '"confidence_score": -Infinity'),
    "lone-surrogate.json": _edit('"query": "', '"query": "\\ud800'),
    "not-an-object.json": b"[1, 2, 3]",
    "wrong-type.json": _j(_mutated(T3, _set("turn_id", "3"))),
    "bool-as-int.json": _j(_mutated(T3, _set("turn_id", True))),
    "missing-field.json": _j(_mutated(T3, _drop("user_input"))),
    "out-of-range.json": _j(_mutated(T3, _set("agent_response/confidence_score", 11))),
    "negative-time.json": _j(_mutated(T3, _set("agent_response/processing_time_seconds", -1))),
    "naive-timestamp.json": _j(_mutated(T3, _set("timestamp", "2025-01-15T10:35:10"))),
    "wrong-turn-id.json": _j(_mutated(T3, _set("turn_id", 5))),
    "duplicate-turn-id.json": _j(_mutated(T3, _set("turn_id", 2))),
    "earlier-timestamp.json": _j(_mutated(T3, _set("timestamp", "2025-01-15T10:31:00Z"))),
    "multi-violation.json": _j(_mutated(T3, _many(
        _set("turn_id", "three"), _set("timestamp", "yesterday"),
        _set("agent_response/confidence_score", 42)))),
    "bad-enum.json": _j(_mutated(CTX, _set("validation_results/overall_status", "MAYBE"))),
    "meta-session-id.json": _j(_mutated(META, _set("session_info/session_id",
                                                  "orchestrator-session-someone-else"))),
    "meta-api-key.json": _j(_mutated(META, _set("session_info/api_key", "customer-other"))),
    "meta-version.json": _j(_mutated(META, _set("session_info/session_version", "v1.2.0"))),
    "meta-bad-created.json": _j({"session_info": {"created_timestamp": "yesterday"}}),
    "valid-turn-3.json": _j(T3),
    "valid-turn-8.json": _j(_mutated(_turn(7), _many(
        _set("turn_id", 8), _set("timestamp", "2025-01-16T09:00:00Z")))),
    "valid-context.json": _j(CTX),
    "fix/session_analytics.json": (EXAMPLES / "correction" / "session_analytics.json")
    .read_bytes(),
    "big-context.json": _j(_mutated(CTX, _set("padding", "x" * (SMALL_LIMIT + 100)))),
    "big-turn.json": _j(_mutated(T3, _set("user_input/query", "y" * (SMALL_LIMIT + 100)))),
}


# --------------------------------------------------------------------------- the store

@dataclass
class Env:
    root: Path
    small: Path
    file_root: Path
    inputs: Path
    store: Store
    small_store: Store
    fresh: str = "fresh-customer"   # a customer name no other case uses

    def path(self, name: str) -> str:
        return str(self.inputs / name)

    def data(self, name: str) -> bytes:
        return INPUTS[name]

    def session(self, customer: str = OPEN) -> Any:
        return self.store.customer(customer).session()


def _open_session(store: Store, customer: str) -> None:
    session = store.customer(customer).new_session(
        session_id=OPEN_SID, created="2025-01-15T10:30:00Z")
    session.append_turn(_turn(1))
    session.append_turn(_turn(2))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    base = tmp_path_factory.mktemp("bad-input")
    inputs = base / "inputs"
    for name, data in INPUTS.items():
        (inputs / name).parent.mkdir(parents=True, exist_ok=True)
        (inputs / name).write_bytes(data)
    store = Store.init(base / "sessions", clock=Clock())
    # CUSTOMER: v1.0.0 and v1.1.0, both finalized.
    session = record_example_session(store)
    session.follow_up(message="alarms and tracing")
    for n in (6, 7):
        session.append_turn(_turn(n))
    session.put("session_metadata.json", load_example("follow_up", "session_metadata.json"))
    session.finalize()
    _open_session(store, OPEN)
    small_store = Store.init(base / "small", clock=Clock(), max_document_bytes=SMALL_LIMIT)
    config_mod.save(small_store.root, small_store.config)
    _open_session(small_store, OPEN)
    file_root = base / "not-a-directory"
    file_root.write_text("I am a file, not a store\n")
    return Env(store.root, small_store.root, file_root, inputs, store, small_store)


def _tree(path: Path) -> list[str]:
    """Every file and directory under ``path`` (or a file's content)."""
    if path.is_file():
        return [f"file:{path.read_bytes()!r}"]
    out: list[str] = []
    for dirpath, dirs, files in os.walk(path):
        rel = os.path.relpath(dirpath, path)
        if rel == ".gitstore" or rel.startswith(".gitstore" + os.sep):
            continue  # lock files may be created by a refused write: they hold no data
        dirs.sort()
        # the access log records attempts too; it is not session data
        out.extend(os.path.join(rel, f) for f in sorted(files)
                   if not f.startswith("gitstore-audit."))
        out.extend(os.path.join(rel, d) + "/" for d in dirs)
    return out


def snapshot(e: Env, case: Case) -> Any:
    """What a write could change: every file of both stores (new objects, new
    repositories, new refs) and, for the store the case writes to, ``repo_state``
    (ref values and reachable objects) of each repository."""
    state: dict[str, Any] = {str(p): _tree(p) for p in (e.root, e.small, e.file_root)}
    root = {"root": e.root, "small": e.small}.get(case.root)
    if root is not None:
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                state[str(entry)] = repo_state(entry)
    return state


# --------------------------------------------------------------------------- the table

@dataclass
class Case:
    id: str
    code: int
    api: Callable[[Env], Any]
    cli: Callable[[Env], list[str]] | None  # None: API only (said why at the row)
    needle: str = ""                # must appear in the message (API and CLI)
    stdin: str | None = None        # name of an INPUTS entry fed to the CLI's stdin
    root: str = "root"              # which store the case runs against: root, small, none
    violations: int = 0             # >1: the header-plus-lines format is expected
    pointers: tuple[str, ...] = field(default=())  # file#pointer that must be reported


def api_only(case: Case) -> Case:
    """A variant of a row whose CLI path is already exercised by that row."""
    case.cli = None
    return case


def turn_case(id: str, name: str, needle: str = "", *, pointers: tuple[str, ...] = (),
              violations: int = 0, stdin: bool = False) -> Case:
    return Case(
        id, 4,
        api=lambda e: e.session().append_turn(e.data(name)),
        cli=(lambda e: ["turn", OPEN, "-"]) if stdin else (lambda e: ["turn", OPEN, e.path(name)]),
        needle=needle, stdin=name if stdin else None, pointers=pointers,
        violations=violations)


def put_case(id: str, document: str, name: str, needle: str, *,
             pointers: tuple[str, ...] = ()) -> Case:
    return Case(
        id, 4,
        api=lambda e: e.session().put(document, e.data(name)),
        cli=lambda e: ["put", OPEN, document, e.path(name)],
        needle=needle, pointers=pointers)


def name_case(id: str, name: str, needle: str) -> Case:
    return Case(
        f"customer-name-{id}", 2,
        api=lambda e: e.store.customer(name).new_session(),
        cli=lambda e: ["new", "--", name],
        needle=needle)


def version_string_case(bad: str) -> Case:
    return Case(
        f"version-string-{bad}", 2,
        api=lambda e: e.store.customer(CUSTOMER).new_session(version=bad),
        cli=lambda e: ["new", CUSTOMER, "--version", bad],
        needle="invalid version")


CONV = "conversation.json"
FIX = "fix/session_analytics.json"   # the correction of examples/correction


def _fix(e: Env) -> dict[str, bytes]:
    return {"session_analytics.json": e.data(FIX)}


CASES: list[Case] = [
    # -- raw input that is not JSON ------------------------------------------------
    turn_case("malformed-json", "malformed.json", "malformed JSON"),
    api_only(turn_case("trailing-garbage", "trailing-garbage.json", "malformed JSON")),
    turn_case("invalid-utf8", "invalid-utf8.json", "invalid UTF-8"),
    api_only(turn_case("byte-order-mark", "bom.json", "byte-order mark")),
    turn_case("empty-file", "empty.json", "empty document"),
    api_only(turn_case("empty-stdin", "empty.json", "empty document", stdin=True)),
    api_only(turn_case("whitespace-only", "whitespace.json", "empty document")),
    turn_case("duplicate-keys", "duplicate-keys.json", "duplicate key 'turn_id'"),
    turn_case("nan", "nan.json", "NaN"),
    api_only(turn_case("infinity", "infinity.json", "Infinity")),
    # "\ud800" is valid JSON syntax but not a Unicode string: it can never be stored
    # as UTF-8, so it must be refused as an invalid document, not crash.
    turn_case("lone-surrogate-escape", "lone-surrogate.json", "conversation.json"),
    api_only(turn_case("turn-not-an-object", "not-an-object.json", "JSON object")),
    # -- schema ----------------------------------------------------------------------
    turn_case("wrong-type", "wrong-type.json", "turn_id",
              pointers=(f"{CONV}#/conversation_turns/2/turn_id",)),
    api_only(turn_case("bool-is-not-int", "bool-as-int.json", "turn_id",
                       pointers=(f"{CONV}#/conversation_turns/2/turn_id",))),
    turn_case("missing-required-field", "missing-field.json", "user_input"),
    turn_case("out-of-range", "out-of-range.json", "confidence_score",
              pointers=(f"{CONV}#/conversation_turns/2/agent_response/confidence_score",)),
    api_only(turn_case("negative-duration", "negative-time.json", "processing_time_seconds",
                       pointers=(f"{CONV}#/conversation_turns/2/agent_response/"
                                 "processing_time_seconds",))),
    put_case("bad-enum", "deployment_context.json", "bad-enum.json", "overall_status",
             pointers=("deployment_context.json#/validation_results/overall_status",)),
    turn_case("naive-timestamp", "naive-timestamp.json", "timezone",
              pointers=(f"{CONV}#/conversation_turns/2/timestamp",)),
    turn_case("multi-violation", "multi-violation.json", violations=3,
              pointers=(f"{CONV}#/conversation_turns/2/turn_id",
                        f"{CONV}#/conversation_turns/2/timestamp",
                        f"{CONV}#/conversation_turns/2/agent_response/confidence_score")),
    # -- integrity and chronology ---------------------------------------------------
    turn_case("wrong-turn-id", "wrong-turn-id.json", "expected 3",
              pointers=(f"{CONV}#/conversation_turns/2/turn_id",)),
    turn_case("duplicate-turn-id", "duplicate-turn-id.json", "duplicate turn_id 2",
              pointers=(f"{CONV}#/conversation_turns/2/turn_id",)),
    turn_case("earlier-timestamp", "earlier-timestamp.json", "earlier than turn 2",
              pointers=(f"{CONV}#/conversation_turns/2/timestamp",)),
    put_case("mismatched-session-id", "session_metadata.json", "meta-session-id.json",
             "orchestrator-session-someone-else",
             pointers=("session_metadata.json#/session_info/session_id",)),
    put_case("wrong-api-key", "session_metadata.json", "meta-api-key.json", "customer-other",
             pointers=("session_metadata.json#/session_info/api_key",)),
    put_case("wrong-session-version", "session_metadata.json", "meta-version.json", "v1.2.0",
             pointers=("session_metadata.json#/session_info/session_version",)),
    # -- not found ---------------------------------------------------------------------
    Case("unknown-customer-read", 3,
         api=lambda e: e.store.customer("nobody-here").read(),
         cli=lambda e: ["show", "nobody-here"], needle="nobody-here"),
    api_only(Case("unknown-customer-write", 3,
                  api=lambda e: e.store.customer("nobody-here").session(),
                  cli=None, needle="nobody-here")),
    api_only(Case("unknown-customer-versions", 3,
                  api=lambda e: e.store.customer("nobody-here").versions(),
                  cli=None, needle="nobody-here")),
    Case("unknown-version", 3,
         api=lambda e: e.store.customer(CUSTOMER).read("v1.7.0"),
         cli=lambda e: ["show", CUSTOMER, "v1.7.0"], needle="v1.7.0"),
    api_only(Case("unknown-scenario", 3,
                  api=lambda e: e.store.customer(CUSTOMER).session("v4"),
                  cli=None, needle="v4")),
    Case("missing-input-file", 3,
         api=lambda e: e.session().append_turn(e.inputs / "no-such-file.json"),
         cli=lambda e: ["turn", OPEN, e.path("no-such-file.json")], needle="no-such-file"),
    Case("store-root-missing", 3,
         api=lambda e: Store(e.root.parent / "no-store-here"),
         cli=lambda e: ["--root", str(e.root.parent / "no-store-here"), "show", OPEN],
         needle="no store", root="none"),
    # -- hostile customer names (tried with `new`, the command that creates one) -------
    name_case("dotdot", "..", "'..'"),
    name_case("slash", "a/b", "path separator"),
    name_case("backslash", "a\\b", "path separator"),
    # the CLI cannot be tried: no argv entry can carry a NUL byte
    api_only(name_case("nul", "cust\x00omer", "NUL")),
    name_case("leading-dash", "-rf", "starts with '-'"),
    name_case("leading-dot", ".hidden", "starts with '.'"),
    name_case("empty", "", "empty"),
    name_case("too-long", "a" * 129, "129 characters"),
    name_case("cyrillic-lookalike", "\u0441ustomer", "non-ASCII"),
    api_only(name_case("space", "customer xyz", "may only contain")),
    api_only(name_case("git-suffix", "customer.git", ".git")),
    api_only(name_case("not-a-string", 42, "must be a string")),  # type: ignore[arg-type]
    # -- version strings ---------------------------------------------------------------
    version_string_case("1.0"),
    *[api_only(version_string_case(bad))
      for bad in ("v01.0.0", "v1.0.0.0", "v0.1.0", "v1.0.0-rc1", "latest", "")],
    api_only(Case("version-string-finalize", 2,
                  api=lambda e: e.session().finalize(version="v1.0"),
                  cli=None, needle="invalid version")),
    api_only(Case("version-string-correct-base", 2,
                  api=lambda e: e.session(CUSTOMER).correct(_fix(e), reason="r", base="one"),
                  cli=None, needle="invalid version")),
    # -- version rules -------------------------------------------------------------------
    Case("follow-up-while-open", 5,
         api=lambda e: e.session().follow_up(),
         cli=lambda e: ["follow-up", OPEN], needle="still open"),
    api_only(Case("correct-while-open", 5,
                  api=lambda e: e.session().correct(_fix(e), reason="fix"),
                  cli=None, needle="still open")),
    Case("turn-to-finalized", 5,
         api=lambda e: e.session(CUSTOMER).append_turn(e.data("valid-turn-8.json")),
         cli=lambda e: ["turn", CUSTOMER, e.path("valid-turn-8.json")], needle="finalized"),
    api_only(Case("put-to-finalized", 5,
                  api=lambda e: e.session(CUSTOMER).put("deployment_context",
                                                        e.data("valid-context.json")),
                  cli=None, needle="finalized")),
    api_only(Case("summary-to-finalized", 5,
                  api=lambda e: e.session(CUSTOMER).set_summary({"total_turns": 7}),
                  cli=None, needle="finalized")),
    api_only(Case("finalize-twice", 5,
                  api=lambda e: e.session(CUSTOMER).finalize(), cli=None, needle="finalized")),
    Case("correct-older-minor", 5,
         api=lambda e: e.session(CUSTOMER).correct(_fix(e), reason="fix", base="v1.0.0"),
         cli=lambda e: ["correct", CUSTOMER, e.path(FIX), "-r", "fix", "--base", "v1.0.0"],
         needle="correct v1.1.0"),
    Case("new-version-skips", 5,
         api=lambda e: e.store.customer(CUSTOMER).new_session(version="v5.0.0"),
         cli=lambda e: ["new", CUSTOMER, "--version", "v5.0.0"], needle="skip"),
    api_only(Case("new-version-reused", 5,
                  api=lambda e: e.store.customer(CUSTOMER).new_session(version="v1.0.0"),
                  cli=None, needle="already exists")),
    api_only(Case("follow-up-version-skips", 5,
                  api=lambda e: e.session(CUSTOMER).follow_up(version="v1.3.0"),
                  cli=None, needle="v1.2.0")),
    api_only(Case("follow-up-version-reused", 5,
                  api=lambda e: e.session(CUSTOMER).follow_up(version="v1.1.0"),
                  cli=None, needle="already exists")),
    api_only(Case("correct-version-goes-backwards", 5,
                  api=lambda e: e.session(CUSTOMER).correct(_fix(e), reason="fix",
                                                            version="v1.0.1"),
                  cli=None, needle="backwards")),
    api_only(Case("finalize-version-skips", 5,
                  api=lambda e: e.session().finalize(version="v1.0.1"),
                  cli=None, needle="skip")),
    # -- a refused `new` for a customer that does not exist yet must not create it ----
    Case("new-customer-bad-version-string", 2,
         api=lambda e: e.store.customer(e.fresh).new_session(version="garbage"),
         cli=lambda e: ["new", e.fresh, "--version", "garbage"], needle="invalid version"),
    api_only(Case("new-customer-version-skips", 5,
                  api=lambda e: e.store.customer(e.fresh).new_session(version="v2.0.0"),
                  cli=None, needle="skip")),
    Case("new-customer-invalid-metadata", 4,
         api=lambda e: e.store.customer(e.fresh).new_session(
             metadata=e.data("meta-bad-created.json")),
         cli=lambda e: ["new", e.fresh, "--metadata", e.path("meta-bad-created.json")],
         needle="created_timestamp"),
    # -- size limit ----------------------------------------------------------------------
    api_only(Case("oversized-document", 8,
                  api=lambda e: e.small_store.customer(OPEN).session().put(
                      "deployment_context.json", e.data("big-context.json")),
                  cli=None, needle=str(SMALL_LIMIT), root="small")),
    Case("oversized-turn-stdin", 8,
         api=lambda e: e.small_store.customer(OPEN).session().append_turn(
             e.data("big-turn.json")),
         cli=lambda e: ["turn", OPEN, "-"], stdin="big-turn.json",
         needle=str(SMALL_LIMIT), root="small"),
    # -- storage -------------------------------------------------------------------------
    Case("store-root-is-a-file", 9,
         api=lambda e: Store(e.file_root),
         cli=lambda e: ["--root", str(e.file_root), "show", OPEN],
         needle="not a directory", root="none"),
    api_only(Case("init-on-a-file", 9,
                  api=lambda e: Store.init(e.file_root), cli=None,
                  needle="not a directory", root="none")),
    # -- unknown document names ----------------------------------------------------------
    Case("unknown-document-put", 2,
         api=lambda e: e.session().put("bogus.json", e.data("valid-context.json")),
         cli=lambda e: ["put", OPEN, "bogus.json", e.path("valid-context.json")],
         needle="unknown document 'bogus.json'"),
    api_only(Case("unknown-document-show", 2,
                  api=lambda e: e.store.customer(OPEN).read().raw("bogus"),
                  cli=None, needle="unknown document 'bogus'")),
    api_only(Case("sow-is-not-writable", 2,
                  api=lambda e: e.session().put("sow_document.md", e.data("valid-context.json")),
                  cli=None, needle="unknown document")),
    Case("unknown-document-correct", 2,
         api=lambda e: e.session(CUSTOMER).correct({"notes.json": e.data(FIX)}, reason="fix"),
         cli=lambda e: ["correct", CUSTOMER, f"notes.json={e.path(FIX)}", "-r", "fix"],
         needle="unknown document 'notes.json'"),
]


# --------------------------------------------------------------------------- running

def run_cli(args: list[str], stdin: bytes | None = None,
            root: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GITSTORE_ROOT", None)
    prefix = ["--root", str(root)] if root is not None else []
    return subprocess.run([sys.executable, "-m", "gitstore", *prefix, *args],
                          input=stdin if stdin is not None else b"", capture_output=True,
                          env=env, timeout=60, check=False)


_VIOLATION_LINE = re.compile(r"^  [^\s#]+(#/\S*)?: \S.*$")


def check_stderr(stderr: str, case: Case) -> None:
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    lines = stderr.splitlines()
    assert lines, "no message on stderr"
    assert lines[0].startswith("gitstore: error: "), stderr
    if case.violations > 1:
        assert re.fullmatch(rf"gitstore: error: change rejected: {case.violations} violations",
                            lines[0]), stderr
        assert len(lines) == 1 + case.violations, stderr
        for line in lines[1:]:
            assert _VIOLATION_LINE.match(line), line
    else:
        assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    for pointer in case.pointers:
        assert pointer in stderr, f"{pointer} not named in:\n{stderr}"
    assert case.needle in stderr, f"{case.needle!r} not in:\n{stderr}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_api_refuses(env: Env, case: Case) -> None:
    env.fresh = f"fresh-api-{case.id}"
    before = snapshot(env, case)
    with pytest.raises(GitStoreError) as info:
        case.api(env)
    exc = info.value
    assert isinstance(exc, ERROR_CLASSES[case.code]), f"{type(exc).__name__}: {exc}"
    assert exc.exit_code == case.code
    text = str(exc)
    assert text and "\n" not in text
    assert case.needle in text or any(case.needle in str(v) for v in
                                      getattr(exc, "violations", ())), text
    if isinstance(exc, InvalidDocumentError):
        assert exc.violations
        reported = {f"{v.file}#{v.pointer}" for v in exc.violations}
        for pointer in case.pointers:
            assert pointer in reported, (pointer, reported)
        for v in exc.violations:
            assert v.file, v
        if case.violations:
            assert len(exc.violations) == case.violations, exc.violations
    assert snapshot(env, case) == before, "a refused API call changed the store"


CLI_CASES = [c for c in CASES if c.cli is not None]


@dataclass
class Run:
    proc: subprocess.CompletedProcess[bytes]
    before: Any
    after: Any


@pytest.fixture(scope="module")
def cli_runs(env: Env, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every CLI row, each against its own copy of the stores, run concurrently
    (each command is a fresh process; the copies keep the rows independent)."""
    base = tmp_path_factory.mktemp("cli-copies")

    def one(case: Case) -> Run:
        assert case.cli is not None
        where = base / case.id
        e = dataclasses.replace(env, root=where / "sessions", small=where / "small",
                                fresh=f"fresh-cli-{case.id}")
        shutil.copytree(env.root, e.root, symlinks=True)
        shutil.copytree(env.small, e.small, symlinks=True)
        before = snapshot(e, case)
        root = {"root": e.root, "small": e.small, "none": None}[case.root]
        proc = run_cli(case.cli(e), INPUTS[case.stdin] if case.stdin else None, root)
        return Run(proc, before, snapshot(e, case))

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip((c.id for c in CLI_CASES), pool.map(one, CLI_CASES), strict=True))


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_refuses(cli_runs: dict[str, Run], case: Case) -> None:
    run = cli_runs[case.id]
    stderr = run.proc.stderr.decode("utf-8", errors="replace")
    assert run.proc.returncode == case.code, f"exit {run.proc.returncode}, stderr:\n{stderr}"
    assert run.proc.stdout == b"", run.proc.stdout
    check_stderr(stderr, case)
    assert run.after == run.before, "a refused command changed the store"


def test_table_covers_every_exit_code_of_bad_input() -> None:
    assert {c.code for c in CASES} == {2, 3, 4, 5, 8, 9}
    assert len({c.id for c in CASES}) == len(CASES)


def test_refusals_leave_the_store_usable(env: Env) -> None:
    """After every refusal above, the open session still takes the next good turn."""
    session = env.session()
    before = session.state.tip
    written = session.append_turn(env.data("valid-turn-3.json"))
    assert written.turn == 3 and written.change == "turn"
    assert env.store.customer(OPEN).read().info.parents == (before,)
    assert [t["turn_id"] for t in session.history()] == [1, 2, 3]
    assert {CUSTOMER, OPEN} <= set(env.store.customers())
    proc = subprocess.run(["git", "-C", str(env.root / OPEN), "fsck", "--strict"],
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
