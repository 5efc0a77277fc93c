"""The files gitstore writes: where they go, what they never replace or follow, and
what a failure after the commit or a read-only store does.

* ``export -O`` / ``escalate -O`` replace only a regular file (atomically) or
  create an absent one; a FIFO and a character device are written in place and
  stay what they were; a directory or a socket is refused (issue 11 item 5);
* a step after the commit that fails (the index, the maintenance counter, the
  access log) never turns a committed write into a failure: success, a warning
  on stderr, the commit in git (item 6);
* a symbolic link planted where gitstore writes inside a customer repository (or
  for its writer lock) is refused, never written through: the file outside the
  store is untouched, and ``verify`` names the link (item 15);
* on a read-only store reads work and say once that access is not recorded;
  ``require_audit`` makes them refuse instead (item 19).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, ROOT, git, load_example, run_cli

from gitstore import Store

# -- helpers -----------------------------------------------------------------------------


def later_turn(tmp: Path, minute: int) -> Path:
    """A turn file (no turn_id) stamped after every turn of the example session."""
    turn = load_example("follow_up", "turns", "turn-07.json")
    turn.pop("turn_id", None)
    turn["timestamp"] = f"2025-01-15T15:{minute:02d}:00Z"
    path = tmp / f"turn-{minute}.json"
    path.write_text(json.dumps(turn), encoding="utf-8")
    return path


@pytest.fixture
def root(finalized: Any) -> Path:
    """A store whose customer has an open version (v1.1.0) to take turns."""
    finalized.follow_up()
    return Path(finalized.customer.store.root)


def tip(root: Path) -> str:
    return git(root / CUSTOMER, "rev-parse", "refs/heads/v1").strip()


class Drain:
    """Reads everything from a file descriptor in a thread (the other end of a FIFO
    or of a pseudo-terminal), until EOF."""

    def __init__(self, opener: Any) -> None:
        self.data = b""
        self.thread = threading.Thread(target=self._run, args=(opener,), daemon=True)
        self.thread.start()

    def _run(self, opener: Any) -> None:
        fd = opener()
        try:
            while True:
                try:
                    block = os.read(fd, 65536)
                except OSError:  # a pty master reads EIO once the slave is closed
                    break
                if not block:
                    break
                self.data += block
        finally:
            os.close(fd)

    def result(self) -> bytes:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the reader never saw the end of the output"
        return self.data


# -- item 5: -O PATH ----------------------------------------------------------------------

def _export_args(kind: str, path: Path) -> list[str]:
    return ["export", CUSTOMER, "-O", str(path)] if kind == "export" else \
        ["escalate", CUSTOMER, "-O", str(path)]


def _check_output(kind: str, data: bytes) -> None:
    if kind == "export":
        assert json.loads(data)["format"] == "gitstore-export"
    else:
        assert data.decode("utf-8").startswith("#") and CUSTOMER in data.decode("utf-8")


@pytest.mark.parametrize("kind", ["export", "escalate"])
def test_output_to_a_fifo_is_written_in_place(finalized: Any, tmp_path: Path,
                                              kind: str) -> None:
    root = Path(finalized.customer.store.root)
    out = tmp_path / "out"
    out.mkdir()
    fifo = out / "out.fifo"
    os.mkfifo(fifo)
    reader = Drain(lambda: os.open(fifo, os.O_RDONLY))
    r = run_cli(root, *_export_args(kind, fifo))
    assert r.code == 0, r.err
    data = reader.result()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the FIFO, not a regular file
    _check_output(kind, data)
    assert [p.name for p in out.iterdir()] == ["out.fifo"]  # no temp file left beside it


def char_device(tmp: Path) -> tuple[Path, Drain | None, int | None]:
    """A character device to write to: a null-device node made in ``tmp`` where the
    test may make one (root), else a fresh pseudo-terminal with a reader on its
    master side (and the slave's descriptor, to close once the command is done, so
    that the reader sees the end). Never the machine's own /dev/null."""
    node = tmp / "null-device"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return node, None, None
    except PermissionError:
        master, slave = os.openpty()
        tty.setraw(slave)
        return Path(os.ttyname(slave)), Drain(lambda: master), slave


@pytest.mark.parametrize("kind", ["export", "escalate"])
def test_output_to_a_character_device_is_written_in_place(finalized: Any, tmp_path: Path,
                                                          kind: str) -> None:
    root = Path(finalized.customer.store.root)
    out = tmp_path / "out"
    out.mkdir()
    device, reader, slave = char_device(out)
    before = os.stat(device)
    r = run_cli(root, *_export_args(kind, device))
    if slave is not None:
        os.close(slave)
    assert r.code == 0, r.err
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino  # the same node: never replaced
    if reader is not None:
        _check_output(kind, reader.result())
    assert [p.name for p in out.iterdir()] == ([device.name] if reader is None else [])


