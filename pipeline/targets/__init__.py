"""The target registry: the one list of deployment targets an output's `targets:` may name.

Each target analyses a .tflite file (gpu: TFLite's GPU compatibility rules; xnnpack: what LiteRT's XNNPACK delegate
takes; micro: TFLite for Microcontrollers). Knows runtimes and parity; nothing of recipes, stages, runs or reports.
"""

from __future__ import annotations

from pipeline.targets.base import Target, TargetContext, TargetReport, Unsupported
from pipeline.targets.gpu import GpuTarget
from pipeline.targets.micro import MicroTarget
from pipeline.targets.xnnpack import XnnpackTarget

TARGETS: dict[str, type[Target]] = {target.name: target for target in (GpuTarget, XnnpackTarget, MicroTarget)}

__all__ = ["TARGETS", "Target", "TargetContext", "TargetReport", "Unsupported"]
