"""Start-up: a ``gitstore`` process imports only what its command needs.

Not a timing test (speed targets live in ``bench/``): each case runs the real command
in a fresh interpreter and checks ``sys.modules`` when it is done. ``--help`` and
``--version`` load no heavy library at all; the read commands load none of the
validation, rendering and scanning libraries (jsonschema, pydantic, jinja2,
detect-secrets, phonenumbers), ``render`` only jinja2; a clean write loads none of
them either, and a write whose data needs one loads it and refuses what it always
refused. The deferred imports that make
this so (:mod:`gitstore.core.lazy`) are checked statically too: each is paired with a
``TYPE_CHECKING`` import of the same module, so the layer rules still see it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CUSTOMER, ROOT, Clock, build_history, git

from gitstore import Store
from gitstore.core import lazy

PACKAGE = ROOT / "gitstore"
#: The libraries behind validation, rendering, scanning, the index and encryption.
HEAVY = ("jsonschema", "pydantic", "jinja2", "detect_secrets", "phonenumbers", "sqlite3",
         "cryptography")
#: The gitstore modules that exist to hold those libraries' subclasses.
HEAVY_MODULES = ("gitstore.core.models", "gitstore.core.templating", "gitstore.rules.detectors")
#: A read needs none of these (sqlite3 is not listed: the store's writer module still
#: imports it at load, and the index commands need it anyway), nor what only merges use.
NOT_FOR_READS = (*HEAVY[:5], *HEAVY_MODULES, "gitstore.store.merges", "gitstore.core.merge")
#: Nor do the reads the benchmark times (``bench/cases/cli.py``) sign anything, generate
#: secrets, load the writer's side of the store, the index, the secrets scanner, the
#: pipeline, the key store, the sealing module, the answer log, or the git layer's pack
#: writer, packs, repair checks and git-binary wrapper (they read through ``git cat-file``,
#: gitstore.git.catfile, so ``subprocess`` is theirs now; pygit2 is not).
NOT_FOR_TIMED_READS = (*NOT_FOR_READS, "pygit2", "gitstore.git.signing", "secrets",
                       "gitstore.store.session", "gitstore.store.writer",
                       "gitstore.catalog.index", "gitstore.rules.secrets", "sqlite3",
                       "gitstore.rules.pipeline", "gitstore.store.keys", "gitstore.core.sealed",
                       "gitstore.store.answers", "gitstore.git.packwrite", "gitstore.git.packs",
                       "gitstore.git.integrity", "gitstore.git.binary")

PROBE = """\
import dataclasses, json, sys
from gitstore.cli.app import main
report, args = sys.argv[1], sys.argv[2:]
code = None
try:
    main(args)
except SystemExit as exc:
    code = exc.code
made = sorted(f"{name}.{attr}" for name, mod in list(sys.modules.items())
              if name.startswith("gitstore") for attr, obj in vars(mod).items()
              if isinstance(obj, type) and obj.__module__ == name
              and dataclasses.is_dataclass(obj))
with open(report, "w", encoding="utf-8") as f:
    json.dump({"code": code, "modules": sorted(sys.modules), "dataclasses": made}, f)
