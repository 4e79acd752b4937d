"""The package's layout: imports inside jahp_jax only go downward between its layers, and no
module imports itself back through another (no cycle), also not through imports inside
functions. Read from the source (ast), so it covers every import, however it is written."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jahp_jax"
# Lowest first: a module may import from its own layer and from the layers before it.
LAYERS = [
    ("runtime", "console"),
    ("nn",),
    ("models",),
    ("coding",),
    ("io",),
    ("data",),
    ("training",),
    ("evaluation",),
    ("cli",),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The jahp_jax modules `path` imports (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name in modules and name.startswith("jahp_jax."):
                found.add(name)
    return found


def _layer(module: str) -> int:
    first = module.split(".")[1]
    for index, members in enumerate(LAYERS):
        if first in members:
            return index
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def test_every_module_belongs_to_a_layer():
    for module in _modules():
        if module != "jahp_jax":
            _layer(module)


def test_imports_only_go_downward():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        if module == "jahp_jax":
            continue
        for imported in _imports(path, modules):
            if imported != "jahp_jax" and _layer(imported) > _layer(module):
                upward.append(f"{module} -> {imported}")
    assert not upward, "imports going up the layers:\n" + "\n".join(sorted(upward))


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (a list of modules, the first repeated at the end) or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return path[path.index(child) :] + [child]
            if child not in state:
                found = visit(child)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, a package's __init__ counted as its own module (importing
    a submodule runs its packages' __init__ first, which only matters for a cycle through one)."""
    modules = _modules()
    return {module: _imports(path, modules) - {module} for module, path in modules.items()}


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "graph,expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert _cycle(graph) == expected


def test_the_layer_rule_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from jahp_jax.training import train\n")
    modules = {"jahp_jax.training.train": Path("x")}
    assert _imports(source, modules) == {"jahp_jax.training.train"}
