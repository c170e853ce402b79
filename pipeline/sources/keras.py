"""The one Keras loader: a saved Keras 3 or tf_keras model file as an in-memory model.

Used for source files (`.keras`, `.h5`) and by the conversion worker for models earlier stages saved.
Imports TensorFlow only when it loads; knows nothing of recipes, stages or runtimes.
"""

from __future__ import annotations

import contextlib
import warnings
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pipeline.errors import ModelError, first_line
from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.sources.imports import custom_classes, import_named_modules
from pipeline.sources.trust import TRUST_HINT, check_model_config


def load_keras_model(
    path: Path | str, flavour: str, trusted: bool, scope: AbstractContextManager[Any] | None = None
) -> Any:
    """Load `path` with Keras 3 (`flavour="keras3"`, safe mode unless trusted) or tf_keras, uncompiled.

    Untrusted, its config passes the same allowlist as a source file first (a model left in a shared cache is
    no more trusted than the source it came from): a ModelError names what it refuses. Trusted, the modules its
    config names are imported first, so their classes are registered (a model an earlier stage saved needs its
    source's classes in this process too). Native output and Python warnings stay off the console; `scope` wraps
    the load (tfmot's quantize scope for QAT models). Otherwise raises whatever Keras raises: callers decide what a
    failure means.
    """
    documents = check_model_config(Path(path), trusted)
    if trusted:
        import_named_modules(custom_classes(documents), Path(path).parent)
    return _load(path, flavour, trusted, scope)


def _load(path: Path | str, flavour: str, trusted: bool, scope: AbstractContextManager[Any] | None = None) -> Any:
    import_tensorflow()
    with captured_native_output(), warnings.catch_warnings(), scope or contextlib.nullcontext():
        warnings.simplefilter("ignore")
        if flavour == "tf_keras":
            import tf_keras

            return tf_keras.models.load_model(path, compile=False)
        import keras

        return keras.saving.load_model(path, compile=False, safe_mode=not trusted)


def load_keras_file(path: Path, trusted: bool, base_dir: Path | None = None) -> tuple[Any, str]:
    """A `.keras` file (Keras 3) or an `.h5` file (Keras 3, else tf_keras for legacy files), and its flavour.

    Every failure is a ModelError naming the file. The config is read as JSON first, within size bounds; untrusted,
    a model that carries Python code or custom classes is refused before either Keras deserializes anything (tf_keras
    has no safe mode). Trusted, the modules its config names are imported first, looked up in `base_dir` (the
    recipe's folder; default the model's) before sys.path.
    """
    documents = check_model_config(path, trusted)
    unimported = import_named_modules(custom_classes(documents), base_dir or path.parent) if trusted else []
    if path.suffix.lower() == ".keras":
        try:
            return _load(path, "keras3", trusted), "keras3"
        except Exception as error:  # Keras raises ValueError, TypeError, OSError, zip errors...
            raise _keras_load_error(path, error, unimported) from None
    try:
        return _load(path, "keras3", trusted), "keras3"
    except Exception as keras3_error:  # fall back to tf_keras for legacy files Keras 3 cannot read
        first = keras3_error
    try:
        return _load(path, "tf_keras", trusted), "tf_keras"
    except Exception:  # report the Keras 3 reason: it is the primary loader
        raise _keras_load_error(path, first, unimported) from None


def _keras_load_error(path: Path, error: BaseException, unimported: list[str]) -> ModelError:
    text = str(error)
    if "safe_mode" in text or "arbitrary code" in text:
        return ModelError(
            f"{path}: refused: the model runs arbitrary Python code when loaded "
            f"(Lambda layer or pickled function); {TRUST_HINT}"
        )
    if "Could not locate" in text or "Unknown layer" in text or "custom_objects" in text:
        why = f"; could not import {', '.join(unimported)}" if unimported else ""
        return ModelError(
            f"{path}: the model needs custom classes edgeport cannot find: {first_line(error, 300)}{why}; "
            "name the module that registers them in `source.imports` (or --import MODULE), with trust"
        )
    first = first_line(error, 300)
    return ModelError(f"{path}: cannot load the model (corrupt or not a Keras model?): {first}")
