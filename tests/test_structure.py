"""The package's structure rules, checked over the source with ``ast`` (nothing imported).

* no import cycle among gitstore modules (``if TYPE_CHECKING:`` imports count);
* no module over 600 lines;
* no ``_private`` name of one gitstore module used in another (imported by name,
  read off an imported module, or called on an object whose class lives elsewhere);
* no gitstore module imported inside a function, except under ``gitstore/cli/``
  (lazy imports of command implementations keep ``gitstore --help`` fast);
* ``pygit2`` imported, and the ``git`` binary run, only under ``gitstore/git/``.

The layer order itself is import-linter's job (``[tool.importlinter]`` in
pyproject.toml, run by ``.ci/run``); these are the rules it cannot express.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gitstore"
MAX_LINES = 600
#: Where function-level gitstore imports are allowed (startup speed of the CLI).
LAZY_IMPORTS_OK = ("gitstore.cli",)
#: The only layer that may import pygit2 or run the git binary.
GIT_LAYER = "gitstore.git"

SUBPROCESS_CALLS = frozenset({"run", "Popen", "call", "check_call", "check_output",
                              "getoutput", "getstatusoutput"})
OS_CALLS = frozenset({"system", "popen", "execv", "execvp", "execvpe", "execl", "execlp",
                      "spawnv", "spawnvp", "posix_spawn", "posix_spawnp"})
_GITISH_NAME = re.compile(r"(?:^|_)git(?:$|_|\d|exe|bin|cmd)", re.IGNORECASE)


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    #: (target module, line, names imported from it, inside a function?)
    imports: list[tuple[str, int, list[str], bool]] = field(default_factory=list)
    #: local alias -> gitstore module it names
    aliases: dict[str, str] = field(default_factory=dict)
    #: private names this module defines (functions, classes, attributes, assignments)
    private_defs: set[str] = field(default_factory=set)

    def rel(self, line: int) -> str:
        return f"{self.path.relative_to(PACKAGE.parent)}:{line}"

    def under(self, package: str) -> bool:
        return self.name == package or self.name.startswith(package + ".")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _function_nodes(tree: ast.AST) -> set[int]:
    """ids of every node that lies inside a function body (at any depth)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for sub in ast.walk(node):
                if sub is not node:
                    inside.add(id(sub))
    return inside


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        source = path.read_text(encoding="utf-8")
        mod = Module(_module_name(path), path, ast.parse(source, str(path)),
                     len(source.splitlines()))
        found[mod.name] = mod
    for mod in found.values():
        _collect(mod, found)
    return found


def _collect(mod: Module, known: dict[str, Module]) -> None:
    in_function = _function_nodes(mod.tree)
    is_package = mod.path.name == "__init__.py"
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                mod.imports.append((alias.name, node.lineno, [], id(node) in in_function))
                if alias.name in known:
                    mod.aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                continue
            base = _resolve(mod.name, is_package, node.level, node.module)
            rest: list[str] = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:                   # "from pkg import submodule"
                    mod.imports.append((sub, node.lineno, [], id(node) in in_function))
                    mod.aliases[alias.asname or alias.name] = sub
                else:
                    rest.append(alias.name)
            if rest:
                mod.imports.append((base, node.lineno, rest, id(node) in in_function))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if _is_private(node.name):
                mod.private_defs.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if _is_private(node.id):
                mod.private_defs.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if _is_private(node.attr):
                mod.private_defs.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if _is_private(node.target.id):
                mod.private_defs.add(node.target.id)
        elif isinstance(node, ast.arg) and _is_private(node.arg):
            mod.private_defs.add(node.arg)


def _internal_edges() -> dict[str, dict[str, int]]:
    """module -> {imported gitstore module: first line}."""
    mods = modules()
    edges: dict[str, dict[str, int]] = {name: {} for name in mods}
    for mod in mods.values():
        for target, line, _, _ in mod.imports:
            if target in mods and target != mod.name:
                edges[mod.name].setdefault(target, line)
    return edges


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _report(title: str, problems: list[str]) -> str:
    return f"{len(problems)} {title}:\n  " + "\n  ".join(problems)


