"""Hashing, sizes and atomic writes of artifacts; knows nothing of what the files contain."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.core.leftovers import partial_pattern, partial_prefix, sweep

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """Hash of a file, or of a directory's relative paths and contents in sorted order."""
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode())
            digest.update(bytes.fromhex(sha256_of(child)))
        return digest.hexdigest()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def key_of(*parts: Any) -> str:
    """A content key from JSON-able parts (stage kind, options, upstream key...)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def gzip_size_of(path: Path) -> int | None:
    """Compressed size of a file: what a download or an app bundle costs (pruning shows only here)."""
    if path.is_dir():
        return None
    with path.open("rb") as handle:
        return len(gzip.compress(handle.read(), compresslevel=9, mtime=0))


def ordinary_mode(directory: bool = False) -> int:
    """The mode an ordinary open() or mkdir() gives under the user's umask. Temporary files are 0600 and
    temporary directories 0700, which would leave reports and artifacts unreadable to a team's other users."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: a reader never sees half a file, and a failed write
    (a full disk) leaves nothing behind."""
    with _partial_file(path) as (handle, tmp):
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def copy_atomic(source: Path, target: Path) -> None:
    """Copy a file or directory into place under a temporary name of this process's own, then rename: two runs
    into one folder never share a temporary name, and a failed copy removes its own."""
    if source.is_dir():
        _copy_dir_atomic(source, target)
        return
    with _partial_file(target) as (handle, tmp):
        handle.close()
        shutil.copy2(source, tmp)
        if target.is_dir():  # a saved_model folder an earlier run published under this name
            shutil.rmtree(target)
        os.replace(tmp, target)


def copy_hashed(source: Path, target: Path) -> str:
    """Copy one file and return its sha256, in one pass over its bytes."""
    digest = hashlib.sha256()
    with source.open("rb") as reader, target.open("wb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _partial_file(path: Path) -> Iterator[tuple[BinaryIO, str]]:
    """A new file beside `path` named after it and this process (core.leftovers sweeps a killed run's), with the
    ordinary mode; removed when the block fails, or when it ends without renaming it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep(path.parent, partial_pattern(path.name))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=partial_prefix(path.name), suffix=".partial")
    handle = os.fdopen(fd, "wb")  # owns the descriptor from here: closing twice is harmless, unlike os.close
    try:
        os.fchmod(handle.fileno(), ordinary_mode())
        yield handle, tmp
    finally:
        with contextlib.suppress(OSError):  # a full disk fails the close's flush too: the file goes regardless
            handle.close()
        Path(tmp).unlink(missing_ok=True)


def _copy_dir_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target.parent, partial_pattern(target.name))
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=partial_prefix(target.name), suffix=".partial"))
    try:
        staging.chmod(ordinary_mode(directory=True))
        shutil.copytree(source, staging, dirs_exist_ok=True)
        for attempt in range(3):  # a directory cannot replace a non-empty one: remove it, again if another run won
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(staging, target)
                return
            except OSError:
                if attempt == 2:
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
