"""A run that cannot write its reports (a full disk, a file-size limit) exits 3 with one line and leaves no report
file at all: before, a disk with 48 KB free kept report.md alone, saying PASSED and exit code 0."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.report import REPORT_FILES

from ..cli import edgeport, edgeport_env
from ..filesystems import tiny_tmpfs
from ..recipes import digits_data, recipe_file


def _recipe(zoo, directory: Path) -> Path:
    outputs = {"fp32": {"stages": ["tflite"]}}
    return recipe_file(directory, name="reports", source=zoo.keras3, data=digits_data(zoo, limit=64), outputs=outputs)


def _run(recipe: Path, out: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return edgeport("run", recipe, "--out", out, env=edgeport_env(EDGEPORT_CACHE_DIR=cache))


@pytest.fixture(scope="module")
def finished(zoo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A recipe, its cache and a report.json from one passing run."""
    directory = tmp_path_factory.mktemp("reports")
    recipe, cache = _recipe(zoo, directory), directory / "cache"
    done = _run(recipe, directory / "out", cache)
    assert done.returncode == 0, done.stderr
    return recipe, cache, directory / "out" / "report.json"


def test_a_full_disk_leaves_no_report_and_exits_3_with_one_line(finished, tmp_path: Path) -> None:
    recipe, cache, _ = finished
    # 128 KiB: the 90 KB model and the manifest fit, and report.md, but not every report
    with tiny_tmpfs(tmp_path / "out", 128) as out:
        done = _run(recipe, out, cache)
        left = sorted(path.name for path in out.iterdir())
        published = (out / "fp32" / "model.tflite").is_file()
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"edgeport: error: could not write the reports to {out}: [Errno 28] No space left on device; " + (
        "no report was written"
    )
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr and done.stdout == ""
    assert not set(left) & set(REPORT_FILES) and not [name for name in left if name.endswith(".partial")], left
    assert published  # the artifact went in before the disk filled: the reports say nothing of it, none exists


def test_reports_are_written_all_or_none(finished, tmp_path: Path) -> None:
    """Under a file-size limit that report.md and junit.xml fit and report.html does not, none is left."""
    *_, report = finished
    out = tmp_path / "out"
    code = """
        import json, resource, sys
        from pathlib import Path
        from pipeline.report import REPORTS, write_reports
        report = json.loads(Path(sys.argv[1]).read_text())
        size = {name: len(render(report).encode()) for name, render in REPORTS}
        small, large = max(size["report.md"], size["junit.xml"]), min(size["report.html"], size["report.json"])
        assert small < large, size
        resource.setrlimit(resource.RLIMIT_FSIZE, ((small + large) // 2,) * 2)
        try:
            write_reports(report, Path(sys.argv[2]))
        except Exception as error:
            print(type(error).__name__, error.exit_code, error)
        """
    env = edgeport_env()
    command = [sys.executable, "-c", textwrap.dedent(code), str(report), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"ReportWriteError 3 could not write the reports to {out}: [Errno 27] File too large; no report was written"
    )
    assert list(out.iterdir()) == []
