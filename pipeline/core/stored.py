"""Arrays kept in their .npy / .npz file and read a slice of rows at a time, so that data of any size costs a run
one batch of memory. A leaf: numpy and the standard library.

`np.load` reads an npz member whole, and a memory map would not help: every page it touches stays counted in the
process's memory. So a `StoredArray` knows where its rows start in a file and reads the rows asked for with plain
`pread`s. An `np.savez` member is stored uncompressed and is read in place; a compressed one
(`np.savez_compressed`) is first inflated a chunk at a time into an unnamed temporary file, which the system
removes when the array goes, even if the run is killed.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import weakref
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.leftovers import work_prefix

CHUNK_BYTES = 16 * 2**20  # whole-array passes (finite check, digest, copy) read this much at a time
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # a zip member's local header: its name and extra field lengths follow
_COPY_BUFFER = 4 * 2**20


class _File:
    """An open file descriptor, closed when the last array reading it goes."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd, self.name = fd, name
        weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: Path) -> _File:
        return cls(os.open(path, os.O_RDONLY), str(path))

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size


class StoredArray:
    """Rows of a C-ordered array at `offset` in a file, read on demand and cast to `dtype`."""

    def __init__(self, file: _File, offset: int, shape: tuple[int, ...], stored: np.dtype, dtype: np.dtype) -> None:
        self._file, self._offset, self._stored = file, offset, stored
        self.shape, self.dtype = shape, dtype
        self._row_bytes = int(stored.itemsize * np.prod(shape[1:], dtype=np.int64))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @classmethod
    def raw(cls, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> StoredArray:
        """A headerless file of `shape` and `dtype`, rows back to back (an output recording's tensor)."""
        return cls(_File.open(path), 0, shape, dtype, dtype)

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError(f"a StoredArray reads contiguous rows (array[start:stop]), not [{rows!r}]")
        start, stop, _ = rows.indices(len(self))
        rows_read = self.read_into(start, np.empty((max(0, stop - start), *self.shape[1:]), self._stored))
        return rows_read if self._stored == self.dtype else rows_read.astype(self.dtype)

    def read_into(self, start: int, out: np.ndarray) -> np.ndarray:
        """Rows start .. start + len(out), as stored (no cast), into `out`, a C-ordered array of the stored dtype:
        for a reader that fills one array chunk after chunk (a fresh array costs more in page faults)."""
        view, position = memoryview(out).cast("B"), self._offset + start * self._row_bytes
        while view.nbytes:  # a read may return fewer bytes than asked
            got = os.preadv(self._file.fd, [view], position)
            if got == 0:
                raise OSError(f"{self._file.name}: the file ends before row {start + len(out)} of {list(self.shape)}")
            view, position = view[got:], position + got
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def head(self, rows: int) -> StoredArray:
        """The first `rows` rows (a `limit`), still on disk."""
        shape = (min(rows, len(self)), *self.shape[1:])
        return StoredArray(self._file, self._offset, shape, self._stored, self.dtype)

    def cast(self, dtype: np.dtype) -> StoredArray:
        """The same rows, read as `dtype`."""
        return StoredArray(self._file, self._offset, self.shape, self._stored, np.dtype(dtype))


ArrayLike = np.ndarray | StoredArray


def row_chunks(array: ArrayLike, rows: int | None = None) -> Iterator[np.ndarray]:
    """An array (in memory or stored) a block of rows at a time: about CHUNK_BYTES each unless `rows` is given."""
    if rows is None:
        row_bytes = int(np.dtype(array.dtype).itemsize * np.prod(array.shape[1:], dtype=np.int64))
        rows = max(1, CHUNK_BYTES // max(row_bytes, 1))
    for start in range(0, len(array), rows):
        yield np.ascontiguousarray(array[start : start + rows])


def open_npy(path: Path) -> ArrayLike:
    """An .npy file as a StoredArray (in memory for the rare layouts rows cannot be read from: Fortran order)."""
    stored = _array_at(_File.open(path), 0)
    return np.load(path, allow_pickle=False) if stored is None else stored


def open_npz(path: Path) -> dict[str, Callable[[], ArrayLike]]:
    """An .npz file's members by key, each a function that opens it as open_npy would. Opening is deferred so
    that a member nobody asks for costs nothing, and a bad one fails only when it is read."""
    with zipfile.ZipFile(path) as archive:  # raises BadZipFile / OSError for what is not a readable zip
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
    return {key: (lambda info=info: _open_member(path, info)) for key, info in members.items()}


def save_npz(path: Path, arrays: dict[str, ArrayLike]) -> None:
    """What `np.savez` writes, a chunk of rows at a time (stored arrays are never read whole)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(array.dtype)), "fortran_order": False}
                np.lib.format.write_array_header_2_0(member, {**header, "shape": tuple(array.shape)})
                for chunk in row_chunks(array):
                    member.write(chunk.data)


def _open_member(path: Path, info: zipfile.ZipInfo) -> ArrayLike:
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
        file = _File.open(path)
        fields = _LOCAL_HEADER.unpack(os.pread(file.fd, _LOCAL_HEADER.size, info.header_offset))
        if fields[0] != b"PK\x03\x04":
            raise ValueError(f"member {info.filename} has no local zip header")
        start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
        stored = _array_at(file, start, end=start + info.file_size)
        if stored is not None:
            return stored
    # Compressed (or Fortran order): inflate into an unnamed file, then read rows from there.
    fd, name = tempfile.mkstemp(prefix=f"{work_prefix()}data-")
    os.unlink(name)  # unnamed from now on: gone with the descriptor, however the run ends
    spill = _File(fd, f"{path}[{info.filename}]")
    with zipfile.ZipFile(path) as archive, archive.open(info) as member, os.fdopen(os.dup(fd), "wb") as out:
        shutil.copyfileobj(member, out, _COPY_BUFFER)
    stored = _array_at(spill, 0)
    return _load_whole(spill) if stored is None else stored


def _array_at(file: _File, start: int, end: int | None = None) -> StoredArray | None:
    """The C-ordered array whose .npy header starts at `start`; None for Fortran order or an unknown version."""
    with os.fdopen(os.dup(file.fd), "rb") as reader:
        reader.seek(start)
        version = np.lib.format.read_magic(reader)
        if version not in ((1, 0), (2, 0)):
            return None
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(reader)
        offset = reader.tell()
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickled), which are refused")
    if fortran and len(shape) > 1:
        return None
    needed = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    available = (file.size if end is None else end) - offset
    if needed > available:
        raise ValueError(f"it holds {available} bytes of data where shape {list(shape)} {dtype} needs {needed}")
    return StoredArray(file, offset, tuple(int(d) for d in shape), dtype, dtype.newbyteorder("="))


def _load_whole(file: _File) -> np.ndarray:
    with os.fdopen(os.dup(file.fd), "rb") as reader:
        reader.seek(0)
        return np.load(reader, allow_pickle=False)
