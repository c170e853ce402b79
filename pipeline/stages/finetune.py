"""What the training stages (prune, qat, cluster) share: fine-tune options, data, compile/fit, save, measure.

Works on Keras 3 and tf_keras models alike by taking the Keras module of the model's flavour; never
touches `tf.keras` (tfmot flips what it resolves to). Knows nothing of recipes, runtimes or reports.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.core.artifact import Artifact
from pipeline.errors import StageError
from pipeline.frameworks import captured_native_output, import_tensorflow
from pipeline.sources.model import keras_call_inputs
from pipeline.stages.base import Stage, StageContext, StageOptions

FINE_TUNE_DATA = ["fine_tune", "fine_tune.labels"]


class FineTuningStage(Stage):
    """Base of the stages that change a Keras model on purpose and fine-tune it on data.fine_tune."""

    takes = frozenset({"keras"})
    gives = "keras"
    # The trained model is saved to a file: cached, so a warm run of an unchanged recipe retrains nothing.
    cacheable = True

    @classmethod
    def required_data(cls, options: StageOptions) -> list[str]:
        return FINE_TUNE_DATA

    @classmethod
    def default_gates(cls, options: StageOptions) -> dict[str, float]:
        # The weights change on purpose, so closeness to the source (max_abs) says little; the
        # decisions should mostly stay the same. Accuracy gates need evaluation labels: recipes add them.
        return {"top1_agreement": 0.9}


# Layers whose `kernel` is a plain weight matrix: what tfmot prunes (it skips DepthwiseConv2D, whose
# kernel is per channel, and never touches biases).
KERNEL_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")


class LayerFilter(BaseModel):
    """Which layers a stage changes, by name."""

    model_config = ConfigDict(extra="forbid")
    include: list[str] = Field(default_factory=lambda: [".*"], description="Regexes on layer names (search).")
    exclude: list[str] = Field(default_factory=list, description="Regexes on layer names; wins over include.")

    @field_validator("include", "exclude")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
        return patterns

    def selects(self, name: str) -> bool:
        matches = lambda patterns: any(re.search(p, name) for p in patterns)  # noqa: E731
        return matches(self.include) and not matches(self.exclude)


class FineTuneOptions(StageOptions):
    epochs: int = Field(2, ge=1, le=1000, description="Passes over data.fine_tune.")
    batch_size: int = Field(32, ge=1, le=65536, description="Samples per training step.")
    optimizer: Literal["adam", "sgd", "rmsprop"] = Field("adam", description="The fine-tuning optimizer.")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="The optimizer's learning rate.")
    loss: Literal["sparse_categorical_crossentropy", "categorical_crossentropy", "mse"] = Field(
        "sparse_categorical_crossentropy",
        description="Cross-entropies read logits unless the model's last layer applies softmax.",
    )
    seed: int = Field(0, ge=0, description="Seeds every generator the stage uses: the same recipe gives the same file.")


def tune(
    upstream: Artifact, options: FineTuneOptions, ctx: StageContext, transform: Callable[[Any, bool], Any]
) -> tuple[Any, Path, dict[str, Any]]:
    """The training stages' frame: copy the upstream model (other outputs may share it), score it on the
    fine-tune data, `transform(copy, from_logits)` (wrap, fit, strip), score again, save.
    Returns (model, path, the two scores for `details`)."""
    if upstream.handle is None:
        raise StageError("this stage needs a loaded Keras model as its input")
    api = keras_module(upstream)
    seed_everything(api, options.seed)
    from_logits = not ends_in_softmax(upstream.handle)
    model = clone(upstream.handle, api)
    compile_for(model, api, options, from_logits)
    before = evaluate(model, ctx, options)
    result = transform(model, from_logits)
    compile_for(result, api, options, from_logits)
    scores = {
        "seed": options.seed,
        "weights_sha256": weights_digest(result),
        "fine_tune_before": before,
        "fine_tune_after": evaluate(result, ctx, options),
    }
    return result, save(result, upstream, ctx), scores


def tune_by_flavour(
    upstream: Artifact,
    options: FineTuneOptions,
    ctx: StageContext,
    *,
    keras3: Callable[[Any], Any],
    tf_keras: Callable[[Any, bool], Any],
    methods: tuple[str, str],
    settings: dict[str, Any],
    measure: Callable[[Any], dict[str, Any]],
) -> Artifact:
    """The frame of the stages tfmot runs on tf_keras models but refuses for Keras 3 ones (prune, cluster):
    `tune` with `keras3(copy)` or `tf_keras(copy, from_logits)` by the model's flavour, then the artifact.
    Its details: the method (`methods`: Keras 3's, tfmot's), `settings`, epochs, `measure(model)`, the
    parameter count and the two scores."""
    on_keras3 = upstream.flavour != "tf_keras"

    def transform(model: Any, from_logits: bool) -> Any:
        return keras3(model) if on_keras3 else tf_keras(model, from_logits)

    model, path, scores = tune(upstream, options, ctx, transform)
    details = {
        "method": methods[0] if on_keras3 else methods[1],
        **settings,
        "epochs": options.epochs,
        **measure(model),
        **parameter_counts(model),
        **scores,
    }
    return Artifact(kind="keras", path=path, key=ctx.key, flavour=upstream.flavour, handle=model, details=details)


def weights_digest(model: Any) -> str:
    """sha256 of the trained weights: what later stages' cache keys cover (a saved .keras file also records the
    time it was saved, so its own hash changes with every save)."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        array = np.ascontiguousarray(weights)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def seed_everything(api: ModuleType, seed: int) -> None:
    """Python's, NumPy's and TensorFlow's generators (initialisers, shuffling, dropout), and deterministic op
    kernels: on the CPU the same recipe then trains to the same weights, byte for byte."""
    tf = import_tensorflow()
    api.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def keras_module(artifact: Artifact) -> ModuleType:
    """Keras 3 or tf_keras, whichever built the model (their layers and callbacks do not mix)."""
    import_tensorflow()
    if artifact.flavour == "tf_keras":
        import tf_keras

        return tf_keras
    import keras

    return keras


