"""A scenario's branch tip: its state, its integrity, and its version tag.

Invariants: a write builds only on a tip whose files match its manifest
(:func:`check_tip`); a tip whose commit finalized a version but has no tag (a
crash between the branch update and the tag) gets its tag recreated from the
commit itself (:func:`repair_tag`), with the same message; a write starts only
in a repository whose ``HEAD`` is sound (:func:`check_head`), so damage there
fails it at once, before any object is written, never as a lost race.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gitstore.core import canonical, manifest
from gitstore.core import files as sessionfiles
from gitstore.core.commits import (
    ChangeKind,
    CommitInfo,
    Identity,
    Message,
    Trailer,
    trailers,
    version_of,
)
from gitstore.core.layout import Joined, Split
from gitstore.core.names import JSON_DOCUMENTS
from gitstore.core.versions import Scenario, ScenarioState, Version, parse_tag_ref
from gitstore.errors import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    UsageError,
    VersionRuleError,
)
from gitstore.git import repo as backend

CONV, CTX, META, ANA = JSON_DOCUMENTS


class State(NamedTuple):
    """A scenario's branch tip and what follows from it."""

    tip: str
    info: CommitInfo
    version: Version
    session_id: str
    finalized: bool
    files: Mapping[str, bytes]
    tags: tuple[Version, ...]
    stored: Mapping[str, bytes] | None = None
    """The files as stored, when they differ from ``files`` (an encrypted
    session: ``files`` is the plaintext)."""

    @property
    def rules(self) -> ScenarioState:
        return ScenarioState(self.version.scenario, self.version, self.finalized, self.tags)


def load_doc(state: State, name: str) -> Any:
    """A document of the tip, parsed (fast path: the tip passed the checks when
    it was written, and :func:`check_tip` has verified its bytes)."""
    if name not in state.files:
        return {}
    return canonical.loads_stored(state.files[name])


PARSED_CACHE = 8
"""How many parsed documents :func:`load_shared` keeps (per process)."""
PARSED_PARTS = 256
"""How many parsed conversation chunks (64 turns each) it keeps besides."""
_parsed: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
_parts: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
_parsed_lock = threading.Lock()


def load_shared(state: State, name: str) -> dict[str, Any]:
    """A JSON object document of the tip, parsed once per content: the bytes a
    write produced (:func:`remember`) or a read returned (the repository hands
    out one ``bytes`` object per blob) are recognised by identity, not hashed.
    A conversation held in parts (a :class:`Joined`: a write's, or a tip the
    repository read) is parsed part by part (:func:`_from_parts`).

    The caller gets a new top-level dict whose dict and list members are new
    too, one level down; anything deeper (a turn) is shared with the cache and
    must be replaced, never changed in place."""
    data = sessionfiles.raw(state.files, name)
    if data is None:
        return {}
    doc = _cached(_parsed, data)  # threads of one process share it (the MCP and web servers)
    if doc is None:
        doc = _from_parts(data.split, data.data) if isinstance(data, Joined) else \
            canonical.loads_stored(data)
        if not isinstance(doc, dict):
            return {}
        remember(data, doc)
    return {k: dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
            for k, v in doc.items()}


def _from_parts(parts: Split, whole: Callable[[], bytes]) -> Any:
    """The conversation split into ``parts`` (assembled: ``whole()``), parsed
    part by part: the head, then each chunk of turns, a chunk this process
    parsed before taken from ``_parts`` (a chunk is the same ``bytes`` object
    while the repository's blob cache holds it). So a tip another process moved
    (it changed the last chunk and the head) costs the parse of those two, not
    of the conversation. Equal to parsing the assembled bytes: the head is the
    document with the turns array empty in place (:mod:`gitstore.core.layout`),
    each chunk a JSON array of the next turns."""
    head = canonical.loads_stored(parts.head)
    if not isinstance(head, dict) or head.get("conversation_turns") != []:
        return canonical.loads_stored(whole())  # not laid out as split() makes it
    turns: list[Any] = []
    for chunk in parts.chunks:
        part = _cached(_parts, chunk)
        if part is None:
            part = canonical.loads_stored(chunk)
            _keep(_parts, chunk, part, PARSED_PARTS)
        if not isinstance(part, list):
            return canonical.loads_stored(whole())
        turns += part
    head["conversation_turns"] = turns
    return head


def remember(data: bytes | Joined, doc: dict[str, Any]) -> None:
    """Record that ``data`` (bytes, or a conversation's parts) parses to ``doc``
    (which nobody changes afterwards)."""
    _keep(_parsed, data, doc, PARSED_CACHE)


def _cached(cache: OrderedDict[int, tuple[Any, Any]], data: bytes | Joined) -> Any:
    """What ``cache`` holds for this very object (None: nothing)."""
    with _parsed_lock:
        hit = cache.get(id(data))
        if hit is None or hit[0] is not data:
            return None
        cache.move_to_end(id(data))
        return hit[1]


def _keep(cache: OrderedDict[int, tuple[Any, Any]], data: bytes | Joined, value: Any,
          limit: int) -> None:
    """Keep ``value`` for this very object (the entry holds it, so its id stays
    its own), the oldest going beyond ``limit``."""
    with _parsed_lock:
        cache[id(data)] = (data, value)
        cache.move_to_end(id(data))
        while len(cache) > limit:
            cache.popitem(last=False)


