"""Sync through a real git server: push, pull, rebuild, review, offline, rejection.

Every test runs a hub behind ``git daemon --enable=receive-pack`` (or ``git
http-backend`` behind the CGI server of :mod:`servers`) on 127.0.0.1, stopped by
its PID; stores sync with it as separate "machines" (store roots), and the
results are checked with the real git binary (refs, ``fsck --strict``) and
``gitstore verify``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, EXAMPLES, Clock, example_session_id, load_example, run_cli
from servers import Server, git_out, shared_refs, start_daemon, start_http, synced_store, turn

from gitstore import Store, UsageError
from gitstore.core.names import CONV
from gitstore.git import remote
from gitstore.ops import hub as hub_ops
from gitstore.ops import syncing
from gitstore.ops.rebase import JOURNAL, REPLAYED_FROM
from gitstore.ops.sync import TRACKING
from gitstore.ops.verify import check_customer
from gitstore.store import config as config_mod
from gitstore.store.travel import record_hash

LATER = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[hub_ops.Hub, Server]]:
    made = hub_ops.init(tmp_path / "hub")
    hub_ops.add(made, CUSTOMER)  # git daemon cannot create repositories on a push
    server = start_daemon(made.path, tmp_path / "daemon.log")
    try:
        yield made, server
    finally:
        server.stop()


def open_session(store: Store, customer: str = CUSTOMER, turns: int = 5) -> Any:
    """The example session's first ``turns`` turns and documents, not finalized."""
    sid = example_session_id(customer)
    session = store.customer(customer).new_session(session_id=sid,
                                                   created="2025-01-15T10:30:00Z")
    for path in sorted((EXAMPLES / "session" / "turns").glob("turn-*.json"))[:turns]:
        session.append_turn(path.read_bytes())
    summary = load_example("session", "conversation.json")["conversation_summary"]
    session.set_summary({k: v for k, v in summary.items() if k != "total_turns"})
    for name in ("deployment_context.json", "session_metadata.json", "session_analytics.json"):
        doc = load_example("session", name)
        if name == "session_metadata.json":
            doc["session_info"].update(api_key=customer, session_id=sid)
        session.put(name, doc)
    return session


def sync_ok(store: Store, *names: str) -> list[syncing.Outcome]:
    chosen = [store.customer(n) for n in names] if names else None
    outcomes = syncing.sync(store, chosen)
    for o in outcomes:
        assert o.error is None, o.error
    return outcomes


def both_holding(server: Server, tmp_path: Path) -> tuple[Store, Store]:
    """Machines a and b, both holding the customer's open session from the hub (b's
    clock later than a's)."""
    a = synced_store(tmp_path / "a", server.template)
    open_session(a, turns=4)
    sync_ok(a)
    b = synced_store(tmp_path / "b", server.template, Clock(LATER))
    sync_ok(b, CUSTOMER)
    return a, b


def queries(store: Store, customer: str = CUSTOMER, rev: str = "v1") -> list[str]:
    turns = store.customer(customer).read(rev).document(CONV)["conversation_turns"]
    return [t["user_input"]["query"] for t in turns]


def clean(store: Store, *repos: Path) -> None:
    for name in store.customers():
        assert check_customer(store.customer(name)).problems == []
    for repo in repos:
        git_out(repo, "fsck", "--strict", "--no-dangling")