"""


def _probe(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    """Run ``gitstore ARGS`` in a fresh interpreter: its report and its stderr."""
    report = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(report), *args], cwd=tmp_path,
                          capture_output=True, check=False, timeout=120)
    assert report.exists(), proc.stderr.decode(errors="replace")
    return json.loads(report.read_text(encoding="utf-8")), proc.stderr.decode(errors="replace")


def _run(tmp_path: Path, *args: str) -> tuple[int, set[str], str]:
    """Run ``gitstore ARGS`` in a fresh interpreter: exit code, modules loaded, stderr."""
    data, err = _probe(tmp_path, *args)
    return data["code"], set(data["modules"]), err


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (top-level libraries or gitstore modules) were imported."""
    return sorted(n for n in names if n in modules)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store: v1.0.0, v1.1.0, v1.1.1 and v2.0.0 of one customer."""
    path = tmp_path_factory.mktemp("startup") / "sessions"
    build_history(path)
    return path


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    code, modules, err = _run(tmp_path, *args)
    assert code == 0, err
    assert not _loaded(modules, (*HEAVY, *HEAVY_MODULES, "pygit2")), \
        _loaded(modules, (*HEAVY, *HEAVY_MODULES, "pygit2"))


READS = [
    ["show", CUSTOMER, "v1.0.0", "conversation.json"],
    ["show", CUSTOMER, "v1.1.0", "-o", "json"],
    ["versions", CUSTOMER],
    ["log", CUSTOMER, "-n", "20"],
    ["diff", CUSTOMER, "v1.0.0", "v1.1.0"],
    ["customers"],
    ["audit", CUSTOMER],
    ["list"],
    ["stats"],
    ["search", "collector"],
    ["active"],
]


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_reads_import_no_validation_rendering_or_scanning(root: Path, tmp_path: Path,
                                                           args: list[str]) -> None:
    code, modules, err = _run(tmp_path, "--root", str(root), *args)
    assert code == 0, err
    if args[0] in ("show", "versions", "log", "diff"):
        # the command read a repository, through git, without loading libgit2
        assert "gitstore.git.catfile" in modules and "pygit2" not in modules
    assert not _loaded(modules, NOT_FOR_READS), _loaded(modules, NOT_FOR_READS)


#: The reads the index answers: with the index fresh they read no repository.
INDEX_READS = ("customers", "list", "stats", "search", "active")


def test_index_reads_of_a_fresh_index_import_no_pygit2(tmp_path: Path) -> None:
    """Once the index is fresh (built, refs unchanged since and not racily new),
    the index reads answer from it alone: importing pygit2 is most of the Python
    floor's cost, and ``enable_fsync`` reaches libgit2 only when a repository opens."""
    path = tmp_path / "sessions"
    build_history(path)
    when = time.time() - 60  # a store nobody wrote to lately (not racily fresh)
    for rel in ("refs/heads", "refs/tags", "packed-refs"):
        if (path / CUSTOMER / rel).exists():
            os.utime(path / CUSTOMER / rel, (when, when))
    code, modules, err = _run(tmp_path, "--root", str(path), "list")
    assert code == 0 and "pygit2" in modules, err  # the first one builds the index
    for args in READS:
        if args[0] in INDEX_READS:
            code, modules, err = _run(tmp_path, "--root", str(path), *args)
            assert code == 0, err
            assert "pygit2" not in modules, args


@pytest.mark.parametrize("args", READS[:5], ids=" ".join)
def test_the_timed_reads_import_no_signing(root: Path, tmp_path: Path, args: list[str]) -> None:
    code, modules, err = _run(tmp_path, "--root", str(root), *args)
    assert code == 0, err
    assert not _loaded(modules, NOT_FOR_TIMED_READS), _loaded(modules, NOT_FOR_TIMED_READS)
    assert ("gitstore.core.diff" in modules) == (args[0] == "diff")


@pytest.mark.parametrize("args", [*READS[:5], ["list"]], ids=" ".join)
def test_the_timed_reads_define_no_dataclass(root: Path, tmp_path: Path,
                                             args: list[str]) -> None:
    """Python 3.11 generates and compiles the methods of every dataclass when its module
    loads (about 0.6 ms a frozen class; 19 of them were 14 ms of every read): the
    records a read loads are named tuples or plain classes instead."""
    data, err = _probe(tmp_path, "--root", str(root), *args)
    assert data["code"] == 0, err
    assert data["dataclasses"] == []


def test_render_imports_jinja2_only(root: Path, tmp_path: Path) -> None:
    code, modules, err = _run(tmp_path, "--root", str(root), "render", CUSTOMER,
                              "v1.0.0")
    assert code == 0, err
    assert {"jinja2", "gitstore.core.templating"} <= modules
    others = tuple(n for n in NOT_FOR_READS if n not in ("jinja2", "gitstore.core.templating"))
    assert not _loaded(modules, others), _loaded(modules, others)


def test_a_write_in_a_fresh_process_still_runs_every_check(tmp_path: Path) -> None:
    """Deferral changes when a check's library loads, never whether the check runs: a
    new process refuses a credential (detect-secrets), a schema violation (jsonschema)
    and a phone number's policy region stays checked (phonenumbers)."""
    path = tmp_path / "sessions"
    store = Store.init(path, clock=Clock())
    store.customer("customer-write").new_session(session_id="orchestrator-session-write")
    secret = "AKIA" + "IOSFODNN7" + "EXAMPLE"
    turn = json.loads((ROOT / "examples" / "session" / "turns" / "turn-01.json").read_text())
    turn["user_input"]["query"] = f"my key is {secret}"
    (tmp_path / "leak.json").write_text(json.dumps(turn), encoding="utf-8")
    code, modules, err = _run(tmp_path, "--root", str(path), "turn", "customer-write",
                              str(tmp_path / "leak.json"))
    assert code == 4 and "aws_access_key" in err and secret not in err, err
    assert "detect_secrets" in modules
    turn["user_input"]["query"] = "a question"
    turn["turn_id"] = "one"
    (tmp_path / "bad.json").write_text(json.dumps(turn), encoding="utf-8")
    code, modules, err = _run(tmp_path, "--root", str(path), "turn", "customer-write",
                              str(tmp_path / "bad.json"))
    assert code == 4 and "turn_id" in err, err
    assert "jsonschema" in modules
    assert git(path / "customer-write", "rev-list", "--count", "v1").strip() == "1"


