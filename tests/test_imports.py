"""Imports flow one way: the module graph of src/normlab (every import, at the top of a file or inside a function)
has no cycle. A package's own import of its submodules counts; the implicit import of a parent package does not."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "normlab"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The normlab modules a file imports: `from a.b import c` is a.b.c where that is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "normlab"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "normlab":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if is_module(sub) else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in targets if t != m} for m, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None (depth-first search with an explicit path)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_imports_and_submodules():
    graph = import_graph()
    assert "normlab.trainer" in graph["normlab.cli"]  # imported inside run_job
    assert "normlab.norms.native" in graph["normlab.norms.batch_instance"]  # `from normlab.norms import native`
    assert "normlab.config" in graph["normlab.norms.group"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("low", ["normlab.config", "normlab.collectives", "normlab.norms.registry"])
def test_the_bottom_modules_import_no_normlab_module_above_them(low):
    allowed = {"normlab.config"}  # typed configs and ConfigError are the bottom layer
    assert import_graph()[low] <= allowed


def test_the_version_is_written_once():
    """pyproject.toml reads normlab.__version__ (dynamic): the installed metadata and the package agree."""
    import importlib.metadata

    import normlab

    assert importlib.metadata.version("normlab") == normlab.__version__
    assert "version =" not in (SRC.parent / "pyproject.toml").read_text().split("[project]")[1].split("[")[0]
