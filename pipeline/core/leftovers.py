"""What a killed run leaves behind (work folders, half-built cache entries), found by the process id in their
names and removed by the next run once that process is gone. A leaf: the standard library only.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

WORK_PREFIX = "edgeport-"


def work_prefix() -> str:
    """`edgeport-<pid>-`: a name that says which process owns the folder."""
    return f"{WORK_PREFIX}{os.getpid()}-"


def sweep(directory: Path, pattern: str) -> list[Path]:
    """Remove the entries of `directory` whose name matches `pattern` (its group 1 is a process id) and whose
    process is no longer running; the removed paths. Entries of live processes (a run beside this one) stay."""
    removed = []
    matcher = re.compile(pattern)
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = matcher.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sweep_work_dirs(temp_dir: Path) -> list[Path]:
    return sweep(temp_dir, rf"{re.escape(WORK_PREFIX)}(\d+)-.*")


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
