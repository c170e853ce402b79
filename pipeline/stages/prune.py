"""`prune` stage: Keras model → Keras model with magnitude-pruned kernels, fine-tuned on data.fine_tune.

tf_keras models go through tfmot (prune_low_magnitude, UpdatePruningStep, strip_pruning). tfmot refuses
Keras 3 models, so for them the same tfmot schedule drives magnitude masks that a Keras 3 callback keeps
during fine-tuning. Both prune the kernels of Dense/Conv layers only (tfmot never prunes DepthwiseConv2D
nor biases). Knows nothing of recipes, runtimes or reports; the figures in `details` are measured on
the weights, not copied from the options.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from pipeline.core.artifact import Artifact
from pipeline.errors import StageError
from pipeline.stages import finetune
from pipeline.stages.base import StageContext
from pipeline.stages.masks import magnitude_mask, measure_sparsity


class PruneOptions(finetune.FineTuneOptions):
    sparsity: float = Field(0.5, ge=0, lt=1, description="Final fraction of zeros in each pruned kernel.")
    schedule: Literal["constant", "polynomial"] = Field(
        "constant", description="constant: sparsity from the first step; polynomial: from initial_sparsity up to it."
    )
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="Polynomial schedule only: sparsity at step 0.")
    # tfmot's default frequency (100 steps) never fires in a short fine-tune.
    frequency: int = Field(1, ge=1, description="Update the masks every this many training steps.")
    layers: finetune.LayerFilter = Field(
        default_factory=finetune.LayerFilter, description="Which Dense/Conv layers to prune, by name."
    )
    structure: Literal["2:4"] | None = Field(None, description="m:n sparsity (2 zeros in every 4 input weights).")

    @model_validator(mode="after")
    def _consistent(self) -> PruneOptions:
        if self.schedule == "polynomial" and self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity ({self.initial_sparsity}) exceeds sparsity ({self.sparsity})")
        if self.structure == "2:4" and self.sparsity != 0.5:
            raise ValueError(f"structure 2:4 prunes exactly half of each kernel; sparsity is {self.sparsity}, not 0.5")
        return self


class PruneStage(finetune.FineTuningStage):
    kind = "prune"
    Options = PruneOptions

    @classmethod
    def describe(cls, options: PruneOptions) -> str:
        return f"prune {options.structure or f'{options.sparsity:g}'} {options.schedule} epochs={options.epochs}"

    def run(self, upstream: Artifact, options: PruneOptions, ctx: StageContext) -> Artifact:
        finetune.require_fine_tune_data(ctx)  # no fine-tune data: say so before any work
        targets = _targets(upstream, options)
        schedule = _schedule(options, finetune.steps_per_epoch(ctx, options))
        return finetune.tune_by_flavour(
            upstream,
            options,
            ctx,
            keras3=lambda model: _prune_keras3(model, targets, schedule, options, ctx),
            tf_keras=lambda model, from_logits: _prune_tf_keras(model, targets, schedule, options, ctx, from_logits),
            methods=("keras3 magnitude masks", "tfmot prune_low_magnitude"),
            settings={
                "target_sparsity": options.sparsity,
                "schedule": options.schedule,
                "structure": options.structure,
            },
            measure=lambda model: measure_sparsity(model, targets),
        )


def _targets(upstream: Artifact, options: PruneOptions) -> list[str]:
    if upstream.handle is None:
        raise StageError("prune needs a loaded Keras model as its input")
    targets = [layer.name for layer in finetune.kernel_layers(upstream.handle) if options.layers.selects(layer.name)]
    if not targets:
        raise StageError("no Dense/Conv layer matches prune.layers; nothing to prune")
    return targets


def _schedule(options: PruneOptions, steps_per_epoch: int) -> Any:
    sparsity = finetune.import_tfmot().sparsity.keras
    if options.schedule == "constant":
        return sparsity.ConstantSparsity(options.sparsity, begin_step=0, frequency=options.frequency)
    # Reach the final sparsity on the last step; tfmot needs end_step > begin_step.
    end_step = max(options.epochs * steps_per_epoch - 1, 1)
    return sparsity.PolynomialDecay(
        options.initial_sparsity, options.sparsity, begin_step=0, end_step=end_step, frequency=options.frequency
    )


def _prune_tf_keras(
    model: Any, targets: list[str], schedule: Any, options: PruneOptions, ctx: StageContext, from_logits: bool
) -> Any:
    import tf_keras

    sparsity = finetune.import_tfmot().sparsity.keras
    structure = (2, 4) if options.structure == "2:4" else None

    def wrap(layer: Any) -> Any:
        # `model` is already this stage's own copy: wrapping its layers in place keeps their weights.
        if layer.name not in targets:
            return layer
        return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule, sparsity_m_by_n=structure)

    wrapped = tf_keras.models.clone_model(model, clone_function=wrap)
    finetune.compile_for(wrapped, tf_keras, options, from_logits)
    finetune.fit(wrapped, ctx, options, [sparsity.UpdatePruningStep()])
    return sparsity.strip_pruning(wrapped)


def _prune_keras3(model: Any, targets: list[str], schedule: Any, options: PruneOptions, ctx: StageContext) -> Any:
    import keras

    class MagnitudeMasks(keras.callbacks.Callback):
        """tfmot's loop for Keras 3: at each scheduled step recompute magnitude masks, and keep masked weights zero."""

        def __init__(self) -> None:
            super().__init__()
            self.kernels = [layer.kernel for layer in model.layers if layer.name in targets]
            self.masks = [np.ones(tuple(k.shape), dtype=k.dtype) for k in self.kernels]
            self.step = 0

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            should_prune, sparsity = schedule(self.step)
            if bool(should_prune):
                level = float(sparsity)
                self.masks = [magnitude_mask(np.asarray(k), level, options.structure) for k in self.kernels]
            self.step += 1
            self._apply()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self._apply()  # the optimizer step moved pruned weights off zero

        def _apply(self) -> None:
            for kernel, mask in zip(self.kernels, self.masks, strict=True):
                kernel.assign(np.asarray(kernel) * mask)

    finetune.fit(model, ctx, options, [MagnitudeMasks()])
    return finetune.clone(model, keras)  # drops the optimizer state from what is saved