def require_open(state: State, what: str) -> None:
    if state.finalized:
        raise VersionRuleError(
            f"cannot {what} {state.version}: it is finalized; start a follow-up "
            "conversation (follow-up) or publish a data correction (correct)")


def read_state(repo: backend.Repo, scenario: Scenario) -> State:
    tip = repo.ref_target(scenario.branch_ref)
    if tip is None:
        raise NotFoundError(f"{repo.path.name} has no scenario {scenario}")
    info = repo.commit(tip)
    if info.change == ChangeKind.RETENTION:
        raise VersionRuleError(f"scenario {scenario} of {repo.path.name} was purged by its "
                               "retention policy; only its analytics summary remains")
    stored = repo.read_stored(tip)
    files = repo.codec.open_files(stored) if repo.codec is not None else stored
    version = version_of(info)
    session_id = info.trailer("Session-Id")
    if version is None or session_id is None:  # written with plain git: trust the documents
        try:
            meta = canonical.loads(files[META])["session_info"]
            version = version or Version.parse(meta["session_version"])
            session_id = session_id or meta["session_id"]
        except (KeyError, TypeError, canonical.JSONParseError, UsageError):
            raise NotFoundError(f"cannot tell the version of {repo.path.name} {scenario} at "
                                f"{tip[:12]}: no Session-Version trailer and no readable "
                                "session_metadata.json") from None
    tags = tuple(sorted(v for ref in repo.refs(f"refs/tags/v{scenario.major}.")
                        if (v := parse_tag_ref(ref)) is not None and v.major == scenario.major))
    finalized = version in tags or info.finalizes
    assert session_id is not None
    return State(tip, info, version, session_id, finalized, files, tags,
                 stored if repo.codec is not None else None)


def check_head(repo: backend.Repo) -> None:
    """Refuse to write to a repository whose ``HEAD`` is unreadable, detached or a
    symbolic link (libgit2 would fail every ref update, after the objects were
    written). ``gitstore repair`` points it back at the newest scenario."""
    problem = repo.head_problem()
    if problem is not None:
        name = repo.path.name
        raise IntegrityError(f"repository {name} is damaged: {problem}; nothing was written; "
                             f"run `gitstore verify {name}` (`gitstore repair` fixes HEAD)")


_verified_trees: set[str] = set()


def check_tip(customer: str, state: State) -> None:
    """Refuse to build on a tip whose files do not match its manifest (a commit
    made with plain git, or damage): the new commit's fresh manifest would
    otherwise launder the bad data. A tree id pins its content, so each tree is
    checked once per process."""
    if state.info.tree_id in _verified_trees:
        return
    problems = manifest.verify(state.stored if state.stored is not None else state.files)
    if problems:
        shown = "; ".join(str(v) for v in problems[:3])
        raise IntegrityError(f"refusing to write on top of {customer} {state.version} "
                             f"({state.tip[:12]}): {shown}; run `gitstore verify {customer}`",
                             [str(v) for v in problems])
    mark_verified(state.info.tree_id)


def mark_verified(tree_id: str) -> None:
    """Record a tree whose files match its manifest (one the pipeline checked
    before the writer wrote it, or one :func:`check_tip` verified)."""
    if len(_verified_trees) > 4096:
        _verified_trees.clear()
    _verified_trees.add(tree_id)


def tag_message(info: CommitInfo) -> str:
    m = info.parsed
    version = m.get("Session-Version", "?")
    sid = m.get("Session-Id", "?")
    what = "data correction" if m.get("Change") == "correction" else "finalized session"
    body = (f"What: {what}; documents {m.get('Documents', '-')}\n"
            f"Why: {m.get('Reason', '-')}\n"
            f"Who: {info.author}")
    return Message(f"{version}: {what} {sid}", trailers([
        ("Session-Id", sid), ("Session-Version", version), ("Change", m.get("Change")),
        ("Completeness", m.get("Completeness")), ("Manifest", m.get("Manifest")),
        ("Commit", info.id),
    ]), body).format()


def cut_tag(repo: backend.Repo, commit: str, info: CommitInfo, ts: int, offset: int,
            sign: Callable[[bytes], bytes] | None, *, message: str | None = None,
            tagger: Identity | None = None) -> str:
    """Create the version tag of a finalizing commit (message and tagger derived
    from the commit unless given, as an import replays them)."""
    version = info.trailer(Trailer.SESSION_VERSION) or "?"
    try:
        return repo.create_tag(version, commit, tagger=tagger or info.author,
                               message=message or tag_message(info),
                               time=ts, offset=offset, sign=sign)
    except backend.RefConflict:
        raise ConflictError(f"tag {version} already exists; versions are never reused") from None


def repair_tag(repo: backend.Repo, state: State,
                sign: Callable[[bytes], bytes] | None) -> None:
    """Recreate the tag of a finalize/correction commit left untagged by a crash."""
    if state.info.finalizes and state.version not in state.tags:
        cut_tag(repo, state.tip, state.info, state.info.time, state.info.offset, sign)
