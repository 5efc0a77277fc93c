"""Writing a session: the lifecycle of one deployment scenario.

A :class:`Session` is one scenario (one major version, one branch). Every write

1. takes the customer's writer lock,
2. reads the branch tip and derives the state (version, open or finalized),
3. builds the complete new tree in memory (a pure function of the tip),
4. runs the pre-commit pipeline over it (nothing is written if it fails),
5. writes blobs, tree and commit straight into the object database,
6. moves the branch with a compare-and-swap from the tip it read, and
7. for finalize and correction, creates the version's annotated tag.

If the compare-and-swap loses (a writer outside gitstore moved the branch), the
change is rebuilt on the new tip and retried; it is never forced. A crash
between steps 6 and 7 leaves a finalize commit without its tag; the next writer
to that scenario recreates the tag from the commit (``gitstore verify`` reports
it meanwhile), so a version is never lost or cut twice. A writer refuses to
build on a tip whose files do not match its ``SHA256SUMS`` (a commit made with
plain git, or damage), so a fresh manifest never launders bad data.

Store-managed fields: ``session_id`` (both documents), ``session_info.api_key``,
``session_info.session_version`` and ``conversation_summary.total_turns``. A
caller may omit them and the store fills them in; a caller that supplies them
must supply the right values, or the integrity check refuses the write.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import backend, canonical, manifest, render
from .errors import (
    ConflictError,
    InputTooLargeError,
    IntegrityError,
    InvalidDocumentError,
    NotFoundError,
    RenderError,
    UsageError,
    VersionRuleError,
    Violation,
)
from .locking import writer_lock
from .message import CommitInfo, Message, trailers
from .names import JSON_DOCUMENTS, MANIFEST, SOW_DOCUMENT, check_document
from .pipeline import Proposal
from .schema import SCHEMA_VERSION
from .versioning import (
    Scenario,
    ScenarioState,
    Version,
    check_expected,
    next_correction,
    next_follow_up,
    next_scenario,
    parse_tag_ref,
)

if TYPE_CHECKING:
    from .store import Customer, Snapshot

CONV, CTX, META, ANA = JSON_DOCUMENTS
FINAL_CHANGES = ("finalize", "correction")
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Written:
    """What a write produced: the new commit, its version and change kind.

    ``tag`` is the annotated tag's object id when the write finalized a version;
    ``manifest`` is the ``sha256:`` digest of the commit's SHA256SUMS.
    """

    commit: str
    version: Version
    change: str
    manifest: str
    completeness: int | None = None
    turn: int | None = None
    tag: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "version": str(self.version), "change": self.change,
                "turn": self.turn, "completeness": self.completeness,
                "manifest": self.manifest, "tag": self.tag}


@dataclass(frozen=True)
class State:
    """A scenario's branch tip and what follows from it."""

    tip: str
    info: CommitInfo
    version: Version
    session_id: str
    finalized: bool
    files: dict[str, bytes]
    tags: tuple[Version, ...]

    @property
    def rules(self) -> ScenarioState:
        return ScenarioState(self.version.scenario, self.version, self.finalized, self.tags)


@dataclass
class _Plan:
    files: dict[str, bytes]
    version: Version
    change: str
    summary: str
    changed: frozenset[str]
    finalizing: bool = False
    turn: int | None = None
    reason: str | None = None


