"""Query commands over the derived index: list, stats, search, similar, active,
resume, reindex.

Plain click commands, attached to the ``gitstore`` group by the registry in
:mod:`gitstore.cli.app`; errors propagate to :func:`gitstore.cli.app.main`, the one
place that maps them to exit codes. Every query refreshes the index from git first
(see :mod:`gitstore.catalog.index`); the index is derived data, never the truth.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from gitstore.catalog.index import SORT_FIELDS, Index, Progress
from gitstore.cli.app import Ctx, emit_json, note, output_option, parse_when
from gitstore.core import canonical
from gitstore.core.names import CONV, JSON_DOCUMENTS
from gitstore.store.facade import Store


@contextmanager
def _index(store: Store, label: str = "indexing") -> Iterator[tuple[Index, Progress | None]]:
    """The store's index and a progress callback (a bar on a terminal, else None).
    Problems the index met are reported on stderr afterwards."""
    index = store.catalog  # the one the store's own queries use (closed after)
    bars: list[Any] = []

    def progress(done: int, total: int, name: str) -> None:
        if not bars:
            bars.append(click.progressbar(length=total, label=label, file=sys.stderr,
                                          item_show_func=lambda n: n))
            bars[0].__enter__()
        bars[0].update(1, name)

    try:
        yield index, (progress if sys.stderr.isatty() else None)
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
        index.close()
        for problem in index.problems:
            note(f"gitstore: warning: {problem}")


def _cell(value: Any, fmt: str = "{}") -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return fmt.format(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           right: frozenset[int] = frozenset()) -> None:
    """Print aligned columns (numbers right-aligned), one header line."""
    _columns(headers, [list(col) for col in zip(*rows, strict=True)] if rows else
             [[] for _ in headers], right)


def _columns(headers: Sequence[str], columns: Sequence[Sequence[str]],
             right: frozenset[int] = frozenset()) -> None:
    """:func:`_table` of the table given column by column: the widths are taken
    once per column and each line is one ``%`` formatting (10,000 sessions print
    at once); trailing blanks are cut from every line."""
    widths = [max(len(head), max(map(len, col), default=0))
              for head, col in zip(headers, columns, strict=True)]
    fmt = "  ".join(f"%{w}s" if i in right else f"%-{w}s" for i, w in enumerate(widths))
    lines = [fmt % tuple(headers), *map(fmt.__mod__, zip(*columns, strict=True))]
    click.echo("\n".join(map(str.rstrip, lines)))


#: The fields of a session the table of ``list`` shows (the index reads only these).
TABLE_FIELDS = ("version", "status", "completion_status", "provider", "updated", "turns",
                "completeness", "satisfaction", "success")


def _sessions_table(cols: dict[str, tuple[Any, ...]]) -> None:
    """The table of ``list``, from the index's columns (``Index.list_columns``)."""
    def cells(key: str, fmt: str = "%s") -> list[str]:
        col = cols[key]
        if None not in col:  # the common case, formatted without a Python-level loop
            return list(map(fmt.__mod__, col))
        return ["-" if v is None else fmt % v for v in col]

    status = [s if not extra or extra == s else f"{s} ({extra})"
              for s, extra in zip(cols["status"], cols["completion_status"], strict=True)]
    _columns(["CUSTOMER", "VERSION", "STATUS", "PROVIDER", "UPDATED", "TURNS", "COMPLETE",
              "SATISFACTION", "SUCCESS"],
             [cols["customer"], cols["version"], status, cells("provider"), cols["updated"],
              cells("turns"), cells("completeness", "%s%%"), cells("satisfaction", "%.2f"),
              cells("success", "%g")],
             right=frozenset({5, 6, 7, 8}))


@click.command("list")
@click.option("--customer", help="Only this customer.")
@click.option("--status", help="open, finalized, retained (purged; analytics summary kept), "
                               "or a completion_status (completed, ...).")
@click.option("--provider", help="Only this primary cloud provider (aws, azure, gcp, ...).")
@click.option("--service", help="Only sessions that discussed this service.")
@click.option("--since", metavar="TIME", help="Only sessions active at or after TIME.")
@click.option("--until", metavar="TIME", help="Only sessions last active at or before TIME.")
@click.option("--sort", type=click.Choice(sorted(SORT_FIELDS)), default="updated",
              show_default=True, help="Sort field.")
@click.option("--desc/--asc", "descending", default=True, show_default=True,
              help="Sort direction.")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Show at most N sessions.")
@click.option("--all-versions", is_flag=True,
              help="Every version, not just each session's newest.")
@output_option
@click.pass_obj
def list_sessions(obj: Ctx, customer: str | None, status: str | None, provider: str | None,
                  service: str | None, since: str | None, until: str | None, sort: str,
                  descending: bool, limit: int | None, all_versions: bool,
                  output: str) -> None:
    """List sessions (each scenario's newest version) across customers.

    Filters combine; --since/--until apply to the last activity (the newest
    commit's time)."""
    store = obj.store()
    now = store.now()
    asked: dict[str, Any] = {
        "customer": customer, "status": status, "provider": provider,
        "since": parse_when(since, what="--since", now=now),
        "until": parse_when(until, what="--until", end=True, now=now), "sort": sort,
        "descending": descending, "limit": limit, "service": service,
        "all_versions": all_versions}
    with _index(store) as (index, _):
        if output == "json":
            emit_json(index.list_sessions(**asked))
            return
        cols = index.list_columns(**asked, fields=TABLE_FIELDS)
    if cols["customer"]:
        _sessions_table(cols)
    else:
        note("no sessions match")


