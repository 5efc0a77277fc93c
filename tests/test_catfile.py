"""The second reader (gitstore.git.catfile): git's answers, read without libgit2,
are libgit2's answers, or it declines and libgit2 answers.

Every comparison here is against pygit2 on the same real repository; the CLI's read
commands take this path (tests/test_startup.py checks they never load pygit2)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from conftest import CUSTOMER, build_history, git, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitstore import Store
from gitstore.errors import IntegrityError, NotFoundError
from gitstore.git import catfile, rawobjects
from gitstore.git.repo import Repo


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A customer with four versions in two scenarios, and a merge of both on a
    branch of its own (made with plain git), its refs partly packed."""
    root = tmp_path_factory.mktemp("catfile") / "sessions"
    build_history(root)
    repo = root / CUSTOMER
    v1, v2 = git(repo, "rev-parse", "refs/heads/v1").strip(), \
        git(repo, "rev-parse", "refs/heads/v2").strip()
    tree = git(repo, "rev-parse", f"{v2}^{{tree}}").strip()
    merge = git(repo, "commit-tree", tree, "-p", v2, "-p", v1, "-m",
                "merge by hand\n\nChange: merge\nReviewed-by: Auditor <a@example.invalid>").strip()
    git(repo, "update-ref", "refs/heads/merged", merge)
    git(repo, "pack-refs", "--all")
    git(repo, "update-ref", "refs/heads/v1", v1)  # loose again, over the packed one
    return repo


@pytest.fixture()
def both(history: Path) -> Iterator[tuple[Repo, Repo, catfile.Batch]]:
    batch = catfile.open_batch(history)
    assert batch is not None
    yield Repo.open(history), Repo(None, history, batch), batch
    catfile.close_all()


def test_refs_tags_and_settings_read_as_libgit2_reads_them(both: tuple[Repo, Repo,
                                                                       catfile.Batch]) -> None:
    lib, second, batch = both
    for prefix in ("refs/", "refs/tags/", "refs/heads/", "refs/heads/v"):
        assert list(batch.held_refs(prefix).items()) == list(lib.refs(prefix).items())
        assert list(second.refs(prefix).items()) == list(lib.refs(prefix).items())
    refs = lib.refs()
    assert "refs/heads/merged" in refs and len(refs) >= 7
    for name in refs:
        assert batch.held_ref(name) == lib.ref_target(name)
    assert batch.held_ref("refs/heads/nothing") is None
    assert batch.head_ref() == lib.head_ref()
    for tag in (n[len("refs/tags/"):] for n in refs if n.startswith("refs/tags/")):
        assert batch.tag_named(tag) == lib.tag(tag)
        assert batch.tag_info(refs[f"refs/tags/{tag}"]) == lib.tag_object(refs[f"refs/tags/{tag}"])
    assert batch.tag_named("v9.9.9") is None
    for key in ("gitstore.layout", "gitstore.LAYOUT", "receive.denyDeletes",
                "gitstore.lastScenario", "core.bare", "no.such"):
        assert batch.config_get(key) == lib.config_get(key)
    assert not second.uses_libgit2


def test_commits_trees_and_files_read_as_libgit2_reads_them(
        both: tuple[Repo, Repo, catfile.Batch]) -> None:
    lib, second, batch = both
    commits = {i.id for tip in lib.refs("refs/heads/").values() for i in lib.walk(tip)}
    assert len(commits) > 10
    for oid in commits:
        assert batch.commit(oid) == lib.commit(oid)
        assert second.read_tree(oid) == lib.read_tree(oid)
        assert dict(second.read_stored(oid)) == dict(lib.read_stored(oid))
        assert second.tree_modes(oid) == lib.tree_modes(oid)
        assert second.changed_files(oid) == lib.changed_files(oid)
        for name in ("conversation.json", "session_metadata.json", "SHA256SUMS", "nothing"):
            assert second.read_file(oid, name) == lib.read_file(oid, name)
    for rev in ("v1.0.0", "v1.1.1", "v1", "v2", "HEAD", "HEAD~1", "v1~2", "merged^2", "v1^0",
                "refs/heads/v1", "heads/v2", "v2^1~1", next(iter(commits))):
        assert batch.resolve(rev) == lib.resolve(rev)
    assert not second.uses_libgit2
    short = next(iter(commits))[:10]  # an abbreviation: libgit2's reading, not git's
    assert second.resolve(short) == lib.resolve(short) and second.uses_libgit2


