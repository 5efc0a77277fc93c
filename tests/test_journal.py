"""The store's change journal and what a warm query looks at (gitstore.catalog.journal,
gitstore.catalog.freshness).

Every gitstore write, and git itself in a repository with the journal hook, appends
the customer's name; a warm query looks only at the customers the journal names,
the unhooked ones and new or removed ones, and a full scan (first query, journal
lost, reboot, the periodic fallback) at everyone. Checked with real repositories,
real ``git`` (``update-ref``, ``push``) and the real hook script; never with timing:
that the warm path skips a hooked customer is shown by changing one *without* any
hook and seeing the warm query not notice, until a full scan does.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, Clock, git, record_example_session

from gitstore import Store
from gitstore.catalog import derive, journal
from gitstore.catalog.index import Index
from gitstore.core import canonical
from gitstore.ops import githooks

OTHER = "customer-other1"
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")  # plain git that runs no hook at all


def tips(index: Index) -> dict[str, str]:
    """customer -> the tip of its scenario v1, as a query (refreshing first) sees it."""
    index.refresh()
    return {row[0]: row[2] for row in index.dump()["scenarios"]}


def lines(root: Path) -> list[str]:
    path = journal.path_of(root)
    return path.read_text(encoding="ascii").splitlines() if path.exists() else []


@pytest.fixture
def two(tmp_path: Path) -> Store:
    """Two customers, each with the example session finalized as v1.0.0, both with
    gitstore's hooks installed (pre-receive and the journal's reference-transaction)."""
    store = Store.init(tmp_path / "sessions", clock=Clock())
    for name in (CUSTOMER, OTHER):
        record_example_session(store, name)
        assert journal.HOOK in {p.name for p in githooks.install(store.customer(name).path)}
    return store


def back_one(store: Store, name: str, *extra: str) -> str:
    """Move ``name``'s branch v1 one commit back with plain git; returns the new tip."""
    path = store.customer(name).path
    git(path, *extra, "update-ref", "refs/heads/v1", "v1~1")
    return git(path, "rev-parse", "v1").strip()


def test_every_gitstore_write_appends_its_customer(store: Store) -> None:
    record_example_session(store)
    written = lines(store.root)
    assert written and set(written) == {CUSTOMER}
    commits = git(store.customer(CUSTOMER).path, "rev-list", "--count", "v1").strip()
    assert len(written) == int(commits)  # one line per commit, no more
    assert oct(journal.path_of(store.root).stat().st_mode & 0o777) == "0o600"


def test_a_warm_query_looks_only_at_what_the_journal_names(two: Store) -> None:
    index = Index(two)
    before = tips(index)  # the first query: a full scan, which finds both hooks
    assert index.refresh() == 0
    # behind everyone's back: no hook runs, no journal line is written
    moved = back_one(two, OTHER, *NO_HOOKS)
    assert tips(index) == before  # warm: the hooked customer was not looked at
    # the same kind of change with the hook: the journal names it, the next query sees it
    moved_too = back_one(two, CUSTOMER)
    assert lines(two.root)[-1] == CUSTOMER
    assert tips(index) == {CUSTOMER: moved_too, OTHER: before[OTHER]}
    # the periodic full scan is the fallback for writers nothing reports
    assert tips(Index(two, full_scan_seconds=0)) == {CUSTOMER: moved_too, OTHER: moved}


def test_a_warm_query_that_finds_nothing_new_writes_nothing(two: Store) -> None:
    """No transaction, so no sync of the index file, for a query that only reads: the
    journal position, root fingerprint and scan time it would keep are the ones kept."""
    index = Index(two)
    index.refresh()  # the first query: a full scan, which keeps what it learned
    changes = index.db.cx.total_changes
    assert index.refresh() == 0
    index.list_sessions()
    assert index.db.cx.total_changes == changes
    back_one(two, CUSTOMER)  # the journal names it: the next query writes again
    assert index.refresh() == 1 and index.db.cx.total_changes > changes


