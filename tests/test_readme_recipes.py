"""Issue 10, item 19: every auditor recipe in the README prints what the README says.

The code block of the README section "For auditors: plain git only" is parsed
line by line (``command   # what it shows``) and each command is run with bash,
exactly as written, in a store made like the quickstart's plus a second scenario
(``conftest.build_history``: v1.0.0, v1.1.0, v1.1.1 and v2.0.0, so ``HEAD`` is
``v2``), signed with an SSH key so that ``git verify-tag`` has a signature to
check. Each recipe must exit 0, print something, and print what its comment
promises; a recipe without a check here fails the test, so the README cannot
gain one that is never run.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CUSTOMER, ROOT, build_history

from gitstore import Store

README = ROOT / "README.md"


def auditor_recipes() -> list[tuple[str, str]]:
    """``(command, comment)`` for each line of the auditor section's code block(s)."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## For auditors: plain git only\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README has no auditor section"
    blocks = re.findall(r"^```sh\n(.*?)^```", section.group(1), re.M | re.S)
    assert blocks, "the auditor section has no sh code block"
    recipes = []
    for block in blocks:
        for line in block.splitlines():
            if not line.strip():
                continue
            match = re.match(r"^(.*?)\s{2,}#\s(.*)$", line)
            command, comment = (match.group(1), match.group(2)) if match else (line, "")
            recipes.append((command.strip(), comment.strip()))
    return recipes


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the README's ``cd sessions/...`` starts from."""
    base = tmp_path_factory.mktemp("auditor")
    root = base / "sessions"
    key = base / "signing_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitstore", "-f",
                    str(key)], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    Store.init(root).configure_signing(key)
    build_history(root)
    return base


def _lines(out: str, pattern: str) -> list[str]:
    return [line for line in out.splitlines() if re.search(pattern, line)]


def story(out: str) -> None:
    # every scenario, with its decorations (branches and tags) and trailers
    assert "(HEAD -> v2, tag: v2.0.0)" in out
    for tag in ("v1.0.0", "v1.1.0", "v1.1.1"):
        assert f"tag: {tag}" in out
    assert "v1.1.1: correct session_analytics.json of v1.1.0" in out
    assert "Session-Version: v1.0.0" in out and "Change: turn" in out


def corrections(out: str) -> None:
    subjects = [line.split(" ", 1)[1] for line in out.splitlines()]
    assert subjects == ["v1.1.1: correct session_analytics.json of v1.1.0"]


def tags(out: str) -> None:
    names = [line.split()[0] for line in out.splitlines() if re.match(r"v\d", line)]
    assert names == ["v1.0.0", "v1.1.0", "v1.1.1", "v2.0.0"]
    assert "deployment plan agreed" in out and "actual outcome known" in out


def tag_object(out: str) -> None:
    assert re.search(r"^object [0-9a-f]{40}$", out, re.M)
    assert "\ntype commit\n" in out and "\ntag v1.1.1\n" in out
    assert re.search(r"^tagger advisor <advisor@agents\.example\.invalid> ", out, re.M)
    assert "actual outcome known" in out and re.search(r"sha256:[0-9a-f]{64}", out)


def finalized_document(out: str) -> None:
    conv = json.loads(out)
    assert [t["turn_id"] for t in conv["conversation_turns"]] == [1, 2, 3, 4, 5]


def metadata_diff(out: str) -> None:
    assert out.startswith("diff --git a/session_metadata.json b/session_metadata.json\n")
    assert '-    "session_version": "v1.0.0"' in out
    assert '+    "session_version": "v1.1.0"' in out


def document_history(out: str) -> None:
    # every change to session_analytics.json in v1, newest first, none of v2's
    commits = _lines(out, r"^commit [0-9a-f]{40}")
    assert len(commits) == 2, out[:2000]
    assert "v1.1.1: correct session_analytics.json of v1.1.0" in out
    assert "v1.0.0: update session_analytics.json" in out
    assert '+    "actual_time_hours": 4.0,' in out or '+    "actual_time_hours": 4,' in out
    assert "v2.0.0" not in out


def fsck(out: str) -> None:
    assert out.strip() == "fsck: clean"


def signature(out: str) -> None:
    assert 'Good "git" signature' in out


def archive_checksums(out: str) -> None:
    assert out.splitlines() == [f"{name}: OK" for name in (
        "conversation.json", "deployment_context.json", "session_analytics.json",
        "session_metadata.json", "sow_document.md")]


#: How to check each recipe, by a command prefix unique to it.
CHECKS: dict[str, Callable[[str], None]] = {
    "git log --all --decorate": story,
    "git log v1 --format='%h %s%x09%(trailers:key=Change,valueonly,separator=)'": corrections,
    "git tag -n9": tags,
    "git cat-file -p v1.1.1": tag_object,
    "git show v1.0.0:conversation.json": finalized_document,
    "git diff v1.0.0 v1.1.0 -- session_metadata.json": metadata_diff,
    "git log -p --follow v1 -- session_analytics.json": document_history,
    "git fsck --strict": fsck,
    "git verify-tag v1.1.1": signature,
    "v=$(mktemp -d) && git archive v1.1.1": archive_checksums,
}


def _check_for(command: str) -> Callable[[str], None]:
    found = [check for prefix, check in CHECKS.items() if command.startswith(prefix)]
    assert len(found) == 1, f"no single check for README recipe {command!r}"
    return found[0]


def test_every_recipe_has_a_check_and_every_check_a_recipe() -> None:
    recipes = [command for command, _ in auditor_recipes() if not command.startswith("cd ")]
    assert len(recipes) == len(CHECKS)
    for command in recipes:
        _check_for(command)
    for command, comment in auditor_recipes():
        assert comment or command.startswith("cd "), f"{command!r} does not say what it shows"


def test_the_section_starts_in_a_customer_repository() -> None:
    first, _ = auditor_recipes()[0]
    assert first == f"cd sessions/{CUSTOMER}"


RECIPES = [command for command, _ in auditor_recipes() if not command.startswith("cd ")]


@pytest.mark.parametrize("command", RECIPES)
def test_recipe_prints_what_the_readme_says(audited: Path, command: str) -> None:
    repo = audited / "sessions" / CUSTOMER
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=repo,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    out = proc.stdout + proc.stderr if command.startswith("git verify-tag") else proc.stdout
    assert out.strip(), f"{command!r} printed nothing"
    _check_for(command)(out)


def test_the_corrections_recipe_reads_the_trailer_not_the_subject(tmp_path: Path) -> None:
    """A summary may say anything (`turn -m "Change: correction"`): the recipe lists a
    commit by its ``Change`` trailer, so only real corrections."""
    (command,) = [c for c in RECIPES if "key=Change" in c]
    root = tmp_path / "sessions"
    build_history(root)
    session = Store(root).customer(CUSTOMER).session()
    session.follow_up()
    session.append_turn({"timestamp": "2025-01-20T10:00:00Z",
                         "user_input": {"query": "Is this a correction?"},
                         "agent_response": {"orchestrator_response": "No."}},
                        message="Change: correction")
    repo = root / CUSTOMER
    git_log = subprocess.run(["git", "log", "v2", "--format=%s", "--grep=^Change: correction"],
                             cwd=repo, capture_output=True, text=True, check=True).stdout
    assert git_log.strip() == "Change: correction"  # what a subject search would list
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {command.replace(' v1 ', ' v2 ')}"],
                          cwd=repo, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == "", proc
