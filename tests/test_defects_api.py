"""Issue 10, items 1, 3, 4, 5, 9 and 13: what an agent developer meets through the
Python API and the CLI.

1. every version ``versions`` lists (open ones included) can be named by every read;
3. session ids are unique per store, and ``resume`` never names a customer the
   caller did not ask about;
4. every public method takes the obvious string forms or raises a GitStoreError
   (Hypothesis feeds each one wrong types);
5. a ``str`` is JSON text, a file is an ``os.PathLike``; the error says so;
9. ``show --at`` travels by session time, ``show --as-of`` by commit time;
13. resume, last turns, list/search/stats on ``Store``; ``resume --turns N``.

Real repositories and the real CLI; no mocks of git.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    SESSION_2,
    SESSION_ID,
    Clock,
    build_history,
    example_turn,
    git,
    record_example_session,
    run_cli,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import (
    GitStoreError,
    InvalidDocumentError,
    NotFoundError,
    Session,
    Snapshot,
    Store,
    UsageError,
)
from gitstore.catalog.index import Index
from gitstore.store.facade import Customer
from gitstore.store.writer import Writer

ROOT = Path(__file__).resolve().parent.parent
OTHER = "customer-other01"


def audit_ops(store: Store, customer: str) -> list[str]:
    path = store.root / store.customer(customer).name / "gitstore-audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["op"] for line in path.read_text().splitlines() if line.strip()]


# =========================================================== 1. open versions are names

@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """build_history plus an open minor on each scenario (v1.2.0, v2.1.0) and an
    open major (v3.0.0)."""
    root = tmp_path_factory.mktemp("opened") / "sessions"
    build_history(root)
    store = Store(root, clock=Clock(datetime(2025, 1, 16, 9, 0, tzinfo=UTC)))
    cust = store.customer(CUSTOMER)
    cust.session("v1").follow_up()
    cust.session("v2").follow_up()
    cust.session("v2").append_turn({k: v for k, v in example_turn(6).items()
                                    if k != "turn_id"})
    cust.new_session(session_id="orchestrator-session-third", allow_open=True,
                     created="2025-01-16T10:00:00Z")
    return store


def test_every_listed_version_is_readable_through_the_api(opened: Store) -> None:
    cust = opened.customer(CUSTOMER)
    listed = {str(v.version): v for v in cust.versions()}
    assert {k for k, v in listed.items() if v.status == "open"} == {"v1.2.0", "v2.1.0",
                                                                    "v3.0.0"}
    for name, info in listed.items():
        snap = cust.read(name)
        assert snap.commit == info.commit == cust.resolve(name), name
        assert str(snap.version) == name
        assert cust.read(info.version).commit == info.commit  # a Version object too
    # an open version is its scenario's tip
    assert cust.read("v2.1.0").commit == git(cust.path, "rev-parse", "v2").strip()
    # diff and log from an open version
    result, _a, b = cust.diff("v2.0.0", "v2.1.0")
    assert not result.empty and str(b.version) == "v2.1.0"
    assert cust.log("v2.1.0", limit=1)[0].commit == listed["v2.1.0"].commit


@pytest.mark.parametrize("version", ["v1.2.0", "v2.1.0", "v3.0.0"])
def test_every_read_command_takes_an_open_version(opened: Store, version: str) -> None:
    root = opened.root
    commit = opened.customer(CUSTOMER).versions()
    expected = next(v.commit for v in commit if str(v.version) == version)
    shown = run_cli(root, "show", CUSTOMER, version, "-o", "json")
    assert shown.code == 0, shown.err
    assert shown.json()["commit"] == expected and shown.json()["version"] == version
    doc = run_cli(root, "show", CUSTOMER, version, "session_metadata.json")
    assert doc.code == 0, doc.err
    assert json.loads(doc.out)["session_info"]["session_version"] == version
    log = run_cli(root, "log", CUSTOMER, version, "-n", "1", "-o", "json")
    assert log.code == 0 and log.json()[0]["commit"] == expected, log.err
    base = {"v1.2.0": "v1.1.1", "v2.1.0": "v2.0.0", "v3.0.0": "v2.0.0"}[version]
    diff = run_cli(root, "diff", CUSTOMER, base, version, "-o", "json")
    assert diff.code == 0, diff.err
    assert diff.json()["b"]["commit"] == expected
    assert run_cli(root, "diff", CUSTOMER, version, "--stat").code == 0
    assert run_cli(root, "export", CUSTOMER, version, "-O", "-").code == 0


@pytest.mark.parametrize("version", ["v1.2.0", "v2.1.0"])
def test_render_previews_an_open_version(opened: Store, version: str) -> None:
    r = run_cli(opened.root, "render", CUSTOMER, version)
    assert r.code == 0, r.err
    assert r.text.strip()


def test_an_unknown_version_error_does_not_contradict_itself(opened: Store) -> None:
    with pytest.raises(NotFoundError) as caught:
        opened.customer(CUSTOMER).read("v2.2.0")
    listed = str(caught.value).split("versions:")[1]
    assert "v2.2.0" not in listed and "v2.1.0" in listed


# =========================================================== 3. unique session ids

def test_new_refuses_a_session_id_another_customer_uses(store: Store) -> None:
    record_example_session(store)
    other = store.customer(OTHER)
    with pytest.raises(UsageError, match="unique per store") as caught:
        other.new_session(session_id=SESSION_ID)
    assert CUSTOMER not in str(caught.value)  # isolation: the other customer is not named
    assert not other.exists  # nothing was created
    r = run_cli(store.root, "new", OTHER, "--session-id", SESSION_ID)
    assert r.code == 2 and CUSTOMER not in r.err and "unique per store" in r.err, r.err
    assert not other.exists
    assert other.new_session(session_id=SESSION_ID + "-b").session_id == SESSION_ID + "-b"


def test_new_refuses_a_session_id_the_same_customer_used(store: Store) -> None:
    record_example_session(store)  # v1 finalized: a new scenario is allowed
    cust = store.customer(CUSTOMER)
    with pytest.raises(UsageError, match="scenario v1 of customer-xyz789"):
        cust.new_session(session_id=SESSION_ID)
    assert [str(s) for s in cust.scenarios()] == ["v1"]
    assert cust.new_session().session_id != SESSION_ID  # a fresh one is always free


def test_a_plain_git_session_is_seen_by_the_check(store: Store) -> None:
    """The catalog is brought up to date with git before the check: a customer
    copied in behind the store's back (never indexed) still holds its id."""
    record_example_session(store)
    shutil.copytree(store.root / CUSTOMER, store.root / "customer-copied")
    fresh = Store(store.root, clock=Clock())  # no catalog state in memory
    with pytest.raises(UsageError, match="another customer"):
        fresh.customer(OTHER).new_session(session_id=SESSION_ID)


