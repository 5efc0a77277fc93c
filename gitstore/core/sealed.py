"""Sealed documents: session data encrypted value by value, in the spirit of SOPS.

An encrypted session stores its documents as canonical JSON whose *structure* is
in clear (member names, arrays, the turns' ids and timestamps, versions, counts)
and whose content is a set of tokens ``"ENC[AES256_GCM,<base64>]"``, each the
AES-256-GCM ciphertext of one record: a turn's ``user_input``, its
``agent_response``, one deployment recommendation, the summary's
recommendation, ... (:data:`PLANS` says what stays clear and what is sealed
whole). The SOW is sealed whole. So appending a turn appends bytes, every earlier
token stays byte-identical and git's delta compression keeps working.

Invariants:

* a token is deterministic: its nonce is an HMAC of its place and plaintext under
  a key derived from the session's data key (the SIV construction), so equal
  data at the same place always seals to the same bytes, and different data or a
  different place never reuses a nonce;
* a token's associated data binds it to its customer, scenario, document and
  JSON pointer: a token copied to another turn, document, scenario or customer
  fails to authenticate, and so does a token changed by one byte
  (:class:`SealError`, an :class:`~gitstore.errors.IntegrityError`);
* the plaintext inside a token is compact JSON, zlib-compressed when that is
  shorter (flag byte first): ciphertext does not compress, its plaintext does;
* ``open_doc(seal_doc(d)) == d`` for every document (Hypothesis checks it), and
  values that :data:`PLANS` keeps in clear are never sealed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gitstore.core import canonical, lazy, manifest
from gitstore.core.names import ANA, CONV, CTX, META, SEALED_PREFIX, SEALED_TRAILER, SOW_DOCUMENT
from gitstore.errors import IntegrityError, Violation

if TYPE_CHECKING:
    import cryptography.hazmat.primitives.ciphers.aead as aead
else:
    aead = lazy.module("cryptography.hazmat.primitives.ciphers.aead")

__all__ = ["PLANS", "PREFIX", "SEALED_FILES", "TRAILER", "Opener", "Plan", "SealError",
           "SessionKey", "blank", "check_stored", "has_tokens", "is_sealed_tree", "is_token",
           "open_doc", "open_file", "seal_doc", "seal_file", "strip"]

TRAILER = SEALED_TRAILER
"""The commit trailer of a sealed tree: the keyed digest (HMAC-SHA256 under the
session's key) of its plaintext manifest, which proves the content to a key holder."""
PREFIX = SEALED_PREFIX
"""How every token starts (a stored string with this prefix is ciphertext)."""
_PREFIX_B = PREFIX.encode()
_RAW, _ZLIB = b"\x00", b"\x01"
_COMPRESS_FROM = 48
ITEM_CACHE = 65536
"""How many sealed records one process remembers (by identity of the plaintext)."""


class SealError(IntegrityError):
    """A token that does not authenticate: changed, or moved from another place."""


class Opener(Protocol):
    """What turns a session tree's stored files into plaintext (an encrypted
    customer's sealer, which the store installs as its repository's codec)."""

    def open_files(self, stored: Mapping[str, bytes]) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class Plan:
    """What of one document is sealed. Containers at the ``descend`` pointers
    (array indices written ``*``) are walked; a member at a ``clear`` pointer, a
    null, and with ``numbers_clear`` a number or boolean, stays in clear;
    anything else is sealed whole, as one token."""

    descend: frozenset[str]
    clear: frozenset[str] = frozenset()
    numbers_clear: bool = False


PLANS: dict[str, Plan] = {
    CONV: Plan(
        frozenset({"", "/conversation_turns", "/conversation_turns/*",
                   "/conversation_summary"}),
        frozenset({"/session_id", "/conversation_turns/*/turn_id",
                   "/conversation_turns/*/timestamp", "/conversation_summary/total_turns"})),
    META: Plan(
        frozenset({"", "/session_info", "/workflow_tracking", "/agent_performance",
                   "/quality_metrics", "/workflow_tracking/user_satisfaction_indicators"}),
        frozenset({"/session_info/session_id", "/session_info/api_key",
                   "/session_info/session_version", "/session_info/created_timestamp",
                   "/session_info/completed_timestamp", "/workflow_tracking/completion_status",
                   "/workflow_tracking/workflow_type"}),
        numbers_clear=True),
    ANA: Plan(
        frozenset({"", "/complexity_analysis", "/prediction_accuracy", "/learning_insights",
                   "/learning_insights/recommendation_effectiveness", "/similarity_vectors"}),
        numbers_clear=True),
    CTX: Plan(frozenset({"", "/deployment_recommendations", "/error_resolutions"})),
}
"""What each session document keeps in clear: ids, versions, timestamps, turn
numbers and counts, the workflow's status, and the numbers and booleans of the
metadata and analytics (what ``stats`` aggregates). Every string of the
conversation and the deployment context, every free-form object, and the SOW is
sealed. Any other JSON document is sealed member by member."""
_OTHER = Plan(frozenset({""}))


@dataclass
class SessionKey:
    """One session's data key and the place it seals for (``customer``, ``scenario``)."""

    customer: str
    scenario: int
    data_key: bytes = field(repr=False)
    _aead: Any = field(default=None, init=False, repr=False, compare=False)
    _nonce_key: bytes = field(default=b"", init=False, repr=False, compare=False)
    _mac_key: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.data_key) != 32:
            raise ValueError("a data key is 32 bytes")
        self._nonce_key = _derive(self.data_key, b"nonce")
        self._mac_key = _derive(self.data_key, b"mac")

    def _cipher(self) -> Any:
        if self._aead is None:
            self._aead = aead.AESGCM(_derive(self.data_key, b"enc"))
        return self._aead

    def _ad(self, name: str, pointer: str) -> bytes:
        return "\0".join(("gitstore-sealed-v1", self.customer, str(self.scenario), name,
                          pointer)).encode("utf-8")

    def seal(self, name: str, pointer: str, plain: bytes) -> str:
        """The token of ``plain`` (bytes) at ``pointer`` of document ``name``."""
        body = _RAW + plain
        if len(plain) >= _COMPRESS_FROM:
            packed = zlib.compress(plain, 6)
            if len(packed) < len(plain):
                body = _ZLIB + packed
        ad = self._ad(name, pointer)
        nonce = hmac.new(self._nonce_key, ad + b"\0" + plain, hashlib.sha256).digest()[:12]
        sealed = nonce + self._cipher().encrypt(nonce, body, ad)
        return PREFIX + base64.b64encode(sealed).decode("ascii") + "]"

    def open(self, name: str, pointer: str, token: str) -> bytes:
        """The plaintext of ``token``; :class:`SealError` unless it authenticates here."""
        where = f"{name} {pointer or '/'}"
        try:
            raw = base64.b64decode(token[len(PREFIX):-1], validate=True)
        except ValueError:
            raise SealError(f"{where}: damaged ciphertext (not base64)") from None
        if not token.endswith("]") or len(raw) < 12 + 16 + 1:
            raise SealError(f"{where}: damaged ciphertext (truncated)")
        try:
            body: bytes = self._cipher().decrypt(raw[:12], raw[12:], self._ad(name, pointer))
        except Exception:  # cryptography's InvalidTag
            raise SealError(f"{where}: ciphertext does not authenticate (changed, or moved "
                            "from another place)") from None
        if body[:1] == _ZLIB:
            try:
                return zlib.decompress(body[1:])
            except zlib.error:
                raise SealError(f"{where}: damaged plaintext inside the token") from None
        return body[1:]

    def digest(self, manifest: bytes) -> str:
        """A keyed digest of a plaintext manifest: proves content to a key holder."""
        return "hmac-sha256:" + hmac.new(self._mac_key, manifest, hashlib.sha256).hexdigest()


