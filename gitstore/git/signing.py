"""SSH signatures for commits and version tags, in git's ``gpg.format=ssh`` scheme.

A signature is an armoured SSHSIG blob (OpenSSH ``PROTOCOL.sshsig``, namespace
``git``, hash ``sha512``), the format ``ssh-keygen -Y sign -n git`` writes, so
an auditor with an allowed-signers file verifies with plain ``git verify-tag``,
``git verify-commit`` and ``git log --show-signature``. Signing is configured
once per store (``gitstore init --signing-key KEY``); the store then writes
``<root>/.gitstore/allowed_signers`` and points every customer repository's
``gpg.ssh.allowedSignersFile`` at it.

:func:`signer` signs **in process** (with ``cryptography``, loaded on first use
through :mod:`gitstore.core.lazy`) when the key is an unencrypted OpenSSH
private key file of type ed25519, ecdsa-sha2-nistp256/384/521 or rsa (signed
as ``rsa-sha2-512``), readable only by its owner, as ssh insists. Every other
key runs ``ssh-keygen -Y sign`` per signature, exactly as git does: a
passphrase-protected key (ssh-keygen asks the agent, ``SSH_ASKPASS`` or the
terminal), a public key file whose private key an ssh-agent holds
(``SSH_AUTH_SOCK``), and the types handled in process not at all (``sk-``
security keys, DSA, PEM files).

Invariants: a payload is signed as the exact bytes git will verify (the
commit or tag object without its signature); an in-process signature is
byte-for-byte what ssh-keygen writes for the same key and payload where the
algorithm is deterministic (ed25519, rsa-sha2-512), and in the same format
otherwise (ecdsa);
verification never trusts a signature whose key is not in the allowed-signers
file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitstore.core import lazy
from gitstore.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    import cryptography.exceptions as crypto_exceptions
    import cryptography.hazmat.primitives.asymmetric.utils as asym_utils
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
else:  # loaded by the first key load, never by --help or a read (gitstore.core.lazy)
    crypto_exceptions = lazy.module("cryptography.exceptions")
    asym_utils = lazy.module("cryptography.hazmat.primitives.asymmetric.utils")
    hashes = lazy.module("cryptography.hazmat.primitives.hashes")
    serialization = lazy.module("cryptography.hazmat.primitives.serialization")
    ec = lazy.module("cryptography.hazmat.primitives.asymmetric.ec")
    ed25519 = lazy.module("cryptography.hazmat.primitives.asymmetric.ed25519")
    padding = lazy.module("cryptography.hazmat.primitives.asymmetric.padding")
    rsa = lazy.module("cryptography.hazmat.primitives.asymmetric.rsa")

NAMESPACE = "git"
Signer = Callable[[bytes], bytes]
SSH_SIGNATURE_BEGIN = b"-----BEGIN SSH SIGNATURE-----"
SSH_SIGNATURE_END = b"-----END SSH SIGNATURE-----"
MAGIC = b"SSHSIG"
SIG_VERSION = 1
HASH_ALGORITHM = "sha512"
ARMOR_WIDTH = 70  # ssh-keygen wraps the base64 body at 70 columns
RSA_MINIMUM_BITS = 1024  # ssh-keygen refuses shorter keys; gitstore leaves them to it
OPENSSH_PRIVATE = b"-----BEGIN OPENSSH PRIVATE KEY-----"
#: ecdsa curves (cryptography's name) by their SSH name and signature hash (RFC 5656).
CURVES = {"secp256r1": ("nistp256", "sha256"), "secp384r1": ("nistp384", "sha384"),
          "secp521r1": ("nistp521", "sha512")}


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise UsageError("signing needs ssh-keygen (OpenSSH 8.2 or newer) on PATH")
    return exe


# --------------------------------------------------------------------------- SSHSIG


def _string(data: bytes) -> bytes:
    """An SSH wire ``string``: a uint32 length, then the bytes."""
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    """An SSH wire ``mpint`` of a non-negative integer (RFC 4251 section 5)."""
    if value == 0:
        return _string(b"")
    return _string(value.to_bytes((value.bit_length() + 8) // 8, "big"))


def _public_blob(private: PrivateKey) -> bytes:
    line = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def _signature_blob(private: PrivateKey, data: bytes) -> bytes:
    """The SSH signature of ``data``: a string naming the algorithm, then the signature."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return _string(b"ssh-ed25519") + _string(private.sign(data))
    if isinstance(private, rsa.RSAPrivateKey):
        return _string(b"rsa-sha2-512") + _string(
            private.sign(data, padding.PKCS1v15(), hashes.SHA512()))
    curve, digest = CURVES[private.curve.name]
    algorithm: hashes.HashAlgorithm = (hashes.SHA256() if digest == "sha256" else
                                       hashes.SHA384() if digest == "sha384" else
                                       hashes.SHA512())
    r, s = asym_utils.decode_dss_signature(private.sign(data, ec.ECDSA(algorithm)))
    return _string(f"ecdsa-sha2-{curve}".encode()) + _string(_mpint(r) + _mpint(s))


