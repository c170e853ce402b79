"""One run's output tensors, recorded to raw files as batches arrive and read back in chunks of bounded size, so
that a run's memory does not grow with the number of evaluation samples. A leaf: numpy and the standard library.

A recording is a directory: `index.json` (tensor names, sample count, each tensor's file, dtype and per-sample
shape) and one raw file per tensor, samples back to back. The cache keeps such directories as they are.
"""

from __future__ import annotations

import json
import shutil
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.leftovers import make_work_dir
from pipeline.core.stored import StoredArray

INDEX = "index.json"
CHUNK_SAMPLES = 8192  # metrics cost a few numpy calls a chunk: large chunks when samples are small
_WRITE_BUFFER = 2**20
CHUNK_BYTES = 32 * 2**20  # ... and bounded memory when they are large (a 64×64×16 map is 256 KiB a sample)


@dataclass(frozen=True)
class _Tensor:
    file: str
    dtype: str
    shape: tuple[int, ...]  # per sample

    @property
    def sample_bytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * np.prod(self.shape, dtype=np.int64))


class OutputRecording:
    """Output tensors of one run over a dataset, on disk; `chunks()` reads them back in order."""

    def __init__(self, directory: Path, names: list[str], samples: int, tensors: dict[str, _Tensor], owned: bool):
        self.directory, self.names, self.samples, self._tensors = directory, names, samples, tensors
        if owned:  # a recording made for one comparison goes when its last user does (or at exit)
            weakref.finalize(self, shutil.rmtree, str(directory), True)

    @classmethod
    def record(
        cls, batches: Iterable[dict[str, np.ndarray]], names: list[str], directory: Path | None = None
    ) -> OutputRecording:
        """Write each batch's tensors as it arrives; nothing but the current batch is held in memory. Into a
        temporary folder of its own (removed with the recording), or into `directory`, which the caller keeps."""
        owned = directory is None
        directory = make_work_dir("outputs-") if directory is None else directory
        directory.mkdir(parents=True, exist_ok=True)
        try:
            tensors, samples = _write(directory, batches, names)
        except BaseException:
            if owned:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        index = {"names": names, "samples": samples, "tensors": {n: t.__dict__ for n, t in tensors.items()}}
        (directory / INDEX).write_text(json.dumps(index, default=list))  # last: a folder without it is incomplete
        return cls(directory, names, samples, tensors, owned=owned)

    @classmethod
    def open(cls, directory: Path) -> OutputRecording | None:
        """A recording kept elsewhere (the cache), read in place; None when it is missing or incomplete."""
        try:
            index = json.loads((directory / INDEX).read_text())
            tensors = {
                name: _Tensor(fields["file"], fields["dtype"], tuple(fields["shape"]))
                for name, fields in index["tensors"].items()
            }
            whole = all(
                (directory / t.file).stat().st_size == t.sample_bytes * index["samples"] for t in tensors.values()
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cls(directory, list(index["names"]), int(index["samples"]), tensors, owned=False) if whole else None

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Each tensor's per-sample shape, in the run's own order."""
        return [(name, self._tensors[name].shape) for name in self.names]

    def chunk_rows(self) -> int:
        sample_bytes = sum(tensor.sample_bytes for tensor in self._tensors.values())
        return max(1, min(CHUNK_SAMPLES, CHUNK_BYTES // max(sample_bytes, 1)))

    def chunks(
        self, rows: int, names: dict[str, str] | None = None, reuse: bool = False
    ) -> Iterator[dict[str, np.ndarray]]:
        """`rows` samples at a time; `names` ({key: tensor}) chooses and renames tensors (default: all). With
        `reuse`, each chunk is read into the arrays of the one before: for a reader that keeps none of them."""
        wanted = names or {name: name for name in self.names}
        stored = {key: self._stored(name) for key, name in wanted.items()}
        # With reuse, one array a tensor is filled chunk after chunk: a fresh array a chunk costs more in page
        # faults than its read (pipeline.parity.scratch says why).
        shapes = {key: (min(rows, self.samples), *array.shape[1:]) for key, array in stored.items()}
        arrays = {key: np.empty(shapes[key], stored[key].dtype) for key in stored} if reuse else {}
        for start in range(0, self.samples, rows):
            count = min(rows, self.samples - start)
            if reuse:
                yield {key: array.read_into(start, arrays[key][:count]) for key, array in stored.items()}
            else:
                yield {key: array[start : start + count] for key, array in stored.items()}

    def files(self) -> list[str]:
        """The names of the files the recording is made of, in its directory: each tensor's, then the index."""
        return [*(tensor.file for tensor in self._tensors.values()), INDEX]

    def copy_to(self, target: Path) -> None:
        for name in self.files():
            shutil.copyfile(self.directory / name, target / name)

    def read(self, name: str, start: int, count: int) -> np.ndarray:
        """Samples start .. start + count of one tensor."""
        return self._stored(name)[start : start + count]

    def _stored(self, name: str) -> StoredArray:
        # Plain reads, not a memory map: mapped pages would count in the process's memory as they are touched.
        tensor = self._tensors[name]
        return StoredArray.raw(self.directory / tensor.file, (self.samples, *tensor.shape), np.dtype(tensor.dtype))


def _write(
    directory: Path, batches: Iterable[dict[str, np.ndarray]], names: list[str]
) -> tuple[dict[str, _Tensor], int]:
    tensors: dict[str, _Tensor] = {}
    files: dict[str, Any] = {}
    samples = 0
    try:
        for batch in batches:
            for position, name in enumerate(names):
                array = np.ascontiguousarray(batch[name])
                if name not in tensors:
                    tensors[name] = _Tensor(f"{position}.bin", array.dtype.str, tuple(array.shape[1:]))
                    # Buffered: a batch of a small model is a few KB, and one write call each would cost more
                    # than its inference. (ndarray.tofile bypasses the buffer.)
                    files[name] = open(directory / tensors[name].file, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
                elif (array.dtype.str, tuple(array.shape[1:])) != (tensors[name].dtype, tensors[name].shape):
                    expected = f"{tensors[name].dtype} {list(tensors[name].shape)}"
                    raise ValueError(
                        f"output {name!r} changed between batches: {array.dtype.str} {list(array.shape[1:])} "
                        f"after {expected} a sample"
                    )
                files[name].write(array.data)
            samples += len(batch[names[0]]) if names else 0
    finally:
        for file in files.values():
            file.close()
    return tensors, samples
