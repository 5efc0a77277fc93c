"""Session trees: reading and writing them in either layout, with bounded caches.

:class:`Trees` belongs to one :class:`gitstore.git.repo.Repo` (one libgit2
handle). It turns stored trees into logical session files and back (see
:mod:`gitstore.core.layout`) and keeps what that costs from being paid twice.
Invariants:

* objects are immutable, so no cache ever needs invalidating: blobs are kept
  by id (at most :data:`BLOB_CACHE_BYTES`), a tree's logical files by tree id
  (at most :data:`TREE_CACHE` trees);
* every read of a blob hands out the same ``bytes`` object, and a ``bytes``
  object read or written here is remembered with its blob id, so unchanged
  content is recognised by identity and never hashed again; a blob a write
  uses again counts as used, so the chunks of a long conversation stay known
  however much new content passes through the cache;
* the logical files of a tree are the same whether they were decoded from git
  or remembered when the tree was written: the stored manifest, the conversation
  assembled, parts left out only when sound;
* a prepared tree lists every object its commit needs that the base commit's
  tree does not reach, without asking the object database (libgit2 rescans the
  pack directory on every miss, and a new write's objects are nearly all
  misses). An object the database already holds elsewhere may so be written
  again: git reads it from any pack, and maintenance keeps one copy.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.core import files as sessionfiles
from gitstore.core import layout, lazy, manifest
from gitstore.core.commits import Identity
from gitstore.core.names import CONV, MANIFEST
from gitstore.errors import IntegrityError, NotFoundError
from gitstore.git import objects

if TYPE_CHECKING:
    import pygit2

    from gitstore.git import packwrite
else:  # packwrite: object ids and bytes of what a write adds; reads need none
    pygit2 = lazy.module("pygit2")  # (gitstore.core.lazy)
    packwrite = lazy.module("gitstore.git.packwrite")

# a pygit2.Tree or a catfile.Tree: the same shape (id, entries by name, iteration)
AnyTree = Any

_BLOB_KIND = 3  # pygit2.enums.ObjectType.BLOB, without importing pygit2

__all__ = ["BLOB_CACHE_BYTES", "FACTS_CACHE", "TREE_CACHE", "Prepared", "Trees"]

TREE_CACHE = 16
"""How many trees' logical files one handle keeps."""
BLOB_CACHE_BYTES = 64 * 1024 * 1024
"""The most blob bytes one handle keeps in memory."""
FACTS_CACHE = 16384
"""How many facts about parts (SHA-256, length in the conversation) a handle
keeps, by blob id."""

Logical = tuple[Mapping[str, bytes], layout.Split | None]


class Prepared:
    """A session tree computed in memory (see :meth:`Trees.prepare`): its id, its
    stored manifest, the objects to write (kind, content), every blob's bytes by
    id, its logical files when its conversation is stored in parts, and the ids
    it needs no object written for (the base commit's tree reaches them, or
    this write already has it)."""

    __slots__ = ("blobs", "held", "logical", "manifest", "objects", "tree")

    def __init__(self, tree: str, manifest: bytes) -> None:
        self.tree = tree
        self.manifest = manifest
        self.objects: list[tuple[int, bytes]] = []
        self.blobs: dict[str, bytes] = {}
        self.logical: Logical | None = None
        self.held: set[str] = set()


