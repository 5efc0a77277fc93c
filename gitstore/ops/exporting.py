"""Export, import and escalation: sessions leaving and entering the store.

**JSON bundle** (``gitstore export``; ``"format_version": 1``)::

    {"format": "gitstore-export", "format_version": 1, "generator": "gitstore 0.1.0",
     "exported_at": "2025-01-15T11:00:00Z", "selection": null | "v1" | "v1.0.0",
     "customers": [{"customer": "customer-xyz789", "scenarios": [{
        "scenario": "v1", "session_id": "...", "tip": "<commit>",
        "state": "finalized" | "open" | "retained",
        "versions": [VERSION, ...],          finalized versions, oldest first
        "open": VERSION | null,              the open version, if any
        "retained": null | {"commit", "time", "author", "message", "documents"},
        "history": [{"commit", "time", "version", "change", "author", "summary"}, ...]
     }]}]}

    VERSION = {"version": "v1.0.0", "status": "finalized" | "open", "commit": "<id>",
               "change": "finalize", "time": "...", "author": "name <email>",
               "summary": "...", "trailers": {"Session-Id": ..., ...},
               "manifest": "sha256:...",
               "tag": null | {"name", "id", "message", "tagger", "time"},
               "documents": {"conversation.json": {...}, ..., "sow_document.md": "text"}}

Times are UTC RFC 3339; JSON documents appear parsed, the SOW as text; the
manifest digest pins every file's bytes. ``history`` lists every commit (no
content), newest first. ``retained`` is what a retention purge left (see
:mod:`gitstore.ops.retention`).

**Import of a JSON bundle** replays each version through the normal API
(``new``, ``put``, ``finalize``, ``follow-up``, ``correct``), so every check and
hook runs, with each version's original agent and time (the tag's tagger and
time: retention ages survive). Versions, documents (byte for byte) and tags
(name, tagger, time, message apart from its ``Commit:`` trailer) come back
identical and are compared before the import counts as done; **commit ids
differ**, and the turn-by-turn commits inside a version are not replayed (the
history in the file is informational). Only customers absent from the store are
imported; a failure removes every customer the import created. Scenarios
must run v1, v2, ... without gaps: use a git bundle for a customer whose
scenario was purged entirely.

**Git bundle** (``--format git-bundle``, one customer): a standard bundle v2
(``# v2 git bundle``, ``<id> <ref>`` lines, a blank line, a pack), written
with libgit2 alone, holding every branch and tag with the whole history.
``git clone`` and ``git bundle verify`` read it. Its import restores the exact
objects and refs (same commit ids) into a new repository, runs ``gitstore
verify`` on it and removes it again if that fails. Reading the pack needs the
git binary (``git index-pack``): pygit2 has no pack indexer. The access log is
not part of either format; the imported customer's log starts with the import.

**Escalation** (``gitstore escalate``): one Markdown file for a human expert
(seed 000, "complete context to human experts"): the scenario at a glance,
every version with its tag message, the conversation turn by turn, the other
documents in full, the history and the newest finalized version's SOW.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gitstore.core import canonical
from gitstore.core.commits import Identity
from gitstore.core.names import JSON_DOCUMENTS, MANIFEST, SOW_DOCUMENT
from gitstore.core.versions import Scenario, Version, parse_branch_ref, parse_tag_ref
from gitstore.errors import ConflictError, IntegrityError, NotFoundError, UsageError
from gitstore.git import repo as backend
from gitstore.git.locking import writer_lock
from gitstore.ops.retention import RETENTION_CHANGE, _from_ts, _parse_iso, iso, write_retained
from gitstore.store.tip import read_state
from gitstore.version import __version__

if TYPE_CHECKING:
    from gitstore.store.facade import Customer, Store

CONV, CTX, META, ANA = JSON_DOCUMENTS
FORMAT = "gitstore-export"
FORMAT_VERSION = 1
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
        "change": info.trailer("Change"), "time": iso(_from_ts(info.time)),
        "author": str(info.author), "summary": info.parsed.summary,
        "trailers": dict(info.parsed.trailers), "manifest": info.trailer("Manifest"),
        "tag": None if tag is None else {
            "name": tag.name, "id": tag.id, "message": tag.message,
            "tagger": str(tag.tagger) if tag.tagger else None,
            "time": iso(_from_ts(tag.time))},
        "documents": _documents(repo.read_tree(commit)),
    }


def _scenario_entry(repo: backend.Repo, scenario: Scenario, tip: str,
                    only: Version | None) -> dict[str, Any]:
    info = repo.commit(tip)
    entry: dict[str, Any] = {"scenario": str(scenario), "session_id": info.trailer("Session-Id"),
                             "tip": tip, "state": "retained", "versions": [], "open": None,
                             "retained": None}
    if info.trailer("Change") == RETENTION_CHANGE:
        entry["retained"] = {"commit": tip, "time": iso(_from_ts(info.time)),
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
    entry["history"] = [{"commit": c.id, "time": iso(_from_ts(c.time)),
                         "version": c.trailer("Session-Version"), "change": c.trailer("Change"),
                         "author": str(c.author), "summary": c.parsed.summary}
                        for c in repo.walk(tip)]
    return entry


def export_customer(customer: Customer, selection: str | None = None) -> dict[str, Any]:
    """One customer's entry: every scenario, or one scenario (``v1``) or version."""
    repo = customer.repo
    only_version = Version.parse(selection) if selection and Version.is_version(selection) \
        else None
    only_scenario = only_version.scenario if only_version else \
        Scenario.parse(selection) if selection else None
    branches = {s: tip for ref, tip in repo.refs("refs/heads/").items()
                if (s := parse_branch_ref(ref)) is not None}
    if only_scenario is not None and only_scenario not in branches:
        raise NotFoundError(f"customer {customer.name} has no scenario {only_scenario}")
    scenarios = [_scenario_entry(repo, s, tip, only_version) for s, tip in sorted(branches.items())
                 if only_scenario is None or s == only_scenario]
    customer._audit("export", rev=selection, detail=f"{len(scenarios)} scenario(s)")
    return {"customer": customer.name, "scenarios": scenarios}


