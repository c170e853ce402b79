"""What a killed run leaves behind (work folders, half-built cache entries, half-written files), found by the process
id in their names and removed by the next run once that process is gone. A leaf: the standard library only.

A work folder in the temp directory is edgeport's only when it holds the marker file `make_work_dir` writes: a
user's own `edgeport-123-notes` folder looks the same by name and must survive the sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

WORK_PREFIX = "edgeport-"
WORK_MARKER = ".edgeport-work"  # inside every work folder edgeport makes; holds the owner's pid


def work_prefix() -> str:
    """`edgeport-<pid>-`: a name that says which process owns the folder."""
    return f"{WORK_PREFIX}{os.getpid()}-"


def make_work_dir(kind: str = "", parent: Path | None = None) -> Path:
    """A fresh `edgeport-<pid>-<kind>…` folder in the temp directory, marked as edgeport's for the sweep."""
    directory = Path(tempfile.mkdtemp(prefix=f"{work_prefix()}{kind}", dir=parent))
    (directory / WORK_MARKER).write_text(f"{os.getpid()}\n")
    return directory


@contextlib.contextmanager
def work_directory(kind: str = "") -> Iterator[str]:
    """A marked work folder (make_work_dir) for the block, removed after it, as tempfile.TemporaryDirectory."""
    directory = make_work_dir(kind)
    try:
        yield str(directory)
    except BaseException:
        # An interrupted run's conversion worker may still write into it (parent folders made anew) until the run
        # stops it, after this block: removed again at exit.
        atexit.register(shutil.rmtree, directory, True)
        raise
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def partial_prefix(name: str) -> str:
    """The start of a half-written `name`'s temporary name beside it; with `partial_pattern`, sweepable."""
    return f".{name}-{os.getpid()}-"


def partial_pattern(name: str) -> str:
    return rf"\.{re.escape(name)}-(\d+)-.*\.partial"


def sweep(directory: Path, pattern: str, marker: str | None = None) -> list[Path]:
    """Remove the entries of `directory` whose name matches `pattern` (its group 1 is a process id) and whose
    process is no longer running; the removed paths. Entries of live processes (a run beside this one) stay, and
    so, with `marker`, does every entry that is not a folder holding a file of that name."""
    removed = []
    matcher = re.compile(pattern)
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = matcher.fullmatch(entry.name)
        if not match or _alive(int(match.group(1))):
            continue
        if marker is not None and not (entry / marker).is_file():
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
        except OSError:  # not ours to remove after all (read-only, another user's): left, and not counted
            continue
        removed.append(entry)
    return removed


def sweep_work_dirs(temp_dir: Path) -> list[Path]:
    return sweep(temp_dir, rf"{re.escape(WORK_PREFIX)}(\d+)-.*", marker=WORK_MARKER)


def remove_work_dirs_of(pid: int, kind: str = "") -> list[Path]:
    """The marked work folders a process that is gone (killed by its parent) made in the temp directory."""
    pattern = rf"{re.escape(WORK_PREFIX)}({pid})-{re.escape(kind)}.*"
    return sweep(Path(tempfile.gettempdir()), pattern, marker=WORK_MARKER)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to clean
        return True
    return True
