"""Restoring a customer's history as another customer (``gitstore import BUNDLE
--customer NAME``).

Invariants: the source repository is only read; every commit of the result is
written through :class:`~gitstore.store.writer.Writer`, so every check and hook runs
on it. Each scenario keeps its number, and each commit its documents, author,
author time, message and tag (tagger, time, message), except that
``session_info.api_key`` becomes the new customer's name and the ``Manifest``
trailers follow the new content; each rewritten commit and tag adds
``Renamed-From: <old name>`` (when the name changed) and ``Imported-From:
<original commit id>``. A source commit whose files do not match its
``SHA256SUMS`` is refused (damage is never laundered into a fresh manifest). A
scenario purged by retention (one analytics-only commit, which holds no api_key) is
copied as it was. The statement of work is kept as rendered, naming the customer it
was written for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta, timezone
from typing import Any

from gitstore.core import canonical, manifest, sealed
from gitstore.core.commits import (
    FINALIZING,
    ChangeKind,
    CommitInfo,
    Message,
    TagInfo,
    Trailer,
    version_of,
)
from gitstore.core.names import ANA, CONV, MANIFEST, META
from gitstore.core.time import from_timestamp
from gitstore.core.versions import Scenario, parse_branch_ref, parse_tag_ref
from gitstore.errors import IntegrityError, UsageError
from gitstore.git import repo as backend
from gitstore.ops.retention import write_retained
from gitstore.store.facade import Customer
from gitstore.store.writer import Authorship, Plan, Writer

__all__ = ["api_key_of", "restore_as"]


def api_key_of(files: dict[str, bytes]) -> str | None:
    """``session_info.api_key`` of the metadata in ``files``, if readable."""
    try:
        key = canonical.loads(files[META])["session_info"]["api_key"]
    except (canonical.JSONParseError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) else None


def restore_as(source: backend.Repo, customer: Customer) -> list[str]:
    """Rewrite every scenario of ``source`` into ``customer`` (a fresh staging
    repository) through the writer, ``session_info.api_key`` set to its name
    (see the module docstring); returns the old names found."""
    olds: set[str] = set()
    writer = Writer(customer)
    branches = sorted((s, tip) for ref, tip in source.refs("refs/heads/").items()
                      if (s := parse_branch_ref(ref)) is not None)
    repo = customer.ensure_repo()
    for scenario, tip in branches:  # each keeps its number (gaps left by retention too)
        tags = {}
        for ref in source.refs(f"refs/tags/v{scenario.major}."):
            v = parse_tag_ref(ref)
            tag = source.tag(str(v)) if v is not None and v.major == scenario.major else None
            if tag is not None:
                tags[tag.target] = tag
        history = list(source.walk(tip, first_parent=True))[::-1]
        if len(history) == 1 and history[0].change == ChangeKind.RETENTION:
            _restore_retained_commit(source, customer, repo, scenario, history[0])
            continue
        before: Mapping[str, bytes] = {}
        for n, info in enumerate(history):
            plan, by, sid, old = _renamed_commit(source, customer.name, scenario, info,
                                                 before, tags.get(info.id))
            olds |= {old} if old else set()
            before = plan.files
            if n == 0:
                writer.create(sid, _always(plan), by)
            else:
                writer.write(scenario, _always(plan), by)
    customer.reopen()
    repo = customer.repo
    if branches:
        repo.set_head(branches[-1][0].branch_ref)
    return sorted(olds)


def _always(plan: Plan) -> Callable[[Any], Plan]:
    """A plan builder that ignores the tip (a rewritten commit is fixed in advance)."""
    return lambda _: plan


def _renamed_commit(source: backend.Repo, new: str, scenario: Scenario, info: CommitInfo,
                    before: Mapping[str, bytes], tag: TagInfo | None
                    ) -> tuple[Plan, Authorship, str, str | None]:
    """One commit of ``source`` rewritten for customer ``new``: its plan, its
    authorship (original author, time and message, new manifest and trailers), its
    session id and the api_key it had."""
    files = source.read_tree(info.id)
    bad = manifest.verify(files)
    if bad:
        raise IntegrityError(f"commit {info.id[:12]} of the bundle does not match its "
                             f"SHA256SUMS ({bad[0]}); nothing imported")
    files.pop(MANIFEST, None)
    if any(sealed.has_tokens(d) for d in files.values()):
        raise UsageError(f"commit {info.id[:12]} holds encrypted documents, sealed to their "
                         "customer's name: an encrypted customer cannot be renamed; nothing "
                         "imported")
    old = api_key_of(files)
    if old is not None:
        meta = canonical.loads(files[META])
        meta["session_info"]["api_key"] = new
        files[META] = canonical.dumps(meta)
    version = version_of(info, files)
    sid = info.session_id or _session_id(files)
    if version is None or version.scenario != scenario or sid is None:
        raise UsageError(f"commit {info.id[:12]} of the bundle names no version of {scenario} "
                         "or no session id; it cannot be restored as another customer")
    digest = manifest.digest(manifest.build(files))
    extra = [(Trailer.RENAMED_FROM, old)] if old is not None and old != new else []
    extra.append((Trailer.IMPORTED_FROM, info.id))
    change = info.change or ChangeKind.UPDATE
    changed = frozenset(n for n in {*files, *before} if files.get(n) != before.get(n))
    offset = info.author_offset if info.author_offset is not None else info.offset
    zone = timezone(timedelta(minutes=offset))
    when = from_timestamp(info.author_time if info.author_time is not None else info.time)
    by = Authorship(author=info.author, time=when.astimezone(zone),
                    message=_with_trailers(info.message, digest, extra),
                    tag_message=_with_trailers(_unsigned(tag.message), digest, extra)
                    if tag else None,
                    tagger=tag.tagger if tag else None,
                    tag_time=from_timestamp(tag.time).astimezone(zone) if tag else None)
    plan = Plan(files, version, change, Message.parse(info.message).summary,
                changed or frozenset({META}), finalizing=change in FINALIZING)
    return plan, by, sid, old


def _session_id(files: dict[str, bytes]) -> str | None:
    try:
        sid = canonical.loads(files[CONV])["session_id"]
    except (canonical.JSONParseError, KeyError, TypeError):
        return None
    return sid if isinstance(sid, str) else None


def _unsigned(message: str) -> str:
    """A tag message without the signature git appends to it."""
    for marker in ("-----BEGIN SSH SIGNATURE-----", "-----BEGIN PGP SIGNATURE-----"):
        cut = message.find(marker)
        if cut >= 0:
            message = message[:cut]
    return message


def _with_trailers(text: str, digest: str, extra: list[tuple[str, str]]) -> str:
    """``text`` with its Manifest trailer set to ``digest`` and ``extra`` trailers
    added before it (at the end when it has none)."""
    m = Message.parse(text)
    pairs = [(k, v) for k, v in m.trailers
             if k not in (Trailer.RENAMED_FROM, Trailer.IMPORTED_FROM)]
    at = next((i for i, (k, _) in enumerate(pairs) if k == Trailer.MANIFEST), len(pairs))
    if at < len(pairs):
        pairs[at] = (Trailer.MANIFEST, digest)
    pairs[at:at] = extra
    return Message(m.summary, tuple(pairs), m.body).format()


def _restore_retained_commit(source: backend.Repo, customer: Customer,
                             repo: backend.Repo, scenario: Scenario, info: CommitInfo) -> None:
    """A scenario purged by retention: its analytics-only root commit, as it was
    (it holds no api_key)."""
    analytics = source.read_file(info.id, ANA)
    if analytics is None:
        raise UsageError(f"retained scenario {scenario} of the bundle has no {ANA}")
    when = from_timestamp(info.author_time if info.author_time is not None else info.time)
    commit = write_retained(customer, repo, analytics, message=info.message,
                            author=info.author, when=when, session_id=info.session_id)
    repo.update_ref(scenario.branch_ref, commit, None,
                    "gitstore: import of a retained analytics summary")
    customer.refs_moved()
    repo.config_set("gitstore.lastScenario", str(scenario.major))
