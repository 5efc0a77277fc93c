"""writers: concurrent writer processes, to one customer and to eight.

Four scenarios, each on a fresh store, each writing the same number of turns:

* 1 writer appending 8·k turns to one customer, vs 8 writer processes
  appending k turns each to that one customer (serialised by its lock);
* 1 writer appending k turns to each of 8 customers (round robin), vs 8
  writer processes appending k turns each, each to its own customer.

Workers are forked (``spawn`` where fork is unavailable) and wait on a
barrier after opening the store, so process start-up is not timed: wall time
is from the first worker's start to the last worker's end. Throughput is
appends per second; the ratio is the 8-writer throughput over the matching
one-writer throughput. Afterwards every customer must hold exactly the turns
written (count, ids 1..n, every writer's every query present).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from .. import common
from ..common import CaseResult, Context, Row, check

NAME = "writers"
TITLE = "8 writer processes: one customer vs 8 customers, against one writer"
WRITERS = 8


def _worker(root: str, customers: list[str], wid: int, k: int, barrier: Any, out: Any,
            fsync: bool) -> None:
    try:
        from gitstore import Store
        from gitstore.core import schema

        store = Store(root, fsync=fsync)
        sessions = [store.customer(c).session() for c in customers]
        schema.validate("conversation.json", {})  # compile the validator before the clock
        barrier.wait(timeout=120)
        start = time.monotonic()
        for i in range(k):
            for ci, session in enumerate(sessions):
                session.append_turn(common.make_turn(i, when=datetime.now(UTC),
                                                     tag=f"w{wid}c{ci}-"))
        out.put(("ok", wid, start, time.monotonic()))
    except BaseException:
        out.put(("error", wid, traceback.format_exc(), 0.0))


def _scenario(ctx: Context, label: str, plan: list[tuple[list[str], int]],
              all_customers: list[str]) -> tuple[float, int]:
    """Run one worker per plan entry (customers, k); return (wall seconds, appends)."""
    root = ctx.tmpdir(f"writers-{label.replace(' ', '')}")
    store = common.open_store(root, fsync=ctx.fsync)
    for name in all_customers:
        store.customer(name).new_session(session_id=common.session_id_for(name),
                                         created=common.stamp(common.BASE_TIME))
    mpc = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = mpc.Barrier(len(plan))
    out = mpc.Queue()
    procs = [mpc.Process(target=_worker, args=(str(root), customers, wid, k, barrier, out,
                                                  ctx.fsync))
             for wid, (customers, k) in enumerate(plan)]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in procs:
            results.append(out.get(timeout=900))
    except queue.Empty:
        raise common.VerificationError(f"{label}: a writer did not report back") from None
    finally:
        for p in procs:
            p.join(timeout=60)
    errors = [r for r in results if r[0] == "error"]
    check(not errors, f"{label}: writer failed:\n{errors[0][2] if errors else ''}")
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    appends = sum(len(customers) * k for customers, k in plan)
    _verify(store, label, plan)
    return wall, appends


def _verify(store: Any, label: str, plan: list[tuple[list[str], int]]) -> None:
    expected: dict[str, set[str]] = {}
    for wid, (customers, k) in enumerate(plan):
        for ci, name in enumerate(customers):
            tags = expected.setdefault(name, set())
            tags.update(f"[w{wid}c{ci}-{i}]" for i in range(k))
    for name, tags in expected.items():
        conv = store.customer(name).read("v1").document("conversation.json")
        turns = conv["conversation_turns"]
        check(len(turns) == len(tags), f"{label}: {name} has {len(turns)} turns, "
              f"expected {len(tags)}")
        check([t["turn_id"] for t in turns] == list(range(1, len(turns) + 1)),
              f"{label}: {name} turn ids are not 1..n")
        check(conv["conversation_summary"]["total_turns"] == len(turns),
              f"{label}: {name} total_turns is wrong")
        found = {t["user_input"]["query"].rsplit(" ", 1)[-1] for t in turns}
        check(found == tags, f"{label}: {name} lost or duplicated turns: "
              f"missing {sorted(tags - found)[:3]}, extra {sorted(found - tags)[:3]}")


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    k = ctx.pick(16, 3)
    runs = ctx.pick(ctx.runs, 1)
    one = ["customer-w0"]
    eight = [f"customer-w{i}" for i in range(WRITERS)]
    scenarios: dict[str, tuple[list[tuple[list[str], int]], list[str]]] = {
        "1 writer, 1 customer": ([(one, WRITERS * k)], one),
        "8 writers, 1 customer": ([(one, k)] * WRITERS, one),
        "1 writer, 8 customers": ([(eight, k)], eight),
        "8 writers, 8 customers": ([([c], k) for c in eight], eight),
    }
    throughput: dict[str, list[float]] = {label: [] for label in scenarios}
    names = list(scenarios)
    for r in range(runs):
        for label in names[r % len(names):] + names[:r % len(names)]:
            plan, customers = scenarios[label]
            common.log(f"writers: run {r + 1}/{runs}: {label} ({len(plan)} processes)")
            wall, appends = _scenario(ctx, label, plan, customers)
            throughput[label].append(appends / wall)
    res.verified(f"every scenario, every run: each customer holds exactly the turns written "
                 f"({WRITERS * k} per scenario), ids 1..n, no query lost or duplicated")
    med = {label: common.median(v) for label, v in throughput.items()}
    for multi, single, note in (
            ("8 writers, 1 customer", "1 writer, 1 customer",
             "one customer's writers are serialised by its lock: ≈1 expected"),
            ("8 writers, 8 customers", "1 writer, 8 customers",
             f"different customers never wait on each other; {os.cpu_count()} cores, and "
             "fsync waits overlap, so more than the core count is possible")):
        res.rows.append(Row(NAME, f"{WRITERS}x{k} appends", f"throughput, {multi}", "/s",
                            med[multi], single, med[single], med[multi] / med[single],
                            "8-writer ÷ 1-writer throughput", "", None, note))
    res.data["throughput"] = {label: common.summary(v) for label, v in throughput.items()}
    res.data["k"] = k
    return res
