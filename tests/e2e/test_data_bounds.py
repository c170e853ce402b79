"""Data files others wrote, taken at their word nowhere: sizes are bounded before anything is allocated or written,
only regular files are opened, a cast that changes a value and a label no class can hold are named. Each case exits
2 with one line naming the culprit, and leaves no report (nor a large temporary file) behind.
"""

from __future__ import annotations

import os
import re
import resource
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main

from ..cli import edgeport, edgeport_env
from ..recipes import recipe_file

# A child writing a file past this is killed by SIGXFSZ: what "nothing large was written" is measured with.
FILE_SIZE_CAP = 8 * 2**20


def _recipe(zoo, directory: Path, evaluation: dict, **sections: dict) -> Path:
    data = {"evaluation": evaluation, **sections}
    return recipe_file(directory, name="bounds", source=zoo.keras3, outputs={"fp32": {"stages": ["tflite"]}}, data=data)


def _exit_2_in_process(recipe: Path, pattern: str, capsys: pytest.CaptureFixture[str]) -> str:
    out = recipe.parent / "out"
    code = main(["run", str(recipe), "--out", str(out), "--no-cache"])
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("edgeport: error:")]
    assert code == 2, stderr
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert re.search(pattern, errors[0]), errors[0]
    assert not (out / "report.json").exists()
    return errors[0]