def test_walks_follow_libgit2s_order_and_merges_go_to_libgit2(
        both: tuple[Repo, Repo, catfile.Batch], history: Path) -> None:
    lib, second, _batch = both
    for tip in lib.refs("refs/heads/").values():
        assert list(second.walk(tip, first_parent=True)) == \
            list(lib.walk(tip, first_parent=True))
        assert list(second.first_parents(tip)) == list(lib.first_parents(tip))
    v2 = lib.ref_target("refs/heads/v2")
    assert v2 is not None
    assert list(second.walk(v2)) == list(lib.walk(v2))
    assert not second.uses_libgit2
    merged = lib.ref_target("refs/heads/merged")
    assert merged is not None
    assert list(second.walk(merged)) == list(lib.walk(merged))  # declined: a merge
    assert second.uses_libgit2


def test_what_the_second_reader_cannot_read_plainly_goes_to_libgit2(history: Path,
                                                                    tmp_path: Path) -> None:
    repo = tmp_path / "copy"
    shutil.copytree(history, repo)
    (repo / "refs" / "heads" / "odd").write_text("ref: refs/heads/v1\n")  # symbolic
    batch = catfile.open_batch(repo)
    assert batch is not None
    with pytest.raises(catfile.Declined):
        batch.refs("refs/heads/")
    second = Repo(None, repo, batch)
    assert second.refs("refs/heads/") == Repo.open(repo).refs("refs/heads/")
    assert second.uses_libgit2
    (repo / "refs" / "heads" / "odd").write_text("not a ref\n")  # damage: libgit2 reports it
    with pytest.raises(IntegrityError, match="cannot be read"):
        Repo(None, repo, batch).refs("refs/heads/")
    with pytest.raises(catfile.Declined):
        batch.read("v1\nv2")
    catfile.close_all()


def test_a_replaced_object_is_read_as_stored(history: Path, tmp_path: Path) -> None:
    """``git replace`` changes what git shows, not what libgit2 reads: the second
    reader reads what is stored."""
    repo = tmp_path / "copy"
    shutil.copytree(history, repo)
    v1, v2 = (git(repo, "rev-parse", f"{v}^{{commit}}").strip() for v in ("v1.0.0", "v2.0.0"))
    git(repo, "replace", v1, v2)
    batch = catfile.open_batch(repo)
    assert batch is not None
    assert batch.commit(v1) == Repo.open(repo).commit(v1)
    assert batch.commit(v1).id == v1 and batch.commit(v1).tree_id != batch.commit(v2).tree_id
    catfile.close_all()


def test_an_object_that_does_not_match_its_id_is_damage(history: Path, tmp_path: Path) -> None:
    """git hands out a loose object's content without checking its id; the
    second reader checks it, as libgit2's strict check does."""
    root = tmp_path / "sessions"
    shutil.copytree(history.parent, root)
    repo = root / CUSTOMER
    blob = git(repo, "rev-parse", "v1.0.0:session_analytics.json").strip()
    for pack in sorted((repo / "objects" / "pack").glob("*.pack")):
        held = tmp_path / pack.name
        pack.rename(held)
        pack.with_suffix(".idx").unlink()
        git(repo, "unpack-objects", "-q", input=held.read_bytes())  # every object loose
    path = repo / "objects" / blob[:2] / blob[2:]
    forged = b'{"forged": true}\n'
    path.chmod(0o644)
    path.write_bytes(zlib.compress(b"blob %d\0" % len(forged) + forged))
    result = run_cli(root, "show", CUSTOMER, "v1.0.0", "session_analytics.json")
    assert result.code == 7, result.err
    assert "does not match its id" in result.err and "forged" not in result.text


def _pygit2_commit(repo: pygit2.Repository, message: str, name: str, email: str,
                   when: int, offset: int) -> pygit2.Oid:
    sig = pygit2.Signature(name, email, when, offset)
    return repo.create_commit(None, sig, sig, message, repo.TreeBuilder().write(), [])


