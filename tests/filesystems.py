"""Real failing file systems for fault tests: a tiny tmpfs that fills up (ENOSPC) and a read-only folder (EROFS or
EACCES). Root mounts them (a tmpfs, a read-only bind mount); any other user gets a chmod-ed folder for read-only,
and a test that needs a mount is skipped where none can be made."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` KiB mounted at `path` (created): writes past it fail with ENOSPC."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)):
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` (created) made read-only: a read-only bind mount for root (whom permissions do not stop), else
    mode 0555."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    if not (_mount("--bind", str(path), str(path)) and _mount("-o", "remount,bind,ro", str(path))):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
        pytest.skip("no read-only bind mount here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
