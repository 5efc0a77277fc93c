"""The key store of an encrypted store, and the sealer every customer reads through.

Each scenario of an encrypted customer has its own **random** 32-byte data key
(never derived from another key, so destroying it destroys only that session),
kept wrapped by the store's master key in ``<root>/.gitstore/keys/<customer>/
<scenario>.key``. The master key never touches the store: a key file, the
``GITSTORE_MASTER_KEY`` environment variable, or a command that wraps and unwraps
(a KMS adapter), see :func:`master_key`.

Invariants:

* a key file is written whole or not at all (a temporary file, fsynced, renamed,
  the directory fsynced), mode 0600, and never overwritten: a data key, once
  used, is the only key its ciphertext opens with;
* shredding overwrites and removes the key file, removes the key from every
  backup file the key store wrote (:meth:`KeyStore.backup` records where), and
  leaves a tombstone, so a read says *shredded* (not *missing*) and a restore
  never brings the key back;
* a wrapped key names the fingerprint of the master key that wrapped it: a wrong
  master key is reported as such, never as damage;
* :meth:`Sealer.open_files` returns plaintext equal, byte for byte, to what
  :meth:`Sealer.seal_files` was given (every token is checked on the way:
  :class:`gitstore.core.sealed.SealError` names a changed or moved one).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gitstore.core import canonical, manifest, sealed
from gitstore.core.names import CONV, KEYS_DIR, MANIFEST, META, STORE_DIR, check_customer
from gitstore.core.versions import Version
from gitstore.errors import KeyUnavailableError, ShreddedError, StorageError, UsageError
from gitstore.store.masterkey import MASTER_KEY_ENV as MASTER_KEY_ENV
from gitstore.store.masterkey import Master as Master
from gitstore.store.masterkey import destroy, read_record, write_atomic
from gitstore.store.masterkey import master_from_file as master_from_file
from gitstore.store.masterkey import master_key as master_key
from gitstore.store.masterkey import new_master_key_file as new_master_key_file

__all__ = ["KEYS_DIR", "MASTER_KEY_ENV", "KeyStore", "Master", "Sealer", "master_from_file",
           "master_key", "new_master_key_file"]

BACKUPS_FILE = "backups.json"
BUNDLE_FORMAT = "gitstore-keys-v1"
OPEN_CACHE = 64


@dataclass(frozen=True)
class Shredded:
    """What a shred did: the tombstone's time and the backups it cleaned."""

    kid: str
    at: str
    backups_cleaned: tuple[str, ...]
    backups_unreachable: tuple[str, ...]


