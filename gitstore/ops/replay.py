"""Replaying an exported history (JSON bundle, format 2) through the writer.

Every commit of every scenario is written again, in one global order that puts
each commit after its parents and after the creation of the scenario before
its own (ties: by time, then scenario), with its original author, author time
and whole message, and each version's tag with its original tagger, time and
message. A merge commit joins the replayed commits its parents became.

Invariants: nothing is written but through :class:`~gitstore.store.writer.Writer`
(so the whole pipeline runs on every commit, and the writer refuses a commit
whose content does not match its recorded manifest); the replayed versions are
compared with the versions the file lists, byte for byte, before the import
counts as done. A history holding a commit on no scenario's first-parent line
(a merge of a side history) cannot be replayed: use a git bundle for it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from gitstore.core import deltas
from gitstore.core.commits import FINALIZING, ChangeKind, Identity, Message, Trailer
from gitstore.core.commits import metadata_version as metadata_version_of
from gitstore.core.names import MERGED
from gitstore.core.time import parse_rfc3339
from gitstore.core.versions import Scenario, Version, next_scenario
from gitstore.errors import UsageError
from gitstore.store.facade import Customer
from gitstore.store.tip import State
from gitstore.store.writer import Authorship, Plan, Writer

Restore = Callable[[Customer, dict[str, Any]], None]


def replay_history(customer: Customer, scenarios: list[dict[str, Any]],
                   restore_retained: Restore, compare: Callable[[Customer, dict[str, Any]],
                                                                 None]) -> None:
    """Replay ``scenarios`` (export entries with ``commits``, or ``retained``)."""
    nodes: dict[str, _Node] = {}
    ordered = sorted(scenarios, key=lambda s: Scenario.parse(s["scenario"]))
    previous_first: str | None = None
    for entry in ordered:
        s = Scenario.parse(entry["scenario"])
        if entry.get("retained"):
            key = f"retained:{s}"
            nodes[key] = _Node(key, s, entry, None, 0, _time(entry["retained"]["time"]),
                               [previous_first] if previous_first else [])
            previous_first = key
            continue
        commits = entry["commits"]
        if not commits:
            raise UsageError(f"{customer.name} {s}: the export lists no commits")
        for n, c in enumerate(commits):
            parents = list(c.get("parents") or [])
            deps = [previous_first] if n == 0 and previous_first else []
            if n > 0:
                if not parents or parents[0] != commits[n - 1]["commit"]:
                    raise UsageError(f"{customer.name} {s}: commit {c['commit'][:12]} does not "
                                     "follow the one before it")
                deps.append(commits[n - 1]["commit"])
            deps += parents[1:]
            nodes[c["commit"]] = _Node(c["commit"], s, entry, c, n, _time(c["time"]), deps)
        previous_first = commits[0]["commit"]
    for node in nodes.values():
        missing = [d for d in node.deps if d not in nodes]
        if missing:
            raise UsageError(f"{customer.name}: commit {node.key[:12]} merges {missing[0][:12]},"
                             " which no scenario's history holds; export a git bundle for it")
    _Replayer(customer, nodes, restore_retained).run()
    for entry in ordered:
        if not entry.get("retained"):
            for ver in [*entry["versions"], *([entry["open"]] if entry["open"] else [])]:
                compare(customer, ver)  # the file's versions agree with its history


class _Node:
    def __init__(self, key: str, scenario: Scenario, entry: dict[str, Any],
                 commit: dict[str, Any] | None, index: int, time: datetime,
                 deps: list[str]) -> None:
        self.key, self.scenario, self.entry, self.commit = key, scenario, entry, commit
        self.index, self.time, self.deps = index, time, deps


class _Replayer:
    def __init__(self, customer: Customer, nodes: dict[str, _Node],
                 restore_retained: Restore) -> None:
        self.customer = customer
        self.nodes = nodes
        self.restore_retained = restore_retained
        self.writer = Writer(customer)
        self.ids: dict[str, str] = {}
        self.files: dict[Scenario, dict[str, bytes]] = {}

    def run(self) -> None:
        waiting = {k: set(n.deps) for k, n in self.nodes.items()}
        children: dict[str, list[str]] = {}
        for k, n in self.nodes.items():
            for d in n.deps:
                children.setdefault(d, []).append(k)
        ready = [self._rank(k) for k, deps in waiting.items() if not deps]
        heapq.heapify(ready)
        done = 0
        while ready:
            *_, key = heapq.heappop(ready)
            self._replay(self.nodes[key])
            done += 1
            for child in children.get(key, []):
                waiting[child].discard(key)
                if not waiting[child]:
                    heapq.heappush(ready, self._rank(child))
        if done != len(self.nodes):
            raise UsageError(f"{self.customer.name}: the export's history has a cycle")

    def _rank(self, key: str) -> tuple[datetime, int, int, str]:
        n = self.nodes[key]
        return (n.time, n.scenario.major, n.index, key)

    def _replay(self, node: _Node) -> None:
        if node.commit is None:
            self.restore_retained(self.customer, node.entry)
            return
        c, s, entry = node.commit, node.scenario, node.entry
        files = deltas.apply(self.files.get(s, {}), c["changes"])
        self.files[s] = files
        m = Message.parse(c["message"])
        text = m.get(Trailer.SESSION_VERSION)
        version = Version.parse(text) if text and Version.is_version(text) else \
            metadata_version_of(files)
        if version is None or version.scenario != s:
            raise UsageError(f"{self.customer.name} {s}: commit {c['commit'][:12]} names no "
                             "version of this scenario")
        change = m.get(Trailer.CHANGE) or ChangeKind.UPDATE
        when = _moment(c["time"], c.get("offset"))
        tags = {v["commit"]: v["tag"] for v in [*entry["versions"],
                                                *([entry["open"]] if entry["open"] else [])]
                if v.get("tag")}
        tag = tags.get(c["commit"])
        merged = tuple(self.ids[p] for p in (c.get("parents") or [])[1:])
        plan = Plan(dict(files), version, change, m.summary, frozenset(c["changes"]),
                    finalizing=change in FINALIZING, merged=merged)
        by = Authorship(author=Identity.parse(c["author"]), time=when, message=c["message"],
                        tag_message=tag["message"] if tag else None,
                        tagger=Identity.parse(tag["tagger"]) if tag and tag.get("tagger")
                        else None,
                        tag_time=_moment(tag["time"], c.get("offset")) if tag else None)
        session_id = m.get(Trailer.SESSION_ID) or entry["session_id"]
        if node.index == 0:
            def first(used: list[Scenario], plan: Plan = plan) -> Plan:
                if next_scenario(used).scenario != s:
                    raise UsageError(f"{self.customer.name}: {s} cannot be the next scenario")
                return plan
            written = self.writer.create(session_id, first, by)
        else:
            def then(state: State, plan: Plan = plan) -> Plan:
                return plan
            written = self.writer.write(s, then, by)
        self.ids[c["commit"]] = written.commit
        source = (m.get(Trailer.MERGED_FROM) or "").split(" ")[0]
        if change == ChangeKind.MERGE and Scenario.is_name(source):  # it was merged away
            self.customer.repo.create_ref(MERGED + source, written.commit,
                                          f"gitstore: merged into {s} (import)")


def _time(text: str) -> datetime:
    return parse_rfc3339(text, what="time in the export")


def _moment(text: str, offset: Any = 0) -> datetime:
    minutes = offset if isinstance(offset, int) and not isinstance(offset, bool) else 0
    return _time(text).astimezone(timezone(timedelta(minutes=minutes)))
