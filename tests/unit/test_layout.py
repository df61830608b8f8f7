"""The package's layout: imports flow one way, from the CLI down to the model, and never in a circle.

Read from the source (every import, lazy ones inside functions too), not from what Python happened
to import: a cycle that only a rarely taken path closes is still a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lgcloud.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "lgcloud"
# Bottom to top: a package may import its own modules and those of the layers below it.
LAYERS = {"errors": 0, "paths": 0, "model": 1, "state": 2, "program": 3, "engine": 3, "ops": 4, "observe": 4, "cli": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The lgcloud modules a file imports, relative imports resolved."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            # `from . import verb` imports the module `verb`; `from .x import name`, the module x.
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
    return {m for m in found if m in MODULES}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "errors"  # lgcloud/__init__ sits at the bottom
    return top, LAYERS[top]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_flow_down_the_layers(module):
    own, rank = layer(module)
    upward = sorted(t for t in GRAPH[module] if layer(t)[0] != own and layer(t)[1] >= rank)
    assert not upward, f"{module} ({own}, layer {rank}) imports from its own layer or above: {upward}"


def test_no_import_cycle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycle = path[path.index(target) :] + [target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in GRAPH:
        if module not in state:
            visit(module, [module])


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(LAYERS), f"unplaced: {(packages | modules) ^ set(LAYERS)}"