def test_output_to_a_directory_or_socket_is_refused(finalized: Any, tmp_path: Path) -> None:
    root = Path(finalized.customer.store.root)
    folder = tmp_path / "folder"
    folder.mkdir()
    r = run_cli(root, "export", CUSTOMER, "-O", str(folder))
    assert r.code == 2 and "is a directory" in r.err, (r.code, r.err)
    assert list(folder.iterdir()) == []
    short = Path(tempfile.mkdtemp(prefix="gs-", dir="/tmp"))  # socket paths are short
    try:
        sock_path = short / "s"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(sock_path))
            for args in (["export", CUSTOMER], ["escalate", CUSTOMER]):
                r = run_cli(root, *args, "-O", str(sock_path))
                assert r.code == 2 and "is a socket" in r.err, (args, r.code, r.err)
                assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        shutil.rmtree(short)


def test_output_replaces_a_regular_file_and_keeps_a_link_to_it(finalized: Any,
                                                               tmp_path: Path) -> None:
    root = Path(finalized.customer.store.root)
    target = tmp_path / "export.json"
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    r = run_cli(root, "export", CUSTOMER, "-O", str(link))
    assert r.code == 0, r.err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text(encoding="utf-8"))["format"] == "gitstore-export"
    r = run_cli(root, "escalate", CUSTOMER, "-O", str(tmp_path / "new.md"))
    assert r.code == 0 and (tmp_path / "new.md").read_text(encoding="utf-8").startswith("#")


# -- item 6: a committed write is never reported as failed ---------------------------------

def _break_index(root: Path) -> None:
    index = root / ".gitstore" / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.mkdir()  # SQLite cannot open a directory


def _break_maintenance(root: Path) -> None:
    state = root / CUSTOMER / "gitstore-maintenance"
    state.unlink(missing_ok=True)
    state.mkdir()


def _break_audit(root: Path) -> None:
    log = root / CUSTOMER / "gitstore-audit.jsonl"
    log.rename(root / CUSTOMER / "gitstore-audit.saved")
    log.mkdir()


@pytest.mark.parametrize(("step", "breaks", "said"), [
    ("index", _break_index, "the index was not updated"),
    ("maintenance", _break_maintenance, "automatic maintenance failed"),
    ("audit", _break_audit, "access log not appended"),
])
def test_a_failing_after_commit_step_is_a_warning(root: Path, tmp_path: Path, step: str,
                                                  breaks: Any, said: str) -> None:
    breaks(root)
    before = tip(root)
    r = run_cli(root, "turn", CUSTOMER, str(later_turn(tmp_path, 1)), "-o", "json")
    assert r.code == 0, (step, r.code, r.err)
    written = r.json()
    assert written["commit"] != before and tip(root) == written["commit"]  # committed
    assert git(root / CUSTOMER, "log", "-1", "--format=%s", "v1").strip() == \
        "v1.1.0: add turn 6"
    assert any(said in w for w in written["warnings"]), written["warnings"]
    lines = [line for line in r.err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith(
        f"gitstore: warning: {CUSTOMER} {written['commit'][:12]} is committed, but "), r.err
    assert said in lines[0]
    # the text output says it too, and the library hands it over on the result
    r = run_cli(root, "turn", CUSTOMER, str(later_turn(tmp_path, 2)))
    assert r.code == 0 and said in r.err and "turn 7" in r.text, (r.code, r.err)
    w = Store(root).customer(CUSTOMER).session().append_turn(
        later_turn(tmp_path, 3).read_bytes())
    assert any(said in x for x in w.warnings) and tip(root) == w.commit


# -- item 15: symbolic links inside a customer repository -----------------------------------

@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_bytes(b"not gitstore's to touch\n")
    return path


def _verify_names_link(root: Path, name: str) -> None:
    r = run_cli(root, "verify", CUSTOMER)
    assert r.code == 7, (r.code, r.text)
    assert f"{name} is a symbolic link inside the repository" in r.text, r.text


def test_a_linked_maintenance_counter_is_never_written_through(root: Path, tmp_path: Path,
                                                               outside: Path) -> None:
    state = root / CUSTOMER / "gitstore-maintenance"
    state.unlink(missing_ok=True)
    state.symlink_to(outside)
    before = tip(root)
    r = run_cli(root, "turn", CUSTOMER, str(later_turn(tmp_path, 1)))
    assert r.code == 0, r.err
    assert tip(root) != before  # the write stands
    assert "symbolic link" in r.err and "maintenance" in r.err, r.err
    assert outside.read_bytes() == b"not gitstore's to touch\n"
    assert state.is_symlink()
    _verify_names_link(root, "gitstore-maintenance")
    assert outside.read_bytes() == b"not gitstore's to touch\n"


@pytest.mark.parametrize("name", ["gitstore-audit.jsonl", "gitstore-audit.head"])
def test_a_linked_access_log_is_never_written_through(root: Path, tmp_path: Path,
                                                      outside: Path, name: str) -> None:
    path = root / CUSTOMER / name
    path.unlink()
    path.symlink_to(outside)
    r = run_cli(root, "show", CUSTOMER)
    assert r.code == 9 and "symbolic link" in r.err, (r.code, r.err)
    r = run_cli(root, "turn", CUSTOMER, str(later_turn(tmp_path, 1)))
    assert r.code == 0 and "access log not appended" in r.err, (r.code, r.err)
    assert outside.read_bytes() == b"not gitstore's to touch\n"
    _verify_names_link(root, name)
    assert outside.read_bytes() == b"not gitstore's to touch\n"


def test_a_linked_writer_lock_is_refused(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "outside-lock"
    lock = root / ".gitstore" / "locks" / f"{CUSTOMER}.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)  # dangling: following it would create the file
    before = tip(root)
    r = run_cli(root, "turn", CUSTOMER, str(later_turn(tmp_path, 1)))
    assert r.code == 9 and "writer lock" in r.err, (r.code, r.err)
    assert not target.exists() and tip(root) == before


def test_repair_never_sets_aside_through_a_link(root: Path, tmp_path: Path) -> None:
    repo = root / CUSTOMER
    mirror = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "--quiet", "--mirror", str(repo), str(mirror)], check=True)
    away = tmp_path / "away"
    away.mkdir()
    (repo / "gitstore-damaged").symlink_to(away, target_is_directory=True)
    (repo / "refs" / "heads" / "v1").write_text("garbage\n", encoding="ascii")
    r = run_cli(root, "repair", CUSTOMER, "--from", str(mirror))
    assert r.code == 9 and "symbolic link" in r.err, (r.code, r.err)
    assert list(away.iterdir()) == []
    assert (repo / "refs" / "heads" / "v1").read_text(encoding="ascii") == "garbage\n"


