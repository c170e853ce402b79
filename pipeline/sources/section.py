"""A recipe's `source` section as loading sees it: a model path, a builder plus weights, or a TF1 graph.

Takes the section through the `SourceSection` protocol (pipeline.recipe.SourceSpec fits it), so the source
layer never imports the recipe schema. Knows nothing of stages or runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pipeline.artifacts import key_of, sha256_of
from pipeline.sources.builders import builder_files, builder_key, load_builder_source
from pipeline.sources.files import check_model_path, load_source
from pipeline.sources.imports import import_modules
from pipeline.sources.model import Source
from pipeline.sources.tf1 import Tf1Origin, load_tf1_source, tf1_key


class SourceSection(Protocol):
    """The fields of a validated source section: `path`, or `builder` with `weights` (paths relative)."""

    @property
    def path(self) -> str | None: ...
    @property
    def signature(self) -> str: ...
    @property
    def builder(self) -> str | None: ...
    @property
    def builder_args(self) -> dict[str, Any]: ...
    @property
    def weights(self) -> str | None: ...
    @property
    def allow_partial(self) -> bool: ...
    @property
    def imports(self) -> list[str]: ...
    @property
    def tf1_kind(self) -> str | None: ...
    @property
    def graph(self) -> str | None: ...
    @property
    def checkpoint(self) -> str | None: ...
    @property
    def meta_graph(self) -> str | None: ...
    @property
    def inputs(self) -> list[str] | dict[str, list[int | None] | None] | None: ...
    @property
    def outputs(self) -> list[str] | None: ...
    @property
    def feeds(self) -> dict[str, Any]: ...


def tf1_origin(spec: SourceSection, base_dir: Path) -> Tf1Origin | None:
    """A TF1 section's origin, paths resolved; None for other sources."""
    if spec.tf1_kind is None:
        return None
    relative = spec.graph if spec.tf1_kind == "graph" else spec.checkpoint
    assert relative is not None, "tf1_kind names the field given"
    given = spec.inputs
    inputs = None if given is None else {name: None for name in given} if isinstance(given, list) else given
    return Tf1Origin(
        kind=spec.tf1_kind,  # type: ignore[arg-type]
        path=(base_dir / relative).resolve(),
        inputs={name: None if shape is None else tuple(shape) for name, shape in inputs.items()} if inputs else None,
        outputs=None if spec.outputs is None else tuple(spec.outputs),
        feeds=dict(spec.feeds),
        meta_graph=None if spec.meta_graph is None else (base_dir / spec.meta_graph).resolve(),
    )


def load_source_spec(spec: SourceSection, base_dir: Path, trusted: bool) -> Source:
    """A recipe's source: a model file or directory, or a builder plus weights (paths relative to `base_dir`),
    after the modules `imports` names (validated: only with trust)."""
    import_source_modules(spec, base_dir)
    origin = tf1_origin(spec, base_dir)
    if origin is not None:
        return load_tf1_source(origin, trusted)
    if spec.builder is None:
        assert spec.path is not None, "validated specs give path or builder"
        return load_source((base_dir / spec.path).resolve(), spec.signature, trusted, base_dir)
    assert spec.weights is not None, "validated specs give weights with builder"
    weights = (base_dir / spec.weights).resolve()
    return load_builder_source(spec.builder, spec.builder_args, weights, base_dir, spec.allow_partial, trusted)


def import_source_modules(spec: SourceSection, base_dir: Path) -> None:
    """The modules `source.imports` names (custom classes register on import), beside the recipe first. Every
    process that loads the source or a model a stage made of it calls this first: the conversion worker too."""
    import_modules(spec.imports, base_dir, "source.imports")


def source_key(spec: SourceSection, base_dir: Path, trusted: bool) -> str:
    """A content key of what `load_source_spec` would load, computed without TensorFlow or the builder: an edit
    to a module `imports` names (found beside the recipe) changes the classes, so the key."""
    imported = {module: [sha256_of(path) for path in builder_files(module, base_dir)] for module in spec.imports}
    extra = [imported] if imported else []  # the keys of sources without imports stay as they were
    origin = tf1_origin(spec, base_dir)
    if origin is not None:
        return key_of("source", tf1_key(origin), trusted, *extra)
    if spec.builder is None:
        assert spec.path is not None, "validated specs give path or builder"
        path = (base_dir / spec.path).resolve()
        check_model_path(path)  # before hashing: a FIFO would block it
        return key_of("source", sha256_of(path), spec.signature, trusted, *extra)
    assert spec.weights is not None, "validated specs give weights with builder"
    weights = (base_dir / spec.weights).resolve()
    built = builder_key(spec.builder, spec.builder_args, weights, base_dir)
    return key_of("source", built, spec.allow_partial, trusted, *extra)
