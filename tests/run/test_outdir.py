"""Ownership of --out: a run removes or replaces only what its manifest proves it wrote, never follows a symlink
out of --out, never touches the source or data, and refuses an --out it cannot use before any stage runs.

Each case asserts the exit code, the message and what is on disk afterwards (files hashed before and after)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.artifacts import sha256_of
from pipeline.cli import main
from pipeline.run.outdir import MANIFEST

from ..recipes import recipe_file

FP32 = {"fp32": {"stages": ["tflite"]}}
RANDOM = {"evaluation": {"random": {"samples": 8}}}


def _run(capsys, recipe: Path, out: Path, code: int) -> str:
    result = main(["run", str(recipe), "--out", str(out), "--no-cache"])
    err = capsys.readouterr().err
    assert result == code, err
    assert "Traceback" not in err
    return err


def _refused_before_work(capsys, recipe: Path, out: Path) -> str:
    err = _run(capsys, recipe, out, 2)
    assert "tflite ..." not in err and len(err.strip().splitlines()) == 1, err  # no stage ran, one line
    return err


def test_a_source_where_an_output_is_published_is_refused_and_kept(zoo, tmp_path: Path, capsys) -> None:
    """The probe: `source: fp32/model.keras` with --out the recipe's folder deleted the source and said PASSED."""
    (tmp_path / "fp32").mkdir()
    source = tmp_path / "fp32" / "model.keras"
    shutil.copy(zoo.keras3, source)
    before = sha256_of(source)
    recipe = recipe_file(tmp_path, name="own", source="fp32/model.keras", data=RANDOM, outputs=FP32)
    err = _refused_before_work(capsys, recipe, tmp_path)
    assert f"the source model {source} lies where this run writes ({tmp_path / 'fp32'})" in err
    assert sha256_of(source) == before and not (tmp_path / "report.md").exists()


def test_a_data_file_inside_an_output_folder_is_refused(zoo, tmp_path: Path, capsys) -> None:
    (tmp_path / "fp32").mkdir()
    shutil.copy(zoo.digits_npz, tmp_path / "fp32" / "digits.npz")
    data = {"evaluation": {"npz": "fp32/digits.npz", "inputs": "x_test"}}
    recipe = recipe_file(tmp_path, name="own", source=zoo.keras3, data=data, outputs=FP32)
    assert "the data.evaluation file" in _refused_before_work(capsys, recipe, tmp_path)
    assert (tmp_path / "fp32" / "digits.npz").stat().st_size > 0


def test_an_out_inside_a_savedmodel_source_is_refused(zoo, tmp_path: Path, capsys) -> None:
    source = tmp_path / "sm"
    shutil.copytree(zoo.exported_savedmodel, source)
    recipe = recipe_file(tmp_path, name="own", source="sm", data=RANDOM, outputs=FP32)
    assert "inside the source model" in _refused_before_work(capsys, recipe, source / "out")


def test_a_symlinked_output_folder_is_refused_and_its_target_untouched(zoo, tmp_path: Path, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.important").write_text("keep me")
    (elsewhere / "model.tflite").write_bytes(b"the user's own file")
    out = tmp_path / "out"
    out.mkdir()
    (out / "fp32").symlink_to(elsewhere)
    recipe = recipe_file(tmp_path, name="own", source=zoo.keras3, data=RANDOM, outputs=FP32)
    assert "a symlink; edgeport writes each output into a real folder" in _refused_before_work(capsys, recipe, out)
    assert (elsewhere / "model.important").read_text() == "keep me"
    assert (elsewhere / "model.tflite").read_bytes() == b"the user's own file"


def test_files_edgeport_did_not_write_are_never_removed(zoo, tmp_path: Path, capsys) -> None:
    """A user's onnx/saved_model/ stops the run naming it; a model.important beside an output survives a run."""
    out = tmp_path / "out"
    (out / "onnx" / "saved_model").mkdir(parents=True)
    (out / "onnx" / "saved_model" / "saved_model.pb").write_bytes(b"user's")
    outputs = {**FP32, "onnx": {"stages": ["onnx"]}}
    recipe = recipe_file(tmp_path, name="own", source=zoo.keras3, data=RANDOM, outputs=outputs)
    err = _refused_before_work(capsys, recipe, out)
    assert f"{out / 'onnx' / 'saved_model'}: in the way, and not written by edgeport" in err
    assert (out / "onnx" / "saved_model" / "saved_model.pb").read_bytes() == b"user's"

    shutil.rmtree(out / "onnx")
    (out / "fp32").mkdir()
    (out / "fp32" / "model.important").write_text("keep me")
    _run(capsys, recipe, out, 0)
    assert (out / "fp32" / "model.important").read_text() == "keep me"
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert manifest == {
        "fp32/model.tflite": sha256_of(out / "fp32" / "model.tflite"),
        "onnx/model.onnx": sha256_of(out / "onnx" / "model.onnx"),
    }


def test_a_rerun_replaces_its_own_files_but_not_one_the_user_changed(zoo, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    recipe = recipe_file(tmp_path, name="own", source=zoo.keras3, data=RANDOM, outputs=FP32)
    _run(capsys, recipe, out, 0)
    _run(capsys, recipe, out, 0)  # its own file, proven by the manifest: replaced
    published = out / "fp32" / "model.tflite"
    published.write_bytes(published.read_bytes() + b"edited")
    err = _refused_before_work(capsys, recipe, out)
    assert f"{published}: in the way, and not written by edgeport (not in {MANIFEST} with its current hash)" in err
    assert published.read_bytes().endswith(b"edited")


def test_an_out_that_is_a_file_or_cannot_be_written_is_refused_before_any_stage(zoo, tmp_path: Path, capsys) -> None:
    recipe = recipe_file(tmp_path, name="own", source=zoo.keras3, data=RANDOM, outputs=FP32)
    regular = tmp_path / "a-file"
    regular.write_text("not a folder")
    assert "exists and is not a directory" in _refused_before_work(capsys, recipe, regular)
    assert regular.read_text() == "not a folder"
    # /proc takes no new folders, even from root (a chmod'ed folder would not stop root)
    assert "cannot write there" in _refused_before_work(capsys, recipe, Path("/proc/edgeport-out"))
