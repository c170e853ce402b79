"""A recipe with several outputs against the script a user would write for the same work, side by side.

    python benchmarks/multi_output.py [--repeats 2]        (make bench runs it)

MobileNetV2 (alpha 0.35, 96×96, random weights with batch-norm statistics from one batch) to fp32, float16,
dynamic-range and int8 TFLite and fp32 ONNX; 48 calibration and 32 evaluation samples; cache off. The script
(`--script`, below) exports the Keras model once, converts four times from that SavedModel, runs tf2onnx once,
runs each file over the evaluation data and compares it with Keras: what edgeport does, without its checks and
reports. Figures: edgeport cold / script (target <= 0.95: its ONNX output converts from the SavedModel the TFLite
outputs share, where the script traces the model again for tf2onnx's from_keras) and edgeport --jobs 2 / script
(target <= 0.8).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(work: Path) -> Path:
    """The model, its data and the recipe, made in a child process (the timed runs import TensorFlow themselves)."""
    model = work / "mobilenetv2.keras"
    build = (
        "from scripts.applications import build_application; "
        f"build_application('MobileNetV2', {str(model)!r}, 96, alpha=0.35)"
    )
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True, cwd=ROOT)
    rng = np.random.default_rng(1)
    np.savez(
        work / "images.npz",
        calibration=rng.random((48, 96, 96, 3), dtype=np.float32),
        evaluation=rng.random((32, 96, 96, 3), dtype=np.float32),
    )
    recipe = work / "multi.yaml"
    recipe.write_text(
        f"name: multi\nsource: {model}\ndata:\n"
        "  calibration: {npz: images.npz, inputs: calibration}\n"
        "  evaluation: {npz: images.npz, inputs: evaluation}\n"
        "outputs:\n"
        "  fp32: {stages: [tflite]}\n"
        "  float16: {stages: [{tflite: {quantize: float16}}]}\n"
        "  dynamic: {stages: [{tflite: {quantize: dynamic}}]}\n"
        "  int8: {stages: [{tflite: {quantize: int8}}]}\n"
        "  onnx: {stages: [onnx]}\n"
    )
    return recipe


def script(work: Path) -> None:
    """The hand-written equivalent: export once, convert four times, tf2onnx once, run and compare each file."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import onnxruntime
    import tensorflow as tf
    import tf2onnx
    from ai_edge_litert.interpreter import Interpreter

    model = keras.saving.load_model(work / "mobilenetv2.keras")
    data = np.load(work / "images.npz")
    calibration, evaluation = data["calibration"], data["evaluation"]
    reference = np.asarray(model.predict_on_batch(evaluation))
    model.export(str(work / "script_saved_model"), format="tf_saved_model", verbose=False)

    def representative():  # one sample at a time, as the converter's docs show
        for index in range(len(calibration)):
            yield [calibration[index : index + 1]]

    files = {}
    for mode in ("fp32", "float16", "dynamic", "int8"):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(work / "script_saved_model"))
        if mode != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode == "int8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        files[mode] = converter.convert()
    errors = {}
    for mode, content in files.items():
        runner = Interpreter(model_content=content).get_signature_runner()
        name = next(iter(runner.get_input_details()))
        outputs = next(iter(runner(**{name: evaluation}).values()))
        errors[mode] = float(np.max(np.abs(outputs - reference)))
    spec = [tf.TensorSpec([None, 96, 96, 3], tf.float32, name="images")]
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    errors["onnx"] = float(np.max(np.abs(session.run(None, {"images": evaluation})[0] - reference)))
    print(errors)


def wall(command: list[str]) -> float:
    """Seconds the command took; exit 1 (a gate failed: int8 on random weights may) is a finished run too."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, cwd=ROOT, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def measure(repeats: int) -> list[str]:
    """The figures as lines; each round runs the three sides back to back, and medians are compared."""
    with tempfile.TemporaryDirectory(prefix="edgeport-multi-") as tmp:
        work = Path(tmp)
        recipe = prepare(work)
        run = [sys.executable, "-m", "pipeline", "run", str(recipe), "--no-cache", "--out", str(work / "out")]
        sides: dict[str, list[float]] = {"edgeport": [], "jobs 2": [], "script": []}
        for _ in range(repeats):
            sides["edgeport"].append(wall(run))
            sides["jobs 2"].append(wall([*run, "--jobs", "2"]))
            sides["script"].append(wall([sys.executable, __file__, "--script", str(work)]))
    medians = {side: statistics.median(times) for side, times in sides.items()}
    cold, jobs, base = medians["edgeport"] / medians["script"], medians["jobs 2"] / medians["script"], medians["script"]
    return [
        f"{'✓' if cold <= 0.95 else '✗'} {'multi-output / script':<22} ratio {cold:6.3f}  (target <= 0.95)  "
        f"edgeport {medians['edgeport']:.1f} s, export-once script {base:.1f} s (5 outputs, MobileNetV2 96×96)",
        f"{'✓' if jobs <= 0.8 else '✗'} {'multi-output --jobs 2':<22} ratio {jobs:6.3f}  (target <= 0.8)  "
        f"edgeport --jobs 2 {medians['jobs 2']:.1f} s on {os.cpu_count()} cores",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--script", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.script:
        script(args.script)
        return 0
    print("\n".join(measure(args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
