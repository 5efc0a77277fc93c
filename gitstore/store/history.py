"""Reading a customer's history: snapshots, versions, log, diff, time travel.

Pure reads over a :class:`~gitstore.store.context.CustomerContext`: they take no
lock (a reader never sees a half-written commit: refs move only after their
objects are complete) and each appends one access-log record.

A revision is a version (``v1.0.0``: its tag; an open or untagged version: the
scenario's tip when the tip is that version), a scenario (``v1``: its newest
state), ``HEAD``, or any git revision (``v1~2``, a commit id). Every version that
:func:`versions` lists resolves. Arguments of the wrong type are a UsageError.

Time travel (:func:`read_at`) has two clocks. *Commit time* is when a commit was
written (its git commit time: the write's ``at=``, default the moment of the
write). *Session time* is what the session data says: a commit's session time is
the newest of ``session_info.created_timestamp``, ``session_info.completed_timestamp``
and the last conversation turn's ``timestamp``, taken over that commit and every
earlier commit of its scenario (first parents), so it never decreases along a
scenario; except that the commits from a follow-up's opening up to its first newer
timestamp (its first turn) count at that timestamp, or at their commit time while
there is none, so the time between two conversations shows the version that
concluded, not the follow-up not yet begun. A session recorded today from a
transcript stamped last year has last year's session time and today's commit time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from gitstore.core import canonical, lazy
from gitstore.core.commits import (
    ChangeKind,
    CommitInfo,
    Identity,
    TagInfo,
    Trailer,
    metadata_version,
    version_of,
)
from gitstore.core.documents import count, document_name, parse_ts, text_or_none
from gitstore.core.names import CONV, JSON_DOCUMENTS, MANIFEST, MERGED, META
from gitstore.core.time import format_rfc3339, from_timestamp, parse_rfc3339
from gitstore.core.versions import Scenario, Version, parse_tag_ref, refuse_bare_version
from gitstore.errors import NotFoundError, UsageError
from gitstore.store.context import CustomerContext

if TYPE_CHECKING:
    from pydantic import BaseModel

    from gitstore.core import diff as diff_mod
    from gitstore.core import schema
    from gitstore.core.diff import Diff
    from gitstore.git.repo import Repo
else:  # the models only for Snapshot.model (gitstore.core.lazy)
    schema = lazy.module("gitstore.core.schema")
    diff_mod = lazy.module("gitstore.core.diff")

#: The clocks :func:`read_at` can travel by (see the module docstring).
TIME_BASES = ("session", "commit")
#: The values of the ``Change`` trailer that :func:`log` filters by.
CHANGE_KINDS = tuple(kind.value for kind in ChangeKind)


class Snapshot(NamedTuple):
    """The session files at one commit: immutable, read-only.

    ``files`` maps file names to their exact stored bytes; :meth:`document`
    parses a JSON document, :meth:`model` returns its pydantic model.
    """

    customer: str
    commit: str
    version: Version | None
    change: str | None
    files: dict[str, bytes]
    info: CommitInfo

    def raw(self, name: str) -> bytes:
        name = document_name(name, allow_manifest=True)
        try:
            return self.files[name]
        except KeyError:
            where = str(self.version) if self.version else self.commit[:12]
            hint = " (rendered at finalize)" if name == "sow_document.md" else ""
            raise NotFoundError(f"{self.customer} {where} has no {name}{hint}") from None

    def document(self, name: str) -> Any:
        name = document_name(name, allow_sow=False)
        return canonical.loads_cached(self.raw(name))

    def model(self, name: str) -> BaseModel:
        name = document_name(name, allow_sow=False)
        return schema.parse_model(name, self.document(name))

    def documents(self) -> dict[str, Any]:
        """Every JSON document present, parsed."""
        return {n: canonical.loads_cached(self.files[n]) for n in JSON_DOCUMENTS
                if n in self.files}

    @property
    def session_id(self) -> str | None:
        return self.info.trailer("Session-Id")

    def label(self) -> dict[str, Any]:
        """Identifies this snapshot in diff output."""
        return {"customer": self.customer, "commit": self.commit,
                "version": str(self.version) if self.version else None,
                "change": self.change}


class VersionInfo(NamedTuple):
    """A version of a scenario: finalized (tagged) or still open."""

    version: Version
    commit: str
    status: str  # "finalized" | "open" | "expired" (open, recorded as expired) | "merged"
    change: str | None
    time: int
    author: Identity
    summary: str
    tag: TagInfo | None = None
    manifest: str | None = None
    completeness: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": str(self.version), "status": self.status, "commit": self.commit,
            "change": self.change, "time": _iso(self.time), "author": str(self.author),
            "summary": self.summary, "tag": self.tag.id if self.tag else None,
            "manifest": self.manifest, "completeness": self.completeness,
        }


class LogEntry(NamedTuple):
    """One commit of a scenario's history, as ``gitstore log`` shows it."""

    commit: str
    version: Version | None
    change: str | None
    turn: int | None
    agent: str | None
    time: int
    summary: str
    tags: tuple[str, ...] = ()
    trailers: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "version": str(self.version) if self.version else None,
            "change": self.change, "turn": self.turn, "agent": self.agent,
            "time": _iso(self.time), "summary": self.summary, "tags": list(self.tags),
            "trailers": {k: v for k, v in self.trailers},
        }


