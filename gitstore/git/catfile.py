"""The second reader: a repository's objects, refs and settings without libgit2.

Importing pygit2 costs a short command most of its time (about 65 ms, where
``git cat-file`` answers in 2), so the CLI's read commands (:func:`gitstore.git.
settings.read_with_git`) read through a :class:`Batch`: one ``git cat-file
--batch`` process per repository for objects, the ref files read in Python, and
one ``git config --list`` for settings. :class:`gitstore.git.repo.Repo` asks it
first and libgit2 only when it declines. Invariants:

* every answer is the one libgit2 would give, or :class:`Declined`, and then the
  caller asks libgit2 (which also reports every kind of damage as it always has):
  an object git calls missing, a ref file or ``packed-refs`` line that is not
  plain, a symbolic ref, a setting without a value, a revision outside the grammar
  both read alike (:meth:`Batch.resolve`), a repository in another object or ref
  format, with grafts, shallow or with a promisor remote (git would fetch what it
  lacks; ``GIT_NO_LAZY_FETCH`` is set as well), or a ``git`` that is absent,
  refuses the repository or dies (its process is ended without error);
* every object read is checked against its id (SHA-1 of its header and content):
  a mismatch is :class:`IntegrityError`, as libgit2's strict hash check reports it
  (plain SHA-1: libgit2's collision detection is left to the fsck checks where
  objects come in, on fetch and on the hub's receive, and to ``gitstore verify``);
* git runs with its own view of the repository switched off where libgit2 has
  none: no replace refs, no ``GIT_DIR``-style variables from the caller;
* refs are read from the ref files as git reads them (:mod:`gitstore.git.reffiles`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from gitstore.core.commits import CommitInfo, TagInfo
from gitstore.errors import IntegrityError, NotFoundError
from gitstore.git import rawobjects
from gitstore.git.rawobjects import Entry
from gitstore.git.reffiles import Declined, RefFiles, plain_name

__all__ = ["Batch", "Declined", "Tree", "close_all", "linear", "open_batch", "readers"]

WALK_BY_GIT = 500
"""How many commits a walk or a revision's steps read through git. A commit costs
about 150 µs that way (a round trip, its hash checked, parsed in Python) and about
40 µs through libgit2, whose import costs some 65 ms: past about 600 commits
libgit2 is the cheaper reader."""
OBJECT_CACHE = 4096
"""How many commits, tags and trees one :class:`Batch` keeps parsed."""
KINDS = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}
"""git's object type numbers (pygit2's ``ObjectType``)."""

_HEX = re.compile(r"[0-9a-f]{40}\Z")
_REVISION = re.compile(r"([^~^]+)((?:[~^][0-9]*)*)\Z")
_STEPS = re.compile(r"([~^])([0-9]*)")
_REF_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*\Z")
_ONE_LEVEL = re.compile(r"[A-Z_]+\Z|[0-9a-fA-F]{40}\Z")
"""Names libgit2 reads otherwise than as a ref under ``refs/``: a one-level ref in
``$GIT_DIR`` (``ORIG_HEAD``), an object id in capitals."""
_DWIM = ("refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}", "refs/remotes/{}/HEAD")
"""Where libgit2 looks up a short ref name, in order (after the name itself, for
one under ``refs/``)."""
_ENV_DROPPED = ("GIT_DIR", "GIT_WORK_TREE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_INDEX_FILE",
                "GIT_QUARANTINE_PATH", "GIT_REPLACE_REF_BASE", "GIT_CEILING_DIRECTORIES",
                "GIT_GRAFT_FILE", "GIT_SHALLOW_FILE", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
                "GIT_CONFIG", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM")
"""What git honours and libgit2 does not: left out of git's environment."""


class Tree:
    """A tree object read through a :class:`Batch`, shaped like the pygit2 trees
    :class:`gitstore.git.trees.Trees` walks: ``id``, iteration (entries; a
    subtree is itself a :class:`Tree`, read when first walked), ``name in tree``
    and ``tree[name]``."""

    type_str = "tree"

    def __init__(self, batch: Batch, oid: str, name: str | None = None,
                 filemode: int = 0o040000) -> None:
        self.id = oid
        self.name = name
        self.filemode = filemode
        self._batch = batch
        self._entries: dict[str, Entry | Tree] | None = None

    def _load(self) -> dict[str, Entry | Tree]:
        if self._entries is None:
            entries = self._batch.tree_entries(self.id)
            if entries is None:
                raise Declined(self.id)
            self._entries = {e.name: Tree(self._batch, e.id, e.name, e.filemode)
                             if e.type_str == "tree" else e for e in entries}
        return self._entries

    def __iter__(self) -> Iterator[Entry | Tree]:
        return iter(self._load().values())

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __getitem__(self, name: str) -> Entry | Tree:
        return self._load()[name]