def test_push_clone_pull_and_the_index_follows(hub: Any, tmp_path: Path) -> None:
    made, server = hub
    a = synced_store(tmp_path / "a", server.template)
    open_session(a).finalize(message="plan agreed")
    [first] = sync_ok(a)
    assert first.pushed == 11 and first.tags_pushed == 1
    assert shared_refs(a.root / CUSTOMER) == shared_refs(made.path / CUSTOMER)

    b_root = tmp_path / "b"
    res = run_cli(b_root, "clone-from", server.template, CUSTOMER)
    assert res.code == 0, res.err
    assert res.text.strip() == f"{CUSTOMER}: pushed 0, pulled 11, merged 0, conflicts 0"
    b = Store(b_root, clock=Clock(LATER))
    assert b.config.remote == server.template          # the store took the remote
    assert shared_refs(b.root / CUSTOMER) == shared_refs(made.path / CUSTOMER)
    assert [r["customer"] for r in b.list_sessions()] == [CUSTOMER]

    session = b.customer(CUSTOMER).session()
    session.follow_up()
    session.append_turn(turn("2025-01-16T09:00:00Z", "zephyrquestion about tracing"))
    [outcome] = sync_ok(b)
    assert (outcome.pushed, outcome.pulled) == (2, 0)
    [outcome] = sync_ok(a)
    assert (outcome.pushed, outcome.pulled, outcome.merged) == (0, 2, 0)
    found = a.search("zephyrquestion")                  # a query sees what sync brought
    assert [(r["customer"], r["version"]) for r in found] == [(CUSTOMER, "v1.1.0")]
    assert shared_refs(a.root / CUSTOMER) == shared_refs(b.root / CUSTOMER) \
        == shared_refs(made.path / CUSTOMER)
    clean(a, a.root / CUSTOMER, made.path / CUSTOMER)
    clean(b, b.root / CUSTOMER)


def test_the_same_key_on_two_machines_for_two_turns_keeps_both(hub: Any, tmp_path: Path
                                                               ) -> None:
    """Two agents use one explicit key for two different turns, offline: the sync
    rebuilding the second on the hub's history finds the key on the first, which is
    another write, so both turns are kept (never the second taken for a replay of
    the first and dropped)."""
    _, server = hub
    a, b = both_holding(server, tmp_path)
    a.customer(CUSTOMER).session().append_turn(turn("2025-01-15T10:41:30Z", "from A"),
                                               idempotency_key="turn-5")
    b.customer(CUSTOMER).session().append_turn(turn("2025-01-15T10:41:40Z", "from B"),
                                               idempotency_key="turn-5")
    sync_ok(a)
    [outcome] = sync_ok(b)
    assert outcome.conflicts == 0 and outcome.merged == 1, outcome
    assert queries(b)[-2:] == ["from A", "from B"]
    sync_ok(a)
    assert queries(a) == queries(b)


def test_both_moved_local_changes_are_replayed_on_the_hub_tip(hub: Any, tmp_path: Path
                                                             ) -> None:
    made, server = hub
    a = synced_store(tmp_path / "a", server.template)
    open_session(a, turns=4)
    sync_ok(a)
    b = synced_store(tmp_path / "b", server.template, Clock(LATER))
    sync_ok(b, CUSTOMER)                                 # not here yet: cloned
    a.customer(CUSTOMER).session().append_turn(turn("2025-01-15T10:41:30Z", "from A"))
    local = b.customer(CUSTOMER).session().append_turn(turn("2025-01-15T10:41:40Z", "from B"))
    sync_ok(a)
    [outcome] = sync_ok(b)
    assert (outcome.pushed, outcome.pulled, outcome.merged, outcome.conflicts) == (1, 1, 1, 0)
    assert queries(b)[-2:] == ["from A", "from B"]
    tip = git_out(b.root / CUSTOMER, "log", "-1", "--format=%(trailers:key=Change,valueonly)"
                  f"%(trailers:key={REPLAYED_FROM},valueonly)%an", "v1").split()
    assert tip == ["turn", local.commit, "reporter"]     # what it was, and where from
    assert git_out(b.root / CUSTOMER, "cat-file", "-t", local.commit).strip() == "commit"
    kept = git_out(b.root / CUSTOMER, "for-each-ref", "--format=%(objectname)",
                   "refs/gitstore/sync/replaced/heads/v1").split()
    assert kept == [local.commit]                       # the local history stays reachable
    sync_ok(a)
    assert queries(a) == queries(b)
    assert shared_refs(a.root / CUSTOMER) == shared_refs(b.root / CUSTOMER) \
        == shared_refs(made.path / CUSTOMER)
    clean(a, a.root / CUSTOMER)
    clean(b, b.root / CUSTOMER)


