"""SSH signatures made in process, checked against the real ssh-keygen and git.

Keys of every type gitstore signs in process (ed25519, ecdsa nistp256/384/521,
rsa) are made with ``ssh-keygen``. Each in-process signature verifies with
``ssh-keygen -Y verify``; its SSHSIG fields (magic, version, public key,
namespace ``git``, empty reserved field, ``sha512``, signature algorithm) are
decoded here independently and match what ssh-keygen writes for the same key;
for the deterministic algorithms (ed25519, rsa-sha2-512) the armoured bytes equal
ssh-keygen's. A store signing with each key writes tags and commits that
``git verify-tag`` and ``git verify-commit`` accept through the repository's
``gpg.ssh.allowedSignersFile``, and no ``ssh-keygen -Y sign`` runs.

The fallbacks run the real ssh-keygen (a logging wrapper on ``PATH`` proves it
ran): a passphrase-protected key (the passphrase from ``SSH_ASKPASS``), a PEM
key, a key others may read (ssh-keygen refuses it, as before), and a public key
whose private half only a real ``ssh-agent`` started by the test holds; each
result verifies, and signing with the agent's key fails once the agent is gone.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import CUSTOMER, Clock, record_example_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import Store
from gitstore.errors import UsageError
from gitstore.git import signing

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

#: key kind -> (ssh-keygen options, SSHSIG signature algorithm, deterministic)
KINDS = {
    "ed25519": (["-t", "ed25519"], "ssh-ed25519", True),
    "ecdsa-256": (["-t", "ecdsa", "-b", "256"], "ecdsa-sha2-nistp256", False),
    "ecdsa-384": (["-t", "ecdsa", "-b", "384"], "ecdsa-sha2-nistp384", False),
    "ecdsa-521": (["-t", "ecdsa", "-b", "521"], "ecdsa-sha2-nistp521", False),
    "rsa": (["-t", "rsa", "-b", "3072"], "rsa-sha2-512", True),
}
PRINCIPAL = "signer@example.invalid"
PASSPHRASE = "correct horse battery staple"
PAYLOAD = (b"object 0123456789abcdef0123456789abcdef01234567\ntype commit\ntag v1.0.0\n"
           b"tagger gitstore <gitstore@gitstore.invalid> 1736938800 +0000\n\nv1.0.0\n")


def keygen(path: Path, *options: str, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", *options, "-N", passphrase, "-C", path.name, "-f",
                    str(path)], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return path


def public(key: Path) -> str:
    return " ".join(Path(str(key) + ".pub").read_text().split()[:2])


def ssh_keygen_sign(key: Path, message: bytes, env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(key)],
                          input=message, capture_output=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ssh_keygen_verify(pub: str, message: bytes, signature: bytes, tmp: Path,
                      namespace: str = "git") -> subprocess.CompletedProcess[bytes]:
    allowed, sig = tmp / "allowed_signers", tmp / "message.sig"
    allowed.write_text(f'{PRINCIPAL} namespaces="git" {pub}\n')
    sig.write_bytes(signature)
    return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", PRINCIPAL,
                           "-n", namespace, "-s", str(sig)], input=message,
                          capture_output=True, check=False)


def verifies(pub: str, message: bytes, signature: bytes, tmp: Path) -> bool:
    proc = ssh_keygen_verify(pub, message, signature, tmp)
    return proc.returncode == 0 and b'Good "git" signature' in proc.stdout


def fields(armored: bytes) -> list[bytes | int]:
    """The SSHSIG fields of an armoured signature, decoded without gitstore: magic,
    version, public key, namespace, reserved, hash algorithm, signature algorithm,
    signature bytes."""
    lines = armored.decode("ascii").splitlines()
    assert lines[0] == "-----BEGIN SSH SIGNATURE-----"
    assert lines[-1] == "-----END SSH SIGNATURE-----"
    assert all(len(line) <= 70 for line in lines[1:-1])
    blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    out: list[bytes | int] = [blob[:6], struct.unpack(">I", blob[6:10])[0]]
    pos = 10

    def string(buf: bytes, at: int) -> tuple[bytes, int]:
        (n,) = struct.unpack(">I", buf[at:at + 4])
        return buf[at + 4:at + 4 + n], at + 4 + n

    for _ in range(5):
        value, pos = string(blob, pos)
        out.append(value)
    assert pos == len(blob), "trailing bytes after the signature"
    sig = out.pop()
    assert isinstance(sig, bytes)
    alg, at = string(sig, 0)
    raw, at = string(sig, at)
    assert at == len(sig)
    return [*out, alg, raw]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    return {kind: keygen(d / f"id_{kind}", *opts) for kind, (opts, _, _) in KINDS.items()}


@pytest.fixture
def keygen_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Put a wrapper named ssh-keygen first on PATH that logs its arguments and
    runs the real one; returns a function listing the logged calls."""
    real = shutil.which("ssh-keygen")
    assert real is not None
    bindir, log = tmp_path / "bin", tmp_path / "ssh-keygen.log"
    bindir.mkdir()
    wrapper = bindir / "ssh-keygen"
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nexec '{real}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("ssh-keygen") == str(wrapper)
    return lambda: log.read_text().splitlines() if log.exists() else []


