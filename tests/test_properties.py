"""Random sequences of API operations on one store (Hypothesis state machine).

A model tracks, per scenario, the version, whether it is finalized, and what
the open version holds; each rule performs one operation through the Python
API and checks it against the model: valid operations must succeed with the
version the model predicts, invalid ones must raise the documented
:class:`~gitstore.errors.GitStoreError` subclass and leave ``repo_state()``
exactly as it was. After every step:

* every tag is a semver ``vX.Y.Z``, an annotated tag, on branch ``vX`` (an
  ancestor of its tip);
* no tag ever moved or disappeared once created;
* ``gitstore.ops.verify.check_customer`` finds no problem (every branch tip's and
  every version's files pass the pipeline and the manifest);
* history only grows: every earlier tip of a branch is an ancestor of its tip.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Clock, load_example, repo_state
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gitstore import (
    GitStoreError,
    InvalidDocumentError,
    NotFoundError,
    Store,
    UsageError,
    Version,
    VersionRuleError,
)
from gitstore.ops import verify as health

CUSTOMER = "prop-customer"
START = datetime(2025, 1, 15, 10, 30, tzinfo=UTC)
SEMVER_TAG = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")

CONTEXT = load_example("session", "deployment_context.json")
ANALYTICS = load_example("session", "session_analytics.json")
METADATA = load_example("session", "session_metadata.json")
SUMMARY = {k: v for k, v in load_example("session", "conversation.json")
           ["conversation_summary"].items() if k != "total_turns"}
TURN = {k: v for k, v in load_example("session", "turns", "turn-02.json").items()
        if k not in ("turn_id", "timestamp")}


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args}: {proc.stderr.decode()}")
    return proc.stdout.decode()


def is_ancestor(repo: Path, a: str, b: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", a, b],
                          check=False).returncode == 0


@dataclass
class Scenario:
    """What the model knows about one scenario (branch ``v<major>``)."""

    major: int
    created: datetime
    version: Version
    finalized: bool = False
    stamps: list[datetime] = field(default_factory=list)  # the turns' timestamps, in order
    frozen: int = 0               # turns held by the newest finalized version: they never move
    meta_complete: bool = False
    context: bool = False
    analytics: dict[str, Any] | None = None
    summary: bool = False
    tags: list[Version] = field(default_factory=list)

    @property
    def turns(self) -> int:
        return len(self.stamps)

    def place(self, when: datetime) -> tuple[int, bool]:
        """Where a turn stamped ``when`` goes (README: after every turn stamped at
        or before it, never among finalized turns) and whether its timestamp is
        then in order."""
        pos = len(self.stamps)
        while pos > 0 and self.stamps[pos - 1] > when:
            pos -= 1
        if pos < len(self.stamps):
            pos = max(pos, self.frozen)
        return pos, pos == 0 or self.stamps[pos - 1] <= when

    @property
    def completed(self) -> datetime:
        return self.created + timedelta(days=1)

    def can_finalize(self) -> bool:
        return (not self.finalized and self.turns > 0 and self.context
                and self.analytics is not None and self.summary and self.meta_complete)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="gitstore-props-"))
        self.store = Store.init(self.tmp / "sessions", clock=Clock())
        self.repo = self.store.root / CUSTOMER
        self.scenarios: list[Scenario] = []
        self.minutes = 0
        self.marker = 0
        self.tag_ids: dict[str, str] = {}
        self.tips: dict[str, str] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------
    def tick(self) -> datetime:
        self.minutes += 1
        return START + timedelta(minutes=self.minutes)

    def pick(self, index: int) -> Scenario:
        return self.scenarios[index % len(self.scenarios)]

    def session(self, sc: Scenario) -> Any:
        return self.store.customer(CUSTOMER).session(sc.major)

    def expect_refusal(self, error: type[GitStoreError], action: Any) -> None:
        """``action`` must raise ``error`` (exactly that class or a subclass) and
        change nothing in the repository."""
        before = repo_state(self.repo)
        with pytest.raises(GitStoreError) as info:
            action()
        assert isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
        assert info.value.exit_code == error.exit_code
        assert str(info.value) and "\n" not in str(info.value)
        assert repo_state(self.repo) == before, "a refused operation changed the repository"

    def metadata(self, sc: Scenario, complete: bool) -> dict[str, Any]:
        meta = copy.deepcopy(METADATA)
        info = meta["session_info"]
        for managed in ("session_id", "api_key", "session_version"):
            info.pop(managed)
        info["created_timestamp"] = iso(sc.created)
        if complete:
            info["completed_timestamp"] = iso(sc.completed)
            info["session_duration_minutes"] = 24 * 60
            meta["workflow_tracking"]["completion_status"] = "completed"
        else:
            info["completed_timestamp"] = None
            info["session_duration_minutes"] = None
            meta["workflow_tracking"]["completion_status"] = "in_progress"
        return meta

    def check_written(self, written: Any, sc: Scenario) -> None:
        assert written.version == sc.version, (written.version, sc.version)

    # -- scenarios -------------------------------------------------------------
    @initialize()
    def first_scenario(self) -> None:
        self.new_scenario()

    @precondition(lambda self: len(self.scenarios) < 3)
    @rule()
    def new_scenario(self) -> None:
        major = len(self.scenarios) + 1
        created = self.tick()
        customer = self.store.customer(CUSTOMER)
        if any(not sc.finalized for sc in self.scenarios):  # one open scenario at a time...
            self.expect_refusal(VersionRuleError,
                                lambda: customer.new_session(created=iso(created)))
        # ... unless asked for
        session = customer.new_session(created=iso(created), allow_open=True)
        sc = Scenario(major, created, Version(major, 0, 0))
        assert session.version == sc.version
        self.scenarios.append(sc)

    @rule(index=st.integers(0, 5))
    def unknown_scenario_is_not_found(self, index: int) -> None:
        missing = len(self.scenarios) + 1 + index
        self.expect_refusal(NotFoundError,
                            lambda: self.store.customer(CUSTOMER).session(missing))

    # -- the open version ------------------------------------------------------
    @rule(index=st.integers(0, 5))
    def append_turn(self, index: int) -> None:
        sc = self.pick(index)
        when = self.tick()
        turn = {**copy.deepcopy(TURN), "timestamp": iso(when)}
        if sc.finalized:
            self.expect_refusal(VersionRuleError, lambda: self.session(sc).append_turn(turn))
            return
        written = self.session(sc).append_turn(turn)
        sc.stamps.append(when)
        assert written.turn == sc.turns
        self.check_written(written, sc)

    @rule(index=st.integers(0, 5))
    def append_turn_as_old_as_the_session(self, index: int) -> None:
        """Placed among the open version's turns by its timestamp; refused if that
        is before a finalized version's turns."""
        sc = self.pick(index)
        turn = {**copy.deepcopy(TURN), "timestamp": iso(sc.created)}
        # the same turn sent twice is stored once (a retry): make each one distinct
        turn["user_input"] = {**turn["user_input"],
                              "query": f"{turn['user_input']['query']} #{sc.turns}"}
        pos, in_order = sc.place(sc.created)
        if sc.finalized:
            self.expect_refusal(VersionRuleError, lambda: self.session(sc).append_turn(turn))
        elif not in_order:
            self.expect_refusal(InvalidDocumentError,
                                lambda: self.session(sc).append_turn(turn))
        else:
            written = self.session(sc).append_turn(turn)
            sc.stamps.insert(pos, sc.created)
            assert written.turn == pos + 1
            conv = self.session(sc).read().document("conversation.json")
            assert [t["timestamp"] for t in conv["conversation_turns"]] == \
                [iso(w) for w in sc.stamps]
            assert [t["turn_id"] for t in conv["conversation_turns"]] == \
                list(range(1, sc.turns + 1))

    @rule(index=st.integers(0, 5), offset=st.sampled_from([0, 2, 5]))
    def append_turn_with_a_wrong_turn_id(self, index: int, offset: int) -> None:
        sc = self.pick(index)
        turn = {**copy.deepcopy(TURN), "timestamp": iso(self.tick()),
                "turn_id": sc.turns + offset if offset else 0}
        error = VersionRuleError if sc.finalized else InvalidDocumentError
        self.expect_refusal(error, lambda: self.session(sc).append_turn(turn))

    @rule(index=st.integers(0, 5))
    def put_context(self, index: int) -> None:
        sc = self.pick(index)
        if sc.finalized:
            self.expect_refusal(VersionRuleError,
                                lambda: self.session(sc).put("deployment_context.json",
                                                             CONTEXT))
            return
        self.check_written(self.session(sc).put("deployment_context.json", CONTEXT), sc)
        sc.context = True

    @rule(index=st.integers(0, 5))
    def put_invalid_context(self, index: int) -> None:
        sc = self.pick(index)
        bad = {**copy.deepcopy(CONTEXT), "deployment_recommendations": "all of them"}
        error = VersionRuleError if sc.finalized else InvalidDocumentError
        self.expect_refusal(error, lambda: self.session(sc).put("deployment_context.json", bad))

    @rule(index=st.integers(0, 5))
    def put_analytics(self, index: int) -> None:
        sc = self.pick(index)
        doc = copy.deepcopy(ANALYTICS)
        if sc.finalized:
            self.expect_refusal(VersionRuleError,
                                lambda: self.session(sc).put("session_analytics.json", doc))
            return
        self.check_written(self.session(sc).put("session_analytics.json", doc), sc)
        sc.analytics = doc

    @rule(index=st.integers(0, 5), complete=st.booleans())
    def put_metadata(self, index: int, complete: bool) -> None:
        sc = self.pick(index)
        meta = self.metadata(sc, complete)
        if sc.finalized:
            self.expect_refusal(VersionRuleError,
                                lambda: self.session(sc).put("session_metadata.json", meta))
            return
        self.check_written(self.session(sc).put("session_metadata.json", meta), sc)
        sc.meta_complete = complete

    @rule(index=st.integers(0, 5))
    def put_metadata_of_another_customer(self, index: int) -> None:
        sc = self.pick(index)
        meta = self.metadata(sc, True)
        meta["session_info"]["api_key"] = "someone-else"
        error = VersionRuleError if sc.finalized else InvalidDocumentError
        self.expect_refusal(error, lambda: self.session(sc).put("session_metadata.json", meta))

    @rule(index=st.integers(0, 5))
    def complete_the_open_version(self, index: int) -> None:
        """What an agent does before it finalizes: every document, complete."""
        sc = self.pick(index)
        if sc.finalized:
            return
        if sc.turns == 0:
            self.append_turn(index)
        self.put_context(index)
        self.put_analytics(index)
        self.set_summary(index)
        self.put_metadata(index, True)
        assert sc.can_finalize()

    @rule(index=st.integers(0, 5))
    def set_summary(self, index: int) -> None:
        sc = self.pick(index)
        if sc.finalized:
            self.expect_refusal(VersionRuleError,
                                lambda: self.session(sc).set_summary(SUMMARY))
            return
        self.check_written(self.session(sc).set_summary(copy.deepcopy(SUMMARY)), sc)
        sc.summary = True

    # -- versions ----------------------------------------------------------------
    @rule(index=st.integers(0, 5))
    def finalize(self, index: int) -> None:
        sc = self.pick(index)
        if sc.finalized:
            self.expect_refusal(VersionRuleError, lambda: self.session(sc).finalize())
        elif not sc.can_finalize():
            self.expect_refusal(InvalidDocumentError, lambda: self.session(sc).finalize())
        else:
            written = self.session(sc).finalize(message="property test")
            self.check_written(written, sc)
            assert written.tag is not None
            event("finalized a version")
            sc.finalized = True
            sc.frozen = sc.turns
            sc.tags.append(sc.version)

    @rule(index=st.integers(0, 5), then=st.sampled_from(["stop", "follow_up", "correct"]))
    def complete_and_finalize(self, index: int, then: str) -> None:
        """The common path, to reach follow-ups and corrections more often."""
        self.complete_the_open_version(index)
        self.finalize(index)
        if then == "follow_up":
            self.follow_up(index)
        elif then == "correct":
            self.correct(index)

    @rule(index=st.integers(0, 5))
    def finalize_with_a_wrong_version(self, index: int) -> None:
        sc = self.pick(index)
        wrong = Version(sc.version.major, sc.version.minor + 1, 0)
        self.expect_refusal(VersionRuleError,
                            lambda: self.session(sc).finalize(version=wrong))

    @rule(index=st.integers(0, 5))
    def follow_up(self, index: int) -> None:
        sc = self.pick(index)
        if not sc.finalized:
            self.expect_refusal(VersionRuleError, lambda: self.session(sc).follow_up())
            return
        written = self.session(sc).follow_up()
        event("opened a follow-up")
        sc.version = Version(sc.version.major, sc.version.minor + 1, 0)
        sc.finalized = False
        sc.meta_complete = False
        self.check_written(written, sc)

    @rule(index=st.integers(0, 5))
    def correct(self, index: int) -> None:
        sc = self.pick(index)
        self.marker += 1
        doc = copy.deepcopy(ANALYTICS)
        doc["prediction_accuracy"]["property_test_marker"] = self.marker
        if not sc.finalized:
            self.expect_refusal(VersionRuleError, lambda: self.session(sc).correct(
                {"session_analytics.json": doc}, reason="property test"))
            return
        written = self.session(sc).correct({"session_analytics.json": doc},
                                           reason="property test")
        event("published a correction")
        sc.version = Version(sc.version.major, sc.version.minor, sc.version.patch + 1)
        self.check_written(written, sc)
        assert written.tag is not None
        sc.tags.append(sc.version)
        sc.analytics = doc

    @rule(index=st.integers(0, 5))
    def correction_that_changes_nothing(self, index: int) -> None:
        sc = self.pick(index)
        doc = copy.deepcopy(sc.analytics if sc.analytics is not None else ANALYTICS)
        error = UsageError if sc.finalized else VersionRuleError
        self.expect_refusal(error, lambda: self.session(sc).correct(
            {"session_analytics.json": doc}, reason="nothing"))

    @rule(index=st.integers(0, 5))
    def correction_of_an_older_version(self, index: int) -> None:
        sc = self.pick(index)
        older = [v for v in sc.tags if v != sc.version]
        if not older:
            return
        self.expect_refusal(VersionRuleError, lambda: self.session(sc).correct(
            {"session_analytics.json": {**ANALYTICS, "x": 1}}, reason="old", base=older[0]))

    # -- invariants --------------------------------------------------------------
    @invariant()
    def tags_are_semver_annotated_on_their_branch_and_never_move(self) -> None:
        if not self.repo.exists():
            return
        rows = git(self.repo, "for-each-ref",
                   "--format=%(refname) %(objectname) %(objecttype) %(*objectname)",
                   "refs/tags").splitlines()
        found = {}
        for row in rows:
            ref, oid, kind, target = row.split()
            name = ref.removeprefix("refs/tags/")
            assert SEMVER_TAG.fullmatch(name), name
            assert kind == "tag", f"{name} is not an annotated tag"
            branch = f"refs/heads/v{name[1:].split('.')[0]}"
            assert is_ancestor(self.repo, target, branch), f"{name} is not on {branch}"
            found[name] = oid
        for name, oid in self.tag_ids.items():
            assert found.get(name) == oid, f"tag {name} moved or vanished"
        self.tag_ids = found
        expected = sorted(str(v) for sc in self.scenarios for v in sc.tags)
        assert sorted(found) == expected

    @invariant()
    def history_only_grows(self) -> None:
        if not self.repo.exists():
            return
        tips = dict(line.split() for line in git(
            self.repo, "for-each-ref", "--format=%(refname) %(objectname)",
            "refs/heads").splitlines())
        assert sorted(tips) == [f"refs/heads/v{sc.major}" for sc in self.scenarios]
        for ref, old in self.tips.items():
            assert is_ancestor(self.repo, old, tips[ref]), f"{ref} lost {old}"
        self.tips = tips

    @invariant()
    def every_tip_and_version_is_healthy(self) -> None:
        if not self.repo.exists():
            return
        customer = self.store.customer(CUSTOMER)
        report = health.check_customer(customer)
        assert report.problems == [], report.problems
        for sc in self.scenarios:
            state = customer.session(sc.major).state
            assert (state.version, state.finalized) == (sc.version, sc.finalized)


StoreMachine.TestCase.settings = settings(
    max_examples=15, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestStoreMachine = StoreMachine.TestCase
