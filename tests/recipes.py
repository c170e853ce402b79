"""Recipes written by tests: one helper that dumps a recipe to YAML, and builders for the common data sections.

What a test feeds stays at its call site: the source, the outputs with their stages and gates, and which data
sections it uses (and their limits). Only the YAML boilerplate lives here. Tests about malformed recipes (syntax
errors, duplicate keys, line numbers) write their text literally with `write_recipe`: the one place tests write a
recipe file.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

import yaml

# The parts of a recipe written on one line: data sections and each output's stages, gates and runtime.
_FLOW_KEYS = ("stages", "gates", "runtime", "tensor_map")


class _Flow(dict):
    """A mapping dumped in flow style: {npz: digits.npz, inputs: x_train}."""


class _FlowList(list):
    """A sequence dumped in flow style: [tflite, {onnx: {opset: 17}}]."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the same npz path in three sections is written three times, not as &id001 / *id001


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, True))
_Dumper.add_representer(_FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True))
_Dumper.add_multi_representer(PurePath, lambda dumper, path: dumper.represent_str(str(path)))


def _flow(value: Any) -> Any:
    if isinstance(value, dict):
        return _Flow(value)
    if isinstance(value, list):
        return _FlowList(value)
    return value


def recipe_text(
    *,
    name: str,
    source: str | PurePath | dict[str, Any],
    outputs: dict[str, dict[str, Any]],
    data: dict[str, Any] | None = None,
    **top_level: Any,
) -> str:
    """The YAML of a recipe: top-level keys in the order given, data sections and stages/gates in flow style."""
    document: dict[str, Any] = {"name": name, "source": _flow(source)}
    if data is not None:
        document["data"] = {section: _flow(spec) for section, spec in data.items()}
    document.update(top_level)
    document["outputs"] = {
        output: {key: _flow(value) if key in _FLOW_KEYS else value for key, value in spec.items()}
        for output, spec in outputs.items()
    }
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000)


def recipe_file(
    directory: Path,
    *,
    name: str,
    source: str | PurePath | dict[str, Any],
    outputs: dict[str, dict[str, Any]],
    data: dict[str, Any] | None = None,
    file: str = "recipe.yaml",
    **top_level: Any,
) -> Path:
    """Write a recipe to directory/file and return its path.

    outputs: {output name: {"stages": [...], "gates": {...}, ...}}, as a recipe's outputs section reads.
    data: {section: spec}, e.g. digits_data(zoo, limit=100); None leaves the section out.
    top_level: any other top-level recipe key, written after data.
    """
    return write_recipe(directory, recipe_text(name=name, source=source, outputs=outputs, data=data, **top_level), file)


def write_recipe(directory: Path, text: str, name: str = "recipe.yaml") -> Path:
    """Write recipe text as directory/name, literally (malformed on purpose where a test wants it)."""
    path = directory / name
    path.write_text(text, encoding="utf-8")  # what the recipe loader decodes, whatever the locale
    return path


def digits_data(
    zoo: Any,
    *,
    limit: int | None = None,
    calibration: bool = True,
    evaluation: bool = True,
    fine_tune: bool = False,
    fine_tune_limit: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Data sections from the zoo's digits npz: calibration on x_train (the first `limit` samples),
    evaluation on x_test with labels y_test, and (fine_tune=True) fine-tuning on x_train with labels y_train."""
    npz = zoo.digits_npz
    sections: dict[str, dict[str, Any]] = {}
    if calibration:
        sections["calibration"] = _limited({"npz": npz, "inputs": "x_train"}, limit)
    if evaluation:
        sections["evaluation"] = {"npz": npz, "inputs": "x_test", "labels": "y_test"}
    if fine_tune:
        sections["fine_tune"] = _limited({"npz": npz, "inputs": "x_train", "labels": "y_train"}, fine_tune_limit)
    return sections


def _limited(spec: dict[str, Any], limit: int | None) -> dict[str, Any]:
    return spec if limit is None else {**spec, "limit": limit}