def write_json_export(store: Store, out: IO[str], customers: Iterable[str],
                      selection: str | None = None) -> int:
    """Stream a JSON bundle of ``customers`` to ``out`` (one customer in memory at
    a time); returns the number of customers written."""
    head = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "generator": f"gitstore {__version__}", "exported_at": iso(store.now()),
            "selection": selection}
    text = json.dumps(head, indent=2, sort_keys=True, ensure_ascii=False)
    out.write(text[:-2] + ',\n  "customers": [')
    count = 0
    for name in customers:
        entry = export_customer(store.customer(name), selection)
        body = json.dumps(entry, indent=2, sort_keys=True, ensure_ascii=False)
        out.write(("," if count else "") + "\n    " + body.replace("\n", "\n    "))
        count += 1
    out.write("\n  ]\n}\n")
    return count


# -- git bundle --------------------------------------------------------------------

def write_git_bundle(customer: Customer, out: IO[bytes]) -> dict[str, str]:
    """Write a git bundle of ``customer``'s whole repository; returns its refs."""
    refs = customer.repo.write_bundle(out)
    customer._audit("export", detail=f"git bundle of {len(refs)} ref(s)")
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


def import_git_bundle(store: Store, path: Path, name: str | None = None) -> str:
    """Restore a customer from a git bundle (same objects, refs, commit ids).

    The repository is built aside, then moved into place under the customer's
    writer lock if the customer is absent, then verified; if verification
    fails it is removed again and IntegrityError lists the problems."""
    from gitstore.ops.verify import check_customer

    refs, offset = read_bundle_header(path)
    if not any(r.startswith("refs/heads/") for r in refs):
        raise UsageError(f"{path} holds no scenario branch")
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=store.root))
    try:
        repo = backend.Repo.create(tmp / "repo", description="gitstore import",
                                   head="refs/heads/v1", committer=store.config.committer)
        with path.open("rb") as f:
            f.seek(offset)
            count = repo.index_pack(f)
        for ref, oid in sorted(refs.items()):
            repo.create_ref(ref, oid, f"gitstore: import from {path.name}")
        branches = sorted(s for r in refs if (s := parse_branch_ref(r)) is not None)
        if branches:
            repo.set_head(branches[-1].branch_ref)
        customer = store.customer(name or _bundle_customer(repo, path))
        (tmp / "repo" / "description").write_text(
            f"gitstore sessions of customer {customer.name}\n", encoding="utf-8")
        del repo
        config = store.config
        with writer_lock(store.lock_dir, customer.name, config.lock_timeout):
            if customer.path.exists() or customer.path.is_symlink():
                raise ConflictError(f"customer {customer.name} already exists in "
                                    f"{store.root}; import only restores absent customers")
            (tmp / "repo").rename(customer.path)
            customer.__dict__.pop("repo", None)
            customer._configure_repo()
            report = check_customer(customer)
            if report.problems:
                shutil.rmtree(customer.path)
                customer.__dict__.pop("repo", None)
                raise IntegrityError(f"{path.name} failed verification ("
                                     f"{'; '.join(report.problems[:3])}); nothing imported",
                                     report.problems)
            customer._audit("import", detail=f"git bundle {path.name}: {len(refs)} ref(s), "
                            f"{count} object(s)")
        return customer.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bundle_customer(repo: backend.Repo, path: Path) -> str:
    """The customer a bundle belongs to: the ``api_key`` its metadata names."""
    keys = set()
    for ref, tip in repo.refs("refs/heads/").items():
        data = repo.read_file(tip, META)
        try:
            keys.add(canonical.loads(data)["session_info"]["api_key"] if data else None)
        except (canonical.JSONParseError, KeyError, TypeError):
            raise UsageError(f"{path}: {ref} has unreadable metadata; pass --customer") from None
    keys.discard(None)
    if len(keys) != 1:
        raise UsageError(f"cannot tell which customer {path} holds (api_keys: "
                         f"{', '.join(sorted(map(str, keys))) or 'none'}); pass --customer")
    return str(keys.pop())


