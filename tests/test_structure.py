"""The shape of the package, checked: imports run one way (no cycle, lazy imports inside functions included,
no private name taken from another module, down the layers of docs/architecture.md's table, which must place
every module), no function is longer than 60 lines, and the linter passes."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "headrank"
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.Module, modules: set[str]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken) for every import of a headrank module, wherever it stands."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("headrank"):
            for alias in node.names:  # "from headrank.serve import routes" imports a module too
                sub = f"{node.module}.{alias.name}"
                out.append((sub, []) if sub in modules else (node.module, [alias.name]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("headrank")]
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for target, _ in _imports(tree, set(modules)):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name and not name.startswith(target + "."):
                graph[name].add(target)  # a package's submodules may use their own package's names
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    taken = [(name, target, n) for name, tree in modules.items() for target, names in _imports(tree, set(modules))
             for n in names if n.startswith("_") and not n.startswith("__") and target != name]
    assert taken == []


def test_no_function_is_longer_than_60_lines():
    long = [(name, node.name, node.end_lineno - node.lineno + 1) for name, tree in _modules().items()
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_no_script_or_benchmark_function_is_longer_than_60_lines():
    long = []
    for folder in ("scripts", "benchmarks"):
        for path in sorted((ROOT / folder).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            long += [(path.name, node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


MAX_CLI_MODULE_LINES = 300


def test_the_command_line_is_a_thin_shell_of_small_modules():
    """cli.py was once 1,256 lines with the library's logic inside; now one small module per group of commands,
    every command registered in one table."""
    from headrank.cli import COMMANDS, app

    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (PACKAGE / "cli").glob("*.py")}
    assert not (PACKAGE / "cli.py").exists()
    assert max(sizes.values()) <= MAX_CLI_MODULE_LINES, sizes
    assert {c.name for c in app.registered_commands} == set(COMMANDS)


def test_the_linter_passes():
    """`ruff check .` with the rule set stated in pyproject.toml (CI runs it too, as `make lint`)."""
    import shutil
    import subprocess

    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    done = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def architecture_layers() -> dict[str, int]:
    """docs/architecture.md's layer table read as {module or package prefix: layer}."""
    import re

    layers = {}
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for level, cell in re.findall(r"^\| (\d+)\. [^|]* \| ([^|]*) \|", text, flags=re.M):
        for path in re.findall(r"`([\w/.]+)`", cell):
            name = "headrank." + path.removesuffix(".py").rstrip("/").replace("/", ".")
            layers[name] = int(level)
    return layers


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    while module not in layers and "." in module:
        module = module.rsplit(".", 1)[0]
    return layers.get(module)


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Imports from a module to one of a higher layer than its own (lazy imports included)."""
    found = []
    for name, targets in sorted(graph.items()):
        mine = layer_of(name, layers)
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{name} -> {target}")
    return found


def test_the_architecture_table_names_every_module():
    layers = architecture_layers()
    assert len(set(layers.values())) >= 6, layers
    unplaced = [name for name in _modules() if name != "headrank" and layer_of(name, layers) is None]
    assert unplaced == [], "add these to docs/architecture.md's layer table"


def test_imports_run_down_the_architecture_layers():
    assert upward_imports(import_graph(), architecture_layers()) == []


def test_the_layer_check_finds_a_planted_upward_import():
    """A planted `import headrank.cli.common` inside the engine's prompt module is found, read from source."""
    source = (PACKAGE / "engine" / "prompt.py").read_text(encoding="utf-8")
    modules = _modules()
    modules["headrank.engine.prompt"] = ast.parse(source + "\n\ndef _planted():\n    import headrank.cli.common\n")
    graph = {name: {t for t, _ in _imports(tree, set(modules)) if t in modules and t != name}
             for name, tree in modules.items()}
    assert upward_imports(graph, architecture_layers()) == ["headrank.engine.prompt -> headrank.cli.common"]


TOP_LEVEL_MODULES = 10
TWIN_SUFFIXES = ("s", "es", "ing", "er", "ers", "ion", "sets", "set", "ed")


def _stem(name: str) -> str:
    for suffix in sorted(TWIN_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) - len(suffix) >= 3:
            return name[: -len(suffix)]
    return name


def twin_names(names: set[str]) -> list[tuple[str, str]]:
    """Pairs of different module names that differ only by a suffix or a plural (scoring / scorers)."""
    ordered = sorted(names)
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]
            if _stem(a) == _stem(b) or _stem(a) == b or _stem(b) == a or a.rstrip("e") == _stem(b)
            or b.rstrip("e") == _stem(a)]


def test_no_two_module_names_a_newcomer_confuses():
    names = {p.stem for p in PACKAGE.rglob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.name for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").exists()}
    assert twin_names(names - {"eval"}) == []  # eval/ holds evaluate.py: a folder and its main module


def test_the_twin_check_finds_near_twins():
    assert twin_names({"scoring", "scorers", "data", "datasets", "rule", "ranker", "rank"}) == [
        ("data", "datasets"), ("rank", "ranker"), ("scorers", "scoring")]


def test_few_top_level_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert len(top) <= TOP_LEVEL_MODULES, top
