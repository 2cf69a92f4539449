"""The shape of the source tree, checked by reading it (``ast``), never by importing it.

- every console script lives in ``ui/cli/<script name>.py`` as its module-level ``app``;
- no import cycle between the project's files: every import counts, function-level ones and
  those under ``if TYPE_CHECKING:`` included (a cycle there is still one in the design);
- packages import only downwards (``ALLOWED``); ``common`` imports nothing of the project;
- only ``ui`` imports the edge libraries (typer, gradio, fastapi, uvicorn, starlette);
- one module loads the causal LM (``AutoModelForCausalLM.from_pretrained``);
- no test asserts a wall-clock time (speed is measured in ``bench/``);
- ``make test`` runs the doctests of every package.

An import edge joins two files: ``from a.b import c`` points at ``a/b/c.py`` when that file
exists and at ``a/b.py`` (or ``a/b/__init__.py``) otherwise; the ``__init__.py`` files of the
packages passed through on the way are not counted (importing ``a.b.c`` runs them, but they
only re-export). Relative imports are resolved like absolute ones.
"""
from __future__ import annotations

import ast
import re
import shlex
import sys
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# Package -> the project packages it may import. `ingest` is not there for `assistant`: what it
# needs of documents comes through `index`.
ALLOWED: dict[str, set[str]] = {
    "common": set(),
    "ingest": {"common"},
    "finetune": {"common"},
    "index": {"ingest", "common"},
    "assistant": {"index", "finetune", "common"},
    "ui": {"assistant", "finetune", "index", "ingest", "common"},
}
PACKAGES = tuple(ALLOWED)
EDGE_LIBRARIES = {"typer", "gradio", "fastapi", "uvicorn", "starlette"}
CAUSAL_LM_LOADER = {"finetune.loading"}  # the one module that calls AutoModelForCausalLM.from_pretrained
TIME_FUNCTIONS = {"perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns",
                  "process_time", "process_time_ns"}


# ---------------------------------------------------------------- reading the tree

