"""report.json: the machine-readable record of a run (schema_version 1); the other formats render it."""

from __future__ import annotations

import json
from typing import Any


def render(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, allow_nan=False) + "\n"
