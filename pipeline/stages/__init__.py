"""The stage registry: the one place that lists the stage kinds a recipe may name."""

from __future__ import annotations

from pipeline.stages.base import Stage, StageContext, StageOptions
from pipeline.stages.cluster import ClusterStage
from pipeline.stages.litert_quantize import LiteRTQuantizeStage
from pipeline.stages.onnx import OnnxStage
from pipeline.stages.prune import PruneStage
from pipeline.stages.qat import QatStage
from pipeline.stages.tflite import TfliteStage

STAGES: dict[str, type[Stage]] = {
    stage.kind: stage for stage in (TfliteStage, OnnxStage, PruneStage, QatStage, ClusterStage, LiteRTQuantizeStage)
}

__all__ = ["STAGES", "Stage", "StageContext", "StageOptions"]