def test_a_clean_turn_in_a_fresh_process_loads_no_check_library(tmp_path: Path) -> None:
    """A valid turn with nothing to find is checked whole without jsonschema (the schema
    interpreter accepts it), detect-secrets (no line holds what a plugin matches) or
    phonenumbers (its digits are a plain timestamp and a digest id); it is stored."""
    path = tmp_path / "sessions"
    store = Store.init(path, clock=Clock())
    store.customer("customer-clean").new_session(session_id="orchestrator-session-clean",
                                                 created="2025-01-15T09:00:00Z")
    turn = json.loads((ROOT / "examples" / "session" / "turns" / "turn-01.json").read_text())
    (tmp_path / "clean.json").write_text(json.dumps(turn), encoding="utf-8")
    code, modules, err = _run(tmp_path, "--root", str(path), "turn", "customer-clean",
                              str(tmp_path / "clean.json"))
    assert code == 0, err
    assert not _loaded(modules, ("jsonschema", "detect_secrets", "phonenumbers")), \
        _loaded(modules, ("jsonschema", "detect_secrets", "phonenumbers"))
    assert git(path / "customer-clean", "rev-list", "--count", "v1").strip() == "2"


def test_phonenumbers_loads_only_for_a_policy_that_acts_on_phone_numbers(
        tmp_path: Path) -> None:
    """Under the default policy (phone numbers allowed) a turn full of digits is stored
    without phonenumbers; once the store's policy redacts phone numbers, the next such
    turn loads it and the number is stored redacted."""
    from gitstore.store import config

    path = tmp_path / "sessions"
    store = Store.init(path, clock=Clock())
    store.customer("customer-phone").new_session(session_id="orchestrator-session-phone",
                                                 created="2025-01-15T09:00:00Z")
    turn = json.loads((ROOT / "examples" / "session" / "turns" / "turn-01.json").read_text())
    query = "call +1 650-253-0000 about account 123456789012, ref 40c3b1a9e2d7f6054"
    turn["user_input"]["query"] = query
    (tmp_path / "one.json").write_text(json.dumps(turn), encoding="utf-8")
    code, modules, err = _run(tmp_path, "--root", str(path), "turn", "customer-phone",
                              str(tmp_path / "one.json"))
    assert code == 0, err
    assert "phonenumbers" not in modules
    config.save(path, config.load(path)._replace(secrets={"pii": {"phone": "redact"}}))
    turn["turn_id"] = 2
    turn["timestamp"] = "2025-01-15T11:05:00Z"
    (tmp_path / "two.json").write_text(json.dumps(turn), encoding="utf-8")
    code, modules, err = _run(tmp_path, "--root", str(path), "turn", "customer-phone",
                              str(tmp_path / "two.json"))
    assert code == 0, err
    assert "phonenumbers" in modules
    stored = json.loads(git(path / "customer-phone", "show", "v1:conversation.json"))
    queries = [t["user_input"]["query"] for t in stored["conversation_turns"]]
    assert queries == [query, query.replace("+1 650-253-0000", "[REDACTED:phone]")]


def test_a_policy_with_the_default_region_loads_no_phonenumbers(tmp_path: Path) -> None:
    src = ("import sys\nfrom gitstore.rules import policy\n"
           "p = policy.Policy.from_json({'credential': 'block', 'pii': {'email': 'redact'}})\n"
           "print(p.region, 'phonenumbers' in sys.modules, 'detect_secrets' in sys.modules,\n"
           "      'gitstore.rules.secrets' in sys.modules)\n"
           "policy.Policy(region='GB')\nprint('phonenumbers' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", src], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == ["US", "False", "False", "False", "True"]
    import phonenumbers

    from gitstore.rules.policy import DEFAULT_REGION
    assert DEFAULT_REGION in phonenumbers.SUPPORTED_REGIONS  # what the shortcut relies on


# -- the deferred imports themselves ------------------------------------------------------