def test_the_package_is_found() -> None:
    mods = modules()
    assert {"gitstore", "gitstore.errors", "gitstore.git.repo", "gitstore.cli.app"} <= set(mods)


def test_no_import_cycles() -> None:
    edges = _internal_edges()
    problems = []
    for component in _cycles(edges):
        inner = [f"{a} -> {b} ({modules()[a].rel(line)})" for a in component
                 for b, line in sorted(edges[a].items()) if b in component]
        problems.append(" <-> ".join(component) + "\n      " + "\n      ".join(inner))
    assert not problems, _report("import cycle(s)", problems)


def test_no_module_over_600_lines() -> None:
    problems = [f"{m.rel(m.lines)} ({m.name}: {m.lines} lines)"
                for m in modules().values() if m.lines > MAX_LINES]
    assert not problems, _report(f"module(s) over {MAX_LINES} lines", problems)


def test_no_private_name_used_outside_its_module() -> None:
    mods = modules()
    private_owners: dict[str, set[str]] = {}
    for mod in mods.values():
        for name in mod.private_defs:
            private_owners.setdefault(name, set()).add(mod.name)
    problems = []
    for mod in mods.values():
        for target, line, names, _ in mod.imports:      # from gitstore.x import _y
            if target in mods and target != mod.name:
                problems += [f"{mod.rel(line)} imports {target}.{n}"
                             for n in names if _is_private(n)]
        for node in ast.walk(mod.tree):                # module._y, obj._y
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in mod.aliases and mod.aliases[owner] != mod.name:
                problems.append(f"{mod.rel(node.lineno)} uses {mod.aliases[owner]}.{node.attr}")
            elif (owner not in ("self", "cls") and node.attr not in mod.private_defs
                    and private_owners.get(node.attr)):
                where = ", ".join(sorted(private_owners[node.attr]))
                problems.append(f"{mod.rel(node.lineno)} uses {ast.unparse(node)} "
                                f"(private to {where})")
    assert not problems, _report("private name(s) used outside their module", problems)


def test_no_gitstore_import_inside_a_function_outside_cli() -> None:
    mods = modules()
    problems = [f"{mod.rel(line)} imports {target}"
                for mod in mods.values() if not any(mod.under(p) for p in LAZY_IMPORTS_OK)
                for target, line, _, in_function in mod.imports
                if in_function and (target == "gitstore" or target.startswith("gitstore."))]
    assert not problems, _report("gitstore import(s) inside functions", sorted(set(problems)))


def test_pygit2_only_under_the_git_layer() -> None:
    problems = [f"{mod.rel(line)} imports {target}"
                for mod in modules().values() if not mod.under(GIT_LAYER)
                for target, line, _, _ in mod.imports
                if target.split(".")[0] == "pygit2"]
    importers = {mod.name for mod in modules().values()
                 for target, *_ in mod.imports if target.split(".")[0] == "pygit2"}
    assert importers, "nothing imports pygit2: is the check still looking at the right thing?"
    assert not problems, _report("pygit2 import(s) outside gitstore/git/", problems)


# -- running the git binary ---------------------------------------------------------------

def _call_name(func: ast.expr) -> tuple[str, str]:
    """``(owner, name)`` of a call: ``subprocess.run`` -> ``("subprocess", "run")``."""
    if isinstance(func, ast.Attribute):
        owner = func.value.id if isinstance(func.value, ast.Name) else ""
        return owner, func.attr
    if isinstance(func, ast.Name):
        return "", func.id
    return "", ""


