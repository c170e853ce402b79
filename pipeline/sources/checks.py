"""Recipe-time checks of a source section's files: the model exists, or the builder's module and the weights
can be found. Imports nothing the builder names and no framework: `edgeport validate` runs them.

Takes the section through `SourceSection`; knows no other part of the recipe. Every problem is a RecipeError
naming the recipe and the field.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ModelError, RecipeError
from pipeline.sources.builders import find_builder_module
from pipeline.sources.files import KERAS_SUFFIXES, check_model_path
from pipeline.sources.section import SourceSection, tf1_origin
from pipeline.sources.tf1 import tf1_files
from pipeline.sources.weights import locate_weights

TF1_HINTS = {
    ".pb": "looks like a TensorFlow 1 frozen graph; write source: {graph: FILE.pb, inputs: [...], outputs: [...]}",
    ".meta": "is a TensorFlow 1 meta graph; write source: {checkpoint: PREFIX, inputs: [...], outputs: [...]}",
    ".index": "is part of a TensorFlow checkpoint; write source: {checkpoint: PREFIX} (TF1 Saver) or a builder "
    "with weights (Keras)",
}


def check_source_files(source: SourceSection, base_dir: Path, recipe_path: Path) -> None:
    """Raise a RecipeError for a source whose files are missing or of the wrong kind."""
    for module in source.imports:
        _check_module(module, "source.imports", base_dir, recipe_path)
    origin = tf1_origin(source, base_dir)
    if origin is not None:
        try:
            tf1_files(origin)
        except ModelError as error:
            raise RecipeError(f"{recipe_path}: {origin.place}: {error}") from None
    elif source.builder is not None:
        assert source.weights is not None, "validated specs give weights with builder"
        _check_builder(source.builder, (base_dir / source.weights).resolve(), base_dir, recipe_path)
    else:
        assert source.path is not None, "validated specs give path or builder"
        _check_model_path((base_dir / source.path).resolve(), recipe_path)


def _check_builder(builder: str, weights: Path, base_dir: Path, recipe_path: Path) -> None:
    """The weights exist and the builder's module file can be found: nothing is imported."""
    _check_module(builder.partition(":")[0], "source.builder", base_dir, recipe_path)
    try:
        locate_weights(weights)
    except ModelError as error:
        raise RecipeError(f"{recipe_path}: source.weights: {error}") from None


def _check_module(module: str, field: str, base_dir: Path, recipe_path: Path) -> None:
    """The module's file can be found beside the recipe or on sys.path; nothing is imported."""
    if find_builder_module(module, base_dir) is None:
        relative = module.replace(".", "/")
        raise RecipeError(
            f"{recipe_path}: {field}: cannot find module {module} ({relative}.py or {relative}/__init__.py "
            f"under {base_dir} or on sys.path)"
        )


def _check_model_path(source: Path, recipe_path: Path) -> None:
    if not source.exists():
        raise RecipeError(f"{recipe_path}: source.path: {source} does not exist")
    try:
        check_model_path(source)
    except ModelError as error:
        raise RecipeError(f"{recipe_path}: source.path: {error}") from None
    hint = TF1_HINTS.get(source.suffix.lower()) if source.is_file() else None
    if hint is not None:
        raise RecipeError(f"{recipe_path}: source.path: {source.name} {hint}")
    if source.is_file() and source.suffix.lower() not in KERAS_SUFFIXES:
        raise RecipeError(
            f"{recipe_path}: source.path: {source.name} is not a .keras/.h5 file or a SavedModel directory"
        )
