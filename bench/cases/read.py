"""read: a finalized version, whole and one document, against ``git show``.

A customer with a finalized v1.0.0 (all five files, SOW rendered) of n turns.

* whole version: ``store.customer(c).read("v1.0.0")``, then parse every JSON
  document and decode the SOW; baselines: one ``git show v1.0.0:<file>``
  process per file of the tree (JSON parsed the same way), and the same reads
  straight with pygit2;
* one document: ``store.customer(c).read("v1.0.0").document("conversation.json")``
  vs ``git show v1.0.0:conversation.json`` (+ parse) and pygit2.

Each call opens the customer afresh, as a new reader would. Results are
checked: gitstore's documents equal the documents the fixture stored, and
every system returns the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

import pygit2

from .. import common
from ..common import CaseResult, Context, check

NAME = "read"
TITLE = "read a finalized version whole and one document, vs git show"
CUSTOMER = "customer-read"
TAG = "v1.0.0"
DOC = "conversation.json"


def _parse(name: str, data: bytes) -> Any:
    return json.loads(data) if name.endswith(".json") else data.decode("utf-8")


def run(ctx: Context) -> CaseResult:
    res = CaseResult(NAME)
    for n in ctx.pick([100, 1000], [20]):
        _one_size(ctx, res, n)
    return res


def _one_size(ctx: Context, res: CaseResult, n: int) -> None:
    root = ctx.tmpdir(f"read-{n}")
    common.log(f"read: building a finalized {n}-turn version")
    store = common.open_store(root, fsync=ctx.fsync)
    common.finalized_customer(store, CUSTOMER, n)
    repo_path = root / CUSTOMER
    expected = {
        "conversation.json": common.conversation(n, summary=True),
        "deployment_context.json": common.example_document("deployment_context.json"),
        "session_analytics.json": common.example_document("session_analytics.json"),
        "session_metadata.json": common.complete_metadata(CUSTOMER, TAG, n),
    }
    names = sorted(common.git(repo_path, "ls-tree", "--name-only", TAG).decode().split())
    check("sow_document.md" in names and len(names) == 6, f"unexpected tree {names}")

    def gs_whole() -> dict[str, Any]:
        snap = store.customer(CUSTOMER).read(TAG)
        out: dict[str, Any] = dict(snap.documents())
        out["sow_document.md"] = snap.raw("sow_document.md").decode("utf-8")
        out["SHA256SUMS"] = snap.raw("SHA256SUMS").decode("ascii")
        return out

    def gs_one() -> Any:
        return store.customer(CUSTOMER).read(TAG).document(DOC)

    def show(name: str) -> Any:
        return _parse(name, common.git(repo_path, "show", f"{TAG}:{name}"))

    def git_whole() -> dict[str, Any]:
        return {name: show(name) for name in names}

    def git_one() -> Any:
        return show(DOC)

    def pygit2_tree() -> pygit2.Tree:
        repo = pygit2.Repository(str(repo_path))
        return repo.revparse_single(TAG).peel(pygit2.Commit).tree

    def raw_whole() -> dict[str, Any]:
        tree = pygit2_tree()
        return {e.name: _parse(e.name, tree[e.name].data) for e in tree}

    def raw_one() -> Any:
        return _parse(DOC, pygit2_tree()[DOC].data)

    measures = {
        "whole version": {"gitstore": gs_whole, "git show (1 process per file)": git_whole,
                          "raw pygit2": raw_whole},
        "one document": {"gitstore": gs_one, "git show (1 process)": git_one,
                         "raw pygit2": raw_one},
    }
    for measure, systems in measures.items():
        samples, results = common.interleaved(ctx.runs, systems)
        want = expected[DOC] if measure == "one document" else None
        if want is None:
            got = results["gitstore"]
            for doc, value in expected.items():
                check(got[doc] == value, f"gitstore read a different {doc}")
        else:
            check(results["gitstore"] == want, f"gitstore read a different {DOC}")
        for name, value in results.items():
            check(value == results["gitstore"], f"{name} read something else than gitstore")
        med = {s: common.median(v) for s, v in samples.items()}
        for name in list(systems)[1:]:
            target = 2.0 if name.startswith("git show") else None
            res.rows.append(common.time_row(NAME, f"{n} turns", measure, med["gitstore"], name,
                                            med[name], max_ratio=target))
        res.data[f"{measure}_{n}"] = {s: common.summary(v) for s, v in samples.items()}
    res.verified(f"n={n}: gitstore's documents equal the stored fixture; git show and pygit2 "
                 "return the same data")