def test_verify_names_every_link_in_a_repository(root: Path, outside: Path) -> None:
    (root / CUSTOMER / "refs" / "heads" / "notes").symlink_to(outside)
    (root / CUSTOMER / "info" / "elsewhere").symlink_to(outside.parent,
                                                       target_is_directory=True)
    r = run_cli(root, "verify")
    assert r.code == 7, r.text
    assert "refs/heads/notes is a symbolic link" in r.text
    assert "info/elsewhere is a symbolic link" in r.text


# -- item 19: a read-only store -------------------------------------------------------------

def _read_only(store_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``gitstore --root STORE ARGS`` in a subprocess that sees the store
    read-only: a read-only bind mount in a private mount namespace as root (EROFS),
    the store's write bits removed otherwise (EACCES)."""
    cmd = [sys.executable, "-m", "gitstore", "--root", str(store_root), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if os.geteuid() == 0:
        script = ('mount --bind -o ro "$0" "$0" && mount -o remount,ro,bind "$0" "$0" '
                  '&& exec "$@"')
        return subprocess.run(["unshare", "-m", "sh", "-c", script, str(store_root), *cmd],
                              capture_output=True, text=True, env=env, timeout=120,
                              check=False)
    modes = {p: p.stat().st_mode for p in [store_root, *store_root.rglob("*")]
             if not p.is_symlink()}
    try:
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120,
                              check=False)
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


@pytest.fixture
def frozen(finalized: Any) -> Iterator[Path]:
    root = Path(finalized.customer.store.root)
    yield root


def test_reads_of_a_read_only_store_work_and_say_so_once(frozen: Path) -> None:
    log = frozen / CUSTOMER / "gitstore-audit.jsonl"
    before = log.read_bytes()
    proc = _read_only(frozen, "diff", CUSTOMER, "v1.0.0", "v1.0.0")  # three records' worth
    assert proc.returncode == 0, proc.stderr
    proc = _read_only(frozen, "show", CUSTOMER, "v1.0.0", "session_metadata.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["session_info"]["api_key"] == CUSTOMER
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings == ["gitstore: warning: the store is read-only: access is not being "
                        "recorded in the access logs (set require_audit in the store config "
                        "to refuse instead)"], proc.stderr
    proc = _read_only(frozen, "log", CUSTOMER)
    assert proc.returncode == 0 and proc.stderr.count("gitstore: warning:") == 1, proc.stderr
    assert log.read_bytes() == before  # nothing could be, and nothing was, appended
    # writes are refused as storage errors, never 70
    proc = _read_only(frozen, "follow-up", CUSTOMER)
    assert proc.returncode == 9, (proc.returncode, proc.stderr)


def test_a_store_that_requires_the_record_refuses_unrecorded_reads(frozen: Path) -> None:
    config = frozen / ".gitstore" / "config.json"
    data = json.loads(config.read_text(encoding="utf-8")) if config.exists() else {}
    data["require_audit"] = True
    config.write_text(json.dumps(data), encoding="utf-8")
    assert run_cli(frozen, "show", CUSTOMER).code == 0  # recorded: fine
    proc = _read_only(frozen, "show", CUSTOMER)
    assert proc.returncode == 9, (proc.returncode, proc.stdout, proc.stderr)
    assert "require_audit" in proc.stderr and proc.stdout == ""
