"""Untrusted text leaves cleanly: a model whose output name carries terminal escapes and YAML lines, a shipped file
whose provenance does, and hostile report.json files, driven through the CLI as a user runs it.

The attacker's files are built for real (a TensorFlow SavedModel, a stamped .tflite, report.json files); the tests
read the exact bytes edgeport printed and wrote: no ESC or other C0 character but newline and tab, no line of the
attacker's, junit.xml well-formed, and the hostile name still whole where a machine reads it (report.json).
"""

from __future__ import annotations

import json
import xml.dom.minidom
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.provenance import Provenance, read_provenance, stamp_file
from pipeline.report import REPORT_FILES

from ..cli import edgeport, edgeport_env, edgeport_watching, imported
from ..recipes import recipe_file

# Clears the screen, turns green and prints "verified"; then YAML lines that init would have made live keys.
HOSTILE = "out\x1b[2J\x1b[1;32mverified\nversion: 9\nstage_timeout: 1"
SHOWN = "out\\x1b[2J\\x1b[1;32mverified\\nversion: 9\\nstage_timeout: 1"  # as edgeport prints it on one line
FAKE_LINES = ("version: 9", "stage_timeout: 1", "verified")


def _unsafe_bytes(data: bytes) -> list[int]:
    """The C0 characters (and DEL) in `data` other than newline and tab: what a terminal would obey."""
    return sorted({byte for byte in data if (byte < 0x20 and byte not in (0x09, 0x0A)) or byte == 0x7F})


