"""Health checks of a customer repository (``gitstore verify``).

The seed's checks, run over what is stored: every version has all its files
(session completeness), the documents agree with each other (data
consistency), every file matches the manifest (checksum verification), the
repository belongs to its customer (isolation: ``api_key`` equals the
repository name) and every reachable git object reads back with a valid hash.
Tags are checked against their scenario branch and their commit's trailers.
Nothing here modifies the repository; each problem is one line naming exactly
what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitstore.core.commits import version_of
from gitstore.core.versions import Version, parse_branch_ref, parse_tag_ref
from gitstore.errors import GitStoreError, InvalidDocumentError
from gitstore.git import repo as backend
from gitstore.git import signing
from gitstore.rules.proposal import Proposal
from gitstore.store.facade import Customer


@dataclass
class Report:
    customer: str
    problems: list[str] = field(default_factory=list)
    versions: int = 0
    scenarios: int = 0

    @property
    def checked(self) -> str:
        return f"{self.scenarios} scenario(s), {self.versions} version(s)"

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "ok": not self.problems, "problems": self.problems,
                "scenarios": self.scenarios, "versions": self.versions}


def check_customer(customer: Customer) -> Report:
    """Every health check on one customer; damage found on the way is a problem
    in the report, never an exception."""
    report = Report(customer.name)
    try:
        _checks(customer, report)
    except GitStoreError as exc:  # damage that stops the remaining checks
        report.problems.append(str(exc))
    customer.audit("verify", detail=f"{len(report.problems)} problem(s)")
    return report


def _checks(customer: Customer, report: Report) -> None:
    try:
        repo = customer.repo
    except GitStoreError as exc:
        report.problems.append(f"repository unusable: {exc}")
        return
    problems = report.problems
    problems.extend(repo.check_objects())
    problems.extend(f"ref {name} is broken (unreadable, or points at a missing object)"
                    for name in repo.broken_refs())
    problems.extend(f"stray lock file {p} (a writer crashed? remove it if no git process "
                    "is running)" for p in repo.stray_locks())
    branches = {s: tip for ref, tip in repo.refs("refs/heads/").items()
                if (s := parse_branch_ref(ref)) is not None}
    for ref in repo.refs("refs/heads/"):
        if parse_branch_ref(ref) is None:
            problems.append(f"unexpected branch {ref} (scenario branches are named vN)")
    report.scenarios = len(branches)
    if branches:
        newest = max(branches)
        head = repo.head_ref()
        if head != newest.branch_ref:
            problems.append(f"HEAD points at {head} instead of the newest scenario "
                            f"{newest.branch_ref}")
    tags: dict[Version, str] = {}
    for ref in repo.refs("refs/tags/"):
        v = parse_tag_ref(ref)
        if v is None:
            problems.append(f"unexpected tag {ref} (version tags are named vX.Y.Z)")
            continue
        tags[v] = ref
    for scenario, tip in sorted(branches.items()):
        try:
            info = repo.commit(tip)
            version = version_of(info, repo.read_tree(tip))
        except GitStoreError as exc:
            problems.append(f"{scenario}: tip {tip[:12]} unreadable: {exc}")
            continue
        finalized = info.finalizes
        if version is not None and finalized and version not in tags:
            problems.append(f"{scenario}: tag {version} is missing for finalize commit "
                            f"{tip[:12]} (the next write recreates it)")
        if version is not None and version in tags and not finalized:
            tagged = repo.tag(str(version))
            if tagged is not None and tagged.target != tip:
                problems.append(f"{scenario}: tip {tip[:12]} changes finalized version "
                                f"{version} after its tag (a commit made outside gitstore?)")
        allowed = customer.store.config.allowed_signers
        if allowed is not None:
            # the tip's signature covers, by hash, everything beneath it
            _check_signature(repo, f"{scenario} tip {tip[:12]}", tip, allowed, problems)
        try:
            _check_tree(customer, repo, f"{scenario} tip {tip[:12]}", tip, version,
                        finalized or version in tags, problems)
        except GitStoreError as exc:
            problems.append(f"{scenario} tip {tip[:12]}: {exc}")
    for v in sorted(tags):
        report.versions += 1
        tag = repo.tag(str(v))
        if tag is None:
            continue
        where = f"tag {v}"
        if not tag.annotated:
            problems.append(f"{where} is a lightweight tag; versions are annotated tags")
        try:
            info = repo.commit(tag.target)
            trailer_v = version_of(info, repo.read_tree(tag.target))
        except GitStoreError as exc:
            problems.append(f"{where} points at an unreadable commit: {exc}")
            continue
        if trailer_v is not None and trailer_v != v:
            problems.append(f"{where} points at a commit of {trailer_v}")
        branch_tip = branches.get(v.scenario)
        if branch_tip is None:
            problems.append(f"{where} has no scenario branch {v.scenario.branch_ref}")
        elif not repo.is_ancestor(tag.target, branch_tip):
            problems.append(f"{where} is not on its scenario branch {v.scenario.branch_ref}")
        _check_tree(customer, repo, where, tag.target, v, True, problems)
        allowed = customer.store.config.allowed_signers
        if allowed is not None:
            _check_signature(repo, where, tag.id, allowed, problems)
            _check_signature(repo, f"{where} commit {tag.target[:12]}", tag.target, allowed,
                             problems)
    problems.extend(f"audit log {p}" for p in customer.audit_log.verify())




def _check_tree(customer: Customer, repo: backend.Repo, where: str, commit: str,
                version: Version | None, finalized: bool, problems: list[str]) -> None:
    try:
        files = repo.read_tree(commit)
    except GitStoreError as exc:
        problems.append(f"{where}: cannot read tree: {exc}")
        return
    except Exception as exc:  # a damaged object surfaces as a libgit2 error
        problems.append(f"{where}: cannot read tree: {exc}")
        return
    info = repo.commit(commit)
    for name, mode in sorted(repo.tree_modes(commit).items()):
        if mode not in (0o100644, 0o100755):
            problems.append(f"{where}: {name} is not a regular file (mode {mode:o})")
    proposal = Proposal(customer=customer.name, files=files, version=version,
                        change="verify", session_id=info.trailer("Session-Id"),
                        finalizing=finalized, verify_manifest=True)
    try:
        customer.store.pipeline.run(proposal)
    except InvalidDocumentError as exc:
        problems.extend(f"{where}: {v}" for v in exc.violations)


def _check_signature(repo: backend.Repo, where: str, oid: str, allowed: Path,
                     problems: list[str]) -> None:

    found = repo.signature(oid)
    if found is None:
        problems.append(f"{where} is not signed")
        return
    try:
        signing.verify(found[1], found[0], allowed)
    except GitStoreError as exc:
        problems.append(f"{where}: {exc}")