def test_a_deferred_module_loads_on_first_use(tmp_path: Path) -> None:
    src = ("import sys\nfrom gitstore.core import lazy\n"
           "m = lazy.module('colorsys')\nprint('colorsys' in sys.modules)\n"
           "print(m.rgb_to_hsv(1, 0, 0), 'colorsys' in sys.modules)\n"
           "print(m.rgb_to_hsv is sys.modules['colorsys'].rgb_to_hsv)\n")
    proc = subprocess.run([sys.executable, "-c", src], cwd=tmp_path, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.splitlines() == ["False", "(0.0, 1.0, 1) True", "True"]
    with pytest.raises(AttributeError):
        lazy.module("colorsys").no_such_name  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        lazy.module("gitstore.no_such_module").anything  # noqa: B018


def _bound(node: ast.stmt) -> dict[str, str]:
    """Name -> module for the import statements directly in ``node``'s body."""
    found: dict[str, str] = {}
    for stmt in getattr(node, "body", []):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                found[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0])
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
            for alias in stmt.names:
                found[alias.asname or alias.name] = f"{stmt.module}.{alias.name}"
    return found


Deferral = tuple[str, int, str, str, dict[str, str] | None]


def _deferrals_in(tree: ast.Module, rel: str) -> list[Deferral]:
    """Every ``lazy.module(...)`` call in ``tree``: (file, line, bound name, module, the
    imports of the ``if TYPE_CHECKING:`` it is the ``else`` of, or None when it is
    anywhere else)."""
    paired: dict[int, dict[str, str]] = {}
    for stmt in tree.body:
        if (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name)
                and stmt.test.id == "TYPE_CHECKING"):
            for other in stmt.orelse:
                paired[id(other)] = _bound(stmt)
    owner = {id(stmt.value): stmt for stmt in ast.walk(tree) if isinstance(stmt, ast.Assign)}
    found: list[Deferral] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "module" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "lazy"):
            continue
        assign = owner.get(id(node))
        arg = node.args[0] if node.args else None
        module = arg.value if isinstance(arg, ast.Constant) else "<not a literal>"
        name = (assign.targets[0].id if assign is not None and len(assign.targets) == 1
                and isinstance(assign.targets[0], ast.Name) else "<not a name>")
        found.append((rel, node.lineno, name, str(module),
                      paired.get(id(assign)) if assign is not None else None))
    return found


def _deferrals() -> list[Deferral]:
    return [d for path in sorted(PACKAGE.rglob("*.py"))
            for d in _deferrals_in(ast.parse(path.read_text(encoding="utf-8")),
                                   str(path.relative_to(ROOT)))]


def _problems(deferrals: list[Deferral]) -> list[str]:
    return [f"{rel}:{line}: {name} = lazy.module({module!r}) is not in the else of an "
            f"`if TYPE_CHECKING:` that imports {module} as {name}"
            for rel, line, name, module, imports in deferrals
            if imports is None or imports.get(name) != module]


def test_every_deferred_import_is_visible_to_the_layer_checks() -> None:
    deferrals = _deferrals()
    assert len(deferrals) >= 8, "the scan no longer finds the deferred imports"
    problems = _problems(deferrals)
    assert not problems, "\n".join(problems)
    deferred = {module for *_, module, _ in deferrals}
    assert {"jsonschema", "pydantic", "phonenumbers", "sqlite3", *HEAVY_MODULES} <= deferred


@pytest.mark.parametrize(("source", "ok"), [
    ("if TYPE_CHECKING:\n    import a.b as ab\nelse:\n    ab = lazy.module('a.b')\n", True),
    ("if TYPE_CHECKING:\n    from a import b\nelse:\n    b = lazy.module('a.b')\n", True),
    ("if TYPE_CHECKING:\n    import a\nelse:\n    a = lazy.module('a')\n", True),
    ("if TYPE_CHECKING:\n    import a\nelse:\n    ab = lazy.module('a.b')\n", False),
    ("if TYPE_CHECKING:\n    import a.b\nelse:\n    a = lazy.module('a.b')\n", False),
    ("ab = lazy.module('a.b')\n", False),
    ("def f():\n    return lazy.module('a.b')\n", False),
])
def test_the_pairing_check_tells_good_from_bad(source: str, ok: bool) -> None:
    found = _deferrals_in(ast.parse(source), "sample.py")
    assert len(found) == 1 and (not _problems(found)) is ok


def test_the_deferred_modules_are_real_modules() -> None:
    for _rel, _line, _name, module, _imports in _deferrals():
        deferred: Any = lazy.module(module)
        assert deferred.__name__ == module