def signs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("-Y sign")]


# =========================================================================== in process


@pytest.mark.parametrize("kind", KINDS)
def test_in_process_signature_verifies_with_ssh_keygen(kind: str, keys: dict[str, Path],
                                                       tmp_path: Path,
                                                       keygen_calls: Callable[[], list[str]]
                                                       ) -> None:
    key = keys[kind]
    sign = signing.signer(key)
    assert isinstance(sign, signing.KeySigner) and sign.in_process
    signature = sign(PAYLOAD)
    assert signs(keygen_calls()) == []
    assert verifies(public(key), PAYLOAD, signature, tmp_path)
    # the check can fail: another message, another namespace, another key
    assert not verifies(public(key), PAYLOAD + b"x", signature, tmp_path)
    assert ssh_keygen_verify(public(key), PAYLOAD, signature, tmp_path,
                             namespace="file").returncode != 0
    other = next(k for k in KINDS if k != kind)
    assert not verifies(public(keys[other]), PAYLOAD, signature, tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_in_process_fields_match_ssh_keygen(kind: str, keys: dict[str, Path]) -> None:
    key = keys[kind]
    ours, theirs = fields(signing.signer(key)(PAYLOAD)), fields(ssh_keygen_sign(key, PAYLOAD))
    blob = base64.b64decode(public(key).split()[1])
    assert ours[:7] == [b"SSHSIG", 1, blob, b"git", b"", b"sha512", KINDS[kind][1].encode()]
    assert ours[:7] == theirs[:7]
    if KINDS[kind][2]:
        assert ours[7] == theirs[7]


@pytest.mark.parametrize("kind", [k for k, (_, _, deterministic) in KINDS.items()
                                  if deterministic])
def test_deterministic_signatures_equal_ssh_keygen_byte_for_byte(kind: str,
                                                                 keys: dict[str, Path]) -> None:
    key = keys[kind]
    for message in (PAYLOAD, b"", b"\n", bytes(range(256)) * 40):
        assert signing.signer(key)(message) == ssh_keygen_sign(key, message)


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.binary(max_size=3000))
def test_ed25519_equals_ssh_keygen_for_any_message(keys: dict[str, Path],
                                                   message: bytes) -> None:
    key = keys["ed25519"]
    assert signing.signer(key)(message) == ssh_keygen_sign(key, message)


@pytest.mark.parametrize("kind", KINDS)
def test_a_store_signing_in_process_passes_git_verify_tag(kind: str, keys: dict[str, Path],
                                                          tmp_path: Path,
                                                          keygen_calls: Callable[[], list[str]]
                                                          ) -> None:
    store = Store.init(tmp_path / "sessions", clock=Clock())
    store.configure_signing(keys[kind])
    assert isinstance(store.signer, signing.KeySigner)
    record_example_session(store)
    assert signs(keygen_calls()) == []
    repo = tmp_path / "sessions" / CUSTOMER
    assert_git_verifies(repo)
    assert any(c.startswith("-Y verify") for c in keygen_calls())  # git ran the real one


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)


