"""Print docs/measurements.md's "Same file, different CPU" table from a real run on this machine.

Builds Keras Applications at 32×32 with random weights (batch-norm statistics from one batch), quantizes each
to ONNX static int8 with four settings, and runs every file with and without onnxruntime's graph optimizations.
Usage: python scripts/cpu_table.py [--models MobileNetV2 ...] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = {
    "S8S8 (default)": "{}",
    "S8S8 + reduce_range": "{reduce_range: true}",
    "U8S8": "{activation_type: uint8}",
    "U8U8": "{activation_type: uint8, weight_type: uint8}",
}


def recipe_text(name: str) -> str:
    outputs = "\n".join(
        f"  s{index}: {{stages: [{{onnx: {{quantize: static, per_channel: true, "
        f"{options.strip('{}') or 'opset: 17'}}}}}], gates: {{cosine: 0.0}}}}"
        for index, options in enumerate(SETTINGS.values())
    )
    return (
        f"name: {name}\nsource: {name}.keras\ndata:\n  calibration: {{random: {{samples: 32, seed: 1}}}}\n"
        f"  evaluation: {{random: {{samples: 32, seed: 2}}}}\noutputs:\n{outputs}\n"
    )


def rows_for(name: str, work: Path) -> list[str]:
    from pipeline.recipe import load_recipe
    from pipeline.run import RunOptions, run_recipe
    from scripts.applications import build_application

    build_application(name, work / f"{name}.keras")
    (work / "recipe.yaml").write_text(recipe_text(name))
    report = run_recipe(load_recipe(work / "recipe.yaml"), RunOptions(out_dir=work / "out"), log=lambda line: None)
    rows = []
    for label, output in zip(SETTINGS, report["outputs"], strict=True):
        kinds = {comparison["kind"]: comparison["metrics"] for comparison in output["comparisons"]}
        unoptimized, gap = kinds["runtime_setting"], kinds["setting_gap"]
        ratio = gap["rmse"] / unoptimized["rmse"] if unoptimized["rmse"] else float("nan")
        finding = ", ".join(found["kind"] for found in output["findings"]) or "-"
        rows.append(
            f"| {name} | {label} | {output['parity']['metrics']['cosine']:.2f} | {unoptimized['cosine']:.2f} "
            f"| {ratio:.2f} | {finding} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["MobileNetV2", "MobileNetV3Small", "EfficientNetB0"])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    from pipeline.core.cpu import cpu_info, describe_cpu

    print(f"CPU: {describe_cpu(cpu_info())}\n")
    print("| model | quantization | cosine, optimized | cosine, unoptimized | gap / quantization error | finding |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="edgeport-cpu-table-") as scratch:
        for name in args.models:
            work = (args.work or Path(scratch)) / name
            work.mkdir(parents=True, exist_ok=True)
            for row in rows_for(name, work):
                print(row, flush=True)


if __name__ == "__main__":
    main()
