"""The git layer's front door: :class:`Repo`, one repository and its libgit2 handle.

Everything above the git layer speaks in hex object ids, ``bytes`` and the plain
dataclasses of :mod:`gitstore.core.commits`, through :class:`Repo`, which opens and
creates repositories, reads objects and refs, and hands each other job to the module
that does it: :mod:`~gitstore.git.objects` (writing objects), :mod:`~gitstore.git.refs`
(compare-and-swap ref updates), :mod:`~gitstore.git.wholerepo` (packs, bundles,
damage and repair; like the others a read does not need, loaded when first used).
A handle opened while :func:`~gitstore.git.settings.reading_with_git` reads through
:mod:`~gitstore.git.catfile` first and opens libgit2 only for what that declines.
Invariants this layer keeps:

* objects are written straight into the object database: no work tree, no index;
* every ref update is a compare-and-swap against the value the caller read
  (:meth:`Repo.update_ref` raises :class:`RefConflict` when another writer got
  there first); tag creation fails rather than moving an existing tag;
* with :func:`enable_fsync` on (:mod:`~gitstore.git.settings`), libgit2 fsyncs
  objects and refs before a write returns, so an acknowledged write survives a
  crash of the machine;
* a repository is created in a temporary directory and renamed into place (no crash
  leaves a half-initialised one), with the ``files`` ref format;
* libgit2's errors on damaged data surface as :class:`IntegrityError` naming
  the repository and ``gitstore verify``;
* the refs a caller is given are all sound: :meth:`Repo.refs` and :meth:`Repo.ref_target`
  raise :class:`IntegrityError` for a ref file libgit2 cannot parse (it would skip it)
  or a ref naming an object the database does not hold, so a read never silently omits
  a version; only ``verify`` and ``repair`` ask for the lenient view (``strict=False``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitstore.core import files as sessionfiles
from gitstore.core import layout, lazy
from gitstore.core.commits import CommitInfo, Identity, TagInfo
from gitstore.core.names import CONV
from gitstore.errors import IntegrityError, NotFoundError, StorageError, UsageError
from gitstore.git import objects, settings
from gitstore.git import refs as ref_ops
from gitstore.git.refs import RefConflict
from gitstore.git.settings import enable_fsync
from gitstore.git.trees import Prepared, Trees
from gitstore.git.wholerepo import WholeRepository, damage_is_integrity_error

if TYPE_CHECKING:
    import shutil
    import tempfile

    import pygit2

    from gitstore.core import sealed
    from gitstore.git import catfile
else:  # not needed to read (gitstore.core.lazy)
    pygit2 = lazy.module("pygit2")
    catfile = lazy.module("gitstore.git.catfile")
    tempfile = lazy.module("tempfile")
    shutil = lazy.module("shutil")

__all__ = ["RefConflict", "Repo", "enable_fsync", "is_repository"]

LAYOUT_KEY = "gitstore.layout"
"""The repository's configured layout (see :meth:`Repo.layout_for`)."""

_DECLINED: Any = object()


