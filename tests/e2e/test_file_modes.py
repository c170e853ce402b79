"""Files edgeport writes (reports, artifacts, cache entries) get the mode an ordinary write gives under the
user's umask, so a report served or shared with another user can be read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline.recipe import load_recipe
from pipeline.run import RunOptions, run_recipe

from ..recipes import write_recipe


def test_reports_artifacts_and_cache_entries_follow_the_umask(zoo, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, f"name: modes\nsource: {zoo.keras3}\noutputs:\n  fp32: {{stages: [tflite]}}\n")
    before = os.umask(0o022)
    try:
        run_recipe(load_recipe(recipe), RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache"), log=print)
    finally:
        os.umask(before)
    written = [*(tmp_path / "out").rglob("*"), *(tmp_path / "cache").rglob("*")]
    modes = {path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in written}
    files = {name: mode for name, mode in modes.items() if (tmp_path / name).is_file()}
    folders = {name: mode for name, mode in modes.items() if (tmp_path / name).is_dir()}
    assert {"out/report.json", "out/report.html", "out/fp32/model.tflite"} <= set(files)
    assert any(name.startswith("cache/") and name.endswith("model.tflite") for name in files)
    assert set(files.values()) == {0o644}, files
    assert set(folders.values()) == {0o755}, folders
