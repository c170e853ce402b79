"""The zoo: models nobody here wrote, through edgeport and through the raw calls a user would make, side by side.

Every Keras Applications constructor at its smallest input (random weights, batch-norm statistics from one batch of
pixels in the range the model expects), the seeds' two Sequential models (as users write and save them), and
keras-hub backbones built tiny with random weights (text, vision, audio;
nothing downloaded). Each goes through edgeport (fp32 TFLite, int8 TFLite, fp32 ONNX, static int8 ONNX; rescues
on) and through the raw calls
(`TFLiteConverter.from_keras_model`, `tf2onnx.convert.from_keras`, Keras `Model.export(format="litert" | "onnx")`),
each file run in its runtime against Keras on the same 16 samples (fp32 passes at max_abs <= 1e-4, or within 4× the
source's own float32 spread: `gates: {float32_noise: 4}`, the raw files judged the same way). The table is written
to docs/zoo.md from the run's results: generated, never edited by hand.

    python scripts/zoo.py                      # the whole zoo (hours on 2 cores)
    python scripts/zoo.py --only MobileNetV2 bert --table docs/zoo.md
    python scripts/zoo.py --raw DIR            # (internal) the raw calls on DIR/model.keras, as JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SAMPLES, SEQUENCE, VOCABULARY = 16, 16, 100
FP32_MAX_ABS = 1e-4
# Deep random-weight CNNs amplify float32 rounding past 1e-4 (ResNet50: Keras's own outputs move 5.5e-4 with its
# inputs one ulp off): an fp32 file within this many times the source's spread is as exact as the source's own run.
FLOAT32_NOISE = 4.0
FP32_GATES = {"max_abs": FP32_MAX_ABS, "float32_noise": FLOAT32_NOISE}
# Keras Applications and the smallest input each takes with weights=None.
APPLICATIONS = {
    **dict.fromkeys(
        [
            "ConvNeXtTiny",
            "DenseNet121",
            "EfficientNetB0",
            "EfficientNetV2B0",
            "MobileNet",
            "MobileNetV2",
            "MobileNetV3Large",
            "MobileNetV3Small",
            "NASNetMobile",
            "ResNet50",
            "ResNet50V2",
            "VGG16",
        ],
        32,
    ),
    "Xception": 71,
    "InceptionV3": 75,
    "InceptionResNetV2": 75,
}
# Models as users write them: keras.Sequential, saved with model.save() (tf2onnx's from_keras fails on each).
SEQUENTIAL = {"SequentialMLP": (28, 28), "SequentialCNN": (32, 32, 3)}
# Constructors whose models rescale [0, 255] pixels themselves (include_preprocessing): fed and calibrated so.
RESCALING = {"ConvNeXtTiny", "EfficientNetB0", "EfficientNetV2B0", "MobileNetV3Large"}
OUTPUTS = {
    "tflite fp32": {"stages": ["tflite"], "gates": FP32_GATES},
    "tflite int8": {"stages": [{"tflite": {"quantize": "int8"}}]},
    "onnx fp32": {"stages": ["onnx"], "gates": FP32_GATES},
    "onnx int8": {"stages": [{"onnx": {"quantize": "static"}}]},
}
RAW = ("from_keras_model", "tf2onnx.from_keras", "export litert", "export onnx")


def _text(rng: np.random.Generator, samples: int, segments: bool = False, mask: bool = True) -> dict[str, np.ndarray]:
    """Token ids (padding at the end, as tokenizers leave it), with a padding mask and segment ids as asked."""
    padding = np.ones((samples, SEQUENCE), np.int32)
    padding[:, SEQUENCE // 2 :] = np.sort(rng.integers(0, 2, (samples, SEQUENCE // 2)), axis=1)[:, ::-1]
    inputs = {"token_ids": rng.integers(1, VOCABULARY, (samples, SEQUENCE)).astype(np.int32)}
    if mask:
        inputs["padding_mask"] = padding
    if segments:
        inputs["segment_ids"] = np.zeros((samples, SEQUENCE), np.int32)
    return inputs


def _encoder_decoder(rng: np.random.Generator, samples: int) -> dict[str, np.ndarray]:
    """Encoder and decoder token ids with their padding masks (T5, BART)."""
    encoder, decoder = _text(rng, samples), _text(rng, samples)
    return {
        "encoder_token_ids": encoder["token_ids"],
        "encoder_padding_mask": encoder["padding_mask"],
        "decoder_token_ids": decoder["token_ids"],
        "decoder_padding_mask": decoder["padding_mask"],
    }


def hub_backbones() -> dict[str, tuple[Callable[[], Any], Callable[[np.random.Generator, int], dict[str, np.ndarray]]]]:
    """keras-hub backbones, tiny, and their inputs: name → (build, inputs(rng, samples)).
    tests/e2e/test_keras_hub.py and tests/stages/test_onnx_rescues.py build theirs here too."""
    import keras_hub

    models = keras_hub.models
    text = {"vocabulary_size": VOCABULARY, "num_layers": 2, "hidden_dim": 32, "intermediate_dim": 64}
    heads = {"num_heads": 2, "max_sequence_length": SEQUENCE}
    decoder = {"num_query_heads": 2, "num_key_value_heads": 1}
    images = lambda size: lambda rng, n: {"images": rng.random((n, size, size, 3), dtype=np.float32)}  # noqa: E731
    return {
        "bert": (lambda: models.BertBackbone(**text, **heads), lambda rng, n: _text(rng, n, segments=True)),
        "distil_bert": (lambda: models.DistilBertBackbone(**text, **heads), _text),
        "roberta": (lambda: models.RobertaBackbone(**text, **heads), _text),
        "albert": (
            lambda: models.AlbertBackbone(**text, **heads, embedding_dim=16, num_groups=1, num_inner_repetitions=1),
            lambda rng, n: _text(rng, n, segments=True),
        ),
        "f_net": (
            lambda: models.FNetBackbone(**text, max_sequence_length=SEQUENCE),
            lambda rng, n: _text(rng, n, segments=True, mask=False),  # FNet mixes with Fourier transforms: no mask
        ),
        "gpt2": (lambda: models.GPT2Backbone(**text, **heads), _text),
        "llama": (lambda: models.LlamaBackbone(**text, **decoder), _text),
        "gemma": (lambda: models.GemmaBackbone(**text, **decoder, head_dim=16), _text),
        "vit": (
            lambda: models.ViTBackbone(
                image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
            ),
            images(32),
        ),
        "mit": (
            lambda: models.MiTBackbone(
                layerwise_depths=[1, 1],
                num_layers=2,
                layerwise_num_heads=[1, 2],
                layerwise_sr_ratios=[2, 1],
                max_drop_path_rate=0.0,
                layerwise_patch_sizes=[7, 3],
                layerwise_strides=[4, 2],
                hidden_dims=[8, 16],
                image_shape=(32, 32, 3),
            ),
            images(32),
        ),
        "t5": (lambda: models.T5Backbone(**text, num_heads=2), _encoder_decoder),
        "bart": (lambda: models.BartBackbone(**text, **heads), _encoder_decoder),
        "deberta_v3": (lambda: models.DebertaV3Backbone(**text, **heads), _text),
        "electra": (
            lambda: models.ElectraBackbone(
                vocab_size=VOCABULARY,
                num_layers=2,
                num_heads=2,
                hidden_dim=32,
                embedding_dim=16,
                intermediate_dim=64,
                max_sequence_length=SEQUENCE,
            ),
            lambda rng, n: _text(rng, n, segments=True),
        ),
        "xlnet": (lambda: models.XLNetBackbone(**text, num_heads=2), lambda rng, n: _text(rng, n, segments=True)),
        "roformer_v2": (
            lambda: models.RoformerV2Backbone(**text, num_heads=2, head_size=16, max_wavelength=1000),
            lambda rng, n: _text(rng, n, segments=True, mask=False),
        ),
        "esm2": (lambda: models.ESM2Backbone(**text, **heads), lambda rng, n: _text(rng, n, mask=False)),
        "mistral": (lambda: models.MistralBackbone(**text, **decoder), _text),
        "qwen3": (lambda: models.Qwen3Backbone(**text, **decoder, head_dim=16), _text),
        "bloom": (lambda: models.BloomBackbone(**text, num_heads=2), _text),
        "falcon": (lambda: models.FalconBackbone(**text, num_attention_heads=2), _text),
        "opt": (lambda: models.OPTBackbone(**text, **heads), _text),
        "deit": (
            lambda: models.DeiTBackbone(
                image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32
            ),
            images(32),
        ),
        "swin": (
            lambda: models.SwinTransformerBackbone(
                image_shape=(32, 32, 3), embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4, patch_size=2
            ),
            images(32),
        ),
        "dinov2": (
            lambda: models.DINOV2Backbone(
                patch_size=8, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32, image_shape=(32, 32, 3)
            ),
            images(32),
        ),
        "whisper": (
            lambda: models.WhisperBackbone(
                vocabulary_size=VOCABULARY,
                num_layers=2,
                num_heads=2,
                hidden_dim=16,
                intermediate_dim=32,
                num_mels=8,
                max_encoder_sequence_length=32,
                max_decoder_sequence_length=SEQUENCE,
            ),
            lambda rng, n: {
                "encoder_features": rng.standard_normal((n, 32, 8)).astype(np.float32),
                "decoder_token_ids": _text(rng, n)["token_ids"],
                "decoder_padding_mask": _text(rng, n)["padding_mask"],
            },
        ),
    }


def sequential(name: str) -> Any:
    """The seeds' Sequential models, random weights: an MLP on 28×28 (Dense 512, Dropout, Dense 10) and a small CNN
    on 32×32×3 (Conv, BatchNorm, MaxPool, Dropout, Dense)."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    if name == "SequentialMLP":
        body = [layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dropout(0.2)]
    else:
        body = [layers.Conv2D(16, 3, activation="relu"), layers.BatchNormalization(), layers.MaxPooling2D()]
        body += [layers.Conv2D(32, 3, activation="relu"), layers.GlobalAveragePooling2D(), layers.Dropout(0.2)]
    return keras.Sequential([keras.Input(SEQUENTIAL[name]), *body, layers.Dense(10, activation="softmax")])


