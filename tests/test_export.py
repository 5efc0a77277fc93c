"""Export, import and escalation, on real stores, checked with plain git.

One store is recorded once per module (scenario v1: v1.0.0, follow-up v1.1.0,
correction v1.1.1; scenario v2: open, one turn) and copied for each test that
writes. Round trips prove nothing is lost: the same versions, documents and
tags from a JSON bundle; the same commit ids and objects from a git bundle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    CUSTOMER,
    EXAMPLES,
    ROOT,
    Clock,
    git,
    load_example,
    record_example_session,
    repo_state,
)

from gitstore import ConflictError, IntegrityError, InvalidDocumentError, Store
from gitstore.core.names import JSON_DOCUMENTS
from gitstore.ops import exporting, importing
from gitstore.ops.verify import check_customer

VERSIONS = ["v1.0.0", "v1.1.0", "v1.1.1"]


def cli(*args: str, cwd: Path | None = None, code: int = 0) -> subprocess.CompletedProcess[bytes]:
    """``gitstore ARGS`` in a subprocess (with the data commands registered)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, gitstore.cli.app, gitstore.cli.data; "
         "gitstore.cli.app.main(sys.argv[1:])", *args],
        capture_output=True, env=env, cwd=cwd, timeout=60, check=False)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert proc.returncode == code, f"exit {proc.returncode}: {proc.stderr.decode()}"
    return proc


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source") / "sessions"
    store = Store.init(root, clock=Clock())
    session = record_example_session(store)
    session.follow_up(message="customer asked about alarms")
    for path in sorted((EXAMPLES / "follow_up" / "turns").glob("turn-*.json")):
        session.append_turn(path.read_bytes())
    session.put("session_metadata.json", load_example("follow_up", "session_metadata.json"))
    session.finalize(message="follow-up questions answered")
    session.correct({"session_analytics.json": load_example("correction",
                                                            "session_analytics.json")},
                    reason="actual implementation time came in")
    v2 = store.customer(CUSTOMER).new_session(created="2025-01-15T12:00:00Z")
    v2.append_turn({"timestamp": "2025-01-15T12:01:00Z",
                    "user_input": {"query": "And for <GCP> Cloud Run & Pub/Sub?"},
                    "agent_response": {"orchestrator_response": "Let me look."}})
    return root


@pytest.fixture
def target(tmp_path: Path) -> Store:
    return Store.init(tmp_path / "restored")


def tag_without_commit(repo: Path, tag: str) -> str:
    """A tag object as git prints it, minus what names the commit id."""
    text = git(repo, "cat-file", "-p", tag)
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith(("object ", "Commit: ")))


def files_at(repo: Path, rev: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "--name-only", rev).split()
    return {n: git(repo, "show", f"{rev}:{n}") for n in names}


