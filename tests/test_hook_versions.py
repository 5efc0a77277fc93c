"""The pre-receive hook enforces the store's version rules on plain-git pushes.

A real bare customer repository with the hook installed, a real clone, real
``git push`` (issue 11 item 16): versions never skip (an open v1.1.0 takes only
v1.1.0 commits; after a finalized version comes its follow-up or its correction,
and a correction finalizes in its own commit), a scenario starts from a root
commit of vN.0.0, scenario numbers never skip, and a ``v2`` branch forked from
``v1``'s history is refused. Every refused push leaves the repository exactly as
it was, and what the hook accepts, ``gitstore verify`` accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, git, repo_state
from test_githooks import assert_refused, commit, edit, push, regenerate_manifest

from gitstore import Store
from gitstore.ops import githooks
from gitstore.ops.verify import check_customer


@pytest.fixture
def served(finalized: Any, tmp_path: Path) -> tuple[Path, Path]:
    """v1.0.0 finalized and v1.1.0 open (through gitstore), the hook installed, a clone."""
    finalized.follow_up()
    bare = finalized.customer.path
    githooks.install(bare)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    return bare, clone


def claim(clone: Path, version: str, *trailers: str) -> str:
    """Commit a change to the clone's tree that says it is ``version``."""
    edit(clone, "session_metadata.json",
         lambda m: m["session_info"].__setitem__("session_version", version))
    edit(clone, "deployment_context.json",  # unknown fields are kept, never refused
         lambda d: d.__setitem__("edited_by_hand", version))
    regenerate_manifest(clone)
    extra = [x for t in ("Session-Version: " + version, *trailers) for x in ("--trailer", t)]
    return commit(clone, f"{version}: edited by hand", *extra)


def test_an_open_version_takes_no_other_version(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    claim(clone, "v1.7.3")
    assert_refused(push(clone, "HEAD:refs/heads/v1"),
                   "is v1.7.3 but v1.1.0 is still open", "versions never skip")
    assert repo_state(bare) == before


def test_a_skipping_version_with_its_tag_is_refused(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    claim(clone, "v1.9.0", "Change: finalize")
    git(clone, "tag", "-a", "v1.9.0", "-m", "v1.9.0: finalized by hand")
    assert_refused(push(clone, "HEAD:refs/heads/v1", "refs/tags/v1.9.0"),
                   "is v1.9.0 but v1.1.0 is still open")
    assert repo_state(bare) == before
    assert check_customer(Store(bare.parent).customer(CUSTOMER)).problems == []


def test_after_a_finalized_version_only_its_follow_up_or_correction(
        finalized: Any, tmp_path: Path) -> None:
    bare = finalized.customer.path
    githooks.install(bare)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    before = repo_state(bare)
    claim(clone, "v1.3.0")
    assert_refused(push(clone, "HEAD:refs/heads/v1"),
                   "after finalized v1.0.0 comes its follow-up v1.1.0 or its correction v1.0.1")
    git(clone, "reset", "-q", "--hard", "origin/v1")
    claim(clone, "v1.0.1")  # a correction that does not finalize
    assert_refused(push(clone, "HEAD:refs/heads/v1"), "a correction is published in one commit")
    git(clone, "reset", "-q", "--hard", "origin/v1")
    claim(clone, "v1.0.0")  # the finalized version itself
    assert_refused(push(clone, "HEAD:refs/heads/v1"), "finalized versions are immutable")
    assert repo_state(bare) == before


def test_an_open_version_takes_its_own_commits(served: tuple[Path, Path]) -> None:
    bare, clone = served
    pushed = claim(clone, "v1.1.0")
    proc = push(clone, "HEAD:refs/heads/v1")
    assert proc.returncode == 0, proc.stderr
    assert git(bare, "rev-parse", "refs/heads/v1").strip() == pushed
    assert check_customer(Store(bare.parent).customer(CUSTOMER)).problems == []


def test_a_branch_forked_from_another_scenario_is_refused(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    claim(clone, "v2.0.0")  # on top of v1's history
    assert_refused(push(clone, "HEAD:refs/heads/v2"),
                   "a new scenario starts from a root commit, never from another scenario's "
                   "history")
    assert repo_state(bare) == before
    assert check_customer(Store(bare.parent).customer(CUSTOMER)).problems == []


def test_scenario_numbers_and_first_versions_never_skip(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    git(clone, "checkout", "-q", "--orphan", "fresh")
    for version, ref, needle in (
            ("v3.0.0", "refs/heads/v3", "a new scenario is the next one, v2, not v3"),
            ("v2.4.0", "refs/heads/v2", "a scenario's first commit is v2.0.0")):
        claim(clone, version)  # a root commit: the orphan branch has no parent
        assert git(clone, "rev-list", "--count", "HEAD").strip() == "1"
        assert_refused(push(clone, f"HEAD:{ref}"), needle)
        git(clone, "update-ref", "-d", "HEAD")  # the next one is a root commit again
    assert repo_state(bare) == before
