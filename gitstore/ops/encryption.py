"""Encrypted stores: turning encryption on, crypto-shredding, key backups, and the
textconv filter that lets plain git show an encrypted session to a key holder.

Invariants:

* shredding touches no repository: every commit, tag and signature stays, so
  ``git fsck --strict`` and ``git verify-tag`` stay clean; only the session's data
  key goes (here and in every backup the key store wrote), after which its
  content is unreadable wherever a copy of the repository lives;
* every shred leaves a content-free tombstone in the customer's access log;
* the textconv filter prints a file's plaintext when the key store and the master
  key are at hand, and the file unchanged otherwise (git must always get output).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitstore.core import canonical, sealed
from gitstore.core.names import CONV
from gitstore.core.versions import Scenario
from gitstore.errors import GitStoreError, NotFoundError, ShreddedError, UsageError
from gitstore.store import config as config_mod
from gitstore.store.facade import Store
from gitstore.store.keys import KeyStore, master_key, new_master_key_file
from gitstore.store.merges import drop_pending

__all__ = ["ShredResult", "enable", "encrypted_customers", "shred", "shred_locked", "status",
           "textconv"]


@dataclass(frozen=True)
class ShredResult:
    """What :func:`shred` did."""

    customer: str
    scenario: str
    shredded_at: str
    backups_cleaned: tuple[str, ...]
    backups_unreachable: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "scenario": self.scenario,
                "shredded_at": self.shredded_at, "backups_cleaned": list(self.backups_cleaned),
                "backups_unreachable": list(self.backups_unreachable)}


def shred(store: Store, customer_name: str, scenario: str | int | Scenario) -> ShredResult:
    """Destroy the data key of ``scenario`` of the customer whose repository is
    ``customer_name`` (:attr:`Customer.name`: the hash in a store with hashed names):
    its content becomes unreadable everywhere, its history stays. Idempotent refusal:
    shredding a shredded session is a :class:`ShreddedError`."""
    customer = store.customer_named(customer_name)
    customer.require()
    scen = scenario if isinstance(scenario, Scenario) else Scenario.parse(str(scenario))
    if not customer.encrypted:
        raise UsageError(f"{customer.name} is not encrypted: shredding needs a per-session "
                         "key (purge plaintext history with `gitstore retention` instead)")
    tomb = store.keys.shredded(customer.name, scen.major)
    if tomb is not None:  # an interrupted shred is finished first (key file, backups)
        with customer.locked():
            store.keys.shred(customer.name, scen.major, store.now())
        raise ShreddedError(f"scenario {scen} of {customer.name} was already shredded at "
                            f"{tomb.get('at', 'unknown')}")
    if scen not in customer.scenarios() and not store.keys.has_key(customer.name, scen.major):
        raise NotFoundError(f"{customer.name} has no scenario {scen}")
    with customer.locked():  # no write of this session is half way while its key goes
        return shred_locked(store, customer.name, scen)


def shred_locked(store: Store, name: str, scen: Scenario) -> ShredResult:
    """:func:`shred` for a caller that holds the customer's writer lock and has
    checked the session (retention)."""
    customer = store.customer_named(name)
    done = store.keys.shred(customer.name, scen.major, store.now())
    customer.sealer.forget(scen.major)
    # a merge pending from the session holds its documents sealed with the target's key
    drop_pending(customer, scen, customer.repo.ref_target(scen.branch_ref),
                 f"dropped by the shred of {scen}")
    customer.audit("shred", rev=str(scen), detail=(
        "crypto-shredded: the session's data key was destroyed; its content is erased, its "
        f"history kept ({len(done.backups_cleaned)} key backup(s) cleaned)"))
    customer.refs_moved()  # the index forgets what it derived from the session
    return ShredResult(customer.name, str(scen), done.at, done.backups_cleaned,
                       done.backups_unreachable)


def enable(store: Store, master_key_file: Path | None = None) -> bool:
    """Encrypt every customer created from now on; returns whether a new master key
    file was made. A master key must be at hand (``master_key_file``, created when
    missing, or the environment); existing customers stay as they are."""
    created = new_master_key_file(master_key_file) if master_key_file is not None else False
    cfg = store.config
    changes: dict[str, Any] = {"encrypt": True}
    if master_key_file is not None:
        changes["master_key_file"] = master_key_file.resolve()
    new = cfg._replace(**changes)
    if master_key(new.master_key_file, new.master_key_command) is None:
        raise UsageError("an encrypted store needs a master key: pass --master-key-file PATH "
                         "(created if missing) or set GITSTORE_MASTER_KEY / "
                         "GITSTORE_MASTER_KEY_COMMAND")
    config_mod.save(store.root, new)
    store.config = new
    store.__dict__.pop("keys", None)
    return created


def textconv(path: Path, git_dir: Path | None = None) -> bytes:
    """The plaintext of one sealed session file (for git's textconv), or its bytes
    unchanged when it is not sealed or cannot be opened here."""
    data = path.read_bytes()
    if not sealed.has_tokens(data):
        return data
    repo_dir = (git_dir or Path.cwd()).resolve()
    root = repo_dir.parent
    name = _document_name(path.name)
    try:
        cfg = config_mod.load(root)
        keys = KeyStore(root, master_key(cfg.master_key_file, cfg.master_key_command))
    except GitStoreError:
        return data
    for customer, scenario in keys.kids():
        if customer != repo_dir.name:
            continue
        try:
            key = sealed.SessionKey(customer, scenario, keys.data_key(customer, scenario))
            return _open_part(key, name, path.name, data)
        except GitStoreError:
            continue
    return data


def _document_name(temp_name: str) -> str:
    """The session file a textconv temp file stands for (older git names it
    ``XXXXXX_<basename>``, newer git ``git-blob-XXXXXX/<basename>``; no session
    file has ``_`` as its 7th character): a part of a conversation stands for
    ``conversation.json``."""
    base = temp_name[7:] if temp_name[6:7] == "_" else temp_name
    if base == "head.json" or (base[:4].isdigit() and base.endswith(".json")):
        return CONV
    return base


def _open_part(key: sealed.SessionKey, name: str, temp_name: str, data: bytes) -> bytes:
    if name != CONV or temp_name.endswith(CONV):
        return sealed.open_file(key, name, data)
    doc = canonical.loads(data)
    if isinstance(doc, list):  # a chunk of turns: each turn's place is its turn_id
        return canonical.dumps([
            sealed.open_doc(key, name, t, f"/conversation_turns/{t['turn_id'] - 1}")
            if isinstance(t, dict) and isinstance(t.get("turn_id"), int) else t for t in doc])
    return canonical.dumps(sealed.open_doc(key, name, doc))


def status(store: Store) -> dict[str, Any]:
    """What the key store holds: keys, tombstones, backups, the master key in force."""
    keys = store.keys
    try:
        master, problem = keys.master, None
    except GitStoreError as exc:  # status is how a missing master key file is diagnosed
        master, problem = None, str(exc)
    tombs = sorted(p.parent.name + "/" + p.name.split(".")[0]
                   for p in keys.dir.glob("*/*.shredded")) if keys.dir.is_dir() else []
    return {"encrypt": store.config.encrypt, "key_store": str(keys.dir),
            "master": master.fingerprint if master else None,
            "master_origin": master.origin if master else None, "master_problem": problem,
            "keys": [KeyStore.kid(c, s) for c, s in keys.kids()], "shredded": tombs,
            "backups": keys.backups()}


def encrypted_customers(store: Store) -> list[str]:
    """Customers that are encrypted (their setting, their keys here, or their data)."""
    return [name for name in store.customers() if store.customer_named(name).encrypted]

