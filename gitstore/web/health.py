"""What the web viewer's health page shows of one customer: the verify report, each
version tag's manifest check and signature (good, bad or unsigned, with the signer)
and the access log's chain.

Invariants: read-only (nothing here writes to the repository); damage found on the
way is a line in the answer, never an exception; a signature counts as *good* only
when ``ssh-keygen`` verified it against the store's allowed-signers file, and a
signed tag in a store without that file is reported as *unchecked*, never good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitstore.core import manifest
from gitstore.core.time import format_rfc3339, from_timestamp
from gitstore.core.versions import parse_tag_ref
from gitstore.errors import GitStoreError
from gitstore.git import signing
from gitstore.ops.verify import check_customer
from gitstore.store.facade import Customer


@dataclass(frozen=True)
class TagHealth:
    """One version tag: its manifest check and its signature."""

    version: str
    commit: str
    tagger: str
    time: str
    manifest_problems: tuple[str, ...]
    signature: str  # "good" | "bad" | "unsigned" | "unchecked" | "lightweight"
    signer: str | None
    detail: str | None = None


@dataclass
class Health:
    """The whole health answer for one customer."""

    customer: str
    problems: list[str] = field(default_factory=list)
    checked: str = ""
    tags: list[TagHealth] = field(default_factory=list)
    audit_problems: list[str] = field(default_factory=list)
    audit_records: int = 0
    signing: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"customer": self.customer, "ok": self.ok, "problems": self.problems,
                "checked": self.checked, "signing": self.signing,
                "audit": {"records": self.audit_records, "problems": self.audit_problems},
                "tags": [t.__dict__ for t in self.tags]}


def _signature(customer: Customer, oid: str) -> tuple[str, str | None, str | None]:
    """``(status, signer, detail)`` of the signature on object ``oid``."""
    found = customer.repo.signature(oid)
    if found is None:
        return "unsigned", None, None
    allowed = customer.store.config.allowed_signers
    if allowed is None:
        return "unchecked", None, "signed, but this store has no allowed-signers file"
    try:
        principal = signing.verify(found[1], found[0], allowed)
    except GitStoreError as exc:
        return "bad", None, str(exc)
    return "good", principal, None


def tag_health(customer: Customer) -> list[TagHealth]:
    """Every version tag of ``customer``, oldest first."""
    repo = customer.repo
    out: list[TagHealth] = []
    for v in sorted(v for ref in repo.refs("refs/tags/") if (v := parse_tag_ref(ref))):
        try:
            tag = repo.tag(str(v))
            if tag is None:
                continue
            problems = tuple(str(p) for p in manifest.verify(repo.read_stored(tag.target)))
            if tag.annotated:
                status, signer, detail = _signature(customer, tag.id)
            else:
                status, signer, detail = "lightweight", None, "not an annotated tag"
            out.append(TagHealth(
                version=str(v), commit=tag.target,
                tagger=str(tag.tagger) if tag.tagger else "",
                time=format_rfc3339(from_timestamp(tag.time)) if tag.time else "",
                manifest_problems=problems, signature=status, signer=signer,
                detail=detail))
        except GitStoreError as exc:
            out.append(TagHealth(str(v), "", "", "", (f"unreadable: {exc}",), "bad", None,
                                 str(exc)))
    return out


def health(customer: Customer) -> Health:
    """Run every check on ``customer`` (``gitstore verify`` and more)."""
    report = check_customer(customer)
    result = Health(customer.name, problems=list(report.problems), checked=report.checked,
                    signing=customer.store.config.allowed_signers is not None)
    try:
        result.tags = tag_health(customer)
    except GitStoreError as exc:
        result.problems.append(f"tags unreadable: {exc}")
    log = customer.audit_log
    result.audit_problems = [str(p) for p in log.verify()]
    result.audit_records = sum(1 for _ in log.records())
    return result
