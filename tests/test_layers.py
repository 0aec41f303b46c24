"""Import direction: no module of bench/methods/protocols/reports imports a layer above its own
(``bench.layers``), counting module-level and function-level imports; argparse only in the command layer."""

from __future__ import annotations

import ast
from pathlib import Path

from bench.layers import LAYERS, layer_of, rank_of

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "protocols", "reports")
# bench.engines.cost.memory's peak-RSS probe (a `python -m` child process it starts itself) parses its argv.
ARGPARSE_OUTSIDE_COMMANDS = {"bench.engines.cost.memory"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of the four packages anywhere in the file; ``from a import b``
    counts as ``a.b`` where that is a module."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                child = f"{source}.{alias.name}"
                found.append((node.lineno, child if child in MODULES else source))
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 60
    assert {layer_of(m) for m in MODULES} == set(LAYERS)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = [
        f"{MODULES[m].relative_to(ROOT)}:{line}: {m} ({layer_of(m)}) imports {name} ({layer_of(name)})"
        for m in MODULES
        for line, name in _imports(m, MODULES[m])
        if rank_of(name) > rank_of(m)
    ]
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_the_check_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The oracle of the test above: a planted upward import inside a function is found."""
    planted = tmp_path / "plant.py"
    planted.write_text("def f():\n    from bench.commands.cli import main\n    from . import runner\n")
    names = [name for _, name in _imports("protocols.plant", planted)]
    assert names == ["bench.commands.cli", "protocols"]
    assert rank_of("bench.commands.cli") > rank_of("protocols.plant")


def test_argparse_only_in_the_command_layer() -> None:
    users = {m for m, path in MODULES.items() if "argparse" in {n for _, n in _all_imports(path)}}
    assert {m for m in users if layer_of(m) != "commands"} <= ARGPARSE_OUTSIDE_COMMANDS


def _all_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, a.name) for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (or a module importing itself): Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the suite modules it imports (module- and function-level); importing a package's module also
    runs the package's ``__init__``, which is counted as an edge only when that ``__init__`` imports something."""
    return {m: {name for _, name in _imports(m, path) if name in modules and name != m} for m, path in modules.items()}


def test_no_import_cycle_between_modules() -> None:
    cycles = _cycles(_import_graph(MODULES))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_planted_cycle(tmp_path: Path) -> None:
    """The oracle of the test above: two planted modules that import each other inside functions."""
    (tmp_path / "a.py").write_text("def f():\n    from protocols.b import g\n")
    (tmp_path / "b.py").write_text("def g():\n    import protocols.a\n")
    (tmp_path / "c.py").write_text("import protocols.a\n")
    planted = {"protocols.a": tmp_path / "a.py", "protocols.b": tmp_path / "b.py", "protocols.c": tmp_path / "c.py"}
    graph = {m: {name for _, name in _imports(m, p) if name in planted} for m, p in planted.items()}
    assert _cycles(graph) == [["protocols.a", "protocols.b"]]


def test_repository_paths_named_in_code_exist() -> None:
    """Modules that find repository files from their own location still find them after a move between folders."""
    from bench.commands import demo
    from bench.engines.checks import gpu
    from bench.engines.cost import memory
    from bench.results import gate, provenance

    for root in (demo.ROOT, gpu.ROOT, memory.ROOT, provenance.ROOT):
        assert (root / "pyproject.toml").is_file(), root
    assert sorted(gate.GOLDEN_DIR.glob("*.csv")), gate.GOLDEN_DIR
