"""How a conversation is laid out in git: whole, or as a head and turn chunks.

Layout 1 stores ``conversation.json`` whole in every commit, so appending a
turn to a 5,000-turn session hashes, compresses and writes 4 MB. Layout 2 (the
default for new repositories) stores, in every commit once the conversation
has more than :data:`CHUNK` turns::

    conversation/head.json          the document with "conversation_turns": []
    conversation/turns/0000.json    turns 1-64 as a JSON array
    conversation/turns/0001.json    turns 65-128 ...

so an append rewrites one chunk of at most :data:`CHUNK` turns and the
manifest, whatever the session's length, and unchanged chunks are the same git
objects from commit to commit. A finalizing commit (every version tag) stores
``conversation.json`` whole instead, so a version's tree is exactly the spec's
five documents and ``SHA256SUMS``, and ``git show vX.Y.Z:conversation.json``
prints the spec's document. Every commit's tree holds the whole session as
plain JSON files, and its ``SHA256SUMS`` lists exactly the files in the tree, so
``sha256sum -c SHA256SUMS`` verifies any checkout.

Above the git layer nothing sees layout 2 but the manifest: :func:`decode` turns
stored files into the *logical* files (``conversation.json`` assembled, the
parts left out once checked, the stored ``SHA256SUMS`` as it is) and
:func:`encode` turns logical files back into stored ones. Invariants (the
tests prove them, with Hypothesis):

* ``decode(encode(f, materialise=m))`` equals ``f`` but for the manifest,
  which lists the stored files, for logical files ``f`` whose conversation is
  canonical JSON with object turns, and for any ``m`` (materialised, the files
  are stored as they are);
* each chunk is ``canonical.dumps`` of its turns and the head ``canonical.dumps``
  of the document without them, byte for byte, so each part is canonical JSON
  that plain tools read; assembling is byte splicing, never re-serialising;
* a conversation that cannot be split (not canonical, turns that are not
  objects) is stored whole: :func:`encode` never changes a document's bytes;
* :func:`decode` checks every part against the stored manifest and keeps the
  parts in the logical files when any is damaged, missing or extra, so every
  check of the logical files reports the damage, by the part's name;
* :func:`appended` (the next split after an append, made from the parts) is
  the split of the whole document so changed, and a :class:`Joined` of a split
  assembles to exactly the document it splits: an append hands its new
  conversation on as parts, and only a reader pays for the whole document.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

from gitstore.core import canonical, manifest
from gitstore.core.names import CONV, CONV_PARTS, MANIFEST

__all__ = ["CHUNK", "CONV_DIR", "HEAD", "LATEST", "TURNS_DIR", "Joined", "Split", "appended",
           "body_length", "chunk_name", "decode", "decode_lazy", "encode", "is_part", "join",
           "measure", "restate", "split"]

CHUNK = 64
"""Turns per chunk file."""
LATEST = 2
"""The layout new repositories are created with."""
MIN_CHUNKS = 2
"""A conversation of fewer chunks (at most 64 turns, some 50 KB) is stored whole:
rewriting it costs less than three more objects, and a short session's tree
stays exactly the spec's files."""
CONV_DIR = CONV_PARTS.rstrip("/")
HEAD = f"{CONV_DIR}/head.json"
TURNS_DIR = f"{CONV_DIR}/turns"
_ARRAY = b'\n  "conversation_turns": ['
_EMPTY = _ARRAY + b"]"
_OPEN = _ARRAY + b"\n"
_CLOSE = b"\n  ]"
_TOP_LEVEL = re.compile(rb"\n  [^ ]")  # a line of the document itself, not of a turn


def chunk_name(n: int) -> str:
    return f"{TURNS_DIR}/{n:04d}.json"


def is_part(name: str) -> bool:
    """True for the files layout 2 stores a conversation in."""
    return name.startswith(CONV_DIR + "/")


class Split(NamedTuple):
    """A canonical conversation as its head and turn chunks (the stored parts).

    ``ends[k]`` is where chunk ``k``'s turns end in the conversation's turns
    array body (the bytes between ``"conversation_turns": [\\n`` and ``\\n  ]``),
    ``body`` where that body starts in the conversation's bytes."""

    head: bytes
    chunks: tuple[bytes, ...]
    ends: tuple[int, ...] = ()
    body: int = 0

    def parts(self) -> dict[str, bytes]:
        return {HEAD: self.head, **{chunk_name(i): c for i, c in enumerate(self.chunks)}}


