"""Many machines, one truth: three store roots and one hub, the hub down for a while.

Three "machines" (store roots) share customers with overlaps: ``alpha`` on all
three, ``beta`` on the first two, ``gamma`` on the last two. They write while the
hub (``git daemon`` on 127.0.0.1, stopped by PID) is reachable, then while it is
down (every write still succeeds; sync fails with exit 11), appending turns,
finalizing the same version on two machines, following up and correcting, and
changing the same field of ``beta`` on two machines. Then the hub comes back and
every machine syncs; the one conflict is reviewed as a pending merge; all sync
twice more. Checked: every acknowledged turn is present exactly once on the hub
and on every root, every root has the hub's refs, no version tag ever moved or
named two contents, ``git fsck --strict`` and ``gitstore verify`` are clean
everywhere, and an auditor's clone of each customer verifies its access logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import EXAMPLES, Clock, load_example, run_cli
from servers import git_out, shared_refs, start_daemon, synced_store, turn

from gitstore import Store
from gitstore.core.names import CONV
from gitstore.ops import hub as hub_ops
from gitstore.ops.verify import check_customer

CUSTOMERS = {"alpha": (0, 1, 2), "beta": (0, 1), "gamma": (1, 2)}


class Machines:
    """Three roots syncing with one hub, and the ledger of acknowledged turns."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.hub = hub_ops.init(tmp / "hub")
        for name in CUSTOMERS:
            hub_ops.add(self.hub, name)
        self.server = start_daemon(self.hub.path, tmp / "daemon.log")
        self.port = self.server.port
        self.roots: list[Store] = [
            synced_store(tmp / f"machine{n}", self.server.template,
                         Clock(Clock().start.replace(hour=11 + 2 * n)), timeout=20)
            for n in range(3)]
        self.turns: dict[str, list[str]] = {name: [] for name in CUSTOMERS}
        self.tags: dict[tuple[str, str], str] = {}
        self.conflicts = 0

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        self.server = start_daemon(self.hub.path, self.tmp / "daemon.log", self.port)

    def session(self, n: int, customer: str) -> Any:
        return self.roots[n].customer(customer).session()

    def append(self, n: int, customer: str, when: str, text: str) -> None:
        written = self.session(n, customer).append_turn(turn(when, text))
        assert not written.replayed
        self.turns[customer].append(text)              # acknowledged: it must survive

    def open(self, n: int, customer: str) -> None:
        sid = f"session-{customer}"
        session = self.roots[n].customer(customer).new_session(
            session_id=sid, created="2025-01-15T10:30:00Z")
        for path in sorted((EXAMPLES / "session" / "turns").glob("turn-*.json"))[:2]:
            session.append_turn(path.read_bytes())
            self.turns[customer].append(json.loads(path.read_text())["user_input"]["query"])
        summary = load_example("session", "conversation.json")["conversation_summary"]
        session.set_summary({k: v for k, v in summary.items() if k != "total_turns"})
        for name in ("deployment_context.json", "session_metadata.json",
                     "session_analytics.json"):
            doc = load_example("session", name)
            if name == "session_metadata.json":
                doc["session_info"].update(api_key=customer, session_id=sid)
            session.put(name, doc)

    def sync(self, n: int, *, expect_down: bool = False) -> None:
        root = self.roots[n].root
        mine = [c for c, where in CUSTOMERS.items() if n in where]
        res = run_cli(root, "sync", *mine, "-o", "json")
        if expect_down:
            assert res.code == 11, res.err
            return
        assert res.code == 0, res.err
        for outcome in res.json()["customers"]:
            self.conflicts += outcome["conflicts"]
        self.check_tags()

    def sync_all(self) -> None:
        for n in range(3):
            self.sync(n)

    def check_tags(self) -> None:
        """A version tag, once on the hub, never moves."""
        for customer in CUSTOMERS:
            out = git_out(self.hub.path / customer, "for-each-ref",
                          "--format=%(refname:short) %(objectname)", "refs/tags")
            for line in out.splitlines():
                tag, oid = line.split()
                assert self.tags.setdefault((customer, tag), oid) == oid, (customer, tag)


def _queries(store_or_root: Store | Path, customer: str) -> list[str]:
    store = store_or_root if isinstance(store_or_root, Store) else Store(store_or_root)
    tip = store.customer(customer).read("v1").document(CONV)
    return [t["user_input"]["query"] for t in tip["conversation_turns"]]


