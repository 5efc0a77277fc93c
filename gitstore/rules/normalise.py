"""Text as the secrets scanner also reads it: one normal form for look-alike text (pure).

:func:`normalise` maps each character on its own, so every character of the result
knows the span of the input it came from (a hit found in the normal form is
redacted in the text as written):

* ``%XX`` escapes of ASCII characters are decoded (``aws_secret_access_key%3D...``);
* every other non-ASCII character is replaced by its NFKC form (full-width letters
  and digits, no-break, thin and other compatibility spaces, ligatures become
  ASCII where Unicode says they are the same), and every Unicode decimal digit by
  its ASCII digit (``٤١١١`` is ``4111``);
* ASCII is kept as it is.

Invariant: ``normalise(t)`` has the same length as its two maps, each map is
non-decreasing, and ``normalise(t)[0] == t`` for ASCII ``t`` without ``%``
(:func:`needs_normalising` is false exactly when nothing could change).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["needs_normalising", "normalise"]

_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")


def needs_normalising(text: str) -> bool:
    """Whether :func:`normalise` could change ``text`` (cheap: no copy for plain text)."""
    return "%" in text or not (text.isascii() or (unicodedata.is_normalized("NFKC", text)
                                                  and not _OTHER_DIGIT.search(text)))


def normalise(text: str) -> tuple[str, list[int], list[int]]:
    """``text`` in its normal form (see the module docstring), with, for each
    character of the result, the start and end of the characters of ``text`` it
    came from."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i = 0
    while i < len(text):
        ch, step = text[i], 1
        if ch == "%" and _HEX2.match(text, i + 1) and int(text[i + 1:i + 3], 16) < 0x80:
            piece, step = chr(int(text[i + 1:i + 3], 16)), 3
        elif ch.isascii():
            piece = ch
        else:
            piece = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c
                            for c in unicodedata.normalize("NFKC", ch))
        for c in piece:
            out.append(c)
            starts.append(i)
            ends.append(i + step)
        i += step
    return "".join(out), starts, ends
