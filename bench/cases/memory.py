"""memory: resident memory over many appends in one process.

A fresh child process (``spawn``, so nothing the other cases allocated counts)
appends 10,000 turns (quick: 1,000) through ``Session.append_turn``, round
robin over 50 customers (quick: 20). To measure the process rather than
history growth, conversations stay short: after 20 turns (quick: 10) a
customer's next turn goes to a new scenario (``new_session``), so the working
set per append is bounded while the repositories stay open. Every 1,000
appends (quick: 100) it samples current RSS (``/proc/self/statm``), peak RSS
(``VmHWM``), the number of objects the garbage collector tracks and libgit2's
object cache (``pygit2.settings.cached_memory``, bounded by libgit2's cache
limit, 256 MiB by default). Caches that are bounded fill up during the first
part of the run; flat means the second half adds nothing, so the table
compares the last sample with the middle one (the growth per 1,000 appends of
both halves is in the note). fsync is off here (it costs time, not memory).

Checked: the customers' scenarios hold exactly the turns appended.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import time
import traceback
from typing import Any

from .. import common
from ..common import CaseResult, Context, Row, check

NAME = "memory"
TITLE = "peak RSS over 10,000 appends in one process"


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _peak_mib() -> float:
    """VmHWM: this process's peak RSS (getrusage's ru_maxrss would include the
    parent's peak, as Linux keeps it across exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return float("nan")


def _sample(done: int, start: float) -> dict[str, Any]:
    return {"appends": done, "seconds": round(time.monotonic() - start, 3),
            "peak_rss_mib": _peak_mib(),
            "rss_mib": _rss_mib(), "gc_objects": len(gc.get_objects()),
            "libgit2_cache_mib": _libgit2_cache_mib()}


def _libgit2_cache_mib() -> float:
    import pygit2

    try:
        current, _limit = pygit2.settings.cached_memory
        return float(current) / 2**20
    except (AttributeError, TypeError, ValueError):
        return float("nan")


def _child(root: str, n: int, every: int, customers: int, cap: int, out: Any) -> None:
    try:
        from pathlib import Path

        store = common.open_store(Path(root), fsync=False)
        names = [f"customer-m{i:03d}" for i in range(customers)]
        sessions = [common.seed_session(store, name, 0, session_id=common.session_id_for(name))
                    for name in names]
        start = time.monotonic()
        samples = [_sample(0, start)]
        for i in range(n):
            c, done = i % customers, i // customers  # turns customer c already has
            if done and done % cap == 0:  # this scenario is full: open the next one
                sessions[c] = store.customer(names[c]).new_session(
                    session_id=f"{common.session_id_for(names[c])}-{done // cap}",
                    created=common.stamp(common.BASE_TIME), allow_open=True)
            sessions[c].append_turn(common.make_turn(i))
            if (i + 1) % every == 0:
                samples.append(_sample(i + 1, start))
        counts = {}
        for name in names:
            customer = store.customer(name)
            counts[name] = [len(customer.read(str(s)).document("conversation.json")
                                ["conversation_turns"]) for s in customer.scenarios()]
        out.put(("ok", samples, counts))
    except BaseException:
        out.put(("error", traceback.format_exc(), None))


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    n, every, customers, cap = ctx.pick((10_000, 1_000, 50, 20), (1_000, 100, 20, 10))
    root = ctx.tmpdir("memory")
    common.log(f"memory: {n} appends over {customers} customers, {cap} turns per scenario, "
               "in a child process")
    spawn = mp.get_context("spawn")
    out = spawn.Queue()
    proc = spawn.Process(target=_child, args=(str(root), n, every, customers, cap, out))
    proc.start()
    status, samples, counts = out.get(timeout=3600)
    proc.join(timeout=60)
    check(status == "ok", f"memory child failed:\n{samples}")
    total = sum(sum(v) for v in counts.values())
    check(total == n, f"{total} turns stored, {n} appended")
    check(all(0 < t <= cap for v in counts.values() for t in v),
          f"a scenario holds more than {cap} turns or none")
    scenarios = sum(len(v) for v in counts.values())
    res.verified(f"the {customers} customers' {scenarios} scenarios hold exactly the {n} turns "
                 f"appended, at most {cap} each")
    for s in samples:
        common.log(f"memory: {s['appends']:>6} appends  rss {s['rss_mib']:.1f} MiB  peak "
                   f"{s['peak_rss_mib']:.1f} MiB  gc objects {s['gc_objects']}  libgit2 "
                   f"cache {s['libgit2_cache_mib']:.2f} MiB  "
                   f"{s['seconds']:.1f} s")
    first, mid, last = samples[1], samples[len(samples) // 2], samples[-1]

    def per_1000(a: dict[str, Any], b: dict[str, Any]) -> float:
        return (b["rss_mib"] - a["rss_mib"]) / max(1e-9, (b["appends"] - a["appends"]) / 1000)

    size = f"{n} appends"
    # Bounded caches (libgit2's object cache, gitstore's per-process caches)
    # fill during the first part of a run; flat means the second half adds
    # nothing, so the row compares the last sample with the middle one.
    res.rows.append(Row(NAME, size, "current RSS, last vs middle sample", "MiB",
                        last["rss_mib"], f"after {mid['appends']} appends", mid["rss_mib"],
                        last["rss_mib"] / mid["rss_mib"], "last ÷ middle", "≈ 1.0 (flat)",
                        None, f"{per_1000(first, mid):+.2f} MiB per 1,000 appends in the first "
                        f"half (from {first['rss_mib']:.1f} MiB after {first['appends']}), "
                        f"{per_1000(mid, last):+.2f} in the second"))
    res.rows.append(Row(NAME, size, "peak RSS (VmHWM)", "MiB", last["peak_rss_mib"],
                        f"after {mid['appends']} appends", mid["peak_rss_mib"],
                        last["peak_rss_mib"] / mid["peak_rss_mib"], "last ÷ middle",
                        "≈ 1.0 (flat)", None,
                        f"gc objects {first['gc_objects']} → {mid['gc_objects']} → "
                        f"{last['gc_objects']}; libgit2 cache {first['libgit2_cache_mib']:.1f}"
                        f" → {mid['libgit2_cache_mib']:.1f} → "
                        f"{last['libgit2_cache_mib']:.1f} MiB"))
    res.data["samples"] = samples
    res.data["seconds_per_append"] = (last["seconds"] - samples[0]["seconds"]) / n
    return res