# -- JSON import -------------------------------------------------------------------

def import_file(store: Store, path: Path, name: str | None = None) -> list[str]:
    """Import a JSON bundle or a git bundle; returns the customers created."""
    try:
        with path.open("rb") as f:
            start = f.read(16)
    except OSError as exc:
        raise NotFoundError(f"cannot read {path}: {exc.strerror}") from None
    if start in BUNDLE_SIGNATURES:
        return [import_git_bundle(store, path, name)]
    if name is not None:
        raise UsageError("--customer applies to git bundles only")
    try:
        data = canonical.loads(path.read_bytes())
    except canonical.JSONParseError as exc:
        raise UsageError(f"{path} is neither a git bundle nor JSON: {exc}") from None
    return import_json(store, data)


def import_json(store: Store, data: Any) -> list[str]:
    """Replay a JSON bundle into the store (see the module docstring)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError("not a gitstore export (format must be 'gitstore-export')")
    if data.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"unsupported format_version {data.get('format_version')!r}; this "
                         f"gitstore reads {FORMAT_VERSION}")
    entries = data.get("customers")
    if not isinstance(entries, list):
        raise UsageError("a gitstore export needs a list of customers")
    if not all(isinstance(e, dict) and isinstance(e.get("customer"), str) for e in entries):
        raise UsageError("every customer entry needs a customer name")
    customers = [store.customer(e["customer"]) for e in entries]
    names = [c.name for c in customers]
    if len(set(names)) != len(names):
        raise UsageError("the export names a customer twice")
    present = [c.name for c in customers if c.path.exists() or c.path.is_symlink()]
    if present:
        raise ConflictError(f"customer(s) {', '.join(present)} already exist in {store.root}; "
                            "import only restores absent customers")
    created: list[Customer] = []
    try:
        for entry in entries:
            _check_scenarios(entry)
        for customer, entry in zip(customers, entries, strict=True):
            if entry["scenarios"]:  # a customer whose every scenario was purged: nothing
                created.append(customer)
                _replay_customer(customer, entry)
    except (KeyError, TypeError, AttributeError) as exc:
        _remove(created)
        raise UsageError(f"malformed gitstore export: {type(exc).__name__}: {exc}") from None
    except BaseException:
        _remove(created)
        raise
    for customer in created:
        customer._audit("import", detail=f"JSON export of {data.get('exported_at')}")
    return [c.name for c in created]


def _remove(created: list[Customer]) -> None:
    for customer in created:
        shutil.rmtree(customer.path, ignore_errors=True)
        customer.__dict__.pop("repo", None)


def _check_scenarios(entry: dict[str, Any]) -> None:
    scenarios = entry.get("scenarios")
    if not isinstance(scenarios, list) or not all(isinstance(s, dict) for s in scenarios):
        raise UsageError(f"{entry.get('customer')}: scenarios must be a list of objects")
    majors = sorted(Scenario.parse(str(s.get("scenario"))).major for s in scenarios)
    if majors != list(range(1, len(majors) + 1)):
        raise UsageError(f"{entry['customer']}: scenarios "
                         f"{', '.join(f'v{m}' for m in majors)} do not run v1, v2, ... "
                         "without gaps; a JSON import cannot recreate them (use a git bundle)")
    for s in scenarios:
        versions = [*s.get("versions", []), *([s["open"]] if s.get("open") else [])]
        if versions and Version.parse(versions[0]["version"]) != \
                Version(Scenario.parse(s["scenario"]).major):
            raise UsageError(f"{entry['customer']} {s['scenario']}: the export starts at "
                             f"{versions[0]['version']}; an import replays a scenario from "
                             "its first version (export the whole customer)")


def _replay_customer(customer: Customer, entry: dict[str, Any]) -> None:
    store = customer.store
    saved_clock, saved_config = store.clock, store.config
    try:
        for scenario in sorted(entry["scenarios"], key=lambda s: Scenario.parse(s["scenario"])):
            if scenario.get("retained"):
                _restore_retained(customer, scenario)
                continue
            versions = [*scenario["versions"], *([scenario["open"]] if scenario["open"] else [])]
            for ver in sorted(versions, key=lambda v: Version.parse(v["version"])):
                who = (ver["tag"] or {}).get("tagger") or ver["author"]
                when = _parse_iso((ver["tag"] or {}).get("time") or ver["time"])
                store.config = replace(saved_config, agent=Identity.parse(who))
                store.clock = _fixed(when) if when else saved_clock
                _replay_version(customer, scenario, ver)
    finally:
        store.clock, store.config = saved_clock, saved_config
    repo = customer.repo
    branches = sorted(s for r in repo.refs("refs/heads/") if (s := parse_branch_ref(r)))
    repo.set_head(branches[-1].branch_ref)


def _fixed(when: datetime) -> Callable[[], datetime]:
    return lambda: when


def _replay_version(customer: Customer, scenario: dict[str, Any], ver: dict[str, Any]) -> None:
    version = Version.parse(ver["version"])
    docs = {k: v for k, v in ver["documents"].items() if k in JSON_DOCUMENTS}
    reason = ver.get("trailers", {}).get("Reason")
    finalized = ver["status"] == "finalized"
    if version.minor == 0 and version.patch == 0:
        session = customer.new_session(session_id=scenario["session_id"], metadata=docs[META],
                                       version=version)
    else:
        session = customer.session(version.scenario)
    if version.patch:
        before = session.read().documents()
        named = set((ver.get("trailers", {}).get("Documents") or "").replace(" ", "")
                    .split(",")) & set(JSON_DOCUMENTS)
        changed = {n for n in docs if n != META and docs[n] != before.get(n)} | (named - {META})
        if _without_version(docs.get(META)) != _without_version(before.get(META)):
            changed.add(META)
        session.correct({n: docs[n] for n in changed}, reason=reason or "correction",
                        version=version)
    else:
        if version.minor:
            session.follow_up(version=version)
        for name in (CONV, CTX, ANA, META):
            if name in docs:
                session.put(name, docs[name])
        if finalized:
            session.finalize(message=reason, version=version)
    _compare(customer, ver)


def _without_version(meta: Any) -> Any:
    if not isinstance(meta, dict) or not isinstance(meta.get("session_info"), dict):
        return meta
    return {**meta, "session_info": {**meta["session_info"], "session_version": None}}


def _compare(customer: Customer, ver: dict[str, Any]) -> None:
    """Refuse unless the replayed version equals the exported one, byte for byte."""
    snap = customer.read(ver["version"] if ver["status"] == "finalized" else
                         str(Version.parse(ver["version"]).scenario))
    want = {n: canonical.dumps(d) if n in JSON_DOCUMENTS else str(d).encode("utf-8")
            for n, d in ver["documents"].items()}
    have = {n: b for n, b in snap.files.items() if n != MANIFEST}
    differ = sorted(n for n in set(want) | set(have) if want.get(n) != have.get(n))
    if differ:
        hint = " (the SOW renders differently here: other templates?)" \
            if differ == [SOW_DOCUMENT] else ""
        raise IntegrityError(f"{customer.name} {ver['version']}: {', '.join(differ)} would "
                             f"not come back identical{hint}; nothing imported")


def _restore_retained(customer: Customer, scenario: dict[str, Any]) -> None:
    kept = scenario["retained"]
    store = customer.store
    when = _parse_iso(kept["time"]) or store.now()
    with writer_lock(store.lock_dir, customer.name, store.config.lock_timeout):
        repo = customer._ensure_repo()
        commit = write_retained(customer, repo, canonical.dumps(kept["documents"][ANA]),
                                message=kept["message"], author=Identity.parse(kept["author"]),
                                when=when, session_id=scenario.get("session_id"))
        repo.update_ref(Scenario.parse(scenario["scenario"]).branch_ref, commit, None,
                        "gitstore: import of a retained analytics summary")


# -- escalation --------------------------------------------------------------------

def _md(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quote(text: Any) -> str:
    lines = _md(text if text is not None else "(none)").splitlines() or [""]
    return "\n".join(f"> {line}".rstrip() for line in lines)


def _cell(text: Any) -> str:
    return _md(text if text not in (None, "") else "-").replace("|", "\\|").replace("\n", " ")


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _json_block(data: Any) -> str:
    return _fence(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False), "json")


def _demote(markdown: str, levels: int = 2) -> str:
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        out.append("#" * levels + line if not fenced and re.match(r"#{1,6} ", line) else line)
    return "\n".join(out)


def _turn(turn: Any) -> list[str]:
    if not isinstance(turn, dict):
        return [_json_block(turn), ""]
    user, agent = turn.get("user_input") or {}, turn.get("agent_response") or {}
    out = [f"### Turn {turn.get('turn_id', '?')} ({turn.get('timestamp', 'no timestamp')})", "",
           "**Customer:**", "", _quote(user.get("query")), ""]
    if user.get("command") or user.get("parameters"):
        out += [f"Command: `{user.get('command') or '-'}`, parameters: "
                f"`{json.dumps(user.get('parameters'), sort_keys=True)}`", ""]
    facts = [f"{k.replace('_', ' ')} {agent[k]}" for k in
             ("confidence_score", "processing_time_seconds") if agent.get(k) is not None]
    if agent.get("sub_agents_invoked"):
        facts.append("sub-agents " + ", ".join(map(str, agent["sub_agents_invoked"])))
    out += [f"**Agent**{' (' + _md('; '.join(facts)) + ')' if facts else ''}:", "",
            _quote(agent.get("orchestrator_response")), ""]
    for d in turn.get("decision_points") or []:
        if isinstance(d, dict):
            out.append(f"- decision {_md(d.get('decision'))} = {_md(d.get('value'))} "
                       f"(confidence {_md(d.get('confidence'))})")
    extra = {k: v for k, v in turn.items() if k not in
             ("turn_id", "timestamp", "user_input", "agent_response", "decision_points")}
    extra.update({f"user_input.{k}": v for k, v in user.items()
                  if k not in ("query", "command", "parameters")})
    extra.update({f"agent_response.{k}": v for k, v in agent.items() if k not in
                  ("orchestrator_response", "confidence_score", "processing_time_seconds",
                   "sub_agents_invoked")})
    return [*out, *(["", "Other fields:", "", _json_block(extra)] if extra else []), ""]


def escalation(customer: Customer, scenario: str | None = None) -> str:
    """The Markdown escalation report of one scenario (default: the newest)."""
    session = customer.session(scenario)
    repo, s = customer.repo, session.scenario
    tip = repo.ref_target(s.branch_ref)
    assert tip is not None
    info = repo.commit(tip)
    files = repo.read_tree(tip)
    docs = {n: canonical.loads(files[n]) for n in JSON_DOCUMENTS if n in files}
    versions = customer.versions(s)
    now = iso(customer.store.now())
    out = [f"# Support escalation: {_md(customer.name)}, scenario {s}", "",
           f"Prepared {now} by gitstore {__version__} so that a human expert has the complete "
           "context of this session: every version, the whole conversation, every document, "
           "the history and the statement of work.", ""]
    if info.trailer("Change") == RETENTION_CHANGE:
        out += ["**This scenario was purged by the retention policy.** Only the analytics "
                "summary remains.", "", _fence(info.message), "", _json_block(docs.get(ANA)),
                ""]
        customer._audit("escalate", rev=str(s), commit=tip)
        return "\n".join(out)
    state = read_state(repo, s)
    conv, meta = docs.get(CONV, {}), docs.get(META, {})
    summary = conv.get("conversation_summary") or {}
    workflow = meta.get("workflow_tracking") or {}
    final = [v for v in versions if v.status == "finalized"]
    rows = [("Customer", customer.name), ("Scenario", f"{s} (branch {s.branch_ref})"),
            ("Session id", state.session_id),
            ("Versions", ", ".join(f"{v.version} ({v.status})" for v in versions)),
            ("Newest state", f"{state.version}, {'finalized' if state.finalized else 'open'}, "
                             f"last change {info.trailer('Change')} at {iso(_from_ts(info.time))}"),
            ("Completion status", workflow.get("completion_status")),
            ("Turns", len(conv.get("conversation_turns") or [])),
            ("Primary cloud provider", summary.get("primary_cloud_provider")),
            ("Services discussed", ", ".join(map(str, summary.get("services_discussed") or []))),
            ("Final recommendation", summary.get("final_recommendation")),
            ("Escalation events", len(workflow.get("escalation_events") or []))]
    out += ["## At a glance", "", "| | |", "|---|---|",
            *(f"| {k} | {_cell(v)} |" for k, v in rows), "", "## Versions", ""]
    for v in versions:
        who = v.tag.tagger if v.tag and v.tag.tagger else v.author
        out += [f"### {v.version}: {v.status}, {iso(_from_ts(v.time))}, by {_md(who)}", "",
                f"Commit `{v.commit}`" + (f", tag `{v.tag.id}`" if v.tag else " (no tag yet)"),
                ""]
        if v.tag:
            out += [_fence(v.tag.message), ""]
    out += ["## Conversation", ""]
    for turn in conv.get("conversation_turns") or []:
        out += _turn(turn)
    out += ["### Conversation summary", "", _json_block(summary), ""]
    for name, title in ((META, "Session metadata"), (CTX, "Deployment context"),
                        (ANA, "Session analytics")):
        out += [f"## {title} ({name})", "",
                _json_block(docs[name]) if name in docs else "(not recorded)", ""]
    out += ["## History", "", "| commit | time | version | change | agent | summary |",
            "|---|---|---|---|---|---|"]
    for c in repo.walk(tip):
        out.append(f"| `{c.id[:12]}` | {iso(_from_ts(c.time))} | "
                   f"{_cell(c.trailer('Session-Version'))} | {_cell(c.trailer('Change'))} | "
                   f"{_cell(c.trailer('Agent') or c.author.name)} | {_cell(c.parsed.summary)} |")
    out.append("")
    if final:
        newest = final[-1]
        sow = repo.read_file(newest.commit, SOW_DOCUMENT)
        out += [f"## Statement of work ({newest.version})", "",
                _demote(sow.decode("utf-8")) if sow else "(no SOW stored)", ""]
    else:
        out += ["## Statement of work", "", "No version of this scenario is finalized yet, so "
                "there is no statement of work.", ""]
    customer._audit("escalate", rev=str(s), commit=tip)
    return "\n".join(out)