def _gitish(node: ast.expr | None, assigned: dict[str, list[ast.expr]], depth: int = 0) -> bool:
    """Does this expression (a command, or its first word) name the git binary?"""
    if node is None or depth > 4:
        return False
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        word = node.value.strip().split(" ")[0] if node.value.strip() else ""
        return Path(word).name in ("git", "git.exe")
    if isinstance(node, ast.JoinedStr):
        return bool(node.values) and _gitish(node.values[0], assigned, depth + 1)
    if isinstance(node, ast.FormattedValue):
        return _gitish(node.value, assigned, depth + 1)
    if isinstance(node, ast.List | ast.Tuple):
        return bool(node.elts) and _gitish(node.elts[0], assigned, depth + 1)
    if isinstance(node, ast.Starred):
        return _gitish(node.value, assigned, depth + 1)
    if isinstance(node, ast.BoolOp):                       # which("git") or "git"
        return any(_gitish(v, assigned, depth + 1) for v in node.values)
    if isinstance(node, ast.IfExp):
        return any(_gitish(v, assigned, depth + 1) for v in (node.body, node.orelse))
    if isinstance(node, ast.BinOp):                        # ["git", ...] + args
        return _gitish(node.left, assigned, depth + 1)
    if isinstance(node, ast.Call):                         # shutil.which("git"), _git_exe()
        _, name = _call_name(node.func)
        return bool(_GITISH_NAME.search(name)) or (
            name == "which" and bool(node.args) and _gitish(node.args[0], assigned, depth + 1))
    if isinstance(node, ast.Attribute):
        return bool(_GITISH_NAME.search(node.attr))
    if isinstance(node, ast.Name):
        return bool(_GITISH_NAME.search(node.id)) or any(
            _gitish(value, assigned, depth + 1) for value in assigned.get(node.id, []))
    return False


def _git_runs(mod: Module) -> Iterator[int]:
    """Lines where ``mod`` starts a process whose argv[0] is git."""
    subprocess_names = {"subprocess"} | {
        alias.asname for node in ast.walk(mod.tree) if isinstance(node, ast.Import)
        for alias in node.names if alias.name == "subprocess" and alias.asname}
    from_subprocess = {n for target, _, names, _ in mod.imports if target == "subprocess"
                       for n in names}
    scopes: list[ast.AST] = [mod.tree, *(n for n in ast.walk(mod.tree)
                                         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]
    seen: set[int] = set()
    for scope in scopes:
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
            elif (isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None
                    and isinstance(node.target, ast.Name)):
                assigned.setdefault(node.target.id, []).append(node.value)
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or id(node) in seen:
                continue
            owner, name = _call_name(node.func)
            runs = ((owner in subprocess_names and name in SUBPROCESS_CALLS)
                    or (not owner and name in from_subprocess and name in SUBPROCESS_CALLS)
                    or (owner == "os" and name in OS_CALLS)
                    or (owner == "asyncio" and name.startswith("create_subprocess")))
            if not runs:
                continue
            argv = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg == "args"), None)
            if owner == "os" and name.startswith(("exec", "spawn", "posix_spawn")):
                argv = node.args[0] if node.args else None     # the program path
            if _gitish(argv, assigned):
                seen.add(id(node))
                yield node.lineno


def test_the_git_check_finds_git_calls() -> None:
    sample = ast.parse(
        "import subprocess, shutil\n"
        "from subprocess import run\n"
        "def f(git, path):\n"
        "    subprocess.run([git, 'clone', path])\n"
        "    subprocess.check_output(['git', 'log'])\n"
        "    cmd = [shutil.which('git') or 'git', 'fsck']\n"
        "    run(cmd)\n"
        "    subprocess.Popen(args=[_git_exe(), 'gc'])\n"
        "    subprocess.run(['ssh-keygen', '-y'])\n"
        "    subprocess.run([digits, 'x'])\n")
    mod = Module("sample", PACKAGE / "sample.py", sample, 10)
    _collect(mod, {})
    assert list(_git_runs(mod)) == [4, 5, 7, 8]


def test_git_binary_runs_only_under_the_git_layer() -> None:
    problems = [f"{mod.rel(line)} runs git ({mod.name})"
                for mod in modules().values() if not mod.under(GIT_LAYER)
                for line in _git_runs(mod)]
    assert not problems, _report("git binary run(s) outside gitstore/git/", problems)