def armor(blob: bytes) -> bytes:
    """The armoured form of an SSHSIG blob, wrapped as ssh-keygen wraps it."""
    body = base64.b64encode(blob)
    lines = [body[i:i + ARMOR_WIDTH] for i in range(0, len(body), ARMOR_WIDTH)]
    return b"\n".join([SSH_SIGNATURE_BEGIN, *lines, SSH_SIGNATURE_END]) + b"\n"


def sshsig(private: PrivateKey, message: bytes, namespace: str = NAMESPACE) -> bytes:
    """The armoured SSH signature of ``message`` by ``private`` (``PROTOCOL.sshsig``).

    What is signed is the magic preamble, the namespace, an empty reserved
    field, the hash algorithm's name and the SHA-512 of ``message``."""
    ns, reserved, alg = namespace.encode(), b"", HASH_ALGORITHM.encode()
    signed = (MAGIC + _string(ns) + _string(reserved) + _string(alg)
              + _string(hashlib.sha512(message).digest()))
    blob = (MAGIC + struct.pack(">I", SIG_VERSION) + _string(_public_blob(private))
            + _string(ns) + _string(reserved) + _string(alg)
            + _string(_signature_blob(private, signed)))
    return armor(blob)


# --------------------------------------------------------------------------- keys


def _is_public_key_file(data: bytes) -> bool:
    """Whether ``data`` is a public key line: a type, then a base64 key blob whose
    first field names the same type."""
    words = data.split()
    if len(words) < 2 or data.lstrip().startswith(b"-----"):
        return False
    try:
        blob = base64.b64decode(words[1], validate=True)
    except ValueError:
        return False
    (n,) = struct.unpack(">I", blob[:4]) if len(blob) >= 4 else (0,)
    return n > 0 and blob[4:4 + n] == words[0]


def load_private_key(key: Path) -> PrivateKey | None:
    """The private key in ``key`` when gitstore can sign with it in process, else None.

    None for anything ssh-keygen must handle: an unreadable file or one others
    may read (ssh-keygen refuses it, and says so), a passphrase-protected key, a
    public key (its private half is in an agent), a key format other than
    OpenSSH's, a type other than ed25519, ecdsa nistp256/384/521 and rsa, an rsa
    key too short for ssh-keygen."""
    try:
        st = os.stat(key)
        data = key.read_bytes()
    except OSError:
        return None
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        return None
    if not data.lstrip().startswith(OPENSSH_PRIVATE):
        return None
    try:
        with warnings.catch_warnings():  # a DSA key warns of its deprecation; not ours to sign
            warnings.simplefilter("ignore")
            private = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, crypto_exceptions.UnsupportedAlgorithm):
        return None
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private
    if isinstance(private, rsa.RSAPrivateKey):
        return private if private.key_size >= RSA_MINIMUM_BITS else None
    if isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name in CURVES:
        return private
    return None


def public_key(key: Path) -> str:
    """The public key line (``ssh-ed25519 AAAA…``) of a key file: a private key
    (its ``.pub`` beside it, or derived) or a public key (an agent's key)."""
    pub = Path(str(key) + ".pub")
    try:
        own = key.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read SSH key {key}: {exc.strerror}") from None
    if pub.is_file():
        text = pub.read_text(encoding="utf-8").split()
    elif _is_public_key_file(own):
        text = own.decode("ascii", errors="replace").split()
    elif (private := load_private_key(key)) is not None:
        text = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode().split()
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


# --------------------------------------------------------------------------- signers


@dataclass(frozen=True, eq=False)
class KeySigner:
    """Signs in process with a private key loaded once from ``key``."""

    key: Path
    private: PrivateKey
    in_process = True

    def __call__(self, payload: bytes) -> bytes:
        return sshsig(self.private, payload)


@dataclass(frozen=True)
class KeygenSigner:
    """Signs by running ``ssh-keygen -Y sign`` once per signature."""

    key: Path
    exe: str
    in_process = False

    def __call__(self, payload: bytes) -> bytes:
        proc = subprocess.run([self.exe, "-Y", "sign", "-n", NAMESPACE, "-f", str(self.key)],
                              input=payload, capture_output=True, check=False)
        if proc.returncode != 0 or SSH_SIGNATURE_BEGIN not in proc.stdout:
            raise UsageError(f"ssh-keygen could not sign with {self.key}: "
                             f"{proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout


def ssh_keygen_signer(key: Path) -> KeygenSigner:
    """A signer that always runs ssh-keygen (what :func:`signer` falls back to)."""
    if not key.is_file():
        raise UsageError(f"signing key {key} does not exist")
    return KeygenSigner(key, _ssh_keygen())


def signer(key: Path) -> KeySigner | KeygenSigner:
    """A function that signs a payload with ``key`` and returns the armoured
    signature: in process when :func:`load_private_key` can load the key, by
    ssh-keygen otherwise."""
    if not key.is_file():
        raise UsageError(f"signing key {key} does not exist")
    private = load_private_key(key)
    return KeySigner(key, private) if private is not None else ssh_keygen_signer(key)


# --------------------------------------------------------------------------- verification


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
