"""Packs: listing loose objects and packs, writing packs and git bundles.

Functions here take a pygit2 repository handle and its git directory; the
:class:`gitstore.git.repo.Repo` methods of the same names are the way in from
above the git layer. Invariants:

* a pack is written into a staging directory, then its ``.pack`` is renamed
  into ``objects/pack`` before its ``.idx``: a reader never sees an index
  without its pack, and the pack is complete on disk (fsynced when fsync is on)
  before :func:`write_pack` returns; nothing is ever removed here;
* everything reachable is gathered by the one walker of
  :mod:`gitstore.git.walk`; each commit goes to libgit2's pack builder with its
  tree (``add_recur``, which names the entries so deltas pair by file name);
* a bundle is git's format v2, readable by ``git bundle verify``, ``git clone``
  and ``git fetch``, and written without a git binary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gitstore.core import lazy
from gitstore.errors import NotFoundError, StorageError
from gitstore.git.walk import reachable

if TYPE_CHECKING:
    import shutil
    import tempfile

    import pygit2
else:  # pygit2 on first use; the others only to repack or bundle (gitstore.core.lazy)
    pygit2 = lazy.module("pygit2")
    shutil = lazy.module("shutil")
    tempfile = lazy.module("tempfile")


def pack_ids(idx: Path) -> set[str]:
    """The object ids listed in a pack index (version 2)."""
    data = idx.read_bytes()
    if data[:4] != b"\xfftOc":
        raise StorageError(f"{idx} is not a version 2 pack index")
    count = int.from_bytes(data[8 + 255 * 4:8 + 256 * 4], "big")
    table = data[8 + 256 * 4:8 + 256 * 4 + 20 * count]
    return {table[i:i + 20].hex() for i in range(0, 20 * count, 20)}


def pack_indexes(git_dir: Path) -> list[Path]:
    """The pack index files (``objects/pack/pack-*.idx``), sorted."""
    return sorted((git_dir / "objects" / "pack").glob("pack-*.idx"))


def loose_objects(git_dir: Path) -> dict[str, Path]:
    """Every loose object file, by object id."""
    out: dict[str, Path] = {}
    objects = git_dir / "objects"
    for entry in os.scandir(objects):
        if len(entry.name) != 2 or not entry.is_dir():
            continue
        for obj in os.scandir(entry.path):
            if len(obj.name) == 38 and not obj.name.startswith("tmp"):
                out[entry.name + obj.name] = Path(obj.path)
    return out


def add_reachable(repo: pygit2.Repository, builder: pygit2.PackBuilder,
                  starts: Iterable[pygit2.Oid]) -> None:
    """Add to ``builder`` everything reachable from ``starts``: tag objects as
    they are, every commit with its tree, any other object with its content."""
    for obj in reachable(repo, starts, trees=False):
        if isinstance(obj, pygit2.Tag):
            builder.add(obj.id)
        else:
            builder.add_recur(obj.id)


def write_pack(repo: pygit2.Repository, git_dir: Path,
               oids: list[str] | None) -> tuple[Path | None, int]:
    """Write one pack (with deltas) of ``oids``, or of everything reachable
    from any ref when None; returns its index path and object count."""
    builder = pygit2.PackBuilder(repo)
    if oids is None:
        add_reachable(repo, builder, [pygit2.Oid(hex=str(repo.references[name].resolve().target))
                                      for name in list(repo.references)])
    else:
        for oid in oids:
            builder.add(pygit2.Oid(hex=oid))
    pack_dir = git_dir / "objects" / "pack"
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


def write_bundle(repo: pygit2.Repository, git_dir: Path, head: str | None,
                 out: IO[bytes]) -> dict[str, str]:
    """Write a git bundle (format v2) of every ref under ``refs/`` with its
    whole history to ``out``: the header (``# v2 git bundle``, one ``<id>
    <ref>`` line per ref, and ``HEAD`` first when ``head`` names one of them, a
    blank line) and one pack made by libgit2's pack builder. Returns the refs."""
    refs = {name: str(repo.references[name].resolve().target)
            for name in sorted(repo.references) if name.startswith("refs/")}
    if not refs:
        raise NotFoundError(f"{git_dir.name} has no refs: nothing to bundle")
    builder = pygit2.PackBuilder(repo)
    add_reachable(repo, builder, [pygit2.Oid(hex=t) for t in refs.values()])
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
