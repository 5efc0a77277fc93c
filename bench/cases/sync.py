"""sync: what a configured hub costs a write, and what a sync costs.

Three stores, each with an open v1.0.0 of 10 turns (quick: the same): one with no
remote (local only), one whose remote is a hub served by ``git daemon`` on
127.0.0.1 (reachable), one whose remote is a port nobody listens on
(unreachable). Per run each appends one turn with ``Session.append_turn``; the
stores take turns going first. Writes never touch the network, so the two with a
remote should cost what the local-only one does (ratio ≈ 1). Then, in the same
run: ``gitstore sync`` of one new turn to the reachable hub, and a sync against
the unreachable one (it fails at once, with exit 11's error). Checked: the
reachable hub ends up with exactly the reachable store's refs, every turn once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from .. import common
from ..common import CaseResult, Context, Row, check

NAME = "sync"
TITLE = "write cost with a remote configured (reachable, unreachable) vs local only; sync"
CUSTOMER = "customer-sync"
MAX_RATIO = 1.25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _daemon(hub: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--listen=127.0.0.1",
                             f"--port={port}", f"--base-path={hub}", "--enable=receive-pack",
                             str(hub)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("git daemon did not start")


def _store(root: Path, remote: str | None, fsync: bool) -> Any:
    from gitstore.store import config as config_mod

    store = common.open_store(root, fsync=fsync)
    if remote is not None:
        store.config = store.config._replace(remote=remote, sync_timeout=10.0)
        config_mod.save(root, store.config)
    return store


def run(ctx: Context) -> CaseResult:
    from gitstore.ops import hub as hub_ops
    from gitstore.ops import syncing

    res = CaseResult(NAME)
    root = ctx.tmpdir("sync")
    hub = hub_ops.init(root / "hub")
    hub_ops.add(hub, CUSTOMER)
    port = _free_port()
    proc = _daemon(hub.path, port)
    try:
        reachable = f"git://127.0.0.1:{port}/{{customer}}"
        unreachable = f"git://127.0.0.1:{_free_port()}/{{customer}}"
        stores = {"local only": _store(root / "local", None, ctx.fsync),
                  "remote reachable": _store(root / "reachable", reachable, ctx.fsync),
                  "remote unreachable": _store(root / "unreachable", unreachable, ctx.fsync)}
        sessions = {name: common.seed_session(s, CUSTOMER, 10) for name, s in stores.items()}
        first = syncing.sync(stores["remote reachable"])
        check(first[0].error is None, f"first sync failed: {first[0].error}")
        counter = iter(range(10, 10_000))

        def appender(session: Any) -> Any:
            return lambda: session.append_turn(common.make_turn(next(counter)))

        samples, _ = common.interleaved(ctx.runs, {n: appender(s) for n, s in sessions.items()})
        local = common.median(samples["local only"])
        res.data["append"] = {n: common.summary(v) for n, v in samples.items()}
        for name in ("remote reachable", "remote unreachable"):
            res.rows.append(common.time_row(NAME, "10 turns", f"append, {name}",
                                            common.median(samples[name]), "local only",
                                            local, max_ratio=MAX_RATIO,
                                            target=f"≤ {MAX_RATIO} (writes never wait)"))
        store = stores["remote reachable"]
        caught_up = syncing.sync(store)  # the appends above, not timed
        check(caught_up[0].error is None, f"sync: {caught_up[0].line()}")
        sync_times = []
        for _ in range(ctx.runs):
            sessions["remote reachable"].append_turn(common.make_turn(next(counter)))
            seconds, out = common.timed(lambda: syncing.sync(store))
            check(out[0].error is None and out[0].pushed == 1, f"sync: {out[0].line()}")
            sync_times.append(seconds)
        res.rows.append(Row(NAME, "1 turn", "sync to a reachable hub (fetch, push)", "s",
                            common.median(sync_times)))
        seconds, out = common.timed(lambda: syncing.sync(stores["remote unreachable"]))
        check(out[0].error is not None and out[0].error.exit_code == 11,
              "an unreachable hub must fail the sync with exit 11")
        res.rows.append(Row(NAME, "-", "sync to an unreachable hub (fails, exit 11)", "s",
                            seconds))
        mine = common.git(store.root / CUSTOMER, "for-each-ref", "refs/heads", "refs/tags")
        theirs = common.git(hub.path / CUSTOMER, "for-each-ref", "refs/heads", "refs/tags")
        check(mine == theirs, "the hub does not hold the reachable store's refs")
        turns = store.customer(CUSTOMER).read("v1").document("conversation.json")
        queries = [t["user_input"]["query"] for t in turns["conversation_turns"]]
        check(len(queries) == len(set(queries)), "a turn is stored twice")
        res.verified("the reachable hub holds the store's refs; every turn once")
        res.verified("a sync to an unreachable hub fails with exit 11")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    res.note("writes never touch the network: a configured hub, reachable or not, costs a "
             "write nothing; `gitstore sync` carries the changes later")
    return res