class Repo(WholeRepository):
    """A bare customer repository (or another repository opened to read from).
    ``codec``, installed by the store for an encrypted customer, opens what
    :meth:`read_tree` and :meth:`read_file` return (:meth:`read_stored`: as stored).

    Opened while :func:`~gitstore.git.settings.reading_with_git`, a handle reads
    through :mod:`~gitstore.git.catfile` first and opens its libgit2 handle only
    for what that declines (and for every write)."""

    def __init__(self, repo: pygit2.Repository | None, path: Path,
                 batch: catfile.Batch | None = None) -> None:
        self._handle = repo
        self.path = path
        self._handle_trees = Trees(repo, path) if repo is not None else None
        self._batch = batch
        self._batch_trees = Trees(None, path, batch.read_blob) if batch is not None else None
        self._chains = objects.Chains()
        self.codec: sealed.Opener | None = None

    @property
    def uses_libgit2(self) -> bool:
        """Whether this handle has opened libgit2 (a handle of the second reader
        does so only for what that declined, and for writes)."""
        return self._handle is not None

    @property
    def _repo(self) -> pygit2.Repository:
        if self._handle is None:
            settings.apply()
            try:
                self._handle = pygit2.Repository(str(self.path), _bare_only())
            except pygit2.GitError as exc:
                raise NotFoundError(f"{self.path} is not a git repository: {exc}") from None
        return self._handle

    @property
    def _trees(self) -> Trees:
        if self._handle_trees is None:
            self._handle_trees = Trees(self._repo, self.path)
        return self._handle_trees

    def _ask(self, read: Callable[[catfile.Batch], Any]) -> Any:
        """``read`` of the second reader, or ``_DECLINED`` (ask libgit2). Once
        this handle has opened libgit2 (its import paid), libgit2 answers: one
        call in process is cheaper than a round trip to git."""
        if self._batch is None or self._handle is not None:
            return _DECLINED
        try:
            return read(self._batch)
        except catfile.Declined:
            return _DECLINED

    def _read_trees(self) -> Trees:
        assert self._batch_trees is not None
        return self._batch_trees

    def _batch_tree(self, commit: str) -> catfile.Tree:
        assert self._batch is not None
        return catfile.Tree(self._batch, self._batch.commit(commit).tree_id)

    # -- lifecycle -------------------------------------------------------
    @classmethod
    def open(cls, path: Path) -> Repo:
        if settings.reading_with_git() and is_repository(path) and \
                (batch := catfile.open_batch(path)) is not None:
            return cls(None, path, batch)
        handle = cls(None, path)
        handle._repo  # noqa: B018 -- opened now: NotFoundError here, not at first use
        return handle

    @classmethod
    def open_any(cls, path: Path) -> Repo:
        """Open a bare repository or a clone with a work tree (its top or its git
        dir), without searching parent directories. ``path`` becomes the git dir."""
        settings.apply()
        try:
            repo = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError as exc:
            raise NotFoundError(f"{path} is not a git repository: {exc}") from None
        return cls(repo, Path(repo.path))

    @classmethod
    def open_source(cls, path: Path) -> Repo:
        """Open another repository (bare or with a work tree) to read objects from."""
        settings.apply()
        try:
            return cls(pygit2.Repository(str(path)), path)
        except pygit2.GitError as exc:
            raise NotFoundError(f"{path} is not a git repository: {exc}") from None

    @classmethod
    def create(cls, path: Path, *, description: str, head: str, committer: Identity) -> Repo:
        """Create a bare repository at ``path`` atomically (temp dir + rename)."""
        settings.apply()
        parent = path.parent
        try:
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-init-", dir=parent))
        except OSError as exc:
            raise StorageError(f"cannot create a repository in {parent}: {exc.strerror}") from None
        try:
            repo = pygit2.init_repository(str(tmp), bare=True)
            cfg = repo.config
            # no reflog (git's default for a bare repository): the commit chain
            # is the ref history (fast-forward only), and a reflog costs a write
            # four fsyncs; git config core.logAllRefUpdates true turns it on
            cfg["receive.denyNonFastForwards"] = True
            cfg["receive.denyDeletes"] = True
            cfg["gc.auto"] = 0
            cfg[LAYOUT_KEY] = str(layout.LATEST)  # conversations in parts
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

    # -- objects: writing --------------------------------------------------
    def write_tree(self, files: Mapping[str, bytes]) -> str:
        """Write a flat tree of regular files; returns the tree id."""
        return self._trees.write_flat(files)

    def write_commit(self, *, tree: str, parents: list[str], author: Identity,
                     committer: Identity, message: str, time: int, offset: int = 0,
                     sign: Callable[[bytes], bytes] | None = None) -> str:
        """Write a commit object; with ``sign``, an SSH-signed one (``gpgsig`` header)."""
        return objects.write_commit(self._repo, tree=tree, parents=parents, author=author,
                                    committer=committer, message=message, time=time,
                                    offset=offset, sign=sign)

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
                                            objects.signature(tagger, time, offset), message)
            except (pygit2.AlreadyExistsError, ValueError) as exc:
                raise RefConflict(f"tag {name} already exists") from exc
            return str(oid)
        if self._repo.references.get(f"refs/tags/{name}") is not None:
            raise RefConflict(f"tag {name} already exists")
        oid = objects.write_signed_tag(self._repo, name, target, tagger=tagger,
                                       message=message, time=time, offset=offset, sign=sign)
        try:
            self._repo.create_reference_direct(f"refs/tags/{name}", oid, False,
                                               message=f"gitstore: tag {name}")
        except pygit2.AlreadyExistsError as exc:
            raise RefConflict(f"tag {name} already exists") from exc
        return str(oid)

    # -- objects: reading --------------------------------------------------
    @damage_is_integrity_error
    def commit(self, oid: str) -> CommitInfo:
        found = self._ask(lambda b: b.commit(oid))
        return found if found is not _DECLINED else objects.commit_info(self._commit_obj(oid))

    @damage_is_integrity_error
    def tag(self, name: str) -> TagInfo | None:
        """The annotated tag ``refs/tags/<name>``, or None if there is no such tag."""
        found = self._ask(lambda b: b.tag_named(name))
        if found is not _DECLINED:
            return found  # type: ignore[no-any-return]
        ref = self._repo.references.get(f"refs/tags/{name}")
        if ref is None:
            return None
        obj = self._repo.get(ref.target)
        if isinstance(obj, pygit2.Tag):
            return objects.tag_info(obj, name)
        return TagInfo(name=name, id=str(ref.target), target=str(ref.target), tagger=None,
                       time=0, message="", annotated=False)

    def tag_object(self, oid: str) -> TagInfo | None:
        """The annotated tag object ``oid`` (by its own name), or None if ``oid``
        is not a tag object (for example the commit of a lightweight tag)."""
        found = self._ask(lambda b: b.tag_info(oid))
        if found is not _DECLINED:
            return found  # type: ignore[no-any-return]
        obj = self._repo.get(oid)
        if not isinstance(obj, pygit2.Tag):
            return None
        return objects.tag_info(obj, obj.name)

    def signature(self, oid: str) -> tuple[bytes, bytes] | None:
        """``(signature, signed payload)`` of a commit or tag object, or None if unsigned."""
        return objects.signature_of(self._repo, self._lookup(oid))

    @damage_is_integrity_error
    def read_tree(self, commit: str) -> dict[str, bytes]:
        """The session files of ``commit``, logically (see :mod:`gitstore.core.layout`):
        the regular files at the top of its tree, a conversation stored in parts
        assembled into ``conversation.json``, and the stored manifest; opened by ``codec``."""
        stored = self._logical(commit)
        return self.codec.open_files(stored) if self.codec is not None else dict(stored)

    @damage_is_integrity_error
    def read_stored(self, commit: str) -> Mapping[str, bytes]:
        """The session files of ``commit`` as stored (what ``SHA256SUMS`` lists);
        a conversation this handle wrote may be held in parts until it is read
        (:mod:`gitstore.core.files`)."""
        return sessionfiles.updated(self._logical(commit), {})

    def _logical(self, commit: str) -> Mapping[str, bytes]:
        stored = self._ask(lambda b: self._read_trees().logical(self._batch_tree(commit))[0])
        return stored if stored is not _DECLINED else \
            self._trees.logical(self._commit_obj(commit).tree)[0]

    @damage_is_integrity_error
    def read_file(self, commit: str, name: str) -> bytes | None:
        if self.codec is not None:
            return self.read_tree(commit).get(name)
        found = self._ask(lambda b: self._read_trees().file(self._batch_tree(commit), name))
        return found if found is not _DECLINED else \
            self._trees.file(self._commit_obj(commit).tree, name)

    def split_of(self, commit: str
                 ) -> tuple[bytes | layout.Joined, layout.Split, dict[str, str]] | None:
        """The conversation of a commit stored in parts: its bytes, its split and
        the parts' manifest digests (None for a conversation stored whole). The
        commit may be one :meth:`commit_data` made and no pack holds yet."""
        return self._trees.split_of(self._tree_or_pending(commit))

    def turns_span(self, commit: str, conv: bytes | layout.Joined | None
                   ) -> tuple[int, int] | None:
        """Where the turns array body of ``conv``, the conversation this handle
        read at ``commit``, starts and ends (None unless it was stored in parts
        and read here)."""
        found = self.split_of(commit) if conv is not None else None
        if found is None or found[0] is not conv or not found[1].chunks:
            return None
        return found[1].body, found[1].body + found[1].ends[-1]

    def prepare_session_tree(self, files: Mapping[str, bytes], *, parts: bool,
                             materialise: bool, base: str | None = None) -> Prepared:
        """The tree of a session commit for its logical ``files``, computed in
        memory: with ``parts``, the conversation stored in parts (layout 2) unless
        ``materialise`` (a version's commit) or it is short, else whole. ``base``
        is the commit the new one follows, written or only made by
        :meth:`commit_data` (its unchanged parts are reused, not split or hashed
        again). Its ``manifest`` is what the commit's ``Manifest`` trailer pins."""
        return self._trees.prepare(files, parts=parts and not materialise,
                                   base=self._tree_or_pending(base) if base else None)

    def commit_data(self, prepared: Prepared, *, parents: list[str], author: Identity,
                    committer: Identity, message: str, time: int, offset: int = 0,
                    sign: Callable[[bytes], bytes] | None = None) -> tuple[str, bytes]:
        """A commit of a prepared tree, made but not written (its id, its bytes;
        with ``sign``, SSH-signed). Until :meth:`write_commits_pack` writes it, only
        :meth:`split_of` and :meth:`prepare_session_tree` of this handle see it."""
        return self._trees.commit(prepared, parents=parents, author=author,
                                  committer=committer, message=message, time=time,
                                  offset=offset, sign=sign)

    @damage_is_integrity_error
    def write_commits_pack(self, commits: list[tuple[Prepared, bytes]]) -> None:
        """Write commits made by :meth:`commit_data` and their trees' new objects
        as one pack (:mod:`gitstore.git.packwrite`: three fsyncs however many
        objects): a chain of commits, each made on the one before, costs the
        fsyncs of one."""
        try:
            self._trees.write(commits, sync=settings.fsync_enabled())
        except OSError as exc:
            raise StorageError(f"cannot write to repository {self.path.name}: "
                               f"{exc.strerror or exc}") from None

    def layout_setting(self) -> int:
        """The repository's ``gitstore.layout`` (1 when unset: from before layouts)."""
        return 2 if self.config_get(LAYOUT_KEY) == "2" else 1

    def set_layout(self, value: int) -> None:
        self.config_set(LAYOUT_KEY, str(value))

    def layout_for(self, parent: str | None) -> int:
        """The layout a new commit on ``parent`` is written in: the repository's
        ``gitstore.layout`` setting (2 for repositories gitstore creates; ``gitstore
        migrate`` sets it on older ones), else the parent's layout, else 1 (a
        repository from before layouts keeps its layout until it is migrated)."""
        configured = self.config_get(LAYOUT_KEY)
        if configured in ("1", "2"):
            return int(configured)
        if parent is not None and layout.CONV_DIR in self._commit_obj(parent).tree:
            return 2
        return 1

    @damage_is_integrity_error
    def resolve(self, revision: str) -> str:
        """Resolve any git revision (``v1.0.0``, ``v1``, ``HEAD~2``, an id) to a commit id."""
        if revision.startswith("-") or "\x00" in revision or ":" in revision:
            raise UsageError(f"invalid revision {revision!r}")
        found = self._ask(lambda b: b.resolve(revision))
        if found is not _DECLINED:
            return found  # type: ignore[no-any-return]
        try:
            obj = self._repo.revparse_single(revision)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, pygit2.GitError, ValueError, pygit2.InvalidSpecError):
            raise NotFoundError(f"no such revision {revision!r} in {self.path.name}") from None
        return str(commit.id)

    def walk(self, start: str, hide: list[str] | None = None, *,
             first_parent: bool = False) -> Iterator[CommitInfo]:
        """Commits reachable from ``start`` and not from ``hide``, newest first."""
        chain = self._ask(lambda b: self._linear(start, first_parent)) if not hide else _DECLINED
        if chain is not _DECLINED:
            yield from chain
            return
        try:
            yield from self._walk(start, hide or [], first_parent)
        except pygit2.GitError as exc:
            raise IntegrityError(f"repository {self.path.name} is damaged: {exc}; run "
                                 f"`gitstore verify {self.path.name}`") from None

    def first_parents(self, start: str) -> Iterator[CommitInfo]:
        """``start`` and its first-parent ancestors, newest first, lazily
        (:class:`objects.Chains`: a commit this handle read is not read again)."""
        if self._batch is not None and self._handle is None:  # as _ask decides
            return self._linear(start, True)
        return self._chains.first_parents(self._repo, start, self._damaged)

    def _walk(self, start: str, hide: list[str], first_parent: bool) -> Iterator[CommitInfo]:
        # a first-parent chain is already in order: unsorted, the walk yields its
        # first commit at once instead of loading the whole history to sort it
        order = pygit2.enums.SortMode.NONE if first_parent and not hide else \
            pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME
        walker = self._repo.walk(pygit2.Oid(hex=start), order)
        if first_parent:
            walker.simplify_first_parent()
        for h in hide:
            walker.hide(pygit2.Oid(hex=h))
        for c in walker:
            yield objects.commit_info(c)

    def _linear(self, start: str, first_parent: bool) -> Iterator[CommitInfo]:
        return catfile.linear(self.commit, start, first_parent, self._damaged,
                              later=self._libgit2_commit)

    @damage_is_integrity_error
    def _libgit2_commit(self, oid: str) -> CommitInfo:
        return objects.commit_info(self._commit_obj(oid))

    @damage_is_integrity_error
    def changed_files(self, commit: str) -> set[str]:
        """Names of the files ``commit`` changed relative to its first parent."""
        found = self._ask(lambda b: (
            {e.name: e.id for e in self._batch_tree(commit)},
            {e.name: e.id for e in self._batch_tree(p[0])} if (p := b.commit(commit).parents)
            else {}))
        if found is not _DECLINED:
            new, old = found
        else:
            c = self._commit_obj(commit)
            new = {e.name: e.id for e in c.tree}
            old = {e.name: e.id for e in c.parents[0].tree} if c.parent_ids else {}
        # a conversation stored in parts, or whole, is one document
        return {CONV if n == layout.CONV_DIR else str(n) for n in set(new) | set(old)
                if new.get(n) != old.get(n)}

    @damage_is_integrity_error
    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits, or None (unrelated histories)."""
        found = self._repo.merge_base(pygit2.Oid(hex=a), pygit2.Oid(hex=b))
        return str(found) if found is not None else None

    @damage_is_integrity_error
    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        """True if ``ancestor`` is ``commit`` or reachable from it."""
        if ancestor == commit:
            return True
        return bool(self._repo.descendant_of(pygit2.Oid(hex=commit), pygit2.Oid(hex=ancestor)))

    @damage_is_integrity_error
    def tree_modes(self, commit: str) -> dict[str, int]:
        """Every entry at the top of ``commit``'s tree with its git file mode
        (0o100644 file, 0o100755 executable, 0o120000 symlink, 0o040000 tree, ...);
        a conversation's parts by their paths in place of its directory."""
        found = self._ask(lambda b: self._read_trees().modes(self._batch_tree(commit)))
        return found if found is not _DECLINED else \
            self._trees.modes(self._commit_obj(commit).tree)

    # -- refs (gitstore.git.refs: every update a compare-and-swap) ------------
    @damage_is_integrity_error
    def head_ref(self) -> str | None:
        """The ref ``HEAD`` names, or None if it is detached or absent."""
        found = self._ask(lambda b: b.head_ref())
        return found if found is not _DECLINED else ref_ops.head_ref(self._repo)

    @damage_is_integrity_error
    def set_head(self, ref: str) -> None:
        if self.head_ref() != ref:
            self._repo.set_head(ref)

    @damage_is_integrity_error
    def ref_target(self, name: str) -> str | None:
        """The object id a ref points at (not peeled), or None if it does not exist.
        A ref naming a missing object is damage (IntegrityError)."""
        found = self._ask(lambda b: b.held_ref(name))
        if found is not _DECLINED:
            return found  # type: ignore[no-any-return]
        target = ref_ops.ref_target(self._repo, name)
        if target is not None and pygit2.Oid(hex=target) not in self._repo:
            raise self._damaged(f"{name} points at {target[:12]}, which is missing")
        return target

    def source_ref(self, name: str) -> str | None:
        """Like :meth:`ref_target`, for a repair source (libgit2's errors as they are)."""
        return ref_ops.ref_target(self._repo, name)

    @damage_is_integrity_error
    def refs(self, prefix: str = "refs/", *, strict: bool = True) -> dict[str, str]:
        """Every ref under ``prefix`` with the object id it points at.

        ``strict`` (the default) raises IntegrityError rather than leave out a
        ref that cannot be read or that names a missing object; without it such
        refs are simply left out (``verify`` and ``repair`` report them)."""
        found = self._ask(lambda b: b.held_refs(prefix)) if strict else _DECLINED
        if found is not _DECLINED:
            return found  # type: ignore[no-any-return]
        out: dict[str, str] = {}
        for name in self._repo.references:
            if name.startswith(prefix):
                try:
                    target = ref_ops.ref_target(self._repo, name)
                except pygit2.GitError:
                    if strict:
                        raise
                    continue
                if target is not None:
                    out[name] = target
        if strict:
            bad = ref_ops.unlisted_loose_refs(self._repo, self.path, prefix, set(out))
            bad += [f"{n} (points at missing {t[:12]})" for n, t in out.items()
                    if pygit2.Oid(hex=t) not in self._repo]
            if bad:
                raise self._damaged(f"ref {', '.join(bad)} cannot be read")
        return out

    def update_ref(self, name: str, new: str, old: str | None, reflog: str) -> None:
        """Point ``name`` at ``new`` if and only if it currently points at ``old``
        (``None``: the ref must not exist yet). Raises RefConflict otherwise."""
        ref_ops.update_ref(self._repo, name, new, old, reflog)

    def delete_ref(self, name: str, old: str) -> None:
        """Delete ``name`` if and only if it points at ``old`` (RefConflict otherwise)."""
        ref_ops.delete_ref(self._repo, name, old)

    def create_ref(self, name: str, target: str, reflog: str) -> None:
        """Create ``name`` at ``target``: RefConflict if it exists, IntegrityError
        if the object does not (a ref from an import must name what came with it)."""
        ref_ops.create_ref(self._repo, name, target, reflog)

    # -- configuration, index and work tree (git hooks, clones) ----------------
    @property
    def is_bare(self) -> bool:
        return bool(self._repo.is_bare)

    @property
    def workdir(self) -> Path | None:
        workdir = self._repo.workdir
        return Path(workdir) if workdir else None

    def config_get(self, key: str) -> str | None:
        found = self._ask(lambda b: b.config_get(key))
        if found is not _DECLINED:
            return found  # type: ignore[no-any-return]
        try:
            value = self._repo.config[key]
        except KeyError:
            return None
        return str(value)

    def config_set(self, key: str, value: str) -> None:
        """Set ``key`` in the repository's own (local) configuration."""
        self._repo.config[key] = value
        if self._batch is not None:
            self._batch.forget_config()

    def read_index(self, index_file: Path | None = None) -> dict[str, bytes]:
        """The staged files (``path -> bytes``) of the index, or of ``index_file``
        (a hook's ``GIT_INDEX_FILE``); a submodule entry reads as empty."""
        index = pygit2.Index(str(index_file)) if index_file else self._repo.index
        out: dict[str, bytes] = {}
        for entry in index:
            obj = self._repo.get(entry.id)
            out[entry.path] = obj.data if isinstance(obj, pygit2.Blob) else b""
        return layout.decode(out)[0]

    def add_alternate(self, objects_dir: str) -> None:
        """Let this handle read objects from another object directory (a push's
        quarantine area in a pre-receive hook)."""
        self._repo.odb.add_disk_alternate(objects_dir)

    # -- helpers -------------------------------------------------------------
    def _lookup(self, oid: str) -> pygit2.Object:
        try:
            return self._repo[pygit2.Oid(hex=oid)]
        except (KeyError, ValueError):
            raise NotFoundError(f"no object {oid[:12]} in {self.path.name}") from None

    def _tree_or_pending(self, commit: str) -> pygit2.Tree | Prepared:
        pending = self._trees.pending(commit)
        return pending if pending is not None else self._commit_obj(commit).tree

    def _commit_obj(self, oid: str) -> pygit2.Commit:
        obj = self._lookup(oid)
        if not isinstance(obj, pygit2.Commit):
            raise NotFoundError(f"{oid[:12]} is not a commit")
        return obj


def _bare_only() -> Any:
    """libgit2's flags to open a bare repository without searching (a function:
    reading them imports pygit2)."""
    return pygit2.enums.RepositoryOpenFlag.NO_SEARCH | pygit2.enums.RepositoryOpenFlag.BARE


def is_repository(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()
