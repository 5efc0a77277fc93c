"""The hub side: gitstore's rules enforced by a real git server, whatever client pushes.

A hub made by ``gitstore hub init`` is served by ``git daemon`` or by ``git
http-backend`` behind the CGI server of :mod:`servers` (both on 127.0.0.1, stopped
by PID). Plain ``git push`` of an invalid commit, a moved tag, a tag no pushed
branch reaches, a rewritten access log or a deletion is refused by the server,
and leaves the hub's refs as they were.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CUSTOMER, record_example_session, run_cli
from servers import Server, git_out, shared_refs, start_daemon, start_http, synced_store

from gitstore.ops import githooks, syncing
from gitstore.ops import hub as hub_ops

KINDS = ("daemon", "http")


@pytest.fixture(params=KINDS)
def served(request: pytest.FixtureRequest, tmp_path: Path
           ) -> Iterator[tuple[hub_ops.Hub, Server, Path]]:
    """A hub holding the example session (pushed by a store through the server),
    and a plain-git clone of it."""
    made = hub_ops.init(tmp_path / "hub")
    if request.param == "daemon":
        hub_ops.add(made, CUSTOMER)
        server = start_daemon(made.path, tmp_path / "server.log")
    else:
        server = start_http(made.path, tmp_path / "server.log")
    try:
        store = synced_store(tmp_path / "store", server.template)
        record_example_session(store)
        [outcome] = syncing.sync(store)
        assert outcome.error is None, outcome.error
        clone = tmp_path / "clone"
        _git(tmp_path, "clone", "-q", server.url(CUSTOMER), str(clone))
        _git(clone, "config", "user.name", "plain git writer")
        _git(clone, "config", "user.email", "writer@example.invalid")
        yield made, server, clone
    finally:
        server.stop()


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _push(clone: Path, *refspecs: str) -> subprocess.CompletedProcess[str]:
    return _git(clone, "push", "--porcelain", "origin", *refspecs, check=False)


def test_hub_init_and_add_make_repositories_with_the_hook(tmp_path: Path) -> None:
    res = run_cli(tmp_path / "unused", "hub", "init", str(tmp_path / "hub"))
    assert res.code == 0, res.err
    assert "hub.cgi" in res.err
    res = run_cli(tmp_path / "unused", "hub", "add", str(tmp_path / "hub"), CUSTOMER, "acme")
    assert res.code == 0, res.err
    assert res.text.split("\n")[0].startswith(f"{CUSTOMER} created ")
    for name in (CUSTOMER, "acme"):
        repo = tmp_path / "hub" / name
        hook = (repo / "hooks" / "pre-receive").read_text()
        assert githooks.MARKER in hook
        assert (repo / "git-daemon-export-ok").exists()
        for key, value in hub_ops.SETTINGS.items():
            assert git_out(repo, "config", key).strip() == value
        assert git_out(repo, "config", "gitstore.customer").strip() == name
    again = run_cli(tmp_path / "unused", "hub", "add", str(tmp_path / "hub"), "acme")
    assert again.text.startswith("acme exists ")
    assert run_cli(tmp_path / "unused", "hub", "add", str(tmp_path / "hub"), "../x").code == 2
    assert run_cli(tmp_path / "unused", "hub", "add", str(tmp_path / "nohub"), "x").code == 3


def test_plain_git_push_of_an_invalid_commit_is_refused(served: tuple[hub_ops.Hub, Server,
                                                                       Path]) -> None:
    made, _, clone = served
    before = shared_refs(made.path / CUSTOMER)
    path = clone / "conversation.json"
    doc = json.loads(path.read_text())
    doc["conversation_summary"]["total_turns"] = 99
    path.write_text(json.dumps(doc, indent=2) + "\n")
    _git(clone, "commit", "-q", "-am", "break the turn count")
    proc = _push(clone, "HEAD:refs/heads/v1")
    assert proc.returncode != 0
    assert "pre-receive hook declined" in proc.stdout
    assert "total_turns" in proc.stderr and "push refused" in proc.stderr
    assert shared_refs(made.path / CUSTOMER) == before


def test_a_moved_tag_and_deletions_are_refused(served: tuple[hub_ops.Hub, Server, Path]
                                               ) -> None:
    made, _, clone = served
    before = shared_refs(made.path / CUSTOMER)
    _git(clone, "tag", "-f", "-a", "-m", "moved", "v1.0.0", "HEAD~1")
    proc = _push(clone, "--force", "refs/tags/v1.0.0")
    assert proc.returncode != 0
    assert "tags are never moved or reused" in proc.stderr
    for target in ("refs/tags/v1.0.0", "refs/heads/v1"):
        assert _push(clone, "--delete", target).returncode != 0
    assert shared_refs(made.path / CUSTOMER) == before


def test_a_tag_that_no_pushed_branch_reaches_is_refused(
        served: tuple[hub_ops.Hub, Server, Path]) -> None:
    made, _, clone = served
    before = shared_refs(made.path / CUSTOMER)
    _git(clone, "checkout", "-q", "-b", "side")
    meta = clone / "session_metadata.json"
    doc = json.loads(meta.read_text())
    doc["session_info"]["session_version"] = "v1.0.1"
    meta.write_text(json.dumps(doc, indent=2) + "\n")
    _git(clone, "commit", "-q", "-am", "v1.0.1: correct\n\nChange: correction")
    _git(clone, "tag", "-a", "-m", "v1.0.1", "v1.0.1")
    proc = _push(clone, "refs/tags/v1.0.1")              # the tag alone, not its branch
    assert proc.returncode != 0
    assert "is not on its scenario branch" in proc.stderr
    assert shared_refs(made.path / CUSTOMER) == before


def test_a_travelled_access_log_only_grows(served: tuple[hub_ops.Hub, Server, Path]) -> None:
    made, _, clone = served
    [ref] = git_out(made.path / CUSTOMER, "for-each-ref", "--format=%(refname)",
                    "refs/gitstore/audit/").split()
    _git(clone, "fetch", "-q", "origin", f"{ref}:refs/audit")
    tree = git_out(clone, "ls-tree", "--name-only", "refs/audit").split()
    _git(clone, "checkout", "-q", "refs/audit")
    batch = clone / tree[0]
    lines = batch.read_bytes().splitlines(keepends=True)
    batch.write_bytes(b"".join(lines[1:]))               # drop a record that travelled
    _git(clone, "commit", "-q", "-am", "forget a record")
    proc = _push(clone, f"HEAD:{ref}")
    assert proc.returncode != 0
    assert "a batch that travelled earlier was changed or removed" in proc.stderr
    assert _push(clone, "--delete", ref).returncode != 0
    old = git_out(made.path / CUSTOMER, "rev-parse", ref).strip()
    assert git_out(made.path / CUSTOMER, "rev-parse", ref).strip() == old


def test_the_cgi_program_creates_customers_on_first_push_unless_told_not_to(
        tmp_path: Path) -> None:
    made = hub_ops.init(tmp_path / "hub", create_on_push=False)
    server = start_http(made.path, tmp_path / "http.log")
    try:
        store = synced_store(tmp_path / "store", server.template)
        record_example_session(store)
        [refused] = syncing.sync(store)
        assert refused.error is not None and refused.error.exit_code == 3
        assert "has no repository" in str(refused.error)
        assert made.customers() == []
        hub_ops.init(made.path)                       # now it may create customers
        [outcome] = syncing.sync(store)
        assert outcome.error is None and outcome.pushed == 11
        assert made.customers() == [CUSTOMER]
        bad = _git(tmp_path, "ls-remote", server.url("..%2Fescape"), check=False)
        assert bad.returncode != 0
    finally:
        server.stop()


def test_the_hub_is_a_store_root_an_auditor_can_verify(tmp_path: Path) -> None:
    made = hub_ops.init(tmp_path / "hub")
    server = start_http(made.path, tmp_path / "http.log")
    try:
        store = synced_store(tmp_path / "store", server.template)
        record_example_session(store)
        store.customer(CUSTOMER).read("v1.0.0")
        assert syncing.sync(store)[0].error is None
    finally:
        server.stop()
    assert run_cli(made.path, "verify").code == 0
    res = run_cli(made.path, "audit", CUSTOMER, "--verify")
    assert res.code == 0, res.text + res.err
    git_out(made.path / CUSTOMER, "fsck", "--strict", "--no-dangling")
