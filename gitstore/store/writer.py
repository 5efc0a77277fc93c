"""The write seam: the one way anything is written to a customer repository.

Every change (a turn, a document, a finalize, a follow-up, a correction, an
expiry, a retention summary, an import replay) is a :class:`Plan` built from the
scenario's tip and handed to :class:`Writer`, which

1. takes the customer's writer lock and clears lock files left by dead processes;
   a damaged ``HEAD`` fails the write here, before anything is written,
2. returns the earlier result when the :class:`Authorship` carries an
   idempotency key that a commit of the scenario already records (within its
   ``idempotency_window`` when it has one: see :data:`RETRY_WINDOW`),
3. reads the branch tip (:mod:`gitstore.store.tip`), refuses a tip whose files
   do not match its manifest, and recreates a version tag a crash left uncut,
4. builds the plan (a pure function of the tip) and runs the whole pre-commit
   pipeline over the complete tree (nothing is written if it fails),
5. seals the checked tree for an encrypted customer (:mod:`gitstore.store.keys`),
   writes it and the commit (explicit author, time and trailers; ``Audit-Head``:
   :mod:`gitstore.store.audit`), and moves the branch with a compare-and-swap from
   the tip it read (losing the swap rebuilds the plan on the new tip; never forced),
6. for a finalizing change cuts the version's annotated tag, and
7. after the commit: records it in the catalog, counts it for maintenance and
   appends the audit record. These steps never turn a committed write into a
   failure: a step that fails adds a warning to :class:`Written` and is
   repaired later (``gitstore reindex``, the next maintenance, ``verify``),
8. after releasing the lock, starts automatic maintenance in the background
   when it is due (:mod:`gitstore.store.upkeep`): no write waits for a repack.

Turns that writers to one scenario send at once may be written together under
one lock hold (:mod:`gitstore.store.groupcommit`): the same steps for each
turn, one pack and one branch update for all.

Invariants: the branch only moves forward from the tip a plan was built on; a
commit's ``Manifest`` trailer is the digest of the ``SHA256SUMS`` in its tree;
a given ``idempotency_key`` names at most one commit of a scenario (a key with an
``idempotency_window``, derived from content, at most one within any window).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, ClassVar

from gitstore.core import canonical, manifest
from gitstore.core import files as sessionfiles
from gitstore.core.commits import ChangeKind, Identity, Message, Trailer, trailers
from gitstore.core.documents import offset_minutes
from gitstore.core.layout import LATEST as LATEST_LAYOUT
from gitstore.core.names import CONV, MANIFEST, MERGED, META, SEALED_TRAILER, SOW_DOCUMENT
from gitstore.core.schema import SCHEMA_VERSION
from gitstore.core.versions import Scenario, Version
from gitstore.errors import (
    ConflictError,
    GitStoreError,
    InputTooLargeError,
    InvalidDocumentError,
    KeyUnavailableError,
    RenderError,
    UsageError,
    VersionRuleError,
    Violation,
)
from gitstore.git import housekeeping
from gitstore.git import repo as backend
from gitstore.git.locking import writer_lock
from gitstore.git.trees import Prepared
from gitstore.rules import secrets
from gitstore.rules.proposal import Proposal
from gitstore.store import replays, upkeep
from gitstore.store.audit import ANCHOR_TRAILER, AuditLog
from gitstore.store.authorship import Authorship as Authorship
from gitstore.store.authorship import authorship as authorship
from gitstore.store.context import CustomerContext
from gitstore.store.plan import Build as Build
from gitstore.store.plan import Made
from gitstore.store.plan import Plan as Plan
from gitstore.store.plan import Written as Written
from gitstore.store.tip import (
    State,
    check_head,
    check_tip,
    cut_tag,
    mark_verified,
    read_state,
    repair_tag,
)

MAX_ATTEMPTS = 8
SESSION_IDS_LOCK = ".session-ids"
"""The store-wide lock under which new scenarios claim their session ids (a
leading dot: no customer can have this name)."""
IDEMPOTENCY_SCAN = 512
"""How many commits back from a tip a repeated idempotency key is looked for."""
RETRY_WINDOW = timedelta(minutes=10)
"""The default window of a content-derived key (a turn sent twice): it matches only
a commit made at most this long before or after the retry's write time ..."""
RETRY_SCAN = 16
"""... and only among this many commits back from the tip."""


