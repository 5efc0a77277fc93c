"""Where the packaged data lives: the JSON Schemas and the Jinja2 templates.

In a source checkout (or an editable install) they are the top-level
``schemas/`` and ``templates/`` directories; an installed wheel carries copies
at ``gitstore/_data/schemas`` and ``gitstore/_data/templates``. Both layouts
are found without configuration; the wheel copy wins when both exist.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from gitstore.errors import StorageError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # gitstore/


@cache
def data_dir(kind: str) -> Path:
    """Return the directory holding ``kind`` (``schemas`` or ``templates``)."""
    for candidate in (_PACKAGE_DIR / "_data" / kind, _PACKAGE_DIR.parent / kind):
        if candidate.is_dir():
            return candidate
    raise StorageError(f"gitstore installation is incomplete: no {kind} directory found")


def schemas_dir() -> Path:
    return data_dir("schemas")


def templates_dir() -> Path:
    return data_dir("templates")