def build(name: str, folder: Path) -> list[str]:
    """Save the model as folder/model.keras with data.npz (evaluation) and calibration.npz (other samples); the
    npz keys (`x` for a model of one array input, else its input names)."""
    from scripts.applications import build_application

    folder.mkdir(parents=True, exist_ok=True)
    if name in APPLICATIONS:
        size, pixels = APPLICATIONS[name], 255.0 if name in RESCALING else 1.0
        build_application(name, folder / "model.keras", size, pixels)
        make = lambda rng, n: {"x": pixels * rng.random((n, size, size, 3), dtype=np.float32)}  # noqa: E731
    elif name in SEQUENTIAL:
        shape = SEQUENTIAL[name]
        sequential(name).save(folder / "model.keras")
        make = lambda rng, n: {"x": rng.random((n, *shape), dtype=np.float32)}  # noqa: E731
    else:
        import keras

        builder, made = hub_backbones()[name]
        keras.utils.set_random_seed(0)
        model = builder()
        if isinstance(model.input, dict):
            make = made
            model.predict_on_batch(make(np.random.default_rng(0), 2))
        else:  # one array (MiT's images): fed as one, keyed `x` in the files
            make = lambda rng, n: {"x": next(iter(made(rng, n).values()))}  # noqa: E731
            model.predict_on_batch(make(np.random.default_rng(0), 2)["x"])
        model.save(folder / "model.keras")
    evaluation = make(np.random.default_rng(1), SAMPLES)
    np.savez(folder / "data.npz", **evaluation)
    np.savez(folder / "calibration.npz", **make(np.random.default_rng(2), SAMPLES))
    return sorted(evaluation)


