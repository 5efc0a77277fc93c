"""A session: the lifecycle of one deployment scenario (one major version, one
branch ``refs/heads/vN``).

Each lifecycle step (create, turn, put, summary, finalize, follow-up,
correction) validates its input at the entry (size, JSON, the secrets policy)
and hands a pure plan builder to :class:`~gitstore.store.writer.Writer`, which
runs the pipeline and writes it; see :mod:`gitstore.store.writer` for the
guarantees of every write.

Store-managed fields: ``session_id`` (both documents), ``session_info.api_key``,
``session_info.session_version`` and ``conversation_summary.total_turns``. A
caller may omit them and the store fills them in; a caller that supplies them
must supply the right values, or the integrity check refuses the write.
Derived fields (:mod:`gitstore.core.documents`): ``session_duration_minutes``
omitted or null is computed from the timestamps on every metadata write and at
finalize; ``conversation_summary.total_duration_minutes`` omitted or null is set
to the session's duration at finalize (and at a correction).
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gitstore.core import canonical, layout, render
from gitstore.core import files as sessionfiles
from gitstore.core.commits import ChangeKind, Identity
from gitstore.core.documents import (
    as_version,
    check_session_id,
    count,
    document_name,
    fill,
    fill_derived,
    fill_metadata,
    parse_ts,
    text_or_none,
    to_json,
)
from gitstore.core.names import CONV, JSON_DOCUMENTS, META, SOW_DOCUMENT
from gitstore.core.time import format_rfc3339
from gitstore.core.versions import (
    Scenario,
    Version,
    check_expected,
    next_correction,
    next_follow_up,
    next_scenario,
)
from gitstore.errors import (
    InvalidDocumentError,
    NotFoundError,
    RenderError,
    UsageError,
    VersionRuleError,
    Violation,
)
from gitstore.git import repo as backend
from gitstore.store import groupcommit, history
from gitstore.store.context import CustomerContext
from gitstore.store.history import Snapshot
from gitstore.store.replays import SUMMARY, Intent, turn_key
from gitstore.store.tip import State, load_doc, load_shared, read_state, remember, require_open
from gitstore.store.writer import (
    RETRY_WINDOW,
    Authorship,
    Build,
    Plan,
    Writer,
    Written,
    authorship,
)


class Session:
    """One deployment scenario of a customer: ``refs/heads/vN``."""

    #: The write that opened the scenario, on a session returned by :meth:`create`.
    created: Written | None = None

    def __init__(self, customer: CustomerContext, scenario: Scenario) -> None:
        self.customer = customer
        self.scenario = scenario
        self.writer = Writer(customer)

    def __repr__(self) -> str:
        return f"Session({self.customer.name!r}, {str(self.scenario)!r})"

    # -- reading ---------------------------------------------------------
    @property
    def state(self) -> State:
        """The scenario's tip, its version and its files (an audited read)."""
        state = read_state(self.customer.repo, self.scenario)
        self.customer.audit("state", rev=str(self.scenario), commit=state.tip)
        return state

    @property
    def version(self) -> Version:
        return self.state.version

    @property
    def session_id(self) -> str:
        return self.state.session_id

    @property
    def is_open(self) -> bool:
        return not self.state.finalized

    def read(self, rev: str | Version | None = None) -> Snapshot:
        """The session files at its newest state, or at ``rev`` (a version of it)."""
        return history.read(self.customer, rev if rev is not None else self.scenario)

    def after_turn(self, turn: int) -> Snapshot:
        """The session exactly as it stood right after turn ``turn`` was added
        (not "as of a second": see :func:`gitstore.store.history.read_after_turn`)."""
        return history.read_after_turn(self.customer, self.scenario, turn)

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The latest ``limit`` turns (all when None), oldest first. ``limit`` is
        an int >= 0 or a string of digits; anything else is a UsageError.

        For an agent's context window: only ``conversation.json`` is read, and
        of it only the returned turns are parsed (the rest is scanned); stored
        in parts, only its last chunks are parsed (a process that has not read
        the tip yet still reads and checks every part once)."""
        limit = count(limit, "history limit")
        repo = self.customer.repo
        tip = repo.ref_target(self.scenario.branch_ref)
        if tip is None:
            raise NotFoundError(f"{self.customer.name} has no scenario {self.scenario}")
        self.customer.audit("history", rev=str(self.scenario), commit=tip, document=CONV)
        found = repo.split_of(tip) if limit is not None and repo.codec is None else None
        if found is not None and limit is not None:  # the last chunks hold the last turns
            tail = _last_turns(found[1], limit)
            if tail is not None:
                return tail
        data = repo.read_file(tip, CONV)
        if data is None:
            return []
        if limit is not None:
            tail = canonical.tail_items(data, "conversation_turns", limit,
                                        repo.turns_span(tip, data))
            if tail is not None:
                return tail
        turns = canonical.loads(data).get("conversation_turns", [])
        return list(turns if limit is None else turns[-limit:] if limit else [])

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def create(cls, customer: CustomerContext, *, session_id: str | None = None,
               created: str | datetime | None = None, metadata: Any = None,
               version: str | Version | None = None, message: str | None = None,
               author: str | Identity | None = None, at: datetime | str | None = None,
               idempotency_key: str | None = None, by: Authorship | None = None,
               allow_open: bool = False) -> Session:
        """Open the next deployment scenario, ``v(N+1).0.0``, with an empty
        conversation and session metadata (``metadata`` if given, else a minimal
        ``session_info``). While another scenario of the customer is open (not
        finalized and not expired) this is refused with a VersionRuleError, so a
        ``new`` run twice by accident opens one scenario, not two; ``allow_open``
        starts another anyway (CLI ``--new-scenario``). The new session is the
        returned session's :attr:`created` write. ``created`` is an RFC 3339
        string or an aware datetime (default: the write time). ``version``, if
        given, must equal the computed one. ``author``, ``at`` and
        ``idempotency_key`` are as for every write (see
        :class:`~gitstore.store.writer.Authorship`)."""
        store = customer.store
        writer = Writer(customer)
        by = by or authorship(author, at, idempotency_key, Intent(ChangeKind.CREATE))
        sid = check_session_id(session_id or f"orchestrator-session-{uuid.uuid4()}")
        expected = as_version(version)  # a bad version string fails before any work
        limit = store.config.max_document_bytes
        meta_doc = to_json(metadata, META, limit) if metadata is not None else None
        redacted = None
        if meta_doc is not None:
            meta_doc, redacted = writer.scrub(META, meta_doc)
        message = text_or_none(message, "message")
        if isinstance(created, datetime):
            created = format_rfc3339(history.moment(created, "created"))
        created_at = text_or_none(created, "created") or format_rfc3339(by.time or store.now())
        if created is not None and meta_doc is not None:  # both say when: they must agree
            meta_doc = _with_created(meta_doc, created_at)

        def build(used: list[Scenario]) -> Plan:
            if not allow_open:  # under the writer lock: two racing `new`s open one
                _refuse_open(customer)
            # a scenario number is never reused, even after retention removed it
            new = check_expected("new session", next_scenario(used),
                                 expected, [Version(s.major) for s in used])
            meta = meta_doc if meta_doc is not None else {"session_info": {
                "created_timestamp": created_at, "completed_timestamp": None,
                "session_duration_minutes": None}}
            meta = fill_metadata(meta, customer.name, sid, new, customer.api_key)
            conv = {"session_id": sid, "conversation_turns": [],
                    "conversation_summary": {"total_turns": 0}}
            files = {CONV: canonical.dumps(conv), META: canonical.dumps(meta)}
            return Plan(files, new, ChangeKind.CREATE, message or f"{new}: start session {sid}",
                        frozenset(files), redacted=redacted)

        written = writer.create(sid, build, by)
        session = cls(customer, written.version.scenario)
        session.created = written
        return session

    def append_turn(self, turn: Any, *, message: str | None = None,
                    author: str | Identity | None = None, at: datetime | str | None = None,
                    idempotency_key: str | None = None) -> Written:
        """Add one conversation turn to the open version.

        ``turn_id`` may be omitted; then the turn is placed by its timestamp
        (the seed's ``timestamp_based_ordering`` for concurrent writers): after
        every turn stamped at or before it, and ids are renumbered 1..n behind
        it. Turns of versions already finalized never move: a turn older than
        those is refused by the timestamp check. A given ``turn_id`` must be the
        next one. ``total_turns`` is kept equal to the number of turns.

        Without an ``idempotency_key`` the turn's content is its key: the same turn
        (equal canonical JSON, ``turn_id`` aside) sent again within
        :data:`~gitstore.store.writer.RETRY_WINDOW` of the first (write times, among
        the scenario's newest :data:`~gitstore.store.writer.RETRY_SCAN` commits)
        returns the first write (``replayed``) instead of storing a copy.

        When another writer holds the customer's lock, the turn waits in the spool
        and may be written by that writer, together with others, still as a commit
        of its own (:mod:`gitstore.store.groupcommit`)."""
        message = text_or_none(message, "message")
        limit = self.customer.store.config.max_document_bytes
        data = to_json(turn, CONV, limit, pointer="/conversation_turns/-")
        if not isinstance(data, dict):
            raise InvalidDocumentError([Violation(CONV, "/conversation_turns/-",
                                                  "a turn must be a JSON object", "json")])
        data, redacted = self.writer.scrub(CONV, data, "/conversation_turns/-")
        by = authorship(author, at, idempotency_key, Intent(ChangeKind.TURN, content=data))
        if idempotency_key is None:  # a turn sent twice within the window is stored once
            key = turn_key(data) if not self.customer.encrypted else \
                "turn-" + self.customer.sealer.key(self.scenario.major).digest(  # no plain hash
                    turn_key(data).encode())
            by = by._replace(idempotency_key=key, idempotency_window=RETRY_WINDOW)
        store = self.customer.store
        request = groupcommit.Request(data, message, redacted,
                                      by._replace(author=by.author or store.config.agent),
                                      str(store.config.agent), time.time_ns(),
                                      store.config.lock_timeout, store.profile)
        return groupcommit.append(self.writer, self.scenario, request, self._turn_plan)

    def _turn_plan(self, request: groupcommit.Request) -> Build:
        """The plan builder of a turn (this process's, or one another writer spooled:
        :mod:`gitstore.store.groupcommit`)."""
        data, message, redacted = request.turn, request.message, request.redacted

        def build(state: State) -> Plan:
            require_open(state, "add a turn to")
            conv = load_shared(state, CONV)  # turns are shared: replaced, never changed
            turns = conv.setdefault("conversation_turns", [])
            if not isinstance(turns, list):
                turns = conv["conversation_turns"] = []
            new_turn = dict(data)
            pos = len(turns)
            if "turn_id" not in new_turn:
                pos = self._position(state, turns, new_turn.get("timestamp"))
                new_turn["turn_id"] = pos + 1
            turns.insert(pos, new_turn)
            for i in range(pos + 1, len(turns)):
                if isinstance(turns[i], dict):
                    turns[i] = {**turns[i], "turn_id": i + 1}
            summary = conv.setdefault("conversation_summary", {})
            if isinstance(summary, dict):
                summary["total_turns"] = len(turns)
            n = new_turn["turn_id"] if isinstance(new_turn["turn_id"], int) else pos + 1
            repo = self.customer.repo
            stored = _conversation_parts(state, repo, conv, pos) or _conversation_bytes(
                state, conv, pos, repo.turns_span(state.tip, sessionfiles.raw(state.files, CONV)))
            remember(stored, conv)
            files = sessionfiles.updated(state.files, {CONV: stored})
            return Plan(files, state.version, ChangeKind.TURN,
                         message or f"{state.version}: add turn {n}", frozenset({CONV}),
                         turn=n, redacted=redacted, parsed={CONV: conv}, changed_turns=(pos,))

        return build

    def _position(self, state: State, turns: list[Any], stamp: Any) -> int:
        """Where a turn stamped ``stamp`` goes: after every turn stamped at or
        before it, but never among the turns of finalized versions."""
        when = parse_ts(stamp)
        pos = len(turns)
        if when is None:
            return pos
        while pos > 0:
            before = parse_ts(turns[pos - 1].get("timestamp")) if isinstance(turns[pos - 1], dict) \
                else None
            if before is None or before <= when:
                break
            pos -= 1
        if pos < len(turns):
            pos = max(pos, self._frozen_turns(state))
        return pos

    def _frozen_turns(self, state: State) -> int:
        """How many turns the scenario's newest finalized version holds."""
        if not state.tags:
            return 0
        repo = self.customer.repo
        tag = repo.tag(str(max(state.tags)))
        data = repo.read_file(tag.target, CONV) if tag else None
        try:
            return len(canonical.loads(data)["conversation_turns"]) if data else 0
        except (canonical.JSONParseError, KeyError, TypeError):
            return 0

    def put(self, document: str, data: Any, *, message: str | None = None,
            author: str | Identity | None = None, at: datetime | str | None = None,
            idempotency_key: str | None = None) -> Written:
        """Replace one JSON document of the open version."""
        name = document_name(document, allow_sow=False)
        message = text_or_none(message, "message")
        doc = to_json(data, name, self.customer.store.config.max_document_bytes)
        doc, redacted = self.writer.scrub(name, doc)

        def build(state: State) -> Plan:
            require_open(state, f"update {name} of")
            new = fill(name, copy.deepcopy(doc), self.customer.name, state.session_id,
                       state.version, self.customer.api_key)
            data = canonical.dumps(new)
            if isinstance(new, dict):  # the next write on this tip parses nothing (put, turns)
                remember(data, new)
            files = {**state.files, name: data}
            return Plan(files, state.version, ChangeKind.UPDATE,
                         message or f"{state.version}: update {name}", frozenset({name}),
                         redacted=redacted, parsed={name: new})

        return self.writer.write(self.scenario, build, authorship(
            author, at, idempotency_key, Intent(ChangeKind.UPDATE, name, doc)))

    def set_summary(self, summary: Any, *, message: str | None = None,
                    author: str | Identity | None = None, at: datetime | str | None = None,
                    idempotency_key: str | None = None) -> Written:
        """Replace ``conversation_summary`` (``total_turns`` is filled if omitted)."""
        message = text_or_none(message, "message")
        data = to_json(summary, CONV, self.customer.store.config.max_document_bytes,
                       pointer="/conversation_summary")
        data, redacted = self.writer.scrub(CONV, data, "/conversation_summary")

        def build(state: State) -> Plan:
            require_open(state, "update the summary of")
            conv = load_doc(state, CONV)
            new = copy.deepcopy(data)
            if isinstance(new, dict):
                new.setdefault("total_turns", len(conv.get("conversation_turns", [])))
            conv["conversation_summary"] = new
            files = {**state.files, CONV: canonical.dumps(conv)}
            return Plan(files, state.version, ChangeKind.UPDATE,
                         message or f"{state.version}: update conversation summary",
                         frozenset({CONV}), redacted=redacted, parsed={CONV: conv},
                         changed_turns=())

        return self.writer.write(self.scenario, build, authorship(
            author, at, idempotency_key, Intent(ChangeKind.UPDATE, CONV, data, SUMMARY)))

    def finalize(self, *, message: str | None = None, version: str | Version | None = None,
                 author: str | Identity | None = None, at: datetime | str | None = None,
                 idempotency_key: str | None = None) -> Written:
        """Conclude the open version: render the SOW, enforce completeness, cut the tag."""
        message = text_or_none(message, "message")
        expected = as_version(version)

        def build(state: State) -> Plan:
            require_open(state, "finalize")
            check_expected("finalize", state.version, expected)
            files = dict(state.files)
            derived = fill_derived(files)
            files, failed = self._with_sow(files, state.version)
            return Plan(files, state.version, ChangeKind.FINALIZE, f"{state.version}: finalize",
                         frozenset({SOW_DOCUMENT, *derived}), finalizing=True,
                         render_error=failed,
                         reason=message or "conversation concluded")

        return self.writer.write(self.scenario, build, authorship(
            author, at, idempotency_key, Intent(ChangeKind.FINALIZE)))

    def follow_up(self, *, message: str | None = None, version: str | Version | None = None,
                  author: str | Identity | None = None, at: datetime | str | None = None,
                  idempotency_key: str | None = None) -> Written:
        """Open the next minor version for a follow-up conversation.

        The metadata is reopened: ``session_version`` becomes the new version,
        ``completed_timestamp`` and ``session_duration_minutes`` are cleared and
        ``completion_status`` (if present) becomes ``in_progress``. The SOW is
        dropped until the new version is finalized."""
        message = text_or_none(message, "message")
        expected = as_version(version)

        def build(state: State) -> Plan:
            new = next_follow_up(state.rules)
            check_expected("follow-up", new, expected, state.tags)
            meta = load_doc(state, META)
            info = meta.setdefault("session_info", {})
            info["session_version"] = str(new)
            info["completed_timestamp"] = None
            info["session_duration_minutes"] = None
            workflow = meta.get("workflow_tracking")
            if isinstance(workflow, dict) and "completion_status" in workflow:
                workflow["completion_status"] = "in_progress"
            files = {k: v for k, v in state.files.items() if k != SOW_DOCUMENT}
            files[META] = canonical.dumps(meta)
            return Plan(files, new, ChangeKind.FOLLOW_UP,
                         f"{new}: open follow-up to {state.version}",
                         frozenset({META}), reason=message)

        return self.writer.write(self.scenario, build, authorship(
            author, at, idempotency_key, Intent(ChangeKind.FOLLOW_UP)))

    def correct(self, documents: Mapping[str, Any], *, reason: str,
                base: str | Version | None = None, version: str | Version | None = None,
                author: str | Identity | None = None, at: datetime | str | None = None,
                idempotency_key: str | None = None) -> Written:
        """Publish a data correction as the next patch version, in one step.

        ``documents`` maps document names to their corrected content. ``base``
        is the version being corrected (must be the scenario's newest);
        ``reason`` says why, and goes into the commit and the tag."""
        if not text_or_none(reason, "reason") or not reason.strip():
            raise UsageError("a correction needs a reason")
        if not isinstance(documents, Mapping):
            raise UsageError(f"a correction's documents map names to content (a dict), not "
                             f"{type(documents).__name__}")
        if not documents:
            raise UsageError("a correction needs at least one corrected document")
        limit = self.customer.store.config.max_document_bytes
        docs = {}
        redactions = []
        for key, value in documents.items():
            name = document_name(key, allow_sow=False)
            docs[name], found = self.writer.scrub(name, to_json(value, name, limit))
            redactions += [found] if found else []
        base_v, expected = as_version(base), as_version(version)

        def build(state: State) -> Plan:
            new = next_correction(state.rules, base_v)
            check_expected("correction", new, expected, state.tags)
            files = dict(state.files)
            for name, doc in docs.items():
                files[name] = canonical.dumps(fill(name, copy.deepcopy(doc), self.customer.name,
                                                   state.session_id, new, self.customer.api_key))
            if META in files and META not in docs:
                meta = canonical.loads(files[META])
                if isinstance(meta.get("session_info"), dict):
                    meta["session_info"]["session_version"] = str(new)
                files[META] = canonical.dumps(meta)
            if all(files.get(n) == state.files.get(n) for n in docs):
                raise UsageError(f"the correction changes nothing in {', '.join(sorted(docs))}")
            derived = fill_derived(files)
            files, failed = self._with_sow(files, new)
            return Plan(files, new, ChangeKind.CORRECTION,
                         f"{new}: correct {', '.join(sorted(docs))} of {state.version}",
                         frozenset({*docs, *derived, META, SOW_DOCUMENT}), finalizing=True,
                        render_error=failed,
                         reason=reason.strip(), redacted="; ".join(redactions) or None)

        return self.writer.write(self.scenario, build, authorship(
            author, at, idempotency_key, Intent(ChangeKind.CORRECTION, content=docs)))


    def _with_sow(self, files: dict[str, bytes], version: Version
                  ) -> tuple[dict[str, bytes], str | None]:
        """Render the SOW into ``files``; on failure leave it out and return why
        (the pipeline then reports the missing documents and fields with it)."""
        files.pop(SOW_DOCUMENT, None)
        try:
            docs = {n: canonical.loads(files[n]) for n in JSON_DOCUMENTS if n in files}
            if len(docs) == len(JSON_DOCUMENTS):
                text = render.render_sow(docs, customer=self.customer.name, version=version,
                                         template_dir=self.customer.store.config.templates)
                files[SOW_DOCUMENT] = text.encode("utf-8")
        except (canonical.JSONParseError, RenderError) as exc:
            return files, str(exc)
        return files, None


# -- helpers -------------------------------------------------------------------

def _with_created(meta: Any, created: str) -> Any:
    """``meta`` with ``created`` as its ``created_timestamp`` (UsageError if it records
    another moment)."""
    info = meta.get("session_info") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        return meta
    stated = info.get("created_timestamp")
    if stated is None:
        return {**meta, "session_info": {**info, "created_timestamp": created}}
    when = parse_ts(stated)
    if stated != created and (when is None or when != parse_ts(created)):
        raise UsageError(f"created is {created!r} but the metadata's "
                         f"session_info.created_timestamp is {stated!r}; give one of them")
    return meta


def _refuse_open(customer: CustomerContext) -> None:
    """VersionRuleError if a scenario of ``customer`` is open (not finalized, not
    expired, not purged)."""
    for scenario in customer.scenarios():
        try:
            state = read_state(customer.repo, scenario)
        except (VersionRuleError, NotFoundError):  # purged, or not gitstore's to judge
            continue
        if not state.finalized and state.info.change != ChangeKind.EXPIRE:
            raise VersionRuleError(
                f"{customer.name} already has an open scenario: {scenario} ({state.version}, "
                f"session {state.session_id}); add to it, finalize it, or pass --new-scenario "
                "(allow_open=True) to start another deployment scenario anyway")



def _last_turns(parts: layout.Split, limit: int) -> list[dict[str, Any]] | None:
    """The last ``limit`` turns of a conversation held in ``parts``, read from its
    last chunks only (None when a chunk is not an array of turn objects)."""
    turns: list[Any] = []
    for chunk in reversed(parts.chunks):
        if len(turns) >= limit:
            break
        items = canonical.loads_cached(chunk)
        if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
            return None
        turns[:0] = items
    return turns[max(0, len(turns) - limit):] if limit else []


def _conversation_parts(state: State, repo: backend.Repo, conv: dict[str, Any],
                        pos: int) -> layout.Joined | None:
    """``conv`` (the tip's conversation with a turn added at ``pos``) as parts
    made from the tip's (:func:`gitstore.core.layout.appended`), when the tip's
    conversation is stored in parts, held by this handle, and the turn went to
    the end: an append then costs one chunk, not the whole document."""
    turns = conv["conversation_turns"]
    summary = conv.get("conversation_summary")
    total = summary.get("total_turns") if isinstance(summary, dict) else None
    if pos != len(turns) - 1 or not isinstance(total, int) or isinstance(total, bool):
        return None
    found = repo.split_of(state.tip)
    if found is None or found[0] is not sessionfiles.raw(state.files, CONV) or \
            len(found[1].chunks) < layout.MIN_CHUNKS:
        return None
    parts = layout.appended(found[1], turns[pos], total)
    if parts is None:
        return None
    joined = layout.Joined(parts)
    if os.environ.get("GITSTORE_CHECK_SPLICE") and joined.data() != canonical.dumps(conv):
        raise AssertionError("appended conversation parts differ from its canonical form")
    return joined


_TURNS_OPEN = b'\n  "conversation_turns": [\n'


def _conversation_bytes(state: State, conv: dict[str, Any], pos: int,
                        span: tuple[int, int] | None = None) -> bytes:
    """The canonical bytes of ``conv`` after a turn was added at ``pos``
    (``span``: where the tip's turns array body starts and ends, when known: then
    nothing is scanned for, and the summary is edited in the bytes before it).

    The common case, a turn added at the end, splices the new turn and the new
    ``total_turns`` into the tip's bytes instead of re-serialising the whole
    conversation (the tests prove both give the same bytes; set
    ``GITSTORE_CHECK_SPLICE=1`` to cross-check at run time)."""
    turns = conv["conversation_turns"]
    summary = conv.get("conversation_summary")
    spliced = None
    old = state.files.get(CONV)
    total = summary.get("total_turns") if isinstance(summary, dict) else None
    if old is not None and pos == len(turns) - 1 and isinstance(total, int):
        if span is not None and old[span[0] - len(_TURNS_OPEN):span[0]] != _TURNS_OPEN:
            span = None  # not where the turns array is: find it
        head = canonical.set_int_member(old[:span[0]], "conversation_summary",
                                        "total_turns", total) if span is not None else None
        if head is not None and span is not None:  # the summary precedes the turns
            spliced = canonical.append_at(old, head, span[0], span[1], turns[pos])
        if spliced is None:
            spliced = canonical.append_item(old, "conversation_turns", turns[pos])
            if spliced is not None:
                spliced = canonical.set_int_member(spliced, "conversation_summary",
                                                   "total_turns", total)
    if spliced is None:
        return canonical.dumps(conv)
    if os.environ.get("GITSTORE_CHECK_SPLICE") and spliced != canonical.dumps(conv):
        raise AssertionError("spliced conversation differs from its canonical form")
    return spliced
