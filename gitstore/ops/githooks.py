"""Real git hooks that run gitstore's checks for people who write with plain git.

libgit2 runs no git hooks and the store runs its own pipeline on every write,
so these hooks exist only for writers who use the ``git`` command itself: a
person fixing a document in a clone and pushing it back. They enforce the same
invariants the store keeps, so a plain-git write can never store what gitstore
would have refused.

Both also run the credentials/personal-data scan (:mod:`gitstore.rules.secrets`): a
plain-git writer cannot redact, so anything the store's policy would block or
redact is refused.

``pre-receive`` (installed in a customer's bare repository) refuses the whole
push (git updates no ref at all) if any ref update breaks a rule:

* only scenario branches ``refs/heads/vN``, version tags ``refs/tags/vX.Y.Z``,
  merge markers and travelled access logs ``refs/gitstore/audit/<log id>`` may be
  written, and none may be deleted: history is append-only; an access log only
  grows, its records intact and chained (:func:`gitstore.store.travel.check_travel`);
* a branch moves forward only (no rewrite) and never takes a merge commit: a
  scenario is one line of history;
* every new commit (reachable from the new tip, not from any existing ref) has
  a version (its ``Session-Version`` trailer, else its metadata's
  ``session_version``) whose major is the branch's N, not lower than its
  parent's and not already finalized (tagged): finalized versions are
  immutable; its ``Session-Id`` trailer, if any, is the scenario's session id;
* versions follow the store's rules (:mod:`gitstore.core.versions`), never
  skipping: a scenario's first commit is a root commit of ``vN.0.0``; after an
  open version comes the same version; after a finalized one (a finalize or
  correction commit, or a tagged version) only its follow-up ``vN.(M+1).0`` or
  its correction ``vN.M.(P+1)``, and a correction finalizes in its own commit;
  a commit whose parent is another scenario's (a branch forked from ``v1``'s
  history) is refused;
* a new branch opens the next scenario: ``vN`` with N one more than the
  highest scenario the repository ever had (its branches and
  ``gitstore.lastScenario``), so scenario numbers never skip or come back;
* its tree passes the pipeline with ``verify_manifest=True`` (an existing
  ``SHA256SUMS`` must match, nothing is written) and ``finalizing`` when its
  ``Change`` trailer is ``finalize`` or ``correction``;
* a tag is new (tags are never moved or reused), annotated, named like its tag
  object, and points at a commit of exactly its version that is on its scenario
  branch (after the push) and whose tree passes the pipeline as a finalized
  version (all files present, all required fields filled).

A bare repository also gets ``reference-transaction``, a POSIX shell script that
appends the repository's name to its store's change journal after any ref change
(:mod:`gitstore.catalog.journal`), so the store's index looks at that customer, and
only that one, at its next query; it never refuses anything.

``pre-commit`` (installed in a clone) checks the staged tree the same way, with
the version taken from the staged metadata. It cannot know the commit message
yet, so finalize-only rules and the version rules are left to ``pre-receive``.
On a manifest mismatch it prints the plain-shell command that regenerates it.

The installed scripts exec the installing interpreter, so they work without
gitstore on PATH; every unexpected error is one line and a non-zero exit, which
makes git refuse the push or commit (the hooks fail closed).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from gitstore.catalog import journal
from gitstore.core import canonical, sealed
from gitstore.core.commits import ChangeKind, CommitInfo, Trailer, metadata_version, version_of
from gitstore.core.names import DOCUMENTS, JSON_DOCUMENTS, MANIFEST, MERGED, check_customer
from gitstore.core.versions import Scenario, Version, parse_branch_ref, parse_tag_ref
from gitstore.errors import (
    GitStoreError,
    InvalidDocumentError,
    NotFoundError,
    UsageError,
    Violation,
)
from gitstore.git import repo as backend
from gitstore.rules.pipeline import Pipeline, load_hook
from gitstore.rules.policy import Policy
from gitstore.rules.proposal import Proposal
from gitstore.rules.secrets import SecretsHook
from gitstore.store import config as config_mod
from gitstore.store import travel
from gitstore.store.context import ENCRYPTED_KEY

MARKER = "# gitstore-hook: installed by `gitstore hooks install`; reinstall, do not edit"
HOOKS = ("pre-receive", "pre-commit")
META = JSON_DOCUMENTS[2]
CONFIG_KEY = "gitstore.customer"
HOOKS_KEY = "gitstore.hooks"
REGULAR = (0o100644, 0o100755)
VERSION_POINTER = "/session_info/session_version"


# -- installing ----------------------------------------------------------------

def install(repo: Path, *, force: bool = False, customer: str | None = None,
            hooks: Iterable[str] = ()) -> list[Path]:
    """Install ``pre-receive`` (and the change journal's ``reference-transaction``)
    into a bare repository or ``pre-commit`` into a clone; return the installed
    paths. A clone also gets ``gitstore.customer`` in its config. ``hooks``
    (``module:function``) are extra checks recorded in the repository's
    ``gitstore.hooks`` config. An existing hook that is not gitstore's is replaced
    only with ``force``."""
    specs = list(dict.fromkeys(hooks))
    for spec in specs:
        load_hook(spec)  # refuse a hook that cannot be imported now, not at push time
    handle = backend.Repo.open_any(repo)
    hook = "pre-receive" if handle.is_bare else "pre-commit"
    target = _hooks_dir(handle) / hook
    scripts = {target: _script(hook)}
    if handle.is_bare:  # tells the store's index what plain git changed: catalog.journal
        scripts[target.with_name(journal.HOOK)] = journal.hook_script()
    for path in scripts:
        if (path.exists() or path.is_symlink()) and not force and not _is_ours(path):
            raise UsageError(f"{path} exists and is not a gitstore hook; move it away or "
                             "reinstall with --force to replace it")
    name = check_customer(customer or _default_customer(handle))
    recorded = _recorded_customers(handle)
    if recorded and name not in recorded:
        raise UsageError(f"{repo} holds the sessions of customer {', '.join(sorted(recorded))}"
                         f", not {name!r}: its hooks would refuse every push; name the "
                         "customer its sessions record (--customer)")
    if customer or not handle.is_bare:
        handle.config_set(CONFIG_KEY, name)
    if specs:
        handle.config_set(HOOKS_KEY, ",".join(specs))
    for path, text in scripts.items():
        tmp = path.with_name(f".{path.name}.gitstore-tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o755)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot install {path}: {exc.strerror or exc}") from None
    return list(scripts)


def _hooks_dir(handle: backend.Repo) -> Path:
    configured = handle.config_get("core.hooksPath")
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else (handle.workdir or handle.path) / path
    return handle.path / "hooks"


def _is_ours(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        return MARKER in text or journal.MARKER in text
    except OSError:
        return False


def _script(hook: str) -> str:
    lines = ["#!/bin/sh", MARKER]
    source = str(Path(__file__).resolve().parents[2])
    installed = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib")}
    if source not in installed:  # a source checkout: make the package importable
        lines.append(f'PYTHONPATH={shlex.quote(source)}"${{PYTHONPATH:+:$PYTHONPATH}}"; '
                     "export PYTHONPATH")
    lines.append(f'exec {shlex.quote(sys.executable)} -P -m gitstore.ops.githooks {hook} "$@"')
    return "\n".join(lines) + "\n"


def _strip_git(name: str) -> str:
    return name[:-4] if name.endswith(".git") and len(name) > 4 else name


def _recorded_customers(handle: backend.Repo) -> set[str]:
    """The ``api_key`` each scenario's newest metadata records (sealed ones left out)."""
    found = set()
    for tip in handle.refs("refs/heads/", strict=False).values():
        with contextlib.suppress(GitStoreError, ValueError, AttributeError, TypeError):
            meta = canonical.loads(handle.read_file(tip, META) or b"null")
            key = meta["session_info"]["api_key"]
            if isinstance(key, str) and not sealed.is_token(key):
                found.add(key)
    return found


def _default_customer(handle: backend.Repo) -> str:
    if handle.is_bare:
        return _strip_git(handle.path.resolve().name)
    url = (handle.config_get("remote.origin.url") or "").rstrip("/")
    base = url.replace(":", "/").rsplit("/", 1)[-1]
    workdir = handle.workdir or handle.path
    return _strip_git(base or workdir.resolve().name)


# -- running ---------------------------------------------------------------------

def run(hook: str) -> int:
    """Run ``hook`` as git calls it; messages go to stderr; returns the exit code."""
    try:
        if hook == "pre-receive":
            return _pre_receive(sys.stdin.buffer.read().decode("utf-8", "replace"))
        if hook == "pre-commit":
            return _pre_commit()
        _say(f"unknown hook {hook!r}; expected one of {', '.join(HOOKS)}")
        return UsageError.exit_code
    except GitStoreError as exc:
        _say(f"{hook} refused: {exc}")
        return exc.exit_code or 1
    except (Exception, KeyboardInterrupt) as exc:
        detail = " ".join(str(exc).split())
        _say(f"{hook} hook failed, refusing: {type(exc).__name__}: {detail}")
        return 70


def _say(text: str) -> None:
    print(f"gitstore: {text}", file=sys.stderr, flush=True)


def _is_zero(oid: str) -> bool:
    return set(oid) == {"0"}


def _pipeline(repo: backend.Repo) -> Pipeline:
    """The pipeline with the user's hooks: those of the store the repository sits
    in, and those named in its git config ``gitstore.hooks`` (comma-separated
    ``module:function``; install copies the store's there for clones)."""

    specs = [h.strip() for h in (repo.config_get(HOOKS_KEY) or "").split(",") if h.strip()]
    root = config_mod.store_root_of(repo.path)
    policy = None
    if root is not None:
        settings = config_mod.load(root)
        specs.extend(settings.hooks)
        policy = Policy.from_json(settings.secrets) if settings.secrets else None
    return Pipeline([SecretsHook(policy), *(load_hook(spec) for spec in dict.fromkeys(specs))])


def _wrong_major(ref: str, scenario: Scenario, version: Version) -> Violation:
    return Violation(META, VERSION_POINTER, f"is {version} but {ref} holds only versions "
                     f"v{scenario.major}.x.y", "version")


def _open_receiving_repo() -> backend.Repo:
    """The repository being pushed to, able to read the push's quarantined objects."""
    repo = backend.Repo.open(Path(os.environ.get("GIT_DIR") or ".").resolve())
    own = (repo.path / "objects").resolve()
    extra = [os.environ.get("GIT_QUARANTINE_PATH", ""), os.environ.get("GIT_OBJECT_DIRECTORY", ""),
             *os.environ.get("GIT_ALTERNATE_OBJECT_DIRECTORIES", "").split(os.pathsep)]
    for directory in dict.fromkeys(d for d in extra if d):
        path = Path(directory).resolve()
        if path != own and path.is_dir():
            repo.add_alternate(str(path))
    return repo


class _Receive:
    """The checks of one push, over the repository as it was before the push."""

    def __init__(self, repo: backend.Repo, updates: list[tuple[str, str, str]]) -> None:
        self.repo = repo
        self.customer = repo.config_get(CONFIG_KEY) or _strip_git(repo.path.resolve().name)
        self.pipeline = _pipeline(repo)
        self.encrypted = repo.config_get(ENCRYPTED_KEY) == "true"
        existing = repo.refs()
        self.hide: list[str] = []
        for target in existing.values():
            with contextlib.suppress(NotFoundError):  # a ref to a tree or blob hides nothing
                self.hide.append(repo.resolve(target))
        self.tags = {v for ref in existing if (v := parse_tag_ref(ref)) is not None}
        self.pushed_tags: dict[Version, str] = {}
        for _, new, ref in updates:
            pushed = parse_tag_ref(ref)
            tag = None if pushed is None or _is_zero(new) else repo.tag_object(new)
            if pushed is not None and tag is not None:
                self.pushed_tags[pushed] = tag.target
        self.tips = {ref: tip for ref, tip in existing.items() if ref.startswith("refs/heads/")}
        self.tips.update((ref, new) for _, new, ref in updates if ref.startswith("refs/heads/"))
        last = repo.config_get("gitstore.lastScenario") or ""
        used = [s.major for ref in existing if (s := parse_branch_ref(ref)) is not None]
        self.next_major = max([*used, int(last) if last.isdigit() else 0]) + 1
        self.new_majors = sorted(s.major for old, new, ref in updates
                                 if _is_zero(old) and not _is_zero(new)
                                 and (s := parse_branch_ref(ref)) is not None
                                 and ref not in existing)
        self.problems: list[str] = []
        self.checked: dict[tuple[str, Version | None, bool, str | None], list[Violation]] = {}
        self.session_ids: dict[str, str | None] = {}
        self.commits = 0

    def refuse(self, ref: str, commit: str, text: object) -> None:
        line = f"{ref} {commit[:12]}: {text}" if commit else f"{ref}: {text}"
        if line not in self.problems:
            self.problems.append(line)

    def update(self, old: str, new: str, ref: str) -> None:
        if ref.startswith("refs/heads/"):
            self.branch(old, new, ref)
        elif ref.startswith("refs/tags/"):
            self.tag(old, new, ref)
        elif ref.startswith(MERGED):
            self.merged_marker(old, new, ref)
        elif ref.startswith(travel.TRAVEL_REFS):
            self.travelled_log(old, new, ref)
        else:
            self.refuse(ref, "", "only scenario branches refs/heads/vN, version tags "
                        f"refs/tags/vX.Y.Z, merge markers {MERGED}vN and access logs "
                        f"{travel.TRAVEL_REFS}<log id> may be pushed")

    def travelled_log(self, old: str, new: str, ref: str) -> None:
        """``refs/gitstore/audit/<log id>``: a machine's access log, which only grows
        (see :func:`gitstore.store.travel.check_travel`)."""
        if _is_zero(new):
            return self.refuse(ref, old, "deleting an access log is refused")
        for problem in travel.check_travel(self.repo, None if _is_zero(old) else old, new,
                                           ref[len(travel.TRAVEL_REFS):], self.customer):
            self.refuse(ref, new, f"access log: {problem}")

    def merged_marker(self, old: str, new: str, ref: str) -> None:
        """``refs/gitstore/merged/vN`` names the merge commit that took scenario vN
        into another: it is set once, to a merge commit on a pushed branch."""
        if not _is_zero(old):
            return self.refuse(ref, new, "a merge marker is never moved or deleted")
        try:
            info = self.repo.commit(new)
        except NotFoundError:
            return self.refuse(ref, new, "is not a commit")
        source = (info.trailer(Trailer.MERGED_FROM) or "").split(" ")[0]
        if info.change != ChangeKind.MERGE or source != ref[len(MERGED):]:
            self.refuse(ref, new, f"is not the merge commit of {ref[len(MERGED):]}")
        elif not any(new == tip or self.repo.is_ancestor(new, tip)
                     for tip in self.tips.values()):
            self.refuse(ref, new, "the merge commit is on no scenario branch")

    def branch(self, old: str, new: str, ref: str) -> None:
        if _is_zero(new):
            return self.refuse(ref, old, "deleting a branch is refused: history is append-only")
        scenario = parse_branch_ref(ref)
        if scenario is None or scenario.branch_ref != ref:
            return self.refuse(ref, new, "branch names must be refs/heads/vN (one branch per "
                               "deployment scenario, e.g. refs/heads/v1)")
        try:
            self.repo.commit(new)
        except NotFoundError:
            return self.refuse(ref, new, "is not a commit")
        if not _is_zero(old) and not self.repo.is_ancestor(old, new):
            return self.refuse(ref, new, f"non-fast-forward update from {old[:12]}: history "
                               "is append-only, rebuild your change on the current tip")
        if _is_zero(old) and scenario.major in self.new_majors:
            expected = self.next_major + self.new_majors.index(scenario.major)
            if scenario.major != expected:
                self.refuse(ref, new, f"a new scenario is the next one, v{expected}, not "
                            f"{scenario}: scenario numbers never skip or come back")
        walked = 0
        for info in self.repo.walk(new, self.hide, first_parent=True):
            walked += 1
            self.commit(ref, scenario, info)
        self.commits += walked
        if not walked:  # an existing commit: it passed its checks, but on which branch?
            tip = self.repo.commit(new)
            version = self.version(tip, self.repo.read_tree(new))
            if version is not None and version.major != scenario.major:
                self.refuse(ref, new, _wrong_major(ref, scenario, version))

    def commit(self, ref: str, scenario: Scenario, info: CommitInfo) -> None:
        if len(info.parents) > 1:  # only gitstore's reviewed merges, of pushed histories
            if info.change != ChangeKind.MERGE:
                self.refuse(ref, info.id, "merge commits are refused unless `gitstore merge` "
                            "made them (Change: merge): a scenario is one line of history")
            for other in info.parents[1:]:
                if not any(other == tip or self.repo.is_ancestor(other, tip)
                           for tip in [*self.hide, *self.tips.values()]):
                    self.refuse(ref, info.id, f"merges {other[:12]}, which no branch holds: "
                                "push that history too")
        files = self.repo.read_tree(info.id)
        version = self.version(info, files)
        found = [Violation(name, "", f"has git mode {mode:o}; session documents are regular "
                           "files at the top of the tree", "json")
                 for name, mode in self.repo.tree_modes(info.id).items()
                 if mode not in REGULAR]
        pointer = VERSION_POINTER
        if version is None:
            found.append(Violation(META, pointer, "no version: the commit has no "
                                   "Session-Version trailer and the metadata none", "version"))
        elif version.major != scenario.major:
            found.append(_wrong_major(ref, scenario, version))
        elif version in self.tags or self.tagged_before(version, info.id):
            found.append(Violation(META, pointer, f"is {version}, which is finalized (tag "
                                   f"{version} exists); finalized versions are immutable: "
                                   "write a follow-up or correction version", "version"))
        parent = self.repo.commit(info.parents[0]) if info.parents else None
        before = self.version(parent, self.repo.read_tree(parent.id)) if parent else None
        if version and before and version < before:
            found.append(Violation(META, pointer, f"is {version} but the parent commit is "
                                   f"{before}: versions never go backwards", "version"))
        elif version is not None and version.major == scenario.major:
            found += self.sequence(info, version, parent, before)
        own = info.trailer("Session-Id")
        session_id = self.session_id(parent.id) if parent else None
        if own and session_id and own != session_id:
            self.refuse(ref, info.id, f"Session-Id trailer is {own!r} but this scenario's "
                        f"session is {session_id!r}")
        found += self.check(info.id, files, version, info.finalizes,
                            session_id or own)
        for v in found:
            self.refuse(ref, info.id, v)

    def tag(self, old: str, new: str, ref: str) -> None:
        if _is_zero(new):
            return self.refuse(ref, old, "deleting a version tag is refused: versions are "
                               "never withdrawn")
        version = parse_tag_ref(ref)
        if version is None or version.tag_ref != ref:
            return self.refuse(ref, new, "tags must be version tags refs/tags/vX.Y.Z")
        if not _is_zero(old):
            return self.refuse(ref, new, f"tag {version} already exists at {old[:12]}: "
                               "tags are never moved or reused")
        tag = self.repo.tag_object(new)
        if tag is None:
            return self.refuse(ref, new, "is a lightweight tag; versions are annotated tags "
                               f"(git tag -a {version})")
        if tag.name != str(version):
            self.refuse(ref, new, f"the tag object is named {tag.name!r}, not {version}")
        try:
            info = self.repo.commit(tag.target)
        except NotFoundError:
            return self.refuse(ref, new, f"points at {tag.target[:12]}, which is not a commit")
        files = self.repo.read_tree(info.id)
        actual = self.version(info, files)
        if actual != version:
            self.refuse(ref, info.id, f"tag {version} points at a commit of version {actual} "
                        "(its Session-Version trailer or metadata session_version)")
        tip = self.tips.get(version.scenario.branch_ref)
        if tip is None or not self.repo.is_ancestor(info.id, tip):
            self.refuse(ref, info.id, f"tag {version} is not on its scenario branch "
                        f"{version.scenario.branch_ref}")
        for v in self.check(info.id, files, version, True, self.session_id(info.id)):
            self.refuse(ref, info.id, v)

    def sequence(self, info: CommitInfo, version: Version, parent: CommitInfo | None,
                 before: Version | None) -> list[Violation]:
        """The store's version rules between a commit and its parent: no skipping."""
        pointer = VERSION_POINTER
        if parent is None:
            first = Version(version.major, 0, 0)
            if version != first:
                return [Violation(META, pointer, f"is {version} but a scenario's first commit "
                                  f"is {first}: versions never skip", "version")]
            return []
        if before is None:
            return []  # the parent has no version: reported where it is checked
        if before.major != version.major:
            return [Violation(META, pointer, f"is {version} but its parent {parent.id[:12]} is "
                              f"{before} of scenario v{before.major}: a new scenario starts "
                              "from a root commit, never from another scenario's history",
                              "version")]
        done = parent.finalizes or before in self.tags or self.tagged_at(before, parent.id)
        follow_up = Version(before.major, before.minor + 1, 0)
        correction = Version(before.major, before.minor, before.patch + 1)
        if not done:
            if version != before:
                return [Violation(META, pointer, f"is {version} but {before} is still open "
                                  f"(its parent {parent.id[:12]}): the next commit is "
                                  f"{before} until it is finalized; versions never skip",
                                  "version")]
            return []
        if version == correction and not info.finalizes:
            return [Violation(META, pointer, f"is {version}, a correction of {before}, but "
                              "the commit does not finalize it (Change: correction): a "
                              "correction is published in one commit", "version")]
        if version == before:
            if version in self.tags or self.tagged_before(version, info.id):
                return []  # refused as a write to a finalized version already
            return [Violation(META, pointer, f"is {version}, which its parent "
                              f"{parent.id[:12]} finalized; finalized versions are "
                              "immutable: write a follow-up or correction version", "version")]
        if version not in (follow_up, correction):
            return [Violation(META, pointer, f"is {version} but after finalized {before} "
                              f"comes its follow-up {follow_up} or its correction "
                              f"{correction}: versions never skip", "version")]
        return []

    def tagged_at(self, version: Version, commit: str) -> bool:
        """True if this push tags ``version`` at ``commit`` or one of its ancestors."""
        target = self.pushed_tags.get(version)
        return target is not None and self.repo.is_ancestor(str(target), commit)

    def tagged_before(self, version: Version, commit: str) -> bool:
        """True if this push tags ``version`` at a proper ancestor of ``commit``."""
        target = self.pushed_tags.get(version)
        return target not in (None, commit) and self.repo.is_ancestor(str(target), commit)

    def version(self, info: CommitInfo, files: dict[str, bytes]) -> Version | None:
        return version_of(info, files)

    def session_id(self, commit: str) -> str | None:
        """The Session-Id trailer of ``commit`` or of its nearest first-parent ancestor."""
        chain: list[str] = []
        current: str | None = commit
        found: str | None = None
        while current is not None:
            if current in self.session_ids:
                found = self.session_ids[current]
                break
            chain.append(current)
            info = self.repo.commit(current)
            found = info.trailer("Session-Id")
            if found:
                break
            current = info.parents[0] if info.parents else None
        self.session_ids.update((c, found) for c in chain)
        return found

    def is_sealed(self, commit: str) -> bool:
        """Whether ``commit`` belongs to an encrypted customer: it or its parent
        carries a ``Sealed-Digest``, or the receiving repository is encrypted."""
        info = self.repo.commit(commit)
        return info.trailer(sealed.TRAILER) is not None or self.encrypted or any(
            self.repo.commit(p).trailer(sealed.TRAILER) is not None for p in info.parents[:1])

    def check(self, commit: str, files: dict[str, bytes], version: Version | None,
              finalizing: bool, session_id: str | None) -> list[Violation]:
        key = (commit, version, finalizing, session_id)
        if key not in self.checked and self.is_sealed(commit):  # a hub has no key: what can be
            self.checked[key] = sealed.check_stored(files)  # checked without one
        if key not in self.checked:
            proposal = Proposal(customer=self.customer, files=files, version=version,
                                change="verify", session_id=session_id,
                                finalizing=finalizing, verify_manifest=True)
            try:
                self.pipeline.run(proposal)
                self.checked[key] = []
            except InvalidDocumentError as exc:
                self.checked[key] = list(exc.violations)
        return self.checked[key]


def _pre_receive(stdin: str) -> int:
    updates = []
    for line in stdin.splitlines():
        parts = line.split()
        if len(parts) != 3:
            raise UsageError(f"unexpected pre-receive input line {line!r}")
        updates.append((parts[0], parts[1], parts[2]))
    receive = _Receive(_open_receiving_repo(), updates)
    for old, new, ref in updates:
        receive.update(old, new, ref)
    for line in receive.problems:
        _say(line)
    refs = {p.split(" ", 1)[0].rstrip(":") for p in receive.problems}
    if receive.problems:
        _say(f"push refused: {len(receive.problems)} problem(s) in {len(refs)} of "
             f"{len(updates)} ref update(s); no ref was updated")
        return 1
    _say(f"push checked: {receive.commits} new commit(s) in {len(updates)} ref update(s): ok")
    return 0


def _pre_commit() -> int:
    repo = backend.Repo.open_any(Path(os.environ.get("GIT_DIR") or "."))
    index_file = os.environ.get("GIT_INDEX_FILE")
    files = repo.read_index(Path(index_file) if index_file else None)
    customer = repo.config_get(CONFIG_KEY) or _default_customer(repo)
    proposal = Proposal(customer=customer, files=files, version=metadata_version(files),
                        change="update", verify_manifest=True)
    try:
        if repo.config_get(ENCRYPTED_KEY) == "true" or sealed.is_sealed_tree(files):
            found = sealed.check_stored(files)  # plain git cannot seal: nothing in clear
            if found:
                raise InvalidDocumentError(found)
        else:
            _pipeline(repo).run(proposal)
    except InvalidDocumentError as exc:
        for v in exc.violations:
            _say(f"staged {v}")
        if any(v.hook == "manifest" for v in exc.violations):
            _say(f"to regenerate the manifest run: {_manifest_fix(files)}")
        _say(f"commit refused: {len(exc.violations)} violation(s) in the staged files")
        return 1
    return 0


def _manifest_fix(files: Iterable[str]) -> str:
    names = sorted(name for name in files if name in DOCUMENTS)
    listed = " ".join(shlex.quote(name) for name in names)
    return f"sha256sum {listed} > {MANIFEST} && git add {MANIFEST}"


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else ""))