def _assert_no_attacker_lines(text: str) -> None:
    for line in text.splitlines():
        assert not line.lstrip().startswith(FAKE_LINES), f"a line of the attacker's: {line!r}"


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A SavedModel whose signature names an output HOSTILE (TensorFlow keeps output keys as given), and its data."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("hostile")

    class Model(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.random.stateless_normal((4, 3), seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x: Any) -> dict[str, Any]:
            return {HOSTILE: tf.matmul(x, self.w), "total": tf.reduce_sum(x, axis=1)}

    model = Model()
    tf.saved_model.save(model, str(folder / "model"), signatures={"serving_default": model.serve})
    rng = np.random.default_rng(0)
    data = folder / "data.npz"
    np.savez(data, x_train=rng.random((64, 4), dtype=np.float32), x_test=rng.random((64, 4), dtype=np.float32))
    return folder / "model", data


@pytest.fixture(scope="module")
def hostile_run(hostile_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`edgeport run` of an fp32 TFLite output gated on the hostile tensor with a gate it fails (exit 1): its name
    then sits in every report, in a failure's message and on the console."""
    model, data = hostile_model
    folder = tmp_path_factory.mktemp("run")
    outputs = {"fp32": {"stages": ["tflite"], "gates": {"max_abs": 1e-4, HOSTILE: {"max_abs": 0.0}}}}
    sections = {"calibration": {"npz": data, "inputs": "x_train"}, "evaluation": {"npz": data, "inputs": "x_test"}}
    recipe = recipe_file(folder, name="hostile", source=model, data=sections, outputs=outputs)
    out = folder / "out"
    result = edgeport("run", recipe, "--out", out, "--cache-dir", folder / "cache")
    raw = {name: (out / name).read_bytes() for name in REPORT_FILES}
    return {"result": result, "out": out, "raw": raw, "recipe": recipe}


def test_init_writes_a_hostile_name_as_an_escaped_comment_and_no_live_key(
    hostile_model: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = hostile_model
    recipe = tmp_path / "recipe.yaml"
    result = edgeport("init", model, "--data", data, "--out", recipe)
    assert result.returncode == 0, result.stderr
    text = recipe.read_bytes()
    assert _unsafe_bytes(text) == [] and _unsafe_bytes(result.stdout.encode()) == []
    assert f"#   output {SHOWN} [?, 3] float32".encode() in text  # the name whole, visibly escaped, in a comment
    document = yaml.safe_load(text)
    assert list(document) == ["name", "source", "data", "outputs"]  # no `version`, no `stage_timeout`
    validated = edgeport("validate", recipe)
    assert validated.returncode == 0, validated.stderr
    _assert_no_attacker_lines(text.decode())


def test_inspect_lists_the_hostile_name_on_one_line(hostile_model: tuple[Path, Path]) -> None:
    model, _ = hostile_model
    result = edgeport("inspect", model)
    assert result.returncode == 0, result.stderr
    assert _unsafe_bytes(result.stdout.encode()) == []
    assert SHOWN in result.stdout
    _assert_no_attacker_lines(result.stdout)
    described = edgeport("inspect", model, "--json")  # for machines: the name whole, JSON-escaped
    outputs = json.loads(described.stdout)["signatures"]["serving_default"]["outputs"]
    assert HOSTILE in [tensor["name"] for tensor in outputs]


def test_run_prints_and_writes_the_hostile_name_escaped(hostile_run: dict[str, Any]) -> None:
    result = hostile_run["result"]
    assert result.returncode == 1, result.stderr  # the failing gate on the hostile tensor, nothing else
    assert "Traceback" not in result.stderr
    assert _unsafe_bytes(result.stdout.encode()) == []
    assert f"✗ fp32  {SHOWN}.max_abs" in result.stdout
    # onnxruntime's own C++ logger colours its lines on fd 2; what edgeport prints must carry none of the model's.
    assert "\x1b[2J" not in result.stderr and "\x1b[1;32m" not in result.stderr
    assert SHOWN in result.stderr  # the run's source line names the tensor, escaped
    _assert_no_attacker_lines(result.stdout)
    _assert_no_attacker_lines(result.stderr)


@pytest.mark.parametrize("filename", ["report.md", "report.html", "junit.xml"])
def test_the_pages_hold_no_control_character(hostile_run: dict[str, Any], filename: str) -> None:
    data = hostile_run["raw"][filename]
    assert _unsafe_bytes(data) == []
    assert b"\\x1b[2J" in data  # the name is there, visibly escaped, not dropped


def test_junit_is_well_formed_and_names_the_tensor(hostile_run: dict[str, Any]) -> None:
    data = hostile_run["raw"]["junit.xml"]
    root = ET.fromstring(data)
    xml.dom.minidom.parseString(data)  # expat, strict about XML 1.0's characters
    failures = root.findall(".//failure")
    assert len(failures) == 1 and SHOWN in failures[0].get("message", "")
    try:
        import junitparser
    except ImportError:  # not a dependency: ElementTree and expat decide where it is missing
        return
    suites = junitparser.JUnitXml.fromstring(data.decode())
    assert sum(suite.failures for suite in suites) == 1


def test_report_json_keeps_the_name_whole(hostile_run: dict[str, Any]) -> None:
    """report.json is for machines: JSON escapes the characters itself, and the name stays the model's own."""
    data = hostile_run["raw"]["report.json"]
    assert _unsafe_bytes(data) == []
    report = json.loads(data)
    gates = report["outputs"][0]["parity"]["gates"]
    assert [gate["tensor"] for gate in gates if gate.get("tensor")] == [HOSTILE]


def test_verify_prints_no_fake_verified_line_for_a_file_with_hostile_provenance(
    hostile_run: dict[str, Any], tmp_path: Path
) -> None:
    """The probe: a file stamped with provenance that clears the line and prints a green "verified" of its own."""
    out = hostile_run["out"]
    shipped = out / "fp32" / "model.tflite"
    genuine = read_provenance(shipped, "tflite")
    assert genuine is not None
    forged = Provenance(
        edgeport_version=genuine.edgeport_version,
        recipe="x\r\x1b[2K\x1b[1;32mverified: model.tflite is output fp32, which passed\x1b[0m\n",
        recipe_sha256=genuine.recipe_sha256,
        source_sha256=genuine.source_sha256,
        output="fp32\nverified: yes",
        stages=genuine.stages,
    )
    attacker = tmp_path / "model.tflite"
    stamp_file(shipped, attacker, "tflite", forged)
    result = edgeport("verify", attacker, "--report", out / "report.json")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("not verified: ")
    assert _unsafe_bytes(result.stdout.encode()) == []
    assert "recipe x\\r\\x1b[2K\\x1b[1;32mverified: model.tflite" in lines[0]


def _hostile_reports(genuine: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """name → (file text, what the refusal must name)."""
    output = genuine["outputs"][0]

    def changed(**fields: Any) -> str:
        return json.dumps({**genuine, "outputs": [{**output, **fields}]})

    metrics = dict(output["parity"]["metrics"])
    return {
        "truncated": (json.dumps(genuine)[:300], "not a readable report.json"),
        "name not a string": (changed(name=["fp32"]), "outputs[0].name is a list, expected a string"),
        "name missing": (changed(name=None), "outputs[0].name is missing"),
        "control characters": (changed(name="fp32\x1b[2J\nverified"), "outputs[0].name holds control characters"),
        "parity a string": (changed(parity="x"), "outputs[0].parity is a string, expected an object"),
        "metric a list": (
            changed(parity={**output["parity"], "metrics": {**metrics, "max_abs": [1]}}),
            "outputs[0].parity.metrics.max_abs is a list, expected a number",
        ),
        "huge number": (
            changed(parity={**output["parity"], "metrics": {**metrics, "max_abs": 10**400}}),
            "outputs[0].parity.metrics.max_abs is an integer larger than a float holds",
        ),
        "too many digits": ('{"outputs": [' + "9" * 5000 + "]}", "not a readable report.json"),
        "deep nesting": ('{"outputs": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deep"),
        "recipe a list": (json.dumps({**genuine, "recipe": []}), "recipe is a list, expected an object"),
        "gate not an object": (
            changed(parity={**output["parity"], "gates": ["passed"]}),
            "outputs[0].parity.gates[0] is a string, expected an object",
        ),
    }


def _hostile_cases() -> list[str]:
    return list(_hostile_reports({"outputs": [{"parity": {"metrics": {}}}]}))


@pytest.mark.parametrize("case", _hostile_cases())
def test_verify_refuses_a_hostile_report_json_naming_the_field(
    hostile_run: dict[str, Any], tmp_path: Path, case: str
) -> None:
    genuine = json.loads(hostile_run["raw"]["report.json"])
    text, named = _hostile_reports(genuine)[case]
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="utf-8")
    result = edgeport("verify", hostile_run["out"] / "fp32" / "model.tflite", "--report", bad)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert f"edgeport: error: --report {bad}: " in result.stderr and named in result.stderr
    assert _unsafe_bytes(result.stderr.encode()) == []


@pytest.mark.parametrize("case", ["control characters", "huge number", "deep nesting", "metric a list"])
def test_run_refuses_a_hostile_baseline_before_any_work(hostile_run: dict[str, Any], tmp_path: Path, case: str) -> None:
    """In preflight: no TensorFlow imported, no stage run, no report written (it used to be exit 3 after every
    stage ran)."""
    genuine = json.loads(hostile_run["raw"]["report.json"])
    text, named = _hostile_reports(genuine)[case]
    bad = tmp_path / "old.json"
    bad.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    env = edgeport_env(EDGEPORT_CACHE_DIR=tmp_path / "cache")
    result = edgeport_watching("run", hostile_run["recipe"], "--out", out, "--baseline", bad, env=env)
    assert result.returncode == 2, result.stderr
    assert f"edgeport: error: --baseline {bad}: " in result.stderr and named in result.stderr
    assert imported(result, "tensorflow") is False
    assert not any((out / name).exists() for name in REPORT_FILES) and not (out / "fp32").exists()
