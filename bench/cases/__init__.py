"""The benchmark cases, in the order ``bench/run.py`` runs them.

Each module has ``NAME``, a one-line ``TITLE`` and ``run(ctx) -> CaseResult``.
"""

from . import (
    append,
    cli,
    diff,
    encryption,
    list_stats,
    log,
    memory,
    peers,
    read,
    signing,
    sync,
    writers,
)

CASES = {m.NAME: m for m in (append, writers, read, log, diff, list_stats, memory, cli,
                             peers, sync, signing, encryption)}

__all__ = ["CASES"]
