"""The command registry of ``gitstore.cli.app``: every registered name resolves to its
click command, the registry's one-line help is the command's own, the README names
every command, command modules import only ``gitstore.cli.app``'s helpers (never the
group), and ``gitstore --help`` / ``--version`` import no command module."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from typing import Any

import click
import pytest
from conftest import ROOT

from gitstore.cli import app
from gitstore.cli.app import COMMANDS, cli

CLI_DIR = ROOT / "gitstore" / "cli"
#: Every command module, each named by the registry (a module nothing registers is dead).
COMMAND_MODULES = sorted(f"gitstore.cli.{p.stem}" for p in CLI_DIR.glob("*.py")
                         if p.stem not in ("__init__", "app"))
#: Heavy libraries the group's own help must not need.
HEAVY = ("jsonschema", "jinja2", "detect_secrets", "phonenumbers", "sqlite3", "pydantic",
         "pygit2")
#: The only gitstore modules ``import gitstore.cli.app`` may load by itself.
LIGHT = {"gitstore", "gitstore.cli", "gitstore.cli.app", "gitstore.core", "gitstore.core.time",
         "gitstore.errors", "gitstore.version"}


def _ctx() -> click.Context:
    return click.Context(cli, info_name="gitstore")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_resolves(name: str) -> None:
    entry = COMMANDS[name]
    module, _, _attr = entry.target.partition(":")
    assert module in COMMAND_MODULES, entry.target
    command = cli.get_command(_ctx(), name)
    assert isinstance(command, click.Command), name
    assert command.name == name and not command.hidden
    assert cli.get_command(_ctx(), name) is command        # loaded once, then cached
    # The registry's help is what click would show for the loaded command.
    assert command.get_short_help_str(10_000) == entry.help, (
        f"COMMANDS[{name!r}].help should read {command.get_short_help_str(10_000)!r}")


def test_registry_covers_every_module_and_command() -> None:
    registered = {COMMANDS[n].target.partition(":")[0] for n in COMMANDS}
    assert registered == set(COMMAND_MODULES)
    assert cli.list_commands(_ctx()) == sorted(COMMANDS)
    assert cli.get_command(_ctx(), "no-such-command") is None
    # Every click command a module defines is registered or belongs to a registered group.
    for name in COMMANDS:
        cli.get_command(_ctx(), name)
    reachable: set[int] = set()

    def walk(command: click.Command) -> None:
        reachable.add(id(command))
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)

    for name in COMMANDS:
        walk(cli.commands[name])
    for module in COMMAND_MODULES:
        for attr, value in vars(sys.modules[module]).items():
            if isinstance(value, click.Command):
                assert id(value) in reachable, f"{module}.{attr} is defined but not registered"


def test_help_shows_the_registry_as_click_would() -> None:
    """The group's help before any command is loaded (a fresh process) equals its help
    with every command loaded (click's own rendering of the commands' docstrings)."""
    fresh = subprocess.run([sys.executable, "-m", "gitstore", "--help"], capture_output=True,
                           env=_env(), timeout=60, check=True).stdout.decode()
    for name in COMMANDS:
        cli.get_command(_ctx(), name)
    plain = click.Group("gitstore", commands=dict(cli.commands), params=cli.params,
                        help=cli.help, epilog=cli.epilog,
                        context_settings=cli.context_settings)
    with click.Context(plain, info_name="gitstore", **plain.context_settings) as ctx:
        expected = plain.get_help(ctx)
    assert fresh.rstrip("\n") == expected.rstrip("\n")


def test_typo_suggests_a_registered_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "gitstore", "lst"], capture_output=True,
                          env=_env(), timeout=60, check=False)
    assert proc.returncode == 2 and proc.stdout == b""
    if hasattr(click.exceptions, "NoSuchCommand"):       # click >= 8.4 suggests names
        assert "Did you mean 'list'?" in proc.stderr.decode()


def test_readme_mentions_every_command() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [n for n in COMMANDS if not re.search(rf"gitstore {re.escape(n)}(?![\w-])", text)]
    assert not missing, f"README.md never shows `gitstore <command>` for: {missing}"


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_command_modules_import_only_app_helpers(module: str) -> None:
    path = CLI_DIR / f"{module.rsplit('.', 1)[1]}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if a.name.startswith("gitstore.cli")]
            assert not bad, f"{module} imports {bad}"
        elif isinstance(node, ast.ImportFrom) and (node.level or (
                node.module or "").startswith("gitstore.cli")):
            assert node.level == 0 and node.module == "gitstore.cli.app", \
                f"{module}: from {'.' * node.level}{node.module} import ..."
            names = {a.name for a in node.names}
            assert not names & {"cli", "main", "COMMANDS", "LazyGroup", "*"}, \
                f"{module} imports {names} from gitstore.cli.app"


def test_app_imports_no_command_module() -> None:
    tree = ast.parse((CLI_DIR / "app.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        assert not [n for n in names if n in COMMAND_MODULES
                    or n.rpartition(".")[0] in COMMAND_MODULES], names


def test_entry_points_run_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["scripts"]
    module, _, attr = scripts["gitstore"].partition(":")
    assert (module, attr) == ("gitstore.cli.app", "main") and app.main is getattr(app, attr)
    for argv in (["-m", "gitstore"], ["-m", "gitstore.cli.app"]):
        proc = subprocess.run([sys.executable, *argv, "--version"], capture_output=True,
                              env=_env(), timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert re.fullmatch(r"gitstore, version \S+\n", proc.stdout.decode())


# -- startup: what `gitstore --help` imports ------------------------------------------

_PROBE = """
import contextlib, io, json, sys
start = set(sys.modules)
import gitstore
package = set(sys.modules)
from gitstore.cli import app
with contextlib.redirect_stdout(io.StringIO()):
    try:
        app.main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "package": sorted(package - start),
                  "cli": sorted(set(sys.modules) - package)}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GITSTORE_ROOT", None)
    return env


def _probe(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                          env=_env(), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["code"] == 0
    return data


def _top(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted({m for m in modules if m.split(".")[0] in names})


@pytest.fixture(scope="module", params=["--help", "--version"])
def probe(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _probe(request.param)


def test_help_imports_no_command_module(probe: dict[str, Any]) -> None:
    loaded = set(probe["package"]) | set(probe["cli"])
    assert not loaded & set(COMMAND_MODULES), sorted(loaded & set(COMMAND_MODULES))


def test_cli_app_adds_nothing_heavy(probe: dict[str, Any]) -> None:
    """Beyond what ``import gitstore`` loads, the CLI's help needs only click, the light
    gitstore modules and the standard library."""
    assert not _top(probe["cli"], HEAVY), _top(probe["cli"], HEAVY)
    extra = {m for m in probe["cli"] if m.split(".")[0] == "gitstore"}
    assert extra <= LIGHT, sorted(extra - LIGHT)


def test_help_imports_nothing_heavy_at_all(probe: dict[str, Any]) -> None:
    loaded = set(probe["package"]) | set(probe["cli"])
    assert not _top(sorted(loaded), HEAVY)
    assert {m for m in loaded if m.split(".")[0] == "gitstore"} <= LIGHT
