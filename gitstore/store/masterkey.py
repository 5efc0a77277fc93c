"""The master key of an encrypted store, and the files of its key store.

The master key never touches the store: a key file, ``GITSTORE_MASTER_KEY``, or a
command that wraps and unwraps (a KMS adapter: ``CMD wrap|unwrap``, base64 on
stdin and stdout, ``GITSTORE_KEY_ID`` naming the key; run without a shell, under
a timeout). Key-store files are written whole or not at all (a unique temporary
file, fsynced, renamed, the directory fsynced), mode 0600, in 0700 directories;
destroying one overwrites it with zeros first.

Invariants: a master key is named by its fingerprint (an HMAC of a label, or a
hash of the command line), which reveals nothing about it; every failure to
read, wrap or unwrap is a one-line :class:`~gitstore.errors.KeyUnavailableError`
(exit 13).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.core import lazy
from gitstore.errors import KeyUnavailableError, StorageError, UsageError

if TYPE_CHECKING:
    import cryptography.hazmat.primitives.ciphers.aead as aead
else:
    aead = lazy.module("cryptography.hazmat.primitives.ciphers.aead")

__all__ = ["COMMAND_TIMEOUT", "MASTER_KEY_ENV", "Master", "destroy", "fsync_dir",
           "master_from_file", "master_key", "new_master_key_file", "private_dir", "read_record",
           "write_atomic"]

MASTER_KEY_ENV = ("GITSTORE_MASTER_KEY", "GITSTORE_MASTER_KEY_FILE",
                  "GITSTORE_MASTER_KEY_COMMAND")
"""The environment variables that set the master key (they override the store's config)."""
COMMAND_TIMEOUT = 30.0


class Master:
    """The master key: wraps and unwraps data keys; ``fingerprint`` names it."""

    def __init__(self, secret: bytes | None = None, command: str | None = None,
                 origin: str = "") -> None:
        if (secret is None) == (command is None):
            raise ValueError("a master key is a secret or a command")
        if secret is not None and len(secret) != 32:
            raise UsageError(f"{origin}: a master key is 32 bytes (or their base64)")
        self._secret = secret
        self.command = command
        self.origin = origin
        self.fingerprint = ("cmd-" + hashlib.sha256(command.encode()).hexdigest()[:16]
                            if command is not None else
                            hmac.new(secret or b"", b"gitstore master key", hashlib.sha256
                                     ).hexdigest()[:20])

    def wrap(self, key: bytes, kid: str) -> str:
        if self._secret is not None:
            nonce = os.urandom(12)
            return base64.b64encode(nonce + aead.AESGCM(self._secret).encrypt(
                nonce, key, kid.encode())).decode("ascii")
        return self._run("wrap", base64.b64encode(key).decode("ascii"), kid)

    def unwrap(self, wrapped: str, kid: str) -> bytes:
        if self._secret is not None:
            try:
                raw = base64.b64decode(wrapped, validate=True)
                return bytes(aead.AESGCM(self._secret).decrypt(raw[:12], raw[12:],
                                                               kid.encode()))
            except Exception:  # InvalidTag, bad base64
                raise KeyUnavailableError(f"the data key of {kid} does not unwrap with the "
                                          f"master key from {self.origin}") from None
        out = self._run("unwrap", wrapped, kid)
        try:
            key = base64.b64decode(out, validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise KeyUnavailableError(f"master key command ({self.origin}) did not unwrap "
                                      f"the data key of {kid}")
        return key

    def _run(self, verb: str, data: str, kid: str) -> str:
        assert self.command is not None
        try:
            done = subprocess.run([*shlex.split(self.command), verb], input=data + "\n",
                                  capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                                  env={**os.environ, "GITSTORE_KEY_ID": kid}, check=False)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise KeyUnavailableError(f"master key command ({self.origin}) failed to "
                                      f"{verb}: {exc}") from None
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise KeyUnavailableError(f"master key command ({self.origin}) failed to "
                                      f"{verb} {kid}: {why}")
        return done.stdout.strip()


def master_key(file: Path | None = None, command: str | None = None) -> Master | None:
    """The master key in force: ``GITSTORE_MASTER_KEY`` (base64),
    ``GITSTORE_MASTER_KEY_FILE``, ``GITSTORE_MASTER_KEY_COMMAND``, then the
    store's ``master_key_command`` and ``master_key_file``; None when none is set."""
    env = os.environ.get("GITSTORE_MASTER_KEY")
    if env:
        return Master(_decode_secret(env.encode(), "GITSTORE_MASTER_KEY"),
                      origin="GITSTORE_MASTER_KEY")
    env_file = os.environ.get("GITSTORE_MASTER_KEY_FILE")
    env_cmd = os.environ.get("GITSTORE_MASTER_KEY_COMMAND")
    if env_file:
        return _from_file(Path(env_file))
    if env_cmd:
        return Master(command=env_cmd, origin="GITSTORE_MASTER_KEY_COMMAND")
    if command:
        return Master(command=command, origin="master_key_command")
    if file is not None:
        return _from_file(file)
    return None


def master_from_file(path: Path) -> Master:
    """The master key in the file ``path`` (32 bytes or their base64), whatever the
    environment says (a rotation's new key): :class:`KeyUnavailableError` when the
    file cannot be read, :class:`UsageError` when it holds no key."""
    return _from_file(path)


def _from_file(path: Path) -> Master:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyUnavailableError(f"cannot read the master key file {path}: "
                                  f"{exc.strerror or exc}") from None
    return Master(_decode_secret(data, str(path)), origin=str(path))


def _decode_secret(data: bytes, origin: str) -> bytes:
    if len(data) == 32:
        return data
    try:
        secret = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise UsageError(f"{origin}: a master key is 32 random bytes or their base64")
    return secret


def new_master_key_file(path: Path) -> bool:
    """Create a master key file (base64 of 32 random bytes, mode 0600) unless one
    exists; returns whether it was created."""
    if path.exists():
        _from_file(path)  # refuses a bad one now
        return False
    write_atomic(path, base64.b64encode(os.urandom(32)) + b"\n")
    return True


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all, durable, 0600 (its directories 0700)."""
    tmp = None
    try:
        private_dir(path.parent)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)


def read_record(path: Path) -> dict[str, Any]:
    """A key-store JSON object file (KeyUnavailableError when it is not one)."""
    try:
        found = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise KeyUnavailableError(f"cannot read {path}: {exc}") from None
    if not isinstance(found, dict):
        raise KeyUnavailableError(f"{path} is damaged (not a JSON object)")
    return found


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def destroy(path: Path) -> None:
    """Overwrite a file with zeros (fsynced), then remove it."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
        fsync_dir(path.parent)
    except FileNotFoundError:
        return