def split(conv: bytes, base: tuple[bytes, Split] | None = None) -> Split | None:
    """Split canonical conversation bytes into head and chunks (None when they
    are not laid out canonically, or a turn is not an object).

    ``base`` is an earlier conversation and its split: every chunk but its last
    whose turns are unchanged at the start of ``conv`` is reused as it is (the
    same ``bytes`` object), so an append costs a comparison, not a split."""
    if not conv.startswith(b'{\n  "') or not conv.endswith(b"}\n"):
        return None
    start = conv.find(_OPEN)
    if start < 0:
        at = conv.find(_EMPTY)
        if at >= 0 and conv.find(_ARRAY, at + 1) < 0:
            return Split(conv, (), (), at + len(_EMPTY))
        return None
    body_start = start + len(_OPEN)
    chunks: list[bytes] = []
    ends: list[int] = []
    offset = body_start  # offsets below are in conv; ends are kept relative to the body
    end = -1
    if base is not None and len(base[1].chunks) > 1:
        old, old_split = base
        keep = old_split.ends[-2]  # all but the last chunk, which an append changes
        if conv[body_start + keep:body_start + keep + 3] == b",\n " and conv.startswith(
                memoryview(old)[old_split.body:old_split.body + keep], body_start):
            chunks, ends = list(old_split.chunks[:-1]), list(old_split.ends[:-1])
            offset = body_start + keep + 2
            # the turns array still closes where the earlier one's did, counted from
            # the end, if what lies between holds no top-level line (a key added
            # after the turns would otherwise pass for turns)
            suffix = old[old_split.body + old_split.ends[-1]:]  # "\n  ]" and the rest
            if conv.endswith(suffix) and len(conv) - len(suffix) > offset and \
                    _TOP_LEVEL.search(conv, offset, len(conv) - len(suffix)) is None:
                end = len(conv) - len(suffix)
    if end < 0:
        if conv.find(_ARRAY, start + 1) >= 0:
            return None
        end = conv.find(_CLOSE, body_start - 1)
        if end < 0 or end < offset:
            return None
    if conv[body_start:body_start + 5] != b"    {" or conv[end - 6:end] != b"\n    }":
        return None
    starts = [offset]  # where each turn begins: "    {" after a line ending in "},"
    at = conv.find(b"},\n    {", offset, end)
    while at >= 0:
        starts.append(at + 3)
        at = conv.find(b"},\n    {", at + 3, end)
    for k in range(0, len(starts), CHUNK):
        a = starts[k]
        b = starts[k + CHUNK] - 2 if k + CHUNK < len(starts) else end
        chunks.append(b"[\n" + conv[a + 2:b].replace(b"\n  ", b"\n") + b"\n]\n")
        ends.append(b - body_start)
    head = conv[:start] + _EMPTY + conv[end + len(_CLOSE):]
    return Split(head, tuple(chunks), tuple(ends), body_start)


def body_length(chunk: bytes) -> int:
    """How many bytes a chunk's turns take in the conversation: ``"  " +
    chunk[2:-3]``, each line break gaining two spaces of indentation."""
    return 2 + len(chunk) - 5 + 2 * chunk.count(b"\n", 2, len(chunk) - 3)


def measure(head: bytes, chunks: list[bytes] | tuple[bytes, ...], *,
            length: Callable[[bytes], int] = body_length) -> Split | None:
    """The :class:`Split` of a head and its chunks, found without assembling the
    conversation (what :func:`join` returns beside the bytes); None when the
    parts are not laid out as :func:`split` makes them. ``length``:
    :func:`body_length` (a caller may know it already)."""
    at = head.find(_EMPTY)
    if at < 0 or head.find(_ARRAY, at + 1) >= 0:
        return None
    if not chunks:
        return Split(head, (), (), at + len(_EMPTY))
    ends, offset = [], -2
    for chunk in chunks:
        if not chunk.startswith(b"[\n  {") or not chunk.endswith(b"\n  }\n]\n"):
            return None
        offset += 2 + length(chunk)
        ends.append(offset)
    return Split(head, tuple(chunks), tuple(ends), at + len(_OPEN))


