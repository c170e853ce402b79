"""A run killed mid-stage leaves work folders and half-built cache entries; the next run removes them, and
leaves alone those of a run still going, and any folder that only looks like edgeport's by its name."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.core.leftovers import WORK_MARKER, make_work_dir, sweep_work_dirs
from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe
from pipeline.run.cache import CACHE_LAYOUT

from ..recipes import write_recipe


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def _marked(pid: int) -> Path:
    """A work folder as the edgeport process `pid` made it (make_work_dir, in that process)."""
    folder = Path(tempfile.mkdtemp(prefix=f"edgeport-{pid}-"))
    (folder / WORK_MARKER).write_text(f"{pid}\n")
    return folder


def test_the_next_run_removes_what_a_killed_run_left(zoo, tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getppid()  # the parent of this test process is running
    left_work, live_work = _marked(dead), _marked(alive)
    users_own = Path(tempfile.mkdtemp(prefix=f"edgeport-{dead}-notes-"))  # a user's, no marker: never ours
    (users_own / "draft.txt").write_text("mine")
    stages = tmp_path / "cache" / f"v{CACHE_LAYOUT}" / "stages"
    (stages / f".0123456789ab-{dead}-x.partial").mkdir(parents=True)
    (stages / f".0123456789ab-{alive}-y.partial").mkdir()
    recipe = write_recipe(tmp_path, f"name: sweep\nsource: {zoo.keras3}\noutputs:\n  fp32: {{stages: [tflite]}}\n")
    try:
        report = run_recipe(load_recipe(recipe), RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache"))
        assert not left_work.exists() and live_work.exists()
        assert (users_own / "draft.txt").read_text() == "mine"
        assert not (stages / f".0123456789ab-{dead}-x.partial").exists()
        assert (stages / f".0123456789ab-{alive}-y.partial").exists()
        assert "removed 1 half-built entries a stopped run left" in report["cache"]["notes"]
    finally:
        for folder in (live_work, users_own):
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()


def test_only_marked_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    dead = _dead_pid()
    ours = make_work_dir("outputs-", parent=tmp_path)
    assert (ours / WORK_MARKER).read_text() == f"{os.getpid()}\n"
    killed = tmp_path / f"edgeport-{dead}-abc"
    killed.mkdir()
    (killed / WORK_MARKER).write_text(f"{dead}\n")
    unmarked = tmp_path / f"edgeport-{dead}-foo"
    unmarked.mkdir()
    a_file = tmp_path / f"edgeport-{dead}-file"  # a file cannot hold the marker: never swept
    a_file.write_text("x")
    assert sweep_work_dirs(tmp_path) == [killed]
    assert ours.exists() and unmarked.exists() and a_file.exists() and not killed.exists()
