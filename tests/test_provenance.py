"""Provenance: every shipped .tflite and .onnx says which recipe, source and edgeport made it, read back through the
formats' own libraries; LiteRT and onnxruntime run the stamped files as before; `verify` tells a file a report passed
from any other; `inspect` shows it; a new recipe version re-stamps cached conversions."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import __version__
from pipeline.artifacts import sha256_of
from pipeline.cli import main
from pipeline.errors import RecipeError
from pipeline.provenance import git_state, read_provenance, serialized_tflite, stamp_file
from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe
from pipeline.run.cache import Cache, default_cache_dir

from .recipes import digits_data, recipe_file, write_recipe

GIT = shutil.which("git")
OUTPUTS = {
    "fp32": {"stages": ["tflite"]},
    "int8": {"stages": [{"tflite": {"quantize": "int8"}}], "gates": {"max_abs": 1.0e-9}},  # fails: a gated-out file
    "onnx": {"stages": [{"onnx": {"opset": 17}}]},
}


@dataclass
class Shipped:
    recipe: Path
    out: Path
    report: dict[str, Any]
    commit: str | None

    def output(self, name: str) -> dict[str, Any]:
        return next(output for output in self.report["outputs"] if output["name"] == name)

    def file(self, name: str) -> Path:
        return self.out / self.output(name)["artifact"]

    def built(self, name: str) -> Path:
        """The conversion as the cache holds it: unstamped."""
        hit = Cache(default_cache_dir()).get_artifact(self.output(name)["stages"][-1]["key"])
        assert hit is not None
        return hit.artifact.path


def _git(directory: Path, *arguments: str) -> str:
    command = [GIT or "git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@example.com", *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def _run(recipe: Path, out: Path) -> dict[str, Any]:
    return run_recipe(load_recipe(recipe), RunOptions(out_dir=out, isolate=False), lambda line: None)


@pytest.fixture(scope="module")
def shipped(zoo, tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    """One run of a recipe committed to a git work tree: fp32 and onnx pass, int8 fails its gate."""
    root = tmp_path_factory.mktemp("provenance")
    data = digits_data(zoo, limit=100)
    recipe = recipe_file(root, name="prov", version="1.4.0", source=zoo.keras3, data=data, outputs=OUTPUTS)
    commit = None
    if GIT is not None:
        _git(root, "init", "-q")
        _git(root, "add", "recipe.yaml")
        _git(root, "commit", "-q", "-m", "recipe")
        commit = _git(root, "rev-parse", "HEAD")
    out = root / "out"  # inside the work tree, untracked: the second of two runs must not count as dirty
    return Shipped(recipe, out, _run(recipe, out), commit)


def _expected(shipped: Shipped, zoo, output: str, stages: str) -> dict[str, str]:
    expected = {
        "edgeport.version": __version__,
        "edgeport.recipe": "prov",
        "edgeport.recipe_sha256": sha256_of(shipped.recipe),
        "edgeport.source_sha256": sha256_of(zoo.keras3),
        "edgeport.output": output,
        "edgeport.stages": stages,
        "edgeport.model_version": "1.4.0",
    }
    if shipped.commit is not None:
        expected |= {"edgeport.git_commit": shipped.commit, "edgeport.git_dirty": "false"}
    return expected


def test_onnx_metadata_props_read_back_through_onnx(shipped: Shipped, zoo) -> None:
    import onnx
    import onnxruntime

    model = onnx.load(shipped.file("onnx"))
    props = {entry.key: entry.value for entry in model.metadata_props}
    assert props == _expected(shipped, zoo, "onnx", "onnx opset=17")
    assert model.producer_name == "tf2onnx"  # the converter's own record is kept
    assert not onnx.load(shipped.built("onnx")).metadata_props  # the cache holds the conversion as built
    x = zoo.x_test[:64]
    stamped, built = (onnxruntime.InferenceSession(str(path)) for path in (shipped.file("onnx"), shipped.built("onnx")))
    np.testing.assert_array_equal(stamped.run(None, {"pixels": x})[0], built.run(None, {"pixels": x})[0])


def test_tflite_metadata_reads_back_through_the_flatbuffer_schema(shipped: Shipped, zoo) -> None:
    from tensorflow.lite.python import schema_py_generated as schema  # TensorFlow's copy, not the one edgeport uses

    data = shipped.file("fp32").read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    assert {"min_runtime_version", "CONVERSION_METADATA", "edgeport"} <= set(entries)  # the converter's are kept
    payload = model.Buffers(entries["edgeport"]).DataAsNumpy().tobytes()
    assert json.loads(payload) == _expected(shipped, zoo, "fp32", "tflite")
    for index in range(model.BuffersLength()):  # weights stay 16-byte aligned, as the converter writes them
        buffer = model.Buffers(index)
        if buffer.DataLength():
            assert buffer._tab.Vector(buffer._tab.Offset(4)) % 16 == 0
    assert model.SignatureDefsLength() == 1


@pytest.mark.parametrize("output", ["fp32", "int8"])
def test_litert_runs_the_stamped_file_by_signature_bit_for_bit(shipped: Shipped, zoo, output: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    results = []
    for path in (shipped.file(output), shipped.built(output)):
        interpreter = Interpreter(model_path=str(path))
        assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["pixels"], "outputs": ["output_0"]}}
        runner = interpreter.get_signature_runner()
        results.append(runner(pixels=zoo.x_test[:1])["output_0"])
    assert np.array_equal(results[0], results[1])
    assert shipped.file(output).read_bytes() != shipped.built(output).read_bytes()


def test_the_report_records_the_shipped_file_and_its_provenance(shipped: Shipped) -> None:
    assert shipped.report["recipe"]["version"] == "1.4.0"
    for name in OUTPUTS:
        output = shipped.output(name)
        assert output["sha256"] == sha256_of(shipped.file(name)) != sha256_of(shipped.built(name))
        provenance = read_provenance(shipped.file(name))
        assert provenance is not None and output["provenance"] == provenance.to_json()
    assert [shipped.output(name)["status"] for name in OUTPUTS] == ["passed", "failed", "passed"]


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_verify_tells_a_gated_file_from_any_other(shipped: Shipped, tmp_path: Path, capsys) -> None:
    report = shipped.out / "report.json"
    for name in ("fp32", "onnx"):
        code, out, _ = _cli(capsys, "verify", shipped.file(name), "--report", report)
        assert code == 0 and f"is output {name} of {report} (recipe prov), which passed" in out
        assert "prov (version 1.4.0)" in out
    code, out, _ = _cli(capsys, "verify", shipped.file("int8"), "--report", report)
    assert code == 1 and "is output int8" in out and "which failed (max_abs" in out
    # The same model under another version: a valid file, not the one the report passed.
    restamped = tmp_path / "restamped.tflite"
    provenance = read_provenance(shipped.file("fp32"))
    assert provenance is not None
    stamp_file(shipped.file("fp32"), restamped, "tflite", replace(provenance, model_version="9"))
    code, out, _ = _cli(capsys, "verify", restamped, "--report", report)
    assert code == 1 and "is no output of" in out
    assert f"which shipped as sha256 {shipped.output('fp32')['sha256']}: the file changed after edgeport made it" in out
    code, out, _ = _cli(capsys, "verify", shipped.built("onnx"), "--report", report)  # unstamped: the cache's copy
    assert code == 1 and "it carries no edgeport provenance" in out


def test_verify_bad_input_exits_2_with_one_line(shipped: Shipped, tmp_path: Path, capsys) -> None:
    report, model = shipped.out / "report.json", shipped.file("fp32")
    (tmp_path / "list.json").write_text("[1, 2]")
    cases = [
        ((tmp_path / "missing.tflite", report), "missing.tflite: no such file"),
        ((shipped.recipe, report), "recipe.yaml: neither a TFLite flatbuffer nor an ONNX model"),
        ((shipped.out / "fp32", report), "fp32 is a folder; expected a .tflite or .onnx file"),
        ((model, tmp_path / "none.json"), "--report .*none.json: no such file"),
        ((model, shipped.recipe), "--report .*recipe.yaml: not a readable report.json"),
        ((model, tmp_path / "list.json"), "--report .*list.json: not an edgeport report.json"),
    ]
    for (file, given), message in cases:
        code, out, err = _cli(capsys, "verify", file, "--report", given)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith("edgeport: error: ")
        assert re.search(message, err), err


def test_inspect_shows_the_provenance(shipped: Shipped, zoo, capsys) -> None:
    code, out, _ = _cli(capsys, "inspect", shipped.file("int8"))
    assert code == 0 and "  provenance\n" in out
    assert "    output            int8\n" in out and "    model_version     1.4.0\n" in out
    assert "    stages            tflite int8\n" in out
    code, out, _ = _cli(capsys, "inspect", "--json", shipped.file("onnx"))
    described = json.loads(out)
    assert described["provenance"] == shipped.output("onnx")["provenance"]
    assert described["provenance"]["stages"] == ["onnx opset=17"] and described["provenance"]["recipe"] == "prov"
    code, out, _ = _cli(capsys, "inspect", "--json", shipped.built("onnx"))
    assert code == 0 and json.loads(out)["provenance"] is None
    code, out, _ = _cli(capsys, "inspect", shipped.built("fp32"))
    assert "  provenance  none (not stamped by edgeport)" in out


def test_a_new_version_restamps_cached_conversions(shipped: Shipped, zoo, tmp_path: Path) -> None:
    """Outside a git work tree, under another version: every conversion a cache hit, every file stamped anew."""
    text = shipped.recipe.read_text().replace("version: 1.4.0", "version: 1.5.0")
    assert text != shipped.recipe.read_text()
    recipe = write_recipe(tmp_path, text)
    report = _run(recipe, tmp_path / "out")
    for output in report["outputs"]:
        assert [stage["cache"] for stage in output["stages"]] == ["hit"]
        assert output["sha256"] != shipped.output(output["name"])["sha256"]
        provenance = output["provenance"]
        assert provenance["model_version"] == "1.5.0" and provenance["recipe_sha256"] == sha256_of(recipe)
        assert "git_commit" not in provenance and "git_dirty" not in provenance  # not in a work tree
    assert [output["status"] for output in report["outputs"]] == ["passed", "failed", "passed"]


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_git_state_counts_tracked_changes_only(tmp_path: Path) -> None:
    assert git_state(tmp_path) is None  # not a work tree
    _git(tmp_path, "init", "-q")
    assert git_state(tmp_path) is None  # no commit yet
    write_recipe(tmp_path, "name: a\n")
    _git(tmp_path, "add", "recipe.yaml")
    _git(tmp_path, "commit", "-q", "-m", "a")
    commit = _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.tflite").write_bytes(b"x")
    assert git_state(tmp_path) == (commit, False)
    write_recipe(tmp_path, "name: b\n")
    assert git_state(tmp_path) == (commit, True)


def test_data_past_the_flatbuffer_is_kept(shipped: Shipped, zoo, tmp_path: Path) -> None:
    """A file whose weights lie past the flatbuffer (`offset`/`size` buffers, as models over 2 GB are stored) is
    stamped with its weights placed past the new flatbuffer, and LiteRT runs it the same."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    built = shipped.built("fp32").read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(built), 0)
    sizes = [0 if buffer.data is None else buffer.data.size for buffer in model.buffers]
    largest = sizes.index(max(sizes))
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(serialized_tflite(model, {largest: model.buffers[largest].data.tobytes()}))
    stamped = tmp_path / "stamped.tflite"
    provenance = read_provenance(shipped.file("fp32"))
    assert provenance is not None
    stamp_file(outside, stamped, "tflite", provenance)
    assert read_provenance(stamped) == provenance
    packed = schema.Model.GetRootAs(stamped.read_bytes(), 0).Buffers(largest)
    assert packed.DataLength() == 0 and packed.Offset() % 16 == 0 and packed.Size() > 1000
    results = []
    for path in (shipped.built("fp32"), outside, stamped):
        runner = Interpreter(model_path=str(path)).get_signature_runner()
        results.append(runner(pixels=zoo.x_test[:8])["output_0"])
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