@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@lru_cache(maxsize=None)
def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _resolve(name: str) -> str | None:
    """The project module that importing ``name`` reaches (its longest existing prefix)."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <node.module> import ...`` written in ``module``."""
    if not node.level:
        return node.module or ""
    is_package = modules()[module].name == "__init__.py"
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[:len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(module: str) -> list[tuple[str, int]]:
    """(dotted name, line) of everything ``module`` imports, at any depth of its code."""
    names = []
    for node in ast.walk(parse(modules()[module])):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            for alias in node.names:
                full = f"{base}.{alias.name}" if alias.name != "*" else base
                names.append((full if full in modules() else base, node.lineno))
    return names


@lru_cache(maxsize=None)
def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {project module it imports: line of the first such import}."""
    graph: dict[str, dict[str, int]] = defaultdict(dict)
    for module in modules():
        for name, line in imported_names(module):
            target = _resolve(name)
            if target is not None and target != module:
                graph[module].setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(modules()):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# ---------------------------------------------------------------- (a) console scripts

def test_every_console_script_lives_in_the_ui_cli_module_named_after_it() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = pyproject["project"]["scripts"]
    assert scripts, "pyproject.toml declares no console scripts"
    wrong = {name: target for name, target in scripts.items() if target != f"ui.cli.{name}:app"}
    assert not wrong, f"console scripts must point at ui.cli.<script name>:app: {wrong}"
    for name in scripts:
        path = ROOT / "ui" / "cli" / f"{name}.py"
        assert path.is_file(), f"console script {name!r}: {path.relative_to(ROOT)} is missing"
        assigned = {t.id for node in parse(path).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                    if isinstance(t, ast.Name)}
        assert "app" in assigned, f"{path.relative_to(ROOT)} defines no module-level `app`"


def test_every_package_is_classified_and_packaged() -> None:
    """A new top-level package must get a row in ALLOWED (its import direction) and be shipped."""
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk <= set(ALLOWED), f"packages without an import direction: {sorted(on_disk - set(ALLOWED))}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    missing = [p for p in sorted(on_disk) if not any(re.fullmatch(pat.replace("*", ".*"), p) for pat in include)]
    assert not missing, f"packages left out of [tool.setuptools] packages: {missing} (include: {include})"


# ---------------------------------------------------------------- (b, c) imports

def test_no_import_cycle_between_files() -> None:
    graph = import_graph()
    found = cycles(graph)
    lines = []
    for component in found:
        members = set(component)
        edges = [f"{a} -> {b} ({modules()[a].relative_to(ROOT)}:{graph[a][b]})"
                 for a in component for b in sorted(graph[a]) if b in members]
        lines.append(f"cycle {component}: " + "; ".join(edges))
    assert not found, "\n".join(lines)


def test_packages_import_only_downwards() -> None:
    bad = []
    for module, targets in sorted(import_graph().items()):
        package = module.split(".")[0]
        for target, line in sorted(targets.items()):
            other = target.split(".")[0]
            if other != package and other not in ALLOWED[package]:
                bad.append(f"{modules()[module].relative_to(ROOT)}:{line} imports {target} "
                           f"({package} may import {sorted(ALLOWED[package]) or 'nothing of the project'})")
    assert not bad, "\n".join(bad)


def test_only_ui_imports_the_edge_libraries() -> None:
    bad = []
    for module in sorted(modules()):
        if module.split(".")[0] == "ui":
            continue
        for name, line in imported_names(module):
            if name.split(".")[0] in EDGE_LIBRARIES:
                bad.append(f"{modules()[module].relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "only ui/ may import typer, gradio, fastapi, uvicorn or starlette:\n" + "\n".join(bad)


# ---------------------------------------------------------------- (e) one causal-LM loader

def _loads_causal_lm(tree: ast.Module) -> list[int]:
    """Lines calling ``AutoModelForCausalLM.from_pretrained`` (under any alias it is imported as)."""
    aliases = {"AutoModelForCausalLM"} | {
        alias.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        for alias in node.names if alias.name == "AutoModelForCausalLM" and alias.asname}
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"):
            continue
        owner = node.func.value
        if ((isinstance(owner, ast.Name) and owner.id in aliases)
                or (isinstance(owner, ast.Attribute) and owner.attr == "AutoModelForCausalLM")):
            lines.append(node.lineno)
    return lines


def test_one_module_loads_the_causal_lm() -> None:
    loaders = {module: lines for module in sorted(modules())
               if (lines := _loads_causal_lm(parse(modules()[module])))}
    assert set(loaders) == CAUSAL_LM_LOADER, (
        f"AutoModelForCausalLM.from_pretrained must be called only in {sorted(CAUSAL_LM_LOADER)}; "
        f"called in {loaders}")


# ---------------------------------------------------------------- (f) no wall-clock asserts

def _is_clock_read(node: ast.AST) -> bool:
    """``time.perf_counter()``, ``perf_counter()`` (imported bare), ``time.monotonic()`` and the like."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr in TIME_FUNCTIONS and isinstance(func.value, ast.Name) and func.value.id == "time"
    return isinstance(func, ast.Name) and func.id in TIME_FUNCTIONS - {"time"}


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of ``scope`` outside the functions defined inside it."""
    nodes, todo = [], list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        nodes.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo += ast.iter_child_nodes(node)
    return nodes


def _mentions_clock(node: ast.AST, timed: set[str]) -> bool:
    return any(_is_clock_read(n) or (isinstance(n, ast.Name) and (n.id in timed or "elapsed" in n.id))
               or (isinstance(n, ast.Attribute) and "elapsed" in n.attr) for n in ast.walk(node))


def _timed_names(nodes: list[ast.AST], inherited: set[str]) -> set[str]:
    """Names holding a clock reading or a value computed from one (to a fixed point)."""
    assigns = [n for n in nodes if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))]
    timed = set(inherited)
    while True:
        grown = set(timed)
        for node in assigns:
            if node.value is not None and _mentions_clock(node.value, timed):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                grown |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if grown == timed:
            return timed
        timed = grown


def wall_clock_asserts(scope: ast.AST, inherited: frozenset[str] = frozenset()) -> list[int]:
    """Lines of ``assert`` statements that bound a clock reading, or a duration computed from
    one, with ``<``, ``<=``, ``>`` or ``>=``; each function is its own scope (seeing the names
    of the functions around it)."""
    nodes = _own_nodes(scope)
    timed = _timed_names(nodes, set(inherited))
    lines = []
    for node in nodes:
        if isinstance(node, ast.Assert):
            for cmp in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
                if (any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in cmp.ops)
                        and _mentions_clock(cmp, timed)):
                    lines.append(node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines += wall_clock_asserts(node, frozenset(timed))
    return sorted(set(lines))


def test_the_wall_clock_detector_catches_the_usual_forms() -> None:
    timed = ast.parse("def t():\n    start = time.perf_counter()\n    run()\n"
                      "    took = time.perf_counter() - start\n    assert took < 1.5\n"
                      # (split over lines so that a plain grep for timed asserts does not flag this sample)
                      "    assert time.monotonic() - start "
                      "<= 10\n    assert elapsed "
                      "< 2\n"
                      "    def inner():\n        assert took > 0.1\n")
    assert wall_clock_asserts(timed) == [5, 6, 7, 9]
    untimed = ast.parse("def t():\n    n = len(x)\n    assert n < 3\n    assert 0 < a.first_token_s <= a.total_s\n")
    assert wall_clock_asserts(untimed) == []


def test_no_test_asserts_a_wall_clock_time() -> None:
    found = {path.name: lines for path in sorted((ROOT / "tests").glob("*.py"))
             if (lines := wall_clock_asserts(parse(path)))}
    assert not found, f"tests asserting wall-clock times (file: lines); measure speed in bench/: {found}"


# ---------------------------------------------------------------- (g) doctests in `make test`

def _make_variables(text: str) -> dict[str, str]:
    pattern = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$", re.M)
    return {m.group(1): m.group(2).strip() for m in pattern.finditer(text)}


def _expand(command: str, variables: dict[str, str]) -> str:
    for _ in range(10):  # nested $(VAR)s, a few levels deep
        command = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), ""), command)
    return command


def _recipe(text: str, target: str) -> list[str]:
    """The recipe lines of ``target`` (backslash continuations joined)."""
    lines = text.replace("\\\n", " ").splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"^{re.escape(target)}\s*:(?!=)", line):
            recipe = []
            for following in lines[i + 1:]:
                if not following.startswith("\t"):
                    break
                recipe.append(following.strip())
            return recipe
    return []


def test_make_test_runs_the_doctests_of_every_package() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    commands = [_expand(line, _make_variables(text)) for line in _recipe(text, "test")]
    pytest_runs = [c for c in commands if "pytest" in c]
    assert pytest_runs, f"the Makefile's test target runs no pytest: {commands}"
    doctest_runs = [{w.rstrip("/") for w in shlex.split(c)} for c in pytest_runs if "--doctest-modules" in c]
    assert doctest_runs, f"`make test` runs pytest without --doctest-modules: {pytest_runs}"
    missing = [p for p in PACKAGES if not any(p in words for words in doctest_runs)]
    assert not missing, f"`make test` does not collect the doctests of {missing}: {pytest_runs}"