def assert_git_verifies(repo: Path) -> None:
    allowed = git(repo, "config", "gpg.ssh.allowedSignersFile").stdout.strip()
    assert allowed and Path(allowed).is_file()
    tag = git(repo, "verify-tag", "v1.0.0")
    assert tag.returncode == 0 and 'Good "git" signature' in tag.stderr, tag.stderr
    commit = git(repo, "verify-commit", "v1.0.0^{commit}")
    assert commit.returncode == 0 and 'Good "git" signature' in commit.stderr, commit.stderr
    statuses = git(repo, "log", "--format=%G?", "v1").stdout.split()
    assert statuses and set(statuses) == {"G"}, statuses
    # and git refuses a tag whose signed bytes changed
    raw = git(repo, "cat-file", "tag", "v1.0.0").stdout
    forged = subprocess.run(["git", "-C", str(repo), "mktag"], capture_output=True, text=True,
                            input=raw.replace("tagger ", "tagger X", 1), check=False)
    assert forged.returncode == 0, forged.stderr
    assert git(repo, "verify-tag", forged.stdout.strip()).returncode != 0


# =========================================================================== ssh-keygen fallback


def test_a_passphrase_protected_key_is_signed_by_ssh_keygen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        keygen_calls: Callable[[], list[str]]) -> None:
    plain = keygen(tmp_path / "id_plain", "-t", "ed25519")
    key = tmp_path / "id_protected"                    # the same key, passphrase-protected
    shutil.copyfile(plain, key)
    key.chmod(0o600)
    shutil.copyfile(Path(str(plain) + ".pub"), Path(str(key) + ".pub"))
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", PASSPHRASE, "-f", str(key)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    assert key.read_bytes() != plain.read_bytes()
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    askpass.chmod(0o755)
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    assert signing.load_private_key(key) is None
    sign = signing.signer(key)
    assert isinstance(sign, signing.KeygenSigner) and not sign.in_process
    signature = sign(PAYLOAD)
    assert len(signs(keygen_calls())) == 1
    assert verifies(public(key), PAYLOAD, signature, tmp_path)
    # the very bytes the unprotected copy signs in process (ed25519 is deterministic)
    assert signature == signing.signer(plain)(PAYLOAD)
    # and a store signing with it writes what git verifies, ssh-keygen signing each one
    store = Store.init(tmp_path / "sessions", clock=Clock())
    store.configure_signing(key)
    record_example_session(store)
    assert len(signs(keygen_calls())) > 5
    assert_git_verifies(tmp_path / "sessions" / CUSTOMER)


def test_without_its_passphrase_the_protected_key_fails_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = keygen(tmp_path / "id_protected", "-t", "ed25519", passphrase=PASSPHRASE)
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho 'wrong passphrase'\n")
    askpass.chmod(0o755)
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(UsageError, match="ssh-keygen could not sign"):
        signing.signer(key)(PAYLOAD)


def test_other_key_files_fall_back_to_ssh_keygen(tmp_path: Path,
                                                 keygen_calls: Callable[[], list[str]]) -> None:
    pem = keygen(tmp_path / "id_pem", "-t", "rsa", "-b", "2048", "-m", "PEM")
    assert pem.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    sign = signing.signer(pem)
    assert isinstance(sign, signing.KeygenSigner)
    signature = sign(PAYLOAD)
    assert len(signs(keygen_calls())) == 1
    assert verifies(public(pem), PAYLOAD, signature, tmp_path)
    assert fields(signature)[6] == b"rsa-sha2-512"