def _iso(ts: int) -> str:
    return format_rfc3339(from_timestamp(ts))


def resolve(customer: CustomerContext, rev: str | Version | Scenario | None = None) -> str:
    """Resolve a revision to a commit id.

    Accepts a version (``v1.0.0``: its tag; an open version: its scenario's
    tip), a scenario (``v1``: its newest state), ``HEAD`` (default), or any git
    revision (``v1~2``, a commit id).
    """
    if rev is None:
        rev = "HEAD"
    if isinstance(rev, Version | Scenario):
        rev = str(rev)
    if not isinstance(rev, str):
        raise UsageError(f"a revision is a str like 'v1.0.0', 'v1' or a commit id, not "
                         f"{type(rev).__name__}")
    repo = customer.repo
    if Version.is_version(rev):
        version = Version.parse(rev)
        tag = repo.tag(str(version))
        if tag is None:  # an open version (or one a crash left untagged) is its scenario's tip
            tip = repo.ref_target(version.scenario.branch_ref)
            if tip is not None:
                info = repo.commit(tip)
                if (version_of(info) or metadata_version(repo.read_tree(tip))) == version:
                    return tip
            known = ", ".join(str(v.version) for v in versions(customer)) or "none"
            raise NotFoundError(f"customer {customer.name} has no version {version} "
                                f"(versions: {known})")
        return tag.target
    refuse_bare_version(rev)  # `1.0.0` is not a version: one grammar, the v required
    return repo.resolve(rev)


def read(customer: CustomerContext, rev: str | Version | Scenario | None = None) -> Snapshot:
    """The session files at ``rev`` (see :meth:`resolve`)."""
    commit = resolve(customer, rev)
    info = customer.repo.commit(commit)
    files = customer.repo.read_tree(commit)
    customer.audit("read", rev=str(rev) if rev is not None else "HEAD", commit=commit)
    return Snapshot(customer=customer.name, commit=commit, version=version_of(info, files),
                    change=info.trailer("Change"), files=files, info=info)


def diff(customer: CustomerContext, a: str | Version | Scenario,
         b: str | Version | Scenario | None = None, *,
         documents: Iterable[str] | None = None) -> tuple[Diff, Snapshot, Snapshot]:
    """Semantic diff from ``a`` to ``b`` (default: the newest state of ``a``'s
    scenario). Returns the diff and both snapshots. ``documents`` limits it."""
    if isinstance(documents, str):
        documents = (documents,)
    elif documents is not None:
        if isinstance(documents, bytes | bytearray) or not isinstance(documents, Iterable):
            raise UsageError(f"documents must be document names (a list of str), not "
                             f"{type(documents).__name__}")
        documents = tuple(documents)
    keep = {document_name(d, allow_manifest=True) for d in documents or ()}
    snap_a = read(customer, a)
    if b is None:
        b = snap_a.version.scenario if snap_a.version else "HEAD"
    snap_b = read(customer, b)
    files_a, files_b = snap_a.files, snap_b.files
    manifest = False
    if documents is not None:
        files_a = {k: v for k, v in files_a.items() if k in keep}
        files_b = {k: v for k, v in files_b.items() if k in keep}
        manifest = MANIFEST in keep
    customer.audit("diff", rev=f"{a}..{b}", commit=f"{snap_a.commit}..{snap_b.commit}",
                document=",".join(sorted(documents)) if documents else None)
    return diff_mod.compute(files_a, files_b, include_manifest=manifest), snap_a, snap_b


