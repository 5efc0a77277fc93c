"""The command line of an encrypted store: ``init --encrypt``, transparent writes and
reads, ``shred``, ``keys status|backup|restore|rotate`` and the ``textconv`` driver
that plain git runs.

Every store here is made by ``gitstore init --encrypt`` in a temp dir; commands run
in process through ``run_cli``; what is stored is checked with the real ``git``
binary (ciphertext in the objects, plaintext through ``--textconv`` for a key
holder only).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    CUSTOMER,
    ROOT,
    CliResult,
    example_turn,
    git,
    load_example,
    record_example_session,
    run_cli,
)

from gitstore import Store
from gitstore.errors import EXIT_CODES

TOKEN = "ENC[AES256_GCM,"
#: The example's first question: stored sealed, shown in clear.
MARKER = load_example("session", "turns", "turn-01.json")["user_input"]["query"]
#: A follow-up question written through the CLI.
FOLLOW_MARKER = "MARKER follow-up question 7f3a9c: is tracing billed per span?"


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, f"exit {result.code}: {result.err}"
    assert "Traceback" not in result.err
    return result


def fails(result: CliResult, name: str, *words: str) -> str:
    """The one error line of a failed run, checked for its exit code and words."""
    assert result.code == EXIT_CODES[name], f"exit {result.code}, not {name}: {result.err}"
    errors = [line for line in result.err.splitlines() if line.startswith("gitstore: error:")]
    assert len(errors) == 1 and "Traceback" not in result.err, result.err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def encrypted(tmp_path: Path, *, record: bool = True) -> tuple[Path, Path]:
    """A store made by ``init --encrypt --master-key-file`` (the key file recorded in
    its config), holding the example session finalized as v1.0.0."""
    root, key = tmp_path / "sessions", tmp_path / "master.key"
    ok(run_cli(root, "init", "--encrypt", "--master-key-file", str(key)))
    if record:
        record_example_session(Store(root))
    return root, key


def follow_up_turn(tmp_path: Path) -> Path:
    turn = copy.deepcopy(example_turn(6))
    turn["user_input"]["query"] = FOLLOW_MARKER
    turn.pop("turn_id", None)
    path = tmp_path / "turn.json"
    path.write_text(json.dumps(turn), encoding="utf-8")
    return path


def show_conversation(root: Path, *extra: str) -> CliResult:
    return run_cli(root, "show", CUSTOMER, *extra, "conversation.json")


def git_env(**extra: str) -> dict[str, str]:
    """The environment of a plain git run (its textconv runs ``python -m gitstore``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITSTORE_MASTER_KEY")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def plain_git(repo: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    return proc.stdout.decode("utf-8")


def status(root: Path) -> Any:
    return ok(run_cli(root, "keys", "status", "-o", "json")).json()


# -- init --encrypt -----------------------------------------------------------------

def test_init_encrypt_creates_the_master_key_and_says_what_it_means(tmp_path: Path) -> None:
    root, key = tmp_path / "sessions", tmp_path / "master.key"
    first = ok(run_cli(root, "init", "--encrypt", "--master-key-file", str(key)))
    assert first.out == b""
    assert f"created master key file {key}" in first.err
    assert "customers created from now on are encrypted" in first.err
    assert "existing customers stay" in first.err
    assert "gitstore: warning: losing the key store" in first.err
    assert "gitstore keys backup" in first.err
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(base64.b64decode(key.read_bytes().strip(), validate=True)) == 32
    config = json.loads((root / ".gitstore" / "config.json").read_text("utf-8"))
    assert config["encrypt"] is True and config["master_key_file"] == str(key)
    secret = key.read_bytes()
    again = ok(run_cli(root, "init", "--encrypt", "--master-key-file", str(key)))
    assert "created master key" not in again.err and f"master key file {key}" in again.err
    assert key.read_bytes() == secret                     # never replaced
    info = status(root)
    assert info["encrypt"] is True and info["master_origin"] == str(key)
    assert info["keys"] == [] and info["encrypted_customers"] == []


def test_init_encrypt_refusals_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    for var in ("GITSTORE_MASTER_KEY", "GITSTORE_MASTER_KEY_FILE",
                "GITSTORE_MASTER_KEY_COMMAND"):
        monkeypatch.delenv(var, raising=False)
    root, key = tmp_path / "sessions", tmp_path / "master.key"
    fails(run_cli(root, "init", "--master-key-file", str(key)), "usage", "--encrypt")
    fails(run_cli(root, "init", "--encrypt"), "usage", "needs a master key")
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n", encoding="utf-8")
    fails(run_cli(root, "init", "--encrypt", "--master-key-file", str(bad)), "usage",
          "32 random bytes")
    fails(run_cli(root, "init", "--encrypt", "--master-key-file", str(root / "master.key")),
          "usage", "inside the store root")
    assert not root.exists() and not key.exists()


def test_existing_customers_stay_plaintext(tmp_path: Path) -> None:
    root, key = tmp_path / "sessions", tmp_path / "master.key"
    ok(run_cli(root, "init"))
    record_example_session(Store(root))
    said = ok(run_cli(root, "init", "--encrypt", "--master-key-file", str(key))).err
    assert "the 1 existing plaintext customer(s) stay plaintext" in said
    assert MARKER in git(root / CUSTOMER, "show", "v1.0.0:conversation.json")
    assert status(root)["encrypted_customers"] == []
    fails(run_cli(root, "shred", CUSTOMER, "v1", "--yes"), "usage", "not encrypted")
    fails(run_cli(root, "shred", CUSTOMER, "v1"), "usage", "not encrypted")


# -- transparent writes and reads -----------------------------------------------------

def test_writes_and_reads_are_transparent(tmp_path: Path) -> None:
    root, _ = encrypted(tmp_path)
    repo = root / CUSTOMER
    ok(run_cli(root, "follow-up", CUSTOMER, "-m", "tracing question"))
    ok(run_cli(root, "turn", CUSTOMER, str(follow_up_turn(tmp_path))))
    shown = ok(show_conversation(root)).text
    assert MARKER in shown and FOLLOW_MARKER in shown and TOKEN not in shown
    assert MARKER in ok(show_conversation(root, "v1.0.0")).text
    assert json.loads(ok(run_cli(root, "show", CUSTOMER, "-o", "json")).out)
    diff = ok(run_cli(root, "diff", CUSTOMER, "v1.0.0", "v1.1.0")).text
    assert FOLLOW_MARKER[:30] in diff and TOKEN not in diff
    # what git stores is ciphertext
    for rev in ("v1.0.0", "v1"):
        stored = git(repo, "show", f"{rev}:conversation.json")
        assert TOKEN in stored and MARKER not in stored and FOLLOW_MARKER not in stored
    assert FOLLOW_MARKER not in git(repo, "log", "-p", "--no-textconv", "v1")
    info = status(root)
    assert info["keys"] == [f"{CUSTOMER}/1"] and info["encrypted_customers"] == [CUSTOMER]


def test_reads_without_a_master_key_exit_13(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("GITSTORE_MASTER_KEY", secret)
    root = tmp_path / "sessions"
    said = ok(run_cli(root, "init", "--encrypt")).err
    assert "master key from GITSTORE_MASTER_KEY" in said
    record_example_session(Store(root))
    assert MARKER in ok(show_conversation(root)).text
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    line = fails(show_conversation(root), "key_unavailable", "encrypted", "no master key")
    assert "GITSTORE_MASTER_KEY" in line
    fails(run_cli(root, "diff", CUSTOMER, "v1.0.0", "HEAD"), "key_unavailable")
    info = status(root)
    assert info["master"] is None and info["keys"] == [f"{CUSTOMER}/1"]
    # a wrong master key is said to be wrong, not damage
    monkeypatch.setenv("GITSTORE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    fails(show_conversation(root), "key_unavailable", "wrapped by master key")


def test_a_missing_master_key_file_exits_13(tmp_path: Path) -> None:
    root, key = encrypted(tmp_path)
    key.rename(tmp_path / "elsewhere")
    fails(show_conversation(root), "key_unavailable", "master key file", str(key))
    (tmp_path / "elsewhere").rename(key)
    assert MARKER in ok(show_conversation(root)).text


# -- shred --------------------------------------------------------------------------

def test_shred_refuses_without_yes_then_erases_for_good(tmp_path: Path) -> None:
    root, _ = encrypted(tmp_path)
    repo = root / CUSTOMER
    line = fails(run_cli(root, "shred", CUSTOMER, "v1"), "usage", "--yes", CUSTOMER, "v1")
    assert "destroys the data key" in line
    assert MARKER in ok(show_conversation(root)).text     # nothing was destroyed
    fails(run_cli(root, "shred", "nobody", "v1", "--yes"), "not_found", "nobody")
    fails(run_cli(root, "shred", CUSTOMER, "v9"), "not_found", "v9")
    fails(run_cli(root, "shred", CUSTOMER, "1.0", "--yes"), "usage", "scenario")
    # a second scenario, which must stay readable
    ok(run_cli(root, "new", CUSTOMER, "--created", "2025-01-15T10:30:00Z"))
    ok(run_cli(root, "turn", CUSTOMER, str(follow_up_turn(tmp_path))))
    tags = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")

    done = ok(run_cli(root, "shred", CUSTOMER, "v1", "--yes"))
    lines = done.text.splitlines()
    assert lines[0].split() == ["shredded", CUSTOMER, "v1"]
    assert lines[1].startswith("at ")
    assert "its content is unreadable" in done.err

    fails(show_conversation(root, "v1.0.0"), "shredded", "shredded", CUSTOMER)
    fails(run_cli(root, "diff", CUSTOMER, "v1.0.0", "v2"), "shredded")
    fails(run_cli(root, "shred", CUSTOMER, "v1", "--yes"), "shredded", "already shredded")
    fails(run_cli(root, "shred", CUSTOMER, "v1"), "shredded", "already shredded")
    versions = ok(run_cli(root, "versions", CUSTOMER)).text
    assert "v1.0.0" in versions and "v2.0.0" in versions
    assert FOLLOW_MARKER in ok(show_conversation(root, "v2")).text
    # the history stays: every ref, a clean fsck; the objects hold ciphertext only
    assert git(repo, "for-each-ref", "--format=%(refname) %(objectname)") == tags
    git(repo, "fsck", "--strict", "--no-dangling")
    assert TOKEN in git(repo, "show", "v1.0.0:conversation.json")
    info = status(root)
    assert info["shredded"] == [f"{CUSTOMER}/1"] and info["keys"] == [f"{CUSTOMER}/2"]
    audit = ok(run_cli(root, "audit", CUSTOMER, "-o", "json")).json()
    assert [r for r in audit if r["op"] == "shred"]
    text = ok(run_cli(root, "keys", "status")).text
    assert f"shredded            {CUSTOMER}/1" in text.splitlines()


def test_shred_json(tmp_path: Path) -> None:
    root, _ = encrypted(tmp_path)
    backup = tmp_path / "keys.backup"
    ok(run_cli(root, "keys", "backup", str(backup)))
    done = ok(run_cli(root, "shred", CUSTOMER, "v1", "--yes", "-o", "json")).json()
    assert done["customer"] == CUSTOMER and done["scenario"] == "v1"
    assert done["backups_cleaned"] == [str(backup)] and done["backups_unreachable"] == []
    assert json.loads(backup.read_text("utf-8"))["keys"] == {}


# -- keys backup / restore / rotate ------------------------------------------------------

def test_backup_restore_rotate_round_trip(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root, key = encrypted(tmp_path)
    key_file = root / ".gitstore" / "keys" / CUSTOMER / "1.key"
    backup = tmp_path / "backups" / "keys.json"
    said = ok(run_cli(root, "keys", "backup", str(backup))).err
    assert f"backed up 1 key(s) to {backup}" in said
    assert "shred removes its key from this backup too" in said
    assert "useless without the master key" in said
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert MARKER not in backup.read_text("utf-8")
    assert status(root)["backups"] == [str(backup)]
    assert ok(run_cli(root, "keys", "backup", str(backup), "-o", "json")).json() == {
        "backup": str(backup), "keys": 1}
    assert status(root)["backups"] == [str(backup)]       # recorded once
    (tmp_path / "notes.txt").write_text("mine\n", encoding="utf-8")
    fails(run_cli(root, "keys", "backup", str(tmp_path / "notes.txt")), "usage",
          "not a gitstore key backup")
    assert (tmp_path / "notes.txt").read_text("utf-8") == "mine\n"
    fails(run_cli(root, "keys", "backup", str(tmp_path)), "usage", "directory")

    # the key store loses the key: reads say so; the backup brings it back
    key_file.unlink()
    fails(show_conversation(root), "key_unavailable", "not in the key store")
    said = ok(run_cli(root, "keys", "restore", str(backup))).err
    assert "restored 1 key(s)" in said
    assert MARKER in ok(show_conversation(root)).text
    assert ok(run_cli(root, "keys", "restore", str(backup), "-o", "json")).json()[
        "restored"] == 0
    fails(run_cli(root, "keys", "restore", str(tmp_path / "missing.json")), "not_found")
    fails(run_cli(root, "keys", "restore", str(tmp_path / "notes.txt")), "usage")

    # rotation: the new key reads, the old one no longer does
    wrapped = key_file.read_bytes()
    new_key = tmp_path / "new-master.key"
    fails(run_cli(root, "keys", "rotate", "--new-master-key-file",
                  str(root / ".gitstore" / "k")), "usage", "inside the store root")
    refs = git(root / CUSTOMER, "for-each-ref", "--format=%(refname) %(objectname)")
    rotated = ok(run_cli(root, "keys", "rotate", "--new-master-key-file", str(new_key)))
    assert f"created master key file {new_key}" in rotated.err
    assert "re-wrapped 1 data key(s)" in rotated.err
    assert f"config now names master_key_file {new_key}" in rotated.err
    assert "1 key backup(s) still hold the keys wrapped by the old master key" in rotated.err
    assert stat.S_IMODE(new_key.stat().st_mode) == 0o600
    assert key_file.read_bytes() != wrapped
    assert git(root / CUSTOMER, "for-each-ref", "--format=%(refname) %(objectname)") == refs
    config = json.loads((root / ".gitstore" / "config.json").read_text("utf-8"))
    assert config["master_key_file"] == str(new_key)
    assert MARKER in ok(show_conversation(root)).text
    assert status(root)["master_origin"] == str(new_key)
    monkeypatch.setenv("GITSTORE_MASTER_KEY_FILE", str(key))
    fails(show_conversation(root), "key_unavailable", "wrapped by master key")
    # the environment overrides the config: rotation says so
    again = ok(run_cli(root, "keys", "rotate", "--new-master-key-file", str(new_key),
                       "-o", "json"))
    assert "GITSTORE_MASTER_KEY_FILE" in again.err and "warning" in again.err
    assert again.json()["rewrapped"] == 0 and again.json()["environment"] == [
        "GITSTORE_MASTER_KEY_FILE"]
    monkeypatch.delenv("GITSTORE_MASTER_KEY_FILE")
    # the old backup still holds the old wrapping; restoring it after a loss fails clearly
    key_file.unlink()
    ok(run_cli(root, "keys", "restore", str(backup)))
    fails(show_conversation(root), "key_unavailable", "wrapped by master key")
    # with the old master key, rotation finishes the job
    monkeypatch.setenv("GITSTORE_MASTER_KEY_FILE", str(key))
    assert "re-wrapped 1" in ok(run_cli(root, "keys", "rotate", "--new-master-key-file",
                                        str(new_key))).err
    monkeypatch.delenv("GITSTORE_MASTER_KEY_FILE")
    assert MARKER in ok(show_conversation(root)).text


def test_rotate_needs_the_current_master_key(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITSTORE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    root = tmp_path / "sessions"
    ok(run_cli(root, "init", "--encrypt"))
    record_example_session(Store(root))
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    new_key = tmp_path / "new.key"
    fails(run_cli(root, "keys", "rotate", "--new-master-key-file", str(new_key)),
          "key_unavailable", "current master key")
    assert not new_key.exists()


def test_restore_never_brings_back_a_shredded_key(tmp_path: Path) -> None:
    root, _ = encrypted(tmp_path)
    backup = tmp_path / "keys.json"
    ok(run_cli(root, "keys", "backup", str(backup)))
    stray = tmp_path / "copied-by-hand.json"               # a copy the key store never saw
    shutil.copy(backup, stray)
    done = ok(run_cli(root, "shred", CUSTOMER, "v1", "--yes"))
    assert f"backup cleaned      {backup}" in done.text.splitlines()
    restored = ok(run_cli(root, "keys", "restore", str(stray)))
    assert "restored 0 key(s)" in restored.err
    assert f"skipped {CUSTOMER}/1: shredded, never restored" in restored.err
    assert ok(run_cli(root, "keys", "restore", str(stray), "-o", "json")).json()[
        "skipped"] == [f"{CUSTOMER}/1"]
    assert not (root / ".gitstore" / "keys" / CUSTOMER / "1.key").exists()
    fails(show_conversation(root), "shredded")


def test_keys_status_of_a_plain_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GITSTORE_MASTER_KEY", "GITSTORE_MASTER_KEY_FILE",
                "GITSTORE_MASTER_KEY_COMMAND"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "sessions"
    ok(run_cli(root, "init"))
    text = ok(run_cli(root, "keys", "status")).text.splitlines()
    assert "encrypt             off" in text and "master key          none set" in text
    info = status(root)
    assert info["encrypt"] is False and info["keys"] == [] and info["master"] is None


# -- textconv: plain git for a key holder -------------------------------------------------

def test_textconv_through_plain_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("GITSTORE_MASTER_KEY", secret)
    root = tmp_path / "sessions"
    ok(run_cli(root, "init", "--encrypt"))
    record_example_session(Store(root))
    # a second scenario of more than 64 turns: layout 2 stores it in parts
    session = Store(root).customer(CUSTOMER).new_session(created="2025-01-15T10:30:00Z")
    turn = {k: v for k, v in example_turn(1).items() if k != "turn_id"}
    for n in range(66):
        session.append_turn({**turn, "user_input": {**turn["user_input"],
                                                    "query": f"part marker {n:03d}"}})
    monkeypatch.delenv("GITSTORE_MASTER_KEY")
    repo = root / CUSTOMER
    assert "conversation/turns/0001.json" in git(repo, "ls-tree", "-r", "--name-only", "v2")
    holder, stranger = git_env(GITSTORE_MASTER_KEY=secret), git_env()

    shown = plain_git(repo, "show", "--textconv", "v1.0.0:conversation.json", env=holder)
    assert MARKER in shown and TOKEN not in shown
    assert json.loads(shown)["conversation_turns"][0]["user_input"]["query"] == MARKER
    sow = plain_git(repo, "show", "--textconv", "v1.0.0:sow_document.md", env=holder)
    assert TOKEN not in sow and sow.strip()
    log = plain_git(repo, "log", "-p", "--textconv", "v1", env=holder)
    assert MARKER in log and TOKEN not in log
    parts = plain_git(repo, "log", "-p", "--textconv", "-3", "v2", env=holder)
    assert "part marker 065" in parts and "part marker 064" in parts and TOKEN not in parts
    chunk = plain_git(repo, "show", "--textconv", "v2:conversation/turns/0001.json",
                      env=holder)
    assert "part marker 064" in chunk and TOKEN not in chunk

    for args in (("show", "--textconv", "v1.0.0:conversation.json"),
                 ("log", "-p", "--textconv", "v1"), ("log", "-p", "--textconv", "-3", "v2")):
        hidden = plain_git(repo, *args, env=stranger)
        assert TOKEN in hidden and MARKER not in hidden and "part marker" not in hidden


def test_textconv_prints_what_it_cannot_open_unchanged(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    root, key = encrypted(tmp_path)
    repo = root / CUSTOMER
    sealed = tmp_path / "abc123_conversation.json"
    sealed.write_bytes(subprocess.run(["git", "-C", str(repo), "show",
                                       "v1.0.0:conversation.json"], capture_output=True,
                                      check=True).stdout)
    monkeypatch.setenv("GIT_DIR", str(repo))
    opened = ok(run_cli(root, "textconv", str(sealed))).text
    assert MARKER in opened and TOKEN not in opened
    plain = tmp_path / "xyz789_notes.json"
    plain.write_bytes(b'{"a": "\xc3\xa9"}\n')
    assert ok(run_cli(root, "textconv", str(plain))).out == plain.read_bytes()
    key.rename(tmp_path / "away")                          # no master key: unchanged
    assert ok(run_cli(root, "textconv", str(sealed))).out == sealed.read_bytes()
    fails(run_cli(root, "textconv", str(tmp_path / "gone.json")), "not_found")


def test_escalate_and_shred_take_the_api_key_in_a_store_with_hashed_names(
        tmp_path: Path) -> None:
    """Like every other command, escalate and shred find the customer by its api_key
    when names are hashed (they hashed it twice: exit 3), and say ``v1``."""
    root, key = tmp_path / "sessions", tmp_path / "master.key"
    ok(run_cli(root, "init", "--hash-names", "--encrypt", "--master-key-file", str(key)))
    ok(run_cli(root, "new", "acme", "--created", "2025-01-15T10:30:00Z"))
    ok(run_cli(root, "turn", "acme", str(follow_up_turn(tmp_path))))
    assert FOLLOW_MARKER in ok(run_cli(root, "escalate", "acme", "-O", "-")).text
    fails(run_cli(root, "shred", "acme", "v1"), "usage", "pass --yes")
    ok(run_cli(root, "shred", "acme", "v1", "--yes"))
    fails(run_cli(root, "show", "acme", "v1", "conversation.json"), "shredded",
          "scenario v1 of k")
    fails(run_cli(root, "shred", "acme", "v1", "--yes"), "shredded", "scenario v1 of k")


def test_cli_search_scans_encrypted_sessions_with_their_keys(tmp_path: Path) -> None:
    """`gitstore search` finds turns of encrypted sessions (which the index does not
    hold) when their keys are at hand, and says how many it could not search."""
    root, key = encrypted(tmp_path)
    table = ok(run_cli(root, "search", MARKER.split()[0])).text
    assert CUSTOMER in table and "(encrypted: no snippet)" in table
    hits = ok(run_cli(root, "search", MARKER.split()[0], "-o", "json")).json()
    assert [(h["customer"], h["version"], h["turn_id"], h["encrypted"]) for h in hits] == \
        [(CUSTOMER, "v1.0.0", 1, True)]
    key.rename(tmp_path / "elsewhere.key")
    keyless = run_cli(root, "search", MARKER.split()[0])
    assert keyless.code == 0 and "no turns match" in keyless.err
    assert "1 encrypted session(s) not searched" in keyless.err


@pytest.mark.parametrize("record", [True, False])  # a finalized session; a fresh one
def test_verify_without_the_master_key_checks_what_a_hub_checks(tmp_path: Path,
                                                                record: bool) -> None:
    """No master key here is not damage: verify checks the stored bytes as a hub does
    and passes (exit 0); it exited 7 ("content not proven") for a tree with nothing
    sealed to open. Damage to the stored bytes is still found without the key."""
    root, key = encrypted(tmp_path, record=record)
    if not record:
        ok(run_cli(root, "new", CUSTOMER))
    key.rename(tmp_path / "elsewhere.key")
    assert f"{CUSTOMER}: ok" in ok(run_cli(root, "verify", CUSTOMER)).text
    assert ok(run_cli(root, "verify")).code == 0
    repo = root / CUSTOMER
    tip = git(repo, "rev-parse", "HEAD").strip()
    sums = git(repo, "show", "HEAD:SHA256SUMS").replace("0", "1", 1)
    blob = subprocess.run(["git", "-C", str(repo), "hash-object", "-w", "--stdin"],
                          input=sums, capture_output=True, text=True, check=True).stdout.strip()
    tree = subprocess.run(["bash", "-c", f"git -C {repo} ls-tree HEAD | sed "
                           f"'s/[0-9a-f]\\{{40\\}}\\tSHA256SUMS$/{blob}\\tSHA256SUMS/' | "
                           f"git -C {repo} mktree"], capture_output=True, text=True,
                          check=True).stdout.strip()
    forged = git(repo, "commit-tree", tree, "-p", tip, "-m", "forged").strip()
    git(repo, "update-ref", "HEAD", forged)
    fails(run_cli(root, "verify", CUSTOMER), "integrity")
