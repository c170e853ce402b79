"""A run killed mid-stage leaves work folders and half-built cache entries; the next run removes them, and
leaves alone those of a run still going."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe
from pipeline.run.cache import CACHE_LAYOUT

from .conftest import write_recipe


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def test_the_next_run_removes_what_a_killed_run_left(zoo, tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getppid()  # the parent of this test process is running
    left_work = Path(tempfile.mkdtemp(prefix=f"edgeport-{dead}-"))
    live_work = Path(tempfile.mkdtemp(prefix=f"edgeport-{alive}-"))
    stages = tmp_path / "cache" / f"v{CACHE_LAYOUT}" / "stages"
    (stages / f".0123456789ab-{dead}-x.partial").mkdir(parents=True)
    (stages / f".0123456789ab-{alive}-y.partial").mkdir()
    recipe = write_recipe(tmp_path, f"name: sweep\nsource: {zoo.keras3}\noutputs:\n  fp32: {{stages: [tflite]}}\n")
    try:
        report = run_recipe(load_recipe(recipe), RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache"))
        assert not left_work.exists() and live_work.exists()
        assert not (stages / f".0123456789ab-{dead}-x.partial").exists()
        assert (stages / f".0123456789ab-{alive}-y.partial").exists()
        assert "removed 1 half-built entries a stopped run left" in report["cache"]["notes"]
    finally:
        live_work.rmdir()
