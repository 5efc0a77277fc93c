"""Hostile input at every entry point (issue 11, items 3, 4, 10, 11 and 17).

* identities that would write a malformed commit (a newline, ``<``/``>``, NUL, empty
  parts) are refused before any write, wherever they enter, and ``git fsck --strict``
  stays clean;
* timestamps whose instant lies outside years 0001..9999 in UTC are refused by the
  schema with a clear violation, and one customer's underivable index row never
  takes the queries of the others down;
* JSON built to crash a later stage (nested hundreds of levels deep, ``1e400``,
  integers of thousands of digits) is refused with exit 4 and one line at every
  input path: the API, a CLI file, stdin and ``import`` (Hypothesis generates it);
* every version argument has one grammar, the tag's (``v`` required);
* document text meant to become markup in the SOW (``<script>``, ``<img onerror>``,
  ``javascript:`` links, remote images, HTML comments) never reaches
  ``sow_document.md`` verbatim, and rendering the SOW with markdown-it-py leaves no
  raw HTML and no ``javascript:`` URL.

None of these inputs may exit 70.
"""

from __future__ import annotations

import copy
import html
import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    SESSION_ID,
    Clock,
    git,
    load_example,
    record_example_session,
    repo_state,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import InvalidDocumentError, Store, UsageError
from gitstore.core.commits import Identity
from gitstore.core.render import render_sow
from gitstore.core.versions import Scenario, Version

OPEN = "acme-open"
ANALYTICS = EXAMPLES / "correction" / "session_analytics.json"


# --------------------------------------------------------------------------- helpers

@dataclass
class Run:
    code: int
    out: bytes
    err: str


def cli(root: Path, *args: str, stdin: bytes = b"") -> Run:
    """``gitstore --root ROOT ARGS`` in this process, with ``stdin``."""
    from gitstore.cli.app import main

    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    streams = (io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"),
               io.TextIOWrapper(out, encoding="utf-8", write_through=True),
               io.TextIOWrapper(err, encoding="utf-8", write_through=True))
    sys.stdin, sys.stdout, sys.stderr = streams
    code: Any = 0
    try:
        main(["--root", str(root), *args])
    except SystemExit as exc:
        code = exc.code
    finally:
        for s in streams[1:]:
            s.flush()
        sys.stdin, sys.stdout, sys.stderr = saved
    result = Run(code if isinstance(code, int) else 70, out.getvalue(),
                 err.getvalue().decode("utf-8", "replace"))
    for s in streams:
        s.detach()
    return result


def one_line_error(run: Run, code: int) -> str:
    """Assert ``run`` failed with ``code``, printed nothing on stdout and one
    ``gitstore: error:`` line (no traceback); return that line."""
    assert run.code == code, (run.code, run.err)
    assert run.out == b"" and "Traceback" not in run.err, run.err
    lines = run.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitstore: error: "), run.err
    return lines[0]


def turn(n: int = 3) -> dict[str, Any]:
    t = load_example("session", "turns", f"turn-{n:02d}.json")
    t.pop("turn_id")
    return t


def state(root: Path) -> tuple[tuple[str, str], ...]:
    return tuple(repo_state(p) for p in sorted(root.iterdir()) if p.name != ".gitstore")