class Trees:
    """The session trees of one repository handle (see the module docstring)."""

    def __init__(self, repo: pygit2.Repository | None, path: Path,
                 reader: Callable[[Any], tuple[int, bytes]] | None = None) -> None:
        """``reader`` reads an object as ``(type number, content)`` (default: the
        handle's object database); a handle without ``repo`` only reads."""
        self._repo = repo
        self._read: Callable[[Any], tuple[int, bytes]] = \
            reader if reader is not None else repo.odb.read  # type: ignore[union-attr]
        self._path = path
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._facts: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._blob_bytes = 0
        self._oid_of: dict[int, tuple[bytes, str]] = {}
        self._trees: OrderedDict[str, Logical] = OrderedDict()
        self._pending: dict[str, Prepared] = {}

    def _handle(self) -> pygit2.Repository:
        if self._repo is None:
            raise TypeError("this handle only reads")
        return self._repo

    # -- reading -------------------------------------------------------------
    def logical(self, tree: AnyTree) -> Logical:
        """The logical files of ``tree`` and, stored in parts, its conversation's split."""
        key = str(tree.id)
        hit = self._trees.get(key)
        if hit is not None:
            self._trees.move_to_end(key)
            return hit
        files, parts = layout.decode_lazy(self._stored(tree), digest=self._digest,
                                          length=self._body_length)
        found = (sessionfiles.Files(files), parts)
        self._keep(key, found)
        return found

    def _digest(self, data: bytes) -> str:
        """The SHA-256 of a stored part, in hex: once per blob, for a part this
        handle read or wrote (a blob's content is fixed by its id), so reading a
        tip another process moved hashes only the parts it changed."""
        return str(self._per_blob(data, "sha256", lambda d: hashlib.sha256(d).hexdigest()))

    def _body_length(self, chunk: bytes) -> int:
        """:func:`~gitstore.core.layout.body_length`, once per blob likewise."""
        return int(self._per_blob(chunk, "length", layout.body_length))

    def _per_blob(self, data: bytes, what: str, compute: Callable[[bytes], Any]) -> Any:
        known = self._oid_of.get(id(data))
        key = (known[1], what) if known is not None and known[0] is data else None
        if key is not None and (hit := self._facts.get(key)) is not None:
            return hit
        value = compute(data)
        if key is not None:
            self._facts[key] = value
            while len(self._facts) > FACTS_CACHE:
                self._facts.popitem(last=False)
        return value

    def file(self, tree: AnyTree, name: str) -> bytes | None:
        """One logical file of ``tree`` (None when absent or not a regular file)."""
        try:
            entry = tree[name]
        except KeyError:
            if name == CONV and layout.CONV_DIR in tree:
                return self.logical(tree)[0].get(name)
            return None
        if entry.type_str != "blob":
            return None
        return self.blob(entry.id)

    def split_of(self, tree: AnyTree | Prepared
                 ) -> tuple[bytes | layout.Joined, layout.Split, dict[str, str]] | None:
        """A conversation stored in parts: its bytes as held (a write's may still
        be :class:`~gitstore.core.layout.Joined`), its split and the parts'
        manifest digests (None when ``tree`` holds it whole). ``tree`` may be a
        tree prepared but not yet written."""
        if isinstance(tree, Prepared):
            if tree.logical is None:
                return None
            files, parts = tree.logical
        else:
            files, parts = self.logical(tree)
        conv = sessionfiles.raw(files, CONV)
        if parts is None or conv is None:
            return None
        return conv, parts, manifest.parse(files.get(MANIFEST, b""))[0]

    def modes(self, tree: AnyTree) -> dict[str, int]:
        """Every file's git mode: the top-level entries, and a conversation's
        parts by their paths in place of its directory."""
        out: dict[str, int] = {}
        for e in tree:
            if e.name == layout.CONV_DIR and e.type_str == "tree":
                self._modes_below(e, layout.CONV_DIR, out)
            elif e.name is not None:
                out[e.name] = int(e.filemode)
        return out

    def _modes_below(self, tree: AnyTree, prefix: str, out: dict[str, int]) -> None:
        for e in tree:
            path = f"{prefix}/{e.name}"
            if e.type_str == "tree" and path == layout.TURNS_DIR:
                self._modes_below(e, path, out)
            else:
                out[path] = int(e.filemode)

    def _stored(self, tree: AnyTree) -> dict[str, bytes]:
        """The files a tree stores: its top-level regular files and, below the
        conversation's directory, every file by its path."""
        out: dict[str, bytes] = {}
        for entry in tree:
            if entry.name is None:
                continue
            if entry.type_str == "blob":
                out[entry.name] = self.blob(entry.id)
            elif entry.name == layout.CONV_DIR and entry.type_str == "tree":
                self._stored_below(entry, layout.CONV_DIR, out)
        return out

    def _stored_below(self, tree: AnyTree, prefix: str, out: dict[str, bytes]) -> None:
        for entry in tree:
            if entry.name is None:
                continue
            path = f"{prefix}/{entry.name}"
            if entry.type_str == "blob":
                out[path] = self.blob(entry.id)
            elif entry.type_str == "tree" and path.count("/") < 3:
                self._stored_below(entry, path, out)

    # -- writing -------------------------------------------------------------
    def write_flat(self, files: Mapping[str, bytes]) -> str:
        """Write a flat tree of regular files; returns its id."""
        return objects.write_tree_of(self._handle(), {n: self.blob_id(d) for n, d in files.items()})

    def prepare(self, files: Mapping[str, bytes], *, parts: bool,
                base: pygit2.Tree | Prepared | None) -> Prepared:
        """The tree of a session commit for its logical ``files``, computed in
        memory (nothing is written): the conversation in parts when ``parts``
        (reusing ``base``'s unchanged parts) or whole; with the stored manifest
        and the objects the database does not hold yet. Whole, a manifest built
        without the conversation's line (``Proposal.unlisted``) gets it. ``base``
        may itself be prepared and not yet written (commits written together as
        one pack: see :meth:`gitstore.git.repo.Repo.write_commits_pack`); its
        objects then count as held, as they go into the same pack."""
        joined = sessionfiles.raw(files, CONV)
        stored, split = layout.encode(
            files, materialise=False, base=self.split_of(base) if base is not None else None,
            parts=joined.split if isinstance(joined, layout.Joined) else None) \
            if parts and joined is not None else (dict(files), None)
        if split is None and MANIFEST in files and CONV in files and \
                CONV not in manifest.parse(files[MANIFEST])[0]:
            files = {**files, MANIFEST: manifest.build(files)}
            stored = dict(files)
        out = Prepared("", stored.get(MANIFEST, b""))
        if isinstance(base, Prepared):
            out.held.update(base.held, base.blobs)
        elif base is not None:
            self._held_by(base, out.held)
        top = {n: self._prepared_blob(d, out) for n, d in stored.items()
               if not layout.is_part(n)}
        dirs = {}
        if split is not None:
            turns = self._prepared_tree(out, {
                n.rsplit("/", 1)[1]: self._prepared_blob(d, out) for n, d in stored.items()
                if n.startswith(layout.TURNS_DIR + "/")})
            dirs[layout.CONV_DIR] = self._prepared_tree(
                out, {"head.json": self._prepared_blob(stored[layout.HEAD], out)},
                {"turns": turns})
            out.logical = (sessionfiles.updated(files, {MANIFEST: out.manifest} if MANIFEST
                                                in files else {}), split)
        out.tree = self._prepared_tree(out, top, dirs)
        return out

    def commit(self, prepared: Prepared, *, parents: list[str], author: Identity,
               committer: Identity, message: str, time: int, offset: int,
               sign: Callable[[bytes], bytes] | None) -> tuple[str, bytes]:
        """A commit of ``prepared``, made but not written (see
        :meth:`gitstore.git.repo.Repo.commit_data`): pending until :meth:`write`."""
        who = (objects.signature_line(author, time, offset),
               objects.signature_line(committer, time, offset))
        data = packwrite.commit_bytes(tree=prepared.tree, parents=parents, author=who[0],
                                      committer=who[1], message=message)
        if sign is not None:
            data = packwrite.commit_bytes(tree=prepared.tree, parents=parents, author=who[0],
                                          committer=who[1], message=message,
                                          signature=sign(data).decode("ascii"))
        oid = packwrite.object_id(packwrite.COMMIT, data)
        self._pending[oid] = prepared
        return oid, data

    def pending(self, commit: str) -> Prepared | None:
        """The prepared tree of a commit :meth:`commit` made and :meth:`write` has not
        written yet (None: any other commit)."""
        return self._pending.get(commit)

    def write(self, commits: list[tuple[Prepared, bytes]], *, sync: bool) -> None:
        """Write commits and their trees' new objects as one pack. No commit made
        before stays pending: a chain abandoned half-made (a lost ref update) is
        made again from the new tip."""
        try:
            packwrite.write_pack(self._path, [obj for prepared, data in commits for obj in
                                              (*prepared.objects, (packwrite.COMMIT, data))],
                                 sync=sync)
        finally:
            self._pending.clear()
        for prepared, _ in commits:
            self.written(prepared)

    def written(self, prepared: Prepared) -> None:
        """Remember what a prepared tree's objects hold, once they are written."""
        for oid, data in prepared.blobs.items():
            self._remember(oid, data)
        if prepared.logical is not None:
            self._keep(prepared.tree, prepared.logical)

    def _prepared_blob(self, data: bytes, out: Prepared) -> str:
        known = self._oid_of.get(id(data))
        if known is not None and known[0] is data:
            if known[1] in self._blobs:  # in use: the last to be evicted
                self._blobs.move_to_end(known[1])
            return known[1]
        oid = packwrite.object_id(packwrite.BLOB, data)
        if oid not in out.blobs:
            out.blobs[oid] = data
            if oid not in out.held:
                out.objects.append((packwrite.BLOB, data))
        return oid

    def _prepared_tree(self, out: Prepared, files: Mapping[str, str],
                       dirs: Mapping[str, str] | None = None) -> str:
        data = packwrite.tree_bytes(files, dirs)
        oid = packwrite.object_id(packwrite.TREE, data)
        if oid not in out.held:
            out.held.add(oid)
            out.objects.append((packwrite.TREE, data))
        return oid

    @staticmethod
    def _held_by(tree: AnyTree, held: set[str]) -> None:
        """Add the ids of ``tree`` and of every entry in it, its conversation's
        directory and turns included: objects the base commit already reaches."""
        held.add(str(tree.id))
        for entry in tree:
            held.add(str(entry.id))
            if entry.name == layout.CONV_DIR and entry.type_str == "tree":
                for sub in entry:
                    held.add(str(sub.id))
                    if sub.name == "turns" and sub.type_str == "tree":
                        held.update(str(e.id) for e in sub)

    # -- blobs -----------------------------------------------------------------
    def blob(self, oid: pygit2.Oid | str) -> bytes:
        key = str(oid)
        cached = self._blobs.get(key)
        if cached is not None:
            self._blobs.move_to_end(key)
            return cached
        try:  # the object database, not repo[oid]: half the cost, the same hash check
            kind, data = self._read(oid)
        except KeyError:
            name = self._path.name
            raise IntegrityError(f"repository {name} is damaged: object {oid} is missing; "
                                 f"run `gitstore verify {name}`") from None
        if kind != _BLOB_KIND:
            raise NotFoundError(f"object {oid} is not a blob")
        self._remember(key, data)
        return data

    def blob_id(self, data: bytes) -> str:
        """The id of a blob holding ``data``, written unless this handle knows it."""
        known = self._oid_of.get(id(data))
        if known is not None and known[0] is data:
            return known[1]
        oid = objects.write_blob(self._handle(), data)
        self._remember(oid, data)
        return oid

    def _remember(self, oid: str, data: bytes) -> None:
        held = self._blobs.get(oid)
        if held is not None:  # the object in use now is the one to know
            self._blobs.move_to_end(oid)
            if held is not data:
                self._oid_of.pop(id(held), None)
                self._blobs[oid] = data
                self._oid_of[id(data)] = (data, oid)
            return
        if len(data) > BLOB_CACHE_BYTES // 4:
            return
        self._blobs[oid] = data
        self._oid_of[id(data)] = (data, oid)
        self._blob_bytes += len(data)
        while self._blob_bytes > BLOB_CACHE_BYTES and self._blobs:
            _, old = self._blobs.popitem(last=False)
            self._oid_of.pop(id(old), None)
            self._blob_bytes -= len(old)

    def _keep(self, key: str, found: Logical) -> None:
        self._trees[key] = found
        self._trees.move_to_end(key)
        while len(self._trees) > TREE_CACHE:
            self._trees.popitem(last=False)