def versions(customer: CustomerContext, scenario: str | Scenario | None = None
             ) -> list[VersionInfo]:
    """Every finalized version, plus each scenario's open version, oldest first."""
    customer.require()
    if scenario is not None:
        scenario = pick_scenario(customer, scenario)
    repo = customer.repo
    out: list[VersionInfo] = []
    for ref in repo.refs("refs/tags/"):
        v = parse_tag_ref(ref)
        if v is None or (scenario is not None and v.major != scenario.major):
            continue
        tag = repo.tag(str(v))
        assert tag is not None
        info = repo.commit(tag.target)
        out.append(_version_info(v, info, "finalized", tag))
    tagged = {vi.version for vi in out}
    for s in customer.scenarios():
        if scenario is not None and s != scenario:
            continue
        tip = repo.ref_target(s.branch_ref)
        if tip is None:
            continue
        info = repo.commit(tip)
        v = version_of(info) or metadata_version(repo.read_tree(tip))
        if v is not None and v not in tagged:
            change = info.change
            status = "finalized" if info.finalizes else \
                "merged" if repo.ref_target(MERGED + str(s)) else \
                "expired" if change == ChangeKind.EXPIRE else "open"
            out.append(_version_info(v, info, status, None))
    customer.audit("versions", rev=str(scenario) if scenario else None)
    return sorted(out, key=lambda vi: vi.version)


def log(customer: CustomerContext, rev: str | Scenario | None = None, *, limit: int | None = None,
        document: str | None = None, since: datetime | str | None = None,
        until: datetime | str | None = None, change: str | None = None,
        agent: str | None = None) -> list[LogEntry]:
    """Commits reachable from ``rev`` (default: every scenario), newest first.

    Filters: ``document`` (commits that changed it), ``since``/``until``
    (commit time, inclusive), ``change`` (the Change trailer: turn, update,
    create, finalize, follow-up, correction, ...), ``agent`` (Agent trailer or
    author name). ``limit`` (an int or a string of digits) applies after filtering.
    """
    limit = count(limit, "limit")
    if text_or_none(change, "change") is not None and change not in CHANGE_KINDS:
        raise UsageError(f"unknown change kind {change!r}; expected one of "
                         f"{', '.join(CHANGE_KINDS)}")
    agent = text_or_none(agent, "agent")
    doc = document_name(document, allow_manifest=True) if document is not None else None
    repo = customer.repo
    starts = [resolve(customer, rev)] if rev is not None else \
        [t for s in customer.scenarios() if (t := repo.ref_target(s.branch_ref))]
    lo = moment(since, "since").timestamp() if since is not None else None
    hi = moment(until, "until").timestamp() if until is not None else None
    tags: dict[str, list[str]] = {}
    for ref in repo.refs("refs/tags/"):
        tag = repo.tag(ref[len("refs/tags/"):])
        if tag is not None:
            tags.setdefault(tag.target, []).append(tag.name)
    entries: list[LogEntry] = []
    seen: set[str] = set()
    for start in starts:
        for info in repo.walk(start):
            if info.id in seen:
                continue
            seen.add(info.id)
            if (lo is not None and info.time < lo) or (hi is not None and info.time > hi):
                continue
            kind = info.trailer("Change")
            if change is not None and kind != change:
                continue
            who = info.trailer("Agent") or info.author.name
            if agent is not None and who != agent:
                continue
            if doc is not None and doc not in repo.changed_files(info.id):
                continue
            turn = info.trailer("Turn")
            version = version_of(info)
            if version is None:  # a plain-git commit: ask its metadata
                version = metadata_version(repo.read_tree(info.id))
            entries.append(LogEntry(
                commit=info.id, version=version, change=kind,
                turn=int(turn) if turn and turn.isdigit() else None,
                agent=who, time=info.time,
                summary=info.parsed.summary, tags=tuple(sorted(tags.get(info.id, []))),
                trailers=info.parsed.trailers))
    entries.sort(key=lambda e: e.time, reverse=True)
    customer.audit("log", rev=str(rev) if rev is not None else None, document=doc)
    return entries[:limit] if limit is not None else entries


