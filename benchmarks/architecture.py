"""One real architecture end to end: where the time of an `edgeport run` goes.

    python benchmarks/architecture.py            (make bench runs it after benchmarks/run.py)

Runs MobileNetV2 (32×32, random weights with batch-norm statistics from one batch) through fp32 TFLite,
int8 TFLite and fp32 ONNX, cache off, twice: once with the conversion worker (the default; wall time) and
once in process under cProfile (`python -m cProfile`, in a child process), which splits the same work into
conversion (the stages' run methods), inference (every runtime's predict_batch: the source in Keras and each
file in its runtime), the TensorFlow import, and what is left: edgeport itself (parity metrics, plots,
reports, loading, the plan).
"""

from __future__ import annotations

import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (category, file suffix, function name): cumulative time of these functions makes each share.
CATEGORIES = {
    "conversion": [("pipeline/stages/tflite.py", "run"), ("pipeline/stages/onnx.py", "run")],
    "inference": [(f"pipeline/runtimes/{name}.py", "predict_batch") for name in ("keras", "litert", "onnxrt")],
    "TensorFlow import": [("pipeline/frameworks.py", "import_tensorflow")],
}


def write_recipe(work: Path) -> Path:
    model = work / "mobilenetv2.keras"
    build = f"from scripts.applications import build_application; build_application('MobileNetV2', {str(model)!r})"
    # In a child process: the profiled run below must import TensorFlow itself, as a user's run does.
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True, cwd=ROOT)
    rng = np.random.default_rng(0)
    np.savez(
        work / "images.npz",
        calibration=rng.random((64, 32, 32, 3), dtype=np.float32),
        evaluation=rng.random((128, 32, 32, 3), dtype=np.float32),
    )
    recipe = work / "mobilenetv2.yaml"
    recipe.write_text(
        f"name: mobilenetv2\nsource: {model}\ndata:\n"
        "  calibration: {npz: images.npz, inputs: calibration}\n"
        "  evaluation: {npz: images.npz, inputs: evaluation}\n"
        "outputs:\n"
        "  fp32: {stages: [tflite], gates: {max_abs: 1.0e-3}}\n"
        "  int8: {stages: [{tflite: {quantize: int8}}], gates: {cosine: 0.5}}\n"
        "  onnx: {stages: [onnx], gates: {max_abs: 1.0e-3}}\n"
    )
    return recipe


def shares(profile: pstats.Stats) -> dict[str, float]:
    stats = profile.stats  # type: ignore[attr-defined]
    found = dict.fromkeys(CATEGORIES, 0.0)
    for (file, _, function), (_, _, _, cumulative, _) in stats.items():
        for category, places in CATEGORIES.items():
            if any(file.endswith(suffix) and function == name for suffix, name in places):
                found[category] += cumulative
    return found


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edgeport-arch-") as tmp:
        work = Path(tmp)
        recipe = write_recipe(work)
        run = ["-m", "pipeline", "run", str(recipe), "--no-cache"]
        start = time.perf_counter()
        default = subprocess.run([sys.executable, *run, "--out", str(work / "out")], capture_output=True, cwd=ROOT)
        isolated = time.perf_counter() - start
        profiled = [sys.executable, "-m", "cProfile", "-o", str(work / "profile"), *run, "--out", str(work / "in")]
        start = time.perf_counter()
        in_process = subprocess.run([*profiled, "--no-isolation"], capture_output=True, cwd=ROOT)
        total = time.perf_counter() - start
        if default.returncode not in (0, 1) or in_process.returncode not in (0, 1):
            print((default.stderr or in_process.stderr).decode()[-2000:], file=sys.stderr)
            return 1
        found = shares(pstats.Stats(str(work / "profile")))
    found["edgeport itself"] = total - sum(found.values())
    print("MobileNetV2 32×32 → fp32 TFLite, int8 TFLite, ONNX; 128 evaluation samples, cache off")
    print(f"  wall, default (conversions in the worker process): {isolated:6.1f} s")
    print(f"  wall, --no-isolation under cProfile:               {total:6.1f} s  (profiling slows Python code)")
    for category, seconds in found.items():
        print(f"    {category:<18} {seconds:6.1f} s  {seconds / total:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
