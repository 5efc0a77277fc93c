"""The git layer: the only module that imports pygit2.

Everything above this module speaks in hex object ids, ``bytes`` and the plain
dataclasses of :mod:`gitstore.core.commits`. Invariants this layer keeps:

* objects are written straight into the object database: no work tree, no index;
* every ref update is a compare-and-swap against the value the caller read
  (:meth:`Repo.update_ref` raises :class:`RefConflict` when another writer got
  there first); tag creation fails rather than moving an existing tag;
* with :func:`enable_fsync` on, libgit2 fsyncs objects and refs before a write
  returns, so an acknowledged write survives a crash of the machine;
* a repository is created in a temporary directory and renamed into place, so
  a crash never leaves a half-initialised repository behind.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

import pygit2

from gitstore.core.commits import CommitInfo, Identity, TagInfo, read_trailers
from gitstore.errors import IntegrityError, NotFoundError, StorageError, UsageError

_BLOB = pygit2.enums.FileMode.BLOB
_fsync_enabled = False


_F = TypeVar("_F", bound=Callable[..., Any])


def _damage_is_integrity_error(method: _F) -> _F:
    """Turn libgit2's errors on damaged data (unreadable objects, broken refs,
    corrupt packs) into :class:`IntegrityError` naming the repository."""

    @functools.wraps(method)
    def wrapper(self: Repo, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except pygit2.GitError as exc:
            raise IntegrityError(f"repository {self.path.name} is damaged: {exc}; run "
                                 f"`gitstore verify {self.path.name}`") from None

    return wrapper  # type: ignore[return-value]


class RefConflict(Exception):
    """A compare-and-swap ref update lost: the ref no longer has the expected value."""


def enable_fsync() -> None:
    """Ask libgit2 to fsync objects and refs (process-wide, idempotent)."""
    global _fsync_enabled
    if not _fsync_enabled:
        pygit2.settings.enable_fsync_gitdir(True)
        pygit2.settings.enable_strict_hash_verification(True)
        _fsync_enabled = True


def _sig(identity: Identity, time: int, offset: int) -> pygit2.Signature:
    return pygit2.Signature(identity.name, identity.email, time, offset)


def pack_ids(idx: Path) -> set[str]:
    """The object ids listed in a pack index (version 2)."""
    data = idx.read_bytes()
    if data[:4] != b"\xfftOc":
        raise StorageError(f"{idx} is not a version 2 pack index")
    count = int.from_bytes(data[8 + 255 * 4:8 + 256 * 4], "big")
    table = data[8 + 256 * 4:8 + 256 * 4 + 20 * count]
    return {table[i:i + 20].hex() for i in range(0, 20 * count, 20)}


def _children(obj: pygit2.Object) -> list[pygit2.Oid]:
    if isinstance(obj, pygit2.Tag):
        return [obj.target]
    if isinstance(obj, pygit2.Commit):
        return [obj.tree_id, *obj.parent_ids]
    if isinstance(obj, pygit2.Tree):
        return [e.id for e in obj]
    return []


def _sig_line(identity: Identity, time: int, offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{identity.name} <{identity.email}> {time} {sign}{hours:02d}{minutes:02d}"


def _identity(sig: pygit2.Signature | None) -> Identity | None:
    if sig is None:
        return None
    return Identity(sig.name, sig.email)


class Repo:
    """A bare customer repository."""

    def __init__(self, repo: pygit2.Repository, path: Path) -> None:
        self._repo = repo
        self.path = path

    # -- lifecycle -------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> Repo:
        try:
            repo = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH
                                     | pygit2.enums.RepositoryOpenFlag.BARE)
        except pygit2.GitError as exc:
            raise NotFoundError(f"{path} is not a git repository: {exc}") from None
        return cls(repo, path)

    @classmethod
    def open_any(cls, path: Path) -> Repo:
        """Open a bare repository or a clone with a work tree (its top or its git
        dir), without searching parent directories. ``path`` becomes the git dir."""
        try:
            repo = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError as exc:
            raise NotFoundError(f"{path} is not a git repository: {exc}") from None
        return cls(repo, Path(repo.path))

    @classmethod
    def open_source(cls, path: Path) -> Repo:
        """Open another repository (bare or with a work tree) to read objects from."""
        try:
            return cls(pygit2.Repository(str(path)), path)
        except pygit2.GitError as exc:
            raise NotFoundError(f"{path} is not a git repository: {exc}") from None

    @classmethod
    def create(cls, path: Path, *, description: str, head: str, committer: Identity) -> Repo:
        """Create a bare repository at ``path`` atomically (temp dir + rename)."""
        parent = path.parent
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-init-", dir=parent))
        except OSError as exc:
            raise StorageError(f"cannot create a repository in {parent}: {exc.strerror}") from None
        try:
            repo = pygit2.init_repository(str(tmp), bare=True)
            cfg = repo.config
            # reflogs for branches and HEAD only: git's reflog expiry (run by
            # git gc) expects commits, and version tags point at tag objects
            cfg["core.logAllRefUpdates"] = True
            cfg["receive.denyNonFastForwards"] = True
            cfg["receive.denyDeletes"] = True
            cfg["gc.auto"] = 0
            cfg["user.name"] = committer.name
            cfg["user.email"] = committer.email
            (tmp / "description").write_text(description + "\n", encoding="utf-8")
            repo.set_head(head)
            del repo
            os.rename(tmp, path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if path.is_dir():
                return cls.open(path)
            raise StorageError(f"cannot create repository {path}: {exc.strerror}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.open(path)

    # -- writing ---------------------------------------------------------
    def write_tree(self, files: Mapping[str, bytes]) -> str:
        """Write a flat tree of regular files; returns the tree id."""
        builder = self._repo.TreeBuilder()
        for name in sorted(files):
            builder.insert(name, self._repo.create_blob(files[name]), _BLOB)
        return str(builder.write())

    def write_commit(self, *, tree: str, parents: list[str], author: Identity,
                     committer: Identity, message: str, time: int, offset: int = 0,
                     sign: Callable[[bytes], bytes] | None = None) -> str:
        """Write a commit object; with ``sign``, an SSH-signed one (``gpgsig`` header)."""
        a, c = _sig(author, time, offset), _sig(committer, time, offset)
        tree_oid = pygit2.Oid(hex=tree)
        parent_oids: list[str | pygit2.Oid] = [pygit2.Oid(hex=p) for p in parents]
        if sign is None:
            return str(self._repo.create_commit(None, a, c, message, tree_oid, parent_oids))
        content = self._repo.create_commit_string(a, c, message, tree_oid, parent_oids)
        if not isinstance(content, str):  # pygit2's stubs say Oid; it returns the text
            raise TypeError("pygit2 create_commit_string returned no text")
        signature = sign(content.encode("utf-8")).decode("ascii")
        return str(self._repo.create_commit_with_signature(content, signature.rstrip("\n"),
                                                           "gpgsig"))

    def create_tag(self, name: str, target: str, *, tagger: Identity, message: str,
                   time: int, offset: int = 0,
                   sign: Callable[[bytes], bytes] | None = None) -> str:
        """Create annotated tag ``refs/tags/<name>``; RefConflict if it exists.

        With ``sign`` the tag carries an SSH signature after its message, as
        ``git tag -s`` writes it."""
        if sign is None:
            try:
                oid = self._repo.create_tag(name, pygit2.Oid(hex=target),
                                            pygit2.enums.ObjectType.COMMIT,
                                            _sig(tagger, time, offset), message)
            except (pygit2.AlreadyExistsError, ValueError) as exc:
                raise RefConflict(f"tag {name} already exists") from exc
            return str(oid)
        if self._repo.references.get(f"refs/tags/{name}") is not None:
            raise RefConflict(f"tag {name} already exists")
        payload = (f"object {target}\ntype commit\ntag {name}\n"
                   f"tagger {_sig_line(tagger, time, offset)}\n\n{message}").encode()
        if not payload.endswith(b"\n"):
            payload += b"\n"
        oid = self._repo.odb.write(pygit2.enums.ObjectType.TAG, payload + sign(payload))
        try:
            self._repo.create_reference_direct(f"refs/tags/{name}", oid, False,
                                               message=f"gitstore: tag {name}")
        except pygit2.AlreadyExistsError as exc:
            raise RefConflict(f"tag {name} already exists") from exc
        return str(oid)

    def signature(self, oid: str) -> tuple[bytes, bytes] | None:
        """``(signature, signed payload)`` of a commit or tag object, or None if unsigned."""
        obj = self._lookup(oid)
        if isinstance(obj, pygit2.Commit):
            sig, payload = obj.gpg_signature
            return (sig, payload) if sig else None
        if isinstance(obj, pygit2.Tag):
            raw = self._repo.odb.read(obj.id)[1]
            cut = raw.find(b"-----BEGIN SSH SIGNATURE-----")
            if cut < 0:
                cut = raw.find(b"-----BEGIN PGP SIGNATURE-----")
            return (raw[cut:], raw[:cut]) if cut >= 0 else None
        return None

    def update_ref(self, name: str, new: str, old: str | None, reflog: str) -> None:
        """Point ``name`` at ``new`` if and only if it currently points at ``old``
        (``None``: the ref must not exist yet). Raises RefConflict otherwise."""
        target = pygit2.Oid(hex=new)
        if old is None:
            try:
                self._repo.create_reference_direct(name, target, False, message=reflog)
            except pygit2.AlreadyExistsError as exc:
                raise RefConflict(f"{name} was created by another writer") from exc
            return
        try:
            ref = self._repo.references[name]
        except KeyError as exc:
            raise RefConflict(f"{name} was deleted by another writer") from exc
        if str(ref.target) != old:
            raise RefConflict(f"{name} was moved by another writer")
        try:
            ref.set_target(target, reflog)
        except pygit2.GitError as exc:
            raise RefConflict(f"{name} was moved by another writer") from exc

    def set_head(self, ref: str) -> None:
        if self.head_ref() != ref:
            self._repo.set_head(ref)

    # -- reading ---------------------------------------------------------
    @_damage_is_integrity_error
    def head_ref(self) -> str | None:
        try:
            head = self._repo.references["HEAD"]
        except KeyError:
            return None
        target = head.target
        return target if isinstance(target, str) else None

    @_damage_is_integrity_error
    def ref_target(self, name: str) -> str | None:
        """The object id a ref points at (not peeled), or None if it does not exist."""
        ref = self._repo.references.get(name)
        if ref is None:
            return None
        ref = ref.resolve()
        return str(ref.target)

    @_damage_is_integrity_error
    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self._repo.references:
            if name.startswith(prefix):
                target = self.ref_target(name)
                if target is not None:
                    out[name] = target
        return out

    @_damage_is_integrity_error
    def commit(self, oid: str) -> CommitInfo:
        return _info(self._commit_obj(oid))

    @_damage_is_integrity_error
    def tag(self, name: str) -> TagInfo | None:
        """The annotated tag ``refs/tags/<name>``, or None if there is no such tag."""
        ref = self._repo.references.get(f"refs/tags/{name}")
        if ref is None:
            return None
        obj = self._repo.get(ref.target)
        if isinstance(obj, pygit2.Tag):
            return TagInfo(name=name, id=str(obj.id), target=str(obj.target),
                           tagger=_identity(obj.tagger),
                           time=obj.tagger.time if obj.tagger else 0,
                           message=obj.message)
        return TagInfo(name=name, id=str(ref.target), target=str(ref.target), tagger=None,
                       time=0, message="", annotated=False)

    @_damage_is_integrity_error
    def read_tree(self, commit: str) -> dict[str, bytes]:
        """All regular files at the top of ``commit``'s tree, by name."""
        tree = self._commit_obj(commit).tree
        out: dict[str, bytes] = {}
        for entry in tree:
            if entry.type_str == "blob" and entry.name is not None:
                out[entry.name] = self._blob(entry.id)
        return out

    @_damage_is_integrity_error
    def read_file(self, commit: str, name: str) -> bytes | None:
        tree = self._commit_obj(commit).tree
        try:
            entry = tree[name]
        except KeyError:
            return None
        if entry.type_str != "blob":
            return None
        return self._blob(entry.id)

    def _blob(self, oid: pygit2.Oid) -> bytes:
        try:
            blob = self._repo[oid]
        except KeyError:
            raise IntegrityError(f"repository {self.path.name} is damaged: object {oid} is "
                                 f"missing; run `gitstore verify {self.path.name}`") from None
        if not isinstance(blob, pygit2.Blob):
            raise NotFoundError(f"object {oid} is not a blob")
        return blob.data

    @_damage_is_integrity_error
    def resolve(self, revision: str) -> str:
        """Resolve any git revision (``v1.0.0``, ``v1``, ``HEAD~2``, an id) to a commit id."""
        if revision.startswith("-") or "\x00" in revision or ":" in revision:
            raise UsageError(f"invalid revision {revision!r}")
        try:
            obj = self._repo.revparse_single(revision)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, pygit2.GitError, ValueError, pygit2.InvalidSpecError):
            raise NotFoundError(f"no such revision {revision!r} in {self.path.name}") from None
        return str(commit.id)

    def walk(self, start: str, hide: list[str] | None = None, *,
             first_parent: bool = False) -> Iterator[CommitInfo]:
        """Commits reachable from ``start`` and not from ``hide``, newest first."""
        try:
            yield from self._walk(start, hide or [], first_parent)
        except pygit2.GitError as exc:
            raise IntegrityError(f"repository {self.path.name} is damaged: {exc}; run "
                                 f"`gitstore verify {self.path.name}`") from None

    def _walk(self, start: str, hide: list[str], first_parent: bool) -> Iterator[CommitInfo]:
        walker = self._repo.walk(pygit2.Oid(hex=start),
                                 pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
        if first_parent:
            walker.simplify_first_parent()
        for h in hide:
            walker.hide(pygit2.Oid(hex=h))
        for c in walker:
            yield _info(c)

    @_damage_is_integrity_error
    def changed_files(self, commit: str) -> set[str]:
        """Names of the files ``commit`` changed relative to its first parent."""
        c = self._commit_obj(commit)
        new = {e.name: e.id for e in c.tree}
        old = {e.name: e.id for e in c.parents[0].tree} if c.parent_ids else {}
        return {str(n) for n in set(new) | set(old) if new.get(n) != old.get(n)}

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        """True if ``ancestor`` is ``commit`` or reachable from it."""
        if ancestor == commit:
            return True
        return bool(self._repo.descendant_of(pygit2.Oid(hex=commit), pygit2.Oid(hex=ancestor)))

    def stray_locks(self) -> list[str]:
        """Lock files left in the git directory (``HEAD.lock``, ``packed-refs.lock``,
        ``refs/**.lock``, ...), relative to it. Only the top level and ``refs/``
        are searched: that is where git and libgit2 take locks."""
        found = [name for name in os.listdir(self.path) if name.endswith(".lock")]
        for dirpath, _dirs, names in os.walk(self.path / "refs"):
            found.extend(os.path.relpath(os.path.join(dirpath, n), self.path)
                         for n in names if n.endswith(".lock"))
        return sorted(found)

    def clear_stale_locks(self, grace: float = 2.0, aside: Path | None = None) -> list[str]:
        """Remove lock files a dead process left behind; return their names.

        Call only while holding the customer's writer lock: gitstore's writers
        take ref locks only then, and for milliseconds. A lock that is still
        there after ``grace`` seconds was left by a process that died (a plain
        git process holds one for milliseconds too)."""
        locks = self.stray_locks()
        deadline = time.monotonic() + grace
        while locks and time.monotonic() < deadline:
            time.sleep(0.02)
            locks = [rel for rel in locks if (self.path / rel).exists()]
        removed = []
        for rel in locks:
            try:
                if aside is None:
                    (self.path / rel).unlink()
                else:
                    (aside / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self.path / rel, aside / rel)
                removed.append(rel)
            except FileNotFoundError:
                continue
        return removed

    # -- recovery -----------------------------------------------------------
    def damaged_objects(self) -> list[tuple[str, Path]]:
        """Objects in the database that fail to read (bad zlib, bad hash, damaged
        pack), each with the file that holds it (a loose object or a pack)."""
        damaged = []
        objects = self.path / "objects"
        for oid in self._repo.odb:
            try:
                self._repo.odb.read(oid)
            except (pygit2.GitError, ValueError, KeyError):
                hexid = str(oid)
                loose = objects / hexid[:2] / hexid[2:]
                damaged.append((hexid, loose if loose.exists() else self._pack_of(hexid)))
        return damaged

    def _pack_of(self, hexid: str) -> Path:
        """The pack whose index lists ``hexid`` (the pack directory if none does)."""
        for idx in self.packs():
            try:
                if hexid in pack_ids(idx):
                    return idx.with_suffix(".pack")
            except StorageError:  # not a version 2 index: not ours to judge
                continue
        return self.path / "objects" / "pack"

    def copy_reachable_from(self, source: Repo) -> int:
        """Copy into this database every object reachable from this repository's
        refs (or, for a ref it cannot resolve, from the source's ref of that
        name) that this database lacks and ``source`` has. Returns the count."""
        starts = []
        for name in list(self._repo.references):
            try:
                starts.append(self._repo.references[name].resolve().target)
            except (pygit2.GitError, KeyError):
                ref = source._repo.references.get(name)
                if ref is not None:
                    starts.append(ref.resolve().target)
        copied = 0
        seen: set[str] = set()
        stack = list(starts)
        while stack:
            oid = stack.pop()
            if str(oid) in seen:
                continue
            seen.add(str(oid))
            try:
                obj = self._repo[oid]
            except (KeyError, pygit2.GitError, ValueError):
                try:
                    kind, data = source._repo.odb.read(oid)
                except (KeyError, pygit2.GitError, ValueError):
                    continue
                written = self._repo.odb.write(kind, data)
                if written != oid:
                    raise StorageError(f"object {oid} from the source does not hash to its "
                                       "id") from None
                copied += 1
                obj = self._repo[oid]
            stack.extend(_children(obj))
        return copied

    def broken_refs(self) -> list[str]:
        """Refs that cannot be read or point at objects that do not exist."""
        broken = []
        refs_dir = self.path / "refs"
        names = {str(p.relative_to(self.path)) for p in refs_dir.rglob("*")
                 if p.is_file() and not p.name.endswith(".lock")}
        names |= set(self._repo.references)
        for name in sorted(names):
            try:
                target = self._repo.references[name].resolve().target
                self._repo[target]
            except (pygit2.GitError, KeyError, ValueError):
                broken.append(name)
        return broken

    def restore_ref(self, name: str, source: Repo, aside: Path) -> bool:
        """Set a broken ref to the source's value of it (if the source has it);
        the broken ref file is moved into ``aside``, never deleted."""
        ref = source._repo.references.get(name)
        if ref is None:
            return False
        target = ref.resolve().target
        path = self.path / name
        if path.is_file():
            dest = aside / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        self._repo.create_reference_direct(name, target, True, message="gitstore: repair")
        return True

    def source_ref(self, name: str) -> str | None:
        """The object id ``name`` resolves to in this repository (for a source)."""
        ref = self._repo.references.get(name)
        return str(ref.resolve().target) if ref is not None else None

    # -- maintenance ---------------------------------------------------------
    def loose_objects(self) -> dict[str, Path]:
        """Every loose object file, by object id."""
        out: dict[str, Path] = {}
        objects = self.path / "objects"
        for entry in os.scandir(objects):
            if len(entry.name) != 2 or not entry.is_dir():
                continue
            for obj in os.scandir(entry.path):
                if len(obj.name) == 38 and not obj.name.startswith("tmp"):
                    out[entry.name + obj.name] = Path(obj.path)
        return out

    def packs(self) -> list[Path]:
        """The pack index files (``objects/pack/*.idx``)."""
        return sorted((self.path / "objects" / "pack").glob("pack-*.idx"))

    def _add_reachable(self, builder: pygit2.PackBuilder,
                       targets: list[pygit2.Oid | str]) -> None:
        """Add to ``builder`` everything reachable from ``targets``: tag objects,
        then every commit (one walk for all of them) with its tree."""
        walker = self._commits_from(targets, builder)
        for commit in walker or ():
            builder.add_recur(commit.id)

    def _commits_from(self, targets: list[pygit2.Oid | str],
                      builder: pygit2.PackBuilder | None = None) -> pygit2.Walker | None:
        """One walker over every commit reachable from ``targets`` (tags peeled;
        tag objects and non-commit targets go to ``builder`` when given)."""
        walker: pygit2.Walker | None = None
        for target in targets:
            obj = self._repo[target]
            while isinstance(obj, pygit2.Tag):
                if builder is not None:
                    builder.add(obj.id)
                obj = self._repo[obj.target]
            if isinstance(obj, pygit2.Commit):
                if walker is None:
                    walker = self._repo.walk(obj.id)
                else:
                    walker.push(obj.id)
            elif builder is not None:
                builder.add_recur(obj.id)
        return walker

    def write_pack(self, oids: list[str] | None) -> tuple[Path | None, int]:
        """Write one pack (with deltas) of ``oids``, or of everything reachable
        from any ref when None; returns its index path and object count.

        The pack and its index are complete on disk (fsynced with fsync on)
        before this returns; nothing is removed here."""
        builder = pygit2.PackBuilder(self._repo)
        if oids is None:
            self._add_reachable(builder, [self._repo.references[name].resolve().target
                                          for name in list(self._repo.references)])
        else:
            for oid in oids:
                builder.add(pygit2.Oid(hex=oid))
        pack_dir = self.path / "objects" / "pack"
        pack_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="tmp-gitstore-", dir=pack_dir))
        try:
            builder.write(str(staging))
            written = sorted(staging.glob("pack-*.idx"))
            if not written:
                return None, builder.written_objects_count
            idx = pack_dir / written[0].name
            # the .pack first, then its .idx: a reader never sees an index
            # without its pack; an existing pack of that name has this content
            for suffix in (".pack", ".idx"):
                src = written[0].with_suffix(suffix)
                if src.exists():
                    os.replace(src, pack_dir / src.name)
            return idx, builder.written_objects_count
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def compress_refs(self) -> None:
        """Move loose refs into ``packed-refs`` (what ``git pack-refs --all`` does)."""
        self._repo.compress_references()

    def add_alternate(self, objects_dir: str) -> None:
        """Let this handle read objects from another object directory (a push's
        quarantine area in a pre-receive hook)."""
        self._repo.odb.add_disk_alternate(objects_dir)

    # -- export, import and retention (used by gitstore.exporting/.retention) --
    def delete_ref(self, name: str, old: str) -> None:
        """Delete ``name`` if and only if it points at ``old`` (RefConflict
        otherwise). libgit2 deletes the ref's reflog with it."""
        ref = self._repo.references.get(name)
        if ref is None:
            raise RefConflict(f"{name} was deleted by another writer")
        if str(ref.resolve().target) != old:
            raise RefConflict(f"{name} was moved by another writer")
        ref.delete()

    def create_ref(self, name: str, target: str, reflog: str) -> None:
        """Create ``name`` at ``target``: RefConflict if it exists, IntegrityError
        if the object does not (a ref from an import must name what came with it)."""
        try:
            self._repo.create_reference_direct(name, pygit2.Oid(hex=target), False,
                                               message=reflog)
        except pygit2.AlreadyExistsError as exc:
            raise RefConflict(f"{name} already exists") from exc
        except (pygit2.GitError, ValueError) as exc:
            raise IntegrityError(f"cannot create {name} at {target[:12]}: {exc}") from None

    @_damage_is_integrity_error
    def drop_unreachable_reflog_entries(self) -> int:
        """Drop every reflog entry naming a commit that no ref reaches; remove
        reflogs of refs that no longer exist. Returns the entries dropped.

        After refs are deleted or moved to a new root (a retention purge), the
        old entries would keep naming commits that pruning deletes, and git
        (``fsck``, ``reflog``, ``gc``) would report them as broken."""
        targets = []
        for name in list(self._repo.references):
            try:
                target = self._repo.references[name].resolve().target
                self._repo[target]
            except (KeyError, pygit2.GitError, ValueError):
                continue
            targets.append(target)
        walker = self._commits_from(targets)
        reachable = {str(c.id) for c in walker} if walker is not None else set()
        reachable.add("0" * 40)
        names = set(self._repo.references)
        dropped = 0
        logs = self.path / "logs"
        for dirpath, _dirs, files in os.walk(logs):
            for file in files:
                path = Path(dirpath) / file
                ref = str(path.relative_to(logs))
                lines = path.read_bytes().splitlines(keepends=True)
                keep = [line for line in lines
                        if all(part.decode("ascii", "replace") in reachable
                               for part in line.split(b" ", 2)[:2])]
                if ref != "HEAD" and ref not in names:
                    dropped += len(lines)
                    path.unlink()
                elif len(keep) != len(lines):
                    dropped += len(lines) - len(keep)
                    tmp = path.with_name(path.name + ".gitstore-tmp")
                    tmp.write_bytes(b"".join(keep))
                    os.replace(tmp, path)
        return dropped

    @_damage_is_integrity_error
    def write_bundle(self, out: IO[bytes]) -> dict[str, str]:
        """Write a git bundle (format v2) of every ref under ``refs/`` with its
        whole history to ``out``: the header (``# v2 git bundle``, one
        ``<id> <ref>`` line per ref and ``HEAD``, a blank line) and one pack
        made by libgit2's pack builder. No git binary needed; ``git bundle
        verify``, ``git clone`` and ``git fetch`` read it. Returns the refs."""
        refs = {name: str(self._repo.references[name].resolve().target)
                for name in sorted(self._repo.references) if name.startswith("refs/")}
        if not refs:
            raise NotFoundError(f"{self.path.name} has no refs: nothing to bundle")
        builder = pygit2.PackBuilder(self._repo)
        self._add_reachable(builder, [pygit2.Oid(hex=t) for t in refs.values()])
        head = self.head_ref()
        lines = [f"{refs[head]} HEAD\n"] if head in refs else []
        lines += [f"{oid} {name}\n" for name, oid in refs.items()]
        with tempfile.TemporaryDirectory(prefix="gitstore-bundle-") as tmp:
            builder.write(tmp)
            packs = list(Path(tmp).glob("*.pack"))
            if len(packs) != 1:
                raise StorageError(f"libgit2 wrote {len(packs)} packs for one bundle")
            out.write(("# v2 git bundle\n" + "".join(lines) + "\n").encode("utf-8"))
            with packs[0].open("rb") as pack:
                shutil.copyfileobj(pack, out, 1 << 20)
        return refs

    def index_pack(self, pack: BinaryIO) -> int:
        """Store the pack read from ``pack`` (positioned at ``PACK``; a bundle's
        pack section) in this repository with its index, checking every object
        (``git index-pack --stdin --strict``). pygit2 exposes no pack indexer,
        so this needs git on PATH. Returns the pack's object count."""
        git = shutil.which("git")
        if git is None:
            raise UsageError("importing a git bundle needs the git binary on PATH")
        proc = subprocess.run([git, f"--git-dir={self.path}", "index-pack", "--stdin",
                               "--strict"], stdin=pack, capture_output=True, check=False)
        if proc.returncode != 0:
            raise IntegrityError("the bundle's pack is damaged or invalid: "
                                 + proc.stderr.decode("utf-8", "replace").strip())
        digest = proc.stdout.decode("ascii", "replace").split()[-1]
        return len(pack_ids(self.path / "objects" / "pack" / f"pack-{digest}.idx"))

    # -- work-tree clones and hooks (used by gitstore.ops.githooks) -------------
    @property
    def is_bare(self) -> bool:
        return bool(self._repo.is_bare)

    @property
    def workdir(self) -> Path | None:
        workdir = self._repo.workdir
        return Path(workdir) if workdir else None

    def config_get(self, key: str) -> str | None:
        try:
            value = self._repo.config[key]
        except KeyError:
            return None
        return str(value)

    def config_set(self, key: str, value: str) -> None:
        """Set ``key`` in the repository's own (local) configuration."""
        self._repo.config[key] = value

    def read_index(self, index_file: Path | None = None) -> dict[str, bytes]:
        """The staged files (``path -> bytes``) of the index, or of ``index_file``
        (a hook's ``GIT_INDEX_FILE``); a submodule entry reads as empty."""
        index = pygit2.Index(str(index_file)) if index_file else self._repo.index
        out: dict[str, bytes] = {}
        for entry in index:
            obj = self._repo.get(entry.id)
            out[entry.path] = obj.data if isinstance(obj, pygit2.Blob) else b""
        return out

    @_damage_is_integrity_error
    def tree_modes(self, commit: str) -> dict[str, int]:
        """Every entry at the top of ``commit``'s tree with its git file mode
        (0o100644 file, 0o100755 executable, 0o120000 symlink, 0o040000 tree, ...)."""
        return {e.name: int(e.filemode) for e in self._commit_obj(commit).tree
                if e.name is not None}

    def tag_object(self, oid: str) -> TagInfo | None:
        """The annotated tag object ``oid`` (by its own name), or None if ``oid``
        is not a tag object (for example the commit of a lightweight tag)."""
        obj = self._repo.get(oid)
        if not isinstance(obj, pygit2.Tag):
            return None
        return TagInfo(name=obj.name, id=str(obj.id), target=str(obj.target),
                       tagger=_identity(obj.tagger), time=obj.tagger.time if obj.tagger else 0,
                       message=obj.message)

    def check_objects(self) -> list[str]:
        """Read every object reachable from every ref; return a line per problem.

        libgit2 verifies each object's hash as it reads it, so a corrupted or
        missing object, or a damaged pack, shows up here.
        """
        problems: list[str] = []
        seen: set[str] = set()
        for name in list(self._repo.references):
            try:
                ref = self._repo.references[name].resolve()
                start = ref.target
            except (pygit2.GitError, KeyError) as exc:
                problems.append(f"ref {name} is broken: {exc}")
                continue
            stack = [start]
            while stack:
                oid = stack.pop()
                key = str(oid)
                if key in seen:
                    continue
                seen.add(key)
                try:
                    obj = self._repo[oid]
                    _ = obj.read_raw()
                except KeyError:
                    problems.append(f"object {key} (reachable from {name}) is missing")
                    continue
                except (pygit2.GitError, ValueError) as exc:
                    problems.append(f"object {key} (reachable from {name}) is corrupt: {exc}")
                    continue
                if isinstance(obj, pygit2.Tag):
                    stack.append(obj.target)
                elif isinstance(obj, pygit2.Commit):
                    stack.append(obj.tree_id)
                    stack.extend(obj.parent_ids)
                elif isinstance(obj, pygit2.Tree):
                    stack.extend(e.id for e in obj)
        return problems

    # -- helpers ---------------------------------------------------------
    def _lookup(self, oid: str) -> pygit2.Object:
        try:
            return self._repo[pygit2.Oid(hex=oid)]
        except (KeyError, ValueError):
            raise NotFoundError(f"no object {oid[:12]} in {self.path.name}") from None

    def _commit_obj(self, oid: str) -> pygit2.Commit:
        obj = self._lookup(oid)
        if not isinstance(obj, pygit2.Commit):
            raise NotFoundError(f"{oid[:12]} is not a commit")
        return obj


def _info(obj: pygit2.Commit) -> CommitInfo:
    return CommitInfo(
        id=str(obj.id), tree_id=str(obj.tree_id),
        parents=tuple(str(p) for p in obj.parent_ids),
        author=Identity(obj.author.name, obj.author.email),
        committer=Identity(obj.committer.name, obj.committer.email),
        time=obj.commit_time, offset=obj.commit_time_offset, message=obj.message,
        trailers=read_trailers(obj.message_trailers),
        author_time=obj.author.time, author_offset=obj.author.offset)


def is_repository(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()
