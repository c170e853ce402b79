"""The source model as a run needs it: described from the cache when it can be, loaded only on demand.

A warm re-run whose stages and reference outputs are all cached never imports TensorFlow. Takes the recipe
and the cache through small protocols: knows neither the recipe schema nor the run's cache.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pipeline.core.artifact import Artifact
from pipeline.core.tensors import TensorSpec
from pipeline.sources.model import Source
from pipeline.sources.section import SourceSection, load_source_spec, source_key


class _RecipeSpec(Protocol):
    @property
    def source(self) -> SourceSection: ...


class RecipeWithSource(Protocol):
    """What a SourceHandle reads of a loaded recipe (pipeline.recipe.LoadedRecipe fits)."""

    @property
    def spec(self) -> _RecipeSpec: ...
    @property
    def base_dir(self) -> Path: ...
    @property
    def source_path(self) -> Path: ...


class JsonCache(Protocol):
    """Where source descriptions are kept between runs (pipeline.run.cache.Cache fits)."""

    def get_json(self, kind: str, key: str) -> dict[str, Any] | None: ...
    def put_json(self, kind: str, key: str, document: dict[str, Any]) -> None: ...


class SourceHandle:
    """The run's source: its key and description at once (cached), the loaded model when first asked for."""

    def __init__(self, recipe: RecipeWithSource, trusted: bool, cache: JsonCache) -> None:
        spec = recipe.spec.source
        self.spec, self.base_dir = spec, recipe.base_dir
        self.path, self.signature, self.trusted = recipe.source_path, spec.signature, trusted
        # Trust is part of the key: an untrusted run must load (and refuse) what a trusted one cached.
        self.key = source_key(spec, recipe.base_dir, trusted)
        self._source: Source | None = None
        self._cache = cache
        self._cached_description = cache.get_json("sources", self.key)
        # Set by a run whose conversion worker loads the model for it: the description then comes from there
        # (describe_source's dict), and this process need not import TensorFlow.
        self.describer: Callable[[], dict[str, Any]] | None = None
        self.loaded_elsewhere = False  # the worker loaded the model on this run's behalf

    @property
    def kind(self) -> str:
        """`keras` or `savedmodel`, known without loading the model (a builder always gives Keras, a TF1 graph is
        frozen into a SavedModel)."""
        if self.spec.tf1_kind is not None:
            return "savedmodel"
        return "savedmodel" if self.spec.builder is None and self.path.is_dir() else "keras"

    @property
    def described_from_cache(self) -> bool:
        return self._cached_description is not None

    @property
    def _description(self) -> dict[str, Any]:
        if self._cached_description is None:
            self._cached_description = self.describer() if self.describer is not None else describe_source(self.load())
            self._cache.put_json("sources", self.key, self._cached_description)
        return self._cached_description

    def load(self) -> Source:
        if self._source is None:
            self._source = load_source_spec(self.spec, self.base_dir, self.trusted)
            self._source.artifact.key = self.key
        return self._source

    @property
    def loaded(self) -> bool:
        return self._source is not None or self.loaded_elsewhere

    @property
    def artifact(self) -> Artifact:
        return self.load().artifact

    @property
    def inputs(self) -> list[TensorSpec]:
        return [_tensor_spec(entry) for entry in self._description["tensors"]["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [_tensor_spec(entry) for entry in self._description["tensors"]["outputs"]]

    def describe(self) -> dict[str, Any]:
        return {key: value for key, value in self._description.items() if key != "tensors"}


def describe_source(source: Source) -> dict[str, Any]:
    """What a SourceHandle keeps of a loaded source (and caches): its description and its tensors, as JSON."""

    def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs]

    return {**source.describe(), "tensors": {"inputs": tensors(source.inputs), "outputs": tensors(source.outputs)}}


def _tensor_spec(entry: dict[str, Any]) -> TensorSpec:
    return TensorSpec(name=entry["name"], shape=tuple(entry["shape"]), dtype=entry["dtype"])
