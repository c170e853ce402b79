"""`qat` stage: tf_keras model → quantization-aware tf_keras model (tfmot quantize_model), fine-tuned.

The model it gives carries fake-quant ranges learned in training: a following `tflite` stage with
`quantize: int8` turns them into an int8 file, and the `onnx` stage exports them as QuantizeLinear /
DequantizeLinear pairs. tfmot cannot annotate Keras 3 models and no maintained tool can, so Keras 3
inputs are refused with a pointer to post-training int8. Knows nothing of recipes, runtimes or reports.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.artifact import Artifact
from pipeline.errors import StageError, first_line
from pipeline.stages import finetune
from pipeline.stages.base import StageContext

KERAS3_REFUSAL = (
    "qat needs a tf_keras model (tfmot's quantize_model rejects Keras 3 models, and edgeport does not "
    "rewrite a Keras 3 graph with fake-quant ops); for an int8 file from this Keras 3 model use "
    "post-training quantization instead: `{tflite: {quantize: int8}}` with data.calibration"
)


class QatOptions(finetune.FineTuneOptions):
    """Fine-tune options only: tfmot's default 8-bit scheme (per-channel weights, per-tensor activations)."""


class QatStage(finetune.FineTuningStage):
    kind = "qat"
    Options = QatOptions

    @classmethod
    def refuses_source(cls, source_suffix: str) -> str | None:
        # A .keras file is always a Keras 3 model; an .h5 may hold either kind, so it is checked at run time.
        return KERAS3_REFUSAL if source_suffix == ".keras" else None

    @classmethod
    def describe(cls, options: QatOptions) -> str:
        return f"qat epochs={options.epochs}"

    @classmethod
    def default_gates(cls, options: QatOptions) -> dict[str, float]:
        # Fake quantization moves outputs by a few int8 steps; the decisions must stay.
        return {"cosine": 0.99, "top1_agreement": 0.95}

    def run(self, upstream: Artifact, options: QatOptions, ctx: StageContext) -> Artifact:
        if upstream.flavour != "tf_keras":
            raise StageError(KERAS3_REFUSAL)

        def quantize(model: Any, from_logits: bool) -> Any:
            import tf_keras

            annotated = _annotate(model)
            finetune.compile_for(annotated, tf_keras, options, from_logits)
            finetune.fit(annotated, ctx, options, [])
            return annotated

        quantized, path, scores = finetune.tune(upstream, options, ctx, quantize)
        details = {
            "qat": True,  # tells a following tflite stage the ranges are in the model
            "method": "tfmot quantize_model",
            "epochs": options.epochs,
            "quantized_layers": _quantized_layers(quantized),
            **finetune.parameter_counts(upstream.handle),
            **scores,
        }
        return Artifact(
            kind="keras", path=path, key=ctx.key, flavour=upstream.flavour, handle=quantized, details=details
        )


def _annotate(model: Any) -> Any:
    tfmot = finetune.import_tfmot()
    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (ValueError, RuntimeError) as error:  # unsupported layers, subclassed models
        first = first_line(error, 400)
        raise StageError(f"tfmot cannot make this model quantization-aware: {first}") from error


def _quantized_layers(model: Any) -> list[str]:
    """Wrapped layers by their original names: the ones that carry learned ranges."""
    return [layer.layer.name for layer in model.layers if hasattr(layer, "quantize_config")]