_LINES = st.sampled_from([
    "Key: value", "Change: turn", "Signed-off-by: A <a@b>", "", "  folded", " x", "#comment",
    "---", "--- x", "Conflicts:", "\tpath", "a:b", "Plain words", "Ke y: v", "K:", "K :  v",
    "(cherry picked from commit 1)", "-: x", ":x", "Å: y", "Key:\tv", "x"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_LINES, max_size=10), free=st.text(max_size=40), newline=st.booleans(),
       name=st.text(st.characters(blacklist_characters="<>\n\0"), max_size=12),
       email=st.text(st.characters(blacklist_characters="<>\n\0"), max_size=12),
       when=st.integers(0, 2**33), offset=st.integers(-720, 840))
def test_a_commit_parses_as_pygit2_reads_it_or_not_at_all(
        tmp_path_factory: pytest.TempPathFactory, lines: list[str], free: str, newline: bool,
        name: str, email: str, when: int, offset: int) -> None:
    """Laws: a commit message's trailers are libgit2's; a commit the parser reads
    is read exactly as pygit2 reads it, and one it declines is left to libgit2."""
    repo = pygit2.init_repository(str(tmp_path_factory.mktemp("laws")), bare=True)
    message = "Title\n\n" + free + "\n\n" + "\n".join(lines) + ("\n" if newline else "")
    try:
        oid = _pygit2_commit(repo, message, name, email, when, offset)
    except (ValueError, pygit2.GitError):
        return  # libgit2 refuses to write it: nothing to read
    obj = repo[oid]
    assert rawobjects.message_trailers(obj.message) == dict(obj.message_trailers)
    parsed = rawobjects.parse_commit(str(oid), repo.odb.read(oid)[1])
    if parsed is not None:
        assert parsed == Repo(repo, Path(repo.path)).commit(str(oid))


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(st.sampled_from([
    b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    b"parent 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    b"author A <a@b> 1 +0000", b"committer C <c@d> 2 -0130", b"author  A  <a@b> 1 +0000",
    b"committer C <c@d> 2 +9999", b"encoding ISO-8859-1", b"gpgsig x\n y", b"", b"message",
    b"Change: turn", b"\xff\xfe", b"committer <> 0 +0000"]), min_size=1, max_size=8))
def test_hostile_commit_objects_never_read_otherwise_than_libgit2(
        tmp_path_factory: pytest.TempPathFactory, raw: list[bytes]) -> None:
    repo = pygit2.init_repository(str(tmp_path_factory.mktemp("hostile")), bare=True)
    data = b"\n".join(raw)
    oid = repo.odb.write(pygit2.enums.ObjectType.COMMIT, data)
    parsed = rawobjects.parse_commit(str(oid), data)
    if parsed is None:
        return
    assert parsed == Repo(repo, Path(repo.path)).commit(str(oid))