def test_a_customer_whose_sync_failed_is_retried_by_the_next_query(
        two: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync that fails (here a derivation error that then goes away) leaves the
    customer out of answers only until the next query, not until the next full scan:
    the journal, already read past its line, will not name it again."""
    def age() -> None:  # past the two-second "racy" window, so fingerprints count
        aged = time.time() - 60
        os.utime(two.root, (aged, aged))
        for name in (CUSTOMER, OTHER):
            path = two.customer(name).path
            for place in (path, *path.glob("refs/**"), *path.glob("packed-refs")):
                os.utime(place, (aged, aged))

    age()
    index = Index(two)
    before = tips(index)
    moved = back_one(two, CUSTOMER)
    age()

    def transient(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("transient")

    with monkeypatch.context() as patch:
        patch.setattr(derive, "derive", transient)
        index.refresh()
    assert index.db.problems
    assert tips(index) == {CUSTOMER: moved, OTHER: before[OTHER]}
    assert index.refresh() == 0  # and then it is fresh: looked at no more
    assert tips(index) == {CUSTOMER: moved, OTHER: before[OTHER]}


def test_an_unhooked_customer_is_looked_at_on_every_query(store: Store) -> None:
    record_example_session(store)
    record_example_session(store, OTHER)
    index = Index(store)
    before = tips(index)
    moved = back_one(store, OTHER, *NO_HOOKS)  # no hook installed, none run
    assert tips(index) == {CUSTOMER: before[CUSTOMER], OTHER: moved}


@pytest.mark.parametrize("hooks", [False, True])
def test_a_plain_git_push_is_seen_by_the_next_query(store: Store, tmp_path: Path,
                                                    hooks: bool) -> None:
    record_example_session(store)
    bare = store.customer(CUSTOMER).path
    if hooks:  # the journal's hook alone (pre-receive's checks are test_githooks.py's)
        hook = bare / "hooks" / journal.HOOK
        hook.write_text(journal.hook_script())
        hook.chmod(0o755)
    index = Index(store)
    assert tips(index)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    meta = json.loads((clone / "session_metadata.json").read_text())
    meta["session_info"].update(session_version="v1.1.0", completed_timestamp=None,
                                session_duration_minutes=None)
    meta["workflow_tracking"]["completion_status"] = "in_progress"
    (clone / "session_metadata.json").write_bytes(canonical.dumps(meta))
    (clone / "sow_document.md").unlink()
    names = sorted(p.name for p in clone.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    subprocess.run("sha256sum " + " ".join(names) + " > SHA256SUMS", shell=True, cwd=clone,
                   check=True)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "follow-up by hand")
    count = len(lines(store.root))
    git(clone, "push", "-q", "origin", "HEAD:refs/heads/v1")
    assert len(lines(store.root)) == count + hooks  # the hook said so, or nothing did
    rows = index.list_sessions()
    assert [(r["customer"], r["version"], r["status"]) for r in rows] == \
        [(CUSTOMER, "v1.1.0", "open")]
    assert rows[0]["commit_id"] == git(clone, "rev-parse", "HEAD").strip()


def test_customers_added_and_removed_behind_the_stores_back(two: Store, tmp_path: Path) -> None:
    index = Index(two)
    assert set(tips(index)) == {CUSTOMER, OTHER}
    copy = two.root / "customer-copy9"
    shutil.copytree(two.customer(OTHER).path, copy, symlinks=True)
    assert set(tips(index)) == {CUSTOMER, OTHER, "customer-copy9"}
    shutil.rmtree(two.customer(OTHER).path)
    assert set(tips(index)) == {CUSTOMER, "customer-copy9"}
    os.rename(copy, tmp_path / "elsewhere")
    assert set(tips(index)) == {CUSTOMER}


@pytest.mark.parametrize("loss", ["deleted", "replaced", "truncated", "reboot", "no state"])
def test_a_journal_that_cannot_say_means_a_full_scan(two: Store, loss: str) -> None:
    index = Index(two)
    before = tips(index)
    moved = back_one(two, OTHER, *NO_HOOKS)
    assert tips(index) == before
    path = journal.path_of(two.root)
    if loss == "deleted":
        path.unlink()
    elif loss == "replaced":  # by another file of the same size (its inode maybe reused)
        size = path.stat().st_size
        path.unlink()
        path.write_bytes(b"x" * (size - 1) + b"\n")
    elif loss == "truncated":
        path.write_bytes(b"")
    else:
        with sqlite3.connect(index.path) as cx:
            if loss == "reboot":
                cx.execute("UPDATE state SET value = 'another-boot' WHERE key = 'boot'")
            else:
                cx.execute("DELETE FROM state")
        cx.close()
    assert tips(index) == {CUSTOMER: before[CUSTOMER], OTHER: moved}


def test_only_whole_lines_naming_customers_count(two: Store) -> None:
    index = Index(two)
    before = tips(index)
    moved = back_one(two, OTHER, *NO_HOOKS)
    path = journal.path_of(two.root)
    with open(path, "ab") as f:  # garbage, a path, then a line still being written
        f.write(b"\xff\xfe\n../../etc\n\n" + b" " * 5 + b"\n" + OTHER.encode())
    assert tips(index) == before  # the unfinished line is not read yet
    with open(path, "ab") as f:
        f.write(b"\n")
    assert tips(index) == {CUSTOMER: before[CUSTOMER], OTHER: moved}


def test_the_hook_script(tmp_path: Path) -> None:
    """Appends the repository's name on ``committed`` only, only inside a store, and
    never fails (git must not refuse a ref update because of it)."""
    root = tmp_path / "sessions"
    (root / ".gitstore").mkdir(parents=True)
    repo = root / "customer-hooked"
    repo.mkdir()
    script = tmp_path / "hook"
    script.write_text(journal.hook_script())
    script.chmod(0o755)

    def run(cwd: Path, state: str) -> int:
        return subprocess.run([str(script), state], cwd=cwd, input=b"0 1 refs/heads/v1\n",
                              capture_output=True, check=False).returncode

    assert [run(repo, s) for s in ("prepared", "committed", "aborted")] == [0, 0, 0]
    assert lines(root) == ["customer-hooked"]
    outside = tmp_path / "not-a-store" / "repo"
    outside.mkdir(parents=True)
    assert run(outside, "committed") == 0
    assert not (outside.parent / ".gitstore").exists()
    journal.path_of(root).unlink()
    journal.path_of(root).mkdir()  # cannot append: still exits 0
    assert run(repo, "committed") == 0


def test_hooked_needs_our_executable_hook_and_no_hooks_path(two: Store) -> None:
    path = two.customer(CUSTOMER).path
    assert journal.hooked(path)
    hook = path / "hooks" / journal.HOOK
    hook.chmod(0o644)
    assert not journal.hooked(path)
    hook.chmod(0o755)
    git(path, "config", "core.hooksPath", "/elsewhere")
    assert not journal.hooked(path)
    git(path, "config", "--unset", "core.hooksPath")
    hook.write_text("#!/bin/sh\nexit 0\n")
    assert not journal.hooked(path)


def test_a_store_write_that_cannot_append_says_so(store: Store) -> None:
    session = record_example_session(store)
    journal.path_of(store.root).unlink()
    journal.path_of(store.root).mkdir()  # in the way: the append fails
    written = session.follow_up()
    assert any("change journal" in w for w in written.warnings), written.warnings
    assert Index(store).list_sessions()[0]["version"] == "v1.1.0"  # a full scan found it


@pytest.mark.parametrize("processes", [None, 2])
def test_rebuild_equals_the_incremental_index(two: Store, tmp_path: Path,
                                              processes: int | None) -> None:
    """Also when worker processes read the customers (one batch each, here)."""
    back_one(two, OTHER)
    incremental = Index(two)
    incremental.refresh()
    fresh = Index(two, tmp_path / "rebuilt.sqlite")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gitstore.catalog.derive.BATCH", 1)
        fresh.rebuild(processes=processes)
    assert fresh.dump() == incremental.dump()
    # a rebuild leaves the state of a full scan: the next query is warm
    moved = back_one(two, OTHER, *NO_HOOKS)
    assert tips(fresh)[OTHER] != moved


def test_a_worker_process_reads_what_this_process_reads(two: Store) -> None:
    """The worker protocol of a rebuild (``python -m gitstore.catalog.derive``): one
    JSON line of rows per batch, in order, equal to reading here."""
    chunks = [[CUSTOMER], [OTHER, CUSTOMER]]
    job = json.dumps({"root": str(two.root), "chunks": chunks}).encode()
    proc = subprocess.run([sys.executable, "-m", "gitstore.catalog.derive"], input=job,
                          capture_output=True, check=True)
    def plain(rows: derive.Rows) -> Any:
        data = json.loads(json.dumps(rows.to_json()))
        data["fingerprint"][1] = "(a time)"  # racy or not, by when it was read
        return data

    got = [[plain(derive.Rows.from_json(d)) for d in json.loads(line)]
           for line in proc.stdout.splitlines()]
    here = [[plain(r) for r in derive.read_chunk(str(two.root), c)] for c in chunks]
    assert got == here and [[r["name"] for r in batch] for batch in got] == chunks


def test_a_rebuild_whose_workers_cannot_start_reads_in_this_process(
        two: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = Index(two, tmp_path / "serial.sqlite")
    expected.rebuild(processes=1)
    monkeypatch.setattr("gitstore.catalog.derive.BATCH", 1)
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-such-python"))
    fresh = Index(two, tmp_path / "rebuilt.sqlite")
    assert fresh.rebuild(processes=2) == 2
    assert fresh.dump() == expected.dump()


def test_problems_of_one_customer_do_not_stop_a_rebuild(two: Store, tmp_path: Path) -> None:
    (two.customer(OTHER).path / "packed-refs").write_text("garbage\n")
    for ref in (two.customer(OTHER).path / "refs" / "tags").iterdir():
        ref.unlink()
    fresh = Index(two, tmp_path / "rebuilt.sqlite")
    assert fresh.rebuild() == 2
    assert any(OTHER in p for p in fresh.problems), fresh.problems
    assert CUSTOMER in tips(fresh)