def run_edgeport(name: str, folder: Path, inputs: list[str]) -> dict[str, Any]:
    """edgeport's own run, as a user runs it (a recipe, the CLI): per output, its status, max_abs and rescues."""
    keys: str | dict[str, str] = "x" if inputs == ["x"] else {input_name: input_name for input_name in inputs}
    recipe = {
        "name": name,
        "source": {"path": "model.keras", "trusted": True},
        "data": {
            "calibration": {"npz": "calibration.npz", "inputs": keys},
            "evaluation": {"npz": "data.npz", "inputs": keys},
        },
        "outputs": {output.replace(" ", "_"): spec for output, spec in OUTPUTS.items()},
    }
    (folder / "recipe.yaml").write_text(json.dumps(recipe))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(folder / "recipe.yaml"), "--out", str(folder / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    report_path = folder / "out" / "report.json"
    if not report_path.exists():
        return {output: {"status": "error", "error": done.stderr.strip().splitlines()[-1:]} for output in OUTPUTS}
    report = json.loads(report_path.read_text())
    results = {}
    for output, entry in zip(OUTPUTS, report["outputs"], strict=True):
        metrics = (entry.get("parity") or {}).get("metrics") or {}
        gates = (entry.get("parity") or {}).get("gates") or []
        results[output] = {
            "status": entry["status"],
            "max_abs": metrics.get("max_abs"),
            "cosine": metrics.get("cosine"),
            "rescues": [rescue["name"] for rescue in entry.get("rescues") or []],
            "findings": [finding["kind"] for finding in entry.get("findings") or []],
            "within_noise": any("(gates: float32_noise)" in (gate.get("note") or "") for gate in gates),
            "error": (entry.get("error") or "").splitlines()[:1],
        }
    return results


def raw_calls(folder: Path) -> dict[str, Any]:
    """The raw calls a user would make on folder/model.keras, each file run against Keras on data.npz."""
    from pipeline.frameworks import captured_native_output, import_tensorflow
    from pipeline.run.diagnose import float32_noise, float32_spread

    tf = import_tensorflow()
    import keras

    model = keras.saving.load_model(folder / "model.keras")
    data = dict(np.load(folder / "data.npz"))
    structured: Any = data if isinstance(model.input, dict) else next(iter(data.values()))  # one array: `x`
    reference = [np.asarray(value) for value in keras.tree.flatten(model.predict_on_batch(structured))]

    def predict(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = feed if isinstance(model.input, dict) else next(iter(feed.values()))
        return {str(i): np.asarray(v) for i, v in enumerate(keras.tree.flatten(model.predict_on_batch(batch)))}

    spreads, _ = float32_spread(predict, data)  # as edgeport measures the source's, for the same judgement
    noise = float32_noise(spreads)
    results: dict[str, Any] = {}
    for name, make in (
        ("from_keras_model", lambda: _litert(tf.lite.TFLiteConverter.from_keras_model(model).convert(), folder)),
        ("export litert", lambda: _export(model, folder / "raw.tflite", "litert")),
        ("tf2onnx.from_keras", lambda: _tf2onnx(tf, model, folder / "raw.onnx")),
        ("export onnx", lambda: _export(model, folder / "raw_export.onnx", "onnx")),
    ):
        try:
            with captured_native_output():
                path = make()
            outputs = _run_file(path, data)
        except Exception as error:  # the raw tools fail in many ways: each is a row's result
            results[name] = {"status": "error", "error": str(error).strip().splitlines()[:1]}
            continue
        results[name] = _judge(reference, outputs, noise)
    return results


def _litert(model_bytes: bytes, folder: Path) -> Path:
    path = folder / "raw_from_keras_model.tflite"
    path.write_bytes(model_bytes)
    return path


def _export(model: Any, path: Path, format: str) -> Path:
    model.export(str(path), format=format, verbose=False)
    return path


def _tf2onnx(tf: Any, model: Any, path: Path) -> Path:
    import tf2onnx

    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    signature = {s.name: s for s in specs} if isinstance(model.input, dict) else specs
    signature = [signature] if isinstance(model.input, dict) else signature
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=17, output_path=str(path))
    return path


def _run_file(path: Path, data: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Sample by sample, inputs paired by name (prefixes stripped) or, for one input, alone."""
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [node.name for node in session.get_inputs()]
        feed = {name: data[_paired(name, data)] for name in names}
        return [np.asarray(value) for value in session.run(None, feed)]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()
    rows = []
    for index in range(SAMPLES):
        feed = {name: data[_paired(name, data)][index : index + 1].astype(d["dtype"]) for name, d in details.items()}
        rows.append([np.asarray(value) for _, value in sorted(runner(**feed).items())])
    return [np.concatenate(column) for column in zip(*rows, strict=True)]


def _paired(name: str, data: dict[str, np.ndarray]) -> str:
    if len(data) == 1:
        return next(iter(data))
    bare = name.split(":")[0].removeprefix("serving_default_")
    return bare if bare in data else next(key for key in data if bare.endswith(key) or key.endswith(bare))


def _judge(reference: list[np.ndarray], outputs: list[np.ndarray], noise: float) -> dict[str, Any]:
    """fp32 parity as edgeport's gates judge it (max_abs, or within FLOAT32_NOISE× the source's float32 spread
    `noise`), outputs paired by shape (the raw files rename them)."""
    if len(outputs) != len(reference):
        return {"status": "failed", "error": [f"{len(outputs)} outputs where Keras has {len(reference)}"]}
    worst = 0.0
    left = list(outputs)
    for expected in reference:
        same = [out for out in left if out.shape == expected.shape]
        if not same:
            return {"status": "failed", "error": [f"no output of shape {expected.shape}"]}
        best = min(same, key=lambda out: float(np.max(np.abs(out - expected))))
        left.remove(best)
        worst = max(worst, float(np.max(np.abs(best - expected))))
    within_noise = FP32_MAX_ABS < worst <= FLOAT32_NOISE * noise
    passed = worst <= FP32_MAX_ABS or within_noise
    return {"status": "passed" if passed else "failed", "max_abs": worst, "within_noise": within_noise}


def cell(result: dict[str, Any] | None, measure: str = "max_abs") -> str:
    """`✓ 7.2e-07`, `✗ cos 0.41`, `error`, with the rescue taken: fp32 columns show max_abs, int8 ones cosine."""
    if not result:
        return "-"
    status = result.get("status")
    mark = {"passed": "✓", "failed": "✗"}.get(status or "", "error")
    value = result.get(measure)
    text = mark if value is None else f"{mark} {value:.1e}" if measure == "max_abs" else f"{mark} cos {value:.3f}"
    if result.get("rescues"):
        text += f" ↻ {', '.join(result['rescues'])}"
    if result.get("within_noise") or "float32_noise" in (result.get("findings") or []):
        text += " ≈ float32 noise"
    return text


def table(rows: dict[str, dict[str, Any]]) -> str:
    import tensorflow as tf

    from pipeline.core.cpu import cpu_info, describe_cpu

    header = ["model", "seconds", *(f"edgeport {o}" for o in OUTPUTS), *(f"raw {r}" for r in RAW)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    totals = {column: 0 for column in [*OUTPUTS, *RAW]}
    for name, row in rows.items():
        if "error" in row:  # a constructor that refused its smallest input, or a backbone that would not build
            lines.append(f"| {name} | | {row['error']} |" + " |" * (len(header) - 3))
            continue
        cells = [name, f"{row.get('seconds', 0):.0f}"]
        for output in OUTPUTS:
            result = (row.get("edgeport") or {}).get(output)
            cells.append(cell(result, "cosine" if "int8" in output else "max_abs"))
            totals[output] += bool(result and result.get("status") == "passed")
        for raw in RAW:
            result = (row.get("raw") or {}).get(raw)
            cells.append(cell(result))
            totals[raw] += bool(result and result.get("status") == "passed")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| **passed** | | " + " | ".join(f"**{totals[c]}/{len(rows)}**" for c in [*OUTPUTS, *RAW]) + " |")
    versions = f"TensorFlow {tf.__version__}, Python {platform.python_version()}"
    return (
        "# The zoo, measured\n\n"
        f"Generated by `python scripts/zoo.py` ({len(rows)} models) on {describe_cpu(cpu_info())}; {versions}.\n"
        f"Random images: pixels in [0, 255] for {', '.join(sorted(RESCALING))} (which rescale their own inputs), "
        "in [0, 1) for the other Applications. "
        f"fp32 passes at max_abs <= {FP32_MAX_ABS:g} against Keras on {SAMPLES} samples, or within "
        f"{FLOAT32_NOISE:g}× the source's own float32 spread (`gates: {{float32_noise: {FLOAT32_NOISE:g}}}`; marked "
        "≈ float32 noise; raw files are judged the same way); int8 by edgeport's default gates (cosine 0.99, "
        "min_cosine 0.9), which random weights often miss. ↻ names the rescue edgeport took. "
        "Raw columns: the file the call wrote, run in LiteRT / onnxruntime against Keras.\n\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help="these models (default: all)")
    parser.add_argument("--work", type=Path, default=ROOT / "artifacts" / "zoo")
    parser.add_argument("--table", type=Path, default=ROOT / "docs" / "zoo.md")
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw:
        print(json.dumps(raw_calls(args.raw)))
        return 0
    names = args.only or [*APPLICATIONS, *SEQUENTIAL, *hub_backbones()]
    results_path = args.work / "results.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else {}
    for index, name in enumerate(names, 1):
        clock = time.perf_counter()
        print(f"[{index}/{len(names)}] {name}", file=sys.stderr, flush=True)
        folder = args.work / name
        try:
            inputs = build(name, folder)
        except Exception as error:  # a constructor that refuses its smallest input is a row too
            rows[name] = {"error": f"build failed: {str(error).splitlines()[0]}"}
            continue
        row: dict[str, Any] = {"edgeport": run_edgeport(name, folder, inputs)}
        raw = subprocess.run(
            [sys.executable, __file__, "--raw", str(folder)], capture_output=True, text=True, cwd=ROOT, check=False
        )
        row["raw"] = json.loads(raw.stdout) if raw.returncode == 0 else {r: {"status": "error"} for r in RAW}
        row["seconds"] = time.perf_counter() - clock
        rows[name] = row
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(rows, indent=1))
        print(f"    {name}: {', '.join(f'{k} {cell(v)}' for k, v in row['edgeport'].items())}", file=sys.stderr)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(table(rows))
    print(f"table: {args.table}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script: the package and scripts/ from this checkout
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