def test_reads_work_without_a_git_binary(history: Path, tmp_path: Path) -> None:
    """git is optional: without it on PATH the reads open libgit2 as before."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {**os.environ, "PATH": str(bindir)}
    proc = subprocess.run([sys.executable, "-m", "gitstore", "--root", str(history.parent),
                           "show", CUSTOMER, "v1.0.0", "session_metadata.json"],
                          capture_output=True, env=env, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == subprocess.run(
        ["git", "-C", str(history), "show", "v1.0.0:session_metadata.json"],
        capture_output=True, check=True).stdout


def test_cli_reads_answer_as_before_and_end_their_git_processes(history: Path) -> None:
    root = history.parent
    assert run_cli(root, "log", CUSTOMER, "-o", "json").code == 0
    for args in (["show", CUSTOMER, "v1.1.1", "-o", "json"], ["versions", CUSTOMER],
                 ["diff", CUSTOMER, "v1.0.0", "v1.1.0"], ["log", CUSTOMER, "merged"]):
        result = run_cli(root, *args)
        assert result.code == 0, result.err
    from gitstore.git import settings as git_settings
    assert not git_settings.reading_with_git()
    assert catfile.readers() == 0  # every reader ended with its command


# -- what a fresh-eyes review found: each answered as libgit2 answers ------------------
def _copy(history: Path, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "sessions"
    shutil.copytree(history.parent, root)
    return root, root / CUSTOMER


def test_a_repository_git_refuses_is_read_by_libgit2_and_exits_cleanly(
        history: Path, tmp_path: Path) -> None:
    """An empty HEAD (a crash's leftover): git refuses the repository, libgit2 reads
    it. The read falls back, every time, and ending the dead git is no error."""
    root, repo = _copy(history, tmp_path)
    expected = git(repo, "show", "v1.0.0:session_metadata.json")
    (repo / "HEAD").write_bytes(b"")
    for _ in range(8):
        result = run_cli(root, "show", CUSTOMER, "v1.0.0", "session_metadata.json")
        assert (result.code, result.text, result.err) == (0, expected, "")
    assert catfile.readers() == 0


def test_revisions_outside_libgit2s_grammar_are_left_to_libgit2(history: Path,
                                                                 tmp_path: Path) -> None:
    root, repo = _copy(history, tmp_path)
    lib = Repo.open(repo)
    batch = catfile.open_batch(repo)
    assert batch is not None
    tip = lib.resolve("v1")
    for rev in (tip[:8], "HEAD^{object}", "v1^{/turn}", "v1@{0}", "v1^3", "v1~01"):
        with pytest.raises(catfile.Declined):
            batch.resolve(rev)
    assert run_cli(root, "show", CUSTOMER, tip[:8], "-o", "json").json()["commit"] == tip
    assert run_cli(root, "show", CUSTOMER, "HEAD^{object}").code == 3  # libgit2: no such
    (repo / "refs" / "tags" / "v1").write_text("garbage\n")  # git would skip it for heads/v1
    result = run_cli(root, "show", CUSTOMER, "v1")
    assert result.code == 3 and "no such revision" in result.err
    catfile.close_all()


@pytest.mark.parametrize("setup", ["grafts", "shallow", "promisor", "partialclone"])
def test_repositories_git_reads_otherwise_are_left_to_libgit2(history: Path, tmp_path: Path,
                                                              setup: str) -> None:
    """Grafts and a shallow file change the parents git and libgit2 report; a
    promisor remote would make git fetch. Such repositories are read by libgit2."""
    _root, repo = _copy(history, tmp_path)
    first = git(repo, "rev-parse", "v1.0.0^{commit}").strip()
    if setup == "grafts":
        (repo / "info").mkdir(exist_ok=True)
        (repo / "info" / "grafts").write_text(first + "\n")
    elif setup == "shallow":
        (repo / "shallow").write_text(first + "\n")
    elif setup == "promisor":
        git(repo, "config", "remote.origin.promisor", "true")
    else:
        git(repo, "config", "extensions.partialclone", "origin")
    assert catfile.open_batch(repo) is None
    catfile.close_all()


def test_a_damaged_packed_refs_is_left_to_libgit2(history: Path, tmp_path: Path) -> None:
    root, repo = _copy(history, tmp_path)
    git(repo, "pack-refs", "--all")
    packed = (repo / "packed-refs").read_bytes()
    for damaged in (packed + b"\n", packed + b"^" + b"z" * 40 + b"\n",
                    packed.replace(b"\n", b"\n^" + b"0" * 40 + b"\n", 1), packed.rstrip(b"\n")):
        (repo / "packed-refs").write_bytes(damaged)
        batch = catfile.open_batch(repo)
        assert batch is not None
        with pytest.raises(catfile.Declined):
            batch.refs("refs/")
        catfile.close_all()
    (repo / "packed-refs").write_bytes(packed + b"\n")
    assert run_cli(root, "versions", CUSTOMER).code == 7  # libgit2: damaged


def test_odd_tags_and_trees_are_left_to_libgit2() -> None:
    tag = (b"object " + b"1" * 40 + b"\ntype %s\ntag v1.0.0\n"
           b"tagger A <a@b> 1 +0000\n\nmessage\n")
    assert rawobjects.parse_tag("2" * 40, tag % b"commit", "v1.0.0") is not None
    assert rawobjects.parse_tag("2" * 40, tag % b"bogus", "v1.0.0") is None
    entry = b"%s name\0" + bytes(20)
    assert rawobjects.parse_tree(entry % b"100644") == [
        rawobjects.Entry("name", "00" * 20, "blob", 0o100644)]
    for mode in (b"40755", b"100664", b"100_644", b"040000"):
        assert rawobjects.parse_tree(entry % mode) is None
    assert rawobjects.parse_tree(b"100644 \0" + bytes(20)) is None  # an empty name


def _cat_files_of_this_process(repo: Path) -> list[int]:
    """The ``git cat-file`` processes this process started for ``repo``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"cat-file" in cmdline and \
                f"--git-dir={repo}".encode() in cmdline:
            found.append(int(stat.parent.name))
    return found


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_a_git_that_died_is_declined_and_ended_without_error(history: Path) -> None:
    batch = catfile.open_batch(history)
    assert batch is not None
    tip = Repo.open(history).resolve("v1")
    assert batch.commit(tip).id == tip
    (pid,) = _cat_files_of_this_process(history)
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while _state(pid) not in ("Z", "X", None) and time.monotonic() < deadline:
        time.sleep(0.01)  # dead, pipes closed: the next request cannot be written
    second = Repo(None, history, batch)
    assert second.read_tree(tip) == Repo.open(history).read_tree(tip)  # libgit2 answered
    catfile.close_all()  # the dead git's unflushed request is no error
    assert not _cat_files_of_this_process(history)


# -- the second review round ------------------------------------------------------------
def test_revisions_libgit2_reads_otherwise_are_declined(history: Path, tmp_path: Path) -> None:
    root, repo = _copy(history, tmp_path)
    first = git(repo, "rev-parse", "v1.0.0^{commit}").strip()
    v2 = git(repo, "rev-parse", "v2").strip()
    git(repo, "tag", first.upper(), v2)  # a ref named like an id, in capitals
    (repo / "ORIG_HEAD").write_text(v2 + "\n")  # libgit2 reads $GIT_DIR/ORIG_HEAD first
    git(repo, "tag", "ORIG_HEAD", first)
    marked = git(repo, "hash-object", "-t", "tag", "-w", "--literally", "--stdin",
                 input=(f"object {v2}\ntype tree\ntag marked\n"
                        "tagger A <a@b> 1 +0000\n\nwrong type\n").encode()).strip()
    git(repo, "update-ref", "refs/tags/marked", marked)
    batch = catfile.open_batch(repo)
    assert batch is not None
    lib = Repo.open(repo)
    for rev in (first.upper(), "ORIG_HEAD", "marked", "marked~1"):
        with pytest.raises(catfile.Declined):
            batch.resolve(rev)
    assert run_cli(root, "show", CUSTOMER, first.upper(), "-o", "json").json()["commit"] == \
        lib.resolve(first.upper())
    assert run_cli(root, "show", CUSTOMER, "ORIG_HEAD", "-o", "json").json()["commit"] == v2
    try:  # declined: the store's answer through libgit2, whichever it is
        expected: object = Store(root).customer(CUSTOMER).read("marked").commit
    except NotFoundError:
        expected = 3
    result = run_cli(root, "show", CUSTOMER, "marked", "-o", "json")
    assert (result.json()["commit"] if result.code == 0 else result.code) == expected
    catfile.close_all()


def test_damage_met_while_resolving_is_no_such_revision_as_with_libgit2(
        history: Path, tmp_path: Path) -> None:
    root, repo = _copy(history, tmp_path)
    for pack in sorted((repo / "objects" / "pack").glob("*.pack")):
        held = tmp_path / pack.name
        pack.rename(held)
        pack.with_suffix(".idx").unlink()
        git(repo, "unpack-objects", "-q", input=held.read_bytes())
    second, third = (git(repo, "rev-parse", f"v1~{n}").strip() for n in (2, 3))
    (repo / "objects" / third[:2] / third[2:]).unlink()  # missing
    forged = b"tree " + b"0" * 40 + b"\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\nx\n"
    path = repo / "objects" / second[:2] / second[2:]
    path.chmod(0o644)
    path.write_bytes(zlib.compress(b"commit %d\0" % len(forged) + forged))  # not its id
    for args in (["show", CUSTOMER, "v1~3"], ["log", CUSTOMER, "v1~3"],
                 ["show", CUSTOMER, "v1~4"], ["show", CUSTOMER, "v1~2"]):
        result = run_cli(root, *args)
        assert result.code == 3 and "no such revision" in result.err, (args, result.err)
    catfile.close_all()


def test_listings_and_settings_libgit2_sees_otherwise_are_declined(
        history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _root, repo = _copy(history, tmp_path)
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "reviewed").write_text(git(repo, "rev-parse", "v1").strip() + "\n")
    (repo / "refs" / "tags" / "audit").symlink_to(audit)  # libgit2 lists what is below
    batch = catfile.open_batch(repo)
    assert batch is not None
    with pytest.raises(catfile.Declined):
        batch.refs("refs/tags/")
    assert "refs/tags/audit/reviewed" in Repo(None, repo, batch).refs("refs/tags/")
    catfile.close_all()
    (repo / "refs" / "tags" / "audit").unlink()
    git(repo, "pack-refs", "--all")
    packed = (repo / "packed-refs").read_bytes()
    (repo / "packed-refs").write_bytes(packed + packed.splitlines()[-1].split(b" ")[0]
                                       + b" refs/tags/caf\xe9\n")
    batch = catfile.open_batch(repo)
    assert batch is not None
    with pytest.raises(catfile.Declined):
        batch.refs("refs/")
    catfile.close_all()
    empty = tmp_path / "empty.gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG", str(empty))  # git alone would read no settings
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    batch = catfile.open_batch(repo)
    assert batch is not None and batch.config_get("gitstore.layout") == "2"
    catfile.close_all()
    monkeypatch.delenv("GIT_CONFIG")
    git(repo, "config", "includeIf.hasconfig:remote.*.url:x.path", "other")
    assert catfile.open_batch(repo) is None  # libgit2 does not read such includes
    catfile.close_all()


