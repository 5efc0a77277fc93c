"""diff: ``Customer.diff`` of two versions of a 1,000-turn conversation.

v1.0.0 is finalized with n turns (quick: 100); a follow-up v1.1.0 adds five
turns and new metadata and is finalized too. gitstore's semantic diff (turns
matched by ``turn_id``, every changed JSON path, the SOW line diff) is timed
against the textual diffs of the same two versions: ``git diff`` in a
subprocess and pygit2's tree-to-tree patch. Those do less work (no parsing,
no record matching), so the ratio shows what the semantics cost. Target (issue
18): at most 3x ``git diff`` of the same two versions (at 1,000 turns; the quick
size has none). The whole ``gitstore diff`` process is measured by the ``cli``
case.

Checked: gitstore reports exactly the five added turns (by id) and the same
changed files as git.

With ``GITSTORE_BENCH_BEFORE=DIR`` (another version of the package, see the ``cli``
case), this version and that one are also timed alike, interleaved with the rest:
each round a process importing one of them diffs once to warm up, then times one
diff in process (the ``(worker)`` and ``(before)`` rows, informational; their turns
are checked). Compare those two with each other, not with the first row: a warm
worker repeats a diff with its data still in the CPU's caches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2

from .. import common
from ..common import CaseResult, Context, check
from .cli import BEFORE_ENV, documents

NAME = "diff"
TITLE = "Customer.diff of two versions of a 1,000-turn conversation"
CUSTOMER = "customer-diff"
ADDED = 5
TARGET = 3.0  # x git diff, at 1,000 turns
WORKER = """\
import json, sys, time
from gitstore import Store
store = Store(sys.argv[1], fsync=sys.argv[3] == "1")
def diff():
    return store.customer(sys.argv[2]).diff("v1.0.0", "v1.1.0")[0]
diff()
start = time.perf_counter()
conv = diff().document("conversation.json")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "turns": [[t.op, t.turn_id] for t in conv.turns]}))
"""


def _worker(package: Path, root: Path, fsync: bool, cwd: Path, measured: list[float]
            ) -> Callable[[], Any]:
    """A process importing gitstore from ``package`` diffs once to warm up, then times
    one diff in process; its time goes to ``measured``, its turns are returned. It runs
    in ``cwd``, a directory without a package in it (``python -c`` imports from its
    working directory before ``PYTHONPATH``)."""
    env = {**common.GIT_ENV, "PYTHONPATH": str(package)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    where = subprocess.run([sys.executable, "-c", "import gitstore; print(gitstore.__file__)"],
                           env=env, cwd=cwd, capture_output=True, check=True).stdout
    check(Path(where.decode().strip()).resolve().is_relative_to(package),
          f"with PYTHONPATH={package}, gitstore is imported from {where.decode().strip()}")

    def run() -> Any:
        out = subprocess.run([sys.executable, "-c", WORKER, str(root), CUSTOMER,
                              "1" if fsync else "0"], env=env, cwd=cwd, capture_output=True,
                             check=True).stdout
        found = json.loads(out)
        measured.append(found["seconds"])
        return found["turns"]
    return run


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    n = ctx.pick(1000, 100)
    root = ctx.tmpdir("diff")
    common.log(f"diff: building v1.0.0 ({n} turns) and v1.1.0 ({n + ADDED} turns)")
    store = common.open_store(root, fsync=ctx.fsync)
    session = common.finalized_customer(store, CUSTOMER, n)
    session.follow_up()
    session.put("conversation.json", common.conversation(n + ADDED, summary=True))
    session.put("session_metadata.json", common.complete_metadata(CUSTOMER, "v1.1.0", n + ADDED))
    session.finalize(message="benchmark follow-up")
    repo_path = root / CUSTOMER

    def gs() -> Any:
        return store.customer(CUSTOMER).diff("v1.0.0", "v1.1.0")[0]

    def git_diff() -> bytes:
        return common.git(repo_path, "diff", "v1.0.0", "v1.1.0")

    def raw() -> str:
        repo = pygit2.Repository(str(repo_path))
        a = repo.revparse_single("v1.0.0").peel(pygit2.Commit).tree
        b = repo.revparse_single("v1.1.0").peel(pygit2.Commit).tree
        return a.diff_to_tree(b).patch or ""  # what repo.diff(a, b) does for two trees

    systems = {"gitstore": gs, "git diff (1 process)": git_diff, "raw pygit2 patch": raw}
    before = os.environ.get(BEFORE_ENV)
    measured: dict[str, list[float]] = {}
    if before:  # both versions timed alike, each in a process of its own
        import gitstore

        here = Path(gitstore.__file__).resolve().parent.parent
        cwd = ctx.tmpdir("diff-cwd")
        for label, path in (("gitstore (worker)", here), ("gitstore (before)",
                                                          Path(before).resolve())):
            systems[label] = _worker(path, root, ctx.fsync, cwd,
                                     measured.setdefault(label, []))
    samples, results = common.interleaved(ctx.runs, systems)
    for label, seconds in measured.items():  # the time measured in process, not the run
        samples[label] = seconds[1:]  # as interleaved(): no warm-up round
        check(results[label] == [["added", i] for i in range(n + 1, n + ADDED + 1)],
              f"{label}: the diff reports turns {results[label][:8]}")
    diff = results["gitstore"]
    conv = diff.document("conversation.json")
    check(conv is not None, "gitstore's diff misses conversation.json")
    added = [t.turn_id for t in conv.turns if t.op == "added"]
    check(added == list(range(n + 1, n + ADDED + 1)) and len(conv.turns) == ADDED,
          f"gitstore's diff reports turns {[(t.op, t.turn_id) for t in conv.turns][:8]}")
    git_names = documents(common.git(repo_path, "diff", "--name-only", "v1.0.0", "v1.1.0")
                          .decode().split()) - {common.MANIFEST}
    check({d.name for d in diff.documents} == git_names,
          f"gitstore's diff names {sorted(d.name for d in diff.documents)}, git {git_names}")
    check(results["git diff (1 process)"] and results["raw pygit2 patch"], "empty git diff")
    res.verified(f"gitstore's diff reports exactly turns {n + 1}..{n + ADDED} added and the "
                 f"same changed files as git ({', '.join(sorted(git_names))})")
    med = {s: common.median(v) for s, v in samples.items()}
    size = f"{n}→{n + ADDED} turns"
    for name in ("git diff (1 process)", "raw pygit2 patch"):
        target = TARGET if name == "git diff (1 process)" and not ctx.quick else None
        res.rows.append(common.time_row(NAME, size, "v1.0.0 → v1.1.0", med["gitstore"], name,
                                        med[name], max_ratio=target,
                                        note="semantic diff vs text diff"))
    for label in measured:
        res.rows.append(common.time_row(NAME, size, f"v1.0.0 → v1.1.0 {label[9:]}",
                                        med[label], "git diff (1 process)",
                                        med["git diff (1 process)"],
                                        note="timed alike in a process of its own: this "
                                             "version and the one in $" + BEFORE_ENV))
    res.data["samples"] = {s: common.summary(v) for s, v in samples.items()}
    return res