def test_two_machines_finalized_the_same_version_offline(hub: Any, tmp_path: Path) -> None:
    """The first to reach the hub keeps v1.0.0; the other's conversation becomes the
    follow-up v1.1.0, finalized again; no version ever names two contents."""
    made, server = hub
    a, b = both_holding(server, tmp_path)
    sa, sb = a.customer(CUSTOMER).session(), b.customer(CUSTOMER).session()
    sa.append_turn(turn("2025-01-15T10:41:30Z", "A's last question"))
    a_final = sa.finalize(message="A concluded")
    sb.append_turn(turn("2025-01-15T10:41:40Z", "B's last question"))
    b_final = sb.finalize(message="B concluded")
    assert str(a_final.version) == str(b_final.version) == "v1.0.0"
    sync_ok(a)
    [outcome] = sync_ok(b)
    assert outcome.conflicts == 0 and outcome.merged >= 3
    hub_repo = made.path / CUSTOMER
    assert git_out(hub_repo, "rev-parse", "v1.0.0^{commit}").strip() == a_final.commit
    versions = {str(v.version): v.status for v in b.customer(CUSTOMER).versions()}
    assert versions == {"v1.0.0": "finalized", "v1.1.0": "finalized"}
    assert queries(b, rev="v1.0.0")[-1] == "A's last question"
    assert queries(b, rev="v1.1.0")[-2:] == ["A's last question", "B's last question"]
    kept = git_out(b.root / CUSTOMER, "for-each-ref", "--format=%(objectname)",
                   "refs/gitstore/sync/replaced/tags/").split()
    assert kept == [b_final.tag]                       # B's own v1.0.0, kept aside
    sync_ok(a)
    tags = {repo: git_out(repo, "for-each-ref", "--format=%(refname) %(objectname)",
                          "refs/tags") for repo in (a.root / CUSTOMER, b.root / CUSTOMER,
                                                    hub_repo)}
    assert len(set(tags.values())) == 1 and "v1.1.0" in tags[hub_repo]
    clean(a, a.root / CUSTOMER, hub_repo)
    clean(b, b.root / CUSTOMER)


def test_the_same_field_changed_on_both_sides_waits_for_review(hub: Any, tmp_path: Path
                                                              ) -> None:
    made, server = hub
    a = synced_store(tmp_path / "a", server.template)
    open_session(a)
    sync_ok(a)
    b = synced_store(tmp_path / "b", server.template, Clock(LATER))
    sync_ok(b, CUSTOMER)
    for store, region in ((a, "eu-west-1"), (b, "us-east-1")):
        session = store.customer(CUSTOMER).session()
        ctx = session.read().document("deployment_context.json")
        session.put("deployment_context.json", {**ctx, "preferred_region": region})
    b.customer(CUSTOMER).session().append_turn(turn("2025-01-15T10:41:40Z", "B asked"))
    before = shared_refs(b.root / CUSTOMER)
    sync_ok(a)
    res = run_cli(b.root, "sync", CUSTOMER)
    assert res.code == 0, res.err
    assert res.text.strip() == f"{CUSTOMER}: pushed 0, pulled 0, merged 0, conflicts 1"
    assert "review with `gitstore conflicts" in res.err
    assert shared_refs(b.root / CUSTOMER) == before       # nothing decided silently
    assert run_cli(b.root, "sync", "--fail-on-conflict", CUSTOMER).code == 6
    status = run_cli(b.root, "status", "-o", "json").json()
    assert status[0]["state"] == "diverged" and status[0]["pending_merges"] == ["v1"]
    listed = run_cli(b.root, "conflicts", CUSTOMER, "-o", "json").json()
    [conflict] = listed["conflicts"]
    assert (conflict["pointer"], conflict["ours"], conflict["theirs"]) == \
        ("/preferred_region", "us-east-1", "eu-west-1")
    assert run_cli(b.root, "--agent", "lead <lead@example.com>", "resolve", CUSTOMER,
                   listed["remaining"][0], "--with", "theirs").code == 0
    assert run_cli(b.root, "--agent", "lead <lead@example.com>", "merge", CUSTOMER,
                   "--continue").code == 0
    [outcome] = sync_ok(b)
    assert outcome.pushed == 1 and outcome.conflicts == 0
    trailers = git_out(b.root / CUSTOMER, "log", "-1", "--format=%(trailers)", "v1")
    assert "Reviewed-By: lead <lead@example.com>" in trailers and REPLAYED_FROM in trailers
    sync_ok(a)
    for store in (a, b):
        ctx = store.customer(CUSTOMER).read("v1").document("deployment_context.json")
        assert ctx["preferred_region"] == "eu-west-1" and queries(store)[-1] == "B asked"
    assert shared_refs(a.root / CUSTOMER) == shared_refs(b.root / CUSTOMER) \
        == shared_refs(made.path / CUSTOMER)
    clean(a, a.root / CUSTOMER)
    clean(b, b.root / CUSTOMER)