def join(head: bytes, chunks: list[bytes] | tuple[bytes, ...]) -> tuple[bytes, Split] | None:
    """The conversation bytes of a head and its chunks, with their :class:`Split`
    (:func:`measure`; None when the parts are not laid out as :func:`split` makes them)."""
    parts = measure(head, chunks)
    if parts is None or not chunks:
        return None if parts is None else (head, parts)
    at = parts.body - len(_OPEN)
    bodies = [b"  " + chunk[2:-3].replace(b"\n", b"\n  ") for chunk in chunks]
    conv = head[:at] + _OPEN + b",\n".join(bodies) + _CLOSE + head[at + len(_EMPTY):]
    return conv, parts


class Joined:
    """A conversation held as its parts, its bytes assembled on first use.

    What an append hands on instead of the whole document: appending a turn to a
    5,000-turn session changes one chunk and the head, so the writer builds the
    new :class:`Split` from the old one (:func:`appended`) and nothing needs the
    5 MB of bytes unless something reads them. Invariants: :meth:`data` is
    ``join(split.head, split.chunks)[0]``, assembled once (every caller gets
    the same ``bytes`` object); ``size`` is its length, known without it."""

    __slots__ = ("_data", "_lock", "size", "split")

    def __init__(self, parts: Split) -> None:
        self.split = parts
        self.size = len(parts.head) if not parts.chunks else \
            len(parts.head) - len(_EMPTY) + len(_OPEN) + parts.ends[-1] + len(_CLOSE)
        self._data: bytes | None = None
        self._lock = threading.Lock()

    @property
    def assembled(self) -> bool:
        return self._data is not None

    def data(self) -> bytes:
        with self._lock:
            if self._data is None:
                joined = join(self.split.head, self.split.chunks)
                if joined is None:  # appended() makes only parts that join
                    raise ValueError("conversation parts that do not join")
                self._data = joined[0]
            return self._data


def appended(parts: Split, item: Any, total: int) -> Split | None:
    """The split of the conversation ``parts`` holds with ``item`` appended to
    its turns and ``conversation_summary.total_turns`` set to
    ``total``, made from the parts alone: the head is edited, the last chunk grows
    (a new one starts when it holds :data:`CHUNK` turns), every other chunk is
    the same ``bytes`` object. Equal to ``split`` of the whole document so
    changed (the tests prove it); None when the parts are not laid out as
    :func:`split` makes them or the summary has no integer ``total_turns``."""
    if not parts.chunks or not parts.chunks[-1].endswith(b"\n  }\n]\n") or \
            not isinstance(item, dict):
        return None
    in_last = parts.chunks[-1].count(b"\n  },\n  {\n") + 1  # JSON strings hold no newline
    head = canonical.set_int_member(parts.head, "conversation_summary", "total_turns", total)
    at = head.find(_EMPTY) if head is not None else -1
    if head is None or at < 0 or head.find(_ARRAY, at + 1) >= 0:
        return None
    turn = canonical.indented(item, 2)
    end = parts.ends[-1] + 2 + len(turn) + 2 * (turn.count(b"\n") + 1)  # indented by 4
    if in_last < CHUNK:
        chunks = (*parts.chunks[:-1], b"".join((parts.chunks[-1][:-3], b",\n", turn,
                                                b"\n]\n")))
        ends = (*parts.ends[:-1], end)
    else:
        chunks, ends = (*parts.chunks, b"[\n" + turn + b"\n]\n"), (*parts.ends, end)
    return Split(head, chunks, ends, at + len(_OPEN))