def test_two_customers_racing_for_one_session_id_get_one_session(store: Store) -> None:
    names = [f"customer-race{i}" for i in range(4)]
    barrier = threading.Barrier(len(names))
    outcome: dict[str, str] = {}

    def start(name: str) -> None:
        mine = Store(store.root, clock=Clock())
        barrier.wait()
        try:
            mine.customer(name).new_session(session_id="orchestrator-session-contested")
            outcome[name] = "ok"
        except UsageError:
            outcome[name] = "refused"

    threads = [threading.Thread(target=start, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcome.values()) == ["ok", "refused", "refused", "refused"]
    owners = Index(store).session_owners("orchestrator-session-contested")
    assert len(owners) == 1 and outcome[owners[0][0]] == "ok"


@pytest.fixture
def legacy(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A store written before ids were unique: SESSION_ID in CUSTOMER v1 and v2
    and in OTHER v1 (the uniqueness check is switched off to build it)."""
    monkeypatch.setattr(Writer, "require_unused", lambda self, session_id: None)
    record_example_session(store)
    store.customer(CUSTOMER).new_session(session_id=SESSION_ID)
    store.customer(OTHER).new_session(session_id=SESSION_ID)
    monkeypatch.undo()
    return store


def test_resume_never_names_a_customer_it_was_not_asked_about(legacy: Store) -> None:
    with pytest.raises(UsageError) as caught:
        legacy.resume(SESSION_ID)
    assert CUSTOMER not in str(caught.value) and OTHER not in str(caught.value)
    r = run_cli(legacy.root, "resume", SESSION_ID)
    assert r.code == 2 and CUSTOMER not in r.err and OTHER not in r.err, r.err
    assert "--customer" in r.err
    # naming one customer: its own scenarios may be named, never the other customer
    r = run_cli(legacy.root, "resume", SESSION_ID, "--customer", CUSTOMER)
    assert r.code == 2 and "v1, v2" in r.err and OTHER not in r.err, r.err
    assert "--scenario" in r.err
    r = run_cli(legacy.root, "resume", SESSION_ID, "--customer", OTHER, "-o", "json")
    assert r.code == 0, r.err
    assert (r.json()["customer"], r.json()["scenario"]) == (OTHER, "v1")


@pytest.mark.parametrize("scenario", ["v1", "v2"])
def test_resume_can_name_the_scenario(legacy: Store, scenario: str) -> None:
    r = run_cli(legacy.root, "resume", SESSION_ID, "--customer", CUSTOMER, "-s", scenario,
                "-o", "json")
    assert r.code == 0, r.err
    assert (r.json()["customer"], r.json()["scenario"]) == (CUSTOMER, scenario)
    found = legacy.resume(SESSION_ID, customer=CUSTOMER, scenario=scenario)
    assert str(found.scenario) == scenario
    r = run_cli(legacy.root, "resume", SESSION_ID, "--customer", CUSTOMER, "-s", "v7")
    assert r.code == 3 and OTHER not in r.err, r.err


# =========================================================== 4. wrong types never escape

class Targets:
    """One store with a finalized v1 and an open v2 (the calls' subjects)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store.init(root, clock=Clock())
        record_example_session(self.store)
        self.customer = self.store.customer(CUSTOMER)
        self.finalized = self.customer.session("v1")
        self.open = self.customer.new_session(session_id="orchestrator-session-open")
        self.snapshot = self.customer.read("v1.0.0")

    def turn(self) -> dict[str, Any]:
        return {"timestamp": "2030-01-01T00:00:00Z", "user_input": {"query": "q"},
                "agent_response": {"orchestrator_response": "r"}}


def targets(t: Targets) -> dict[str, Callable[[Any], Any]]:
    """Every public method that takes arguments, one entry per argument."""
    c, s, o, snap, st_ = t.customer, t.finalized, t.open, t.snapshot, t.store
    calls: dict[str, Callable[[Any], Any]] = {
        "Store(root)": lambda v: Store(v),
        "Store.init(root)": lambda v: Store.init(v),
        "Store(agent)": lambda v: Store(t.root, agent=v),
        "Store(templates)": lambda v: Store(t.root, templates=v),
        "Store(max_document_bytes)": lambda v: Store(t.root, max_document_bytes=v),
        "Store(lock_timeout)": lambda v: Store(t.root, lock_timeout=v),
        "Store(fsync)": lambda v: Store(t.root, fsync=v),
        "Store(signing_key)": lambda v: Store(t.root, signing_key=v),
        "Store(maintenance_bytes)": lambda v: Store(t.root, maintenance_bytes=v),
        "Store(hooks)": lambda v: Store(t.root, hooks=v),
        "Store(clock)": lambda v: Store(t.root, clock=v).now(),
        "Store(create)": lambda v: Store(t.root, create=v),
        "Store.customer": lambda v: st_.customer(v),
        "Store.customer_named": lambda v: st_.customer_named(v),
        "Store.hashed_name": lambda v: st_.hashed_name(v),
        "Store.configure_signing": lambda v: Store(t.root).configure_signing(v),
        "Store.list_sessions(customer)": lambda v: st_.list_sessions(customer=v),
        "Store.list_sessions(status)": lambda v: st_.list_sessions(status=v),
        "Store.list_sessions(provider)": lambda v: st_.list_sessions(provider=v),
        "Store.list_sessions(service)": lambda v: st_.list_sessions(service=v),
        "Store.list_sessions(since)": lambda v: st_.list_sessions(since=v),
        "Store.list_sessions(until)": lambda v: st_.list_sessions(until=v),
        "Store.list_sessions(sort)": lambda v: st_.list_sessions(sort=v),
        "Store.list_sessions(descending)": lambda v: st_.list_sessions(descending=v),
        "Store.list_sessions(limit)": lambda v: st_.list_sessions(limit=v),
        "Store.list_sessions(all_versions)": lambda v: st_.list_sessions(all_versions=v),
        "Store.search(text)": lambda v: st_.search(v),
        "Store.search(limit)": lambda v: st_.search("collector", limit=v),
        "Store.similar(customer)": lambda v: st_.similar(v, "v1.0.0"),
        "Store.similar(version)": lambda v: st_.similar(CUSTOMER, v),
        "Store.similar(limit)": lambda v: st_.similar(CUSTOMER, "v1.0.0", limit=v),
        "Store.active(timeout)": lambda v: st_.active(v),
        "Store.find_session(session_id)": lambda v: st_.find_session(v),
        "Store.find_session(customer)": lambda v: st_.find_session(SESSION_ID, customer=v),
        "Store.find_session(scenario)": lambda v: st_.find_session(SESSION_ID, scenario=v),
        "Store.resume(session_id)": lambda v: st_.resume(v),
        "Store.resume(customer)": lambda v: st_.resume(SESSION_ID, customer=v),
        "Store.resume(scenario)": lambda v: st_.resume(SESSION_ID, scenario=v),
        "Store.resume(turns)": lambda v: st_.resume(SESSION_ID, turns=v),
        "Customer.session": lambda v: c.session(v),
        "Customer.resolve": lambda v: c.resolve(v),
        "Customer.read": lambda v: c.read(v),
        "Customer.locked": lambda v: _held(c.locked(v)),
        "Customer.diff(a)": lambda v: c.diff(v),
        "Customer.diff(b)": lambda v: c.diff("v1.0.0", v),
        "Customer.diff(documents)": lambda v: c.diff("v1.0.0", documents=v),
        "Customer.versions": lambda v: c.versions(v),
        "Customer.log(rev)": lambda v: c.log(v),
        "Customer.log(limit)": lambda v: c.log(limit=v),
        "Customer.log(document)": lambda v: c.log(document=v),
        "Customer.log(since)": lambda v: c.log(since=v),
        "Customer.log(until)": lambda v: c.log(until=v),
        "Customer.log(change)": lambda v: c.log(change=v),
        "Customer.log(agent)": lambda v: c.log(agent=v),
        "Customer.read_at(scenario)": lambda v: c.read_at(v, "2030-01-01T00:00:00Z"),
        "Customer.read_at(when)": lambda v: c.read_at("v1", v),
        "Customer.read_at(by)": lambda v: c.read_at("v1", "2030-01-01T00:00:00Z", by=v),
        "Customer.merge(source)": lambda v: c.merge(v, into="v2", dry_run=True),
        "Customer.merge(into)": lambda v: c.merge("v1", into=v, dry_run=True),
        "Customer.merge(dry_run)": lambda v: c.merge(  # never a real merge
            "v1", into="v2", dry_run=True if isinstance(v, bool) else v),
        "Customer.merge(fail_on_conflict)": lambda v: c.merge(
            "v1", into="v2", dry_run=True, fail_on_conflict=v),
        "Customer.merge(reviewer)": lambda v: c.merge("v1", into="v2", dry_run=True,
                                                      reviewer=v),
        "Customer.merge(message)": lambda v: c.merge("v1", into="v2", dry_run=True,
                                                     message=v),
        "Customer.pending_merge": lambda v: c.pending_merge(v),
        "Session.read": lambda v: s.read(v),
        "Session.history": lambda v: s.history(v),
        "Session.after_turn": lambda v: s.after_turn(v),
        "Store.wait_for_maintenance": lambda v: st_.wait_for_maintenance(v),
        "Session.append_turn(turn)": lambda v: o.append_turn(v),
        "Session.put(document)": lambda v: o.put(v, {}),
        "Session.put(data)": lambda v: o.put("deployment_context.json", v),
        "Session.set_summary": lambda v: o.set_summary(v),
        "Session.correct(documents)": lambda v: s.correct(v, reason="r"),
        "Session.correct(reason)": lambda v: s.correct({"session_analytics.json": {}},
                                                       reason=v),
        "Session.correct(base)": lambda v: s.correct({"session_analytics.json": {}},
                                                     reason="r", base=v),
        "Session.correct(version)": lambda v: s.correct({"session_analytics.json": {}},
                                                        reason="r", version=v),
        "Session.finalize(version)": lambda v: o.finalize(version=v),
        "Session.follow_up(version)": lambda v: s.follow_up(version=v),
        "Snapshot.raw": lambda v: snap.raw(v),
        "Snapshot.document": lambda v: snap.document(v),
        "Snapshot.model": lambda v: snap.model(v),
    }
    for kw in ("session_id", "created", "metadata", "version", "message", "author", "at",
               "idempotency_key", "allow_open"):
        calls[f"Customer.new_session({kw})"] = \
            (lambda k: lambda v: st_.customer("customer-fuzz").new_session(**{k: v}))(kw)
    for kw in ("message", "author", "at", "idempotency_key"):
        calls[f"Session.append_turn({kw})"] = \
            (lambda k: lambda v: o.append_turn(t.turn(), **{k: v}))(kw)
        calls[f"Session.put({kw})"] = \
            (lambda k: lambda v: o.put("deployment_context.json", {}, **{k: v}))(kw)
        calls[f"Session.set_summary({kw})"] = \
            (lambda k: lambda v: o.set_summary({}, **{k: v}))(kw)
        calls[f"Session.finalize({kw})"] = (lambda k: lambda v: o.finalize(**{k: v}))(kw)
        calls[f"Session.follow_up({kw})"] = (lambda k: lambda v: s.follow_up(**{k: v}))(kw)
        if kw != "message":  # a correction has a reason instead
            calls[f"Session.correct({kw})"] = (lambda k: lambda v: s.correct(
                {"session_analytics.json": {}}, reason="r", **{k: v}))(kw)
    return calls


#: Public methods with arguments that the fuzz leaves out, and why.
EXEMPT = {
    "Customer.audit": "store-layer plumbing inherited from CustomerContext (writes an "
                      "access-log record); not part of the documented API",
    "Session.create": "the classmethod behind Customer.new_session, fuzzed through it",
    "Store.record_answer": "store-layer plumbing inherited from StoreContext (the catalog "
                           "records a query's answer through it); not part of the "
                           "documented API",
    "Store.say": "store-layer plumbing inherited from StoreContext (passes a warning to "
                 "the caller's warn hook); not part of the documented API",
}


def _held(lock: Any) -> None:
    """Take and release a lock context (its checks run when it is entered)."""
    with lock:
        pass


def _public_methods() -> set[str]:
    out = set()
    for cls in (Store, Customer, Session, Snapshot):
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or not callable(member) or inspect.isclass(member):
                continue
            if issubclass(cls, tuple) and name in vars(tuple):
                continue  # a named tuple's count and index are Python's, not the store's
            params = [p for p in inspect.signature(member).parameters.values()
                      if p.name not in ("self", "cls")]
            if params:
                out.add(f"{cls.__name__}.{name}")
    return out


def test_the_fuzz_covers_every_public_method_with_arguments() -> None:
    covered = {name.split("(")[0] for name in TARGET_NAMES}
    missing = _public_methods() - covered - set(EXEMPT)
    assert not missing, f"public methods not fuzzed (add them to targets()): {missing}"


HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=8),
    st.text(max_size=12), st.lists(st.integers(), max_size=3),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.builds(object), st.just(b"v1"), st.just("\x00"), st.just(["v1"]),
    st.just({"a": 1}), st.just(1.5), st.just(-1),
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Targets, dict[str, Any]]:
    t = Targets(tmp_path_factory.mktemp("fuzz") / "sessions")
    return t, targets(t)


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Targets:
    """The same store as the fuzz's, untouched by it."""
    return Targets(tmp_path_factory.mktemp("subject") / "sessions")


#: The target names, from targets() over a stand-in (its lambdas are not called).
TARGET_NAMES = sorted(targets(SimpleNamespace(  # type: ignore[arg-type]
    customer=None, finalized=None, open=None, snapshot=None, store=None, root=None)))


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_wrong_types_raise_only_gitstore_errors(fuzzed: tuple[Targets, dict[str, Any]],
                                                target: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, calls = fuzzed
    call = calls[target]
    monkeypatch.chdir(tmp_path)  # a hostile relative root (Store.init("x")) lands here

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(value=HOSTILE)
    def check(value: Any) -> None:
        with contextlib.suppress(GitStoreError):
            call(value)

    check()


@pytest.mark.parametrize(("call", "expected"), [
    (lambda t: t.finalized.history("3"), 3),
    (lambda t: t.finalized.history(" 2 "), 2),
    (lambda t: t.finalized.history(0), 0),
    (lambda t: t.customer.log(limit="2"), 2),
    (lambda t: t.store.list_sessions(limit="1"), 1),
    (lambda t: t.store.resume(SESSION_ID, turns="2").turns, 2),
])
def test_digit_strings_count(subject: Targets,
                             call: Callable[[Targets], Any], expected: int) -> None:
    assert len(call(subject)) == expected


@pytest.mark.parametrize("call", [
    lambda t: t.finalized.history("three"),
    lambda t: t.finalized.history(-1),
    lambda t: t.finalized.history(2.5),
    lambda t: t.finalized.history(True),
    lambda t: t.customer.log(limit="-1"),
    lambda t: t.customer.log(change="rebase"),
    lambda t: t.customer.read(3),
    lambda t: t.customer.diff("v1.0.0", documents=[3]),
    lambda t: t.customer.read_at("v1", 1735689600),
    lambda t: t.customer.read_at("v1", "2030-01-01T00:00:00Z", by="wall"),
    lambda t: t.open.append_turn(t.turn(), message=b"bytes"),
    lambda t: t.open.put(["deployment_context.json"], {}),
    lambda t: t.finalized.correct(["session_analytics.json"], reason="r"),
    lambda t: t.finalized.correct({"session_analytics.json": {}}, reason=7),
    lambda t: Store(None),
    lambda t: Store(t.root, hooks="not-a-hook"),
])
def test_wrong_forms_are_usage_errors(subject: Targets,
                                      call: Callable[[Targets], Any]) -> None:
    with pytest.raises(UsageError):
        call(subject)


def test_the_issue_s_calls(subject: Targets) -> None:
    t = subject
    assert t.customer.read_at("v1", "2030-01-01T00:00:00Z").commit == \
        t.customer.resolve("v1")
    assert t.customer.log(since="2025-01-01T00:00:00Z")
    assert [str(v.version) for v in t.customer.versions("v1")] == ["v1.0.0"]
    assert [str(v.version) for v in t.customer.versions("v2")] == ["v2.0.0"]
    with pytest.raises(NotFoundError):
        t.customer.versions("v9")
    assert len(t.finalized.history("3")) == 3


# =========================================================== 5. str is JSON, paths are paths

def test_a_str_path_is_refused_with_the_rule(store: Store, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    session = store.customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    turns = tmp_path / "turns"
    turns.mkdir()
    shutil.copy(EXAMPLES / "session" / "turns" / "turn-01.json", turns / "turn-1.json")
    monkeypatch.chdir(tmp_path)
    for text in ("turns/turn-1.json", "turn-1.json", str(turns / "turn-1.json")):
        with pytest.raises(InvalidDocumentError, match=r"pass a pathlib\.Path") as caught:
            session.append_turn(text)
        assert "a str is JSON text" in str(caught.value.violations[0])
    (tmp_path / "notes").write_text("x")
    with pytest.raises(InvalidDocumentError, match=r"pass a pathlib\.Path"):
        session.put("deployment_context.json", "notes")  # an existing file, no slash
    for text in ("{not json", "hello", "[1, 2"):  # plainly meant as JSON: no path hint
        with pytest.raises(InvalidDocumentError) as caught:
            session.append_turn(text)
        assert "pathlib" not in str(caught.value.violations[0])
    written = session.append_turn(Path("turns/turn-1.json"))  # os.PathLike: the file
    assert written.turn == 1
    assert session.append_turn(json.dumps(example_turn(2))).turn == 2  # str: JSON text


def test_the_readme_states_the_input_rule() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "a `str` is always JSON text, never a file name" in readme
    assert "a file as an `os.PathLike`" in readme
    assert "JSON bytes/str or paths" not in readme


# =========================================================== 9. session time vs commit time

@pytest.fixture
def written_later(tmp_path: Path) -> Store:
    """The example session (stamped 2025-01-15) recorded on 2026-03-01, with a
    follow-up whose turns are stamped 14:00 and 14:16:30."""
    store = Store.init(tmp_path / "sessions", clock=Clock(datetime(2026, 3, 1, tzinfo=UTC)))
    session = record_example_session(store)
    session.follow_up()
    for n in (6, 7):
        session.append_turn(example_turn(n))
    return store


def _turn_ids(snap: Snapshot) -> list[int]:
    return [t["turn_id"] for t in snap.document("conversation.json")["conversation_turns"]]


def test_show_at_uses_session_time(written_later: Store) -> None:
    root = written_later.root
    tip = git(root / CUSTOMER, "rev-parse", "v1").strip()
    r = run_cli(root, "show", CUSTOMER, "v1", "--at", "2026-01-01T00:00:00Z", "-o", "json")
    assert r.code == 0, r.err
    assert r.json()["commit"] == tip
    # by commit time the session did not exist yet on 2026-01-01
    r = run_cli(root, "show", CUSTOMER, "v1", "--as-of", "2026-01-01T00:00:00Z")
    assert r.code == 3 and "commit time" in r.err, r.err
    r = run_cli(root, "show", CUSTOMER, "v1", "--as-of", "2026-03-02", "-o", "json")
    assert r.code == 0 and r.json()["commit"] == tip, r.err
    both = run_cli(root, "show", CUSTOMER, "--at", "2026-01-01", "--as-of", "2026-01-01")
    assert both.code == 2


@pytest.mark.parametrize(("when", "version", "turns", "completed"), [
    ("2025-01-15T10:30:00Z", "v1.0.0", [1], None),                # created, turn 1
    ("2025-01-15T10:33:00Z", "v1.0.0", [1, 2], None),             # between turns 2 and 3
    ("2025-01-15T10:41:59Z", "v1.0.0", [1, 2, 3, 4, 5], None),    # before completed
    ("2025-01-15T10:42:00Z", "v1.0.0", [1, 2, 3, 4, 5], "2025-01-15T10:42:00Z"),
    ("2025-01-15T12:00:00Z", "v1.0.0", [1, 2, 3, 4, 5], "2025-01-15T10:42:00Z"),
    ("2025-01-15T14:00:00Z", "v1.1.0", [1, 2, 3, 4, 5, 6], None),  # follow-up's first turn
    ("2030-01-01T00:00:00Z", "v1.1.0", [1, 2, 3, 4, 5, 6, 7], None),
])
def test_read_at_by_session_time(written_later: Store, when: str, version: str,
                                 turns: list[int], completed: str | None) -> None:
    snap = written_later.customer(CUSTOMER).read_at("v1", when)
    assert str(snap.version) == version
    assert _turn_ids(snap) == turns
    meta = snap.document("session_metadata.json")["session_info"]
    assert meta.get("completed_timestamp") == completed
    if when == "2025-01-15T12:00:00Z":  # between the conversations: the finalized version
        assert snap.commit == git(written_later.root / CUSTOMER, "rev-parse",
                                  "v1.0.0^{commit}").strip()


def test_read_at_by_session_time_before_the_session(written_later: Store) -> None:
    with pytest.raises(NotFoundError, match="session time"):
        written_later.customer(CUSTOMER).read_at("v1", "2025-01-15T10:29:59Z")
    with pytest.raises(NotFoundError, match="commit time"):
        written_later.customer(CUSTOMER).read_at("v1", "2025-06-01T00:00:00Z", by="commit")


def test_an_unstamped_follow_up_counts_from_its_commit_time(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", clock=Clock(datetime(2026, 3, 1, tzinfo=UTC)))
    record_example_session(store).follow_up()
    cust = store.customer(CUSTOMER)
    tag = git(cust.path, "rev-parse", "v1.0.0^{commit}").strip()
    assert cust.read_at("v1", "2025-12-31T00:00:00Z").commit == tag
    assert str(cust.read_at("v1", "2026-03-02T00:00:00Z").version) == "v1.1.0"


def test_show_help_explains_both_clocks(tmp_path: Path) -> None:
    text = run_cli(tmp_path, "show", "--help").text
    flat = " ".join(text.split())
    assert "--at TIME" in text and "--as-of TIME" in text
    assert "session time" in flat and "commit time" in flat
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "--as-of TIME" in readme and "session time" in readme


# =========================================================== 13. the Python API for queries

@pytest.fixture(scope="module")
def queried(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("queried") / "sessions"
    store = build_history(root)
    record_example_session(store, OTHER)
    return Store(root, clock=Clock())


def test_resume_returns_metadata_and_the_last_turns(queried: Store) -> None:
    found = queried.resume(SESSION_ID, turns=2)
    snap = queried.customer(CUSTOMER).read("v1")
    every = snap.document("conversation.json")["conversation_turns"]
    assert (found.customer, str(found.scenario), str(found.version)) == \
        (CUSTOMER, "v1", "v1.1.1")
    assert found.turns == every[-2:] and found.total_turns == len(every) == 7
    assert found.turns_omitted == 5
    assert found.documents["session_metadata.json"] == snap.document("session_metadata.json")
    assert found.documents["sow_document.md"] == snap.raw("sow_document.md").decode()
    assert found.summary == snap.document("conversation.json")["conversation_summary"]
    assert found.commit == snap.commit and found.status == "finalized"
    whole = queried.resume(SESSION_ID)
    assert whole.turns == every and whole.turns_omitted == 0
    assert whole.documents["conversation.json"] == snap.document("conversation.json")
    assert queried.resume(SESSION_2).scenario.major == 2
    assert queried.resume(SESSION_ID, turns=0).turns == []


def test_resume_turns_on_the_cli(queried: Store) -> None:
    r = run_cli(queried.root, "resume", SESSION_ID, "--turns", "1", "-o", "json")
    assert r.code == 0, r.err
    data = r.json()
    assert data["turns_omitted"] == 6 and data["turns"] == 7
    conv = data["documents"]["conversation.json"]
    assert [t["turn_id"] for t in conv["conversation_turns"]] == [7]
    text = run_cli(queried.root, "resume", SESSION_ID, "--turns", "2")
    assert text.code == 0 and "(last 2 of 7 turns)" in text.text
    assert run_cli(queried.root, "resume", SESSION_ID, "--turns", "-1").code == 2
    full = run_cli(queried.root, "resume", SESSION_ID, "-o", "json").json()
    assert full["documents"] == {**queried.customer(CUSTOMER).read("v1").documents(),
                                 "sow_document.md": full["documents"]["sow_document.md"]}


def test_store_queries_match_the_catalog(queried: Store) -> None:
    index = Index(queried)
    assert queried.list_sessions() == index.list_sessions()
    assert queried.list_sessions(customer=OTHER) == index.list_sessions(customer=OTHER)
    assert queried.list_sessions(since="2025-01-01T00:00:00Z", sort="customer",
                                 descending=False) == \
        index.list_sessions(since=datetime(2025, 1, 1, tzinfo=UTC), sort="customer",
                            descending=False)
    assert queried.stats() == index.stats()
    assert queried.search("CloudWatch", limit=3) == index.search("CloudWatch", limit=3)
    assert queried.similar(CUSTOMER, "v1.1.1") == index.similar(CUSTOMER, "v1.1.1")
    assert queried.active(timedelta(days=99999)) == index.active(timedelta(days=99999))
    session = queried.find_session(SESSION_2)
    assert (session.customer.name, str(session.scenario)) == (CUSTOMER, "v2")


def test_resume_is_audited_for_its_customer_only(queried: Store) -> None:
    before = audit_ops(queried, OTHER)
    ops = audit_ops(queried, CUSTOMER)
    queried.resume(SESSION_ID, turns=1)
    added = audit_ops(queried, CUSTOMER)[len(ops):]
    assert added.count("read") == 1 and added.count("find-session") == 1, added
    assert audit_ops(queried, OTHER) == before


def test_session_history_takes_the_last_turns(queried: Store) -> None:
    session = queried.customer(CUSTOMER).session("v1")
    every = queried.customer(CUSTOMER).read("v1").document("conversation.json")[
        "conversation_turns"]
    assert session.history(3) == session.history("3") == every[-3:]
    assert session.history() == every