def fsck_strict(repo: Path) -> None:
    proc = subprocess.run(["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()


@pytest.fixture
def opened(tmp_path: Path) -> Path:
    """A store with customer OPEN: v1.0.0 open, two turns."""
    store = Store.init(tmp_path / "s", clock=Clock())
    session = store.customer(OPEN).new_session(session_id=f"orchestrator-session-{OPEN}",
                                               created="2025-01-15T10:30:00Z")
    session.append_turn(turn(1))
    session.append_turn(turn(2))
    return store.root


# =========================================================================== item 3

BAD_IDENTITY_TEXT = [
    "bot\nx <b@x>", "bot <b@x>\nx", "bot <b@x\ny>", "a <b> <c>", "<x@y>", "a <>", "a <b c>",
    "a\x00b <c@d>", "a <c@\x00d>", "tab\tname <a@b>", "a\u2028b <c@d>", " ", "\x7f <a@b>",
    "x" * 300 + " <a@b>", "name <" + "e" * 300 + "@x>",
]
BAD_IDENTITIES = [Identity("bot\nx", "b@x"), Identity("bot", "b@x\ny"), Identity("a<b", "c@d"),
                  Identity("a>b", "c@d"), Identity("", "a@b"), Identity("a", ""),
                  Identity("a", "b c@d"), Identity("a\x00", "b@c"), Identity(" a", "b@c")]


@pytest.mark.parametrize("text", BAD_IDENTITY_TEXT, ids=range(len(BAD_IDENTITY_TEXT)))
def test_identity_text_is_checked_as_git_records_it(text: str) -> None:
    with pytest.raises(UsageError) as info:
        Identity.parse(text)
    assert "\n" not in str(info.value) and "invalid identity" in str(info.value)


def test_good_identities_still_parse() -> None:
    assert Identity.parse("reporter <r@example.com>") == Identity("reporter", "r@example.com")
    assert Identity.parse("  Zoë Ünïcode  <z@x>  ") == Identity("Zoë Ünïcode", "z@x")
    assert Identity.parse("planner").email == "planner@agents.gitstore.invalid"


@pytest.mark.parametrize("who", [*BAD_IDENTITY_TEXT[:8], *BAD_IDENTITIES],
                         ids=range(8 + len(BAD_IDENTITIES)))
def test_a_bad_identity_is_refused_at_every_api_entry(opened: Path, who: str | Identity
                                                      ) -> None:
    before = state(opened)
    with pytest.raises(UsageError):
        Store(opened, agent=who).customer(OPEN).session().append_turn(turn())
    session = Store(opened).customer(OPEN).session()
    with pytest.raises(UsageError):
        session.append_turn(turn(), author=who)
    with pytest.raises(UsageError):
        Store(opened).customer("another").new_session(author=who)
    assert state(opened) == before
    assert not (opened / "another").exists()
    fsck_strict(opened / OPEN)


@pytest.mark.parametrize("who", ["bot\nx <b@x>", "a <b> <c>", "a <b c>", "\x7f"])
def test_a_bad_identity_is_refused_from_the_cli_env_and_config(opened: Path, who: str,
                                                               tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    before = state(opened)
    t = tmp_path / "turn.json"
    t.write_text(json.dumps(turn()))
    one_line_error(cli(opened, "--agent", who, "turn", OPEN, str(t)), 2)
    with monkeypatch.context() as m:
        m.setenv("GITSTORE_AGENT", who)
        one_line_error(cli(opened, "turn", OPEN, str(t)), 2)
        with pytest.raises(UsageError):
            Store(opened)
    config = opened / ".gitstore" / "config.json"
    saved = config.read_bytes() if config.exists() else None
    try:
        config.write_text(json.dumps({"agent": who}))
        one_line_error(cli(opened, "turn", OPEN, str(t)), 2)
        config.write_text(json.dumps({"committer": who}))
        with pytest.raises(UsageError):
            Store(opened)
    finally:
        if saved is None:
            config.unlink()
        else:
            config.write_bytes(saved)
    assert state(opened) == before
    fsck_strict(opened / OPEN)


def test_a_good_agent_writes_commits_fsck_accepts(opened: Path) -> None:
    store = Store(opened, agent="Zoë Advisor <zoe@agents.example>")
    store.customer(OPEN).session().append_turn(turn(), author="planner <p@example.com>")
    store.customer(OPEN).session().append_turn(turn(4))
    fsck_strict(opened / OPEN)
    authors = git(opened / OPEN, "log", "-2", "--format=%an <%ae>").splitlines()
    assert authors == ["Zoë Advisor <zoe@agents.example>", "planner <p@example.com>"]


# =========================================================================== item 4

EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+00:01",
              "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59-00:01"]


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_a_timestamp_outside_every_layers_range_is_refused(opened: Path, when: str) -> None:
    before = state(opened)
    store = Store(opened)
    with pytest.raises(InvalidDocumentError) as info:
        store.customer("edge").new_session(created=when)
    [v] = info.value.violations
    assert (v.file, v.pointer) == ("session_metadata.json", "/session_info/created_timestamp")
    assert "outside years 0001..9999 in UTC" in v.message
    bad_turn = dict(turn(), timestamp=when)
    with pytest.raises(InvalidDocumentError) as info:
        store.customer(OPEN).session().append_turn(bad_turn)
    assert "outside years 0001..9999 in UTC" in str(info.value)
    line = one_line_error(cli(opened, "new", "edge", "--created", when), 4)
    assert "created_timestamp" in line and "outside years 0001..9999 in UTC" in line
    assert state(opened) == before


def test_the_extremes_inside_the_range_are_fine(opened: Path) -> None:
    store = Store(opened)
    store.customer("edge").new_session(created="0001-01-01T00:00:00Z")
    store.customer("edge2").new_session(created="0001-01-01T14:00:00+14:00")
    assert cli(opened, "list").code == 0


def _plain_git_commit(repo: Path, replace: dict[str, bytes], message: str) -> None:
    """A commit on refs/heads/v1 made with plain git: the tip's tree with ``replace``."""
    tip = git(repo, "rev-parse", "refs/heads/v1").strip()
    entries = []
    for line in git(repo, "ls-tree", tip).splitlines():
        meta, name = line.split("\t")
        if name in replace:
            blob = git(repo, "hash-object", "-w", "--stdin", input=replace[name]).strip()
            meta = meta.rsplit(" ", 1)[0] + " " + blob
        entries.append(f"{meta}\t{name}")
    tree = git(repo, "mktree", input="\n".join(entries).encode() + b"\n").strip()
    commit = git(repo, "commit-tree", tree, "-p", tip, "-m", message).strip()
    git(repo, "update-ref", "refs/heads/v1", commit, tip)


HOSTILE_META = (
    b'{"session_info": {"session_id": "orchestrator-session-acme-open", "api_key": "acme-open",'
    b' "session_version": "v1.0.0", "created_timestamp": "0001-01-01T00:00:00+14:00",'
    b' "completed_timestamp": "9999-12-31T23:59:59-14:00", "session_duration_minutes": null},'
    b' "quality_metrics": {"session_success_score": 1' + b"0" * 400 + b","
    b' "recommendation_confidence_average": -1' + b"0" * 400 + b"},"
    b' "workflow_tracking": {"completion_status": "\\ud800x", "user_satisfaction_indicators":'
    b' {"follow_up_questions_answered": 1' + b"0" * 400 + b"}}}\n")


def test_one_customers_hostile_row_never_takes_the_queries_down(opened: Path) -> None:
    store = Store(opened, clock=Clock())
    record_example_session(store, CUSTOMER)
    assert cli(opened, "reindex").code == 0
    _plain_git_commit(opened / OPEN, {"session_metadata.json": HOSTILE_META},
                      "plain git\n\nCompleteness: \u00b2\nSession-Version: v1.0.0")
    for args in (["list"], ["list", "-o", "json"], ["stats"], ["search", "collector"],
                 ["active", "--timeout", "1000y"], ["reindex"]):
        run = cli(opened, *args)
        assert run.code == 0, (args, run.err)
    listed = json.loads(cli(opened, "list", "-o", "json").out)
    assert {row["customer"] for row in listed} >= {CUSTOMER}
    hostile = [row for row in listed if row["customer"] == OPEN]
    assert all(row["created"] is None and row["completeness"] is None for row in hostile)


def test_a_customer_whose_row_cannot_be_derived_is_skipped_with_one_warning(
        opened: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitstore.catalog import derive  # where the index's rows are derived from git

    store = Store(opened, clock=Clock())
    record_example_session(store, CUSTOMER)
    real = derive.version_row

    def failing(customer: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if customer == OPEN:
            raise OverflowError("date value out of range")
        return real(customer, *args, **kwargs)

    monkeypatch.setattr(derive, "version_row", failing)
    for f in (opened / ".gitstore").glob("index.sqlite*"):
        f.unlink()  # every customer is derived again
    index = Store(opened).catalog
    rows = index.list_sessions()
    assert [r["customer"] for r in rows] == [CUSTOMER]
    assert len([p for p in index.problems if p.startswith(f"{OPEN}:")]) == 1
    run = cli(opened, "list")
    assert run.code == 0 and CUSTOMER in run.out.decode() and OPEN in run.err


# =========================================================================== item 10

def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "1" + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"a":[' * (depth // 2) + "1" + "]}" * (depth // 2)


HOSTILE_VALUES = st.one_of(
    st.tuples(st.integers(65, 1200), st.sampled_from(["array", "object", "mixed"])).map(
        lambda t: _nested(*t)),
    st.sampled_from(["1e400", "-1e400", "1E+999", "-2.5e309", "1e99999", "[1e400]"]),
    st.tuples(st.integers(4301, 6000), st.booleans()).map(
        lambda t: ("-" if t[1] else "") + "9" * t[0]),
)


def _embed(value: str, where: str) -> bytes:
    """JSON text of a valid input for ``where`` with the hostile ``value`` inside it."""
    if where in ("turn", "import"):
        t = turn()
        t["user_input"]["parameters"] = {"x": "@@"}
        return json.dumps(t).replace('"@@"', value).encode()
    if where == "summary":
        return ('{"total_turns": 2, "note": ' + value + "}").encode()
    if where == "metadata":
        return ('{"session_info": {"created_timestamp": "2025-01-15T10:30:00Z", '
                '"x": ' + value + "}}").encode()
    return ('{"cloud_assets_snapshot": {"timestamp": null, "assets": [], "x": '
            + value + "}}").encode()


API_PATHS = ["append_turn", "put", "set_summary", "correct", "new metadata"]


def _api(root: Path, path: str, data: bytes | Any) -> None:
    customer = Store(root).customer(OPEN)
    if path == "append_turn":
        customer.session().append_turn(data)
    elif path == "put":
        customer.session().put("deployment_context.json", data)
    elif path == "set_summary":
        customer.session().set_summary(data)
    elif path == "correct":
        customer.session().correct({"deployment_context.json": data}, reason="hostile")
    else:
        Store(root).customer("fresh").new_session(metadata=data)


_WHERE = {"append_turn": "turn", "put": "context", "set_summary": "summary",
          "correct": "context", "new metadata": "metadata"}
HYPO = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.mark.parametrize("path", API_PATHS)
@HYPO
@given(value=HOSTILE_VALUES)
def test_hostile_json_is_refused_by_every_api_path(opened: Path, path: str, value: str
                                                   ) -> None:
    before = state(opened)
    for data in (_embed(value, _WHERE[path]), _embed(value, _WHERE[path]).decode()):
        with pytest.raises(InvalidDocumentError) as info:
            _api(opened, path, data)
        assert "\n" not in str(info.value.violations[0]), info.value
        assert len(info.value.violations) == 1
    assert state(opened) == before and not (opened / "fresh").exists()


def _python_value(kind: str) -> Any:
    if kind == "deep":
        value: Any = 1
        for _ in range(900):
            value = {"a": [value]}
        return value
    if kind == "inf":
        return float("inf")
    if kind == "nan":
        return float("nan")
    if kind == "cycle":
        loop: dict[str, Any] = {}
        loop["self"] = loop
        return loop
    return -(10 ** 5000)


@pytest.mark.parametrize("path", API_PATHS)
@pytest.mark.parametrize("kind", ["deep", "inf", "nan", "cycle", "bigint"])
def test_hostile_python_values_are_refused_by_every_api_path(opened: Path, path: str,
                                                             kind: str) -> None:
    before = state(opened)
    base = json.loads(_embed("0", _WHERE[path]))
    holder = base["user_input"]["parameters"] if path == "append_turn" else \
        base["session_info"] if path == "new metadata" else \
        base if path == "set_summary" else base["cloud_assets_snapshot"]
    holder["x" if path != "set_summary" else "note"] = _python_value(kind)
    with pytest.raises(InvalidDocumentError) as info:
        _api(opened, path, base)
    assert "\n" not in str(info.value.violations[0])
    assert state(opened) == before


CLI_PATHS = ["turn FILE", "turn -", "put FILE", "put -", "summary FILE", "summary -",
             "correct FILE", "new --metadata FILE", "import FILE"]


@pytest.mark.parametrize("path", CLI_PATHS)
@HYPO
@given(value=HOSTILE_VALUES)
def test_hostile_json_is_refused_by_every_cli_path(opened: Path, tmp_path: Path, path: str,
                                                   value: str) -> None:
    before = state(opened)
    command = path.split()[0]
    where = {"turn": "turn", "put": "context", "summary": "summary", "correct": "context",
             "new": "metadata", "import": "import"}[command]
    data = _bundle_with(value) if command == "import" else _embed(value, where)
    file = tmp_path / "input.json"
    file.write_bytes(data)
    source = "-" if path.endswith("-") else str(file)
    args = {"turn": ["turn", OPEN, source],
            "put": ["put", OPEN, "deployment_context.json", source],
            "summary": ["summary", OPEN, source],
            "correct": ["correct", OPEN, f"deployment_context.json={source}", "-r", "x"],
            "new": ["new", "fresh", "--metadata", source],
            "import": ["import", source]}[command]
    run = cli(opened, *args, stdin=data if source == "-" else b"")
    assert run.code == 4, (path, run.err)
    assert run.out == b"" and "Traceback" not in run.err
    lines = run.err.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("gitstore: error: "), run.err
    assert len(run.err) < 400
    assert state(opened) == before and not (opened / "fresh").exists()


_BUNDLE: dict[str, str] = {}


def _bundle_with(value: str) -> bytes:
    """A real JSON export (of a customer made once per process) whose first turn
    carries the hostile ``value`` in its ``user_input``."""
    if not _BUNDLE:
        import tempfile

        root = Path(tempfile.mkdtemp()) / "s"
        store = Store.init(root, clock=Clock())
        s = store.customer("bundled").new_session(created="2025-01-15T10:30:00Z")
        s.append_turn(turn(1))
        assert cli(root, "export", "bundled", "-O", str(root.parent / "b.json")).code == 0
        _BUNDLE["text"] = (root.parent / "b.json").read_text()
    text = _BUNDLE["text"]
    marker = '"query": "What collector should I use for my AWS API Gateway?"'
    assert marker in text
    return text.replace(marker, marker + ", \"hostile\": " + value, 1).encode()


def test_json_at_the_limits_is_accepted(opened: Path) -> None:
    session = Store(opened).customer(OPEN).session()
    t = turn()
    t["user_input"]["parameters"] = {"deep": json.loads(_nested(58, "object")),
                                     "big": int("9" * 4300), "small": 1e-400, "max": 1.7e308}
    session.append_turn(t)
    again = session.history(1)[0]["user_input"]["parameters"]
    assert again["big"] == int("9" * 4300) and again["max"] == 1.7e308
    assert cli(opened, "show", OPEN, "-o", "json").code == 0
    assert cli(opened, "list").code == 0


# =========================================================================== item 11

@pytest.mark.parametrize(("args", "shown"), [
    (["finalize", OPEN, "--version", "1.0.0"], "v1.0.0"),
    (["follow-up", OPEN, "--version", "1.1.0"], "v1.1.0"),
    (["new", OPEN, "--version", "2.0.0"], "v2.0.0"),
    (["correct", OPEN, f"session_analytics.json={ANALYTICS}", "-r", "x", "--base", "1.0.0"],
     "v1.0.0"),
    (["correct", OPEN, f"session_analytics.json={ANALYTICS}", "-r", "x", "--version",
      "1.0.1"],
     "v1.0.1"),
    (["turn", OPEN, "-", "-s", "1"], "v1"),
    (["show", OPEN, "1.0.0"], "v1.0.0"),
    (["diff", OPEN, "1.0.0"], "v1.0.0"),
    (["log", OPEN, "1.0.0"], "v1.0.0"),
])
def test_every_version_argument_needs_its_v(opened: Path, args: list[str], shown: str
                                            ) -> None:
    before = state(opened)
    line = one_line_error(cli(opened, *args, stdin=json.dumps(turn()).encode()), 2)
    assert f"starts with v: {shown}" in line, line
    assert state(opened) == before


def test_the_api_has_the_same_version_grammar(opened: Path) -> None:
    session = Store(opened).customer(OPEN).session()
    for call in (lambda: session.finalize(version="1.0.0"),
                 lambda: session.follow_up(version="1.1.0"),
                 lambda: Store(opened).customer(OPEN).session("1"),
                 lambda: Version.parse("1.2.3"), lambda: Scenario.parse("2")):
        with pytest.raises(UsageError) as info:
            call()
        assert "starts with v" in str(info.value) or "expected" in str(info.value)
    assert Version.parse("v1.2.3") == Version(1, 2, 3) and Scenario.parse("v2") == Scenario(2)
    assert Store(opened).customer(OPEN).session(1).scenario == Scenario(1)


# =========================================================================== item 17

HOSTILE_TEXT = [
    "<script>alert(1)</script>", '<img src=x onerror="alert(2)">',
    "[click me](javascript:alert(3))", "![tracker](https://evil.example/pixel.png)",
    "<!-- hidden instructions -->", '<a href="javascript:alert(4)">x</a>',
    "<javascript:alert(5)>", "`<b>bold</b>`", "[ref]: javascript:alert(6)",
    "&lt;script&gt;alert(7)&lt;/script&gt;", "<iframe src='https://evil.example'></iframe>",
]


def _hostile_documents(schema_valid: bool = False) -> dict[str, Any]:
    """The example documents with hostile text in every field the SOW shows (but the
    enumerated ones when ``schema_valid``)."""
    docs = {name: load_example("session", name) for name in (
        "conversation.json", "deployment_context.json", "session_metadata.json",
        "session_analytics.json")}
    h = iter(HOSTILE_TEXT * 4)
    summary = docs["conversation.json"]["conversation_summary"]
    summary["final_recommendation"] = next(h)
    summary["primary_cloud_provider"] = next(h)
    summary["services_discussed"] = [next(h), next(h)]
    ctx = docs["deployment_context.json"]
    for rec in ctx["deployment_recommendations"]:
        rec["collector_type"] = next(h)
        rec["prerequisites"] = [next(h), "cloudwatch_role"]
        rec["implementation_steps"] = [next(h), next(h)]
    assets = ctx["cloud_assets_snapshot"]["assets"]
    assets[0].update(id=next(h), type=next(h), provider=next(h),
                     configuration={next(h): next(h), "plain": {"k": next(h)}})
    ctx["validation_results"]["gaps_identified"] = [next(h)]
    if not schema_valid:
        ctx["validation_results"]["overall_status"] = next(h)
    ctx["error_resolutions"] = [{"error_description": next(h), "resolution_applied": next(h),
                                 "success": False, "resolution_time_minutes": 5}]
    ana = docs["session_analytics.json"]
    ana["learning_insights"]["challenge_areas"] = [next(h), next(h)]
    if not schema_valid:
        ana["complexity_analysis"]["user_expertise_inferred"] = next(h)
    return docs


RAW_MARKUP = re.compile(r"<(?!br>)[a-zA-Z!/?]|(?<!\\)\]\(\s*(?:javascript|https?):",
                        re.IGNORECASE)  # a tag, a comment, or an unescaped link/image
ALLOWED_TAGS = {"h1", "h2", "h3", "p", "ul", "ol", "li", "strong", "em", "code", "table",
                "thead", "tbody", "tr", "th", "td", "br", "hr"}


def _check_sow(text: str) -> None:
    assert not RAW_MARKUP.search(text), RAW_MARKUP.search(text)
    for hostile in HOSTILE_TEXT:
        assert hostile not in text
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    tags = {t.lower() for t in re.findall(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)", rendered)}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    tags_text = " ".join(re.findall(r"<[^>]*>", rendered))
    assert not re.search(r"href|src|on[a-z]+\s*=|javascript:", tags_text, re.IGNORECASE)
    assert "<!--" not in rendered
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    for word in ("alert(1)", "onerror", "javascript:alert(3)", "evil.example/pixel.png",
                 "hidden instructions"):
        assert word in shown, word  # shown as text, not dropped


def test_the_sow_escapes_hostile_document_text() -> None:
    text = render_sow(_hostile_documents(), customer=CUSTOMER, version="v1.0.0")
    _check_sow(text)


def test_a_finalized_sow_with_hostile_text_is_safe(store: Store) -> None:
    session = store.customer(CUSTOMER).new_session(session_id=SESSION_ID,
                                                   created="2025-01-15T10:30:00Z")
    docs = _hostile_documents(schema_valid=True)
    for path in sorted((EXAMPLES / "session" / "turns").glob("turn-*.json")):
        session.append_turn(path.read_bytes())
    session.set_summary(docs["conversation.json"]["conversation_summary"])
    meta = copy.deepcopy(docs["session_metadata.json"])
    meta["session_info"]["api_key"] = CUSTOMER
    session.put("session_metadata.json", meta)
    for name in ("deployment_context.json", "session_analytics.json"):
        session.put(name, docs[name])
    session.finalize()
    _check_sow(store.customer(CUSTOMER).read("v1.0.0").raw("sow_document.md").decode())


def test_plain_text_still_reads_naturally() -> None:
    docs = {name: load_example("session", name) for name in (
        "conversation.json", "deployment_context.json", "session_metadata.json",
        "session_analytics.json")}
    docs["conversation.json"]["conversation_summary"]["final_recommendation"] = \
        "Q&A bot_v2 (see *notes*)"
    text = render_sow(docs, customer=CUSTOMER, version="v1.0.0")
    assert "**Final recommendation**: Q&amp;A bot_v2 (see *notes*)\n" in text
    assert "`cloudwatch_role`" in text  # identifiers stay code spans