@pytest.mark.parametrize(
    ("value", "found"),
    [('"1.4.0"', "1.4.0"), ("1.0.0-rc.1+build.5", "1.0.0-rc.1+build.5"), ("v2", "v2"), (None, None)],
)
def test_recipe_version_is_text(tmp_path: Path, value: str | None, found: str | None) -> None:
    line = "" if value is None else f"version: {value}\n"
    recipe = write_recipe(tmp_path, f"name: a\n{line}source: m.keras\noutputs:\n  o: {{stages: [tflite]}}\n")
    assert load_recipe(recipe, check_files=False).spec.version == found


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.10", r"version was read as the number 1\.1: quote it as written"),
        ("2", "version was read as the number 2"),
        ('"two words"', "version \\(line 2\\): String should match pattern"),
        ('""', "String should match pattern"),
        ("true", "Input should be a valid string"),
    ],
)
def test_recipe_version_refused(tmp_path: Path, value: str, message: str) -> None:
    text = f"name: a\nversion: {value}\nsource: m.keras\noutputs:\n  o: {{stages: [tflite]}}\n"
    recipe = write_recipe(tmp_path, text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe, check_files=False)


def test_restamping_an_onnx_file_replaces_its_entries_and_keeps_everything_else(
    shipped: Shipped, tmp_path: Path
) -> None:
    """The stamp edits the protobuf at the wire level (no onnx import on a warm run): what onnx parses back is the
    same model with the new entries, a user's own metadata kept, and anything but a model refused."""
    import onnx

    from pipeline.errors import ModelError

    model = onnx.load(shipped.file("onnx"))
    model.metadata_props.add(key="team", value="vision")
    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(model.SerializeToString())
    provenance = read_provenance(shipped.file("onnx"), "onnx")
    assert provenance is not None
    again = replace(provenance, model_version="2.0")
    stamp_file(theirs, tmp_path / "again.onnx", "onnx", again)
    restamped = onnx.load(tmp_path / "again.onnx")
    props = {entry.key: entry.value for entry in restamped.metadata_props}
    assert props["team"] == "vision" and props["edgeport.model_version"] == "2.0"
    assert sum(entry.key.startswith("edgeport.") for entry in restamped.metadata_props) == len(again.file_fields())
    del restamped.metadata_props[:], model.metadata_props[:]
    assert restamped == model  # every other field as it was
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07" + b"\xff" * 40)
    with pytest.raises(ModelError, match="not an ONNX model"):
        stamp_file(tmp_path / "junk.onnx", tmp_path / "out.onnx", "onnx", again)
