"""Arrays kept in their .npy / .npz file and read a slice of rows at a time, so that data of any size costs a run
one batch of memory. A leaf: numpy and the standard library.

`np.load` reads an npz member whole, and a memory map would not help: every page it touches stays counted in the
process's memory. So a `StoredArray` knows where its rows start in a file and reads the rows asked for with plain
`pread`s. An `np.savez` member is stored uncompressed and is read in place; a compressed one
(`np.savez_compressed`) is first inflated a chunk at a time into an unnamed temporary file, which the system
removes when the array goes, even if the run is killed.

Sizes come from files others wrote, so they are bounded before anything is allocated or written: shapes are
multiplied as Python ints (no wrap-around) and checked against the bytes the file holds, a compressed member
inflates only the bytes its header needs, and only when they fit under INFLATE_LIMIT and the free space of the
temporary folder. Only regular files are opened: a FIFO or a device would block or read forever.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
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
_LARGEST_DIMENSION = np.iinfo(np.intp).max  # numpy's own bound on an axis
# A compressed member inflates to at most this many bytes (EDGEPORT_INFLATE_LIMIT overrides it): evaluation and
# calibration data are rarely over a few GiB, and a small file declaring more is far likelier a zip bomb.
INFLATE_LIMIT = 64 * 2**30
# What inflating must leave free in the temporary folder: a tenth of its free space, at most 1 GiB, so that a
# member that just fits does not fill the disk for everything else.
_FREE_RESERVE = 2**30


class NotRegularFileError(OSError):
    """A data path that names a FIFO, a device, a socket or a folder: reading it would block or never end."""


def regular_file_problem(path: Path) -> str | None:
    """Why `path` is no regular file (`a FIFO`, `a character device`...), None when it is one. Follows links, as
    opening does; a missing path is no problem here (opening it says so)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    return _not_regular(mode)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kinds |= {stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}
    return next((kind for test, kind in kinds.items() if test(mode)), "not a regular file")


def inflate_limit() -> int:
    value = os.environ.get("EDGEPORT_INFLATE_LIMIT")
    try:
        return INFLATE_LIMIT if value is None else int(value)
    except ValueError:
        raise ValueError(f"EDGEPORT_INFLATE_LIMIT={value!r} is not a number of bytes") from None


