"""Data read from its file a batch at a time (pipeline.core.stored): the same values as np.load, the same cache
keys as arrays in memory, and memory bounded by a batch whatever the file's size."""

from __future__ import annotations

import ctypes
import ctypes.util
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.heap import keep_heap_steady
from pipeline.core.stored import StoredArray, open_npy, open_npz, save_npz
from pipeline.core.tensors import TensorSpec
from pipeline.data import Dataset, load_dataset
from pipeline.errors import DataError
from pipeline.recipe import DataSpec

IMAGE = [TensorSpec("image", (None, 16, 16, 3), "float32")]


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "little": rng.random((37, 4, 5), dtype=np.float32),
        "big_endian": rng.random((37, 6)).astype(">f8"),
        "fortran": np.asfortranarray(rng.random((37, 3))),
        "labels": rng.integers(0, 10, 37),
        "scalar_rows": rng.random(37),
    }


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["stored", "compressed"])
def test_npz_members_read_back_as_np_load_reads_them(tmp_path: Path, save) -> None:
    arrays = _arrays()
    save(tmp_path / "d.npz", **arrays)
    members = open_npz(tmp_path / "d.npz")
    assert sorted(members) == sorted(arrays)
    for key, expected in arrays.items():
        array = members[key]()
        assert array.shape == expected.shape and array.dtype == expected.dtype.newbyteorder("=")
        np.testing.assert_array_equal(np.asarray(array), expected)
        np.testing.assert_array_equal(array[5:11], expected[5:11])
        assert isinstance(array, StoredArray) == (key != "fortran")  # Fortran order is read whole


def test_npy_rows_head_and_cast(tmp_path: Path) -> None:
    expected = _arrays()["little"]
    np.save(tmp_path / "x.npy", expected)
    array = open_npy(tmp_path / "x.npy")
    assert isinstance(array, StoredArray)
    np.testing.assert_array_equal(array.head(9)[:], expected[:9])
    assert array.head(9).shape == (9, 4, 5) and array.head(100).shape == expected.shape
    assert array.cast(np.float64)[0:2].dtype == np.float64
    with pytest.raises(TypeError, match="contiguous rows"):
        array[::2]


def test_a_file_dataset_has_the_digest_of_the_same_arrays_in_memory(tmp_path: Path) -> None:
    """Cache keys must not depend on where the arrays live."""
    rng = np.random.default_rng(1)
    x, y = rng.random((50, 16, 16, 3)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    from_file = load_dataset("evaluation", DataSpec(npz="d.npz", inputs="x", labels="y"), tmp_path, IMAGE)
    assert isinstance(from_file.inputs["image"], StoredArray)
    in_memory = Dataset("evaluation", "test", {"image": x.astype(np.float32)}, y)
    assert from_file.digest() == in_memory.digest()


def test_save_npz_writes_what_np_load_reads(tmp_path: Path) -> None:
    arrays = _arrays()
    np.savez(tmp_path / "in.npz", **arrays)
    members = open_npz(tmp_path / "in.npz")
    save_npz(tmp_path / "out.npz", {key: member() for key, member in members.items()})
    with np.load(tmp_path / "out.npz") as written:
        for key, expected in arrays.items():
            np.testing.assert_array_equal(written[key], expected)


def test_a_truncated_member_names_the_key_and_the_file(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((100, 16, 16, 3), np.float32))
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"d\.npz"):
        load_dataset("evaluation", DataSpec(npz="d.npz", inputs="x"), tmp_path, IMAGE)


def test_a_member_shorter_than_its_header_says_is_refused_by_name(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((100, 16, 16, 3), np.float32))
    whole = (tmp_path / "x.npy").read_bytes()
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x.npy", whole[: len(whole) // 2])  # a header for 100 samples, data for 50
    with pytest.raises(DataError, match=r"cannot read 'x' from d\.npz \(it holds \d+ bytes of data where shape"):
        load_dataset("evaluation", DataSpec(npz="d.npz", inputs="x"), tmp_path, IMAGE)


def test_loading_and_batching_a_large_file_holds_a_bounded_share_of_it(tmp_path: Path) -> None:
    """96 MB of inputs: checking them, hashing them and reading them in batches of 64 stays within ~2 chunks."""
    samples = 32_000
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "big.npz", x=rng.random((samples, 16, 16, 3), dtype=np.float32))
    tracemalloc.start()
    try:
        dataset = load_dataset("evaluation", DataSpec(npz="big.npz", inputs="x"), tmp_path, IMAGE)
        dataset.digest()
        rows = sum(len(batch["image"]) for batch in dataset.batches(64))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == samples
    whole = samples * 16 * 16 * 3 * 4
    assert peak < 40 * 2**20 < whole, f"peak {peak / 2**20:.1f} MB of a {whole / 2**20:.0f} MB file"


def test_the_heap_is_kept_steady_where_the_c_library_is_glibc() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    assert keep_heap_steady() == hasattr(libc, "gnu_get_libc_version")