def _derive(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, b"gitstore-sealed-v1 " + label, hashlib.sha256).digest()


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def has_tokens(data: bytes) -> bool:
    """Whether stored bytes hold any token (a cheap scan)."""
    return _PREFIX_B in data


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


_items: OrderedDict[tuple[int, int, str, bool], tuple[Any, SessionKey, Any]] = OrderedDict()


def _cached(key: SessionKey, value: Any, pointer: str, blanked: bool) -> Any:
    hit = _items.get((id(key), id(value), pointer, blanked))  # pointer: "<document>:/a/b"
    if hit is not None and hit[0] is value and hit[1] is key:
        return hit[2]
    return _MISS


def _keep(key: SessionKey, value: Any, pointer: str, blanked: bool, result: Any) -> Any:
    _items[(id(key), id(value), pointer, blanked)] = (value, key, result)
    while len(_items) > ITEM_CACHE:
        _items.popitem(last=False)
    return result


_MISS = object()


def seal_doc(key: SessionKey, name: str, doc: Any, *, pointer: str = "",
             pattern: str | None = None, blanked: bool = False) -> Any:
    """``doc`` with every value :data:`PLANS` does not keep in clear sealed (with
    ``blanked``: replaced by None, what an index may hold, and nothing is
    encrypted). ``pointer`` and ``pattern`` place a part of a document (a turn
    at ``/conversation_turns/4``, pattern ``/conversation_turns/*``).

    Objects and arrays are never changed in place by gitstore (a turn is
    replaced, not edited), so results are remembered by identity: sealing the
    same conversation again with one more turn seals one turn."""
    plan = PLANS.get(name, _OTHER)

    def walk(value: Any, pointer: str, pattern: str) -> Any:
        if pointer:
            hit = _cached(key, value, f"{name}:{pointer}", blanked)
            if hit is not _MISS:
                return hit
        if isinstance(value, dict):
            out: Any = {k: child(v, f"{pointer}/{_escape(k)}", f"{pattern}/{_escape(k)}")
                        for k, v in value.items()}
        else:  # a long array (the turns): most items are remembered, looked up inline
            out, items, star, kid = [], _items, f"{pattern}/*", id(key)
            for i, v in enumerate(value):
                where = f"{pointer}/{i}"
                hit = items.get((kid, id(v), f"{name}:{where}", blanked))
                out.append(hit[2] if hit is not None and hit[0] is v and hit[1] is key
                           else child(v, where, star))
        return _keep(key, value, f"{name}:{pointer}", blanked, out) if pointer else out

    def child(value: Any, pointer: str, pattern: str) -> Any:
        if value is None or pattern in plan.clear or (
                plan.numbers_clear and isinstance(value, (bool, int, float))):
            return value
        if pattern in plan.descend and isinstance(value, (dict, list)):
            return walk(value, pointer, pattern)
        if blanked:
            return None
        if isinstance(value, (dict, list)):
            hit = _cached(key, value, f"{name}:{pointer}", False)
            if hit is not _MISS:
                return hit
            return _keep(key, value, f"{name}:{pointer}", False,
                         key.seal(name, pointer, _compact(value)))
        return key.seal(name, pointer, _compact(value))

    if pattern is not None:
        return child(doc, pointer, pattern)
    if not isinstance(doc, (dict, list)):
        return None if blanked else key.seal(name, "", _compact(doc))
    return walk(doc, "", "")