def read_at(customer: CustomerContext, scenario: str | Scenario | None,
            when: datetime | str, *, by: str = "session") -> Snapshot:
    """The state of a scenario as it stood at ``when``.

    ``by="session"`` (default): its newest commit whose session time is at or
    before ``when``; ``by="commit"``: its newest commit written at or before
    ``when`` (see the module docstring for both clocks)."""
    if by not in TIME_BASES:
        raise UsageError(f"by must be one of {', '.join(TIME_BASES)}, not {by!r}")
    chosen = pick_scenario(customer, scenario)
    repo = customer.repo
    tip = repo.ref_target(chosen.branch_ref)
    assert tip is not None
    when = moment(when, "time")
    found: str | None = None
    if by == "commit":
        ts = when.timestamp()
        found = next((i.id for i in repo.walk(tip, first_parent=True) if i.time <= ts), None)
    else:
        found = _at_session_time(repo, tip, when)
    if found is None:
        clock = "session time" if by == "session" else "commit time"
        raise NotFoundError(f"scenario {chosen} of {customer.name} did not exist yet at "
                            f"{format_rfc3339(when)} ({clock})")
    return read(customer, found)


def read_after_turn(customer: CustomerContext, scenario: str | Scenario | None,
                    turn: int) -> Snapshot:
    """The state of a scenario right after the write that added turn ``turn``
    (exactly: the newest commit on its first-parent line whose ``Turn`` trailer
    is ``turn``; a turn placed among earlier ones by its timestamp counts by the
    id it was given). A conversation written whole (``put``) has no such commit
    for the turns it brought: NotFoundError, naming the alternative."""
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
        raise UsageError(f"turn must be an integer >= 1, not {turn!r}")
    chosen = pick_scenario(customer, scenario)
    repo = customer.repo
    tip = repo.ref_target(chosen.branch_ref)
    assert tip is not None
    wanted = str(turn)
    for info in repo.walk(tip, first_parent=True):
        if info.change == ChangeKind.TURN and info.trailer(Trailer.TURN) == wanted:
            return read(customer, info.id)
    raise NotFoundError(f"no write added turn {turn} to scenario {chosen} of {customer.name} "
                        "(turns written with a whole conversation have no state of their "
                        "own); read a version, or a time with read_at")


def _at_session_time(repo: Repo, tip: str, when: datetime) -> str | None:
    """The newest commit on ``tip``'s first-parent line whose session time is at
    or before ``when`` (see the module docstring), scanning from the oldest: the
    scan stops at the first commit whose data is stamped later than ``when``."""
    chain = list(repo.walk(tip, first_parent=True))
    stamps: dict[str, datetime | None] = {CONV: None, META: None}
    reached: datetime | None = None  # the newest stamp so far
    found = held = None  # held: a follow-up opened, not yet stamped by a newer time
    for n, info in enumerate(reversed(chain)):
        changed = {CONV, META} if n == 0 else repo.changed_files(info.id)
        for name in (CONV, META):
            if name in changed:
                stamps[name] = _newest_stamp(name, repo.read_file(info.id, name))
        own = max((s for s in stamps.values() if s is not None), default=None)
        if own is not None and (reached is None or own > reached):
            if own > when:
                return found
            reached, found, held = own, info.id, None
        elif held is not None or info.change == ChangeKind.FOLLOW_UP:
            held = info
        else:
            found = info.id
    # a follow-up with no newer stamp yet counts from its commit time
    return held.id if held is not None and held.time <= when.timestamp() else found