@click.command()
@output_option
@click.pass_obj
def stats(obj: Ctx, output: str) -> None:
    """Totals and averages over every session, by status and by provider."""
    with _index(obj.store()) as (index, progress):
        index.refresh(progress=progress)
        data = index.stats()
    if output == "json":
        emit_json(data)
        return
    pairs = [("customers", data["customers"]), ("sessions", data["sessions"]),
             ("versions", data["versions"]), ("finalized versions", data["finalized_versions"]),
             ("turns", data["turns"]),
             ("average completeness", _cell(data["average_completeness"], "{:.1f}%")),
             ("average satisfaction", _cell(data["average_satisfaction"], "{:.2f}")),
             ("average success score", _cell(data["average_success_score"], "{:.2f}")),
             ("average confidence", _cell(data["average_confidence"], "{:.2f}"))]
    _table(["TOTAL", "VALUE"], [[k, str(v)] for k, v in pairs], right=frozenset({1}))
    for title, key in (("STATUS", "by_status"), ("COMPLETION", "by_completion_status"),
                       ("PROVIDER", "by_provider")):
        click.echo()
        _table([title, "SESSIONS"], [[k, str(n)] for k, n in data[key].items()],
               right=frozenset({1}))


@click.command()
@click.argument("text")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show at most N turns.")
@output_option
@click.pass_obj
def search(obj: Ctx, text: str, limit: int, output: str) -> None:
    """Full-text search of the conversation turns (every word must match; word*
    matches a prefix). Best matches first. Encrypted sessions, which the index does
    not hold, are searched in memory when their keys are at hand."""
    store = obj.store()
    with _index(store) as (index, progress):
        index.refresh(progress=progress)
        rows = store.search(text, limit=limit)  # the index, then encrypted sessions
    if output == "json":
        emit_json(rows)
    elif rows:
        _table(["CUSTOMER", "VERSION", "TURN", "SNIPPET"],
               [[r["customer"], _cell(r["version"]), str(r["turn_id"]),
                 " ".join(r["snippet"].split()) if r["snippet"] is not None
                 else "(encrypted: no snippet)"] for r in rows], right=frozenset({2}))
    else:
        note("no turns match")


@click.command()
@click.argument("customer")
@click.argument("version", metavar="VERSION|vN")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=10, show_default=True)
@output_option
@click.pass_obj
def similar(obj: Ctx, customer: str, version: str, limit: int, output: str) -> None:
    """Sessions like CUSTOMER's VERSION: same architecture pattern hash and/or
    complexity profile (both matching first)."""
    with _index(obj.store()) as (index, progress):
        index.refresh(progress=progress)
        rows = index.similar(customer, version, limit=limit)
    if output == "json":
        emit_json(rows)
    elif rows:
        _table(["CUSTOMER", "VERSION", "SCORE", "MATCHED", "PATTERN", "PROFILE", "UPDATED"],
               [[r["customer"], r["version"], str(r["score"]), ",".join(r["matched"]),
                 _cell(r["pattern_hash"]), _cell(r["complexity_profile"]), r["updated"]]
                for r in rows], right=frozenset({2}))
    else:
        note("no similar sessions")


@click.command()
@click.option("--timeout", metavar="DURATION",
              help="Activity window: 30m, 2h, 7d (default 2h, or GITSTORE_ACTIVE_TIMEOUT).")
@output_option
@click.pass_obj
def active(obj: Ctx, timeout: str | None, output: str) -> None:
    """Open sessions with activity within the timeout, most recent first."""
    with _index(obj.store()) as (index, progress):
        index.refresh(progress=progress)
        rows = index.active(timeout)
    if output == "json":
        emit_json(rows)
    elif rows:
        _table(["CUSTOMER", "VERSION", "SESSION", "LAST ACTIVITY", "IDLE", "TURNS"],
               [[r["customer"], r["version"], _cell(r["session_id"]), r["updated"],
                 _idle(r["idle_seconds"]), str(r["turns"])] for r in rows],
               right=frozenset({4, 5}))
    else:
        note("no active sessions")


def _idle(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@click.command()
@click.argument("session_id")
@click.option("--customer", help="Look only in this customer's sessions.")
@click.option("-s", "--scenario", metavar="vN",
              help="Look only in this scenario (with --customer: when the customer has "
                   "the id in more than one).")
@click.option("--turns", type=click.IntRange(min=0), metavar="N",
              help="Only the last N conversation turns (default: every turn).")
@output_option
@click.pass_obj
def resume(obj: Ctx, session_id: str, customer: str | None, scenario: str | None,
           turns: int | None, output: str) -> None:
    """Find a session by its id alone and print its full context: customer,
    scenario, version, status and every document of its newest state (the
    conversation cut to its last N turns with --turns).

    Session ids are unique per store; an error never names a customer you did not
    name."""
    found = obj.store().resume(session_id, customer=customer, scenario=scenario, turns=turns)
    if output == "json":
        emit_json(found.to_json())
        return
    _table(["FIELD", "VALUE"], [[k, _cell(v)] for k, v in found.head().items()])
    for doc, data in found.documents.items():
        title = doc
        if doc == CONV and turns is not None:
            title += f" (last {len(found.turns)} of {found.total_turns} turns)"
        click.echo(f"\n== {title} ==")
        click.echo(canonical.dumps(data).decode("utf-8") if doc in JSON_DOCUMENTS else data,
                   nl=False)


@click.command()
@click.pass_obj
def reindex(obj: Ctx) -> None:
    """Rebuild the index from git (a progress bar on a terminal)."""
    start = time.monotonic()
    with _index(obj.store(), "reindexing") as (index, progress):
        count = index.rebuild(progress=progress)
        totals = index.stats()
    note(f"indexed {count} customer(s), {totals['versions']} version(s), "
          f"{totals['turns']} turn(s) in {time.monotonic() - start:.2f}s")
