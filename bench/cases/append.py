"""append: one turn through the whole gitstore pipeline, at growing history.

For each history size n (10, 100, 1,000 turns) a customer is seeded with an
open v1.0.0 of n turns (two gitstore commits, not n appends), its conversation
stored whole (layout 1, the flat tree a baseline writes; the default layout, a
long conversation in parts, is measured against the peer stores by ``peers``). Then, per run,
one new turn is appended with ``Session.append_turn`` (lock, read tip, build,
pipeline, objects, compare-and-swap, audit record) and every baseline writes
the very same new tree: the bench computes the expected files itself
(canonical JSON + SHA256SUMS written independently of gitstore), checks that
gitstore produced exactly those bytes, and hands them to the baselines, whose
git trees must have the same tree id. The systems take turns going first.
"""

from __future__ import annotations

import cProfile
import itertools
import json
import math
import pstats
import re
from typing import Any

from .. import common
from ..common import CaseResult, Context, Row, check, timed

NAME = "append"
TITLE = "append one turn (Session.append_turn) at 10 / 100 / 1,000 turns of history"
CUSTOMER = "customer-append"

TARGETS = {  # baseline -> (max gitstore÷baseline time ratio, text)
    "raw pygit2": (1 / 0.7, "≤ 1.43 (≥ 0.7x raw throughput)"),
    "git CLI plumbing": (1 / 3, "≤ 0.33 (≥ 3x faster)"),
}


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    sizes = ctx.pick([10, 100, 1000], [10, 100])
    # Durable (fsync on, the default) with every baseline; then the CPU cost
    # alone (fsync off for everyone) against the two git baselines, where
    # disk-flush noise no longer hides gitstore's own work.
    series = [(True, None), (False, ("raw pygit2", "git CLI plumbing"))] if ctx.fsync \
        else [(False, None)]
    for durable, only in series:
        label = "fsync" if durable else "no fsync"
        medians: dict[int, dict[str, float]] = {}
        for n in sizes:
            if durable:
                medians[n] = _one_size(ctx, res, n, durable, only)
            else:
                with common.fsync_off():
                    medians[n] = _one_size(ctx, res, n, durable, only)
        for a, b in itertools.pairwise(sizes):
            k = {name: math.log(medians[b][name] / medians[a][name]) / math.log(b / a)
                 for name in medians[a]}
            res.rows.append(Row(
                NAME, f"{a}→{b}", f"growth exponent k, {label} (time ∝ history^k)", "x",
                k["gitstore"], "raw pygit2", k["raw pygit2"], None, "",
                "k≈0 flat, k≈1 linear", None))
        res.data[f"medians_{label.replace(' ', '_')}"] = {str(n): m for n, m in medians.items()}
    res.note("growth exponent k: per-append time ∝ history^k; 0 = independent of the "
             "history, 1 = linear in it (a whole session is then quadratic), >1 worse")
    if ctx.profile:
        res.data["profile"] = profile_append(ctx, max(sizes))
    return res


def _expected_after(files: dict[str, bytes], turn: dict[str, Any]) -> dict[str, bytes]:
    """The tree an append of ``turn`` must produce, computed without gitstore."""
    conv = json.loads(files["conversation.json"])
    turns = conv["conversation_turns"]
    turns.append({**turn, "turn_id": len(turns) + 1})
    conv["conversation_summary"]["total_turns"] = len(turns)
    return common.with_manifest({**files, "conversation.json": common.canonical_bytes(conv)})


def _one_size(ctx: Context, res: CaseResult, n: int, durable: bool,
              only: tuple[str, ...] | None) -> dict[str, float]:
    label = "fsync" if durable else "no fsync"
    root = ctx.tmpdir(f"append-{n}")
    common.log(f"append ({label}): seeding a {n}-turn session")
    store = common.open_store(root / "store", fsync=durable)  # fsync=True would switch it on
    session = common.seed_session(store, CUSTOMER, 0)
    repo = session.customer.repo
    # the conversation whole (layout 1): the flat tree every baseline writes too; the
    # default layout (a long conversation in parts) is measured by the peers case
    repo.set_layout(1)
    if n:
        session.put("conversation.json", common.conversation(n, session_id=common.SESSION_ID))
    files = repo.read_tree(repo.ref_target("refs/heads/v1"))
    base = [b for b in common.baselines(durable) if only is None or b.name in only]
    for i, b in enumerate(base):
        b.setup(root / f"baseline-{i}", files)
    names = ["gitstore", *(b.name for b in base)]
    samples: dict[str, list[float]] = {name: [] for name in names}
    runs = ctx.runs
    common.log(f"append ({label}): {n} turns of history, 1 warm-up + {runs} runs")
    for r in range(-1, runs):  # r == -1: warm-up, not recorded
        index = n + r + 1  # 0-based number of the new turn (the seed holds 0..n-1)
        turn = common.make_turn(index)
        expected = _expected_after(files, turn)
        changed = {k for k in expected if expected[k] != files.get(k)}
        message = common.trailer_message(f"v1.0.0: add turn {len(_turns(files)) + 1}",
                                         len(_turns(files)) + 1)
        tree_ids: dict[str, str | None] = {}
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if name == "gitstore":
                seconds, written = timed(lambda t=turn: session.append_turn(t))
                got = repo.read_tree(written.commit)
                check(got == expected, f"gitstore wrote a different tree at n={n}, run {r}: "
                      f"{sorted(k for k in expected if got.get(k) != expected[k])}")
                check(written.turn == len(_turns(expected)), "wrong turn number reported")
                tree_ids[name] = repo.commit(written.commit).tree_id
            else:
                b = base[names.index(name) - 1]
                seconds, tree = timed(lambda b=b, f=expected, c=changed, m=message:
                                      b.write(f, c, m))
                tree_ids[name] = tree
            if r >= 0:
                samples[name].append(seconds)
        for name, tree in tree_ids.items():
            if tree is not None:
                check(tree == tree_ids["gitstore"],
                      f"{name} wrote tree {tree}, gitstore {tree_ids['gitstore']}")
        files = expected
    for b in base:
        check(b.stored() == files, f"{b.name} does not hold the newest files")
        b.close()
    total = len(_turns(files))
    check(total == n + runs + 1, f"expected {n + runs + 1} turns, found {total}")
    res.verified(f"n={n}, {label}: every gitstore append produced exactly the expected bytes; raw "
                 f"pygit2 and git CLI trees have the same ids; every baseline holds the "
                 f"final {total}-turn files")
    med = {name: common.median(s) for name, s in samples.items()}
    size = f"{n} turns"
    for b in base:
        limit, text = TARGETS.get(b.name, (None, ""))
        res.rows.append(common.time_row(NAME, size, f"per append, {label}", med["gitstore"],
                                        b.name, med[b.name], max_ratio=limit, target=text))
    res.data[f"samples_{n}_{label.replace(' ', '_')}"] = {
        name: common.summary(s) for name, s in samples.items()}
    return med