def test_json_round_trip_keeps_versions_tags_and_documents(source: Path, target: Store,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    with out.open("w", encoding="utf-8") as f:
        exporting.write_json_export(Store(source), f, [CUSTOMER])
    assert importing.import_file(target, out) == [CUSTOMER]
    a, b = source / CUSTOMER, target.root / CUSTOMER
    assert git(a, "tag", "-l") == git(b, "tag", "-l") == "".join(f"{v}\n" for v in VERSIONS)
    for version in VERSIONS:
        assert files_at(a, version) == files_at(b, version)  # SHA256SUMS included
        assert tag_without_commit(a, version) == tag_without_commit(b, version)
        # replayed commit by commit with the same authors, times and committer
        assert git(a, "rev-parse", f"{version}^{{commit}}") == \
            git(b, "rev-parse", f"{version}^{{commit}}")
    assert files_at(a, "v2") == files_at(b, "v2")  # the open version too
    assert git(b, "symbolic-ref", "HEAD").strip() == "refs/heads/v2"
    mine = [(v.version, v.status) for v in target.customer(CUSTOMER).versions()]
    assert mine == [(v.version, v.status) for v in Store(source).customer(CUSTOMER).versions()]
    assert not check_customer(target.customer(CUSTOMER)).problems
    git(b, "fsck", "--strict")
    ops = [r["op"] for r in target.customer(CUSTOMER).audit_log.records()]
    assert "import" in ops and not target.customer(CUSTOMER).audit_log.verify()


def test_json_bundle_format(source: Path, tmp_path: Path) -> None:
    proc = cli("--root", str(source), "export", CUSTOMER, "-O", "-")
    data = json.loads(proc.stdout)
    assert data["format"] == "gitstore-export" and data["format_version"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["exported_at"])
    (cust,) = data["customers"]
    assert cust["customer"] == CUSTOMER
    v1, v2 = cust["scenarios"]
    assert [v["version"] for v in v1["versions"]] == VERSIONS and v1["open"] is None
    first = v1["versions"][0]
    assert first["status"] == "finalized" and first["tag"]["name"] == "v1.0.0"
    assert "Why: deployment plan agreed" in first["tag"]["message"]
    assert first["commit"] == git(source / CUSTOMER, "rev-parse", "v1.0.0^{commit}").strip()
    assert isinstance(first["documents"]["conversation.json"], dict)
    assert first["documents"]["sow_document.md"].startswith("# ")
    assert first["manifest"].startswith("sha256:")
    assert v2["state"] == "open" and v2["versions"] == []
    assert v2["open"]["version"] == "v2.0.0" and v2["open"]["tag"] is None
    log = git(source / CUSTOMER, "rev-list", "v1").split()
    assert [h["commit"] for h in v1["history"]] == log


def test_export_of_one_version(source: Path) -> None:
    data = json.loads(cli("--root", str(source), "export", CUSTOMER, "v1.1.0",
                          "-O", "-").stdout)
    assert data["selection"] == "v1.1.0"
    (scenario,) = data["customers"][0]["scenarios"]
    assert [v["version"] for v in scenario["versions"]] == ["v1.1.0"]
    tip = git(source / CUSTOMER, "rev-parse", "v1.1.0^{commit}").strip()
    assert scenario["history"][0]["commit"] == tip


def test_export_all_writes_a_timestamped_file(source: Path, tmp_path: Path) -> None:
    cli("--root", str(source), "export", "--all", cwd=tmp_path)
    (written,) = tmp_path.iterdir()
    assert re.fullmatch(r"gitstore-export-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.json", written.name)
    assert [c["customer"] for c in json.loads(written.read_text())["customers"]] == [CUSTOMER]
    cli("--root", str(source), "export", code=2)  # neither CUSTOMER nor --all


def test_git_bundle_round_trip_keeps_commit_ids(source: Path, target: Store,
                                                tmp_path: Path) -> None:
    bundle = tmp_path / "x.bundle"
    cli("--root", str(source), "export", CUSTOMER, "--format", "git-bundle", "-O", str(bundle))
    assert bundle.read_bytes().startswith(b"# v2 git bundle\n")
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    verified = subprocess.run(["git", "-C", str(empty), "bundle", "verify", str(bundle)],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stderr
    assert "complete history" in verified.stdout
    proc = cli("--root", str(target.root), "import", str(bundle), "-o", "json")
    assert json.loads(proc.stdout) == {"imported": [CUSTOMER]}
    assert repo_state(source / CUSTOMER) == repo_state(target.root / CUSTOMER)
    assert git(target.root / CUSTOMER, "symbolic-ref", "HEAD").strip() == "refs/heads/v2"
    git(target.root / CUSTOMER, "fsck", "--strict")
    assert not check_customer(target.customer(CUSTOMER)).problems
    assert not list(target.root.glob(".import-*"))


def test_import_refuses_an_existing_customer(source: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    out = tmp_path / "x.json"
    with out.open("w", encoding="utf-8") as f:
        exporting.write_json_export(Store(copy), f, [CUSTOMER])
    bundle = tmp_path / "x.bundle"
    with bundle.open("wb") as fb:
        exporting.write_git_bundle(Store(copy).customer(CUSTOMER), fb)
    before = repo_state(copy / CUSTOMER)
    with pytest.raises(ConflictError):
        importing.import_file(Store(copy), out)
    with pytest.raises(ConflictError):
        importing.import_file(Store(copy), bundle)
    cli("--root", str(copy), "import", str(out), code=6)
    assert repo_state(copy / CUSTOMER) == before
    assert not list(copy.glob(".import-*"))


def test_json_import_that_fails_a_check_leaves_nothing(source: Path, target: Store,
                                                       tmp_path: Path) -> None:
    data = json.loads(cli("--root", str(source), "export", CUSTOMER, "-O", "-").stdout)
    commits = data["customers"][0]["scenarios"][0]["commits"]
    added = [c["changes"]["conversation.json"]["turns_added"] for c in commits
             if c["changes"].get("conversation.json", {}).get("turns_added")]
    added[-1][-1]["turn_id"] = 99  # that turn would be refused by the integrity check
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(InvalidDocumentError, match="turn_id"):
        importing.import_file(target, bad)
    assert not (target.root / CUSTOMER).exists()
    assert target.customers() == []


def test_bundle_import_that_fails_verify_is_removed(source: Path, target: Store,
                                                    tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", "--branch", "v1", str(source / CUSTOMER), str(work))
    conv = work / "conversation.json"
    conv.write_text(conv.read_text().replace("API Gateway", "API  Gateway"))
    git(work, "commit", "-q", "-am", "edited without updating SHA256SUMS")
    bundle = tmp_path / "bad.bundle"
    git(work, "bundle", "create", str(bundle), "v1", "--tags")
    with pytest.raises(IntegrityError, match="failed verification"):
        importing.import_file(target, bundle)
    assert not (target.root / CUSTOMER).exists()
    assert not list(target.root.glob(".import-*"))
    cli("--root", str(target.root), "import", str(bundle), code=7)
    # a bundle whose ref names an object its pack does not hold
    good = tmp_path / "good.bundle"
    with good.open("wb") as f:
        exporting.write_git_bundle(Store(source).customer(CUSTOMER), f)
    data = good.read_bytes()
    tip = git(source / CUSTOMER, "rev-parse", "v1").strip().encode()
    forged = tmp_path / "forged.bundle"
    forged.write_bytes(data.replace(tip + b" refs/heads/v1", b"1" * 40 + b" refs/heads/v1"))
    cli("--root", str(target.root), "import", str(forged), code=7)
    assert target.customers() == [] and not list(target.root.glob(".import-*"))


def test_import_refuses_what_is_not_an_export(target: Store, tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"format": "something-else"}')
    cli("--root", str(target.root), "import", str(junk), code=2)
    partial = tmp_path / "partial.bundle"
    partial.write_bytes(b"# v2 git bundle\n-" + b"1" * 40 + b" base\n" + b"2" * 40
                        + b" refs/heads/v1\n\nPACK")
    cli("--root", str(target.root), "import", str(partial), code=2)
    cli("--root", str(target.root), "import", str(tmp_path / "missing.json"), code=3)
    assert target.customers() == []


def test_escalation_has_the_complete_context(source: Path, tmp_path: Path) -> None:
    cli("--root", str(source), "escalate", CUSTOMER, "v1", cwd=tmp_path)
    (written,) = tmp_path.iterdir()
    assert re.fullmatch(rf"gitstore-escalation-{CUSTOMER}-v1-[0-9T-]+\.md", written.name)
    text = written.read_text(encoding="utf-8")
    repo = source / CUSTOMER
    for version in VERSIONS:
        assert f"### {version}: finalized" in text
        for line in git(repo, "tag", "-l", "--format=%(contents)", version).splitlines():
            assert line.replace("<", "&lt;").replace(">", "&gt;") in text or line in text
    conversation = json.loads(git(repo, "show", "v1:conversation.json"))
    for turn in conversation["conversation_turns"]:
        assert f"### Turn {turn['turn_id']} ({turn['timestamp']})" in text
        query = turn["user_input"]["query"].replace("&", "&amp;").replace("<", "&lt;")
        assert query.replace(">", "&gt;") in text
    for commit in git(repo, "rev-list", "v1").split():
        assert f"`{commit[:12]}`" in text
    assert "## Statement of work (v1.1.1)" in text
    sow = git(repo, "show", "v1.1.1:sow_document.md")
    body = [line for line in sow.splitlines() if line and not line.startswith("#")]
    assert all(line in text for line in body[:10])
    assert text.index("## Conversation") < text.index("## History") < \
        text.index("## Statement of work")
    for name in JSON_DOCUMENTS[1:]:
        assert f"({name})" in text


def test_escalation_of_an_open_scenario_to_stdout(source: Path) -> None:
    text = cli("--root", str(source), "escalate", CUSTOMER, "-O", "-").stdout.decode()
    assert "scenario v2" in text and "v2.0.0 (open)" in text
    assert "And for &lt;GCP&gt; Cloud Run &amp; Pub/Sub?" in text
    assert "no statement of work" in text



def test_round_trips_after_a_retention_purge(source: Path, tmp_path: Path) -> None:
    from datetime import timedelta

    from gitstore.ops import retention

    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    later = Store(copy, clock=Clock(Clock().start + timedelta(days=800)))
    assert [i.action for i in retention.apply(later)] == ["purge-keep-analytics"]
    out = tmp_path / "x.json"
    with out.open("w", encoding="utf-8") as f:
        exporting.write_json_export(Store(copy), f, [CUSTOMER])
    scenario = json.loads(out.read_text())["customers"][0]["scenarios"][0]
    assert scenario["state"] == "retained" and scenario["versions"] == []
    assert list(scenario["retained"]["documents"]) == ["session_analytics.json"]
    restored = Store.init(tmp_path / "restored")
    importing.import_file(restored, out)
    a, b = copy / CUSTOMER, restored.root / CUSTOMER
    # the analytics-only root commit comes back identical; the open v2 is replayed
    assert git(a, "rev-parse", "v1") == git(b, "rev-parse", "v1")
    assert files_at(a, "v2") == files_at(b, "v2")
    assert not check_customer(restored.customer(CUSTOMER)).problems
    bundle = tmp_path / "x.bundle"
    with bundle.open("wb") as fb:
        exporting.write_git_bundle(Store(copy).customer(CUSTOMER), fb)
    again = Store.init(tmp_path / "again")
    importing.import_file(again, bundle)
    assert repo_state(a) == repo_state(again.root / CUSTOMER)