def test_scenarios_opened_offline_on_two_machines_get_their_own_numbers(
        hub: Any, tmp_path: Path) -> None:
    made, server = hub
    a = synced_store(tmp_path / "a", server.template)
    open_session(a).finalize(message="plan agreed")
    sync_ok(a)
    b = synced_store(tmp_path / "b", server.template, Clock(LATER))
    sync_ok(b, CUSTOMER)
    for store, sid, query in ((a, "session-from-a", "A's v2"), (b, "session-from-b", "B's v2"),
                              (b, "session-from-b-too", "B's v3")):
        new = store.customer(CUSTOMER).new_session(session_id=sid, allow_open=True,
                                                   created="2025-01-16T09:00:00Z")
        new.append_turn(turn("2025-01-16T09:01:00Z", query))
    assert b.customer(CUSTOMER).scenarios()[-1].major == 3
    sync_ok(a)
    [outcome] = sync_ok(b)
    assert outcome.merged == 4 and outcome.pulled == 2   # two rebuilt, A's v2 pulled
    sync_ok(a)
    owners = {r["scenario"]: r["session_id"] for r in a.list_sessions(customer=CUSTOMER)}
    assert owners == {"v1": example_session_id(), "v2": "session-from-a",
                      "v3": "session-from-b", "v4": "session-from-b-too"}
    assert queries(a, rev="v3") == ["B's v2"] and queries(a, rev="v4") == ["B's v3"]
    assert git_out(b.root / CUSTOMER, "symbolic-ref", "HEAD").strip() == "refs/heads/v4"
    assert shared_refs(a.root / CUSTOMER) == shared_refs(b.root / CUSTOMER) \
        == shared_refs(made.path / CUSTOMER)
    clean(a, a.root / CUSTOMER)
    clean(b, b.root / CUSTOMER, made.path / CUSTOMER)


def test_hub_down_writes_go_on_and_the_next_sync_catches_up(hub: Any, tmp_path: Path
                                                          ) -> None:
    made, server = hub
    root = tmp_path / "a"
    a = synced_store(root, server.template, timeout=5)
    open_session(a, turns=3)
    sync_ok(a)
    server.stop()
    written = a.customer(CUSTOMER).session().append_turn(
        turn("2025-01-15T10:41:30Z", "asked while the hub was down"))
    assert not written.warnings
    res = run_cli(root, "sync", "--all")
    assert res.code == 11, res.err
    assert "Connection refused" in res.err and res.text.startswith(f"{CUSTOMER}: pushed 0")
    status = run_cli(root, "status", "-o", "json").json()
    assert (status[0]["state"], status[0]["ahead"]) == ("ahead", 1)
    assert "Connection refused" in status[0]["last_error"]
    restarted = start_daemon(made.path, tmp_path / "daemon2.log", server.port)
    try:
        res = run_cli(root, "sync", "--all", "-o", "json")
        assert res.code == 0, res.err
        assert res.json()["customers"][0]["pushed"] == 1
    finally:
        restarted.stop()
    status = run_cli(root, "status").text
    assert status.strip() == f"{CUSTOMER}: in sync"
    assert shared_refs(root / CUSTOMER) == shared_refs(made.path / CUSTOMER)


