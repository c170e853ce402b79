"""Writes the literal lists in pipeline/sources/allowlist/keras.py from what the installed frameworks can load.

Run after an upgrade of keras, tf_keras, tensorflow or tensorflow-model-optimization:

    .venv/bin/python -m scripts.keras_allowlist        # rewrites the block between the `generated` markers

What each candidate set is, found by introspection (the same sets tests/sources/test_allowlist_keras.py rebuilds):
- Keras 3 classes: `keras.src.models.functional.Functional` (every functional model; not exported), and every
  `keras.*` name Keras's export registry (`api_export.REGISTERED_NAMES_TO_OBJS`) resolves to a class, and a
  KerasSaveable one under `cls.__module__.cls.__name__` too (either is what a config's `module` + `class_name` may
  say; by its module Keras imports only KerasSaveable classes), and every Operation class (layers included) of
  `keras.src.ops.*` (a functional model records a `keras.ops` call as one) and `keras.src.applications.*`
  (ConvNeXt's LayerScale). Keras 3 functions: the exported `keras.{activations,losses,metrics}.*` functions.
- tf_keras classes, by bare name as its `.h5` configs give them: what `tf_keras.layers.deserialize` resolves
  (its ALL_OBJECTS), the registered names of its own optimizers (`Custom>Adam`), and the classes of tf_keras's
  initializers, regularizers, constraints, optimizers, losses, metrics and mixed_precision modules; plus the same
  classes' `keras.*` export names (a nested initializer in an `.h5` carries `"module": "keras.initializers"`),
  and the bare names of the Keras 3 classes (Keras 3's own `.h5`).
- tfmot classes: what `quantize_scope()`, `prune_scope()` and `cluster_scope()` register, by name and by
  `module.ClassName` (our qat, prune and cluster stages save models that hold them).
- TFOpLambda functions: the canonical TensorFlow API name (`get_canonical_name_for_symbol`, v1-only names with
  `compat.v1.`) of every exported TF function with dispatch support: what tf_keras records when a functional
  model calls a TF function on a Keras tensor.
The listed set is the candidates less those the module's EXCLUDED_* dicts explain (fnmatch patterns).
A leaf script: imports the frameworks, and pipeline.sources.allowlist.keras for the exclusions.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import sys
from collections.abc import Iterable
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "pipeline" / "sources" / "allowlist" / "keras.py"
_TF_KERAS_MODULES = (
    "initializers",
    "regularizers",
    "constraints",
    "optimizers",
    "optimizers.legacy",
    "optimizers.experimental",
    "losses",
    "metrics",
    "mixed_precision",
    "models",
)


def _frameworks() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  (first, as edgeport imports it)
    import tf_keras  # noqa: F401  (registers the tf_keras exports and KerasOpDispatcher)


def keras3_classes() -> set[str]:
    _frameworks()
    from keras.src import api_export
    from keras.src.ops.operation import Operation
    from keras.src.saving.keras_saveable import KerasSaveable

    names: set[str] = set()
    for name, symbol in api_export.REGISTERED_NAMES_TO_OBJS.items():
        if not (name.startswith("keras.") and inspect.isclass(symbol)):
            continue
        names.add(name)
        if issubclass(symbol, KerasSaveable):  # by its module, Keras imports only KerasSaveable classes
            names.add(f"{symbol.__module__}.{symbol.__name__}")
    import keras.src.applications as applications
    import keras.src.ops as ops

    for package in (ops, applications):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.endswith("_test"):  # Keras ships its tests beside the code
                continue
            module = importlib.import_module(info.name)
            for symbol in vars(module).values():
                if inspect.isclass(symbol) and issubclass(symbol, Operation) and symbol.__module__ == info.name:
                    names.add(f"{info.name}.{symbol.__name__}")
    # Not exported, yet every functional model's config names it by its module.
    names.add("keras.src.models.functional.Functional")
    return names


def keras3_functions() -> set[str]:
    _frameworks()
    from keras.src import api_export

    prefixes = ("keras.activations.", "keras.losses.", "keras.metrics.")
    names: set[str] = set()
    for name, symbol in api_export.REGISTERED_NAMES_TO_OBJS.items():
        if name.startswith(prefixes) and inspect.isfunction(symbol):
            names.update((name, f"{symbol.__module__}.{symbol.__name__}"))
    return names


def tf_keras_classes() -> set[str]:
    _frameworks()
    import tf_keras
    from tensorflow.python.util import tf_export
    from tf_keras.src.layers import serialization
    from tf_keras.src.saving import object_registration

    serialization.populate_deserializable_objects()
    classes = {name: symbol for name, symbol in serialization.LOCAL.ALL_OBJECTS.items() if inspect.isclass(symbol)}
    for dotted in _TF_KERAS_MODULES:
        module = tf_keras
        for part in dotted.split("."):
            module = getattr(module, part)
        classes.update({name: symbol for name, symbol in vars(module).items() if inspect.isclass(symbol)})
    # tf_keras's own optimizers save under the names they are registered with (`Custom>Adam`).
    registered = object_registration._GLOBAL_CUSTOM_OBJECTS
    names = set(classes) | {name for name, symbol in registered.items() if symbol.__module__.startswith("tf_keras.")}
    for symbol in classes.values():
        exported = tf_export.get_canonical_name_for_symbol(symbol, api_name="keras")
        if exported:
            names.add(f"keras.{exported}")
    names.update(name.rsplit(".", 1)[1] for name in keras3_classes())
    return {name for name in names if not name.startswith("_")}


def tfmot_classes() -> set[str]:
    _frameworks()
    import tensorflow_model_optimization as tfmot

    names: set[str] = set()
    for scope in (
        tfmot.quantization.keras.quantize_scope(),
        tfmot.sparsity.keras.prune_scope(),
        tfmot.clustering.keras.cluster_scope(),
    ):
        for objects in scope.custom_objects:
            # tf_keras writes some by bare name, some (an activation inside a wrapped layer) with their module.
            names.update(objects)
            names.update(f"{symbol.__module__}.{symbol.__name__}" for symbol in objects.values())
    return names


def tfop_functions() -> set[str]:
    _frameworks()
    from tensorflow.python.util import dispatch, tf_export

    names = set()
    for name, symbol in tf_export._NAME_TO_SYMBOL_MAPPING.items():
        if name.startswith("keras.") or not hasattr(symbol, dispatch.FALLBACK_DISPATCH_ATTR):
            continue
        canonical = tf_export.get_canonical_name_for_symbol(symbol, add_prefix_to_v1_names=True)
        if canonical:
            names.add(canonical)
    return names


def listed(candidates: Iterable[str], why: dict[str, str]) -> list[str]:
    from pipeline.sources.allowlist.keras import excluded_why

    return sorted(name for name in candidates if excluded_why(name, why) is None)


def _literal(name: str, values: list[str]) -> str:
    """`NAME: frozenset[str] = frozenset({...})`, names packed into lines of at most 120 characters."""
    lines, line = [], ""
    for value in values:
        item = f'"{value}",'
        if line and len(line) + 1 + len(item) > 112:
            lines.append(line)
            line = ""
        line = f"{line} {item}" if line else item
    lines.append(line)
    body = "\n".join(f"        {text}" for text in lines)
    return f"{name}: frozenset[str] = frozenset(\n    {{\n{body}\n    }}\n)\n"


def generated() -> str:
    sys.path.insert(0, str(MODULE.parents[3]))
    from pipeline.sources.allowlist import keras as allow

    blocks = (
        ("KERAS3_CLASSES", keras3_classes(), allow.EXCLUDED_KERAS3),
        ("KERAS3_FUNCTIONS", keras3_functions(), allow.EXCLUDED_KERAS3),
        ("TF_KERAS_CLASSES", tf_keras_classes(), allow.EXCLUDED_TF_KERAS),
        ("TFMOT_CLASSES", tfmot_classes(), allow.EXCLUDED_TFMOT),
        ("TFOP_FUNCTIONS", tfop_functions(), allow.EXCLUDED_TFOP),
    )
    return "\n".join(_literal(name, listed(candidates, why)) for name, candidates, why in blocks)


def main() -> int:
    text = MODULE.read_text()
    block = re.compile(r"(# generated:start[^\n]*\n# fmt: off\n).*?(# fmt: on\n# generated:end)", re.S)
    MODULE.write_text(block.sub(lambda match: match[1] + generated() + match[2], text))
    print(f"wrote {MODULE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