class KeyStore:
    """The wrapped data keys of one store (see the module docstring)."""

    def __init__(self, root: Path, master: Master | Callable[[], Master | None] | None) -> None:
        self.dir = root / STORE_DIR / KEYS_DIR
        self._master = master
        self._keys: dict[str, bytes] = {}

    @property
    def master(self) -> Master | None:
        """The master key in force, read when first needed (a store whose master key
        file is missing still lists, logs, verifies stored bytes and shreds)."""
        if callable(self._master):
            self._master = self._master()
        return self._master

    @master.setter
    def master(self, value: Master | None) -> None:
        self._master = value

    @staticmethod
    def kid(customer: str, scenario: int) -> str:
        return f"{customer}/{scenario}"

    def _path(self, customer: str, scenario: int, suffix: str = ".key") -> Path:
        return self.dir / customer / f"{scenario}{suffix}"

    def _need_master(self, what: str) -> Master:
        if self.master is None:
            raise KeyUnavailableError(
                f"{what} is encrypted and no master key is set: set GITSTORE_MASTER_KEY, "
                "GITSTORE_MASTER_KEY_FILE or the store's master_key_file / master_key_command")
        return self.master

    def shredded(self, customer: str, scenario: int) -> dict[str, Any] | None:
        """The tombstone of a shredded session (None when it was not shredded)."""
        path = self._path(customer, scenario, ".shredded")
        if not path.exists():
            return None
        try:
            return read_record(path)
        except (KeyUnavailableError, FileNotFoundError):
            return {"at": "unknown"}  # a damaged tombstone is still a tombstone

    def create(self, customer: str, scenario: int) -> bytes:
        """A new random data key for a new scenario, stored before it is used."""
        kid = self.kid(customer, scenario)
        path = self._path(customer, scenario)
        if path.exists() or self.shredded(customer, scenario) is not None:
            return self.data_key(customer, scenario)
        master = self._need_master(f"customer {customer}")
        key = os.urandom(32)
        wrapped = master.wrap(key, kid)
        if not wrapped or "\n" in wrapped or master.unwrap(wrapped, kid) != key:
            raise KeyUnavailableError(f"the master key ({master.origin}) did not wrap the new "
                                      f"data key of {kid} so that it unwraps again; nothing "
                                      "was written")
        record = {"kid": kid, "master": master.fingerprint, "wrapped": wrapped}
        write_atomic(path, canonical.dumps(record))
        self._keys[kid] = key
        return key

    def data_key(self, customer: str, scenario: int) -> bytes:
        """The data key of a scenario: :class:`ShreddedError` after a shred,
        :class:`KeyUnavailableError` when it cannot be had here."""
        kid = self.kid(customer, scenario)
        tomb = self.shredded(customer, scenario)  # looked at every time: another process
        if tomb is not None:                      # may have shredded it meanwhile
            self._keys.pop(kid, None)
            raise ShreddedError(f"scenario v{scenario} of {customer} was shredded at "
                                f"{tomb.get('at', 'unknown')}: its content is erased")
        if kid in self._keys:
            return self._keys[kid]
        path = self._path(customer, scenario)
        try:
            record = read_record(path)
        except FileNotFoundError:
            raise KeyUnavailableError(
                f"scenario v{scenario} of {customer} is encrypted and its data key is not in "
                f"the key store ({self.dir}); restore it with `gitstore keys restore`") from None
        master = self._need_master(f"scenario v{scenario} of {customer}")
        if record.get("master") != master.fingerprint:
            raise KeyUnavailableError(
                f"the data key of {kid} was wrapped by master key {record.get('master')}, "
                f"not by the one set ({master.fingerprint}, from {master.origin})")
        key = master.unwrap(str(record.get("wrapped", "")), kid)
        self._keys[kid] = key
        return key

    def kids(self) -> list[tuple[str, int]]:
        """Every (customer, scenario) whose key the store holds (never a shredded one,
        even if a shred was cut short before its key file went)."""
        out = []
        if self.dir.is_dir():
            for path in sorted(self.dir.glob("*/*.key")):
                if path.stem.isdigit() and not path.with_suffix(".shredded").exists():
                    out.append((path.parent.name, int(path.stem)))
        return out

    def has_key(self, customer: str, scenario: int) -> bool:
        return self._path(customer, scenario).exists()

    def shred(self, customer: str, scenario: int, at: datetime) -> Shredded:
        """Destroy a scenario's data key here and in every backup this store wrote.
        Idempotent: run again after an interruption, it finishes the work (the key
        file, stray temporary copies, backups), keeping the first tombstone's time."""
        kid = self.kid(customer, scenario)
        path = self._path(customer, scenario)
        tomb = self.shredded(customer, scenario)
        stamp = str(tomb.get("at", "unknown")) if tomb is not None else at.isoformat()
        if tomb is None:
            write_atomic(self._path(customer, scenario, ".shredded"),
                          canonical.dumps({"kid": kid, "at": stamp}))
        destroy(path)
        for stray in path.parent.glob(f".{path.name}.*.tmp"):
            destroy(stray)
        self._keys.pop(kid, None)
        cleaned, unreachable = [], []
        for backup in self.backups():
            try:
                bundle = read_record(Path(backup))
                if kid in bundle.get("keys", {}):
                    del bundle["keys"][kid]
                    write_atomic(Path(backup), canonical.dumps(bundle))
                cleaned.append(backup)
            except (OSError, StorageError, KeyUnavailableError, TypeError, AttributeError):
                unreachable.append(backup)
        return Shredded(kid, stamp, tuple(cleaned), tuple(unreachable))

    def backups(self) -> list[str]:
        """Where :meth:`backup` wrote (a damaged list is an error: a shred must
        know every copy it has to reach)."""
        path = self.dir / BACKUPS_FILE
        if not path.exists():
            return []
        try:
            found = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise KeyUnavailableError(f"cannot read the list of key backups {path}: {exc}; "
                                      "repair it (a JSON list of paths)") from None
        if not isinstance(found, list):
            raise KeyUnavailableError(f"{path} is damaged (not a JSON list of paths)")
        return [str(p) for p in found]

    def backup(self, dest: Path) -> int:
        """Write every wrapped key to ``dest`` (one file, 0600) and remember it, so
        a shred reaches it; returns how many keys it holds."""
        dest = dest.resolve()
        keys = {}
        for customer, scenario in self.kids():
            keys[self.kid(customer, scenario)] = read_record(self._path(customer, scenario))
        write_atomic(dest, canonical.dumps({"format": BUNDLE_FORMAT, "keys": keys}))
        known = self.backups()
        if str(dest) not in known:
            write_atomic(self.dir / BACKUPS_FILE, canonical.dumps([*known, str(dest)]))
        return len(keys)

    def restore(self, source: Path) -> tuple[int, list[str]]:
        """Bring back keys missing here from a backup file; a shredded key is never
        brought back. Returns (keys restored, kids skipped as shredded)."""
        try:
            bundle = json.loads(source.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read key backup {source}: {exc}") from None
        if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT \
                or not isinstance(bundle.get("keys"), dict):
            raise UsageError(f"{source} is not a gitstore key backup")
        restored, skipped = 0, []
        for kid, record in sorted(bundle["keys"].items()):
            customer, _, scenario = str(kid).rpartition("/")
            try:
                check_customer(customer)
            except UsageError:
                raise UsageError(f"{source}: malformed key entry {kid!r}") from None
            if not scenario.isdigit() or not isinstance(record, dict):
                raise UsageError(f"{source}: malformed key entry {kid!r}")
            if self.shredded(customer, int(scenario)) is not None:
                skipped.append(kid)
                continue
            path = self._path(customer, int(scenario))
            if not path.exists():
                write_atomic(path, canonical.dumps(record))
                restored += 1
        return restored, skipped

    def rotate(self, new: Master) -> int:
        """Re-wrap every data key with ``new`` (the repositories are not touched)."""
        old = self._need_master("this store")
        pending = []
        for customer, scenario in self.kids():
            kid = self.kid(customer, scenario)
            record = read_record(self._path(customer, scenario))
            if record.get("master") == new.fingerprint:
                continue
            if record.get("master") != old.fingerprint:
                raise KeyUnavailableError(f"the data key of {kid} was wrapped by master key "
                                          f"{record.get('master')}, not by the current one")
            key = old.unwrap(str(record.get("wrapped", "")), kid)
            pending.append((customer, scenario, {"kid": kid, "master": new.fingerprint,
                                                 "wrapped": new.wrap(key, kid)}))
        for customer, scenario, record in pending:  # every unwrap worked: now write,
            if self.shredded(customer, scenario) is None:  # never bringing a shredded key back
                write_atomic(self._path(customer, scenario), canonical.dumps(record))
        self.master = new
        return len(pending)


_opened: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()


class Sealer:
    """Seals and opens one customer's session files (the repository's codec)."""

    def __init__(self, keys: KeyStore, customer: str) -> None:
        self.keys = keys
        self.customer = customer
        self._session_keys: dict[int, sealed.SessionKey] = {}

    def key(self, scenario: int, *, create: bool = False) -> sealed.SessionKey:
        """The scenario's key; a shred by any process is seen at once (the tombstone
        is looked at every time, one ``stat``), so nothing is sealed with or opened
        by a destroyed key."""
        found = self._session_keys.get(scenario)
        if found is not None and self.keys.shredded(self.customer, scenario) is not None:
            self.forget(scenario)
            found = None
        if found is None:
            data = self.keys.create(self.customer, scenario) if create else \
                self.keys.data_key(self.customer, scenario)
            found = self._session_keys[scenario] = sealed.SessionKey(self.customer, scenario,
                                                                      data)
        return found

    def seal_blob(self, scenario: int, name: str, data: bytes) -> bytes:
        """A file outside the session tree (a pending merge's ``merge.json``), sealed whole."""
        return sealed.seal_file(self.key(scenario), name + ".sealed", data)

    def open_blob(self, scenario: int, name: str, stored: bytes) -> bytes:
        """:meth:`seal_blob` undone (bytes without a token are returned as they are)."""
        return sealed.open_file(self.key(scenario), name + ".sealed", stored)

    def forget(self, scenario: int) -> None:
        """Drop a scenario's key from memory (it was shredded)."""
        self._session_keys.pop(scenario, None)

    def open_files(self, stored: Mapping[str, bytes]) -> dict[str, bytes]:
        """The plaintext of a session tree's stored files (the manifest as stored)."""
        out = dict(stored)
        key = None
        for name, data in stored.items():
            if name == MANIFEST or not sealed.has_tokens(data):
                continue
            if key is None:  # first, even for what is remembered: it may be shredded now
                key = self.key(self._scenario_of(stored))
            hit = _opened.get(id(data))
            if hit is not None and hit[0] is data:
                out[name] = hit[1]
                continue
            out[name] = sealed.open_file(key, name, data, strict=True)
            self.remember(data, out[name])
        return out

    def _scenario_of(self, stored: Mapping[str, bytes]) -> int:
        try:
            info = canonical.loads(stored[META])["session_info"]
            return Version.parse(info["session_version"]).major
        except (KeyError, TypeError, ValueError, UsageError):
            raise sealed.SealError(f"a sealed session of {self.customer} without a readable "
                                   "session_metadata.json version: cannot tell its key") from None

    @staticmethod
    def remember(stored: bytes, plain: bytes) -> None:
        _opened[id(stored)] = (stored, plain)
        while len(_opened) > OPEN_CACHE:
            _opened.popitem(last=False)

    def seal_files(self, files: Mapping[str, bytes], scenario: int, *,
                   parsed: Mapping[str, Any] | None = None,
                   base: tuple[Mapping[str, bytes], Mapping[str, bytes]] | None = None,
                   create: bool = False, appended: int | None = None,
                   span: tuple[int, int] | None = None,
                   ) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Stored files for plaintext ``files`` (the manifest left out: it lists
        stored bytes, so the caller builds it), and the JSON documents it sealed,
        blanked (what an index may hold). ``base`` (the tip's plaintext and
        stored files) lets unchanged files keep their stored bytes; ``parsed``
        hands over documents already parsed; ``appended``: the change only added
        the conversation's last turn, at that index, and set ``total_turns``, so
        the sealed turn is spliced into the tip's stored bytes (the tests prove
        it equal to sealing the whole conversation; ``span`` locates the stored
        turns array)."""
        key = self.key(scenario, create=create)
        out: dict[str, bytes] = {}
        blanked: dict[str, Any] = {}
        for name, data in files.items():
            if name == MANIFEST:
                continue
            if base is not None and base[0].get(name) is data and name in base[1]:
                out[name] = base[1][name]
                continue
            if name not in sealed.SEALED_FILES:
                out[name] = data
                continue
            if name.endswith(".json"):
                doc = (parsed or {}).get(name)
                doc = canonical.loads_stored(data) if doc is None else doc
                spliced = _spliced(key, doc, base[1].get(name) if base else None, appended,
                                   span) if name == CONV else None
                out[name] = spliced or canonical.dumps(sealed.seal_doc(key, name, doc))
                blanked[name] = sealed.seal_doc(key, name, doc, blanked=True)
            else:
                out[name] = sealed.seal_file(key, name, data)
            self.remember(out[name], data)
        return out, blanked

    def seal_tree(self, files: Mapping[str, bytes], scenario: int, *,
                  parsed: Mapping[str, Any] | None = None,
                  base: tuple[Mapping[str, bytes], Mapping[str, bytes]] | None = None,
                  create: bool = False, appended: int | None = None,
                  span: tuple[int, int] | None = None,
                  ) -> tuple[dict[str, bytes], dict[str, Any], str]:
        """A checked tree (plaintext ``files`` with the pipeline's manifest) as
        stored: sealed, its manifest rebuilt over the stored bytes of the files the
        pipeline's manifest lists; the blanked documents; and the keyed digest of
        the manifest of every plaintext file (the ``Sealed-Digest`` trailer)."""
        stored, blanked = self.seal_files(files, scenario, parsed=parsed, base=base,
                                          create=create, appended=appended, span=span)
        listed = manifest.parse(files[MANIFEST])[0]
        stored[MANIFEST] = manifest.build({n: d for n, d in stored.items() if n in listed})
        plain = manifest.build({n: d for n, d in files.items() if n != MANIFEST})
        return stored, blanked, self.key(scenario).digest(plain)


_TURNS_OPEN = b'\n  "conversation_turns": [\n'


def _spliced(key: sealed.SessionKey, doc: Any, stored: bytes | None,
             appended: int | None, span: tuple[int, int] | None) -> bytes | None:
    """The tip's stored conversation with turn ``appended`` sealed and added at
    its end and ``total_turns`` set (None when that does not apply); ``span``:
    where the stored turns array's body starts and ends, when known (nothing
    is scanned for then)."""
    turns = doc.get("conversation_turns") if isinstance(doc, dict) else None
    total = (doc.get("conversation_summary") or {}).get("total_turns") \
        if isinstance(doc, dict) else None
    if stored is None or appended is None or not isinstance(turns, list) \
            or appended != len(turns) - 1 or not isinstance(total, int):
        return None
    item = sealed.seal_doc(key, CONV, turns[appended], pointer=f"/conversation_turns/{appended}",
                           pattern="/conversation_turns/*")
    out = None
    if span is not None and stored[span[0] - len(_TURNS_OPEN):span[0]] == _TURNS_OPEN:
        head = canonical.set_int_member(stored[:span[0]], "conversation_summary",
                                        "total_turns", total)  # the summary precedes the turns
        out = canonical.append_at(stored, head, span[0], span[1], item) if head else None
    if out is None:
        out = canonical.append_item(stored, "conversation_turns", item)
        out = canonical.set_int_member(out, "conversation_summary", "total_turns", total) \
            if out is not None else None
    if out is not None and os.environ.get("GITSTORE_CHECK_SPLICE") \
            and out != canonical.dumps(sealed.seal_doc(key, CONV, doc)):
        raise AssertionError("spliced sealed conversation differs from its canonical form")
    return out
