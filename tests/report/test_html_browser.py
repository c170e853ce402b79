"""report.html in a real headless Chromium: it renders offline, with no script errors, tables and SVG charts."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ..recipes import digits_data, recipe_file

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_COPY = Path("/tmp/edgeport_report.png")  # for a person to look at after a run
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def report_dir(zoo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.recipe import load_recipe
    from pipeline.run import RunOptions, run_recipe

    work = tmp_path_factory.mktemp("browser")
    outputs = {
        "fp32": {"stages": ["tflite"], "gates": {"max_abs": 1.0e-4}},
        "int8": {
            "stages": [{"tflite": {"quantize": "int8", "io": "int8", "debug": True}}],
            "gates": {"cosine": 0.99, "accuracy_drop": 0.02},
        },
    }
    recipe = recipe_file(
        work, name="digits-browser", source=zoo.keras3, data=digits_data(zoo, limit=100), outputs=outputs
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGEPORT_CACHE_DIR", str(work / "cache"))
        run_recipe(load_recipe(recipe), RunOptions(out_dir=work / "out"), log=lambda message: None)
    return work / "out"


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [str(CHROMIUM), *_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_with_tables_and_charts(report_dir: Path, tmp_path: Path) -> None:
    report = json.loads((report_dir / "report.json").read_text())
    plots = report["outputs"][1]["parity"]["plots"]
    assert sum(plots["histogram"]["counts"]) == plots["values"] == 360 * 10
    assert 0 < len(plots["sample"]["reference"]) <= 1000

    result = _chromium("--dump-dom", (report_dir / "report.html").as_uri(), profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert '<table id="summary">' in dom
    assert dom.count('<a href="#output-') == 2 and ">fp32</a>" in dom and ">int8</a>" in dom
    assert dom.count("<svg") == 4  # a histogram and a scatter per output
    assert "Layers with the largest quantization error" in dom and "FULLY_CONNECTED" in dom
    errors = [line for line in result.stderr.splitlines() if "Uncaught" in line or ":CONSOLE(" in line]
    assert not errors, errors


def test_screenshot_is_a_real_picture(report_dir: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    page = (report_dir / "report.html").as_uri()
    result = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", page, profile=tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    with contextlib.suppress(OSError):  # a read-only /tmp must not fail the test; the copy is a convenience
        shutil.copyfile(shot, SCREENSHOT_COPY)
