"""``python -m gitstore.core.schemagen --write|--check``: regenerate or check ``schemas/``.

A module of its own so that running it does not re-import :mod:`gitstore.core.schema`,
which the package itself imports.
"""

from __future__ import annotations

from gitstore.core.schema import main

if __name__ == "__main__":
    raise SystemExit(main())