def open_doc(key: SessionKey | None, name: str, doc: Any, base: str = "") -> Any:
    """``doc`` (found at pointer ``base`` of document ``name``) with every token
    opened (``key`` None: :class:`SealError` at the first)."""
    def walk(value: Any, pointer: str) -> Any:
        if isinstance(value, str):
            if not value.startswith(PREFIX):
                return value
            if key is None:
                raise SealError(f"{name} {pointer or '/'}: sealed, and no key is given")
            return json.loads(key.open(name, pointer, value))
        if isinstance(value, dict):
            return {k: walk(v, f"{pointer}/{_escape(k)}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{pointer}/{i}") for i, v in enumerate(value)]
        return value

    return walk(doc, base)


def blank(doc: Any) -> Any:
    """``doc`` with every token replaced by None: what an index may hold."""
    if isinstance(doc, str):
        return None if doc.startswith(PREFIX) else doc
    if isinstance(doc, dict):
        return {k: blank(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [blank(v) for v in doc]
    return doc


def strip(doc: Any) -> Any:
    """``doc`` without its sealed members (an object loses them, an array keeps
    its other items): the clear part, which can be kept without the key."""
    if isinstance(doc, dict):
        return {k: strip(v) for k, v in doc.items() if not is_token(v)}
    if isinstance(doc, list):
        return [strip(v) for v in doc if not is_token(v)]
    return doc


def _escape(member: str) -> str:
    return member.replace("~", "~0").replace("/", "~1")


def seal_file(key: SessionKey, name: str, data: bytes, doc: Any = None) -> bytes:
    """The stored bytes of a session file: JSON documents sealed value by value
    (``doc``: ``data`` already parsed), the SOW (or any non-JSON file) whole."""
    if not name.endswith(".json"):
        return (key.seal(name, "", data) + "\n").encode("ascii")
    if doc is None:
        doc = canonical.loads_stored(data)
    return canonical.dumps(seal_doc(key, name, doc))


def open_file(key: SessionKey | None, name: str, stored: bytes, *, strict: bool = False
              ) -> bytes:
    """The plaintext bytes of a stored session file (as it was before sealing);
    ``strict``: a value :data:`PLANS` seals found in clear is a :class:`SealError`
    (plaintext put where ciphertext belongs, by a writer without the key)."""
    if not has_tokens(stored):
        return stored
    if not name.endswith(".json"):
        token = stored.decode("ascii", "replace").strip()
        if key is None:
            raise SealError(f"{name}: sealed, and no key is given")
        if not token.startswith(PREFIX) or "\n" in token:
            raise SealError(f"{name}: damaged ciphertext")
        return key.open(name, "", token)
    try:
        doc = canonical.loads_stored(stored)
    except canonical.JSONParseError as exc:
        raise SealError(f"{name}: damaged sealed document ({exc})") from None
    clear = _in_clear(name, doc) if strict and name in PLANS else None
    if clear is not None:
        raise SealError(f"{name} {clear}: in clear where an encrypted session holds "
                        "ciphertext (written without the key)")
    return canonical.dumps(open_doc(key, name, doc))


SEALED_FILES = frozenset({CONV, META, ANA, CTX, SOW_DOCUMENT})
"""The session files a sealed session seals."""


def is_sealed_tree(files: Mapping[str, bytes]) -> bool:
    """Whether a session tree holds sealed files (an encrypted customer's)."""
    return any(has_tokens(d) for n, d in files.items() if n in SEALED_FILES)


def check_stored(files: Mapping[str, bytes]) -> list[Violation]:
    """What can be checked of a sealed tree without its key: the manifest, every
    JSON document canonical, every token well formed, nothing :data:`PLANS` seals
    left in clear. (Schemas, completeness and the secrets scan ran on the
    plaintext when the store wrote it; ``verify`` with the key runs them again
    and proves the content.)"""
    found = list(manifest.verify(files))
    for name, data in sorted(files.items()):
        if name not in SEALED_FILES:
            continue
        if not name.endswith(".json"):
            text = data.decode("ascii", "replace").strip()
            if not _well_formed(text):
                found.append(Violation(name, "", "is not one well-formed sealed token "
                                       "(plaintext in an encrypted session?)", "sealed"))
            continue
        try:
            doc = canonical.loads(data)
        except canonical.JSONParseError as exc:
            found.append(Violation(name, "", f"is not valid JSON: {exc}", "json"))
            continue
        if canonical.dumps(doc) != data:
            found.append(Violation(name, "", "is not canonical JSON", "json"))
        bad = next((p for p, v in _tokens(doc, "") if not _well_formed(v)), None)
        if bad is not None:
            found.append(Violation(name, bad, "is a damaged sealed token", "sealed"))
        clear = _in_clear(name, doc)
        if clear is not None:
            found.append(Violation(name, clear, "is in clear but an encrypted session seals "
                                   "it (write with gitstore, which encrypts)", "sealed"))
    return found


def _in_clear(name: str, doc: Any) -> str | None:
    """The first pointer :func:`seal_doc` would seal that holds no token."""
    plan = PLANS.get(name, _OTHER)

    def walk(value: Any, pointer: str, pattern: str) -> str | None:
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in pairs:
            p = f"{pointer}/{_escape(str(k))}"
            q = f"{pattern}/{_escape(str(k))}" if isinstance(value, dict) else f"{pattern}/*"
            if v is None or q in plan.clear or is_token(v) or (
                    plan.numbers_clear and isinstance(v, (bool, int, float))):
                continue
            found = walk(v, p, q) if q in plan.descend and isinstance(v, (dict, list)) else p
            if found is not None:
                return found
        return None

    return walk(doc, "", "") if isinstance(doc, (dict, list)) else None


def _well_formed(token: str) -> bool:
    if not token.startswith(PREFIX) or not token.endswith("]"):
        return False
    try:
        return len(base64.b64decode(token[len(PREFIX):-1], validate=True)) > 28
    except ValueError:
        return False


def _tokens(doc: Any, pointer: str) -> list[tuple[str, str]]:
    if isinstance(doc, str):
        return [(pointer, doc)] if doc.startswith(PREFIX) else []
    if isinstance(doc, dict):
        return [t for k, v in doc.items() for t in _tokens(v, f"{pointer}/{_escape(k)}")]
    if isinstance(doc, list):
        return [t for i, v in enumerate(doc) for t in _tokens(v, f"{pointer}/{i}")]
    return []
