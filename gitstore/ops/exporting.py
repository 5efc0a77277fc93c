"""Export: sessions leaving the store, as a JSON bundle or a git bundle.

The formats and the import rules are described in ``docs/export.md``.
Invariants: an export reads through the same history API as every reader
(one ``export`` access record per customer); a JSON bundle of format 2 carries,
per scenario, every commit of its first-parent history as an exact delta
(:mod:`gitstore.core.deltas`) with its author, time and whole message, so an
import can replay it commit by commit; the manifest digest in each message pins
every file's bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from gitstore.core import canonical, deltas
from gitstore.core.commits import ChangeKind, CommitInfo
from gitstore.core.names import JSON_DOCUMENTS, MANIFEST
from gitstore.core.time import format_rfc3339 as iso
from gitstore.core.time import from_timestamp
from gitstore.core.versions import (
    Scenario,
    Version,
    parse_branch_ref,
    parse_tag_ref,
    refuse_bare_version,
)
from gitstore.errors import NotFoundError, ShreddedError, UsageError
from gitstore.git import repo as backend
from gitstore.store.facade import Customer, Store
from gitstore.store.tip import read_state
from gitstore.version import __version__

FORMAT = "gitstore-export"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
BUNDLE_SIGNATURES = (b"# v2 git bundle\n", b"# v3 git bundle\n")


def default_name(now: datetime, kind: str = "export", suffix: str = ".json") -> str:
    """``gitstore-export-YYYY-MM-DDTHH-MM-SS.json`` (seed 001's style, UTC)."""
    return f"gitstore-{kind}-{iso(now)[:19].replace(':', '-')}{suffix}"


# -- JSON export -------------------------------------------------------------------

def _documents(files: dict[str, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(files):
        if name in JSON_DOCUMENTS:
            out[name] = canonical.loads(files[name])
        elif name != MANIFEST:
            out[name] = files[name].decode("utf-8")
    return out


def _version_entry(repo: backend.Repo, version: Version, status: str, commit: str,
                   tag_name: str | None) -> dict[str, Any]:
    info = repo.commit(commit)
    tag = repo.tag(tag_name) if tag_name else None
    return {
        "version": str(version), "status": status, "commit": commit,
        "change": info.trailer("Change"), "time": iso(from_timestamp(info.time)),
        "author": str(info.author), "summary": info.parsed.summary,
        "trailers": dict(info.parsed.trailers), "manifest": info.trailer("Manifest"),
        "tag": None if tag is None else {
            "name": tag.name, "id": tag.id, "message": tag.message,
            "tagger": str(tag.tagger) if tag.tagger else None,
            "time": iso(from_timestamp(tag.time))},
        "documents": _documents(repo.read_tree(commit)),
    }


def _scenario_entry(repo: backend.Repo, scenario: Scenario, tip: str,
                    only: Version | None) -> dict[str, Any]:
    info = repo.commit(tip)
    entry: dict[str, Any] = {"scenario": str(scenario), "session_id": info.trailer("Session-Id"),
                             "tip": tip, "state": "retained", "versions": [], "open": None,
                             "retained": None}
    if info.change == ChangeKind.RETENTION:
        entry["retained"] = {"commit": tip, "time": iso(from_timestamp(info.time)),
                             "author": str(info.author), "message": info.message,
                             "documents": _documents(repo.read_tree(tip))}
    else:
        state = read_state(repo, scenario)
        tagged = sorted(v for ref in repo.refs("refs/tags/")
                        if (v := parse_tag_ref(ref)) is not None and v.major == scenario.major)
        done = [_version_entry(repo, v, "finalized", tag.target, str(v)) for v in tagged
                if (only is None or v == only) and (tag := repo.tag(str(v))) is not None]
        still_open = None
        if state.version not in tagged and (only is None or state.version == only):
            # the open version; or a finalize commit whose tag a crash left uncut
            item = _version_entry(repo, state.version, "finalized" if state.finalized
                                  else "open", tip, None)
            done, still_open = ([*done, item], None) if state.finalized else (done, item)
        entry.update(session_id=state.session_id, versions=done, open=still_open,
                     state="finalized" if state.finalized else "open")
        if only is not None:
            chosen = [*done, *([still_open] if still_open else [])]
            if not chosen:
                raise NotFoundError(f"{repo.path.name} has no version {only}")
            tip = chosen[0]["commit"]
    walked = list(repo.walk(tip))
    entry["history"] = [{"commit": c.id, "time": iso(from_timestamp(c.time)),
                         "version": c.trailer("Session-Version"), "change": c.change,
                         "author": str(c.author), "summary": c.parsed.summary}
                        for c in walked]
    if entry["retained"] is None:  # the first-parent line: what the writer wrote here
        entry["commits"] = _commits(repo, list(reversed(list(repo.walk(tip,
                                                                         first_parent=True)))))
    return entry


def _commits(repo: backend.Repo, oldest_first: list[CommitInfo]) -> list[dict[str, Any]]:
    """A scenario's first-parent line, oldest first, each commit with its delta
    from its first parent (a merge's other parents are named in ``parents``)."""
    out: list[dict[str, Any]] = []
    before: dict[str, bytes] = {}
    for c in oldest_first:
        files = repo.read_tree(c.id)
        when = c.author_time if c.author_time is not None else c.time
        offset = c.author_offset if c.author_offset is not None else c.offset
        out.append({"commit": c.id, "parents": list(c.parents), "author": str(c.author),
                    "time": iso(from_timestamp(when)), "offset": offset,
                    "message": c.message, "changes": deltas.encode(before, files)})
        before = files
    return out


def export_customer(customer: Customer, selection: str | None = None) -> dict[str, Any]:
    """One customer's entry: every scenario, or one scenario (``v1``) or version."""
    repo = customer.repo
    only_version, only_scenario = _selection(selection)
    branches = {s: tip for ref, tip in repo.refs("refs/heads/").items()
                if (s := parse_branch_ref(ref)) is not None}
    if only_scenario is not None and only_scenario not in branches:
        raise NotFoundError(f"customer {customer.name} has no scenario {only_scenario}")
    scenarios = []
    for s, tip in sorted(branches.items()):
        if only_scenario is not None and s != only_scenario:
            continue
        try:
            scenarios.append(_scenario_entry(repo, s, tip, only_version))
        except ShreddedError:
            if only_scenario is not None:  # asked for by name: say why it cannot be had
                raise
            customer.store.say(f"{customer.name} {s} was crypto-shredded: not exported")
    customer.audit("export", rev=selection, detail=f"{len(scenarios)} scenario(s)")
    return {"customer": customer.name, "scenarios": scenarios}


def _selection(selection: str | None) -> tuple[Version | None, Scenario | None]:
    """What ``selection`` names: a version (and its scenario), a scenario, or all."""
    if not selection:
        return None, None
    refuse_bare_version(selection, "version or scenario")
    if Version.is_version(selection):
        version = Version.parse(selection)
        return version, version.scenario
    return None, Scenario.parse(selection)


def write_json_export(store: Store, out: IO[str], customers: Iterable[str],
                      selection: str | None = None) -> int:
    """Stream a JSON bundle of ``customers`` to ``out`` (one customer in memory at
    a time); returns the number of customers written. Nothing is written before the
    selection is known to be valid and the first customer's entry is complete."""
    _selection(selection)
    head = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "generator": f"gitstore {__version__}", "exported_at": iso(store.now()),
            "selection": selection}
    text = json.dumps(head, indent=2, sort_keys=True, ensure_ascii=False)
    count = 0
    for name in customers:
        entry = export_customer(store.customer_named(name), selection)
        body = json.dumps(entry, indent=2, sort_keys=True, ensure_ascii=False)
        if not count:
            out.write(text[:-2] + ',\n  "customers": [')
        out.write(("," if count else "") + "\n    " + body.replace("\n", "\n    "))
        count += 1
    if not count:
        out.write(text[:-2] + ',\n  "customers": [')
    out.write("\n  ]\n}\n")
    return count


# -- git bundle --------------------------------------------------------------------

def write_git_bundle(customer: Customer, out: IO[bytes]) -> dict[str, str]:
    """Write a git bundle of ``customer``'s whole repository; returns its refs."""
    refs = customer.repo.write_bundle(out)
    customer.audit("export", detail=f"git bundle of {len(refs)} ref(s)")
    return refs


def read_bundle_header(path: Path) -> tuple[dict[str, str], int]:
    """The refs of a bundle file and the offset of its pack. Refuses incomplete
    bundles (prerequisites), unknown capabilities and refs outside heads/tags."""
    refs: dict[str, str] = {}
    with path.open("rb") as f:
        if f.readline() not in BUNDLE_SIGNATURES:
            raise UsageError(f"{path} is not a git bundle (v2 or v3)")
        while True:
            line = f.readline(4096)
            if not line.endswith(b"\n"):
                raise UsageError(f"{path}: truncated or malformed bundle header")
            if line == b"\n":
                return refs, f.tell()
            text = line.decode("utf-8", "replace").rstrip("\n")
            if text.startswith("@"):
                if text != "@object-format=sha1":
                    raise UsageError(f"{path}: unsupported bundle capability {text!r}")
                continue
            if text.startswith("-"):
                raise UsageError(f"{path} is an incremental bundle (it needs commit "
                                 f"{text[1:41]}); import needs the whole history")
            m = re.fullmatch(r"([0-9a-f]{40}) (\S+)", text)
            if not m:
                raise UsageError(f"{path}: malformed bundle header line {text[:80]!r}")
            if m[2] == "HEAD":
                continue
            if not m[2].startswith(("refs/heads/", "refs/tags/")):
                raise UsageError(f"{path}: unexpected ref {m[2]} (gitstore bundles hold "
                                 "scenario branches and version tags only)")
            refs[m[2]] = m[1]