class Writer:
    """Writes plans to one customer's repository (see the module docstring)."""

    group_commit: ClassVar[bool] = True
    """Whether turns this writer adds may be written together with other writers'
    (:mod:`gitstore.store.groupcommit`); a writer that changes what it writes (a
    replay) or writes where other processes do not look says no."""

    def __init__(self, customer: CustomerContext) -> None:
        self.customer = customer
        self.store = customer.store
        self.maintenance_due = False

    # -- entry guard ---------------------------------------------------------
    def scrub(self, name: str, data: Any, base: str = "") -> tuple[Any, str | None]:
        """Apply the store's secrets policy to incoming data, before anything is
        built from it: ``block`` findings refuse the write (values never shown),
        ``redact`` findings are replaced by ``[REDACTED:<kind>]``. With hashed
        customer names the real api_key is blocked wherever it appears. Returns
        the data to store and a summary of what was redacted (kinds, no values)."""
        key = self.customer.api_key
        info = data.get("session_info") if name == META and isinstance(data, dict) else None
        if key and isinstance(info, dict) and info.get("api_key") == key:
            data = {**data, "session_info": {**info, "api_key": self.customer.name}}
        clean, redacted, blocked = secrets.apply(data, name, self.store.secrets_policy,
                                                 base=base)
        found = [Violation(f.file, f.pointer, secrets.message(f, "block"), "secrets")
                 for f in blocked]
        if key and secrets.holds(clean, key):
            found.append(Violation(name, base, secrets.KEY_FOUND, "secrets"))
        if found:
            raise InvalidDocumentError(found)
        return clean, secrets.summary(redacted) if redacted else None

    def screen(self, plan: Plan, session_id: str, by: Authorship) -> Plan:
        """Apply the secrets policy to every text a commit or tag records besides
        the documents (which :meth:`scrub` saw), before anything is written (see
        :func:`gitstore.rules.secrets.screen`): the summary and reason (``turn -m``,
        ``finalize -m``, ``correct -r``; ``redact`` findings masked and counted in
        the ``Redacted`` trailer), and, never rewritten, extra trailers, the session
        id, the idempotency key, the author, committer and tagger identities and a
        replayed message. With hashed names the api_key is refused in all of them."""
        who = [("author", (by.author or self.store.config.agent).checked()),
               ("committer", self.store.config.committer.checked()),
               *([("tagger", by.tagger.checked())] if by.tagger is not None else [])]
        texts, masked = secrets.screen([
            secrets.Field("message", plan.summary, redactable=True),
            secrets.Field("reason", plan.reason, redactable=True),
            secrets.Field("session id", session_id),
            secrets.Field("idempotency key", by.idempotency_key),
            *(secrets.Field(f"trailer {k}", v) for k, v in plan.extra_trailers),
            *(f for role, ident in who for f in (
                secrets.Field(f"{role} name", ident.name),
                secrets.Field(f"{role} email", ident.email, allowed=frozenset({"email"})))),
            secrets.Field("replayed message", by.message),
            secrets.Field("replayed tag message", by.tag_message),
        ], self.store.secrets_policy, forbidden=self.customer.api_key)
        if not masked:
            return plan
        note = "; ".join(filter(None, [plan.redacted, secrets.summary(masked)]))
        return replace(plan, summary=texts["message"] or plan.summary, reason=texts["reason"],
                       redacted=note)

    # -- writing -------------------------------------------------------------
    def write(self, scenario: Scenario, build: Build, by: Authorship | None = None) -> Written:
        """Build ``build(tip state)`` and write it on top of the scenario's tip."""
        try:
            return self._write(scenario, build, by or Authorship())
        finally:
            self.start_maintenance()

    def _write(self, scenario: Scenario, build: Build, by: Authorship) -> Written:
        with self.customer.locked():
            return self.write_held(scenario, build, by)

    def write_held(self, scenario: Scenario, build: Build, by: Authorship, *,
                   deep: bool = False) -> Written:
        """:meth:`write`, for a caller that holds the customer's writer lock
        (``deep``: see :meth:`earlier`)."""
        repo = self.customer.repo
        self.preflight(repo, scenario)
        key = by.idempotency_key
        if key is not None:
            if by.idempotency_window is not None and by.time is None:
                by = by._replace(time=self.store.now())  # the window's and the commit's
            earlier = self.earlier(repo, scenario.branch_ref, key, by, deep=deep)
            if earlier is not None:
                return earlier
        for _ in range(MAX_ATTEMPTS):
            state = self.tip(repo, scenario)
            plan = self.screen(build(state), state.session_id, by)
            written = self.commit(repo, state, state.session_id, plan, by)
            if written is not None:
                return written
        raise self.kept_moving(scenario)

    def preflight(self, repo: backend.Repo, scenario: Scenario) -> None:
        """What every write to a scenario checks first, under the lock: stale lock
        files cleared, ``HEAD`` sound, the scenario not merged away."""
        self.customer.clear_stale_locks()
        check_head(repo)  # damage fails the write now, not as 8 lost races
        gone = repo.ref_target(MERGED + str(scenario))
        if gone is not None:
            raise VersionRuleError(f"scenario {scenario} of {self.customer.name} was merged "
                                   f"away (merge commit {gone[:12]}); write to the "
                                   "scenario it was merged into")

    def tip(self, repo: backend.Repo, scenario: Scenario) -> State:
        """The scenario's tip to build on: its files checked against its manifest,
        its version tag recut if a crash left it uncut."""
        state = read_state(repo, scenario)
        check_tip(self.customer.name, state)
        repair_tag(repo, state, self.store.signer)
        return state

    def require_keys(self, repo: backend.Repo, state: State | None) -> None:
        """Refuse to write in clear on a sealed tip (this store holds no keys)."""
        if repo.codec is None and state is not None and state.info.trailer(SEALED_TRAILER):
            raise KeyUnavailableError(f"{self.customer.name} is encrypted (its tip carries a "
                                      "Sealed-Digest) and this store holds none of its keys: "
                                      "run `gitstore keys restore` first; nothing was written")

    def kept_moving(self, scenario: Scenario) -> ConflictError:
        return ConflictError(f"scenario {scenario} of {self.customer.name} kept moving "
                             f"under a writer outside gitstore; gave up after {MAX_ATTEMPTS} "
                             "tries")

    def create(self, session_id: str, build: Callable[[list[Scenario]], Plan],
               by: Authorship | None = None) -> Written:
        """Open a new scenario: ``build(scenarios ever used)`` returns the first
        commit's plan (its version names the new scenario). Creates the
        repository when needed; moves HEAD to the newest scenario."""
        try:
            return self._create(session_id, build, by or Authorship())
        finally:
            self.start_maintenance()

    def _create(self, session_id: str, build: Callable[[list[Scenario]], Plan],
                by: Authorship) -> Written:
        customer = self.customer
        with customer.locked():
            if by.idempotency_key is not None and customer.exists:
                for s in customer.scenarios():
                    earlier = self.earlier(customer.repo, s.branch_ref, by.idempotency_key,
                                           by)
                    if earlier is not None:
                        return earlier
            # session ids are unique per store: checked and claimed under one
            # store-wide lock (taken inside the customer's, never the other way round)
            with writer_lock(self.store.lock_dir, SESSION_IDS_LOCK,
                             self.store.config.lock_timeout):
                existing = customer.scenarios()
                plan = self.screen(build([*existing, *customer.retired_scenarios()]),
                                   session_id, by)
                self.require_unused(session_id)
                checked = self.check(session_id, plan,  # before the repository is created
                                     customer.repo.layout_for(None) if customer.exists
                                     else LATEST_LAYOUT)
                if customer.encrypted:  # the new scenario's key, before anything is made
                    customer.sealer.key(plan.version.major, create=True)
                repo = customer.ensure_repo()
                customer.clear_stale_locks()
                check_head(repo)
                repo.config_set("gitstore.lastScenario", str(plan.version.major))
                written = self.commit(repo, None, session_id, plan, by, checked)
                if written is None:
                    raise ConflictError(f"scenario {plan.version.scenario} of {customer.name} "
                                        "was created by a writer outside gitstore")
                newest = max([*existing, plan.version.scenario])
                repo.set_head(newest.branch_ref)
        return written

    def require_unused(self, session_id: str) -> None:
        """Refuse (UsageError) a session id that any scenario of any customer of
        the store already records: this customer's scenarios are read from git,
        every other customer's from the catalog, brought up to date with git first.
        The message never names another customer."""
        customer = self.customer
        for s in customer.scenarios():
            if _session_id_at(customer.repo, s) == session_id:
                raise UsageError(f"session id {session_id!r} is already used by scenario {s} "
                                 f"of {customer.name}; session ids are unique per store")
        if any(name != customer.name or not customer.catalogued
               for name, _ in self.store.catalog.session_owners(session_id)):
            raise UsageError(f"session id {session_id!r} is already used in this store (by "
                             "another customer); session ids are unique per store: choose "
                             "another, or omit it for a fresh one")

    def check(self, session_id: str, plan: Plan, layout: int = 1,
              ) -> tuple[Mapping[str, bytes], Proposal]:
        """Run the pre-commit pipeline over the planned tree (writes nothing).

        Returns the complete tree, manifest included, and the proposal the
        hooks saw (for its completeness). In ``layout`` 2 the conversation of a
        commit that is not a version's is stored in parts, so its manifest line
        is left to the parts (the tree writer lists them)."""
        store = self.store
        proposal = Proposal(customer=self.customer.name, files=plan.files,
                            version=plan.version, change=plan.change, session_id=session_id,
                            finalizing=plan.finalizing, changed=plan.changed,
                            changed_turns=plan.changed_turns, parsed=plan.parsed,
                            unlisted=frozenset({CONV}) if layout == 2 and not plan.finalizing
                            else frozenset())
        try:
            store.pipeline.run(proposal)
        except InvalidDocumentError as exc:
            if store.config.hash_names:
                exc = InvalidDocumentError(_without_key_values(exc.violations))
            if plan.render_error is None:
                raise exc from None
            found = [v for v in exc.violations if v.file != SOW_DOCUMENT]
            if not found:  # only the SOW the template failed to render is missing
                raise RenderError(plan.render_error) from None
            found.append(Violation(SOW_DOCUMENT, "", plan.render_error, "render"))
            raise InvalidDocumentError(found) from None
        if plan.render_error is not None:
            raise RenderError(plan.render_error)
        assert proposal.manifest is not None
        files = sessionfiles.updated(plan.files, {MANIFEST: proposal.manifest})
        limit = store.config.max_document_bytes
        for name in files:
            if (size := sessionfiles.size(files, name)) > limit:
                raise InputTooLargeError(f"{name} would be {size} bytes; the store's limit "
                                         f"is {limit} (max_document_bytes)")
        return files, proposal

    def commit(self, repo: backend.Repo, state: State | None, session_id: str, plan: Plan,
               by: Authorship, checked: tuple[Mapping[str, bytes], Proposal] | None = None
               ) -> Written | None:
        """Check (unless already ``checked``), write and publish one commit; the
        caller holds the writer lock. Returns None when the compare-and-swap lost
        to another writer."""
        made = self.make(repo, state, session_id, plan, by, checked)
        if isinstance(made, Written):
            return made
        commit, plan, prepared = made.commit, made.plan, made.prepared
        repo.write_commits_pack([(prepared, made.data)])  # one pack: new objects and commit
        try:
            repo.update_ref(plan.version.scenario.branch_ref, commit,
                            state.tip if state else None, f"gitstore: {plan.summary}")
        except backend.RefConflict:
            return None
        tag_id = None
        if plan.finalizing:
            tag_when = by.tag_time or by.time
            tag_id = cut_tag(repo, commit, repo.commit(commit),
                             int(tag_when.timestamp()) if tag_when else made.time,
                             offset_minutes(tag_when) if tag_when else made.offset,
                             self.store.signer, message=_retarget(by.tag_message, commit),
                             tagger=by.tagger)
        warnings = self.after_commit(plan, [commit], made.stored, made.parsed,
                                     sum(len(data) for _, data in prepared.objects))
        return Written(commit, plan.version, plan.change, made.digest, made.completeness,
                       plan.turn, tag_id, warnings=warnings)

    def make(self, repo: backend.Repo, state: State | None, session_id: str, plan: Plan,
             by: Authorship, checked: tuple[Mapping[str, bytes], Proposal] | None = None,
             anchor: str | None = None) -> Made | Written:
        """Check (unless already ``checked``) and make one commit on ``state``'s tip
        (one :meth:`~gitstore.git.repo.Repo.commit_data` made counts), sealed for an
        encrypted customer; nothing is written. A change that leaves the files as
        they are returns the tip as an ``unchanged`` :class:`Written`. ``anchor``:
        the access log's head to record (default: read now)."""
        store = self.store
        parent = state.tip if state else None
        layout = repo.layout_for(parent)
        files, proposal = checked or self.check(session_id, plan, layout)
        if state is not None and sessionfiles.same(files, state.files, MANIFEST) and \
                not plan.finalizing \
                and plan.change in (ChangeKind.UPDATE, ChangeKind.TURN) and by.message is None:
            return Written(state.tip, state.version, "unchanged", state.info.trailer(
                Trailer.MANIFEST) or manifest.digest(files[MANIFEST]))
        parts = layout == 2
        stored, parsed = files, plan.parsed
        self.require_keys(repo, state)
        if repo.codec is not None:  # an encrypted customer: checked in clear, stored sealed
            one = plan.changed_turns if plan.change == ChangeKind.TURN and state else None
            base = (state.files, state.stored) if state and state.stored is not None else None
            stored, parsed, proof = self.customer.sealer.seal_tree(
                files, plan.version.major, parsed=plan.parsed, create=state is None, base=base,
                appended=one[0] if one is not None and len(one) == 1 else None,
                span=repo.turns_span(state.tip, base[1].get(CONV)) if state and base else None)
            plan = replace(plan, extra_trailers=(*plan.extra_trailers, (SEALED_TRAILER, proof)))
        prepared = repo.prepare_session_tree(stored, parts=parts, base=parent,
                                             materialise=plan.finalizing)
        digest = manifest.digest(prepared.manifest)
        agent = by.author or store.config.agent
        text = by.message if by.message is not None else self.message(
            plan, session_id, agent, proposal.completeness, digest, by.idempotency_key,
            anchor if anchor is not None else self.audit_anchor())
        if by.message is not None:
            text, prepared = self.replayed(repo, text, files, stored, prepared, parent, plan)
            digest = manifest.digest(prepared.manifest)
        when = by.time or store.now()
        ts, offset = int(when.timestamp()), offset_minutes(when)
        mark_verified(prepared.tree)  # the pipeline has just checked these files
        commit, data = repo.commit_data(
            prepared, parents=[*([state.tip] if state else []), *plan.merged], author=agent,
            committer=store.config.committer, message=text, time=ts, offset=offset,
            sign=store.signer)
        return Made(commit, data, prepared, plan, stored, parsed, digest,
                    proposal.completeness, agent, ts, offset, text)

    @staticmethod
    def replayed(repo: backend.Repo, text: str, files: Mapping[str, bytes],
                 stored: Mapping[str, bytes], prepared: Prepared, parent: str | None,
                 plan: Plan) -> tuple[str, Prepared]:
        """A replayed commit's message and tree, once its content is shown to
        reproduce the recorded ``Manifest`` (in either layout), or UsageError.
        Where one side is encrypted the stored bytes cannot match: the plaintext
        must reproduce a plaintext source's manifest (a sealed source's lists
        ciphertext under keys this store need not hold: its export vouches for
        it), and the message gets this tree's ``Manifest`` and ``Sealed-Digest``
        (the recorded one kept as ``Replayed-Manifest``)."""
        m = Message.parse(text)
        claimed = m.get(Trailer.MANIFEST)
        if claimed is None:
            return text, prepared

        def tree(of: Mapping[str, bytes], parts: bool) -> Prepared:
            return repo.prepare_session_tree(of, parts=parts, base=parent,
                                             materialise=plan.finalizing)

        layouts = (repo.layout_for(parent) == 2, repo.layout_for(parent) != 2)
        source_sealed = m.get(SEALED_TRAILER) is not None
        if repo.codec is None and not source_sealed:
            for parts in layouts:
                found = prepared if parts == layouts[0] else tree(stored, parts)
                if manifest.digest(found.manifest) == claimed:
                    return text, found
        elif source_sealed or any(manifest.digest(tree(files, p).manifest) == claimed
                                  for p in layouts):
            proof = dict(plan.extra_trailers).get(SEALED_TRAILER)
            pairs = [(k, v) for k, v in m.trailers if k not in (
                SEALED_TRAILER, Trailer.MANIFEST, "Replayed-Manifest")]
            pairs += [*([(SEALED_TRAILER, proof)] if proof else []),
                      ("Replayed-Manifest", claimed),
                      (Trailer.MANIFEST, manifest.digest(prepared.manifest))]
            return Message(m.summary, tuple(pairs), m.body).format(), prepared
        raise UsageError(f"replayed commit {plan.summary!r} does not reproduce its content "
                         f"(manifest {manifest.digest(prepared.manifest)}, recorded {claimed})")

    @staticmethod
    def message(plan: Plan, session_id: str, agent: Identity, completeness: int | None,
                digest: str, key: str | None = None, anchor: str | None = None) -> str:
        """The commit message of a plan: its summary and the standard trailers
        (``anchor``: the access log's head, :data:`~gitstore.store.audit.ANCHOR_TRAILER`)."""
        return Message(plan.summary, trailers([
            (Trailer.SESSION_ID, session_id),
            (Trailer.SESSION_VERSION, plan.version),
            (Trailer.CHANGE, plan.change),
            (Trailer.TURN, plan.turn),
            (Trailer.DOCUMENTS, ", ".join(sorted(n for n in plan.changed
                                                 if n in plan.files)) or None),
            (Trailer.REASON, plan.reason),
            (Trailer.REDACTED, plan.redacted),
            *plan.extra_trailers,
            (Trailer.AGENT, agent.name),
            (Trailer.IDEMPOTENCY_KEY, key),
            (Trailer.COMPLETENESS, completeness),
            (Trailer.SCHEMA_VERSION, SCHEMA_VERSION),
            (Trailer.MANIFEST, digest),
            (ANCHOR_TRAILER, anchor),
        ])).format()

    def audit_anchor(self) -> str | None:
        """The access log's head, anchored in the commit (see :mod:`gitstore.store.audit`);
        None when there is no log yet or it cannot be read (the write goes on)."""
        try:
            return AuditLog(self.customer.path).anchor() if self.customer.exists else None
        except (GitStoreError, OSError):
            return None

    # -- after the commit ------------------------------------------------------
    def after_commit(self, plan: Plan, commits: list[str], files: Mapping[str, bytes],
                     parsed: dict[str, Any], written: int, kept: int | None = None,
                     since: str | None = None, actors: Sequence[str | None] | None = None
                     ) -> tuple[str, ...]:
        """Catalog, maintenance counter (``written``: the bytes of the objects the
        commits added) and an audit record per commit; each may fail without
        failing the write (the branch has moved: the change is committed). The
        last of ``commits`` is the new tip, ``plan`` its plan and ``files`` its
        files; with several (a group commit, :mod:`gitstore.store.groupcommit`),
        ``since`` is the tip they were made on, ``kept`` how many of its turns
        they all left in place and ``actors`` who asked for each (default: this
        store's agent)."""
        customer = self.customer
        warnings: list[str] = []
        try:  # every process's next query looks at this customer (catalog.journal)
            if customer.catalogued:
                self.store.catalog.changed(customer.name)
        except (GitStoreError, OSError) as exc:
            warnings.append(f"change journal not appended ({exc}); `gitstore reindex` repairs it")
        try:  # the catalog learns of the write from its files
            if kept is None:
                kept = 1 << 62 if CONV not in plan.changed else \
                    min(plan.changed_turns, default=0) if plan.changed_turns is not None else 0
            if customer.catalogued and not self.store.catalog.record(
                    customer.name, plan.version.scenario, commits[-1], files, parsed, kept,
                    customer.repo if customer.repo.codec is None else None, since):
                warnings.append("the index was not updated (the next query catches up, or "
                                "`gitstore reindex`)")
        except (GitStoreError, OSError) as exc:  # Index.record catches SQLite's own
            warnings.append(f"catalog not updated ({exc}); `gitstore reindex` repairs it")
        try:
            self._maintain(written)
        except (GitStoreError, OSError) as exc:
            warnings.append(f"automatic maintenance failed ({exc}); run `gitstore maintain`")
        try:
            for commit, actor in zip(commits, actors or [None] * len(commits), strict=True):
                customer.audit(f"write:{plan.change}", rev=str(plan.version), commit=commit,
                               actor=actor)
        except (GitStoreError, OSError) as exc:
            warnings.append(f"access log not appended ({exc})")
        return tuple(warnings)

    def _maintain(self, nbytes: int) -> None:
        """Count the write for automatic maintenance (the caller holds the writer
        lock); when it is due, :meth:`start_maintenance` starts it once the lock
        is released (:mod:`gitstore.store.upkeep`)."""
        if housekeeping.count_write(self.customer.path, nbytes + 1024,
                                    self.store.config.maintenance_bytes):
            self.maintenance_due = True

    def start_maintenance(self) -> None:
        if self.maintenance_due:
            self.maintenance_due = False
            upkeep.start(self.customer)

    def earlier(self, repo: backend.Repo, ref: str, key: str,
                 by: Authorship | None = None, *, deep: bool = False,
                 actor: str | None = None) -> Written | None:
        """The write an idempotency key already produced on ``ref``, if any
        (within ``by.idempotency_window`` of ``by``'s time, when it has one;
        ``deep``: among :data:`IDEMPOTENCY_SCAN` commits even then, for a turn a
        writer that died may have written in a group). ``actor`` asked again."""
        tip = repo.ref_target(ref)
        if tip is None:
            return None
        window = by.idempotency_window if by is not None else None
        moment = by.time if by is not None else None
        scan = IDEMPOTENCY_SCAN if window is None or deep else RETRY_SCAN
        for n, info in enumerate(repo.first_parents(tip)):
            if n >= scan:
                break
            if window is not None and moment is not None:
                made = info.author_time if info.author_time is not None else info.time
                if abs(moment.timestamp() - made) > window.total_seconds():
                    continue
            if info.trailer(Trailer.IDEMPOTENCY_KEY) == key:
                version = Version.parse(info.trailer(Trailer.SESSION_VERSION) or "v1.0.0")
                if by is not None and by.intent is not None:
                    replays.require_same(by.intent, key, info, version, replays.reader(
                        repo, info.id), self.customer.name, self.customer.api_key)
                turn = info.trailer(Trailer.TURN)
                completeness = (info.trailer(Trailer.COMPLETENESS) or "").rstrip("%")
                tag = repo.tag(str(version)) if info.finalizes else None
                self.customer.audit("write:replayed", rev=str(version), commit=info.id,
                                    detail=f"idempotency key matched {info.id[:12]}",
                                    actor=actor)
                return Written(info.id, version, info.change or "", info.trailer(
                    Trailer.MANIFEST) or "", int(completeness) if completeness.isdigit()
                    else None, int(turn) if turn and turn.isdigit() else None,
                    tag.id if tag and tag.target == info.id else None, replayed=True)
        return None


