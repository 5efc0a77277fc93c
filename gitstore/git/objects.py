"""Git objects to and from the plain dataclasses of :mod:`gitstore.core.commits`.

Functions here take a pygit2 repository handle; :class:`gitstore.git.repo.Repo`
is the way in from above the git layer. Invariants:

* objects are written straight into the object database: no work tree, no
  index, no ref (callers move refs, with a compare-and-swap);
* trees are flat: one regular-file entry per document, in name order;
* a signed commit carries its SSH signature in a ``gpgsig`` header, a signed
  tag after its message, exactly as ``git commit -S`` and ``git tag -s`` write
  them, so plain ``git verify-commit`` / ``git verify-tag`` check them;
* trailers are read with libgit2's own parser (``Commit.message_trailers``);
* a commit is read into a :class:`CommitInfo` once per process while it stays among
  the most recently read (:data:`COMMIT_INFOS`): an id names one content, in every
  repository, so the cache is never stale (a writer's idempotency look-back and
  ``log`` walk the same recent commits again and again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from gitstore.core import lazy
from gitstore.core.commits import CommitInfo, Identity, TagInfo, read_trailers

if TYPE_CHECKING:
    import pygit2
else:
    pygit2 = lazy.module("pygit2")

_BLOB = 0o100644  # pygit2.enums.FileMode.BLOB, without importing pygit2

Signer = Callable[[bytes], bytes]
"""Signs a payload, returning the armoured signature (see :mod:`gitstore.git.signing`)."""


def signature(identity: Identity, time: int, offset: int) -> pygit2.Signature:
    return pygit2.Signature(identity.name, identity.email, time, offset)


def signature_line(identity: Identity, time: int, offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{identity.name} <{identity.email}> {time} {sign}{hours:02d}{minutes:02d}"


def identity(sig: pygit2.Signature | None) -> Identity | None:
    if sig is None:
        return None
    return Identity(sig.name, sig.email)


#: How many commits' :class:`CommitInfo` a process keeps (least recently read go first).
COMMIT_INFOS = 1024
_infos: OrderedDict[pygit2.Oid, CommitInfo] = OrderedDict()
_infos_lock = threading.Lock()


def commit_info(obj: pygit2.Commit) -> CommitInfo:
    key = obj.id
    with _infos_lock:
        found = _infos.get(key)
        if found is not None:
            _infos.move_to_end(key)
            return found
    info = _commit_info(obj)
    with _infos_lock:
        _infos[key] = info
        while len(_infos) > COMMIT_INFOS:
            _infos.popitem(last=False)
    return info


def _commit_info(obj: pygit2.Commit) -> CommitInfo:
    return CommitInfo(
        id=str(obj.id), tree_id=str(obj.tree_id),
        parents=tuple(str(p) for p in obj.parent_ids),
        author=Identity(obj.author.name, obj.author.email),
        committer=Identity(obj.committer.name, obj.committer.email),
        time=obj.commit_time, offset=obj.commit_time_offset, message=obj.message,
        trailers=read_trailers(obj.message_trailers),
        author_time=obj.author.time, author_offset=obj.author.offset)


#: How many commits one handle's :class:`Chains` keeps.
CHAIN_COMMITS = 1024


class Chains:
    """The first-parent chains one repository handle walked. A commit it read
    once is not read again while it stays among the newest :data:`CHAIN_COMMITS`,
    so a writer looking back after its own last write reads one commit. Kept per
    handle, not per process: a new handle reads from disk again, and so finds a
    commit that went missing since."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, CommitInfo] = OrderedDict()
        self._lock = threading.Lock()

    def first_parents(self, repo: pygit2.Repository, start: str,
                      damaged: Callable[[str], Exception]) -> Iterator[CommitInfo]:
        """``start`` and its first-parent ancestors, newest first, lazily;
        ``damaged(what)`` is raised for a missing or unreadable commit."""
        at: str | None = start
        while at is not None:
            with self._lock:
                info = self._seen.get(at)
            if info is None:
                try:
                    obj = repo.get(pygit2.Oid(hex=at))
                    if not isinstance(obj, pygit2.Commit):
                        raise damaged(f"commit {at} is missing")
                    info = commit_info(obj)
                except pygit2.GitError as exc:
                    raise damaged(f"commit {at} cannot be read: {exc}") from None
                with self._lock:
                    self._seen[at] = info
                    if len(self._seen) > CHAIN_COMMITS:
                        self._seen.popitem(last=False)
            yield info
            at = info.parents[0] if info.parents else None


def tag_info(obj: pygit2.Tag, name: str) -> TagInfo:
    return TagInfo(name=name, id=str(obj.id), target=str(obj.target),
                   tagger=identity(obj.tagger), time=obj.tagger.time if obj.tagger else 0,
                   message=obj.message)


def write_blob(repo: pygit2.Repository, data: bytes) -> str:
    """Write one blob (nothing is written if the database holds it); its id."""
    return str(repo.create_blob(data))


def write_tree_of(repo: pygit2.Repository, ids: Mapping[str, str]) -> str:
    """Write a flat tree of regular files given as blob ids; returns the tree id."""
    builder = repo.TreeBuilder()
    for name in sorted(ids):
        builder.insert(name, pygit2.Oid(hex=ids[name]), _BLOB)
    return str(builder.write())


def write_commit(repo: pygit2.Repository, *, tree: str, parents: list[str],
                 author: Identity, committer: Identity, message: str, time: int,
                 offset: int = 0, sign: Signer | None = None) -> str:
    """Write a commit object; with ``sign``, an SSH-signed one (``gpgsig`` header)."""
    a, c = signature(author, time, offset), signature(committer, time, offset)
    tree_oid = pygit2.Oid(hex=tree)
    parent_oids: list[str | pygit2.Oid] = [pygit2.Oid(hex=p) for p in parents]
    if sign is None:
        return str(repo.create_commit(None, a, c, message, tree_oid, parent_oids))
    content = repo.create_commit_string(a, c, message, tree_oid, parent_oids)
    if not isinstance(content, str):  # pygit2's stubs say Oid; it returns the text
        raise TypeError("pygit2 create_commit_string returned no text")
    sig = sign(content.encode("utf-8")).decode("ascii")
    return str(repo.create_commit_with_signature(content, sig.rstrip("\n"), "gpgsig"))


def write_signed_tag(repo: pygit2.Repository, name: str, target: str, *, tagger: Identity,
                     message: str, time: int, offset: int, sign: Signer) -> pygit2.Oid:
    """Write an annotated tag object for commit ``target`` with an SSH signature
    after its message, as ``git tag -s`` writes it (no ref)."""
    payload = (f"object {target}\ntype commit\ntag {name}\n"
               f"tagger {signature_line(tagger, time, offset)}\n\n{message}").encode()
    if not payload.endswith(b"\n"):
        payload += b"\n"
    return repo.odb.write(pygit2.enums.ObjectType.TAG, payload + sign(payload))


def signature_of(repo: pygit2.Repository, obj: pygit2.Object) -> tuple[bytes, bytes] | None:
    """``(signature, signed payload)`` of a commit or tag object, or None if unsigned."""
    if isinstance(obj, pygit2.Commit):
        sig, payload = obj.gpg_signature
        return (sig, payload) if sig else None
    if isinstance(obj, pygit2.Tag):
        raw = repo.odb.read(obj.id)[1]
        cut = raw.find(b"-----BEGIN SSH SIGNATURE-----")
        if cut < 0:
            cut = raw.find(b"-----BEGIN PGP SIGNATURE-----")
        return (raw[cut:], raw[:cut]) if cut >= 0 else None
    return None
