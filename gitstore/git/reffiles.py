"""The ref files of a repository read in Python, as git and libgit2 read them.

Part of the second reader (:mod:`gitstore.git.catfile`). Invariants:

* a ref is read loose first, then from ``packed-refs``, so a ``pack-refs``
  running at the same time never hides one; refs are listed in libgit2's order
  (loose refs sorted, then the packed ones, sorted);
* anything that is not plain is :class:`Declined` (the caller asks libgit2,
  which answers or reports damage): a symbolic ref or a link, a name git would
  refuse, a file that is not one id and a newline, a ``packed-refs`` line out
  of its format, a directory of refs that is a link (libgit2 lists below it);
* ``packed-refs`` is parsed again only when the file changed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["Declined", "RefFiles", "plain_name"]

_HEX = re.compile(r"[0-9a-f]{40}\Z")
_LOOSE = re.compile(rb"([0-9a-f]{40})\n?\Z")
_SYMBOLIC = re.compile(rb"ref: (refs/[^\s]+)\n?\Z")
_BAD_NAME = re.compile(r"\.\.|@\{|[\x00-\x20\x7f~^:?*\[\\]|/\.|\.lock(/|\Z)|[./]\Z|//")


class Declined(Exception):
    """The second reader cannot answer (the caller asks libgit2)."""


def plain_name(name: str) -> bool:
    """Whether ``name`` is a ref name git would write (no ``..``, ``@{``, control
    characters, ``~^:?*[\\``, no component starting with a dot, ...)."""
    return not _BAD_NAME.search(name)


class RefFiles:
    """The refs of the repository at ``path``, read from its files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._packed_refs: tuple[tuple[int, int, int], dict[str, str]] | None = None

    def head_ref(self) -> str | None:
        """The ref ``HEAD`` names, None when detached or absent."""
        if (self.path / "HEAD").is_symlink():
            raise Declined("HEAD")
        try:
            data = (self.path / "HEAD").read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            raise Declined("HEAD") from None
        m = _SYMBOLIC.match(data)
        name = m.group(1).decode("utf-8", "replace") if m is not None else ""
        if m is not None and name.isascii() and not _BAD_NAME.search(name):
            return name
        if _LOOSE.match(data):
            return None
        raise Declined("HEAD")

    def ref_target(self, name: str) -> str | None:
        """What ``name`` points at (not peeled), None if there is no such ref."""
        if not name.startswith("refs/") or _BAD_NAME.search(name):
            raise Declined(name)
        loose = self._loose(name)
        return loose if loose is not None else self._packed().get(name)

    def refs(self, prefix: str) -> dict[str, str]:
        """Every ref under ``prefix`` with what it points at."""
        top = prefix if prefix.endswith("/") else prefix.rsplit("/", 1)[0] + "/"
        names = []
        for dirpath, dirs, files in os.walk(self.path / top):
            if any(os.path.islink(os.path.join(dirpath, d)) for d in dirs):
                raise Declined(prefix)  # libgit2 lists the refs below a linked directory
            for n in files:
                rel = os.path.relpath(os.path.join(dirpath, n), self.path).replace(os.sep, "/")
                if not n.endswith(".lock") and rel.startswith(prefix):
                    names.append(rel)
        out: dict[str, str] = {}
        for name in names:
            if _BAD_NAME.search(name):
                raise Declined(name)
            target = self._loose(name)
            if target is not None:
                out[name] = target
        out = dict(sorted(out.items()))  # libgit2's order: loose refs, then packed ones
        for name, target in sorted(self._packed().items()):
            if name.startswith(prefix) and name not in out:
                out[name] = target
        return out

    def _loose(self, name: str) -> str | None:
        path = self.path / name
        try:
            if path.is_symlink():
                raise Declined(name)
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError:
            raise Declined(name) from None
        m = _LOOSE.match(data)
        if m is None:
            raise Declined(name)
        return m.group(1).decode()

    def _packed(self) -> dict[str, str]:
        """The refs ``packed-refs`` holds, parsed again only when the file changed
        (its inode, size and change time: a ``pack-refs`` renames a new one in)."""
        try:
            with open(self.path / "packed-refs", "rb") as f:
                st = os.fstat(f.fileno())
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._packed_refs is not None and self._packed_refs[0] == stamp:
                    return self._packed_refs[1]
                data = f.read()
        except FileNotFoundError:
            return {}
        except OSError:
            raise Declined("packed-refs") from None
        out = self._parse_packed(data)
        self._packed_refs = (stamp, out)
        return out

    @staticmethod
    def _parse_packed(data: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        lines = data.split(b"\n")
        if lines.pop() != b"":  # the last line ends with a newline
            raise Declined("packed-refs")
        if lines and lines[0].startswith(b"# pack-refs with:"):
            del lines[0]
        peelable = False
        for line in lines:
            if line.startswith(b"^"):
                if not peelable or not _HEX.match(line[1:].decode("ascii", "replace")):
                    raise Declined("packed-refs")
                peelable = False
                continue
            try:
                oid, space, name = line.decode("utf-8").partition(" ")
            except UnicodeDecodeError:
                raise Declined("packed-refs") from None
            if not space or not _HEX.match(oid) or not name.startswith("refs/") or \
                    _BAD_NAME.search(name) or name in out:
                raise Declined("packed-refs")
            out[name] = oid
            peelable = True
        return out
