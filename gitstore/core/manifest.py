"""The ``SHA256SUMS`` manifest: checksums of every session file in a commit.

The format is exactly what ``sha256sum`` writes and ``sha256sum -c`` reads:
one ``<64 hex digits><two spaces><file name>`` line per file, sorted by name,
LF line endings, the manifest itself not listed. So an auditor can verify any
version with ``git archive vX.Y.Z | tar -x && sha256sum -c SHA256SUMS``.

A conversation stored in parts (layout 2, :mod:`gitstore.core.layout`) is listed
part by part (``conversation/...``). Reading assembles it and checks the parts:
sound parts are left out of the files handed on, damaged ones are kept, so
:func:`verify` checks the lines of the parts it is given, and accepts an
assembled ``conversation.json`` that the manifest lists only by its parts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from gitstore.core.names import CONV, CONV_PARTS, MANIFEST
from gitstore.errors import Violation

_LINE_RE = re.compile(r"([0-9a-f]{64})  ([^\n]+)")


def build(files: Mapping[str, bytes]) -> bytes:
    """The manifest for ``files`` (any entry named SHA256SUMS is ignored)."""
    lines = [f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n"
             for name in sorted(files) if name != MANIFEST]
    return "".join(lines).encode("ascii")


def digest(manifest: bytes) -> str:
    """``sha256:<hex>`` of the manifest bytes: one value that pins a whole version."""
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def parse(manifest: bytes) -> tuple[dict[str, str], list[Violation]]:
    sums: dict[str, str] = {}
    problems: list[Violation] = []
    try:
        text = manifest.decode("ascii")
    except UnicodeDecodeError:
        return {}, [Violation(MANIFEST, "", "is not ASCII text", "manifest")]
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE_RE.fullmatch(line)
        if not m:
            problems.append(Violation(MANIFEST, "", f"line {n} is malformed", "manifest"))
            continue
        if m[2] in sums:
            problems.append(Violation(MANIFEST, "", f"lists {m[2]} twice", "manifest"))
        sums[m[2]] = m[1]
    return sums, problems


def verify(files: Mapping[str, bytes]) -> list[Violation]:
    """Check ``files[SHA256SUMS]`` against the other files; one violation per problem."""
    if MANIFEST not in files:
        return [Violation(MANIFEST, "", "missing", "manifest")]
    sums, problems = parse(files[MANIFEST])
    parted = f"{CONV_PARTS}head.json" in sums
    if parted and not any(n.startswith(CONV_PARTS) for n in files):  # checked when read
        sums = {n: h for n, h in sums.items() if not n.startswith(CONV_PARTS)}
    for name in sorted(files):
        if name == MANIFEST:
            continue
        if name == CONV and parted and name not in sums:
            continue  # assembled from its parts
        if name not in sums:
            problems.append(Violation(name, "", "not listed in SHA256SUMS", "manifest"))
        elif hashlib.sha256(files[name]).hexdigest() != sums[name]:
            problems.append(Violation(name, "", "checksum does not match SHA256SUMS", "manifest"))
    for name in sorted(set(sums) - set(files)):
        problems.append(Violation(name, "", "listed in SHA256SUMS but missing", "manifest"))
    return problems
