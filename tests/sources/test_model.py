"""pipeline.sources.model stays a leaf: of the pipeline it imports only the core types and errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline.sources.model

ALLOWED = {"pipeline.core.artifact", "pipeline.core.tensors", "pipeline.errors"}


def test_model_module_imports_only_core_types_and_errors() -> None:
    tree = ast.parse(Path(pipeline.sources.model.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in imported if name.startswith("pipeline")} <= ALLOWED