class Session:
    """One deployment scenario of a customer: ``refs/heads/vN``."""

    def __init__(self, customer: Customer, scenario: Scenario) -> None:
        self.customer = customer
        self.scenario = scenario

    def __repr__(self) -> str:
        return f"Session({self.customer.name!r}, {str(self.scenario)!r})"

    # -- reading ---------------------------------------------------------
    @property
    def state(self) -> State:
        return _read_state(self.customer.repo, self.scenario)

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
        return self.customer.read(rev if rev is not None else self.scenario)

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The latest ``limit`` turns (all when None), oldest first.

        For an agent's context window: only ``conversation.json`` is read, and
        of it only the returned turns are parsed (the rest is scanned)."""
        if limit is not None and limit < 0:
            raise UsageError("history limit must be >= 0")
        repo = self.customer.repo
        tip = repo.ref_target(self.scenario.branch_ref)
        if tip is None:
            raise NotFoundError(f"{self.customer.name} has no scenario {self.scenario}")
        data = repo.read_file(tip, CONV)
        self.customer._audit("history", rev=str(self.scenario), commit=tip, document=CONV)
        if data is None:
            return []
        if limit is not None:
            tail = canonical.tail_items(data, "conversation_turns", limit)
            if tail is not None:
                return tail
        turns = canonical.loads(data).get("conversation_turns", [])
        return list(turns if limit is None else turns[-limit:] if limit else [])

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def create(cls, customer: Customer, *, session_id: str | None = None,
               created: str | None = None, metadata: Any = None,
               version: str | Version | None = None, message: str | None = None) -> Session:
        """Open the next deployment scenario, ``v(N+1).0.0``, with an empty
        conversation and session metadata (``metadata`` if given, else a minimal
        ``session_info``). ``version``, if given, must equal the computed one."""
        store = customer.store
        sid = _check_session_id(session_id or f"orchestrator-session-{uuid.uuid4()}")
        limit = store.config.max_document_bytes
        meta_doc = to_json(metadata, META, limit) if metadata is not None else None
        with writer_lock(store.lock_dir, customer.name, store.config.lock_timeout):
            existing = customer.scenarios()
            new = check_expected("new session", next_scenario(existing),
                                 _as_version(version), [Version(s.major) for s in existing])
            created_at = created or store.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            if meta_doc is None:
                meta_doc = {"session_info": {"created_timestamp": created_at,
                                             "completed_timestamp": None,
                                             "session_duration_minutes": None}}
            meta_doc = _fill_metadata(meta_doc, customer.name, sid, new)
            conv = {"session_id": sid, "conversation_turns": [],
                    "conversation_summary": {"total_turns": 0}}
            files = {CONV: canonical.dumps(conv), META: canonical.dumps(meta_doc)}
            plan = _Plan(files, new, "create", message or f"{new}: start session {sid}",
                         frozenset(files))
            session = cls(customer, new.scenario)
            checked = session._check(sid, plan)  # before the repository is created
            repo = customer._ensure_repo()
            written = session._commit(repo, None, sid, plan, checked)
            if written is None:
                raise ConflictError(f"scenario {new.scenario} of {customer.name} was created "
                                    "by a writer outside gitstore")
            newest = max([*existing, new.scenario])
            repo.set_head(newest.branch_ref)
            customer._audit("write:create", rev=str(new), commit=written.commit)
        return session

    def append_turn(self, turn: Any, *, message: str | None = None) -> Written:
        """Append one conversation turn to the open version.

        ``turn_id`` may be omitted (the next id is assigned); if given it must be
        the next one. ``total_turns`` is kept equal to the number of turns."""
        limit = self.customer.store.config.max_document_bytes
        data = to_json(turn, CONV, limit, pointer="/conversation_turns/-")
        if not isinstance(data, dict):
            raise InvalidDocumentError([Violation(CONV, "/conversation_turns/-",
                                                  "a turn must be a JSON object", "json")])

        def build(state: State) -> _Plan:
            _require_open(state, "add a turn to")
            conv = _load(state, CONV)
            turns = conv.setdefault("conversation_turns", [])
            new_turn = dict(data)
            new_turn.setdefault("turn_id", len(turns) + 1)
            turns.append(new_turn)
            summary = conv.setdefault("conversation_summary", {})
            if isinstance(summary, dict):
                summary["total_turns"] = len(turns)
            n = new_turn["turn_id"] if isinstance(new_turn["turn_id"], int) else len(turns)
            files = {**state.files, CONV: canonical.dumps(conv)}
            return _Plan(files, state.version, "turn",
                         message or f"{state.version}: add turn {n}", frozenset({CONV}),
                         turn=n)

        return self._write(build)

    def put(self, document: str, data: Any, *, message: str | None = None) -> Written:
        """Replace one JSON document of the open version."""
        name = check_document(document, allow_sow=False)
        doc = to_json(data, name, self.customer.store.config.max_document_bytes)

        def build(state: State) -> _Plan:
            _require_open(state, f"update {name} of")
            new = _fill(name, copy.deepcopy(doc), self.customer.name, state.session_id,
                        state.version)
            files = {**state.files, name: canonical.dumps(new)}
            return _Plan(files, state.version, "update",
                         message or f"{state.version}: update {name}", frozenset({name}))

        return self._write(build)

    def set_summary(self, summary: Any, *, message: str | None = None) -> Written:
        """Replace ``conversation_summary`` (``total_turns`` is filled if omitted)."""
        data = to_json(summary, CONV, self.customer.store.config.max_document_bytes,
                       pointer="/conversation_summary")

        def build(state: State) -> _Plan:
            _require_open(state, "update the summary of")
            conv = _load(state, CONV)
            new = copy.deepcopy(data)
            if isinstance(new, dict):
                new.setdefault("total_turns", len(conv.get("conversation_turns", [])))
            conv["conversation_summary"] = new
            files = {**state.files, CONV: canonical.dumps(conv)}
            return _Plan(files, state.version, "update",
                         message or f"{state.version}: update conversation summary",
                         frozenset({CONV}))

        return self._write(build)

    def finalize(self, *, message: str | None = None,
                 version: str | Version | None = None) -> Written:
        """Conclude the open version: render the SOW, enforce completeness, cut the tag."""
        expected = _as_version(version)

        def build(state: State) -> _Plan:
            _require_open(state, "finalize")
            check_expected("finalize", state.version, expected)
            files = self._with_sow(dict(state.files), state.version)
            return _Plan(files, state.version, "finalize", f"{state.version}: finalize",
                         frozenset({SOW_DOCUMENT}), finalizing=True,
                         reason=message or "conversation concluded")

        return self._write(build)

    def follow_up(self, *, message: str | None = None,
                  version: str | Version | None = None) -> Written:
        """Open the next minor version for a follow-up conversation.

        The metadata is reopened: ``session_version`` becomes the new version,
        ``completed_timestamp`` and ``session_duration_minutes`` are cleared and
        ``completion_status`` (if present) becomes ``in_progress``. The SOW is
        dropped until the new version is finalized."""
        expected = _as_version(version)

        def build(state: State) -> _Plan:
            new = next_follow_up(state.rules)
            check_expected("follow-up", new, expected, state.tags)
            meta = _load(state, META)
            info = meta.setdefault("session_info", {})
            info["session_version"] = str(new)
            info["completed_timestamp"] = None
            info["session_duration_minutes"] = None
            workflow = meta.get("workflow_tracking")
            if isinstance(workflow, dict) and "completion_status" in workflow:
                workflow["completion_status"] = "in_progress"
            files = {k: v for k, v in state.files.items() if k != SOW_DOCUMENT}
            files[META] = canonical.dumps(meta)
            return _Plan(files, new, "follow-up",
                         f"{new}: open follow-up to {state.version}",
                         frozenset({META}), reason=message)

        return self._write(build)

    def correct(self, documents: Mapping[str, Any], *, reason: str,
                base: str | Version | None = None,
                version: str | Version | None = None) -> Written:
        """Publish a data correction as the next patch version, in one step.

        ``documents`` maps document names to their corrected content. ``base``
        is the version being corrected (must be the scenario's newest);
        ``reason`` says why, and goes into the commit and the tag."""
        if not reason or not reason.strip():
            raise UsageError("a correction needs a reason")
        if not documents:
            raise UsageError("a correction needs at least one corrected document")
        limit = self.customer.store.config.max_document_bytes
        docs = {}
        for key, value in documents.items():
            name = check_document(key, allow_sow=False)
            docs[name] = to_json(value, name, limit)
        base_v, expected = _as_version(base), _as_version(version)

        def build(state: State) -> _Plan:
            new = next_correction(state.rules, base_v)
            check_expected("correction", new, expected, state.tags)
            files = dict(state.files)
            for name, doc in docs.items():
                files[name] = canonical.dumps(_fill(name, copy.deepcopy(doc), self.customer.name,
                                                    state.session_id, new))
            if META in files and META not in docs:
                meta = canonical.loads(files[META])
                if isinstance(meta.get("session_info"), dict):
                    meta["session_info"]["session_version"] = str(new)
                files[META] = canonical.dumps(meta)
            if all(files.get(n) == state.files.get(n) for n in docs):
                raise UsageError(f"the correction changes nothing in {', '.join(sorted(docs))}")
            files = self._with_sow(files, new)
            return _Plan(files, new, "correction",
                         f"{new}: correct {', '.join(sorted(docs))} of {state.version}",
                         frozenset({*docs, META, SOW_DOCUMENT}), finalizing=True,
                         reason=reason.strip())

        return self._write(build)

    # -- machinery -----------------------------------------------------------
    def _with_sow(self, files: dict[str, bytes], version: Version) -> dict[str, bytes]:
        """Render the SOW into ``files``; on failure leave it out and let the
        pipeline report why (missing documents and fields), then the render error."""
        files.pop(SOW_DOCUMENT, None)
        try:
            docs = {n: canonical.loads(files[n]) for n in JSON_DOCUMENTS if n in files}
            if len(docs) == len(JSON_DOCUMENTS):
                text = render.render_sow(docs, customer=self.customer.name, version=version,
                                         template_dir=self.customer.store.config.templates)
                files[SOW_DOCUMENT] = text.encode("utf-8")
        except (canonical.JSONParseError, RenderError) as exc:
            files["\0render-error"] = str(exc).encode("utf-8")
        return files

    def _write(self, build: Callable[[State], _Plan]) -> Written:
        store = self.customer.store
        with writer_lock(store.lock_dir, self.customer.name, store.config.lock_timeout):
            repo = self.customer.repo
            for _ in range(MAX_ATTEMPTS):
                state = _read_state(repo, self.scenario)
                _check_tip(self.customer.name, state)
                _repair_tag(repo, state, store.signer)
                plan = build(state)
                written = self._commit(repo, state, state.session_id, plan)
                if written is not None:
                    self.customer._audit(f"write:{written.change}", rev=str(written.version),
                                         commit=written.commit)
                    return written
        raise ConflictError(f"scenario {self.scenario} of {self.customer.name} kept moving "
                            f"under a writer outside gitstore; gave up after {MAX_ATTEMPTS} tries")

    def _check(self, session_id: str, plan: _Plan) -> tuple[dict[str, bytes], Proposal]:
        """Run the pre-commit pipeline over the planned tree (writes nothing).

        Returns the complete tree, manifest included, and the proposal the
        hooks saw (for its completeness)."""
        store = self.customer.store
        render_error = plan.files.pop("\0render-error", None)
        proposal = Proposal(customer=self.customer.name, files=plan.files,
                            version=plan.version, change=plan.change, session_id=session_id,
                            finalizing=plan.finalizing, changed=plan.changed)
        try:
            store.pipeline.run(proposal)
        except InvalidDocumentError as exc:
            if render_error is None:
                raise
            found = [v for v in exc.violations if v.file != SOW_DOCUMENT]
            found.append(Violation(SOW_DOCUMENT, "", render_error.decode(), "render"))
            raise InvalidDocumentError(found) from None
        if render_error is not None:
            raise RenderError(render_error.decode())
        assert proposal.manifest is not None
        files = {**plan.files, MANIFEST: proposal.manifest}
        limit = store.config.max_document_bytes
        for name, data in files.items():
            if len(data) > limit:
                raise InputTooLargeError(f"{name} would be {len(data)} bytes; the store's limit "
                                         f"is {limit} (max_document_bytes)")
        return files, proposal

    def _commit(self, repo: backend.Repo, state: State | None, session_id: str,
                plan: _Plan, checked: tuple[dict[str, bytes], Proposal] | None = None
                ) -> Written | None:
        """Check (unless already ``checked``), write and publish one commit.

        Returns None when the compare-and-swap lost to another writer."""
        store = self.customer.store
        files, proposal = checked or self._check(session_id, plan)
        if state is not None and files == state.files and not plan.finalizing \
                and plan.change in ("update", "turn"):
            return Written(state.tip, state.version, "unchanged",
                           manifest.digest(files[MANIFEST]))
        tree = repo.write_tree(files)
        digest = manifest.digest(files[MANIFEST])
        agent = store.config.agent
        msg = Message(plan.summary, trailers([
            ("Session-Id", session_id),
            ("Session-Version", plan.version),
            ("Change", plan.change),
            ("Turn", plan.turn),
            ("Documents", ", ".join(sorted(n for n in plan.changed if n in files)) or None),
            ("Reason", plan.reason),
            ("Agent", agent.name),
            ("Completeness", proposal.completeness),
            ("Schema-Version", SCHEMA_VERSION),
            ("Manifest", digest),
        ]))
        now = store.now()
        ts, offset = int(now.timestamp()), _offset_minutes(now)
        commit = repo.write_commit(tree=tree, parents=[state.tip] if state else [],
                                   author=agent, committer=store.config.committer,
                                   message=msg.format(), time=ts, offset=offset,
                                   sign=store.signer)
        try:
            repo.update_ref(plan.version.scenario.branch_ref, commit,
                            state.tip if state else None, f"gitstore: {plan.summary}")
        except backend.RefConflict:
            return None
        tag_id = None
        if plan.finalizing:
            tag_id = _cut_tag(repo, commit, repo.commit(commit), ts, offset, store.signer)
        return Written(commit, plan.version, plan.change, digest, proposal.completeness,
                       plan.turn, tag_id)


# -- helpers -------------------------------------------------------------------

def to_json(data: Any, name: str, limit: int, pointer: str = "") -> Any:
    """Turn caller input (bytes, str, path, dict/list or pydantic model) into JSON data.

    Raw input is parsed strictly; every input is bounded by ``limit`` bytes."""
    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(data, os.PathLike):
        path = Path(data)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise NotFoundError(f"cannot read {path}: {exc.strerror}") from None
        if size > limit:
            raise InputTooLargeError(f"{path} is {size} bytes; the store's limit is {limit}")
        data = path.read_bytes()
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if isinstance(data, bytes | bytearray):
        if len(data) > limit:
            raise InputTooLargeError(f"{name} input is {len(data)} bytes; the store's limit "
                                     f"is {limit} (max_document_bytes)")
        try:
            return canonical.loads(bytes(data))
        except canonical.JSONParseError as exc:
            raise InvalidDocumentError([Violation(name, pointer, f"malformed JSON: {exc}",
                                                  "json")]) from None
    try:
        encoded = canonical.dumps(data)
    except (canonical.JSONParseError, TypeError) as exc:
        raise InvalidDocumentError([Violation(name, pointer, f"not JSON data: {exc}",
                                              "json")]) from None
    if len(encoded) > limit:
        raise InputTooLargeError(f"{name} is {len(encoded)} bytes; the store's limit is {limit}")
    return canonical.loads(encoded)


def _fill(name: str, doc: Any, customer: str, session_id: str, version: Version) -> Any:
    if name == META:
        return _fill_metadata(doc, customer, session_id, version)
    if name == CONV and isinstance(doc, dict):
        doc.setdefault("session_id", session_id)
        turns = doc.get("conversation_turns")
        summary = doc.setdefault("conversation_summary", {})
        if isinstance(summary, dict) and isinstance(turns, list):
            summary.setdefault("total_turns", len(turns))
    return doc


def _fill_metadata(doc: Any, customer: str, session_id: str, version: Version) -> Any:
    if isinstance(doc, dict) and isinstance(doc.get("session_info"), dict):
        info = doc["session_info"]
        info.setdefault("session_id", session_id)
        info.setdefault("api_key", customer)
        info.setdefault("session_version", str(version))
    return doc


def _check_session_id(sid: str) -> str:
    if not isinstance(sid, str) or not sid or len(sid) > 200 or not sid.isprintable() \
            or sid != sid.strip():
        raise UsageError(f"invalid session id {sid!r}: 1-200 printable characters, no "
                         "surrounding spaces")
    return sid


def _as_version(value: str | Version | None) -> Version | None:
    if value is None or isinstance(value, Version):
        return value
    return Version.parse(value)


def _load(state: State, name: str) -> Any:
    if name not in state.files:
        return {}
    return canonical.loads(state.files[name])


def _require_open(state: State, what: str) -> None:
    if state.finalized:
        raise VersionRuleError(
            f"cannot {what} {state.version}: it is finalized; start a follow-up "
            "conversation (follow-up) or publish a data correction (correct)")


def _offset_minutes(now: Any) -> int:
    off = now.utcoffset()
    return int(off.total_seconds() // 60) if off else 0


def _read_state(repo: backend.Repo, scenario: Scenario) -> State:
    tip = repo.ref_target(scenario.branch_ref)
    if tip is None:
        raise NotFoundError(f"{repo.path.name} has no scenario {scenario}")
    info = repo.commit(tip)
    files = repo.read_tree(tip)
    from .store import version_of

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
    finalized = version in tags or info.trailer("Change") in FINAL_CHANGES
    assert session_id is not None
    return State(tip, info, version, session_id, finalized, files, tags)


_verified_trees: set[str] = set()


def _check_tip(customer: str, state: State) -> None:
    """Refuse to build on a tip whose files do not match its manifest (a commit
    made with plain git, or damage): the new commit's fresh manifest would
    otherwise launder the bad data. A tree id pins its content, so each tree is
    checked once per process."""
    if state.info.tree_id in _verified_trees:
        return
    problems = manifest.verify(state.files)
    if problems:
        shown = "; ".join(str(v) for v in problems[:3])
        raise IntegrityError(f"refusing to write on top of {customer} {state.version} "
                             f"({state.tip[:12]}): {shown}; run `gitstore verify {customer}`",
                             [str(v) for v in problems])
    if len(_verified_trees) > 4096:
        _verified_trees.clear()
    _verified_trees.add(state.info.tree_id)


def _tag_message(info: CommitInfo) -> str:
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


def _cut_tag(repo: backend.Repo, commit: str, info: CommitInfo, ts: int, offset: int,
             sign: Callable[[bytes], bytes] | None) -> str:
    version = info.trailer("Session-Version") or "?"
    try:
        return repo.create_tag(version, commit, tagger=info.author, message=_tag_message(info),
                               time=ts, offset=offset, sign=sign)
    except backend.RefConflict:
        raise ConflictError(f"tag {version} already exists; versions are never reused") from None


def _repair_tag(repo: backend.Repo, state: State,
                sign: Callable[[bytes], bytes] | None) -> None:
    """Recreate the tag of a finalize/correction commit left untagged by a crash."""
    if state.info.trailer("Change") in FINAL_CHANGES and state.version not in state.tags:
        _cut_tag(repo, state.tip, state.info, state.info.time, state.info.offset, sign)
