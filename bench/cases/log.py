"""log: ``Customer.log()`` over a long history, against ``git log``.

The history (10,000 commits; quick: 500) is built fast with raw pygit2 on top
of a gitstore-created session, each commit carrying the trailers gitstore
writes (Session-Id, Session-Version, Change, Turn, Documents, Agent,
Completeness, Schema-Version, Manifest), without fsync. Then

* gitstore: ``store.customer(c).log()`` (every entry with its trailers);
* ``git log --branches --format=<id, author, time, subject, trailers>`` in a
  subprocess, its output split into records with their trailers;
* raw pygit2: a time-sorted walk reading the same fields.

Checked: every system returns every commit (same ids, same order), and
gitstore's entries carry the right turn numbers.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pygit2

from .. import common
from ..common import CaseResult, Context, check

NAME = "log"
TITLE = "Customer.log() over 10,000 commits vs git log"
CUSTOMER = "customer-log"
FORMAT = "%H%x1f%an%x1f%ct%x1f%s%x1f%(trailers:unfold,only)%x1e"


def build_history(repo_path: Any, n: int) -> list[str]:
    """Add ``n`` turn commits with gitstore's trailers to refs/heads/v1; return
    their ids, oldest first."""
    repo = pygit2.Repository(str(repo_path))
    ref = repo.references["refs/heads/v1"]
    parent = ref.target
    tree = repo[parent].peel(pygit2.Commit).tree_id
    start = repo[parent].peel(pygit2.Commit).commit_time + 1
    ids = []
    for i in range(n):
        turn = i + 1
        msg = (f"v1.0.0: add turn {turn}\n\n"
               f"Session-Id: {common.SESSION_ID}\nSession-Version: v1.0.0\nChange: turn\n"
               f"Turn: {turn}\nDocuments: conversation.json\nAgent: {common.AGENT[0]}\n"
               f"Completeness: 40\nSchema-Version: 1\n"
               f"Manifest: sha256:{hashlib.sha256(str(i).encode()).hexdigest()}\n")
        sig_a = pygit2.Signature(*common.AGENT, start + i, 0)
        sig_c = pygit2.Signature(*common.COMMITTER, start + i, 0)
        parent = repo.create_commit(None, sig_a, sig_c, msg, tree, [parent])
        ids.append(str(parent))
    ref.set_target(parent, "bench: build history")
    return ids


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    n = ctx.pick(10_000, 500)
    root = ctx.tmpdir("log")
    store = common.open_store(root, fsync=ctx.fsync)
    common.seed_session(store, CUSTOMER, 0)
    repo_path = root / CUSTOMER
    common.log(f"log: building {n} commits with raw pygit2")
    with common.fsync_off():
        built = build_history(repo_path, n)
    first = common.git(repo_path, "rev-list", "--max-parents=0", "v1").decode().strip()
    expected_ids = [*reversed(built), first]

    def gs() -> list[Any]:
        return store.customer(CUSTOMER).log()

    def git_log() -> list[dict[str, Any]]:
        out = common.git(repo_path, "log", "--branches", f"--format={FORMAT}")
        records = []
        for raw in out.decode("utf-8").split("\x1e"):
            raw = raw.strip("\n")
            if not raw:
                continue
            commit, author, ts, subject, trailers = raw.split("\x1f")
            pairs = [line.split(": ", 1) for line in trailers.splitlines() if ": " in line]
            records.append({"commit": commit, "author": author, "time": int(ts),
                            "summary": subject, "trailers": dict(pairs)})
        return records

    def raw() -> list[dict[str, Any]]:
        repo = pygit2.Repository(str(repo_path))
        tip = repo.references["refs/heads/v1"].target
        walker = repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
        return [{"commit": str(c.id), "author": c.author.name, "time": c.commit_time,
                 "message": c.message} for c in walker]

    systems = {"gitstore": gs, "git log --format (1 process)": git_log, "raw pygit2 walk": raw}
    runs = ctx.runs
    common.log(f"log: 1 warm-up + {runs} runs")
    samples, results = common.interleaved(runs, systems)
    entries = results["gitstore"]
    check([e.commit for e in entries] == expected_ids,
          f"gitstore log returned {len(entries)} entries, expected {len(expected_ids)} "
          "in order")
    check([e.turn for e in entries[:-1]] == list(range(n, 0, -1)), "wrong turn numbers")
    check(all(str(e.version) == "v1.0.0" for e in entries), "wrong versions")
    for name in list(systems)[1:]:
        check([x["commit"] for x in results[name]] == expected_ids,
              f"{name} returned a different history")
    res.verified(f"{n + 1} commits: gitstore, git log and pygit2 return the same ids in the "
                 "same order; gitstore's turn numbers and versions are right")
    med = {s: common.median(v) for s, v in samples.items()}
    for name in list(systems)[1:]:
        target = 3.0 if name.startswith("git log") else None
        res.rows.append(common.time_row(NAME, f"{n + 1} commits", "whole log", med["gitstore"],
                                        name, med[name], max_ratio=target))
    res.data["samples"] = {s: common.summary(v) for s, v in samples.items()}
    return res