def import_tfmot() -> ModuleType:
    """tfmot sets TF_USE_LEGACY_KERAS=1 on import; keep that out of os.environ so child processes
    (tf2onnx CLIs, tests' subprocesses) see the environment the user gave them."""
    import_tensorflow()
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    with captured_native_output():
        import tensorflow_model_optimization as tfmot
    if before is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot


def require_fine_tune_data(ctx: StageContext) -> Any:
    dataset = ctx.fine_tune
    if dataset is None or dataset.labels is None:
        raise StageError("this stage fine-tunes the model: add data.fine_tune with inputs and labels to the recipe")
    return dataset


def training_data(ctx: StageContext, model: Any) -> tuple[Any, np.ndarray]:
    """The fine-tune inputs in the model's own structure (a dict for dict-input models), and the labels."""
    dataset = require_fine_tune_data(ctx)
    # Keras trains on whole arrays (it shuffles across them): the one place data is read into memory whole.
    arrays = {name: np.asarray(array) for name, array in dataset.inputs.items()}
    return keras_call_inputs(model, arrays), dataset.labels


def steps_per_epoch(ctx: StageContext, options: FineTuneOptions) -> int:
    return math.ceil(ctx.fine_tune.samples / options.batch_size)


def clone(model: Any, api: ModuleType) -> Any:
    """A copy with its own weights: the upstream model may feed other outputs and must stay as it is."""
    copy = api.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def ends_in_softmax(model: Any) -> bool:
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax"


def compile_for(model: Any, api: ModuleType, options: FineTuneOptions, from_logits: bool) -> None:
    optimizers = {"adam": api.optimizers.Adam, "sgd": api.optimizers.SGD, "rmsprop": api.optimizers.RMSprop}
    losses = {
        "sparse_categorical_crossentropy": lambda: api.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        "categorical_crossentropy": lambda: api.losses.CategoricalCrossentropy(from_logits=from_logits),
        "mse": lambda: api.losses.MeanSquaredError(),
    }
    metrics = ["accuracy"] if options.loss != "mse" else []
    model.compile(
        optimizer=optimizers[options.optimizer](options.learning_rate), loss=losses[options.loss](), metrics=metrics
    )


def fit(model: Any, ctx: StageContext, options: FineTuneOptions, callbacks: list[Any]) -> None:
    x, y = training_data(ctx, model)
    with captured_native_output():
        model.fit(x, y, epochs=options.epochs, batch_size=options.batch_size, callbacks=callbacks, verbose=0)


def evaluate(model: Any, ctx: StageContext, options: FineTuneOptions) -> dict[str, float]:
    """Loss (and accuracy) on the fine-tune data: a cheap check of what the stage cost or regained."""
    x, y = training_data(ctx, model)
    with captured_native_output():
        values = model.evaluate(x, y, batch_size=max(options.batch_size, 256), verbose=0, return_dict=True)
    return {name: round(float(value), 5) for name, value in values.items() if name in {"loss", "accuracy"}}


def save(model: Any, artifact: Artifact, ctx: StageContext) -> Path:
    """Keras 3 → model.keras; tf_keras → model.h5 (tf_keras's own format); written then renamed into place."""
    suffix = ".h5" if artifact.flavour == "tf_keras" else ".keras"
    path = ctx.work_dir / f"model{suffix}"
    partial = ctx.work_dir / f".model.partial{suffix}"  # Keras picks the format from the suffix
    with captured_native_output():
        if artifact.flavour == "tf_keras":
            model.save(partial, include_optimizer=False)
        else:
            model.save(partial)
    os.replace(partial, path)
    return path


def kernel_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ in KERNEL_LAYERS]


def parameter_counts(model: Any) -> dict[str, int]:
    return {"parameters": int(sum(np.size(w) for w in model.get_weights()))}
