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
"""

from __future__ import annotations

from typing import Any

import pygit2

from .. import common
from ..common import CaseResult, Context, check
from .cli import documents

NAME = "diff"
TITLE = "Customer.diff of two versions of a 1,000-turn conversation"
CUSTOMER = "customer-diff"
ADDED = 5
TARGET = 3.0  # x git diff, at 1,000 turns


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
        return repo.diff(a, b).patch or ""

    systems = {"gitstore": gs, "git diff (1 process)": git_diff, "raw pygit2 patch": raw}
    samples, results = common.interleaved(ctx.runs, systems)
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
    for name in list(systems)[1:]:
        target = TARGET if name == "git diff (1 process)" and not ctx.quick else None
        res.rows.append(common.time_row(NAME, f"{n}→{n + ADDED} turns", "v1.0.0 → v1.1.0",
                                        med["gitstore"], name, med[name], max_ratio=target,
                                        note="semantic diff vs text diff"))
    res.data["samples"] = {s: common.summary(v) for s, v in samples.items()}
    return res