def test_a_head_naming_a_ref_that_is_not_utf8_is_damage(history: Path, tmp_path: Path) -> None:
    root, repo = _copy(history, tmp_path)
    (repo / "HEAD").write_bytes(b"ref: refs/heads/caf\xe9\n")
    for args in (["show", CUSTOMER], ["versions", CUSTOMER], ["log", CUSTOMER]):
        result = run_cli(root, *args)
        assert result.code in (0, 3, 7), (args, result.err)  # never an internal error


# -- the third review round -------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a repository to another user")
def test_another_users_repository_is_left_to_libgit2(history: Path, tmp_path: Path) -> None:
    """git -C skips its ownership check; libgit2 makes it (safe.directory)."""
    _root, repo = _copy(history, tmp_path)
    os.chown(repo, 65534, 65534)
    assert catfile.open_batch(repo) is None
    catfile.close_all()


def test_a_repository_reached_through_a_link_reads_settings_as_libgit2(
        history: Path, tmp_path: Path) -> None:
    """libgit2 opens the real path, so an ``includeIf "gitdir:"`` naming the link
    does not apply; git is given the real path too."""
    root, repo = _copy(history, tmp_path)
    link = tmp_path / "link"
    link.symlink_to(root)
    (tmp_path / "extra.gitconfig").write_text("[gitstore]\n\tmarker = linked\n")
    git(repo, "config", f"includeIf.gitdir:{link}/**.path", str(tmp_path / "extra.gitconfig"))
    batch = catfile.open_batch(link / CUSTOMER)
    assert batch is not None
    assert batch.config_get("gitstore.marker") == Repo.open(link / CUSTOMER).config_get(
        "gitstore.marker")
    catfile.close_all()


def test_a_long_way_back_is_walked_by_libgit2(both: tuple[Repo, Repo, catfile.Batch],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Past WALK_BY_GIT commits a round trip to git per commit costs more than
    libgit2 in process: walks go on with libgit2, long revision steps are declined."""
    lib, second, batch = both
    monkeypatch.setattr(catfile, "WALK_BY_GIT", 3)
    tip = lib.ref_target("refs/heads/v1")
    assert tip is not None
    assert list(second.walk(tip, first_parent=True)) == list(lib.walk(tip, first_parent=True))
    assert len(list(lib.walk(tip, first_parent=True))) > 3 and second.uses_libgit2
    with pytest.raises(catfile.Declined):
        batch.resolve("v1~4")
    assert batch.resolve("v1~3") == lib.resolve("v1~3")
