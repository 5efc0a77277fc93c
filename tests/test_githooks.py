"""The real git hooks, exercised with the real git binary: no mocks.

A store records the example session (v1.0.0), the pre-receive hook is installed
into its bare repository, and a plain-git writer clones it, edits documents
and pushes. Every refused push must leave the bare repository's refs and
objects exactly as they were.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, ROOT, git, repo_state

from gitstore import Store, UsageError
from gitstore.core.versions import Version
from gitstore.ops import githooks
from gitstore.ops.verify import check_customer

CLI = [sys.executable, "-m", "gitstore"]
TOTAL_TURNS = "conversation.json#/conversation_summary/total_turns"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          check=False)


def sh(cwd: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True,
                          check=False)


def edit(clone: Path, name: str, change: Callable[[Any], None]) -> None:
    path = clone / name
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def regenerate_manifest(clone: Path) -> None:
    names = sorted(p.name for p in clone.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    proc = sh(clone, "sha256sum " + " ".join(names) + " > SHA256SUMS")
    assert proc.returncode == 0, proc.stderr


def open_follow_up(clone: Path, version: str = "v1.1.0") -> None:
    """What `gitstore follow-up` does to the metadata, done by hand."""
    def change(meta: Any) -> None:
        info = meta["session_info"]
        info["session_version"] = version
        info["completed_timestamp"] = None
        info["session_duration_minutes"] = None
        meta["workflow_tracking"]["completion_status"] = "in_progress"

    edit(clone, "session_metadata.json", change)
    (clone / "sow_document.md").unlink()


def commit(clone: Path, message: str, *extra: str) -> str:
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--no-verify", "-m", message, *extra)
    return git(clone, "rev-parse", "HEAD").strip()


def push(clone: Path, *refspecs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(clone), "push", "--porcelain", "origin", *refspecs],
                          capture_output=True, text=True, check=False)


def hook_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The hook's own messages, as git relays them ("remote: gitstore: ...")."""
    return [m[1] for line in proc.stderr.splitlines()
            if (m := re.match(r"remote: (gitstore: .*?)\s*$", line))]


def assert_refused(proc: subprocess.CompletedProcess[str], *expected: str) -> list[str]:
    lines = hook_lines(proc)
    assert proc.returncode != 0, proc.stderr
    assert "pre-receive hook declined" in proc.stdout + proc.stderr
    assert lines and lines[-1].startswith("gitstore: push refused:"), proc.stderr
    for text in expected:
        assert any(text in line for line in lines), f"{text!r} not in {lines}"
    return lines


@pytest.fixture
def served(finalized: Any, tmp_path: Path) -> tuple[Path, Path]:
    """The customer's bare repository with the pre-receive hook, and a clone of it."""
    bare = finalized.customer.path
    installed = githooks.install(bare)
    assert installed == [bare / "hooks" / "pre-receive", bare / "hooks" / "reference-transaction"]
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))
    return bare, clone


# -- installing -------------------------------------------------------------------

def test_install_writes_an_executable_script_running_this_interpreter(finalized: Any) -> None:
    bare = finalized.customer.path
    proc = cli("hooks", "install", str(bare))
    assert proc.returncode == 0, proc.stderr
    hook = bare / "hooks" / "pre-receive"
    assert str(hook) in proc.stderr
    text = hook.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert githooks.MARKER in text
    assert f"exec {sys.executable} -P -m gitstore.ops.githooks pre-receive" in text
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    # Re-installing gitstore's own hook is fine, through the API and the CLI.
    assert githooks.install(bare) == [hook, hook.with_name("reference-transaction")]
    assert cli("hooks", "install", str(bare)).returncode == 0


def test_install_refuses_a_foreign_hook_unless_forced(finalized: Any) -> None:
    bare = finalized.customer.path
    hook = bare / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\nexit 0\n")
    proc = cli("hooks", "install", str(bare))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not a gitstore hook" in proc.stderr and "--force" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
    with pytest.raises(UsageError, match="not a gitstore hook"):
        githooks.install(bare)
    proc = cli("hooks", "install", "--force", str(bare))
    assert proc.returncode == 0, proc.stderr
    assert githooks.MARKER in hook.read_text()
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755