def encode(files: Mapping[str, bytes], *, materialise: bool,
           base: tuple[bytes | Joined, Split, Mapping[str, str]] | None = None,
           parts: Split | None = None) -> tuple[dict[str, bytes], Split | None]:
    """Stored files (layout 2) for logical ``files``: the conversation split into
    parts (kept whole instead with ``materialise``), the manifest listing exactly
    the stored files; and the split. A conversation that cannot be split, or
    of fewer than :data:`MIN_CHUNKS` chunks, is stored whole; files without a
    conversation are stored as they are. ``base``
    (an earlier conversation, its split and its parts' digests) makes an append
    cost what it changed (see :func:`split`); ``parts``, the conversation's split
    when the caller holds it (a :class:`Joined` conversation), makes it cost
    nothing more: the conversation's bytes are not read."""
    if materialise or CONV not in files:
        return dict(files), None
    if parts is None:
        earlier = (base[0].data() if isinstance(base[0], Joined) else base[0], base[1]) \
            if base else None
        parts = split(files[CONV], earlier)
    if parts is None or len(parts.chunks) < MIN_CHUNKS:
        return dict(files), None
    stored = {n: files[n] for n in files if n != CONV and not is_part(n)}
    stored.update(parts.parts())
    if MANIFEST in files:
        known = {}
        if base is not None:
            old = base[1].parts()
            known = {n: base[2][n] for n, d in stored.items()
                     if n in base[2] and old.get(n) is d}
        stored[MANIFEST] = restate(files[MANIFEST], stored, known)
    return stored, parts


def restate(logical_manifest: bytes, stored: Mapping[str, bytes],
            known: Mapping[str, str] | None = None) -> bytes:
    """The stored manifest: the logical one's lines for the files stored as they
    are, a line for each part (``known`` digests of parts are not hashed again)."""
    sums, _ = manifest.parse(logical_manifest)
    lines = {n: sums[n] for n in stored if n in sums and not is_part(n)}
    for name in stored:
        if is_part(name):
            lines[name] = (known or {}).get(name) or hashlib.sha256(stored[name]).hexdigest()
    return "".join(f"{lines[n]}  {n}\n" for n in sorted(lines)
                   if n != MANIFEST).encode("ascii")


def decode(stored: Mapping[str, bytes], *, digest: Callable[[bytes], str] | None = None
           ) -> tuple[dict[str, bytes], Split | None]:
    """Logical files for stored ones: layout 1 as it is; layout 2 with the
    conversation assembled from its parts (or taken whole where materialised)
    and the stored manifest as it is. Sound parts (each matching the manifest,
    nothing missing or extra, laid out as :func:`split` makes them, equal to a
    materialised ``conversation.json``) are left out; otherwise every part is
    kept, so :func:`gitstore.core.manifest.verify` names the damage.
    ``digest``: a part's SHA-256 in hex (a caller may know it already)."""
    logical, parts = decode_lazy(stored, digest=digest, lazy=False)
    return cast(dict[str, bytes], logical), parts  # not lazy: every value is bytes


def decode_lazy(stored: Mapping[str, bytes], *, digest: Callable[[bytes], str] | None = None,
                length: Callable[[bytes], int] = body_length, lazy: bool = True
                ) -> tuple[dict[str, bytes | Joined], Split | None]:
    """:func:`decode`, the conversation of sound parts left :class:`Joined` (not
    assembled until read) with ``lazy``: what a writer reads of a tip another
    process wrote, where it needs only the last chunk. ``length``: see
    :func:`measure`."""
    if HEAD not in stored:
        return dict(stored), None
    sha = digest or (lambda data: hashlib.sha256(data).hexdigest())
    sums, _ = manifest.parse(stored.get(MANIFEST, b""))
    names = sorted(n for n in stored if n.startswith(TURNS_DIR + "/"))
    listed = sorted(n for n in sums if is_part(n))
    sound = all(sums.get(n) == sha(stored[n]) for n in (HEAD, *names)) and \
        names == [chunk_name(i) for i in range(len(names))] \
        and listed == sorted(n for n in stored if is_part(n))  # nothing missing or extra
    parts = measure(stored[HEAD], [stored[n] for n in names], length=length)
    sound = sound and parts is not None
    logical: dict[str, bytes | Joined] = {n: d for n, d in stored.items() if not is_part(n)}
    if CONV in logical or parts is None or not sound or not lazy:
        joined = join(stored[HEAD], [stored[n] for n in names]) if parts is not None else None
        if CONV in logical:  # materialised: it must equal its parts
            sound = sound and joined is not None and joined[0] == logical[CONV]
        else:
            logical[CONV] = joined[0] if joined is not None else b""
    else:
        logical[CONV] = Joined(parts)
    if not sound:
        logical.update((n, d) for n, d in stored.items() if is_part(n))
        if CONV in logical and HEAD in sums and CONV not in sums and not logical[CONV]:
            logical[CONV] = stored[HEAD]  # something to show; the checks report the damage
    return logical, parts if sound else None