_batches: dict[Path, Batch | None] = {}
_batches_lock = threading.Lock()


def open_batch(path: Path) -> Batch | None:
    """The reader of the repository at ``path``, or None where only libgit2 will
    do (no ``git`` on PATH, another object or ref format, an unreadable config).
    One per repository and process: the handles a read command opens share its
    ``git`` processes and its settings, read once."""
    with _batches_lock:
        if path in _batches:
            return _batches[path]
        git = shutil.which("git")
        batch: Batch | None = Batch(path, git) if git is not None else None
        config = batch.config() if batch is not None else None
        if config is None or not _plain_repository(path, config):
            batch = None
        _batches[path] = batch
        return batch


def readers() -> int:
    """How many readers are open in this process."""
    with _batches_lock:
        return sum(1 for b in _batches.values() if b is not None)


def close_all() -> None:
    """End every reader's git process and forget the readers."""
    with _batches_lock:
        found = [b for b in _batches.values() if b is not None]
        _batches.clear()
    for batch in found:
        batch.close()


def _plain_repository(path: Path, config: dict[str, str | None]) -> bool:
    """Whether git reads the repository's objects as libgit2 does: SHA-1, ``files``
    refs, the caller's own, no grafts, not shallow, no promisor remote (git would
    fetch what is missing),
    no ``includeIf "hasconfig:..."`` (which libgit2 does not read)."""
    if path.stat().st_uid != os.geteuid():
        return False  # another user's: libgit2 checks ownership (safe.directory), git -C not
    if config.get("extensions.objectformat", "sha1") != "sha1" or \
            config.get("extensions.refstorage", "files") != "files" or \
            "extensions.partialclone" in config or \
            any(k.startswith("remote.") and k.endswith(".promisor") for k in config) or \
            any(k.startswith("includeif.hasconfig:") for k in config):
        return False
    return not any((path / name).exists() for name in ("shallow", "info/grafts"))


