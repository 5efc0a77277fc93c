"""An export replayed by import reproduces every customer's history.

``gitstore export --all`` then ``gitstore import`` into an empty store gives the
same commits (count, messages, trailers, authors, author times: and so, with
the same committer, the same ids), the same tags with the same messages, on the
example history and on Hypothesis-made histories, checked with the real git.
Also the law of the deltas that carry the history: ``apply(a, encode(a, b)) == b``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, build_history, git, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import IntegrityError, Store
from gitstore.core import deltas
from gitstore.ops import exporting, importing

LOG_FORMAT = "%H%n%T%n%P%n%an <%ae>%n%at %ad%n%cn <%ce>%n%B%n--end--"


def history_of(repo: Path) -> tuple[str, str, str]:
    """Every commit of every ref (ids, trees, parents, authors, times, messages),
    every tag object and every ref, as plain git prints them."""
    log = git(repo, "log", "--all", "--date=raw", "--topo-order", f"--format={LOG_FORMAT}")
    tags = "".join(git(repo, "cat-file", "tag", t) for t in git(repo, "tag", "-l").split())
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return log, tags, refs


def export_all(root: Path, out: Path) -> None:
    result = run_cli(root, "export", "--all", "-O", str(out))
    assert result.code == 0, result.err


def test_export_all_then_import_reproduces_the_example_history(tmp_path: Path) -> None:
    build_history(tmp_path / "source")
    out = tmp_path / "all.json"
    export_all(tmp_path / "source", out)
    Store.init(tmp_path / "target")
    result = run_cli(tmp_path / "target", "import", str(out))
    assert result.code == 0, result.err
    a, b = tmp_path / "source" / CUSTOMER, tmp_path / "target" / CUSTOMER
    assert history_of(a) == history_of(b)
    count = git(a, "rev-list", "--all", "--count")
    assert int(count) > 10 and git(b, "rev-list", "--all", "--count") == count
    git(b, "fsck", "--strict")
    assert run_cli(tmp_path / "target", "verify").code == 0


def test_import_refuses_a_history_that_disagrees_with_its_versions(tmp_path: Path) -> None:
    build_history(tmp_path / "source")
    out = tmp_path / "all.json"
    export_all(tmp_path / "source", out)
    data = json.loads(out.read_text())
    v1 = data["customers"][0]["scenarios"][0]
    v1["versions"][0]["documents"]["deployment_context.json"]["tampered"] = True
    out.write_text(json.dumps(data))
    target = Store.init(tmp_path / "target")
    with pytest.raises(IntegrityError, match="would not come back identical"):
        importing.import_file(target, out)
    assert target.customers() == []
    assert list((target.root / ".gitstore" / "staging").iterdir()) == []


def test_import_refuses_a_commit_whose_content_differs_from_its_manifest(
        tmp_path: Path) -> None:
    build_history(tmp_path / "source")
    out = tmp_path / "all.json"
    export_all(tmp_path / "source", out)
    data = json.loads(out.read_text())
    commits = data["customers"][0]["scenarios"][0]["commits"]
    commits[1]["message"] = commits[1]["message"].replace("Manifest: sha256:",
                                                          "Manifest: sha256:00")
    out.write_text(json.dumps(data))
    target = Store.init(tmp_path / "target")
    with pytest.raises(Exception, match="does not reproduce its content"):
        importing.import_file(target, out)
    assert target.customers() == []


# -- Hypothesis-made histories -------------------------------------------------------

WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=1, max_size=12)
OPS = st.lists(st.one_of(
    st.tuples(st.just("turn"), WORDS),
    st.tuples(st.just("context"), WORDS),
    st.tuples(st.just("follow-up"), st.just("")),
    st.tuples(st.just("new"), st.just("")),
), min_size=1, max_size=12)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _turn(n: int, text: str, when: datetime) -> dict[str, Any]:
    return {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "user_input": {"query": text}, "agent_response": {"orchestrator_response": text}}


def make_history(root: Path, ops: list[tuple[str, str]]) -> Store:
    store = Store.init(root)
    customer = store.customer("hypo-customer")
    when = T0
    session = customer.new_session(created="2025-03-01T09:00:00Z",
                                   author="opener <opener@example.invalid>", at=when)
    for n, (op, text) in enumerate(ops):
        when += timedelta(minutes=7, seconds=n)
        who = f"agent{n % 3} <agent{n % 3}@example.invalid>"
        if op == "turn" and session.is_open:
            session.append_turn(_turn(n, text, when), author=who, at=when)
        elif op == "context" and session.is_open:
            session.put("deployment_context.json", {"notes": text}, author=who, at=when)
        elif op == "follow-up" and not session.is_open:
            session.follow_up(author=who, at=when)
        elif op == "new":
            session = customer.new_session(created=when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                           author=who, at=when, allow_open=True)
    return store


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=OPS)
def test_import_reproduces_made_up_histories(tmp_path_factory: pytest.TempPathFactory,
                                             ops: list[tuple[str, str]]) -> None:
    base = tmp_path_factory.mktemp("made")
    source = make_history(base / "source", ops)
    out = base / "all.json"
    with out.open("w", encoding="utf-8") as f:
        exporting.write_json_export(source, f, source.customers())
    target = Store.init(base / "target")
    assert importing.import_file(target, out) == ["hypo-customer"]
    a, b = source.root / "hypo-customer", target.root / "hypo-customer"
    assert history_of(a) == history_of(b)


# -- the deltas' law -------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | WORDS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(WORDS, kids, max_size=3),
    max_leaves=8)
CONVERSATIONS = st.fixed_dictionaries(
    {"conversation_turns": st.lists(st.dictionaries(WORDS, JSON_VALUES, max_size=3),
                                    max_size=5)},
    optional={"session_id": WORDS, "conversation_summary": JSON_VALUES})


def _tree(conv: Any, ctx: Any, text: str | None) -> dict[str, bytes]:
    from gitstore.core import canonical

    files = {"conversation.json": canonical.dumps(conv),
             "deployment_context.json": canonical.dumps(ctx)}
    if text is not None:
        files["sow_document.md"] = text.encode("utf-8")
    return files


@given(CONVERSATIONS, CONVERSATIONS, JSON_VALUES, JSON_VALUES,
       st.none() | WORDS, st.none() | WORDS)
def test_deltas_apply_what_they_encode(conv_a: Any, conv_b: Any, ctx_a: Any, ctx_b: Any,
                                       sow_a: str | None, sow_b: str | None) -> None:
    a, b = _tree(conv_a, ctx_a, sow_a), _tree(conv_b, ctx_b, sow_b)
    assert deltas.apply(a, deltas.encode(a, b)) == b
    assert deltas.encode(a, a) == {}


def test_appending_a_turn_costs_the_turn_not_the_conversation() -> None:
    from gitstore.core import canonical

    turns = [{"turn_id": i, "text": "x" * 100} for i in range(1, 200)]
    a = {"conversation.json": canonical.dumps({"conversation_turns": turns})}
    b = {"conversation.json": canonical.dumps(
        {"conversation_turns": [*turns, {"turn_id": 200, "text": "new"}]})}
    delta = deltas.encode(a, b)
    assert delta["conversation.json"]["turns_kept"] == 199
    assert len(json.dumps(delta)) < 200