def test_a_hub_that_never_answers_costs_the_sync_timeout_not_the_write(tmp_path: Path
                                                                      ) -> None:
    with socket.socket() as silent:  # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        template = f"git://127.0.0.1:{silent.getsockname()[1]}/{{customer}}"
        a = synced_store(tmp_path / "a", template, timeout=1)
        written = open_session(a, turns=2).append_turn(turn("2025-01-15T10:40:00Z", "q"))
        assert written.turn == 3                      # the write never asked the hub
        res = run_cli(a.root, "sync", CUSTOMER)
    assert res.code == 11
    assert "did not answer within 1s (sync_timeout)" in res.err


def test_the_hubs_refusal_is_an_error_with_its_message(tmp_path: Path) -> None:
    made = hub_ops.init(tmp_path / "hub")  # the hub's own policy: emails are refused
    (made.path / ".gitstore" / "config.json").write_text(
        json.dumps({"secrets": {"pii": {"email": "block"}}}), encoding="utf-8")
    server = start_http(made.path, tmp_path / "http.log")
    try:
        a = synced_store(tmp_path / "a", server.template)
        open_session(a, turns=3)
        sync_ok(a)                                   # created on the first push (CGI)
        hub_before = shared_refs(made.path / CUSTOMER)
        a.customer(CUSTOMER).session().append_turn(
            turn("2025-01-15T10:41:30Z", "write to ops-team@example.com please"))
        res = run_cli(a.root, "sync", CUSTOMER)
    finally:
        server.stop()
    assert res.code == 12, res.err
    assert "the hub refused the push" in res.err
    assert "contains personal data (email)" in res.err and "ops-team" not in res.err
    assert shared_refs(made.path / CUSTOMER) == hub_before


def test_the_access_log_travels_and_verifies_on_a_clone(hub: Any, tmp_path: Path) -> None:
    made, server = hub
    a = synced_store(tmp_path / "a", server.template)
    open_session(a, turns=2)
    a.customer(CUSTOMER).read("v1")
    sync_ok(a)
    own = a.customer(CUSTOMER).audit_log.log_id()
    assert own is not None
    travelled = git_out(made.path / CUSTOMER, "for-each-ref", "--format=%(refname)",
                        "refs/gitstore/audit/").split()
    assert travelled == [f"refs/gitstore/audit/{own}"]
    auditor = tmp_path / "auditor"
    assert run_cli(auditor, "clone-from", server.template, CUSTOMER).code == 0
    assert git_out(auditor / CUSTOMER, "rev-parse", f"{TRACKING}audit/{own}").strip() == \
        git_out(made.path / CUSTOMER, "rev-parse", f"refs/gitstore/audit/{own}").strip()
    res = run_cli(auditor, "audit", CUSTOMER, "--verify")
    assert res.code == 0, res.text + res.err
    # rewriting the local log, its chain recomputed end to end, is caught by the copy
    # that travelled (the local chain alone would look intact)
    log = a.root / CUSTOMER / "gitstore-audit.jsonl"
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    records[1]["actor"] = "someone else <x@example.invalid>"
    for n, rec in enumerate(records[1:], start=1):
        rec["prev"] = records[n - 1]["hash"]
        rec["hash"] = record_hash(rec)
    log.write_bytes(b"".join(json.dumps(r, sort_keys=True, separators=(",", ":")).encode()
                             + b"\n" for r in records))
    (a.root / CUSTOMER / "gitstore-audit.head").write_text(
        f"{records[-1]['seq']} {records[-1]['hash']}\n")
    res = run_cli(a.root, "audit", CUSTOMER, "--verify")
    assert res.code == 7
    assert "differs from the copy that travelled to the hub" in res.text
    assert "hash mismatch" not in res.text


