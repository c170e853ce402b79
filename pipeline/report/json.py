"""report.json: the machine-readable record of a run (schema_version 1); the other formats render it, and
`--baseline` and `verify` read it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.stored import regular_file_problem
from pipeline.errors import EdgeportError


def render(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def read_report(path: Path, given_as: str) -> dict[str, Any]:
    """An earlier run's report.json, or EdgeportError (exit 2) naming the file and the option that gave it
    (`--baseline`, `--report`); cheap enough to call before a run."""
    problem = regular_file_problem(path)
    if problem is not None:  # a FIFO would block the read, a device never end
        raise EdgeportError(f"{given_as} {path} is {problem}; expected a report.json")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeportError(f"{given_as} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EdgeportError(f"{given_as} {path}: not a readable report.json ({error})") from None
    if not isinstance(report, dict) or not isinstance(report.get("outputs"), list):
        raise EdgeportError(f"{given_as} {path}: not an edgeport report.json (no 'outputs' list)")
    return report