def _newest_stamp(name: str, data: bytes | None) -> datetime | None:
    """The newest session timestamp in one document's bytes: the metadata's
    created/completed timestamps, or the conversation's last turn's timestamp."""
    if data is None:
        return None
    try:
        if name == META:
            info = canonical.loads(data).get("session_info")
            found = [parse_ts(info.get(k)) for k in ("created_timestamp", "completed_timestamp")
                     ] if isinstance(info, dict) else []
            return max((t for t in found if t is not None), default=None)
        turn = _last_turn(data)
    except (canonical.JSONParseError, AttributeError):
        return None  # not session data this gitstore can read: no stamp
    return parse_ts(turn.get("timestamp")) if isinstance(turn, dict) else None


def _last_turn(data: bytes) -> Any:
    """The conversation's last turn, parsing only that turn when the bytes are
    canonical (its element is the last line indented by exactly four spaces and
    opening an object inside the top-level ``conversation_turns`` array)."""
    marker = b'\n  "conversation_turns": [\n'
    start = data.find(marker)
    end = data.find(b"\n  ]", start + len(marker) - 1) if start >= 0 else -1
    if data.startswith(b'{\n  "') and end >= 0:
        last = data.rfind(b"\n    {", start + len(marker) - 1, end)
        if last >= 0:
            try:
                return canonical.loads(data[last + 1:end + 1])
            except canonical.JSONParseError:
                pass
    turns = canonical.loads(data).get("conversation_turns")
    return turns[-1] if isinstance(turns, list) and turns else None


def _version_info(v: Version, info: CommitInfo, status: str, tag: TagInfo | None) -> VersionInfo:
    completeness = info.trailer("Completeness")
    return VersionInfo(
        version=v, commit=info.id, status=status, change=info.trailer("Change"),
        time=tag.time if tag and tag.time else info.time,
        author=tag.tagger if tag and tag.tagger else info.author,
        summary=info.parsed.summary, tag=tag, manifest=info.trailer("Manifest"),
        completeness=int(completeness.rstrip("%")) if completeness and
        completeness.rstrip("%").isdigit() else None)


def pick_scenario(customer: CustomerContext, scenario: str | int | Scenario | None = None
                  ) -> Scenario:
    """The scenario named by ``scenario`` (``"v2"``, ``2``, ``"v2.1.0"``); default:
    the newest. Raises NotFoundError for an unknown customer or scenario."""
    customer.require()
    scenarios = customer.scenarios()
    if not scenarios:
        raise NotFoundError(f"customer {customer.name} has no sessions yet")
    if scenario is None:  # the newest one still taking writes (not merged away)
        live = [s for s in scenarios if customer.repo.ref_target(MERGED + str(s)) is None]
        chosen = (live or scenarios)[-1]
    elif isinstance(scenario, Scenario):
        chosen = scenario
    elif isinstance(scenario, int) and not isinstance(scenario, bool):
        chosen = Scenario(scenario)
    elif isinstance(scenario, str) and Version.is_version(scenario):
        chosen = Version.parse(scenario).scenario
    elif isinstance(scenario, str):
        chosen = Scenario.parse(scenario)
    else:
        raise UsageError(f"a scenario is a name like 'v2' or a number, not "
                         f"{type(scenario).__name__}")
    if chosen not in scenarios:
        have = ", ".join(str(s) for s in scenarios)
        raise NotFoundError(f"customer {customer.name} has no scenario {chosen} (has {have})")
    return chosen


def moment(value: datetime | str, what: str) -> datetime:
    """A point in time from an aware datetime (naive ones are taken as UTC) or an
    RFC 3339 string; anything else is a UsageError."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return parse_rfc3339(value, what=what)
    raise UsageError(f"{what} must be an RFC 3339 string or a datetime, not "
                     f"{type(value).__name__}")
