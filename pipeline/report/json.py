"""report.json: the machine-readable record of a run (schema_version 1); the other formats render it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.artifacts import write_text_atomic


def write(report: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / "report.json"
    write_text_atomic(path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path