def test_unsupported_or_malformed_key_files_are_not_loaded(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    garbage.chmod(0o600)
    assert signing.load_private_key(garbage) is None
    assert isinstance(signing.signer(garbage), signing.KeygenSigner)
    with pytest.raises(UsageError, match="ssh-keygen could not sign"):
        signing.signer(garbage)(PAYLOAD)
    fake = tmp_path / "fake.pub"                # looks like a public key line, is not one
    fake.write_text("ssh-ed25519 AAAAC3NzaC1yc2EAAAA= comment\n")
    with pytest.raises(UsageError, match="cannot read SSH key"):
        signing.public_key(fake)
    dsa = tmp_path / "id_dsa"
    made = subprocess.run(["ssh-keygen", "-q", "-t", "dsa", "-N", "", "-f", str(dsa)],
                          capture_output=True, stdin=subprocess.DEVNULL, check=False)
    if made.returncode == 0:                    # OpenSSH 9.8 dropped DSA
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert signing.load_private_key(dsa) is None


def test_a_key_others_can_read_is_refused_as_ssh_keygen_refuses_it(
        tmp_path: Path, keys: dict[str, Path], keygen_calls: Callable[[], list[str]]) -> None:
    key = tmp_path / "id_open"
    shutil.copyfile(keys["ed25519"], key)
    key.chmod(0o644)
    if os.stat(key).st_uid != os.getuid():
        pytest.skip("the key file is not ours")
    assert signing.load_private_key(key) is None
    with pytest.raises(UsageError, match="ssh-keygen could not sign"):
        signing.signer(key)(PAYLOAD)
    assert len(signs(keygen_calls())) == 1


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[bytes]]:
    """A real ssh-agent on a Unix socket (a short path: sun_path is small),
    stopped by its PID."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("needs ssh-agent and ssh-add")
    sockdir = Path(tempfile.mkdtemp(prefix="gs-agent-", dir="/tmp"))
    sock = sockdir / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.02)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(sockdir, ignore_errors=True)


def test_an_agent_held_key_is_signed_by_ssh_keygen(
        tmp_path: Path, agent: subprocess.Popen[bytes],
        keygen_calls: Callable[[], list[str]]) -> None:
    (tmp_path / "made").mkdir()
    made = keygen(tmp_path / "made" / "id_agent", "-t", "ed25519")
    subprocess.run(["ssh-add", "-q", str(made)], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)
    pub = tmp_path / "agent_key.pub"           # only the public half is left on disk
    pub.write_text(Path(str(made) + ".pub").read_text())
    shutil.rmtree(tmp_path / "made")
    assert signing.public_key(pub) == " ".join(pub.read_text().split()[:2])
    sign = signing.signer(pub)
    assert isinstance(sign, signing.KeygenSigner)
    signature = sign(PAYLOAD)
    assert len(signs(keygen_calls())) == 1
    assert verifies(signing.public_key(pub), PAYLOAD, signature, tmp_path)
    # a store configured with the public key signs through the agent; git verifies
    store = Store.init(tmp_path / "sessions", clock=Clock())
    store.configure_signing(pub)
    record_example_session(store)
    assert_git_verifies(tmp_path / "sessions" / CUSTOMER)
    # without the agent nothing can sign with it, and the failure says so
    agent.terminate()
    agent.wait(timeout=10)
    with pytest.raises(UsageError, match="ssh-keygen could not sign"):
        sign(PAYLOAD)


# =========================================================================== deferred import


def test_cryptography_is_loaded_by_signing_not_by_startup(tmp_path: Path,
                                                         keys: dict[str, Path]) -> None:
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from gitstore.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "import gitstore.store.facade\n"
        "from gitstore.git import signing\n"
        "before = any(m.split('.')[0] == 'cryptography' for m in sys.modules)\n"
        "signing.signer(Path(sys.argv[1]))(b'payload')\n"
        "after = any(m.split('.')[0] == 'cryptography' for m in sys.modules)\n"
        "print(before, after)\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(keys["ed25519"])],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].split() == ["False", "True"]
