"""Session files by name, where the conversation may still be in parts.

A commit's *logical* files (the five documents and ``SHA256SUMS``) are what the
checks, the reads and the index see. An append to a long conversation produces
its new ``conversation.json`` as a :class:`~gitstore.core.layout.Joined` (the
parts, not yet assembled), and :class:`Files` carries it like any other file:

* reading a file (``files[name]``, ``get``, ``items``, ``dict(files)``) always
  gives ``bytes``; a joined conversation is assembled then, once;
* the write path asks through the functions below (:func:`raw`, :func:`size`,
  :func:`updated`, :func:`same`), which never assemble, so an append costs what
  it changed whatever the session's length;
* a :class:`Files` is never changed after it is made (:func:`updated` makes a
  new one, sharing the values), so it can be cached and handed out.

Plain ``dict[str, bytes]`` mappings work everywhere a :class:`Files` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gitstore.core.layout import Joined

__all__ = ["Files", "raw", "same", "size", "updated"]

Value = bytes | Joined


class Files(Mapping[str, bytes]):
    """An immutable mapping of file names to bytes, a value possibly :class:`Joined`."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Value]) -> None:
        self._values: dict[str, Value] = dict(values)

    def __getitem__(self, name: str) -> bytes:
        value = self._values[name]
        return value.data() if isinstance(value, Joined) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def copy(self) -> dict[str, bytes]:
        """A plain dict of the files (assembling what is held in parts), as
        ``dict.copy`` gives: a hook written for a dict keeps working."""
        return dict(self)

    def __or__(self, other: Mapping[str, bytes]) -> dict[str, bytes]:
        return {**self, **other}

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}: {size(self, n)} bytes" for n in self._values)
        return f"Files({{{shown}}})"


def raw(files: Mapping[str, bytes], name: str) -> Value | None:
    """The file ``name`` as held: ``bytes``, or a :class:`Joined` not assembled."""
    if isinstance(files, Files):
        return files._values.get(name)
    return files.get(name)


def size(files: Mapping[str, bytes], name: str) -> int:
    """The length of file ``name`` (which must exist), without assembling it."""
    value = raw(files, name)
    if value is None:
        raise KeyError(name)
    return value.size if isinstance(value, Joined) else len(value)


def updated(files: Mapping[str, bytes], changes: Mapping[str, Value]) -> Mapping[str, bytes]:
    """``{**files, **changes}`` without assembling anything: a plain dict when
    every value is bytes, else a :class:`Files`."""
    values: dict[str, Value] = dict(files._values) if isinstance(files, Files) else dict(files)
    values.update(changes)
    if any(isinstance(v, Joined) for v in values.values()):
        return Files(values)
    return values  # type: ignore[return-value]  # every value is bytes here


def same(a: Mapping[str, bytes], b: Mapping[str, bytes], skip: str) -> bool:
    """The same names and equal contents, ``skip`` aside; a joined conversation is
    compared by its parts (equal parts join to equal bytes), so nothing is
    assembled when the sizes already differ or both are joined."""
    if a.keys() != b.keys():
        return False
    for name in a:
        if name == skip:
            continue
        x, y = raw(a, name), raw(b, name)
        if x is y:
            continue
        if x is None or y is None or size(a, name) != size(b, name):
            return False
        if isinstance(x, Joined) and isinstance(y, Joined):
            if (x.split.head, x.split.chunks) != (y.split.head, y.split.chunks):
                return False
        elif a[name] != b[name]:
            return False
    return True
