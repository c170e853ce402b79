"""A row of the zoo (scripts/zoo.py), run as `make zoo` runs it: keras-hub Llama built tiny, where Keras' own
`export(format="litert")` writes a file LiteRT cannot run (Flex StridedSlice at a free sequence length) and edgeport
gets through with its fixed-shape rescue, named in the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT


@pytest.mark.slow
def test_a_zoo_row_shows_what_edgeport_gets_through_and_the_raw_calls_do_not(tmp_path: Path) -> None:
    pytest.importorskip("keras_hub")
    table = tmp_path / "zoo.md"
    done = subprocess.run(
        [sys.executable, ROOT / "scripts" / "zoo.py", "--only", "llama", "--work", tmp_path, "--table", table],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads((tmp_path / "results.json").read_text())["llama"]
    fp32 = row["edgeport"]["tflite fp32"]
    assert fp32["status"] == "passed" and fp32["max_abs"] <= 1e-4 and fp32["rescues"] == ["fixed_shapes"]
    assert row["edgeport"]["onnx fp32"]["status"] == "passed"
    assert row["raw"]["export litert"]["status"] == "error"
    assert "Select TensorFlow op" in row["raw"]["export litert"]["error"][0]
    text = table.read_text()
    assert "| llama |" in text and "↻ fixed_shapes" in text and "**1/1**" in text