def test_install_in_a_clone_records_the_customer(served: tuple[Path, Path]) -> None:
    _, clone = served
    proc = cli("hooks", "install", str(clone))
    assert proc.returncode == 0, proc.stderr
    hook = clone / ".git" / "hooks" / "pre-commit"
    assert "-m gitstore.ops.githooks pre-commit" in hook.read_text()
    assert git(clone, "config", "gitstore.customer").strip() == CUSTOMER


def test_install_into_a_non_repository_is_a_usage_error(tmp_path: Path) -> None:
    proc = cli("hooks", "install", str(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert "not a git repository" in proc.stderr


# -- pre-receive: documents -----------------------------------------------------------

def test_push_breaking_integrity_is_rejected_and_changes_nothing(
        served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    open_follow_up(clone)
    edit(clone, "conversation.json",
         lambda c: c["conversation_summary"].__setitem__("total_turns", 7))
    regenerate_manifest(clone)
    bad = commit(clone, "follow-up with a wrong turn count")
    proc = push(clone, "HEAD:refs/heads/v1")
    lines = assert_refused(proc, f"refs/heads/v1 {bad[:12]}: {TOTAL_TURNS}: is 7 but there "
                           "are 5 turns")
    assert len(lines) == 2, lines  # exactly the one violation, and the summary
    assert repo_state(bare) == before


def test_push_breaking_the_schema_and_the_manifest_reports_every_violation(
        served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    open_follow_up(clone)
    edit(clone, "conversation.json",
         lambda c: c["conversation_summary"].__setitem__("total_turns", "five"))
    commit(clone, "edit without regenerating SHA256SUMS")
    proc = push(clone, "HEAD:refs/heads/v1")
    assert_refused(proc, f"{TOTAL_TURNS}: ",
                   "conversation.json: checksum does not match SHA256SUMS",
                   "session_metadata.json: checksum does not match SHA256SUMS")
    assert repo_state(bare) == before


def test_push_rewriting_a_finalized_version_is_rejected(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    edit(clone, "deployment_context.json", lambda d: d.__setitem__("validation_results", []))
    regenerate_manifest(clone)
    commit(clone, "quietly edit v1.0.0")
    proc = push(clone, "HEAD:refs/heads/v1")
    assert_refused(proc, "session_metadata.json#/session_info/session_version: is v1.0.0, "
                   "which is finalized")
    assert repo_state(bare) == before


def test_a_fixed_change_pushes_and_the_store_reads_it(served: tuple[Path, Path]) -> None:
    bare, clone = served
    open_follow_up(clone)
    edit(clone, "conversation.json",
         lambda c: c["conversation_summary"].__setitem__("total_turns", 6))
    regenerate_manifest(clone)
    commit(clone, "open v1.1.0")
    assert push(clone, "HEAD:refs/heads/v1").returncode != 0
    edit(clone, "conversation.json",
         lambda c: c["conversation_summary"].__setitem__("total_turns", 5))
    regenerate_manifest(clone)
    fixed = commit(clone, "open v1.1.0", "--amend")
    proc = push(clone, "HEAD:refs/heads/v1")
    assert proc.returncode == 0, proc.stderr
    assert hook_lines(proc) == ["gitstore: push checked: 1 new commit(s) in 1 ref update(s): ok"]
    assert git(bare, "rev-parse", "refs/heads/v1").strip() == fixed
    fsck = subprocess.run(["git", "-C", str(bare), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True, check=False)
    assert fsck.returncode == 0 and fsck.stdout == "" and fsck.stderr == "", fsck
    customer = Store(bare.parent).customer(CUSTOMER)
    assert check_customer(customer).problems == []
    meta = customer.read("v1").document("session_metadata.json")
    assert meta["session_info"]["session_version"] == "v1.1.0"


def test_a_bad_branch_name_or_deleting_a_branch_is_rejected(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    assert_refused(push(clone, "HEAD:refs/heads/feature"),
                   "refs/heads/feature ", "branch names must be refs/heads/vN")
    assert_refused(push(clone, "HEAD:refs/heads/v01"), "branch names must be refs/heads/vN")
    assert_refused(push(clone, ":refs/heads/v1"), "deleting a branch is refused")
    assert_refused(push(clone, "--force", "HEAD~1:refs/heads/v1"),
                   "non-fast-forward update", "history is append-only")
    assert_refused(push(clone, "HEAD:refs/heads/v2"),
                   "session_metadata.json#/session_info/session_version: is v1.0.0 but "
                   "refs/heads/v2 holds only versions v2.x.y")
    assert_refused(push(clone, "HEAD:refs/notes/commits"), "only scenario branches")
    assert repo_state(bare) == before


# -- pre-receive: tags --------------------------------------------------------------

def test_moving_deleting_or_faking_tags_is_rejected(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    git(clone, "tag", "-f", "-a", "v1.0.0", "-m", "moved", "HEAD~1")
    assert_refused(push(clone, "--force", "refs/tags/v1.0.0"),
                   "tag v1.0.0 already exists", "never moved")
    assert_refused(push(clone, ":refs/tags/v1.0.0"), "deleting a version tag is refused")
    git(clone, "tag", "v1.0.1", "HEAD")
    assert_refused(push(clone, "refs/tags/v1.0.1"), "is a lightweight tag")
    git(clone, "tag", "-a", "release-1", "-m", "not a version", "HEAD")
    assert_refused(push(clone, "refs/tags/release-1"),
                   "refs/tags/release-1", "tags must be version tags refs/tags/vX.Y.Z")
    git(clone, "tag", "-a", "v1.2.0", "-m", "wrong version", "HEAD")
    assert_refused(push(clone, "refs/tags/v1.2.0"),
                   "tag v1.2.0 points at a commit of version v1.0.0")
    assert repo_state(bare) == before


def test_a_correction_with_its_tag_pushes_but_a_bad_tag_refuses_the_whole_push(
        served: tuple[Path, Path]) -> None:
    bare, clone = served
    edit(clone, "session_metadata.json",
         lambda m: m["session_info"].__setitem__("session_version", "v1.0.1"))
    edit(clone, "deployment_context.json", lambda d: d.__setitem__("error_resolutions", []))
    regenerate_manifest(clone)
    fixed = commit(clone, "v1.0.1: correct deployment_context.json",
                   "--trailer", "Session-Version: v1.0.1", "--trailer", "Change: correction")
    git(clone, "tag", "-a", "v1.0.1", "-m", "v1.0.1: data correction")
    git(clone, "tag", "-a", "v1.0.9", "-m", "not this commit's version")
    before = repo_state(bare)
    assert_refused(push(clone, "HEAD:refs/heads/v1", "refs/tags/v1.0.1", "refs/tags/v1.0.9"),
                   "refs/tags/v1.0.9")
    assert repo_state(bare) == before  # the valid branch and tag were not written either
    proc = push(clone, "HEAD:refs/heads/v1", "refs/tags/v1.0.1")
    assert proc.returncode == 0, proc.stderr
    assert git(bare, "rev-parse", "refs/tags/v1.0.1^{commit}").strip() == fixed
    customer = Store(bare.parent).customer(CUSTOMER)
    assert check_customer(customer).problems == []
    finalized = [vi.version for vi in customer.versions() if vi.status == "finalized"]
    assert finalized == [Version(1, 0, 0), Version(1, 0, 1)]


def test_a_tag_must_be_on_its_scenario_branch_and_complete(served: tuple[Path, Path]) -> None:
    bare, clone = served
    before = repo_state(bare)
    open_follow_up(clone)
    regenerate_manifest(clone)
    commit(clone, "v1.1.0 without its SOW", "--trailer", "Session-Version: v1.1.0")
    git(clone, "tag", "-a", "v1.1.0", "-m", "finalize by hand")
    assert_refused(push(clone, "refs/tags/v1.1.0"),
                   "tag v1.1.0 is not on its scenario branch refs/heads/v1",
                   "sow_document.md: missing",
                   "session_metadata.json#/session_info/completed_timestamp: is not filled")
    assert repo_state(bare) == before


# -- pre-commit ------------------------------------------------------------------------

def test_pre_commit_refuses_a_bad_staged_change_and_prints_the_fix(
        served: tuple[Path, Path]) -> None:
    _, clone = served
    assert cli("hooks", "install", str(clone)).returncode == 0
    head = git(clone, "rev-parse", "HEAD").strip()
    edit(clone, "conversation.json",
         lambda c: c["conversation_summary"].__setitem__("total_turns", 4))
    proc = subprocess.run(["git", "-C", str(clone), "commit", "-a", "-m", "bad"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert f"gitstore: staged {TOTAL_TURNS}: is 4 but there are 5 turns" in proc.stderr
    assert "gitstore: staged conversation.json: checksum does not match SHA256SUMS" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    fix = re.search(r"to regenerate the manifest run: (.*)$", proc.stderr, re.M)
    assert fix is not None, proc.stderr
    assert fix[1] == ("sha256sum conversation.json deployment_context.json "
                      "session_analytics.json session_metadata.json sow_document.md "
                      "> SHA256SUMS && git add SHA256SUMS")
    assert git(clone, "rev-parse", "HEAD").strip() == head
    # Fix the field, run the printed command verbatim: the commit goes through.
    def fix_and_improve(conversation: Any) -> None:
        conversation["conversation_summary"]["total_turns"] = 5
        conversation["conversation_summary"]["final_recommendation"] += " (reviewed)"

    edit(clone, "conversation.json", fix_and_improve)
    git(clone, "add", "conversation.json")
    assert sh(clone, fix[1]).returncode == 0
    proc = subprocess.run(["git", "-C", str(clone), "commit", "-m", "review"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert git(clone, "rev-parse", "HEAD~1").strip() == head


def test_pre_commit_checks_the_customer_of_the_clone(served: tuple[Path, Path]) -> None:
    _, clone = served
    # install refuses a customer the clone's sessions do not record, and sets nothing
    with pytest.raises(UsageError, match="holds the sessions of customer customer-xyz789, "
                                         "not 'customer-other'"):
        githooks.install(clone, customer="customer-other")
    assert not (clone / ".git" / "hooks" / "pre-commit").exists()
    githooks.install(clone)
    assert git(clone, "config", "gitstore.customer").strip() == "customer-xyz789"
    git(clone, "config", "gitstore.customer", "customer-other")  # set by hand, wrongly
    proc = subprocess.run(["git", "-C", str(clone), "commit", "--allow-empty", "-m", "x"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "session_metadata.json#/session_info/api_key: is 'customer-xyz789' but this is " \
        "customer 'customer-other'" in proc.stderr


# -- failure modes -------------------------------------------------------------------

@pytest.mark.parametrize(("hook", "stdin", "code", "message"), [
    ("pre-receive", "", 3, "is not a git repository"),
    ("pre-commit", "", 3, "is not a git repository"),
    ("post-update", "", 2, "unknown hook 'post-update'"),
])
def test_hook_errors_are_one_line_and_non_zero(tmp_path: Path, hook: str, stdin: str,
                                               code: int, message: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "gitstore.ops.githooks", hook], input=stdin,
                          cwd=tmp_path, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == code, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_malformed_pre_receive_input_is_refused_in_one_line(finalized: Any) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "gitstore.ops.githooks", "pre-receive"],
                          input="not-three-fields\n", cwd=finalized.customer.path,
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unexpected pre-receive input" in proc.stderr