def test_three_machines_one_hub(tmp_path: Path) -> None:
    m = Machines(tmp_path)
    try:
        # -- the hub is up: each customer starts on one machine; the others clone it
        m.open(0, "alpha")
        m.open(0, "beta")
        m.open(1, "gamma")
        m.session(1, "gamma").finalize(message="gamma agreed")
        m.sync(0)
        m.sync(1)
        m.sync(2)
        assert sorted(m.roots[2].customers()) == ["alpha", "gamma"]

        # -- the hub goes down: every write still succeeds here and now
        m.stop()
        m.append(0, "alpha", "2025-01-15T10:33:00Z", "alpha: machine 0, first")
        m.append(0, "alpha", "2025-01-15T10:34:00Z", "alpha: machine 0, second")
        m.session(0, "alpha").finalize(message="machine 0 concluded")
        m.append(1, "alpha", "2025-01-15T10:33:30Z", "alpha: machine 1")
        m.session(1, "alpha").finalize(message="machine 1 concluded")   # v1.0.0 twice
        m.append(2, "alpha", "2025-01-15T10:36:00Z", "alpha: machine 2")
        for n, owner in ((0, "machine 0"), (1, "machine 1")):
            session = m.session(n, "beta")
            ctx = session.read().document("deployment_context.json")
            session.put("deployment_context.json", {**ctx, "owner_note": owner})
        m.append(1, "beta", "2025-01-15T10:35:00Z", "beta: machine 1")
        m.session(1, "gamma").correct(
            {"session_analytics.json": EXAMPLES / "correction" / "session_analytics.json"},
            reason="actual outcome known")
        m.session(2, "gamma").follow_up(message="customer came back")
        m.append(2, "gamma", "2025-01-16T09:00:00Z", "gamma: machine 2, follow-up")
        m.sync(0, expect_down=True)
        status = run_cli(m.roots[0].root, "status", "-o", "json").json()
        assert {s["customer"]: s["state"] for s in status} == {"alpha": "ahead",
                                                               "beta": "ahead"}

        # -- the hub is back: everyone syncs; the one real conflict waits for a person
        m.restart()
        m.sync_all()
        assert m.conflicts == 1
        reviewer = m.roots[1].root
        listed = run_cli(reviewer, "conflicts", "beta", "-o", "json").json()
        assert [c["pointer"] for c in listed["conflicts"]] == ["/owner_note"]
        assert run_cli(reviewer, "--agent", "lead <lead@example.com>", "resolve", "beta",
                       listed["remaining"][0], "--with", "ours").code == 0
        assert run_cli(reviewer, "--agent", "lead <lead@example.com>", "merge", "beta",
                       "--continue").code == 0
        m.sync_all()
        m.sync_all()
    finally:
        m.stop()

    hub = m.hub.path
    for customer, where in CUSTOMERS.items():
        on_hub = _queries(hub, customer)
        assert sorted(on_hub) == sorted(m.turns[customer]), customer   # each once
        for n in where:
            root = m.roots[n].root
            assert _queries(m.roots[n], customer) == on_hub
            assert shared_refs(root / customer) == shared_refs(hub / customer), (n, customer)
            git_out(root / customer, "fsck", "--strict", "--no-dangling")
            assert check_customer(m.roots[n].customer(customer)).problems == []
        git_out(hub / customer, "fsck", "--strict", "--no-dangling")
    alpha = {str(v.version): v.status for v in m.roots[0].customer("alpha").versions()}
    assert alpha == {"v1.0.0": "finalized", "v1.1.0": "finalized", "v1.2.0": "open"}
    gamma = {str(v.version) for v in m.roots[2].customer("gamma").versions()}
    assert gamma == {"v1.0.0", "v1.0.1", "v1.1.0"}
    note = m.roots[0].customer("beta").read("v1").document("deployment_context.json")
    assert note["owner_note"] == "machine 1"                  # what the reviewer chose
    assert run_cli(hub, "verify").code == 0
    auditor = tmp_path / "auditor"
    m.restart()
    try:
        assert run_cli(auditor, "clone-from", m.server.template, *CUSTOMERS).code == 0
    finally:
        m.stop()
    for customer in CUSTOMERS:
        res = run_cli(auditor, "audit", customer, "--verify")
        assert res.code == 0, res.text
        logs = git_out(auditor / customer, "for-each-ref", "refs/remotes/hub/audit/")
        assert len(logs.splitlines()) == len(CUSTOMERS[customer])  # each machine's log