def _edgeport_capped(*args: str | Path, tmpdir: Path, timeout: float = 300, **env: str):
    """`edgeport ARGS` in a child that may write no file over FILE_SIZE_CAP, with TMPDIR at `tmpdir`."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_CAP, FILE_SIZE_CAP))

    tmpdir.mkdir(exist_ok=True)
    return edgeport(*args, env=edgeport_env(TMPDIR=tmpdir, **env), timeout=timeout, preexec_fn=cap)


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A version 1.0 .npy header, written by hand: np.save cannot write a shape no array can have."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    padding = 64 - (10 + len(text) + 1) % 64
    text += " " * padding + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


# --- sizes -------------------------------------------------------------------------------------------------------


def test_a_header_whose_size_wraps_int64_is_refused_by_its_sizes(zoo, tmp_path: Path, capsys) -> None:
    # 2**61 * 64 values * 4 bytes = 2**69: numpy's int64 product wraps round to 0, which "fits" in any file.
    (tmp_path / "wrap.npy").write_bytes(_npy_header((2**61, 8, 8, 1)) + bytes(256))
    recipe = _recipe(zoo, tmp_path, {"npy": tmp_path / "wrap.npy"})
    message = _exit_2_in_process(
        recipe,
        r"data\.evaluation\.npy: .*wrap\.npy is not a readable \.npy \(it holds 256 bytes of data where shape "
        r"\[2305843009213693952, 8, 8, 1\] float32 needs 590295810358705651712\)",
        capsys,
    )
    assert "internal error" not in message

    # The same header as an npz member read in place (np.savez's layout).
    with zipfile.ZipFile(tmp_path / "wrap.npz", "w") as archive:
        archive.writestr("x.npy", _npy_header((2**61, 8, 8, 1)) + bytes(256))
    recipe = _recipe(zoo, tmp_path, {"npz": tmp_path / "wrap.npz", "inputs": "x"})
    _exit_2_in_process(
        recipe, r"cannot read 'x' from wrap\.npz \(it holds 256 bytes .* needs 590295810358705651712", capsys
    )


def test_a_negative_dimension_is_refused(zoo, tmp_path: Path, capsys) -> None:
    (tmp_path / "negative.npy").write_bytes(_npy_header((-5, 8, 8, 1)) + bytes(256))
    recipe = _recipe(zoo, tmp_path, {"npy": tmp_path / "negative.npy"})
    _exit_2_in_process(recipe, r"negative\.npy is not a readable \.npy \(shape \[-5, 8, 8, 1\] has a dimension", capsys)


def test_a_compressed_member_over_the_inflate_limit_writes_nothing(zoo, tmp_path: Path) -> None:
    # 2 MiB of zeros in a file of a few KiB; a limit of 1 MiB stands for the default 64 GiB.
    np.savez_compressed(tmp_path / "bomb.npz", x=np.zeros((8192, 8, 8, 1), np.float32))
    assert (tmp_path / "bomb.npz").stat().st_size < 16 * 2**10
    recipe = _recipe(zoo, tmp_path, {"npz": tmp_path / "bomb.npz", "inputs": "x"})
    spill = tmp_path / "tmp"
    result = _edgeport_capped("run", recipe, "--out", tmp_path / "out", tmpdir=spill, EDGEPORT_INFLATE_LIMIT="1048576")
    assert result.returncode == 2, result.stderr
    assert re.search(
        r"edgeport: error: data\.evaluation: cannot read 'x' from bomb\.npz \(inflating it needs 2097280 bytes "
        r"\(shape \[8192, 8, 8, 1\] float32\); the zip entry declares 2097280 bytes, compressed to \d+, over the "
        r"limit of 1048576 \(EDGEPORT_INFLATE_LIMIT\)\)",
        result.stderr,
    ), result.stderr
    assert not (tmp_path / "out" / "report.json").exists()
    assert sum(path.stat().st_size for path in spill.rglob("*") if path.is_file()) < 2**20


def _zip64_bomb(path: Path, shape: tuple[int, ...]) -> int:
    """An npz of one deflated member whose zip64 entry declares the size of `shape`'s data, holding only its header
    and a few zeros: a file of a few hundred bytes that says it inflates to terabytes. The declared size."""
    header = _npy_header(shape)
    declared = len(header) + 4 * int(np.prod(shape, dtype=object))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(header + bytes(4096)) + compressor.flush()
    name, crc = b"x.npy", zlib.crc32(header)
    extra = struct.pack("<HHQQ", 1, 16, declared, len(data))
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 45, 0, 8, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra))
    central = struct.pack(
        "<4s6H3I5H2I", b"PK\x01\x02", 45, 45, 0, 8, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0,
        0, 0,
    )  # fmt: skip
    body = local + name + extra + data
    directory = central + name + extra
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), len(body), 0)
    path.write_bytes(body + directory + end)
    return declared


def test_a_crafted_zip_declaring_terabytes_is_refused_by_free_space(zoo, tmp_path: Path) -> None:
    declared = _zip64_bomb(tmp_path / "tera.npz", (2**40, 8, 8, 1))  # 256 TiB of float32
    with zipfile.ZipFile(tmp_path / "tera.npz") as archive:  # a zip Python reads, with that size in its entry
        assert archive.getinfo("x.npy").file_size == declared
    recipe = _recipe(zoo, tmp_path, {"npz": tmp_path / "tera.npz", "inputs": "x"})
    spill = tmp_path / "tmp"
    no_limit = str(2**62)  # past the limit, the free space under TMPDIR still bounds what is inflated
    result = _edgeport_capped("run", recipe, "--out", tmp_path / "out", tmpdir=spill, EDGEPORT_INFLATE_LIMIT=no_limit)
    assert result.returncode == 2, result.stderr
    assert re.search(
        rf"data\.evaluation: cannot read 'x' from tera\.npz \(inflating it needs {declared} bytes \(shape "
        rf"\[1099511627776, 8, 8, 1\] float32\); the zip entry declares {declared} bytes, compressed to \d+, where "
        rf"{re.escape(str(spill))} has \d+ bytes free \(set TMPDIR\)\)",
        result.stderr,
    ), result.stderr
    assert sum(path.stat().st_size for path in spill.rglob("*") if path.is_file()) < 2**20

    # Under the default limit (64 GiB) the limit says no first.
    result = _edgeport_capped("run", recipe, "--out", tmp_path / "out", tmpdir=spill)
    assert result.returncode == 2 and f"over the limit of {64 * 2**30} (EDGEPORT_INFLATE_LIMIT)" in result.stderr


def test_a_member_inflates_only_what_its_header_needs(tmp_path: Path) -> None:
    """Junk after a compressed member's data is never written out (the zip entry may declare gigabytes of it)."""
    from pipeline.core.stored import open_npz

    x = np.arange(20 * 64, dtype=np.float32).reshape(20, 8, 8, 1)
    np.save(tmp_path / "x.npy", x)
    with zipfile.ZipFile(tmp_path / "junk.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", (tmp_path / "x.npy").read_bytes() + bytes(4 * 2**20))
    array = open_npz(tmp_path / "junk.npz")["x"]()
    np.testing.assert_array_equal(np.asarray(array), x)
    assert os.fstat(array._file.fd).st_size == (tmp_path / "x.npy").stat().st_size  # the spill: header and data


# --- regular files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_as_data_is_refused_before_it_is_opened(zoo, tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        path = tmp_path / "pipe.npz"
        os.mkfifo(path)
        what = "a FIFO"
    else:
        path, what = Path("/dev/zero"), "a character device"
    # data.validation: the section `fallback: auto` chooses its file on (the run's recipe checks or its data
    # loading refuse it, whichever comes first; compare below has only the data loading).
    sections = {"calibration": {"npz": zoo.digits_npz, "inputs": "x_train", "limit": 16}}
    sections["validation"] = {"npz": path, "inputs": "x"}
    evaluation = {"npz": zoo.digits_npz, "inputs": "x_test"}
    outputs = {"int8": {"stages": [{"tflite": {"quantize": "int8", "fallback": "auto"}}]}}
    recipe = recipe_file(
        tmp_path, name="pipe", source=zoo.keras3, outputs=outputs, data={"evaluation": evaluation, **sections}
    )
    result = _edgeport_capped("run", recipe, "--out", tmp_path / "out", tmpdir=tmp_path / "tmp", timeout=240)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeport: error:")]
    assert len(errors) == 1 and re.search(rf"data\.validation\.npz: (.*/)?{path.name} is {what}", errors[0]), errors
    assert not (tmp_path / "out" / "report.json").exists()
    # compare reads --data through the same check.
    result = _edgeport_capped(
        "compare", zoo.keras3, zoo.keras3, "--data", path, "--inputs", "x", tmpdir=tmp_path / "tmp"
    )
    assert result.returncode == 2 and f"data.evaluation.npz: {path} is {what}" in result.stderr, result.stderr