class Batch(RefFiles):
    """One repository read through ``git cat-file --batch`` and its files (see
    the module docstring). Threads may share it: one asks git at a time."""

    def __init__(self, path: Path, git: str) -> None:
        super().__init__(path)
        # the real path, as libgit2 opens it (includeIf "gitdir:" then matches alike)
        self._git_dir = os.path.realpath(path)
        self._git = git
        self._env = {k: v for k, v in os.environ.items() if k not in _ENV_DROPPED
                     and not k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))}
        self._env["GIT_NO_REPLACE_OBJECTS"] = "1"
        self._env["GIT_NO_LAZY_FETCH"] = "1"  # a read never fetches (git 2.44+)
        self._proc: subprocess.Popen[bytes] | None = None
        self._broken = False
        self._config: dict[str, str | None] | None = None
        self._parsed: OrderedDict[str, object] = OrderedDict()  # commits, tags, trees
        self._lock = threading.Lock()

    # -- settings --------------------------------------------------------------
    def config(self) -> dict[str, str | None] | None:
        """Every setting git sees for the repository, the last value of each
        (None: set without a value); None if git cannot read them."""
        if self._config is None:
            proc = subprocess.run([self._git, f"--git-dir={self._git_dir}", "config", "-z",
                                   "--list"], capture_output=True, env=self._env,
                                  stdin=subprocess.DEVNULL, check=False)
            if proc.returncode != 0:
                return None
            out: dict[str, str | None] = {}
            for item in proc.stdout.split(b"\0")[:-1]:
                key, nl, value = item.decode("utf-8", "surrogateescape").partition("\n")
                out[key] = value if nl else None
            self._config = out
        return self._config

    def forget_config(self) -> None:
        """Read the settings again at the next question (one was just set)."""
        self._config = None

    def config_get(self, key: str) -> str | None:
        """The value of ``key``; :class:`Declined` for a key set without a value."""
        parts = key.split(".")
        name = ".".join([parts[0].lower(), *parts[1:-1], parts[-1].lower()])
        config = self.config()
        if config is None or (name in config and config[name] is None):
            raise Declined(key)
        return config.get(name)

    # -- refs (RefFiles: head_ref, ref_target, refs) ---------------------------
    def held_ref(self, name: str) -> str | None:
        """:meth:`ref_target`, declined for a ref naming an object git lacks."""
        target = self.ref_target(name)
        if target is not None and not self.holds(target):
            raise Declined(name)
        return target

    def held_refs(self, prefix: str) -> dict[str, str]:
        """:meth:`refs`, declined if one names an object git lacks."""
        found = self.refs(prefix)
        if not all(map(self.holds, found.values())):
            raise Declined(prefix)
        return found

    # -- objects -----------------------------------------------------------------
    def read(self, name: str) -> tuple[str, str, bytes] | None:
        """The object ``name`` (an id, or a revision git resolves) as (id, kind,
        content), checked against its id; None when git has no such object."""
        if self._broken or not name or any(c.isspace() or not c.isprintable() for c in name):
            raise Declined(name)
        with self._lock:
            return self._read(name)

    def _read(self, name: str) -> tuple[str, str, bytes] | None:
        proc = self._process()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(name.encode("utf-8") + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline()
            parts = header.split()
            if len(parts) == 2 and parts[1] in (b"missing", b"ambiguous"):
                return None
            if len(parts) != 3 or parts[1].decode() not in KINDS:
                raise OSError(f"unexpected answer {header!r}")
            size = int(parts[2])
            data = _read_exactly(proc.stdout, size + 1)[:size]
        except (OSError, ValueError):
            self._broken = True
            self.close()
            raise Declined(name) from None
        except BaseException:  # interrupted mid-answer: the rest would answer the next
            self._broken = True
            self.close()
            raise
        oid, kind = parts[0].decode(), parts[1].decode()
        if _HEX.match(name) and oid != name:
            self._broken = True
            self.close()
            raise Declined(name)
        if hashlib.sha1(b"%s %d\0" % (parts[1], size) + data).hexdigest() != oid:
            raise IntegrityError(f"repository {self.path.name} is damaged: object {oid} "
                                 f"does not match its id; run `gitstore verify {self.path.name}`")
        return oid, kind, data

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            self._proc = subprocess.Popen(
                [self._git, f"--git-dir={self._git_dir}", "cat-file", "--batch"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=self._env)
        return self._proc

    def close(self) -> None:
        """End the git process (a later read starts another)."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):  # a git that died: nothing to flush
                        pipe.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _content(self, oid: str, kind: str) -> bytes:
        """The content of ``oid``, which must be a ``kind`` git holds."""
        found = self.read(oid)
        if found is None or found[1] != kind:
            raise Declined(oid)
        return found[2]

    def _kept_commit(self, oid: str, data: bytes) -> CommitInfo | None:
        """A commit's content parsed (None: leave it to libgit2) and kept."""
        info = rawobjects.parse_commit(oid, data)
        if info is not None:
            self._keep(oid, info)
        return info

    def commit(self, oid: str) -> CommitInfo:
        """The commit ``oid`` (an id), parsed as pygit2 would."""
        hit = self._parsed.get(oid)
        if isinstance(hit, CommitInfo):
            return hit
        if not _HEX.match(oid):
            raise Declined(oid)
        info = self._kept_commit(oid, self._content(oid, "commit"))
        if info is None:
            raise Declined(oid)
        return info

    def tag_object(self, oid: str) -> tuple[str, bytes] | None:
        """The tag object ``oid`` as (id, content); None if ``oid`` is no tag object.
        A tag object read is kept (its content), so listing and reading tags
        reads each once."""
        hit = self._parsed.get(oid)
        if isinstance(hit, bytes):
            return oid, hit
        found = self.read(oid)
        if found is None:
            raise Declined(oid)
        if found[1] != "tag":
            return None
        self._keep(oid, found[2])
        return oid, found[2]

    def tag(self, oid: str, name: str) -> TagInfo | None:
        """The tag object ``oid`` as ``name``, parsed as pygit2 would (None:
        ``oid`` is no tag object)."""
        found = self.tag_object(oid)
        if found is None:
            return None
        info = rawobjects.parse_tag(found[0], found[1], name)
        if info is None:
            raise Declined(oid)
        return info

    def tag_named(self, name: str) -> TagInfo | None:
        """The tag ``refs/tags/<name>`` (a lightweight one as pygit2's reader
        reports it), None if there is no such tag."""
        target = self.ref_target(f"refs/tags/{name}")
        if target is None:
            return None
        return self.tag(target, name) or TagInfo(name=name, id=target, target=target,
                                                 tagger=None, time=0, message="",
                                                 annotated=False)

    def tag_info(self, oid: str) -> TagInfo | None:
        """The tag object ``oid`` under its own name (None: no tag object)."""
        found = self.tag_object(oid)
        if found is None:
            return None
        name = rawobjects.tag_name(found[1])
        info = self.tag(oid, name) if name is not None else None
        if info is None:
            raise Declined(oid)
        return info

    def holds(self, oid: str) -> bool:
        """Whether git has the object ``oid`` (a commit or tag read is kept)."""
        if oid in self._parsed:
            return True
        found = self.read(oid)
        if found is not None and found[1] == "commit":
            self._kept_commit(oid, found[2])
        elif found is not None and found[1] == "tag":
            self._keep(oid, found[2])
        return found is not None

    def resolve(self, revision: str) -> str:
        """The commit ``revision`` names, in the part of the revision grammar
        libgit2 and git read alike: a full id, ``HEAD`` or a ref name (looked up
        as libgit2 does: ``refs/N``, ``refs/tags/N``, ``refs/heads/N``, ...), then
        any ``~n`` and ``^n``. Anything else (an abbreviated id, ``@{...}``,
        ``^{...}``) is declined: git's grammar is wider than libgit2's."""
        m = _REVISION.match(revision)
        if m is None:
            raise Declined(revision)
        steps = _STEPS.findall(m.group(2))
        if sum(int(c or 1) if op == "~" else 1 for op, c in steps) > WALK_BY_GIT:
            raise Declined(revision)  # a long way back: libgit2 is the cheaper reader
        try:
            oid = self._peeled(self._named(m.group(1)))
            for op, count in steps:
                if count.startswith("0") and count != "0":
                    raise Declined(revision)
                n = int(count) if count else 1
                for _ in range(n if op == "~" else min(n, 1)):
                    parents = self.commit(oid).parents
                    if len(parents) < (1 if op == "~" else n):
                        raise Declined(revision)
                    oid = parents[0] if op == "~" else parents[n - 1]
            return self.commit(oid).id  # read, as libgit2 reads every step
        except IntegrityError:  # libgit2 says "no such revision" for damage met here
            raise Declined(revision) from None

    def _named(self, name: str) -> str:
        """The object a full id, ``HEAD`` or a ref name names (unpeeled)."""
        if _HEX.match(name):
            return name
        if _ONE_LEVEL.match(name) and name != "HEAD":
            raise Declined(name)  # libgit2 looks for $GIT_DIR/NAME first (ORIG_HEAD, ...)
        if name == "HEAD":
            head = self.head_ref()
            target = self.ref_target(head) if head is not None else None
        else:
            if not _REF_WORD.match(name) or not plain_name(name):
                raise Declined(name)
            target = None
            for candidate in ([name] if name.startswith("refs/") else []) + \
                    [f.format(name) for f in _DWIM]:
                target = self.ref_target(candidate)
                if target is not None:
                    break
        if target is None:
            raise Declined(name)
        return target

    def _peeled(self, oid: str) -> str:
        """``oid``, a tag followed to the commit it tags (each object the type the
        tag says it is, as libgit2 requires)."""
        expected: str | None = None
        for _ in range(16):
            if expected in (None, "commit") and isinstance(self._parsed.get(oid), CommitInfo):
                return oid
            found = self.read(oid)
            if found is None or (expected is not None and found[1] != expected):
                raise Declined(oid)
            if found[1] == "commit":
                if self._kept_commit(oid, found[2]) is None:
                    raise Declined(oid)
                return oid
            tag = rawobjects.parse_tag(oid, found[2], "") if found[1] == "tag" else None
            if tag is None:
                raise Declined(oid)
            oid, expected = tag.target, rawobjects.tag_type(found[2])
        raise Declined(oid)

    def tree_entries(self, oid: str) -> list[Entry] | None:
        hit = self._parsed.get(oid)
        if isinstance(hit, list):
            return hit
        entries = rawobjects.parse_tree(self._content(oid, "tree"))
        if entries is not None:
            self._keep(oid, entries)
        return entries

    def read_blob(self, oid: object) -> tuple[int, bytes]:
        """``(type number, content)`` of an object, as libgit2's ``Odb.read``;
        declined when git lacks it (libgit2 says why: missing or damaged)."""
        found = self.read(str(oid))
        if found is None:
            raise Declined(str(oid))
        return KINDS[found[1]], found[2]

    def _keep(self, oid: str, value: object) -> None:
        with self._lock:
            self._parsed[oid] = value
            if len(self._parsed) > OBJECT_CACHE:
                self._parsed.popitem(last=False)


def linear(commit: Callable[[str], CommitInfo], start: str, first_parent: bool,
           damaged: Callable[[str], Exception],
           later: Callable[[str], CommitInfo] | None = None) -> Iterator[CommitInfo]:
    """A walk from ``start`` by ``commit`` (which reads one), and by ``later``
    past :data:`WALK_BY_GIT` commits (libgit2, for a long history): the
    first-parent chain, lazily; with all parents, only a history without merges
    (whose order is the chain's, as libgit2's topological walk gives it), else
    :class:`Declined` before anything is yielded."""
    def chain() -> Iterator[CommitInfo]:
        at: str | None = start
        walked = 0
        while at is not None:
            read = commit if later is None or walked < WALK_BY_GIT else later
            walked += 1
            try:
                info = read(at)
            except NotFoundError:
                raise damaged(f"commit {at} is missing") from None
            yield info
            at = info.parents[0] if info.parents else None
    if first_parent:
        return chain()
    found = list(chain())
    if any(len(i.parents) > 1 for i in found):
        raise Declined(start)
    return iter(found)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise OSError("git cat-file ended early")
    return data