def test_an_interrupted_swap_is_finished_by_the_next_sync(hub: Any, tmp_path: Path) -> None:
    _, server = hub
    a = synced_store(tmp_path / "a", server.template)
    open_session(a, turns=2)
    sync_ok(a)
    b = synced_store(tmp_path / "b", server.template, Clock(LATER))
    sync_ok(b, CUSTOMER)
    a.customer(CUSTOMER).session().append_turn(turn("2025-01-15T10:40:00Z", "later"))
    sync_ok(a)
    repo = b.root / CUSTOMER
    assert remote.fetch(repo, server.url(CUSTOMER), ["+refs/heads/*:refs/remotes/hub/heads/*"],
                        timeout=30)
    old = git_out(repo, "rev-parse", "v1").strip()
    new = git_out(repo, "rev-parse", "refs/remotes/hub/heads/v1").strip()
    # what a crash between the journal and the ref update leaves behind
    (repo / JOURNAL).write_text(json.dumps({"changes": [["refs/heads/v1", old, new]]}))
    b.customer(CUSTOMER).audit("sync:pull", rev="v1", commit=new)
    server.stop()
    res = run_cli(b.root, "sync", CUSTOMER)        # the hub is down: the journal still runs
    assert res.code == 11
    assert git_out(repo, "rev-parse", "v1").strip() == new and not (repo / JOURNAL).exists()


def test_remote_settings_are_checked_and_never_hold_credentials(tmp_path: Path) -> None:
    root = tmp_path / "s"
    assert run_cli(root, "init").code == 0
    assert run_cli(root, "remote").text.strip() == "(no remote)"
    for bad in ("https://user:secret@hub.example/{customer}", "git://hub.example/repo",
                "--upload-pack=evil/{customer}", "ext::sh -c x/{customer}",
                "git://hub.example/{customer}/{other}"):
        res = run_cli(root, "remote", bad)
        assert res.code == 2 and "secret" not in res.err, (bad, res.err)
    res = run_cli(root, "remote", "ssh://git@hub-{shard}.example/srv/{customer}", "--shards",
                  "4", "--timeout", "7.5", "-o", "json")
    assert res.code == 0
    assert res.json() == {"remote": "ssh://git@hub-{shard}.example/srv/{customer}",
                          "remote_shards": 4, "sync_timeout": 7.5}
    cfg = Store(root).config
    urls = {config_mod.remote_url(cfg, f"customer-{n}") for n in range(40)}
    assert {u.split(".")[0] for u in urls if u} == {f"ssh://git@hub-{n}" for n in range(4)}
    assert run_cli(root, "sync").code == 2               # CUSTOMER... or --all
    assert run_cli(root, "remote", "--unset").code == 0
    assert Store(root).config.remote is None
    with pytest.raises(UsageError):
        remote.push(root, "git://127.0.0.1:9/x", ["+refs/heads/v1:refs/heads/v1"], timeout=1)


def test_customers_shard_over_two_hubs(tmp_path: Path) -> None:
    base = tmp_path / "hubs"
    hubs = [hub_ops.init(base / f"hub{n}") for n in range(2)]
    server = start_daemon(base, tmp_path / "daemon.log")  # one server, two hub directories
    try:
        template = f"git://127.0.0.1:{server.port}/hub{{shard}}/{{customer}}"
        a = synced_store(tmp_path / "a", template)
        a.config = config_mod.load(a.root, remote_shards=2)
        config_mod.save(a.root, a.config)
        placed: dict[str, int] = {}
        for n in range(40):
            name = f"shard-customer-{n}"
            url = config_mod.remote_url(a.config, name)
            assert url is not None
            shard = int(url.split("/")[-2][len("hub"):])
            if list(placed.values()).count(shard) < 2:
                placed[name] = shard
        assert sorted(placed.values()) == [0, 0, 1, 1]
        for name, shard in placed.items():
            hub_ops.add(hubs[shard], name)
            open_session(a, name, turns=1)
        sync_ok(a)
    finally:
        server.stop()
    for name, shard in placed.items():
        assert shared_refs(hubs[shard].path / name) == shared_refs(a.root / name)
        assert hubs[shard].customers() == sorted(n for n, s in placed.items() if s == shard)


