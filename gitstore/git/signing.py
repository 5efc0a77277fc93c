"""SSH signatures for commits and version tags, in git's ``gpg.format=ssh`` scheme.

gitstore signs with ``ssh-keygen -Y sign -n git`` exactly as git does, so an
auditor with an allowed-signers file verifies with plain ``git verify-tag``,
``git verify-commit`` and ``git log --show-signature``. Signing is configured
once per store (``gitstore init --signing-key KEY``); the store then writes
``<root>/.gitstore/allowed_signers`` and points every customer repository's
``gpg.ssh.allowedSignersFile`` at it.

Invariants: a payload is signed as the exact bytes git will verify (the
commit or tag object without its signature); verification never trusts a
signature whose key is not in the allowed-signers file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from gitstore.errors import IntegrityError, UsageError

NAMESPACE = "git"
Signer = Callable[[bytes], bytes]
SSH_SIGNATURE_BEGIN = b"-----BEGIN SSH SIGNATURE-----"


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise UsageError("signing needs ssh-keygen (OpenSSH 8.2 or newer) on PATH")
    return exe


def public_key(key: Path) -> str:
    """The public key line (``ssh-ed25519 AAAA…``) of a private key file."""
    pub = Path(str(key) + ".pub")
    if pub.is_file():
        text = pub.read_text(encoding="utf-8").split()
    else:
        proc = subprocess.run([_ssh_keygen(), "-y", "-f", str(key)], capture_output=True,
                              check=False, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise UsageError(f"cannot read SSH key {key}: "
                             f"{proc.stderr.decode(errors='replace').strip()}")
        text = proc.stdout.decode().split()
    if len(text) < 2:
        raise UsageError(f"cannot read SSH public key of {key}")
    return f"{text[0]} {text[1]}"


def signer(key: Path) -> Signer:
    """A function that signs a payload with ``key`` and returns the armored signature."""
    if not key.is_file():
        raise UsageError(f"signing key {key} does not exist")
    exe = _ssh_keygen()

    def sign(payload: bytes) -> bytes:
        proc = subprocess.run([exe, "-Y", "sign", "-n", NAMESPACE, "-f", str(key)],
                              input=payload, capture_output=True, check=False)
        if proc.returncode != 0 or SSH_SIGNATURE_BEGIN not in proc.stdout:
            raise UsageError(f"ssh-keygen could not sign with {key}: "
                             f"{proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    return sign


def write_allowed_signers(path: Path, principal: str, key: Path) -> None:
    """Write an allowed-signers file trusting ``key`` as ``principal`` for git."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f'{principal} namespaces="{NAMESPACE}" {public_key(key)}\n'
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(line)
    os.replace(tmp, path)


def verify(payload: bytes, signature: bytes, allowed_signers: Path) -> str:
    """Verify ``signature`` over ``payload``; return the signer's principal.

    Raises :class:`IntegrityError` naming why when the signature is bad or its
    key is not allowed."""
    exe = _ssh_keygen()
    if not allowed_signers.is_file():
        raise UsageError(f"allowed-signers file {allowed_signers} does not exist")
    with tempfile.NamedTemporaryFile(suffix=".sig") as sig:
        sig.write(signature)
        sig.flush()
        found = subprocess.run([exe, "-Y", "find-principals", "-s", sig.name, "-f",
                                str(allowed_signers)], capture_output=True, check=False,
                               stdin=subprocess.DEVNULL)
        principals = found.stdout.decode().split()
        if found.returncode != 0 or not principals:
            raise IntegrityError("signed by a key that is not in the allowed signers")
        principal = principals[0]
        proc = subprocess.run([exe, "-Y", "verify", "-f", str(allowed_signers), "-I", principal,
                               "-n", NAMESPACE, "-s", sig.name], input=payload,
                              capture_output=True, check=False)
        if proc.returncode != 0:
            raise IntegrityError("bad signature: "
                                 f"{proc.stderr.decode(errors='replace').strip() or 'invalid'}")
    return principal