def _turns(files: dict[str, bytes]) -> list[Any]:
    return list(json.loads(files["conversation.json"])["conversation_turns"])


def profile_append(ctx: Context, n: int, top: int = 10) -> dict[str, Any]:
    """cProfile one append at ``n`` turns of history; top functions by cumulative
    and by own time."""
    root = ctx.tmpdir(f"profile-{n}")
    store = common.open_store(root / "store", fsync=ctx.fsync)
    session = common.seed_session(store, CUSTOMER, n)
    session.append_turn(common.make_turn(n + 1))  # warm caches (schema validator, ...)
    profiler = cProfile.Profile()
    turn = common.make_turn(n + 2)
    profiler.enable()
    session.append_turn(turn)
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]  # (undocumented)
    total = max(ct for (_cc, _nc, _tt, ct, _callers) in raw.values())

    def table(key: int) -> list[dict[str, Any]]:
        ordered = sorted(raw.items(), key=lambda kv: kv[1][key], reverse=True)[:top]
        return [{"function": _label(func), "calls": nc, "own_s": round(tt, 4),
                 "cumulative_s": round(ct, 4), "cumulative_share": round(ct / total, 3)}
                for func, (_cc, nc, tt, ct, _callers) in ordered]

    areas: dict[str, float] = {}
    for func, (_cc, _nc, tt, _ct, _callers) in raw.items():
        area = _area(func)
        areas[area] = areas.get(area, 0.0) + tt
    out = {"history": n, "total_s": round(total, 4), "by_cumulative": table(3),
           "by_own_time": table(2),
           "by_area": {a: round(t, 4) for a, t in sorted(areas.items(), key=lambda kv: -kv[1])}}
    common.log(f"append: profile of one append at {n} turns ({total * 1e3:.0f} ms under "
               "cProfile), top by cumulative time:")
    for row in out["by_cumulative"]:
        common.log(f"  {row['cumulative_s'] * 1e3:8.1f} ms {row['cumulative_share']:6.1%}  "
                   f"{row['function']}")
    common.log("append: top by own time:")
    for row in out["by_own_time"]:
        common.log(f"  {row['own_s'] * 1e3:8.1f} ms  {row['calls']:>7} calls  {row['function']}")
    common.log("append: own time by area: " + ", ".join(
        f"{a} {t * 1e3:.0f} ms ({t / total:.0%})" for a, t in out["by_area"].items()))
    return out


AREAS = (  # (substring of the file name or function, area), first match wins
    ("jsonschema", "schema validation (jsonschema)"),
    ("referencing", "schema validation (jsonschema)"),
    ("json/", "JSON parse/serialise"),
    ("_json", "JSON parse/serialise"),
    ("gitstore/canonical.py", "JSON parse/serialise"),
    ("pygit2", "libgit2 (objects, refs)"),
    ("gitstore/", "gitstore Python code"),
)


def _area(func: tuple[str, int, str]) -> str:
    filename, _line, name = func
    text = f"{filename} {name}"
    for needle, area in AREAS:
        if needle in text:
            return area
    if "posix" in name or "io." in name or "open" in name or "fsync" in name:
        return "file I/O (audit log, locks)"
    return "other"


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if "/gitstore/" in filename:
        filename = "gitstore/" + filename.rsplit("/gitstore/", 1)[1]
    elif "/site-packages/" in filename:
        filename = filename.rsplit("/site-packages/", 1)[1]
    else:
        filename = re.sub(r".*/lib/python3\.\d+/", "", filename)
    return f"{filename}:{line}({name})" if line else name