def test_a_daemon_hub_without_the_customer_says_how_to_add_it(tmp_path: Path) -> None:
    made = hub_ops.init(tmp_path / "hub")                 # nothing added: a daemon cannot
    server = start_daemon(made.path, tmp_path / "daemon.log")  # create repositories
    try:
        a = synced_store(tmp_path / "a", server.template)
        open_session(a, turns=1)
        status = run_cli(a.root, "status").text
        assert status.strip() == f"{CUSTOMER}: never synced, ahead 6 (v1 new)"
        res = run_cli(a.root, "sync", CUSTOMER)
        assert res.code == 3, res.err
        assert "gitstore hub add" in res.err
        assert run_cli(a.root, "status", "--fetch").code == 0
        hub_ops.add(made, CUSTOMER)
        assert run_cli(a.root, "sync", CUSTOMER).code == 0
        assert run_cli(a.root, "status", "--fetch").text.strip() == f"{CUSTOMER}: in sync"
    finally:
        server.stop()


def test_a_write_during_a_sync_makes_the_swap_start_again(store: Store) -> None:
    from gitstore.ops.rebase import Moved, swap

    customer = store.customer(CUSTOMER)
    open_session(store, turns=1)
    before = {**customer.repo.refs("refs/heads/"), **customer.repo.refs("refs/tags/")}
    customer.session().append_turn(turn("2025-01-15T10:33:00Z", "written meanwhile"))
    with pytest.raises(Moved):
        swap(customer, before, {}, None)
    assert queries(store)[-1] == "written meanwhile"      # nothing was swapped


def test_a_scenario_merged_offline_is_merged_again_on_the_hubs_history(
        hub: Any, tmp_path: Path) -> None:
    made, server = hub
    a = synced_store(tmp_path / "a", server.template)
    c = a.customer(CUSTOMER)
    first = c.new_session(session_id="scenario-a", created="2025-01-15T10:00:00Z")
    second = c.new_session(session_id="scenario-b", created="2025-01-15T10:00:00Z",
                           allow_open=True)
    first.append_turn(turn("2025-01-15T10:01:00Z", "a1"))
    second.append_turn(turn("2025-01-15T10:02:00Z", "b1"))
    sync_ok(a)
    b = synced_store(tmp_path / "b", server.template, Clock(LATER))
    sync_ok(b, CUSTOMER)
    c.session("v1").append_turn(turn("2025-01-15T10:05:00Z", "a2"))
    sync_ok(a)
    merged = b.customer(CUSTOMER).merge("v2", into="v1",
                                        reviewer="lead <lead@example.com>")
    assert merged.written is not None and not merged.conflicts
    [outcome] = sync_ok(b)
    assert outcome.merged == 1 and outcome.conflicts == 0
    repo = b.root / CUSTOMER
    marker = git_out(repo, "rev-parse", "refs/gitstore/merged/v2").strip()
    assert marker == git_out(repo, "rev-parse", "v1").strip()
    assert git_out(repo, "log", "-1", "--format=%P", "v1").split()[1] == \
        git_out(repo, "rev-parse", "v2").strip()              # a merge commit again
    sync_ok(a)
    assert sorted(queries(a)) == ["a1", "a2", "b1"]
    assert shared_refs(a.root / CUSTOMER) == shared_refs(b.root / CUSTOMER) \
        == shared_refs(made.path / CUSTOMER)
    clean(a, a.root / CUSTOMER)
    clean(b, b.root / CUSTOMER)


def test_status_reports_every_customer_and_exits_with_the_error(tmp_path: Path) -> None:
    """An unknown customer is reported with the others, and the exit status is
    its error's (3), not success."""
    root = tmp_path / "s"
    Store.init(root, clock=Clock()).customer(CUSTOMER).new_session(
        created="2025-01-15T10:30:00Z")
    res = run_cli(root, "status", CUSTOMER, "nosuch", "-o", "json")
    assert res.code == 3, res.err
    rows = {r["customer"]: r for r in res.json()}
    assert rows["nosuch"]["state"] == "error" and rows["nosuch"]["code"] == 3
    assert rows[CUSTOMER]["state"] != "error"
    assert res.err.startswith("gitstore: error: nosuch: unknown customer")