class _File:
    """An open file descriptor, closed when the last array reading it goes."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd, self.name = fd, name
        weakref.finalize(self, os.close, fd)

    @classmethod
    def open(cls, path: Path) -> _File:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer. Checked on the open descriptor, so a path
        # swapped after a caller's own check is still refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem is not None:
            os.close(fd)
            raise NotRegularFileError(f"{path} is {problem}, not a regular file")
        os.set_blocking(fd, True)
        return cls(fd, str(path))

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size


class StoredArray:
    """Rows of a C-ordered array at `offset` in a file, read on demand and cast to `dtype`."""

    def __init__(self, file: _File, offset: int, shape: tuple[int, ...], stored: np.dtype, dtype: np.dtype) -> None:
        self._file, self._offset, self._stored = file, offset, stored
        self.shape, self.dtype = shape, dtype
        self._row_bytes = stored.itemsize * math.prod(shape[1:])

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
        row_bytes = np.dtype(array.dtype).itemsize * math.prod(array.shape[1:])
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
    with _zip(_File.open(path)) as archive:  # raises BadZipFile / OSError for what is not a readable zip
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


def _zip(file: _File) -> zipfile.ZipFile:
    """The zip in an open regular file (its own descriptor: a ZipFile seeks, StoredArrays only pread)."""
    return zipfile.ZipFile(os.fdopen(os.dup(file.fd), "rb"))


def _open_member(path: Path, info: zipfile.ZipInfo) -> ArrayLike:
    file = _File.open(path)
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
        fields = _LOCAL_HEADER.unpack(os.pread(file.fd, _LOCAL_HEADER.size, info.header_offset))
        if fields[0] != b"PK\x03\x04":
            raise ValueError(f"member {info.filename} has no local zip header")
        start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
        stored = _array_at(file, start, end=start + info.file_size)
        if stored is not None:
            return stored
    # Compressed (or Fortran order): inflate into an unnamed file, then read rows from there.
    with _zip(file) as archive, archive.open(info) as member:
        header = _Header.read(member, info.file_size)
        size = info.file_size if header is None else header.offset + header.nbytes
        _check_inflate(info, size, header)
        fd, name = tempfile.mkstemp(prefix=f"{work_prefix()}data-")
        os.unlink(name)  # unnamed from now on: gone with the descriptor, however the run ends
        spill = _File(fd, f"{path}[{info.filename}]")
        with os.fdopen(os.dup(fd), "wb") as out:
            written = 0 if header is None else out.write(header.raw)
            written += _copy(member, out, size - written)  # the data only: bytes past it would be junk
    if written != size:
        raise ValueError(f"it inflates to {written} bytes where its header and zip entry promise {size}")
    stored = _array_at(spill, 0)
    return _load_whole(spill) if stored is None else stored


def _check_inflate(info: zipfile.ZipInfo, size: int, header: _Header | None) -> None:
    """Refuse, before writing a byte, a member whose inflated size is over the limit or the free space."""
    what = f"{size} bytes" if header is None else f"{size} bytes (shape {list(header.shape)} {header.dtype})"
    what += f"; the zip entry declares {info.file_size} bytes, compressed to {info.compress_size}"
    limit = inflate_limit()
    if size > limit:
        raise ValueError(f"inflating it needs {what}, over the limit of {limit} (EDGEPORT_INFLATE_LIMIT)")
    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free
    if size > free - min(_FREE_RESERVE, free // 10):
        raise ValueError(f"inflating it needs {what}, where {folder} has {free} bytes free (set TMPDIR)")


def _copy(source: Any, out: Any, size: int) -> int:
    """Up to `size` bytes from `source` to `out`; how many there were."""
    copied = 0
    while copied < size:
        block = source.read(min(_COPY_BUFFER, size - copied))
        if not block:
            break
        out.write(block)
        copied += len(block)
    return copied


class _Header:
    """An .npy header read from the start of a stream, and the bytes it took."""

    def __init__(self, raw: bytes, shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> None:
        self.raw, self.shape, self.fortran, self.dtype = raw, shape, fortran, dtype
        self.offset = len(raw)
        self.nbytes = _nbytes(shape, dtype)

    @classmethod
    def read(cls, stream: Any, available: int) -> _Header | None:
        """The header at the stream's position, which it leaves just past it; None for an unknown version.
        Refuses a header whose data would not fit in the `available` bytes from its start."""
        recorder = _Recorder(stream)
        version = np.lib.format.read_magic(recorder)
        if version not in ((1, 0), (2, 0)):
            return None
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(recorder)
        header = cls(b"".join(recorder.chunks), tuple(shape), fortran, dtype)
        if header.nbytes > available - header.offset:
            raise ValueError(
                f"it holds {available - header.offset} bytes of data where shape {list(shape)} {dtype} "
                f"needs {header.nbytes}"
            )
        return header


class _Recorder:
    """A stream whose reads are kept: what a header took, to write it again in front of the inflated data."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.chunks = stream, []

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.chunks.append(chunk)
        return chunk


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """The bytes of an array of `shape`, as a Python int (numpy's int64 product wraps round for a crafted header),
    refusing shapes no array can have."""
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickled), which are refused")
    if any(d < 0 or d > _LARGEST_DIMENSION for d in shape):
        raise ValueError(f"shape {list(shape)} has a dimension no array can have")
    if len(shape) > 1 and shape[0] and not math.prod(shape[1:]):
        raise ValueError(f"shape {list(shape)} has {shape[0]} rows of no values")
    return dtype.itemsize * math.prod(shape)


def _array_at(file: _File, start: int, end: int | None = None) -> StoredArray | None:
    """The C-ordered array whose .npy header starts at `start`; None for Fortran order or an unknown version."""
    with os.fdopen(os.dup(file.fd), "rb") as reader:
        reader.seek(start)
        header = _Header.read(reader, (file.size if end is None else end) - start)
    if header is None or (header.fortran and len(header.shape) > 1):
        return None
    dtype = header.dtype
    return StoredArray(file, start + header.offset, header.shape, dtype, dtype.newbyteorder("="))


def _load_whole(file: _File) -> np.ndarray:
    with os.fdopen(os.dup(file.fd), "rb") as reader:
        reader.seek(0)
        return np.load(reader, allow_pickle=False)
