"""Git's object formats read in Python, exactly as libgit2 and pygit2 read them.

The second reader (:mod:`gitstore.git.catfile`) gets raw objects from ``git
cat-file`` instead of libgit2; this module turns them into the same
:class:`~gitstore.core.commits.CommitInfo` and :class:`~gitstore.core.commits.TagInfo`
that :mod:`gitstore.git.objects` builds from pygit2. Invariants:

* a parse is either exactly what pygit2 reports or None: anything unusual (an
  ``encoding`` header, bytes that are not UTF-8, a NUL, an ident line git would
  not write, a header out of git's order) returns None, and the caller asks
  libgit2 instead, so the two readers never disagree (``tests/test_catfile.py``
  checks that with hypothesis against pygit2);
* :func:`message_trailers` is libgit2's ``git_message_trailers`` (libgit2's
  ``trailer.c``): the same trailer block, the same keys and values, the same
  dict (a repeated key keeps its first place and its last value), as pygit2's
  ``Commit.message_trailers`` hands it out.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from gitstore.core.commits import CommitInfo, Identity, TagInfo, read_trailers

__all__ = ["Entry", "message_trailers", "parse_commit", "parse_tag", "parse_tree"]

_IDENT = re.compile(rb"([^<>\n]*) <([^<>\n]*)> ([0-9]{1,15}) ([+-])([0-9]{2})([0-9]{2})\Z")
_HEX = re.compile(rb"[0-9a-f]{40}\Z")
_GIT_GENERATED = ("Signed-off-by: ", "(cherry picked from commit ")
_MODES = {b"100644": "blob", b"100755": "blob", b"120000": "blob", b"40000": "tree",
          b"160000": "commit"}
"""The tree entry modes git writes (libgit2 reads others as one of these)."""
_SPACE = " \t\n\v\f\r"


class Entry(NamedTuple):
    """One entry of a tree: its name, object id, kind (``blob``, ``tree`` or
    ``commit``, as pygit2's ``type_str``) and git file mode."""

    name: str
    id: str
    type_str: str
    filemode: int


def _ident(line: bytes) -> tuple[Identity, int, int] | None:
    """``name <email> time ±hhmm`` as git writes it: identity, time, offset in
    minutes; None for anything libgit2 might read otherwise."""
    m = _IDENT.match(line)
    if m is None:
        return None
    name, email, when, sign, hh, mm = m.groups()
    if name != name.strip() or email != email.strip() or int(hh) > 14 or int(mm) > 59:
        return None
    offset = int(hh) * 60 + int(mm)
    try:
        who = Identity(name.decode("utf-8"), email.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    return who, int(when), -offset if sign == b"-" else offset


def _headers(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """The header lines (continuations folded in) and the raw message."""
    if b"\0" in data:
        return None
    head, sep, message = data.partition(b"\n\n")
    if not sep:
        return None
    out: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n"):
        if line.startswith(b" ") and out:
            out[-1] = (out[-1][0], out[-1][1] + b"\n" + line[1:])
            continue
        key, space, value = line.partition(b" ")
        if not space:
            return None
        out.append((key, value))
    return out, message


def parse_commit(oid: str, data: bytes) -> CommitInfo | None:
    """A commit object's :class:`CommitInfo` (None: leave it to libgit2)."""
    split = _headers(data)
    if split is None:
        return None
    headers, raw = split
    keys = [k for k, _ in headers]
    n = keys.count(b"parent")
    if keys[:n + 3] != [b"tree", *[b"parent"] * n, b"author", b"committer"] or \
            b"encoding" in keys[n + 3:] or keys.count(b"tree") != 1:
        return None
    values = [v for _, v in headers]
    if not all(_HEX.match(v) for v in values[:n + 1]):
        return None
    author, committer = _ident(values[n + 1]), _ident(values[n + 2])
    try:
        message = raw.lstrip(b"\n").decode("utf-8")
    except UnicodeDecodeError:
        return None
    if author is None or committer is None:
        return None
    return CommitInfo(
        id=oid, tree_id=values[0].decode(), parents=tuple(v.decode() for v in values[1:n + 1]),
        author=author[0], committer=committer[0], time=committer[1], offset=committer[2],
        message=message, trailers=read_trailers(message_trailers(message)),
        author_time=author[1], author_offset=author[2])


def parse_tag(oid: str, data: bytes, name: str) -> TagInfo | None:
    """An annotated tag object's :class:`TagInfo` under ``name`` (None: leave it
    to libgit2)."""
    split = _headers(data)
    if split is None:
        return None
    headers, raw = split
    keys = [k for k, _ in headers]
    if keys != [b"object", b"type", b"tag", b"tagger"] or not _HEX.match(headers[0][1]) or \
            headers[1][1] not in (b"commit", b"tree", b"blob", b"tag") or not headers[2][1]:
        return None
    tagger = _ident(headers[3][1])
    try:
        message = raw.decode("utf-8")
        headers[2][1].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if tagger is None:
        return None
    return TagInfo(name=name, id=oid, target=headers[0][1].decode(), tagger=tagger[0],
                   time=tagger[1], message=message)


def tag_type(data: bytes) -> str | None:
    """The type a tag object says its target is (its ``type`` header)."""
    split = _headers(data)
    if split is None or len(split[0]) < 2 or split[0][1][0] != b"type":
        return None
    return split[0][1][1].decode("ascii", "replace")


def tag_name(data: bytes) -> str | None:
    """The name a tag object gives itself (its ``tag`` header)."""
    split = _headers(data)
    if split is None or len(split[0]) < 3 or split[0][2][0] != b"tag":
        return None
    try:
        return split[0][2][1].decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_tree(data: bytes) -> list[Entry] | None:
    """A tree object's entries in stored order (None: leave it to libgit2)."""
    out: list[Entry] = []
    at, end = 0, len(data)
    while at < end:
        space = data.find(b" ", at)
        nul = data.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 21 > end:
            return None
        kind = _MODES.get(data[at:space])
        try:
            name = data[space + 1:nul].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if kind is None or not name or "/" in name or name in (".", ".."):
            return None  # a mode git would not write, or a name libgit2 refuses
        filemode = int(data[at:space], 8)
        out.append(Entry(name, data[nul + 1:nul + 21].hex(), kind, filemode))
        at = nul + 21
    return out


# -- libgit2's trailer parser (trailer.c), step for step --------------------------
def _isspace(c: str) -> bool:
    return c in _SPACE


def _token_char(c: str) -> bool:
    return c == "-" or (c.isascii() and c.isalnum())


def _next_line(text: str, at: int) -> int:
    nl = text.find("\n", at)
    return len(text) if nl < 0 else nl + 1


def _is_blank(text: str, at: int) -> bool:
    while at < len(text) and text[at] != "\n" and _isspace(text[at]):
        at += 1
    return at == len(text) or text[at] == "\n"


def _last_line(text: str, length: int) -> int | None:
    """Where the last line of ``text[:length]`` starts (None when it is empty)."""
    if length == 0:
        return None
    for i in range(length - 2, 0, -1):
        if text[i] == "\n":
            return i + 1
    return 0


def _has_separator(text: str, at: int) -> bool:
    """Whether the line at ``at`` reads ``Token<optional blanks>:`` (a colon
    after at least one character)."""
    blank = False
    i = at
    while i < len(text):
        c = text[i]
        if c == ":":
            return i > at
        if not blank and _token_char(c):
            i += 1
            continue
        if i != at and c in " \t":
            blank = True
            i += 1
            continue
        break
    return False


def _patch_start(text: str) -> int:
    at = 0
    while at < len(text):
        if text.startswith("---", at) and at + 3 < len(text) and _isspace(text[at + 3]):
            return at
        at = _next_line(text, at)
    return len(text)


def _trailer_end(text: str, length: int) -> int:
    """``length`` less a run of comment and blank lines at the end (and git's
    old ``Conflicts:`` block)."""
    boc, bol, conflicts = 0, 0, False
    while bol < length:
        nl = text.find("\n", bol, length)
        nxt = length if nl < 0 else nl + 1
        if text[bol] in "#\n":
            boc = boc or bol
        elif text.startswith("Conflicts:\n", bol):
            conflicts = True
            boc = boc or bol
        elif boc and not (conflicts and text[bol] == "\t"):  # a path of the block keeps it
            boc, conflicts = 0, False
        bol = nxt
    return boc if boc else length


def _trailer_start(text: str, length: int) -> int:
    at = 0
    while at < length:
        if text[at] != "#" and _is_blank(text, at):
            break
        at = _next_line(text, at)
    end_of_title = at
    only_spaces, recognised = True, False
    trailers = non_trailers = possible = 0
    line = _last_line(text, length)
    while line is not None and line >= end_of_title:
        bol = line
        line = _last_line(text, bol)
        if text[bol] == "#":
            non_trailers += possible
            possible = 0
            continue
        if _is_blank(text, bol):
            if only_spaces:
                continue
            non_trailers += possible
            if (recognised and trailers * 3 >= non_trailers) or (trailers and not non_trailers):
                return _next_line(text, bol)
            return length
        only_spaces = False
        if text.startswith(_GIT_GENERATED, bol):
            trailers += 1
            possible = 0
            recognised = True
            continue
        if _has_separator(text, bol) and not _isspace(text[bol]):
            trailers += 1
            possible = 0
        elif _isspace(text[bol]):
            possible += 1
        else:
            non_trailers += 1 + possible
            possible = 0
    return length


def message_trailers(message: str) -> dict[str, str]:
    """The trailers of a commit message, as pygit2's ``Commit.message_trailers``
    (libgit2's state machine over the trailer block)."""
    end = _trailer_end(message, _patch_start(message))
    block = message[_trailer_start(message, end):end]
    out: dict[str, str] = {}
    i, n = 0, len(block)
    while i < n:  # at the start of a line
        key_start = i
        while i < n and _token_char(block[i]):
            i += 1
        key_end = i
        while i < n and block[i] in " \t":
            i += 1
        if i < n and block[i] == ":":
            i += 1
            while i < n and block[i] in " \t":
                i += 1
            if i >= n:
                break
            value_start = i
            i += 1  # the value's first character is taken as it is
            while True:
                nl = block.find("\n", i)
                if nl < 0:
                    out[block[key_start:key_end]] = block[value_start:]
                    return out
                if nl + 1 < n and block[nl + 1] == " ":
                    i = nl + 2
                    continue
                out[block[key_start:key_end]] = block[value_start:nl]
                i = nl + 1
                break
            continue
        if i >= n:
            break
        nl = block.find("\n", i)
        if nl < 0:
            break
        i = nl + 1
    return out