def _session_id_at(repo: backend.Repo, scenario: Scenario) -> str | None:
    """The session id a scenario's tip records (its trailer, else its metadata)."""
    tip = repo.ref_target(scenario.branch_ref)
    if tip is None:
        return None
    found = repo.commit(tip).session_id
    if found is None:
        try:
            found = canonical.loads(repo.read_file(tip, META) or b"{}")["session_info"][
                "session_id"]
        except (KeyError, TypeError, canonical.JSONParseError):
            return None
    return found if isinstance(found, str) else None


def _retarget(tag_message: str | None, commit: str) -> str | None:
    """A replayed tag message names the commit it now points at."""
    m = Message.parse(tag_message) if tag_message is not None else None
    if m is None or m.get(Trailer.COMMIT) is None:
        return tag_message
    pairs = tuple((k, commit if k == Trailer.COMMIT else v) for k, v in m.trailers)
    return Message(m.summary, pairs, m.body).format()


def _without_key_values(violations: Any) -> list[Violation]:
    """In a store with hashed names an api_key is a secret: a violation about
    the ``api_key`` field never repeats the value it found."""
    return [Violation(v.file, v.pointer, "does not match this customer (the value is not "
                      "shown)", v.hook) if v.pointer == "/session_info/api_key" else v
            for v in violations]