def test_validate_names_a_fifo_as_a_fifo(zoo, tmp_path: Path, capsys) -> None:
    os.mkfifo(tmp_path / "pipe.npz")
    recipe = _recipe(zoo, tmp_path, {"npz": tmp_path / "pipe.npz", "inputs": "x"})
    assert main(["validate", str(recipe)]) == 2
    assert "pipe.npz is a FIFO" in capsys.readouterr().err


# --- casts --------------------------------------------------------------------------------------------------------


def test_a_cast_that_changes_a_value_is_named_unless_cast_is_true(zoo, tmp_path: Path, capsys) -> None:
    pixels = np.tile(np.arange(64, dtype=np.int64).reshape(1, 8, 8, 1), (40, 1, 1, 1))
    pixels[33, 2, 5, 0] = 2**24 + 1
    np.savez(tmp_path / "ints.npz", x=pixels, exact=pixels.clip(0, 2**24))
    lossy = {"npz": tmp_path / "ints.npz", "inputs": "x"}
    _exit_2_in_process(
        _recipe(zoo, tmp_path, lossy),
        r"data\.evaluation: input 'pixels' is int64 and sample 33 holds 16777217, which float32 \(the model's dtype\) "
        r"reads as 16777216\.0: give float32 data, or accept the loss with cast: true in data\.evaluation",
        capsys,
    )
    _exit_2_in_process(
        _recipe(zoo, tmp_path, {"npz": zoo.digits_npz, "inputs": "x_test"}, calibration=lossy),
        r"data\.calibration: input 'pixels' is int64 and sample 33 holds 16777217",
        capsys,
    )
    # Integers float32 holds exactly pass; cast: true accepts the lossy ones (compare: --cast).
    data = ["--data", tmp_path / "ints.npz", "--inputs"]
    spill = tmp_path / "tmp"
    exact = _edgeport_capped("compare", zoo.keras3, zoo.keras3, *data, "exact", "--gate", "max_abs=0", tmpdir=spill)
    assert exact.returncode == 0, exact.stderr
    refused = _edgeport_capped("compare", zoo.keras3, zoo.keras3, *data, "x", tmpdir=spill)
    assert refused.returncode == 2 and "sample 33 holds 16777217" in refused.stderr, refused.stderr
    accepted = _edgeport_capped("compare", zoo.keras3, zoo.keras3, *data, "x", "--cast", tmpdir=spill)
    assert accepted.returncode == 0, accepted.stderr


def test_a_float_out_of_the_models_range_is_refused_even_with_cast(tmp_path: Path) -> None:
    from pipeline.core.tensors import TensorSpec
    from pipeline.data import load_dataset
    from pipeline.errors import DataError
    from pipeline.recipe import DataSpec

    x = np.random.default_rng(0).random((10, 4))  # float64: rounding it to float32 is no loss
    huge = x.copy()
    huge[6, 1] = 1e300
    np.savez(tmp_path / "f.npz", x=x, huge=huge)
    inputs = [TensorSpec("values", (None, 4), "float32")]
    assert load_dataset("evaluation", DataSpec(npz="f.npz", inputs="x"), tmp_path, inputs).samples == 10
    for cast in (False, True):
        with pytest.raises(DataError, match=r"sample 6 holds 1e\+300, which float32 .* reads as inf"):
            load_dataset("evaluation", DataSpec(npz="f.npz", inputs="huge", cast=cast), tmp_path, inputs)


# --- labels -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "sample"), [(-1, 7), (99, 12)])
def test_a_label_no_class_can_hold_is_named(zoo, tmp_path: Path, capsys, bad: int, sample: int) -> None:
    with np.load(zoo.digits_npz) as digits:
        x, y = digits["x_test"], digits["y_test"].copy()
    y[sample] = bad
    y[sample + 5] = bad
    np.savez(tmp_path / "labelled.npz", x=x, y_bad=y)
    evaluation = {"npz": tmp_path / "labelled.npz", "inputs": "x", "labels": "y_bad"}
    pattern = (
        rf"data\.evaluation\.labels: 'y_bad' holds {bad} at sample {sample} \(2 labels out of range\); expected "
        r"class ids an output can hold: 'logits' has classes 0\.\.9"
    )
    _exit_2_in_process(_recipe(zoo, tmp_path, evaluation), pattern, capsys)
    # Naming the output does not let it through either.
    named = {**evaluation, "labels": {"key": "y_bad", "output": "logits"}}
    _exit_2_in_process(_recipe(zoo, tmp_path, named), pattern, capsys)
