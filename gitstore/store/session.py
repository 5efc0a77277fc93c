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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitstore.core import canonical, manifest, render
from gitstore.core.commits import Message, trailers
from gitstore.core.documents import (
    as_version,
    check_session_id,
    fill,
    fill_metadata,
    offset_minutes,
    parse_ts,
    to_json,
)
from gitstore.core.names import JSON_DOCUMENTS, MANIFEST, SOW_DOCUMENT, check_document
from gitstore.core.schema import SCHEMA_VERSION
from gitstore.core.versions import (
    Scenario,
    Version,
    check_expected,
    next_correction,
    next_follow_up,
    next_scenario,
)
from gitstore.errors import (
    ConflictError,
    GitStoreError,
    InputTooLargeError,
    InvalidDocumentError,
    NotFoundError,
    RenderError,
    UsageError,
    Violation,
)
from gitstore.git import repo as backend
from gitstore.git.locking import writer_lock
from gitstore.rules.proposal import Proposal
from gitstore.store.tip import (
    State,
    check_tip,
    cut_tag,
    load_doc,
    read_state,
    repair_tag,
    require_open,
)

if TYPE_CHECKING:
    from gitstore.store.facade import Customer, Snapshot

CONV, CTX, META, ANA = JSON_DOCUMENTS
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
    redacted: str | None = None
    parsed: dict[str, Any] = field(default_factory=dict)
    changed_turns: tuple[int, ...] | None = None


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
        """The scenario's tip, its version and its files (an audited read)."""
        state = read_state(self.customer.repo, self.scenario)
        self.customer._audit("state", rev=str(self.scenario), commit=state.tip)
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
        sid = check_session_id(session_id or f"orchestrator-session-{uuid.uuid4()}")
        limit = store.config.max_document_bytes
        meta_doc = to_json(metadata, META, limit) if metadata is not None else None
        redacted = None
        if meta_doc is not None:
            meta_doc, redacted = cls(customer, Scenario(1))._scrub(META, meta_doc)
        with writer_lock(store.lock_dir, customer.name, store.config.lock_timeout):
            existing = customer.scenarios()
            # a scenario number is never reused, even after retention removed it
            used = [*existing, *customer._retired_scenarios()]
            new = check_expected("new session", next_scenario(used),
                                 as_version(version), [Version(s.major) for s in used])
            created_at = created or store.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            if meta_doc is None:
                meta_doc = {"session_info": {"created_timestamp": created_at,
                                             "completed_timestamp": None,
                                             "session_duration_minutes": None}}
            meta_doc = fill_metadata(meta_doc, customer.name, sid, new, customer.api_key)
            conv = {"session_id": sid, "conversation_turns": [],
                    "conversation_summary": {"total_turns": 0}}
            files = {CONV: canonical.dumps(conv), META: canonical.dumps(meta_doc)}
            plan = _Plan(files, new, "create", message or f"{new}: start session {sid}",
                         frozenset(files), redacted=redacted)
            session = cls(customer, new.scenario)
            checked = session._check(sid, plan)  # before the repository is created
            repo = customer._ensure_repo()
            for name in repo.clear_stale_locks():
                customer._audit("repair:stale-lock", document=name,
                                detail="removed a lock file left by a dead process")
            repo.config_set("gitstore.lastScenario", str(new.major))
            written = session._commit(repo, None, sid, plan, checked)
            if written is None:
                raise ConflictError(f"scenario {new.scenario} of {customer.name} was created "
                                    "by a writer outside gitstore")
            newest = max([*existing, new.scenario])
            repo.set_head(newest.branch_ref)
            customer._audit("write:create", rev=str(new), commit=written.commit)
        return session

    def append_turn(self, turn: Any, *, message: str | None = None) -> Written:
        """Add one conversation turn to the open version.

        ``turn_id`` may be omitted; then the turn is placed by its timestamp
        (the seed's ``timestamp_based_ordering`` for concurrent writers): after
        every turn stamped at or before it, and ids are renumbered 1..n behind
        it. Turns of versions already finalized never move: a turn older than
        those is refused by the timestamp check. A given ``turn_id`` must be the
        next one. ``total_turns`` is kept equal to the number of turns."""
        limit = self.customer.store.config.max_document_bytes
        data = to_json(turn, CONV, limit, pointer="/conversation_turns/-")
        if not isinstance(data, dict):
            raise InvalidDocumentError([Violation(CONV, "/conversation_turns/-",
                                                  "a turn must be a JSON object", "json")])
        data, redacted = self._scrub(CONV, data, "/conversation_turns/-")

        def build(state: State) -> _Plan:
            require_open(state, "add a turn to")
            conv = load_doc(state, CONV)
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
                    turns[i]["turn_id"] = i + 1
            summary = conv.setdefault("conversation_summary", {})
            if isinstance(summary, dict):
                summary["total_turns"] = len(turns)
            n = new_turn["turn_id"] if isinstance(new_turn["turn_id"], int) else pos + 1
            files = {**state.files, CONV: _conversation_bytes(state, conv, pos)}
            return _Plan(files, state.version, "turn",
                         message or f"{state.version}: add turn {n}", frozenset({CONV}),
                         turn=n, redacted=redacted, parsed={CONV: conv}, changed_turns=(pos,))

        return self._write(build)

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

    def put(self, document: str, data: Any, *, message: str | None = None) -> Written:
        """Replace one JSON document of the open version."""
        name = check_document(document, allow_sow=False)
        doc = to_json(data, name, self.customer.store.config.max_document_bytes)
        doc, redacted = self._scrub(name, doc)

        def build(state: State) -> _Plan:
            require_open(state, f"update {name} of")
            new = fill(name, copy.deepcopy(doc), self.customer.name, state.session_id,
                       state.version, self.customer.api_key)
            files = {**state.files, name: canonical.dumps(new)}
            return _Plan(files, state.version, "update",
                         message or f"{state.version}: update {name}", frozenset({name}),
                         redacted=redacted, parsed={name: new})

        return self._write(build)

    def set_summary(self, summary: Any, *, message: str | None = None) -> Written:
        """Replace ``conversation_summary`` (``total_turns`` is filled if omitted)."""
        data = to_json(summary, CONV, self.customer.store.config.max_document_bytes,
                       pointer="/conversation_summary")
        data, redacted = self._scrub(CONV, data, "/conversation_summary")

        def build(state: State) -> _Plan:
            require_open(state, "update the summary of")
            conv = load_doc(state, CONV)
            new = copy.deepcopy(data)
            if isinstance(new, dict):
                new.setdefault("total_turns", len(conv.get("conversation_turns", [])))
            conv["conversation_summary"] = new
            files = {**state.files, CONV: canonical.dumps(conv)}
            return _Plan(files, state.version, "update",
                         message or f"{state.version}: update conversation summary",
                         frozenset({CONV}), redacted=redacted, parsed={CONV: conv},
                         changed_turns=())

        return self._write(build)

    def finalize(self, *, message: str | None = None,
                 version: str | Version | None = None) -> Written:
        """Conclude the open version: render the SOW, enforce completeness, cut the tag."""
        expected = as_version(version)

        def build(state: State) -> _Plan:
            require_open(state, "finalize")
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
        expected = as_version(version)

        def build(state: State) -> _Plan:
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
        redactions = []
        for key, value in documents.items():
            name = check_document(key, allow_sow=False)
            docs[name], found = self._scrub(name, to_json(value, name, limit))
            redactions += [found] if found else []
        base_v, expected = as_version(base), as_version(version)

        def build(state: State) -> _Plan:
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
            files = self._with_sow(files, new)
            return _Plan(files, new, "correction",
                         f"{new}: correct {', '.join(sorted(docs))} of {state.version}",
                         frozenset({*docs, META, SOW_DOCUMENT}), finalizing=True,
                         reason=reason.strip(), redacted="; ".join(redactions) or None)

        return self._write(build)

    # -- machinery -----------------------------------------------------------
    def _scrub(self, name: str, data: Any, base: str = "") -> tuple[Any, str | None]:
        """Apply the store's secrets policy to incoming data, before anything is
        built from it: ``block`` findings refuse the write (values never shown),
        ``redact`` findings are replaced by ``[REDACTED:<kind>]``. With hashed
        customer names the real api_key is blocked wherever it appears. Returns
        the data to store and a summary of what was redacted (kinds, no values)."""
        from gitstore.rules import secrets

        policy = self.customer.store.secrets_policy
        key = self.customer.api_key
        info = data.get("session_info") if name == META and isinstance(data, dict) else None
        if key and isinstance(info, dict) and info.get("api_key") == key:
            data = {**data, "session_info": {**info, "api_key": self.customer.name}}
        clean, redacted, blocked = secrets.apply(data, name, policy, base=base)
        found = [Violation(f.file, f.pointer, secrets.message(f, "block"), "secrets")
                 for f in blocked]
        if key and key in canonical.dumps(clean).decode("utf-8"):
            found.append(Violation(name, base, "contains the customer's api_key, which this "
                                   "store never stores (the value is not shown)", "secrets"))
        if found:
            raise InvalidDocumentError(found)
        return clean, secrets.summary(redacted) if redacted else None

    def _after_write(self, nbytes: int) -> None:
        """Automatic maintenance (under the writer lock the caller holds). The
        write has already succeeded; a maintenance failure is logged, not raised."""
        from gitstore.ops import maintenance

        try:
            maintenance.note_write(self.customer, nbytes + 1024)
        except (GitStoreError, OSError) as exc:
            self.customer._audit("maintain", detail=f"automatic maintenance failed: {exc}")

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
            for name in repo.clear_stale_locks():
                self.customer._audit("repair:stale-lock", document=name,
                                     detail="removed a lock file left by a dead process")
            for _ in range(MAX_ATTEMPTS):
                state = read_state(repo, self.scenario)
                check_tip(self.customer.name, state)
                repair_tag(repo, state, store.signer)
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
                            finalizing=plan.finalizing, changed=plan.changed,
                            changed_turns=plan.changed_turns, parsed=plan.parsed)
        try:
            store.pipeline.run(proposal)
        except InvalidDocumentError as exc:
            if store.config.hash_names:
                exc = InvalidDocumentError(_without_key_values(exc.violations))
            if render_error is None:
                raise exc from None
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
            ("Redacted", plan.redacted),
            ("Agent", agent.name),
            ("Completeness", proposal.completeness),
            ("Schema-Version", SCHEMA_VERSION),
            ("Manifest", digest),
        ]))
        now = store.now()
        ts, offset = int(now.timestamp()), offset_minutes(now)
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
            tag_id = cut_tag(repo, commit, repo.commit(commit), ts, offset, store.signer)
        from gitstore.catalog import index as index_mod

        # the index learns of the write from its files (never fails the write)
        index_mod.for_store(store).record(self.customer.name, plan.version.scenario, commit,
                                          files)
        self._after_write(sum(len(files[n]) for n in (*plan.changed, MANIFEST) if n in files))
        return Written(commit, plan.version, plan.change, digest, proposal.completeness,
                       plan.turn, tag_id)


# -- helpers -------------------------------------------------------------------



def _conversation_bytes(state: State, conv: dict[str, Any], pos: int) -> bytes:
    """The canonical bytes of ``conv`` after a turn was added at ``pos``.

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
        spliced = canonical.append_item(old, "conversation_turns", turns[pos])
        if spliced is not None:
            spliced = canonical.set_int_member(spliced, "conversation_summary", "total_turns",
                                               total)
    if spliced is None:
        return canonical.dumps(conv)
    if os.environ.get("GITSTORE_CHECK_SPLICE") and spliced != canonical.dumps(conv):
        raise AssertionError("spliced conversation differs from its canonical form")
    return spliced


def _without_key_values(violations: Any) -> list[Violation]:
    """In a store with hashed names an api_key is a secret: a violation about
    the ``api_key`` field never repeats the value it found."""
    return [Violation(v.file, v.pointer, "does not match this customer (the value is not "
                      "shown)", v.hook) if v.pointer == "/session_info/api_key" else v
            for v in violations]
