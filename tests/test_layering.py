"""The architecture, checked: which layer may import which, no import cycles (function-level imports too), optional
dependencies (dask) imported lazily by one module, and no function or class over 120 lines. Reads the source with
`ast`; imports nothing of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

_ALL_PACKAGES = {
    "core", "stages", "runtimes", "parity", "run", "report", "sources", "recipe", "commands", "cli", "targets"
}  # fmt: skip
# layer (a module or package under pipeline/) → the layers it must never import, directly or in a function.
FORBIDDEN: dict[str, set[str]] = {
    "core": {"stages", "runtimes", "parity", "run", "report", "sources", "recipe", "commands", "cli", "targets"},
    "cpu": {"stages", "runtimes", "parity", "run", "report", "sources", "recipe", "commands", "cli", "targets"},
    "runtimes": {"stages", "parity", "run", "report", "recipe", "commands", "cli", "targets"},
    "stages": {"runtimes", "parity", "run", "report", "recipe", "commands", "cli", "targets"},
    "parity": {"runtimes", "stages", "run", "report", "sources", "recipe", "commands", "cli", "targets"},
    "report": {"runtimes", "stages", "run", "sources", "recipe", "commands", "cli", "targets"},
    "sources": {"stages", "runtimes", "parity", "run", "report", "commands", "cli", "targets"},
    "recipe": {"runtimes", "parity", "run", "report", "commands", "cli", "targets"},
    # deployment targets analyse a finished file in runtimes, with parity; they know no recipe, stage or run
    "targets": {"stages", "sources", "run", "report", "recipe", "commands", "cli"},
    "run": {"commands", "cli"},
    # the top-level modules every layer may share, each below what uses it
    "errors": {"core", "artifacts", "frameworks", "data", "evaluate", "plotdata", *_ALL_PACKAGES},
    "frameworks": {"core", "artifacts", "errors", "data", "evaluate", "plotdata", *_ALL_PACKAGES},
    "artifacts": {"frameworks", "data", "evaluate", "plotdata", *(_ALL_PACKAGES - {"core"})},
    "plotdata": {"data", "evaluate", *(_ALL_PACKAGES - {"core", "parity"})},
    "data": {"evaluate", "plotdata", *(_ALL_PACKAGES - {"core", "recipe"})},  # the recipe's data section types
    "evaluate": {"stages", "run", "report", "sources", "recipe", "commands", "cli", "targets"},
    # what made a shipped file: the run stamps it, inspect and verify read it; it knows files, not how they were made
    "provenance": {"frameworks", "data", "evaluate", "plotdata", *(_ALL_PACKAGES - {"core"})},
    "commands": {"cli"},  # the commands other than run; the CLI parses arguments and calls them
    "cli": set(),
}
for _layer_name in ("core", "cpu", "errors", "frameworks", "artifacts", "plotdata", "data", "evaluate"):
    FORBIDDEN[_layer_name] |= {"provenance"}  # below it: it imports artifacts, errors and core
# below every package: what the shared top-level modules compute with may not reach up into them
for _layer_name in ("core", "cpu", "parity", "sources", "stages", "runtimes", "report"):
    FORBIDDEN[_layer_name] |= {"evaluate"}
for _layer_name in ("core", "cpu", "parity", "sources", "stages", "report"):
    FORBIDDEN[_layer_name] |= {"data", "plotdata"} - ({"plotdata"} if _layer_name == "report" else set())
LONGEST = 120
# optional dependencies (extras) → the one module that may import them, inside its functions only: every other
# module, and the import of that module itself, must work without them installed.
OPTIONAL: dict[str, str] = {"dask": "pipeline.run.distribute", "distributed": "pipeline.run.distribute"}


def _modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
    }


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every pipeline module this one imports, at the top or inside a function."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            # `from pkg import mod` imports pkg.mod; `from pkg import name` imports pkg itself
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, set(modules)) for module, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_module_has_a_layer() -> None:
    layers = {_layer(module) for module in _modules()} - {"pipeline", "__main__"}
    assert layers <= set(FORBIDDEN), sorted(layers - set(FORBIDDEN))


def test_layers_import_only_what_they_may() -> None:
    breaches = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) in FORBIDDEN.get(_layer(module), set())
    ]
    assert not breaches, "\n".join(sorted(breaches))


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for target in graph.get(module, ()):
                if target == start and len(path) > 1:
                    cycles.append(" → ".join([*path, start]))
                elif target not in seen and target.startswith("pipeline"):
                    seen.add(target)
                    stack.append((target, [*path, target]))
    assert not cycles, "\n".join(sorted(set(cycles))[:10])


def test_optional_dependencies_are_imported_in_one_module_and_only_lazily() -> None:
    breaches = []
    for module, path in _modules().items():
        tree = ast.parse(path.read_text())
        functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
        lazy = {id(inner) for function in functions for inner in ast.walk(function)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                owner = OPTIONAL.get(name.split(".")[0])
                if owner is not None and (module != owner or id(node) not in lazy):
                    breaches.append(f"{module} imports {name} at line {node.lineno}")
    assert not breaches, "\n".join(breaches)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_or_class_is_longer_than_120_lines(path: Path) -> None:
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > LONGEST
    ]
    assert not long, long
