"""The command line as a user runs it: ``python -m gitstore`` in a subprocess.

One module-scoped store is taken through the whole lifecycle with the CLI
(``init``, ``new``, ``turn`` from a file and from stdin, ``put``, ``summary``,
``finalize``, ``follow-up``, ``correct`` with and without ``DOCUMENT=FILE``); the
read commands are then checked against it and against plain ``git``. Data goes
to stdout, messages to stderr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import CUSTOMER, EXAMPLES, ROOT, SESSION_ID, git, load_example

from gitstore.cli import app as cli_mod
from gitstore.core import canonical
from gitstore.core.names import DOCUMENTS, MANIFEST
from gitstore.errors import EXIT_CODES

AGENT = "cli-advisor <cli-advisor@agents.example.invalid>"
SHA12 = r"[0-9a-f]{12}"


def cli(*args: str, root: Path | None = None, stdin: bytes | None = None,
        env: dict[str, str] | None = None, code: int | None = 0,
        cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m gitstore [--root ROOT] ARGS``; check the exit code and
    that no traceback was printed."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = str(ROOT)
    environ.pop("GITSTORE_ROOT", None)
    environ.update(env or {})
    prefix = ["--root", str(root)] if root is not None else []
    proc = subprocess.run([sys.executable, "-m", "gitstore", *prefix, *args],
                          input=stdin or b"", capture_output=True, env=environ, cwd=cwd,
                          timeout=60, check=False)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    if code is not None:
        assert proc.returncode == code, \
            f"gitstore {' '.join(args)}: exit {proc.returncode}\n{proc.stderr.decode()}"
    return proc


def out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8")


def err(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode("utf-8")


@dataclass
class Life:
    root: Path
    files: Path
    steps: dict[str, subprocess.CompletedProcess[bytes]] = field(default_factory=dict)

    @property
    def repo(self) -> Path:
        return self.root / CUSTOMER

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return cli(*args, root=self.root, **kw)


@pytest.fixture(scope="module")
def life(tmp_path_factory: pytest.TempPathFactory) -> Life:
    base = tmp_path_factory.mktemp("cli")
    files = base / "inputs"
    files.mkdir()
    conv = load_example("session", "conversation.json")
    # turns 3-5 arrive as a whole document, the way an agent may re-sync its transcript
    (files / "conversation.json").write_bytes(canonical.dumps(
        {"conversation_turns": conv["conversation_turns"],
         "conversation_summary": {"total_turns": 5}}))
    (files / "summary.json").write_bytes(canonical.dumps(conv["conversation_summary"]))
    fix2 = load_example("correction", "session_analytics.json")
    fix2["prediction_accuracy"]["actual_time_hours"] = 4.5
    (files / "fix2.json").write_bytes(canonical.dumps(fix2))
    life = Life(base / "sessions", files)
    turns = EXAMPLES / "session" / "turns"
    follow = EXAMPLES / "follow_up"
    s = life.steps
    s["init"] = life.run("init")
    s["new"] = life.run("new", CUSTOMER, "--session-id", SESSION_ID,
                        "--created", "2025-01-15T10:30:00Z")
    s["turn1"] = life.run("turn", CUSTOMER, str(turns / "turn-01.json"))
    s["turn2"] = life.run("turn", CUSTOMER, "-", "-o", "json",
                          stdin=(turns / "turn-02.json").read_bytes())
    s["put-conv"] = life.run("put", CUSTOMER, "conversation", str(files / "conversation.json"))
    s["summary"] = life.run("summary", CUSTOMER, str(files / "summary.json"))
    s["put-ctx"] = life.run("put", CUSTOMER, "deployment_context.json",
                            str(EXAMPLES / "session" / "deployment_context.json"))
    s["put-meta"] = life.run("put", CUSTOMER, "metadata",
                             str(EXAMPLES / "session" / "session_metadata.json"))
    s["put-analytics"] = life.run(
        "put", CUSTOMER, "session_analytics.json", "-",
        stdin=(EXAMPLES / "session" / "session_analytics.json").read_bytes())
    s["finalize"] = life.run("finalize", CUSTOMER, "-m", "deployment plan agreed")
    agent = ["--agent", AGENT]
    s["follow-up"] = cli(*agent, "follow-up", CUSTOMER, "-m", "alarms and tracing",
                         root=life.root)
    s["turn6"] = cli(*agent, "turn", CUSTOMER, str(follow / "turns" / "turn-06.json"),
                     "-o", "json", root=life.root)
    s["turn7"] = cli("turn", CUSTOMER, str(follow / "turns" / "turn-07.json"),
                     root=life.root, env={"GITSTORE_AGENT": AGENT})
    s["put-meta2"] = cli(*agent, "put", CUSTOMER, "session_metadata.json",
                         str(follow / "session_metadata.json"), root=life.root)
    s["finalize2"] = cli(*agent, "finalize", CUSTOMER, "--version", "v1.1.0", root=life.root)
    s["correct"] = life.run("correct", CUSTOMER,
                            str(EXAMPLES / "correction" / "session_analytics.json"),
                            "-r", "actual outcome known")
    s["correct-named"] = life.run("correct", CUSTOMER, f"analytics={files / 'fix2.json'}",
                                  "--reason", "took 4.5 hours", "--base", "v1.1.1",
                                  "-o", "json")
    return life


# --------------------------------------------------------------------------- writing

def test_init_reports_on_stderr_only(life: Life) -> None:
    assert life.steps["init"].stdout == b""
    assert err(life.steps["init"]) == f"Initialized gitstore in {life.root}\n"
    assert (life.root / ".gitstore").is_dir()


def test_write_commands_print_data_on_stdout_and_nothing_on_stderr(life: Life) -> None:
    for name, proc in life.steps.items():
        if name.endswith("init"):
            continue
        assert proc.stderr == b"", (name, err(proc))
        assert out(proc).endswith("\n") and out(proc).count("\n") >= 1, name


def test_write_command_outputs(life: Life) -> None:
    s = {name: out(proc) for name, proc in life.steps.items()}
    assert re.fullmatch(rf"{CUSTOMER} v1\.0\.0 {SHA12} {SESSION_ID}\n", s["new"])
    assert re.fullmatch(rf"{CUSTOMER} v1\.0\.0 {SHA12} turn 1\n", s["turn1"])
    turn2 = json.loads(s["turn2"])
    assert (turn2["customer"], turn2["version"], turn2["change"], turn2["turn"]) == \
        (CUSTOMER, "v1.0.0", "turn", 2)
    assert re.fullmatch(r"[0-9a-f]{40}", turn2["commit"])
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", turn2["manifest"])
    assert turn2["tag"] is None
    assert re.fullmatch(rf"{CUSTOMER} v1\.0\.0 {SHA12} update\n", s["put-conv"])
    assert re.fullmatch(rf"{CUSTOMER} v1\.0\.0 {SHA12} finalize, tagged v1\.0\.0\n",
                        s["finalize"])
    assert re.fullmatch(rf"{CUSTOMER} v1\.1\.0 {SHA12} follow-up\n", s["follow-up"])
    assert json.loads(s["turn6"])["turn"] == 6
    assert re.fullmatch(rf"{CUSTOMER} v1\.1\.0 {SHA12} turn 7\n", s["turn7"])
    assert re.fullmatch(rf"{CUSTOMER} v1\.1\.0 {SHA12} finalize, tagged v1\.1\.0\n",
                        s["finalize2"])
    assert re.fullmatch(rf"{CUSTOMER} v1\.1\.1 {SHA12} correction, tagged v1\.1\.1\n",
                        s["correct"])
    named = json.loads(s["correct-named"])
    assert (named["version"], named["change"]) == ("v1.1.2", "correction")
    assert named["tag"] is not None
    # every short id printed is the commit the branch moved to at that step
    assert git(life.repo, "rev-parse", "refs/heads/v1").strip() == named["commit"]


def test_the_recorded_session_is_the_example(life: Life) -> None:
    stored = json.loads(git(life.repo, "show", "v1.0.0:conversation.json"))
    assert stored == load_example("session", "conversation.json")
    analytics = json.loads(git(life.repo, "show", "v1.1.2:session_analytics.json"))
    assert analytics["prediction_accuracy"]["actual_time_hours"] == 4.5
    assert json.loads(git(life.repo, "show", "v1.1.1:session_analytics.json")) == \
        load_example("correction", "session_analytics.json")


def test_agent_option_and_env_set_the_author(life: Life) -> None:
    authors = git(life.repo, "log", "--reverse", "--format=%an <%ae>|%cn|%s", "v1").splitlines()
    by_summary = [line.split("|") for line in authors]
    assert all(c == "gitstore" for _, c, _ in by_summary)
    follow = [s for _, _, s in by_summary].index("v1.1.0: open follow-up to v1.0.0")
    assert {a for a, _, _ in by_summary[:follow]} == \
        {"reporter <reporter@agents.gitstore.invalid>"}
    # --agent for follow-up, turn 6, put and finalize; GITSTORE_AGENT for turn 7
    assert {a for a, _, _ in by_summary[follow:follow + 5]} == {AGENT}


# --------------------------------------------------------------------------- reading

#: Every read command below, run once, concurrently (they only read): name ->
#: (arguments, expected exit code). Each process still starts from scratch.
READS: dict[str, tuple[list[str], int]] = {
    "show": (["show", CUSTOMER], 0),
    "show-json": (["show", CUSTOMER, "v1.0.0", "-o", "json"], 0),
    "show-doc-conversation": (["show", CUSTOMER, "conversation"], 0),
    "show-doc-v1.0.0-conversation.json": (["show", CUSTOMER, "v1.0.0", "conversation.json"], 0),
    "show-doc-HEAD-SHA256SUMS": (["show", CUSTOMER, "HEAD", "SHA256SUMS"], 0),
    "show-meta-json": (["show", CUSTOMER, "v1.0.0", "metadata", "-o", "json"], 0),
    "show-sow-json": (["show", CUSTOMER, "v1.0.0", "sow", "-o", "json"], 0),
    "show-v1": (["show", CUSTOMER, "v1", "-o", "json"], 0),
    "show-HEAD~1": (["show", CUSTOMER, "HEAD~1", "-o", "json"], 0),
    "versions-json": (["versions", CUSTOMER, "-o", "json"], 0),
    "versions": (["versions", CUSTOMER], 0),
    "log-json": (["log", CUSTOMER, "-o", "json"], 0),
    "log-2": (["log", CUSTOMER, "-n", "2"], 0),
    "render": (["render", CUSTOMER, "v1.0.0"], 0),
    "customers": (["customers"], 0),
    "verify": (["verify"], 0),
    "verify-json": (["verify", CUSTOMER, "-o", "json"], 0),
    "show-missing-version": (["show", CUSTOMER, "v9.9.9"], 3),
    "turn-to-finalized": (["turn", CUSTOMER, "-"], 5),
}


@pytest.fixture(scope="module")
def reads(life: Life) -> dict[str, subprocess.CompletedProcess[bytes]]:
    def run(name: str) -> subprocess.CompletedProcess[bytes]:
        args, code = READS[name]
        return life.run(*args, code=code, stdin=b"{}" if name == "turn-to-finalized" else None)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(READS, pool.map(run, READS), strict=True))


def test_show_text(life: Life, reads: dict[str, Any]) -> None:
    proc = reads["show"]
    assert proc.stderr == b""
    lines = out(proc).splitlines()
    fields = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines
                  if not line.startswith((" ", "files")))
    assert fields["customer"] == CUSTOMER
    assert fields["version"] == "v1.1.2"
    assert fields["change"] == "correction"
    assert fields["session"] == SESSION_ID
    assert fields["commit"] == git(life.repo, "rev-parse", "v1.1.2^{commit}").strip()
    listed = {line.split()[0]: int(line.split()[1]) for line in lines if line.startswith("  ")}
    assert set(listed) == {*DOCUMENTS, MANIFEST}
    for name, size in listed.items():
        assert size == len(git(life.repo, "show", f"v1.1.2:{name}").encode()), name


def test_show_json_whole_snapshot(life: Life, reads: dict[str, Any]) -> None:
    data = json.loads(out(reads["show-json"]))
    assert (data["customer"], data["version"], data["change"], data["session_id"]) == \
        (CUSTOMER, "v1.0.0", "finalize", SESSION_ID)
    assert set(data["documents"]) == set(DOCUMENTS)
    assert data["documents"]["conversation.json"] == load_example("session", "conversation.json")
    assert data["documents"]["sow_document.md"] == git(life.repo, "show",
                                                       "v1.0.0:sow_document.md")
    assert data["manifest"] in git(life.repo, "cat-file", "-p", "v1.0.0")


def test_show_one_document_is_byte_for_byte(life: Life, reads: dict[str, Any]) -> None:
    for args, rev in ((["conversation"], "v1"), (["v1.0.0", "conversation.json"], "v1.0.0"),
                      (["HEAD", "SHA256SUMS"], "HEAD")):
        proc = reads["show-doc-" + "-".join(args)]
        name = {"conversation": "conversation.json", "sow": "sow_document.md"}.get(
            args[-1], args[-1])
        expected = subprocess.run(["git", "-C", str(life.repo), "show", f"{rev}:{name}"],
                                  capture_output=True, check=True).stdout
        assert proc.stdout == expected, args
        assert proc.stderr == b""


def test_show_document_as_json(life: Life, reads: dict[str, Any]) -> None:
    meta = json.loads(out(reads["show-meta-json"]))
    assert meta["session_info"]["session_version"] == "v1.0.0"
    sow = json.loads(out(reads["show-sow-json"]))
    assert sow["text"] == git(life.repo, "show", "v1.0.0:sow_document.md")


def test_show_scenario_and_relative_revisions(life: Life, reads: dict[str, Any]) -> None:
    scenario = json.loads(out(reads["show-v1"]))
    assert scenario["version"] == "v1.1.2"
    previous = json.loads(out(reads["show-HEAD~1"]))
    assert previous["version"] == "v1.1.1"
    assert previous["commit"] == git(life.repo, "rev-parse", "v1.1.1^{commit}").strip()


def test_versions_json_and_text(life: Life, reads: dict[str, Any]) -> None:
    items = json.loads(out(reads["versions-json"]))
    assert [(v["version"], v["status"], v["change"]) for v in items] == [
        ("v1.0.0", "finalized", "finalize"), ("v1.1.0", "finalized", "finalize"),
        ("v1.1.1", "finalized", "correction"), ("v1.1.2", "finalized", "correction")]
    for v in items:
        assert v["commit"] == git(life.repo, "rev-parse", f"{v['version']}^{{commit}}").strip()
        assert v["tag"] == git(life.repo, "rev-parse", f"refs/tags/{v['version']}").strip()
        assert v["completeness"] == 100
    text = out(reads["versions"]).splitlines()
    assert [line.split()[0] for line in text] == [v["version"] for v in items]


def test_log_json_and_text(life: Life, reads: dict[str, Any]) -> None:
    entries = json.loads(out(reads["log-json"]))
    commits = git(life.repo, "rev-list", "--all").split()
    assert sorted(e["commit"] for e in entries) == sorted(commits)
    assert entries[0]["version"] == "v1.1.2" and entries[0]["tags"] == ["v1.1.2"]
    turns = sorted(e["turn"] for e in entries if e["change"] == "turn")
    assert turns == [1, 2, 6, 7]      # turns 3-5 came in with `put conversation`
    for e in entries:
        assert e["trailers"]["Session-Id"] == SESSION_ID
        assert e["trailers"]["Completeness"].isdigit()
    limited = out(reads["log-2"]).splitlines()
    assert len(limited) == 2
    assert limited[0].startswith(entries[0]["commit"][:12])
    assert "(tag: v1.1.2)" in limited[0]


def test_render_equals_the_stored_sow(life: Life, reads: dict[str, Any],
                                      tmp_path: Path) -> None:
    stored = git(life.repo, "show", "v1.0.0:sow_document.md")
    proc = reads["render"]
    assert out(proc) == stored and proc.stderr == b""
    target = tmp_path / "sow.md"
    proc = life.run("render", CUSTOMER, "v1.1.2", "-O", str(target))
    assert proc.stdout == b"" and err(proc) == f"wrote {target}\n"
    assert target.read_text(encoding="utf-8") == git(life.repo, "show", "v1.1.2:sow_document.md")


def test_customers_and_gitstore_root_env(life: Life, reads: dict[str, Any],
                                         tmp_path: Path) -> None:
    assert out(reads["customers"]) == f"{CUSTOMER}\n"
    proc = cli("customers", "-o", "json", env={"GITSTORE_ROOT": str(life.root)}, cwd=tmp_path)
    assert json.loads(out(proc)) == [CUSTOMER]
    # without --root or GITSTORE_ROOT the default is ./sessions, which is not here
    proc = cli("customers", cwd=tmp_path, code=3)
    assert proc.stdout == b"" and err(proc).startswith("gitstore: error: no store at sessions")
    # --root wins over the environment
    proc = cli("customers", root=life.root, env={"GITSTORE_ROOT": str(tmp_path / "nowhere")})
    assert out(proc) == f"{CUSTOMER}\n"


def test_verify_clean(life: Life, reads: dict[str, Any]) -> None:
    proc = reads["verify"]
    assert out(proc) == f"{CUSTOMER}: ok (1 scenario(s), 4 version(s))\n"
    assert proc.stderr == b""
    report = json.loads(out(reads["verify-json"]))
    assert report == [{"customer": CUSTOMER, "ok": True, "problems": [], "scenarios": 1,
                       "versions": 4}]


def test_verify_exits_7_on_damage(life: Life, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(life.root, root, symlinks=True)
    git(root / CUSTOMER, "update-ref", "-d", "refs/tags/v1.1.2")
    proc = cli("verify", root=root, code=7)
    assert "tag v1.1.2 is missing" in out(proc)
    assert all(line.startswith(f"{CUSTOMER}: ") for line in out(proc).splitlines())
    lines = err(proc).splitlines()
    assert len(lines) == 1 and re.fullmatch(
        r"gitstore: error: \d+ problem\(s\) in 1 of 1 customer\(s\)", lines[0]), lines


def test_correct_accepts_a_file_path_containing_an_equals_sign(life: Life,
                                                              tmp_path: Path) -> None:
    """``DOCUMENT=FILE`` splits at the first ``=``: document names never contain one,
    file paths may (``/data/run=3/fix.json``)."""
    root = tmp_path / "copy"
    shutil.copytree(life.root, root, symlinks=True)
    folder = tmp_path / "run=3"
    folder.mkdir()
    fix = load_example("correction", "session_analytics.json")
    fix["prediction_accuracy"]["actual_time_hours"] = 5.0
    (folder / "fix.json").write_bytes(canonical.dumps(fix))
    proc = cli("correct", CUSTOMER, f"analytics={folder / 'fix.json'}", "-r", "re-measured",
               root=root)
    assert re.fullmatch(rf"{CUSTOMER} v1\.1\.3 {SHA12} correction, tagged v1\.1\.3\n", out(proc))
    stored = json.loads(git(root / CUSTOMER, "show", "v1.1.3:session_analytics.json"))
    assert stored["prediction_accuracy"]["actual_time_hours"] == 5.0


def test_errors_go_to_stderr_with_the_documented_code(reads: dict[str, Any]) -> None:
    proc = reads["show-missing-version"]
    assert proc.stdout == b""
    assert err(proc).startswith("gitstore: error: ") and err(proc).count("\n") == 1
    proc = reads["turn-to-finalized"]   # v1.1.2 is finalized
    assert proc.stdout == b"" and "finalized" in err(proc)


# --------------------------------------------------------------------------- help

def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if command.hidden:
            continue
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


def test_group_help_lists_every_exit_code() -> None:
    proc = cli("--help")
    text = out(proc)
    assert proc.stderr == b"" and text.startswith("Usage: gitstore ")
    assert "Exit codes:" in text
    section = text[text.index("Exit codes:"):]
    for key, code in EXIT_CODES.items():
        assert re.search(rf"(^|\s){code}\s+\S", section), (key, code)
    for label in ("usage error", "not found", "invalid document", "version-rule violation",
                  "integrity failure", "input too large", "storage error"):
        assert label in section
    for (name, *_) in _commands(cli_mod.cli):
        assert re.search(rf"^  {re.escape(name)}\s", text, re.M), name


@pytest.mark.parametrize("command", _commands(cli_mod.cli), ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
                                ) -> None:
    with pytest.raises(SystemExit) as info:
        cli_mod.main([*command, "--help"])
    assert info.value.code == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith(f"Usage: gitstore {' '.join(command)} ")
    assert "-h, --help" in captured.out


@pytest.mark.parametrize("args", [
    ["bogus-cmd"], ["lst"], ["--lock-timeout", "-1", "versions", "x"], ["show"],
    ["versions", "x", "--output", "yaml"], ["log", "x", "-n", "zero"],
])
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list[str]) -> None:
    proc = cli(*args, root=tmp_path, code=2)
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitstore: error: "), lines
    assert "--help`" in lines[0] and proc.stdout == b""
